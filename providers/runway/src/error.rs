//! The one place Runway's failures are classified: HTTP answers and failed tasks alike.

use std::fmt;

use genroute_core::{Billed, ErrorKind, ProviderError};
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{Classification, classify_status, snippet};
use serde_json::Value;

/// Which call failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// `POST /v1/text_to_video`, `/v1/image_to_video`, `/v1/text_to_image`.
    Create,
    /// `GET /v1/tasks/{id}`.
    Status,
    /// `DELETE /v1/tasks/{id}`.
    Cancel,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Create => "create",
            Phase::Status => "task status",
            Phase::Cancel => "cancel",
        })
    }
}

/// Something that went wrong, as Runway reported it.
#[derive(Clone, Copy, Debug)]
pub enum Failure<'a> {
    /// A non-success HTTP answer.
    Http {
        /// The call.
        phase: Phase,
        /// Its status.
        status: StatusCode,
        /// Its headers.
        headers: &'a HeaderMap,
        /// Its body (`{"error": "..."}` for 400s).
        body: &'a [u8],
    },
    /// A task that ended `FAILED`.
    Task {
        /// The task's `failure` text.
        failure: Option<&'a str>,
        /// The task's `failureCode` (`SAFETY.INPUT.TEXT`, `INTERNAL.BAD_OUTPUT.CODE01`, ...).
        failure_code: Option<&'a str>,
    },
}

/// The request id header, if Runway sends one (unconfirmed; the conventional name is read).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn http_message(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => {
            let main = obj
                .get("error")
                .or_else(|| obj.get("message"))
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                .unwrap_or_else(|| Value::Object(obj.clone()).to_string());
            match obj.get("issues") {
                Some(issues) => format!("{main} {issues}"),
                None => main,
            }
        }
        _ => snippet(body, 300),
    }
}

fn is_out_of_credits(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not have enough credits") || m.contains("insufficient credits")
}

/// Classifies a Runway failure.
///
/// HTTP answers:
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | "You do not have enough credits to run this task." (any status) | InsufficientCredits | no | no |
/// | 400 (bad input, `error` member), 404, other 4xx | InvalidRequest | no | no |
/// | 401, 403 | Auth | no | no |
/// | 429 (rate or daily task limit; `Retry-After` honoured) | RateLimited | yes | no |
/// | 500, 502, 503 | Unavailable | yes | no |
/// | 504 | Timeout | yes | unknown |
///
/// Failed tasks (`failureCode`):
///
/// | failureCode | kind | temporary | billed |
/// |---|---|---|---|
/// | `SAFETY.INPUT.*` (and any other `*SAFETY*` not about output) | ContentRejected | no | no |
/// | `SAFETY.OUTPUT.*` | ContentRejected | no | unknown |
/// | `INTERNAL.BAD_OUTPUT.*`, `INTERNAL`, `*.INTERNAL` | Failed | yes | unknown |
/// | `ASSET.INVALID` (and `ASSET.*`) | InvalidRequest | no | no |
/// | anything else, or none | Failed | no | unknown |
pub fn parse_error(failure: Failure<'_>) -> ProviderError {
    use ErrorKind as K;
    match failure {
        Failure::Http {
            phase,
            status,
            headers,
            body,
        } => {
            let message = http_message(body);
            let class = if is_out_of_credits(&message) {
                Classification::new(K::InsufficientCredits)
            } else {
                classify_status(status)
            };
            class.into_error(
                status,
                headers,
                Some(REQUEST_ID_HEADER),
                None,
                format!("runway {phase}: {message}"),
            )
        }
        Failure::Task {
            failure,
            failure_code,
        } => {
            let code = failure_code.unwrap_or("").to_ascii_uppercase();
            let class = if code.contains("SAFETY") {
                let billed = if code.contains("OUTPUT") {
                    // The model ran; only its output was withheld.
                    Billed::Unknown
                } else {
                    Billed::No
                };
                Classification::new(K::ContentRejected).billed(billed)
            } else if code == "INTERNAL" || code.starts_with("INTERNAL.") || code.ends_with(".INTERNAL") {
                Classification::new(K::Failed)
                    .temporary(true)
                    .billed(Billed::Unknown)
            } else if code.starts_with("ASSET") {
                Classification::new(K::InvalidRequest)
            } else {
                Classification::new(K::Failed).billed(Billed::Unknown)
            };
            let message = format!("runway task failed: {}", failure.unwrap_or("no reason given"));
            ProviderError::new(class.kind, message)
                .temporary(class.temporary)
                .billed(class.billed)
                .code(failure_code.map(str::to_owned))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_http::reqwest::header::HeaderValue;

    fn http(status: u16, headers: &HeaderMap, body: &str) -> ProviderError {
        parse_error(Failure::Http {
            phase: Phase::Create,
            status: StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.as_bytes(),
        })
    }

    fn task(code: Option<&str>) -> ProviderError {
        parse_error(Failure::Task {
            failure: Some("nope"),
            failure_code: code,
        })
    }

    #[test]
    fn every_http_failure() {
        let none = HeaderMap::new();
        let table: Vec<(u16, &str, ErrorKind, bool, Billed)> = vec![
            (
                400,
                r#"{"error":"promptImage must be a valid URL","issues":[{"path":["promptImage"]}]}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                400,
                r#"{"error":"You do not have enough credits to run this task."}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                402,
                r#"{"error":"Insufficient credits"}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                401,
                r#"{"error":"Unauthorized"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                404,
                r#"{"error":"Not found"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                429,
                r#"{"error":"You have exceeded the daily task limit"}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (500, "boom", ErrorKind::Unavailable, true, Billed::No),
            (502, "", ErrorKind::Unavailable, true, Billed::No),
            (503, "", ErrorKind::Unavailable, true, Billed::No),
            (504, "", ErrorKind::Timeout, true, Billed::Unknown),
        ];
        for (status, body, kind, temporary, billed) in table {
            let e = http(status, &none, body);
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{status} {body}"
            );
            assert_eq!(e.http_status(), Some(status));
        }
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("30"));
        h.insert("x-request-id", HeaderValue::from_static("rq"));
        let e = http(429, &h, r#"{"error":"slow down"}"#);
        assert_eq!(e.retry_after_hint(), Some(std::time::Duration::from_secs(30)));
        assert_eq!(e.provider_request_id(), Some("rq"));
        assert_eq!(e.message(), "runway create: slow down");
    }

    #[test]
    fn every_failure_code() {
        let table: Vec<(Option<&str>, ErrorKind, bool, Billed)> = vec![
            (
                Some("SAFETY.INPUT.TEXT"),
                ErrorKind::ContentRejected,
                false,
                Billed::No,
            ),
            (
                Some("SAFETY.INPUT.IMAGE"),
                ErrorKind::ContentRejected,
                false,
                Billed::No,
            ),
            (
                Some("INPUT_PREPROCESSING.SAFETY.TEXT"),
                ErrorKind::ContentRejected,
                false,
                Billed::No,
            ),
            (
                Some("SAFETY.OUTPUT.VIDEO"),
                ErrorKind::ContentRejected,
                false,
                Billed::Unknown,
            ),
            (
                Some("INTERNAL.BAD_OUTPUT.CODE01"),
                ErrorKind::Failed,
                true,
                Billed::Unknown,
            ),
            (Some("INTERNAL"), ErrorKind::Failed, true, Billed::Unknown),
            (
                Some("INPUT_PREPROCESSING.INTERNAL"),
                ErrorKind::Failed,
                true,
                Billed::Unknown,
            ),
            (
                Some("ASSET.INVALID"),
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (Some("SOMETHING.NEW"), ErrorKind::Failed, false, Billed::Unknown),
            (None, ErrorKind::Failed, false, Billed::Unknown),
        ];
        for (code, kind, temporary, billed) in table {
            let e = task(code);
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{code:?}"
            );
            assert_eq!(e.provider_code(), code);
            assert_eq!(e.message(), "runway task failed: nope");
        }
    }
}
