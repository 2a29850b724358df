//! The one place ElevenLabs' failures are classified.

use genroute_core::ProviderError;
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{classify, snippet};
use serde::Deserialize;
use serde_json::Value;

/// The request id header ElevenLabs sends.
pub const REQUEST_ID_HEADER: &str = "request-id";

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<Value>,
}

/// The detail's code and message: `{"detail":{"status":"<code>","message":".."}}` (newer answers also
/// carry `code`/`type`), a FastAPI validation list `{"detail":[{"loc","msg","type"}]}`, or a bare string.
fn read_detail(body: &[u8]) -> (Option<String>, String) {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    match parsed.and_then(|b| b.detail) {
        Some(Value::Object(obj)) => {
            let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_owned);
            let code = text("status").or_else(|| text("code"));
            let message = text("message").unwrap_or_else(|| Value::Object(obj.clone()).to_string());
            (code, message)
        }
        Some(Value::Array(items)) => {
            let (code, text) = genroute_http::validation_detail(&items);
            (code, text)
        }
        Some(Value::String(s)) => (None, s),
        Some(other) => (None, other.to_string()),
        None => (None, snippet(body, 300)),
    }
}

/// Classifies a non-success ElevenLabs response.
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | 401 `quota_exceeded` (no credits left; ElevenLabs has no 402) | InsufficientCredits | no | no |
/// | 401 `invalid_api_key`, other 401/403 | Auth | no | no |
/// | 429 `too_many_concurrent_requests` | RateLimited | yes | no |
/// | 429 `system_busy` | RateLimited | yes | no |
/// | 400 `max_character_limit_exceeded`, other 400, 404 (`voice_not_found`) | InvalidRequest | no | no |
/// | 422 FastAPI validation list | InvalidRequest | no | no |
/// | 500, 502, 503 | Unavailable | yes | no |
/// | 504 | Timeout | yes | unknown |
///
/// The code is the detail's `status` (else `code`, else the first validation `type`); `Retry-After` is
/// kept on temporary errors; the request id is the `request-id` header.
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let (code, message) = read_detail(body);
    // The shared table already knows ElevenLabs' codes: quota_exceeded → InsufficientCredits (even on
    // 401), invalid_api_key → Auth, too_many_concurrent_requests and system_busy → RateLimited.
    let class = classify(status, code.as_deref());
    class.into_error(
        status,
        headers,
        Some(REQUEST_ID_HEADER),
        code,
        format!("elevenlabs: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_core::{Billed, ErrorKind};
    use genroute_http::reqwest::header::HeaderValue;

    fn s(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn every_documented_failure() {
        let table: Vec<(u16, &str, ErrorKind, bool, Billed)> = vec![
            (
                401,
                r#"{"detail":{"status":"quota_exceeded","message":"This request exceeds your quota of 10000. You have 12 credits remaining"}}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                401,
                r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                429,
                r#"{"detail":{"status":"too_many_concurrent_requests","message":"Too many concurrent requests"}}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (
                429,
                r#"{"detail":{"status":"system_busy","message":"busy"}}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (
                400,
                r#"{"detail":{"status":"max_character_limit_exceeded","message":"too long"}}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                422,
                r#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"missing"}]}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                404,
                r#"{"detail":{"status":"voice_not_found","message":"no such voice"}}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                401,
                r#"{"detail":"Unauthorized"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (500, "oops", ErrorKind::Unavailable, true, Billed::No),
            (503, "", ErrorKind::Unavailable, true, Billed::No),
            (504, "", ErrorKind::Timeout, true, Billed::Unknown),
        ];
        for (code, body, kind, temporary, billed) in table {
            let e = parse_error(s(code), &HeaderMap::new(), body.as_bytes());
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{code} {body}"
            );
            assert_eq!(e.http_status(), Some(code));
        }
    }

    #[test]
    fn carries_code_message_request_id_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("request-id", HeaderValue::from_static("req-9"));
        h.insert("retry-after", HeaderValue::from_static("2"));
        let e = parse_error(
            s(429),
            &h,
            br#"{"detail":{"status":"system_busy","message":"We are busy"}}"#,
        );
        assert_eq!(e.provider_code(), Some("system_busy"));
        assert_eq!(e.provider_request_id(), Some("req-9"));
        assert_eq!(e.retry_after_hint(), Some(std::time::Duration::from_secs(2)));
        assert_eq!(e.message(), "elevenlabs: We are busy");
        let e = parse_error(
            s(422),
            &HeaderMap::new(),
            br#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"missing"}]}"#,
        );
        assert_eq!(e.message(), "elevenlabs: body.text: field required");
        assert_eq!(e.provider_code(), Some("missing"));
    }
}
