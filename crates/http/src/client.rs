//! The shared HTTP client: construction, base URLs, sending with auth, and reading bodies with a limit.

use std::time::Duration;

use bytes::Bytes;
use genroute_core::{Billed, ErrorKind, ProviderError};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::auth::Auth;
use crate::body::{DEFAULT_MAX_BODY_BYTES, read_limited};
use crate::classify::header_str;
use crate::error::HttpError;

/// Transport settings shared by every adapter. No automatic retries: the router owns retries.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Limit on one whole request, response body included.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Limit on establishing a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// The `User-Agent` sent.
    pub user_agent: String,
    /// Largest response body read, in bytes.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 16,
            user_agent: concat!("genroute/", env!("CARGO_PKG_VERSION")).to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl HttpConfig {
    /// Builds a `reqwest::Client` from these settings: timeouts, pool, user agent, at most 5 redirects,
    /// and **no retries** (reqwest's protocol-NACK retries are switched off too).
    pub fn build_client(&self) -> Result<reqwest::Client, HttpError> {
        reqwest::Client::builder()
            .timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .user_agent(self.user_agent.clone())
            .redirect(reqwest::redirect::Policy::limited(5))
            .retry(reqwest::retry::never())
            .build()
            .map_err(HttpError::Client)
    }
}

/// A provider's base URL (`https://queue.fal.run`, `https://api.replicate.com/v1`, or a mock's
/// `http://127.0.0.1:PORT`), to which endpoint paths are appended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BaseUrl(Url);

impl BaseUrl {
    /// Parses an absolute http(s) URL without credentials, query or fragment. A trailing `/` is optional.
    pub fn parse(url: &str) -> Result<Self, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let mut parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid("credentials belong in the config's api key, not the URL"));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid("a base URL takes no query or fragment"));
        }
        if !parsed.path().ends_with('/') {
            let path = format!("{}/", parsed.path());
            parsed.set_path(&path);
        }
        Ok(Self(parsed))
    }

    /// The URL itself (always ending in `/`).
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// `base + path`, where `path` is relative (a leading `/` is ignored) and may hold several segments
    /// (`fal-ai/flux/dev`, `v1/models/owner/name/predictions`). `..`, `.` and empty segments are refused so a
    /// model id can never climb out of the base path.
    pub fn join(&self, path: &str) -> Result<Url, HttpError> {
        let path = path.trim_start_matches('/');
        let invalid = |reason: &str| HttpError::InvalidUrl {
            url: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut url = self.0.clone();
        {
            let mut segments = url
                .path_segments_mut()
                .map_err(|()| invalid("the base URL cannot take a path"))?;
            segments.pop_if_empty();
            for seg in path.split('/') {
                if seg.is_empty() || seg == "." || seg == ".." {
                    return Err(invalid("empty, `.` or `..` path segment"));
                }
                segments.push(seg);
            }
        }
        Ok(url)
    }

    /// Checks a follow-up URL the provider returned (status, result, cancel URLs): it must be absolute and
    /// either https, or on the same scheme, host and port as this base (a local mock or emulator). Follow
    /// these URLs as given: never rebuild them.
    pub fn follow(&self, url: &str) -> Result<Url, HttpError> {
        let invalid = |reason: &str| HttpError::InvalidUrl {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        let same_origin = parsed.origin() == self.0.origin();
        if parsed.scheme() != "https" && !same_origin {
            return Err(invalid(
                "follow-up URLs must be https or on the base URL's origin (credentials are sent to them)",
            ));
        }
        Ok(parsed)
    }
}

/// A response with its body read (within the size limit).
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawResponse {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }

    /// The body parsed as JSON; a parse failure is a `MalformedResponse` (billing unknown: the provider may
    /// have done the work).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderError> {
        self.json_borrowed()
    }

    /// [`RawResponse::json`] into a type that may borrow from the body (e.g. `Cow<str>` fields marked
    /// `#[serde(borrow)]`), so large strings such as base64 payloads are not copied; same errors.
    pub fn json_borrowed<'a, T: Deserialize<'a>>(&'a self) -> Result<T, ProviderError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("unexpected response body ({e}): {}", snippet(&self.body, 300)),
            )
            .status(Some(self.status.as_u16()))
        })
    }

    /// The start of the body as text, for error messages.
    pub fn snippet(&self, max_chars: usize) -> String {
        snippet(&self.body, max_chars)
    }
}

/// The first `max_chars` characters of a body (lossy UTF-8), with `…` when cut.
pub fn snippet(body: &[u8], max_chars: usize) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(max_chars).collect();
    if text.chars().count() > max_chars {
        out.push('…');
    }
    out
}

/// Classifies a transport failure (no HTTP status).
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | could not connect | Unavailable | yes | no (nothing reached the provider) |
/// | timed out | Timeout | yes | unknown (it may have been received) |
/// | anything else (reset, protocol error) | Unavailable | yes | unknown |
///
/// The URL is left out of the message (a webhook URL in a query could carry a token).
pub fn transport_error(e: reqwest::Error) -> ProviderError {
    let (kind, billed) = if e.is_connect() {
        (ErrorKind::Unavailable, Billed::No)
    } else if e.is_timeout() {
        (ErrorKind::Timeout, Billed::Unknown)
    } else {
        (ErrorKind::Unavailable, Billed::Unknown)
    };
    let e = e.without_url();
    ProviderError::new(kind, format!("transport: {e}"))
        .temporary(true)
        .billed(billed)
}

/// A client bound to one provider: a `reqwest::Client`, a base URL, credentials and a body limit.
#[derive(Clone, Debug)]
pub struct HttpClient {
    client: reqwest::Client,
    base: BaseUrl,
    auth: Auth,
    max_body_bytes: usize,
}

impl HttpClient {
    /// Builds the client from settings.
    pub fn new(config: &HttpConfig, base: BaseUrl, auth: Auth) -> Result<Self, HttpError> {
        Ok(Self::with_client(
            config.build_client()?,
            base,
            auth,
            config.max_body_bytes,
        ))
    }

    /// Wraps an existing `reqwest::Client` (to share one connection pool across adapters).
    pub fn with_client(client: reqwest::Client, base: BaseUrl, auth: Auth, max_body_bytes: usize) -> Self {
        Self {
            client,
            base,
            auth,
            max_body_bytes,
        }
    }

    /// The base URL.
    pub fn base(&self) -> &BaseUrl {
        &self.base
    }

    /// The body limit in bytes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// `base + path` (see [`BaseUrl::join`]); a refused path is a local `InvalidRequest`.
    pub fn endpoint(&self, path: &str) -> Result<Url, ProviderError> {
        self.base
            .join(path)
            .map_err(|e| ProviderError::local(ErrorKind::InvalidRequest, e.to_string()))
    }

    /// A follow-up URL from a provider response (see [`BaseUrl::follow`]); a refused URL is a
    /// `MalformedResponse`.
    pub fn follow(&self, url: &str) -> Result<Url, ProviderError> {
        self.base
            .follow(url)
            .map_err(|e| ProviderError::new(ErrorKind::MalformedResponse, e.to_string()))
    }

    /// A request with credentials attached.
    pub fn request(&self, method: Method, url: Url) -> reqwest::RequestBuilder {
        self.auth.apply(self.client.request(method, url))
    }

    /// [`HttpClient::send`] bounded by the call's deadline (if any): past it, a `Timeout` error with billing
    /// unknown (the provider may have received the request). Use it for synchronous creates.
    pub async fn send_within(
        &self,
        ctx: &genroute_core::CallContext,
        request: reqwest::RequestBuilder,
    ) -> Result<RawResponse, ProviderError> {
        match ctx.remaining() {
            None => self.send(request).await,
            Some(left) => tokio::time::timeout(left, self.send(request))
                .await
                .unwrap_or_else(|_| {
                    Err(ProviderError::new(
                        ErrorKind::Timeout,
                        format!("no answer within the deadline ({left:?})"),
                    )
                    .billed(Billed::Unknown))
                }),
        }
    }

    /// Sends a request once and reads the body within the limit. Any HTTP status is returned as is: the
    /// adapter's `parse_error` classifies non-success statuses. Transport failures are classified by
    /// [`transport_error`].
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<RawResponse, ProviderError> {
        let mut response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        // Reading the body needs none of the headers: move them out rather than copying the map.
        let headers = std::mem::take(response.headers_mut());
        let body = read_limited(&mut response, self.max_body_bytes)
            .await
            .map_err(|e| ProviderError::from(e).status(Some(status.as_u16())))?;
        Ok(RawResponse {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_join_and_follow() {
        let base = BaseUrl::parse("https://api.replicate.com/v1").unwrap();
        assert_eq!(base.as_url().as_str(), "https://api.replicate.com/v1/");
        assert_eq!(
            base.join("/models/black-forest-labs/flux-schnell/predictions")
                .unwrap()
                .as_str(),
            "https://api.replicate.com/v1/models/black-forest-labs/flux-schnell/predictions"
        );
        let fal = BaseUrl::parse("https://queue.fal.run/").unwrap();
        assert_eq!(
            fal.join("fal-ai/flux/dev").unwrap().as_str(),
            "https://queue.fal.run/fal-ai/flux/dev"
        );
        assert!(fal.join("fal-ai/../../etc").is_err());
        assert!(fal.join("a//b").is_err());
        // Segments are percent-encoded, never interpreted.
        assert_eq!(
            fal.join("a?b=c").unwrap().as_str(),
            "https://queue.fal.run/a%3Fb=c"
        );

        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://user:pw@x").is_err());
        assert!(BaseUrl::parse("https://x/?q=1").is_err());
        assert!(BaseUrl::parse("not a url").is_err());

        // Follow-ups: https anywhere, or the base's own origin.
        assert!(fal.follow("https://queue.fal.run/fal-ai/flux/requests/1").is_ok());
        assert!(fal.follow("http://evil.example/steal").is_err());
        let local = BaseUrl::parse("http://127.0.0.1:8080").unwrap();
        assert!(local.follow("http://127.0.0.1:8080/x/requests/1/status").is_ok());
        assert!(local.follow("http://127.0.0.1:9090/x").is_err());
        assert!(local.follow("/relative").is_err());
    }

    #[test]
    fn config_serde_is_strict_and_humane() {
        let c: HttpConfig =
            serde_json::from_value(serde_json::json!({"request_timeout": "30s", "max_body_bytes": 1024}))
                .unwrap();
        assert_eq!(c.request_timeout, Duration::from_secs(30));
        assert_eq!(c.max_body_bytes, 1024);
        assert_eq!(c.connect_timeout, HttpConfig::default().connect_timeout);
        assert!(serde_json::from_value::<HttpConfig>(serde_json::json!({"retries": 3})).is_err());
        assert!(c.build_client().is_ok());
    }

    #[test]
    fn snippets_cut_on_characters() {
        assert_eq!(snippet("héllo".as_bytes(), 2), "hé…");
        assert_eq!(snippet(b"ok", 10), "ok");
    }
}
