//! The one place Replicate's failures are classified: HTTP errors ([`parse_error`]) and predictions that
//! ended without output ([`prediction_failure`]).

use genroute_core::{Billed, ErrorKind, ProviderError};
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{Classification, classify_status, snippet};
use serde::Deserialize;

#[derive(Deserialize)]
struct Problem {
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Classifies a non-success Replicate response (problem details `{"title","status","detail"}`).
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | 400, 404 (unknown model or prediction), 422 validation | InvalidRequest | no | no |
/// | 401, 403 | Auth | no | no |
/// | 402 insufficient credit | InsufficientCredits | no | no |
/// | 409 | Unavailable | yes | no |
/// | 429 throttled (`Retry-After` honoured) | RateLimited | yes | no |
/// | 500, 502, 503 | Unavailable | yes | no |
/// | 504 (a create may have gone through) | Timeout | yes | unknown |
pub fn parse_error(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ProviderError {
    let problem: Option<Problem> = serde_json::from_slice(body).ok();
    let title = problem.as_ref().and_then(|p| p.title.clone());
    let detail = match problem.as_ref().and_then(|p| p.detail.as_ref()) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => snippet(body, 300),
    };
    let class: Classification = classify_status(status);
    let message = match &title {
        Some(t) if !detail.is_empty() => format!("replicate: {t}: {detail}"),
        Some(t) => format!("replicate: {t}"),
        None => format!("replicate: {detail}"),
    };
    class.into_error(status, headers, Some("x-request-id"), title, message)
}

/// Words in a failed prediction's `error` that mean moderation refused the prompt or the output.
const MODERATION_MARKERS: &[&str] = &["nsfw", "sensitive", "flagged", "safety", "content policy"];

/// Classifies a prediction that ended without success.
///
/// | final status | kind | temporary | billed |
/// |---|---|---|---|
/// | `failed`, error mentions NSFW/sensitive/flagged/safety | ContentRejected | no | unknown |
/// | `failed`, anything else | Failed | no | unknown (run time may be billed) |
/// | `canceled` after it started | Cancelled | no | unknown (time run is billed) |
/// | `canceled` before it started | Cancelled | no | no |
/// | `aborted` (`Cancel-After` passed before it started) | Timeout | yes | no |
pub fn prediction_failure(id: &str, status: &str, error: Option<&str>, started: bool) -> ProviderError {
    let detail = error.unwrap_or("no error message");
    let (kind, temporary, billed) = match status {
        "failed" => {
            let lower = detail.to_ascii_lowercase();
            if MODERATION_MARKERS.iter().any(|m| lower.contains(m)) {
                (ErrorKind::ContentRejected, false, Billed::Unknown)
            } else {
                (ErrorKind::Failed, false, Billed::Unknown)
            }
        }
        "aborted" => (ErrorKind::Timeout, true, Billed::No),
        _ if started => (ErrorKind::Cancelled, false, Billed::Unknown),
        _ => (ErrorKind::Cancelled, false, Billed::No),
    };
    ProviderError::new(kind, format!("replicate prediction {id} {status}: {detail}"))
        .temporary(temporary)
        .billed(billed)
        .code(Some(status.to_owned()))
        .job_id(Some(id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_http::reqwest::header::HeaderValue;
    use std::time::Duration;

    #[test]
    fn http_failures() {
        let none = HeaderMap::new();
        let mut retry = HeaderMap::new();
        retry.insert("retry-after", HeaderValue::from_static("30"));
        let table: Vec<(u16, &HeaderMap, &str, ErrorKind, bool, Billed)> = vec![
            (
                400,
                &none,
                r#"{"title":"Bad request","detail":"x","status":400}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                401,
                &none,
                r#"{"title":"Unauthenticated","detail":"You did not pass a valid authentication token","status":401}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                402,
                &none,
                r#"{"title":"Insufficient credit","detail":"You have insufficient credit to run this model.","status":402}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                403,
                &none,
                r#"{"title":"Forbidden","status":403}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                404,
                &none,
                r#"{"title":"Not found","detail":"The requested resource could not be found.","status":404}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                422,
                &none,
                r#"{"title":"Input validation failed","detail":"- input.num_outputs: Must be less than or equal to 4","status":422}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                429,
                &retry,
                r#"{"detail":"Request was throttled. Your rate limit resets in ~30s.","status":429}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (
                500,
                &none,
                "Internal Server Error",
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (
                503,
                &none,
                r#"{"detail":"Service Unavailable"}"#,
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (504, &none, "", ErrorKind::Timeout, true, Billed::Unknown),
        ];
        for (code, headers, body, kind, temporary, billed) in table {
            let e = parse_error(StatusCode::from_u16(code).unwrap(), headers, body.as_bytes());
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{code}"
            );
        }
        let e = parse_error(
            StatusCode::TOO_MANY_REQUESTS,
            &retry,
            br#"{"detail":"Request was throttled."}"#,
        );
        assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(30)));
        let e = parse_error(
            StatusCode::PAYMENT_REQUIRED,
            &none,
            br#"{"title":"Insufficient credit","detail":"Top up","status":402}"#,
        );
        assert_eq!(e.message(), "replicate: Insufficient credit: Top up");
        assert_eq!(e.provider_code(), Some("Insufficient credit"));
    }

    #[test]
    fn terminal_failures() {
        let e = prediction_failure(
            "p1",
            "failed",
            Some("NSFW content detected. Try a different prompt."),
            true,
        );
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (ErrorKind::ContentRejected, false, &Billed::Unknown)
        );
        assert_eq!(e.provider_job_id(), Some("p1"));
        let e = prediction_failure("p1", "failed", Some("CUDA out of memory"), true);
        assert_eq!((e.kind(), e.billing()), (ErrorKind::Failed, &Billed::Unknown));
        let e = prediction_failure("p1", "canceled", None, true);
        assert_eq!((e.kind(), e.billing()), (ErrorKind::Cancelled, &Billed::Unknown));
        let e = prediction_failure("p1", "canceled", None, false);
        assert_eq!((e.kind(), e.billing()), (ErrorKind::Cancelled, &Billed::No));
        let e = prediction_failure("p1", "aborted", None, false);
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (ErrorKind::Timeout, true, &Billed::No)
        );
    }
}
