//! The one place fal's failures are classified.

use std::fmt;

use genroute_core::{Billed, ErrorKind, ProviderError};
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{Classification, classify, header_str, snippet};
use serde::Deserialize;
use serde_json::Value;

/// Which call failed: billing differs (a submit refused is never billed; a request that failed while
/// running may have used GPU time).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// `POST /{model}` (queue submit).
    Submit,
    /// `GET status_url`.
    Status,
    /// `GET response_url`: a request that failed while running reports its error here.
    Result,
    /// `PUT cancel_url`.
    Cancel,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Submit => "submit",
            Phase::Status => "status",
            Phase::Result => "result",
            Phase::Cancel => "cancel",
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    detail: Option<Value>,
    #[serde(default)]
    error_type: Option<String>,
}

/// The request id header fal sends.
pub const REQUEST_ID_HEADER: &str = "x-fal-request-id";

/// Classifies a non-success fal response.
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | 400 `bad_request`, 422 validation (`detail` list or string) at submit | InvalidRequest | no | no |
/// | 422 returned by the result GET (failed while running) | InvalidRequest | no | unknown |
/// | `content_policy_violation` (detail type) | ContentRejected | no | no (unknown at result) |
/// | 401; 403 other than a lock | Auth | no | no |
/// | 403 "User is locked" / "Exhausted balance" | InsufficientCredits | no | no |
/// | 404 (unknown request or model) | InvalidRequest | no | no |
/// | 429 (direct `fal.run`; `Retry-After` honoured) | RateLimited | yes | no |
/// | 499 `client_disconnected` / `client_cancelled` | Cancelled | no | unknown |
/// | 500 `runner_server_error` / `internal_error` | Unavailable | yes | no |
/// | 502 `runner_incomplete_response` | Unavailable | yes | no |
/// | 503 `runner_scheduling_failure`, `runner_connection_*`, `runner_disconnected` | Unavailable | yes | no |
/// | 504 `request_timeout` / `startup_timeout` | Timeout | yes | no |
/// | 504 with `X-Fal-Request-Timeout-Type` (our start timeout passed) | Timeout | **no** | no |
/// | any of the above with `X-Fal-Retryable: true/false` | as above | **as the header says** | as above |
///
/// fal never bills 5xx. The code is `X-Fal-Error-Type`, else the body's `error_type`, else the first
/// validation error's `type`.
pub fn parse_error(phase: Phase, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (detail, first_type) = match parsed.as_ref().and_then(|b| b.detail.as_ref()) {
        Some(Value::String(s)) => (s.clone(), None),
        Some(Value::Array(items)) => {
            let (first_type, text) = genroute_http::validation_detail(items);
            (text, first_type)
        }
        Some(other) => (other.to_string(), None),
        None => (snippet(body, 300), None),
    };
    let code = header_str(headers, "x-fal-error-type")
        .map(str::to_owned)
        .or_else(|| parsed.as_ref().and_then(|b| b.error_type.clone()))
        .or(first_type);
    let lower = detail.to_ascii_lowercase();

    use ErrorKind as K;
    let mut class = if status == StatusCode::FORBIDDEN
        && (lower.contains("user is locked") || lower.contains("exhausted balance"))
    {
        Classification::new(K::InsufficientCredits)
    } else if status == StatusCode::GATEWAY_TIMEOUT && headers.contains_key("x-fal-request-timeout-type") {
        // Our X-Fal-Request-Start-Timeout passed before the job started: retrying the same way would
        // wait the same way.
        Classification::new(K::Timeout).temporary(false)
    } else {
        match code.as_deref() {
            Some("request_timeout" | "startup_timeout") => Classification::new(K::Timeout),
            Some(
                "runner_scheduling_failure"
                | "runner_disconnected"
                | "runner_incomplete_response"
                | "runner_server_error"
                | "internal_error",
            ) => Classification::new(K::Unavailable),
            Some(c) if c.starts_with("runner_connection") => Classification::new(K::Unavailable),
            Some("client_disconnected" | "client_cancelled") => {
                Classification::new(K::Cancelled).billed(Billed::Unknown)
            }
            Some("bad_request") => Classification::new(K::InvalidRequest),
            Some("content_policy_violation") => Classification::new(K::ContentRejected),
            other => classify(status, other),
        }
    };
    if status.is_server_error() {
        let started = !headers.contains_key("x-fal-request-timeout-type");
        class.billed = if phase == Phase::Result && code.is_none() && started {
            // The job reported COMPLETED and a bare 5xx (no runner `error_type`) came back from the result
            // fetch: the gateway failed, not the run, and fal bills a completed run. Billed unknown, with the
            // request id attached by the caller, makes the router re-fetch (resume) instead of re-creating.
            Billed::Unknown
        } else {
            // A runner-reported failure, or a job that never started: fal never bills 5xx.
            Billed::No
        };
    }
    if phase == Phase::Result
        && matches!(class.kind, K::InvalidRequest | K::ContentRejected)
        && status != StatusCode::NOT_FOUND
    {
        // The runner took the job and failed on it: GPU time may have been billed.
        class.billed = Billed::Unknown;
    }
    if class.kind != K::InsufficientCredits {
        match header_str(headers, "x-fal-retryable").map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("true") => class.temporary = true,
            Some(v) if v.eq_ignore_ascii_case("false") => class.temporary = false,
            _ => {}
        }
    }
    let message = format!("fal {phase}: {detail}");
    class.into_error(status, headers, Some(REQUEST_ID_HEADER), code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_http::reqwest::header::HeaderValue;

    fn h(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_static(v));
        }
        m
    }

    fn s(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    #[test]
    fn every_documented_failure() {
        let none = HeaderMap::new();
        let table: Vec<(Phase, u16, HeaderMap, &str, ErrorKind, bool, Billed)> = vec![
            (
                Phase::Submit,
                422,
                none.clone(),
                r#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Result,
                422,
                none.clone(),
                r#"{"detail":[{"loc":["body","image_url"],"msg":"cannot fetch","type":"file_download_error"}]}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::Unknown,
            ),
            (
                Phase::Submit,
                422,
                none.clone(),
                r#"{"detail":"legacy string detail"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Submit,
                400,
                none.clone(),
                r#"{"detail":"bad","error_type":"bad_request"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Result,
                422,
                none.clone(),
                r#"{"detail":[{"msg":"nsfw","type":"content_policy_violation"}]}"#,
                ErrorKind::ContentRejected,
                false,
                Billed::Unknown,
            ),
            (
                Phase::Submit,
                401,
                none.clone(),
                r#"{"detail":"No user found for Key ID and Secret"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                Phase::Submit,
                403,
                none.clone(),
                r#"{"detail":"User is locked. Reason: Exhausted balance. Top up at fal.ai/dashboard/billing"}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                Phase::Submit,
                403,
                none.clone(),
                r#"{"detail":"Forbidden"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                Phase::Status,
                404,
                none.clone(),
                r#"{"detail":"Request not found"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Submit,
                429,
                h(&[("retry-after", "4")]),
                r#"{"detail":"Too many requests"}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                499,
                none.clone(),
                r#"{"detail":"x","error_type":"client_disconnected"}"#,
                ErrorKind::Cancelled,
                false,
                Billed::Unknown,
            ),
            (
                // A gateway 502 on the result fetch of a COMPLETED job (no runner error type): the run was
                // billed, so billing is unknown and the caller re-fetches instead of re-creating.
                Phase::Result,
                502,
                none.clone(),
                "<html>Bad Gateway</html>",
                ErrorKind::Unavailable,
                true,
                Billed::Unknown,
            ),
            (
                Phase::Result,
                500,
                h(&[("x-fal-error-type", "runner_server_error")]),
                r#"{"detail":"boom","error_type":"runner_server_error"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                500,
                none.clone(),
                r#"{"detail":"boom","error_type":"internal_error"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                502,
                none.clone(),
                r#"{"detail":"x","error_type":"runner_incomplete_response"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                503,
                none.clone(),
                r#"{"detail":"x","error_type":"runner_scheduling_failure"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                503,
                none.clone(),
                r#"{"detail":"x","error_type":"runner_connection_refused"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                503,
                none.clone(),
                r#"{"detail":"x","error_type":"runner_disconnected"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                504,
                none.clone(),
                r#"{"detail":"x","error_type":"request_timeout"}"#,
                ErrorKind::Timeout,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                504,
                none.clone(),
                r#"{"detail":"x","error_type":"startup_timeout"}"#,
                ErrorKind::Timeout,
                true,
                Billed::No,
            ),
            (
                Phase::Result,
                504,
                h(&[("x-fal-request-timeout-type", "user")]),
                r#"{"detail":"Request timed out before starting"}"#,
                ErrorKind::Timeout,
                false,
                Billed::No,
            ),
            (
                Phase::Result,
                500,
                h(&[("x-fal-retryable", "false")]),
                r#"{"detail":"x","error_type":"internal_error"}"#,
                ErrorKind::Unavailable,
                false,
                Billed::No,
            ),
            (
                Phase::Result,
                422,
                h(&[("x-fal-retryable", "true")]),
                r#"{"detail":"flaky"}"#,
                ErrorKind::InvalidRequest,
                true,
                Billed::Unknown,
            ),
            (
                Phase::Submit,
                502,
                none.clone(),
                "<html>bad gateway</html>",
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
        ];
        for (phase, code, headers, body, kind, temporary, billed) in table {
            let e = parse_error(phase, s(code), &headers, body.as_bytes());
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{phase} {code} {body}"
            );
            assert_eq!(e.http_status(), Some(code));
        }
    }

    #[test]
    fn carries_code_message_request_id_and_retry_after() {
        let e = parse_error(
            Phase::Submit,
            s(422),
            &h(&[("x-fal-request-id", "req_abc")]),
            br#"{"detail":[{"loc":["body","prompt"],"msg":"field required","type":"missing"}]}"#,
        );
        assert_eq!(e.message(), "fal submit: body.prompt: field required");
        assert_eq!(e.provider_code(), Some("missing"));
        assert_eq!(e.provider_request_id(), Some("req_abc"));
        let e = parse_error(Phase::Submit, s(429), &h(&[("retry-after", "4")]), b"{}");
        assert_eq!(e.retry_after_hint(), Some(std::time::Duration::from_secs(4)));
    }
}
