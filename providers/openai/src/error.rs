//! The one place OpenAI's failures are classified.

use genroute_core::ProviderError;
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{classify, classify_status, snippet};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
struct Envelope {
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    code: Option<Value>,
}

/// The request id header OpenAI sends.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Classifies a non-success OpenAI response (`{"error":{"message","type","param","code"}}`). The code
/// decides where it is known, then the type, then the status; `x-should-retry` has the last word on
/// retrying; `retry-after-ms` / `retry-after` give the wait.
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | 400 `invalid_request_error` (bad size, param...) | InvalidRequest | no | no |
/// | 400 `content_policy_violation` / `moderation_blocked` | ContentRejected | no | no |
/// | 400 `billing_hard_limit_reached` | InsufficientCredits | no | no |
/// | 401 (`invalid_api_key`...), 403 (unverified organization, region) | Auth | no | no |
/// | 404 (unknown model) | InvalidRequest | no | no |
/// | 429 `rate_limit_exceeded` | RateLimited | yes | no |
/// | 429 `insufficient_quota` | InsufficientCredits | **no** | no |
/// | 500, 502, 503 | Unavailable | yes | no |
/// | 504 | Timeout | yes | unknown |
/// | `x-should-retry: true/false` present | as above | as the header says | as above |
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let err = serde_json::from_slice::<Envelope>(body)
        .ok()
        .and_then(|e| e.error);
    let code = err.as_ref().and_then(|e| match &e.code {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    });
    let kind = err.as_ref().and_then(|e| e.kind.clone());
    let by_code = classify(status, code.as_deref());
    let class = if by_code == classify_status(status) {
        classify(status, kind.as_deref())
    } else {
        by_code
    }
    .with_should_retry(headers);
    let message = match &err {
        Some(e) => {
            let m = e.message.clone().unwrap_or_default();
            match &e.param {
                Some(p) => format!("openai: {m} (param {p})"),
                None => format!("openai: {m}"),
            }
        }
        None => format!("openai: {}", snippet(body, 300)),
    };
    class.into_error(status, headers, Some(REQUEST_ID_HEADER), code.or(kind), message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_core::{Billed, ErrorKind};
    use genroute_http::reqwest::header::HeaderValue;
    use std::time::Duration;

    fn body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
        serde_json::to_vec(
            &serde_json::json!({"error": {"message": message, "type": kind, "param": null, "code": code}}),
        )
        .unwrap()
    }

    #[test]
    fn every_documented_failure() {
        let none = HeaderMap::new();
        let cases: Vec<(u16, Vec<u8>, ErrorKind, bool)> = vec![
            (
                400,
                body("Invalid size", "invalid_request_error", Some("invalid_value")),
                ErrorKind::InvalidRequest,
                false,
            ),
            (
                400,
                body(
                    "Your request was rejected by the safety system",
                    "invalid_request_error",
                    Some("content_policy_violation"),
                ),
                ErrorKind::ContentRejected,
                false,
            ),
            (
                400,
                body(
                    "Rejected by moderation",
                    "image_generation_user_error",
                    Some("moderation_blocked"),
                ),
                ErrorKind::ContentRejected,
                false,
            ),
            (
                400,
                body(
                    "Billing hard limit has been reached",
                    "invalid_request_error",
                    Some("billing_hard_limit_reached"),
                ),
                ErrorKind::InsufficientCredits,
                false,
            ),
            (
                401,
                body(
                    "Incorrect API key provided",
                    "invalid_request_error",
                    Some("invalid_api_key"),
                ),
                ErrorKind::Auth,
                false,
            ),
            (
                403,
                body(
                    "Your organization must be verified to use the model gpt-image-1",
                    "invalid_request_error",
                    None,
                ),
                ErrorKind::Auth,
                false,
            ),
            (
                404,
                body(
                    "The model does not exist",
                    "invalid_request_error",
                    Some("model_not_found"),
                ),
                ErrorKind::InvalidRequest,
                false,
            ),
            (
                429,
                body(
                    "Rate limit reached for images per minute",
                    "requests",
                    Some("rate_limit_exceeded"),
                ),
                ErrorKind::RateLimited,
                true,
            ),
            (
                429,
                body(
                    "You exceeded your current quota",
                    "insufficient_quota",
                    Some("insufficient_quota"),
                ),
                ErrorKind::InsufficientCredits,
                false,
            ),
            (
                429,
                body("You exceeded your current quota", "insufficient_quota", None),
                ErrorKind::InsufficientCredits,
                false,
            ),
            (
                500,
                body("The server had an error", "server_error", None),
                ErrorKind::Unavailable,
                true,
            ),
            (
                503,
                b"<html>overloaded</html>".to_vec(),
                ErrorKind::Unavailable,
                true,
            ),
        ];
        for (status, b, kind, temporary) in cases {
            let e = parse_error(StatusCode::from_u16(status).unwrap(), &none, &b);
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &Billed::No),
                "{status} {e}"
            );
        }
    }

    #[test]
    fn headers_request_id_retry_after_and_should_retry() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("req_123"));
        h.insert("retry-after-ms", HeaderValue::from_static("1500"));
        h.insert("retry-after", HeaderValue::from_static("2"));
        let e = parse_error(
            StatusCode::TOO_MANY_REQUESTS,
            &h,
            &body("slow down", "requests", Some("rate_limit_exceeded")),
        );
        assert_eq!(e.provider_request_id(), Some("req_123"));
        assert_eq!(e.retry_after_hint(), Some(Duration::from_millis(1500)));
        assert_eq!(e.provider_code(), Some("rate_limit_exceeded"));
        h.insert("x-should-retry", HeaderValue::from_static("false"));
        let e = parse_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &h,
            &body("x", "server_error", None),
        );
        assert!(!e.is_temporary());
        h.insert("x-should-retry", HeaderValue::from_static("true"));
        let e = parse_error(
            StatusCode::CONFLICT,
            &h,
            &body("x", "invalid_request_error", None),
        );
        assert!(e.is_temporary());
        let e = parse_error(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &serde_json::to_vec(&serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "size", "code": null}})).unwrap(),
        );
        assert_eq!(e.message(), "openai: bad (param size)");
        assert_eq!(e.provider_code(), Some("invalid_request_error"));
    }
}
