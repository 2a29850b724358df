//! The one status → error classification every adapter's `parse_error` builds on.
//!
//! [`classify`] turns an HTTP status plus an optional provider error code into a [`Classification`]
//! (kind, temporary?, billed?). Adapters start from it and override what their provider documents
//! differently (fal's 403 "User is locked", a start-timeout 504...), then call
//! [`Classification::into_error`] to build the [`ProviderError`] with the status, `Retry-After` and
//! request id filled in.

use genroute_core::{Billed, ErrorKind, ProviderError};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;

use crate::retry_after::{retry_after, should_retry_override};

/// What a failure is, whether retrying could help, and whether the provider billed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Classification {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Whether a retry could succeed.
    pub temporary: bool,
    /// Whether the provider charged for the failed call.
    pub billed: Billed,
}

impl Classification {
    /// A kind with its default temporariness and [`Billed::No`].
    pub fn new(kind: ErrorKind) -> Self {
        Self {
            kind,
            temporary: kind.temporary_by_default(),
            billed: Billed::No,
        }
    }

    /// Overrides the temporary flag.
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// Overrides billing.
    pub fn billed(mut self, billed: Billed) -> Self {
        self.billed = billed;
        self
    }

    /// Applies the provider's `x-should-retry: true|false` header, when present, to the temporary flag.
    pub fn with_should_retry(mut self, headers: &HeaderMap) -> Self {
        if let Some(v) = should_retry_override(headers) {
            self.temporary = v;
        }
        self
    }

    /// Builds the error: kind, temporary, billed, HTTP status, `Retry-After`/`retry-after-ms` (kept only
    /// when temporary), the request id from `request_id_header` (if given and present) and the code.
    pub fn into_error(
        self,
        status: StatusCode,
        headers: &HeaderMap,
        request_id_header: Option<&str>,
        code: Option<String>,
        message: impl Into<String>,
    ) -> ProviderError {
        let retry = if self.temporary {
            retry_after(headers)
        } else {
            None
        };
        let request_id = request_id_header
            .and_then(|h| header_str(headers, h))
            .map(str::to_owned);
        ProviderError::new(self.kind, message)
            .temporary(self.temporary)
            .billed(self.billed)
            .status(Some(status.as_u16()))
            .retry_after(retry)
            .request_id(request_id)
            .code(code)
    }
}

/// A header's value as text, if present and valid UTF-8/ASCII.
pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The default reading of an HTTP status alone.
///
/// | status | kind | temporary | billed |
/// |---|---|---|---|
/// | 400, 404, 405, 410, 413, 415, 422, other 4xx | InvalidRequest | no | no |
/// | 401, 403 | Auth | no | no |
/// | 402 | InsufficientCredits | no | no |
/// | 408 | Timeout | yes | no |
/// | 409, 423, 425 | Unavailable | yes | no |
/// | 429 | RateLimited | yes | no |
/// | 499 | Cancelled | no | unknown |
/// | 500, 502, 503, other 5xx | Unavailable | yes | no |
/// | 504 | Timeout | yes | unknown |
/// | anything else (1xx, 3xx, 2xx given as failure) | MalformedResponse | no | unknown |
pub fn classify_status(status: StatusCode) -> Classification {
    use ErrorKind as K;
    match status.as_u16() {
        401 | 403 => Classification::new(K::Auth),
        402 => Classification::new(K::InsufficientCredits),
        408 => Classification::new(K::Timeout),
        409 | 423 | 425 => Classification::new(K::Unavailable).temporary(true),
        429 => Classification::new(K::RateLimited),
        499 => Classification::new(K::Cancelled).billed(Billed::Unknown),
        504 => Classification::new(K::Timeout).billed(Billed::Unknown),
        400..=498 => Classification::new(K::InvalidRequest),
        500..=599 => Classification::new(K::Unavailable),
        _ => Classification::new(K::MalformedResponse).billed(Billed::Unknown),
    }
}

/// [`classify_status`], refined by a provider error code or type when it is one of the codes providers
/// share (matched case-insensitively):
///
/// | code | kind | temporary |
/// |---|---|---|
/// | `insufficient_quota`, `billing_hard_limit_reached`, `quota_exceeded`, `insufficient_credits`, `insufficient_balance` | InsufficientCredits | no |
/// | `rate_limit_exceeded`, `too_many_concurrent_requests`, `system_busy`, `rate_limited` | RateLimited | yes |
/// | `content_policy_violation`, `moderation_blocked`, `content_moderation`, `content_filtered` | ContentRejected | no |
/// | `invalid_api_key`, `unauthorized`, `authentication_error` | Auth | no |
///
/// Billing stays [`Billed::No`] for all of these (the call was refused); the status decides otherwise.
pub fn classify(status: StatusCode, code: Option<&str>) -> Classification {
    use ErrorKind as K;
    let base = classify_status(status);
    let Some(code) = code else { return base };
    let code = code.to_ascii_lowercase();
    let kind = match code.as_str() {
        "insufficient_quota"
        | "billing_hard_limit_reached"
        | "quota_exceeded"
        | "insufficient_credits"
        | "insufficient_balance" => K::InsufficientCredits,
        "rate_limit_exceeded" | "too_many_concurrent_requests" | "system_busy" | "rate_limited" => {
            K::RateLimited
        }
        "content_policy_violation" | "moderation_blocked" | "content_moderation" | "content_filtered" => {
            K::ContentRejected
        }
        "invalid_api_key" | "unauthorized" | "authentication_error" => K::Auth,
        _ => return base,
    };
    Classification::new(kind).billed(Billed::No)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    fn s(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn status_table() {
        let cases = [
            (400, ErrorKind::InvalidRequest, false, Billed::No),
            (401, ErrorKind::Auth, false, Billed::No),
            (402, ErrorKind::InsufficientCredits, false, Billed::No),
            (403, ErrorKind::Auth, false, Billed::No),
            (404, ErrorKind::InvalidRequest, false, Billed::No),
            (408, ErrorKind::Timeout, true, Billed::No),
            (409, ErrorKind::Unavailable, true, Billed::No),
            (422, ErrorKind::InvalidRequest, false, Billed::No),
            (429, ErrorKind::RateLimited, true, Billed::No),
            (499, ErrorKind::Cancelled, false, Billed::Unknown),
            (500, ErrorKind::Unavailable, true, Billed::No),
            (502, ErrorKind::Unavailable, true, Billed::No),
            (503, ErrorKind::Unavailable, true, Billed::No),
            (504, ErrorKind::Timeout, true, Billed::Unknown),
            (302, ErrorKind::MalformedResponse, false, Billed::Unknown),
        ];
        for (code, kind, temporary, billed) in cases {
            let c = classify_status(s(code));
            assert_eq!(
                c,
                Classification {
                    kind,
                    temporary,
                    billed
                },
                "{code}"
            );
        }
    }

    #[test]
    fn codes_refine_the_status() {
        // Same status, opposite verdicts: OpenAI's two 429s.
        let quota = classify(s(429), Some("insufficient_quota"));
        assert_eq!(quota.kind, ErrorKind::InsufficientCredits);
        assert!(!quota.temporary);
        let rate = classify(s(429), Some("rate_limit_exceeded"));
        assert_eq!(rate.kind, ErrorKind::RateLimited);
        assert!(rate.temporary);
        assert_eq!(
            classify(s(400), Some("moderation_blocked")).kind,
            ErrorKind::ContentRejected
        );
        assert_eq!(
            classify(s(400), Some("Billing_Hard_Limit_Reached")).kind,
            ErrorKind::InsufficientCredits
        );
        assert_eq!(
            classify(s(401), Some("quota_exceeded")).kind,
            ErrorKind::InsufficientCredits
        );
        // Unknown codes fall back to the status.
        assert_eq!(classify(s(400), Some("whatever")), classify_status(s(400)));
    }

    #[test]
    fn into_error_fills_everything_and_honours_should_retry() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("7"));
        h.insert("x-request-id", HeaderValue::from_static("req_9"));
        let e = classify(s(429), Some("rate_limit_exceeded")).into_error(
            s(429),
            &h,
            Some("x-request-id"),
            Some("rate_limit_exceeded".into()),
            "slow down",
        );
        assert_eq!(e.kind(), ErrorKind::RateLimited);
        assert!(e.is_temporary());
        assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(7)));
        assert_eq!(e.provider_request_id(), Some("req_9"));
        assert_eq!(e.http_status(), Some(429));
        assert_eq!(e.provider_code(), Some("rate_limit_exceeded"));
        assert_eq!(e.billing(), &Billed::No);

        h.insert("x-should-retry", HeaderValue::from_static("false"));
        let e = classify(s(500), None)
            .with_should_retry(&h)
            .into_error(s(500), &h, None, None, "x");
        assert!(!e.is_temporary());
        // Not temporary: no retry hint is passed on.
        assert_eq!(e.retry_after_hint(), None);
        assert_eq!(e.provider_request_id(), None);
    }
}

/// Reads a FastAPI validation list (`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`, as fal,
/// ElevenLabs and BFL answer 422s) into the first item's `type` (a provider code) and one readable line,
/// `loc.path: msg; ...`.
pub fn validation_detail(items: &[serde_json::Value]) -> (Option<String>, String) {
    use serde_json::Value;
    let first_type = items
        .iter()
        .find_map(|i| i.get("type").and_then(Value::as_str))
        .map(str::to_owned);
    let parts: Vec<String> = items
        .iter()
        .map(|i| {
            let loc = i
                .get("loc")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .unwrap_or_default();
            let msg = i.get("msg").and_then(Value::as_str).unwrap_or("invalid");
            if loc.is_empty() {
                msg.to_owned()
            } else {
                format!("{loc}: {msg}")
            }
        })
        .collect();
    (first_type, parts.join("; "))
}

#[cfg(test)]
mod validation_tests {
    use super::validation_detail;
    use serde_json::json;

    #[test]
    fn fastapi_lists_become_a_code_and_one_line() {
        let items = json!([
            {"loc": ["body", "prompt"], "msg": "field required", "type": "value_error.missing"},
            {"loc": ["body", "num_images", 0], "msg": "too big", "type": "value_error.number"},
            {"msg": "bad"}
        ]);
        let (code, text) = validation_detail(items.as_array().unwrap());
        assert_eq!(code.as_deref(), Some("value_error.missing"));
        assert_eq!(
            text,
            "body.prompt: field required; body.num_images.0: too big; bad"
        );
        assert_eq!(validation_detail(&[]), (None, String::new()));
    }
}
