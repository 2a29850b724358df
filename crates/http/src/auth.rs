//! Credentials as HTTP headers.
//!
//! Each provider authenticates one way: fal `Authorization: Key <key>`; Replicate, OpenAI and Runway
//! `Authorization: Bearer <key>`; Scenario `Authorization: Basic base64(key:secret)`; ElevenLabs
//! `xi-api-key: <key>`; BFL `x-key: <key>`. [`Auth`] builds the header once, marks it *sensitive* (so
//! `http`'s `Debug` prints `Sensitive` and HTTP/2 never indexes it) and never prints the secret in its own
//! `Debug`.

use std::fmt;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};

use crate::error::HttpError;

/// Header names that carry credentials; [`strip_sensitive`] removes them (and any header marked sensitive).
pub const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-key",
    "xi-api-key",
    "x-api-key",
    "api-key",
];

/// How requests authenticate. Cheap to clone; `Debug` never shows the secret.
#[derive(Clone)]
pub struct Auth {
    header: Option<(HeaderName, HeaderValue)>,
    scheme: &'static str,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.header {
            Some((name, _)) => write!(f, "Auth({name}: {} [redacted])", self.scheme),
            None => f.write_str("Auth(none)"),
        }
    }
}

fn sensitive(what: &str, value: &str) -> Result<HeaderValue, HttpError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| HttpError::InvalidCredential {
        what: what.to_owned(),
    })?;
    v.set_sensitive(true);
    Ok(v)
}

impl Auth {
    /// No authentication (tests, emulators, public endpoints).
    pub fn none() -> Self {
        Self {
            header: None,
            scheme: "none",
        }
    }

    /// fal: `Authorization: Key <key>`.
    pub fn fal_key(key: &SecretString) -> Result<Self, HttpError> {
        let value = sensitive("Authorization", &format!("Key {}", key.expose_secret()))?;
        Ok(Self {
            header: Some((AUTHORIZATION, value)),
            scheme: "Key",
        })
    }

    /// `Authorization: Bearer <token>` (Replicate, OpenAI, Runway, Stability).
    pub fn bearer(token: &SecretString) -> Result<Self, HttpError> {
        let value = sensitive("Authorization", &format!("Bearer {}", token.expose_secret()))?;
        Ok(Self {
            header: Some((AUTHORIZATION, value)),
            scheme: "Bearer",
        })
    }

    /// `Authorization: Basic base64(<key>:<secret>)` (Scenario).
    pub fn basic(key: &SecretString, secret: &SecretString) -> Result<Self, HttpError> {
        let raw = format!("{}:{}", key.expose_secret(), secret.expose_secret());
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw.as_bytes());
        let value = sensitive("Authorization", &format!("Basic {encoded}"))?;
        Ok(Self {
            header: Some((AUTHORIZATION, value)),
            scheme: "Basic",
        })
    }

    /// A custom header holding the key as is: `xi-api-key` (ElevenLabs), `x-key` (BFL).
    pub fn header(name: &'static str, key: &SecretString) -> Result<Self, HttpError> {
        let header_name = HeaderName::from_static(name);
        let value = sensitive(name, key.expose_secret())?;
        Ok(Self {
            header: Some((header_name, value)),
            scheme: "custom header",
        })
    }

    /// The header to send, if any (value marked sensitive).
    pub fn header_pair(&self) -> Option<(&HeaderName, &HeaderValue)> {
        self.header.as_ref().map(|(n, v)| (n, v))
    }

    /// Adds the credential to a request.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.header {
            Some((name, value)) => request.header(name.clone(), value.clone()),
            None => request,
        }
    }
}

/// A copy of `headers` without credentials: every name in [`SENSITIVE_HEADERS`] and every value marked
/// sensitive is dropped. Use it before attaching headers to anything that outlives the call (errors, logs).
pub fn strip_sensitive(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        if value.is_sensitive() || SENSITIVE_HEADERS.contains(&name.as_str()) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn schemes_and_redaction() {
        let fal = Auth::fal_key(&secret("id:sec")).unwrap();
        let (name, value) = fal.header_pair().unwrap();
        assert_eq!(name, "authorization");
        assert_eq!(value.to_str().unwrap(), "Key id:sec");
        assert!(value.is_sensitive());
        let dbg = format!("{fal:?} {value:?}");
        assert!(!dbg.contains("id:sec"), "{dbg}");

        let bearer = Auth::bearer(&secret("r8_x")).unwrap();
        assert_eq!(bearer.header_pair().unwrap().1.to_str().unwrap(), "Bearer r8_x");

        // base64("key:secret") = "a2V5OnNlY3JldA=="
        let basic = Auth::basic(&secret("key"), &secret("secret")).unwrap();
        assert_eq!(
            basic.header_pair().unwrap().1.to_str().unwrap(),
            "Basic a2V5OnNlY3JldA=="
        );

        let xi = Auth::header("xi-api-key", &secret("abc")).unwrap();
        let (name, value) = xi.header_pair().unwrap();
        assert_eq!(name, "xi-api-key");
        assert_eq!(value.to_str().unwrap(), "abc");
        assert!(!format!("{xi:?}").contains("abc"));
        assert!(Auth::none().header_pair().is_none());
    }

    #[test]
    fn bad_credentials_do_not_echo_the_value() {
        let err = Auth::bearer(&secret("line\nbreak-secret")).unwrap_err();
        assert!(!err.to_string().contains("break-secret"), "{err}");
    }

    #[test]
    fn strip_removes_credentials_and_sensitive_values() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("xi-api-key", HeaderValue::from_static("k"));
        let mut marked = HeaderValue::from_static("s");
        marked.set_sensitive(true);
        h.insert("x-custom-token", marked);
        h.insert("x-request-id", HeaderValue::from_static("req_1"));
        let clean = strip_sensitive(&h);
        assert_eq!(clean.len(), 1);
        assert_eq!(clean.get("x-request-id").unwrap(), "req_1");
    }
}
