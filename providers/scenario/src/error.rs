//! The one place Scenario's failures are classified: HTTP answers and ended jobs alike.

use std::fmt;

use genroute_core::{Billed, ErrorKind, Money, ProviderError};
use genroute_http::reqwest::StatusCode;
use genroute_http::reqwest::header::HeaderMap;
use genroute_http::{Classification, classify, snippet};
use serde_json::Value;

/// Which call failed: billing differs (a refused create or a dry run is never billed; an asset read
/// after a successful job follows a job that was charged).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// `POST /generate/...` (creates a job, charges its Creative Units).
    Create,
    /// `POST /generate/...?dryRun=true` (never runs, never charges).
    DryRun,
    /// `GET /jobs/{jobId}`.
    Job,
    /// `GET /assets/{assetId}` after the job succeeded.
    Asset,
    /// `POST /jobs/{jobId}/action` `{"action":"cancel"}`.
    Cancel,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Create => "create",
            Phase::DryRun => "dry run",
            Phase::Job => "job status",
            Phase::Asset => "asset",
            Phase::Cancel => "cancel",
        })
    }
}

/// Something that went wrong, as Scenario reported it.
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
        /// Its body.
        body: &'a [u8],
        /// What the job is known to have been charged, when the call came after a job that succeeded
        /// (an asset read): the bill stands even though the outputs could not be read.
        charged: Option<&'a Money>,
    },
    /// A job that ended in `failure` or `canceled`.
    Job {
        /// The job's status, as received.
        status: &'a str,
        /// The job's error, if it gives one (a string or an object with a `message`).
        error: Option<&'a Value>,
    },
}

/// The request id header, if Scenario sends one (unconfirmed; the conventional name is read).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_owned),
        other => other.to_string(),
    }
}

/// The message and code of an error body. Scenario's error shape is only partly documented: `message`
/// (or `error`, a string or an object), an optional `code`/`reason`, and for the team concurrency cap
/// `details.actionName` / `details.actionLimit`.
fn read_body(body: &[u8]) -> (String, Option<String>) {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(body) else {
        return (snippet(body, 300), None);
    };
    let mut message = obj
        .get("message")
        .or_else(|| obj.get("error"))
        .map(text_of)
        .unwrap_or_else(|| Value::Object(obj.clone()).to_string());
    let code = ["code", "reason", "errorCode"]
        .iter()
        .find_map(|k| obj.get(*k).and_then(Value::as_str))
        .map(str::to_owned);
    if let Some(details) = obj.get("details").and_then(Value::as_object) {
        let name = details.get("actionName").and_then(Value::as_str);
        let limit = details.get("actionLimit");
        if let (Some(name), Some(limit)) = (name, limit) {
            message = format!("{message} (limit for {name}: {limit})");
        }
    }
    (message, code)
}

fn out_of_units(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    let units = m.contains("creative unit") || m.contains("compute unit") || m.contains("credit");
    (units && (m.contains("not enough") || m.contains("insufficient") || m.contains("exhausted")))
        || m.contains("usage limit")
}

fn looks_like_moderation(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["nsfw", "safety", "moderation", "content policy"]
        .iter()
        .any(|w| m.contains(w))
}

/// Classifies a Scenario failure.
///
/// HTTP answers:
///
/// | failure | kind | temporary | billed |
/// |---|---|---|---|
/// | 400 validation, 404, other 4xx | InvalidRequest | no | no |
/// | 401 | Auth | no | no |
/// | 403 (the model needs a higher plan) | Auth | no | no |
/// | 402, or a message saying the Creative Units / a usage limit ran out | InsufficientCredits | no | no |
/// | 429 team concurrency cap (`details.actionName`/`actionLimit` in the message) | RateLimited | yes | no |
/// | 500, 502, 503 | Unavailable | yes | no |
/// | 504 | Timeout | yes | unknown |
/// | any failure of a dry run | as above | as above | no |
/// | any failure reading an asset of a job that succeeded | as above | as above | yes (the job's cost) or unknown |
///
/// 403 is `Auth`: the key is valid but not entitled to the model (a plan restriction); it is no fault of
/// the job (so not `InvalidRequest`, which would stop failover), not a lack of money (`InsufficientCredits`
/// would raise top-up alarms), and not retryable; another provider or model can run the job.
///
/// Ended jobs:
///
/// | status | kind | temporary | billed |
/// |---|---|---|---|
/// | `failure` (Scenario reimburses failed jobs) | Failed | no | no |
/// | `failure` whose error mentions NSFW / safety / moderation | ContentRejected | no | no |
/// | `canceled` / `cancelled` | Cancelled | no | unknown |
pub fn parse_error(failure: Failure<'_>) -> ProviderError {
    use ErrorKind as K;
    match failure {
        Failure::Http {
            phase,
            status,
            headers,
            body,
            charged,
        } => {
            let (message, code) = read_body(body);
            let mut class = if out_of_units(&message) {
                Classification::new(K::InsufficientCredits)
            } else {
                // 401/403 → Auth, 402 → InsufficientCredits, 429 → RateLimited, 5xx → Unavailable.
                classify(status, code.as_deref())
            };
            match phase {
                Phase::DryRun => class.billed = Billed::No,
                Phase::Asset => {
                    class.billed = charged.map_or(Billed::Unknown, |m| Billed::Yes(m.clone()));
                }
                Phase::Create | Phase::Job | Phase::Cancel => {}
            }
            class.into_error(
                status,
                headers,
                Some(REQUEST_ID_HEADER),
                code,
                format!("scenario {phase}: {message}"),
            )
        }
        Failure::Job { status, error } => {
            let detail = error.map(text_of);
            let cancelled = matches!(status, "canceled" | "cancelled");
            let (kind, billed) = if cancelled {
                (K::Cancelled, Billed::Unknown)
            } else if detail.as_deref().is_some_and(looks_like_moderation) {
                (K::ContentRejected, Billed::No)
            } else {
                (K::Failed, Billed::No)
            };
            let message = format!(
                "scenario job ended as {status}: {}",
                detail.as_deref().unwrap_or("no reason given")
            );
            ProviderError::new(kind, message)
                .temporary(false)
                .billed(billed)
                .code(Some(status.to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_core::Decimal;
    use genroute_http::reqwest::header::HeaderValue;
    use serde_json::json;

    fn http(phase: Phase, status: u16, body: &str, charged: Option<&Money>) -> ProviderError {
        parse_error(Failure::Http {
            phase,
            status: StatusCode::from_u16(status).unwrap(),
            headers: &HeaderMap::new(),
            body: body.as_bytes(),
            charged,
        })
    }

    #[test]
    fn every_http_failure() {
        let table: Vec<(Phase, u16, &str, ErrorKind, bool, Billed)> = vec![
            (
                Phase::Create,
                400,
                r#"{"message":"numSamples must be <= 128"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                401,
                r#"{"message":"Unauthorized"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                403,
                r#"{"message":"This model requires a Pro plan or higher"}"#,
                ErrorKind::Auth,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                402,
                r#"{"message":"Payment required"}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                400,
                r#"{"message":"Not enough creative units to run this job"}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                403,
                r#"{"message":"Usage limit reached for this API key"}"#,
                ErrorKind::InsufficientCredits,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                429,
                r#"{"message":"Too many concurrent jobs","details":{"actionName":"generate","actionLimit":5}}"#,
                ErrorKind::RateLimited,
                true,
                Billed::No,
            ),
            (
                Phase::Create,
                404,
                r#"{"message":"Model not found"}"#,
                ErrorKind::InvalidRequest,
                false,
                Billed::No,
            ),
            (
                Phase::Create,
                500,
                "boom",
                ErrorKind::Unavailable,
                true,
                Billed::No,
            ),
            (Phase::Job, 503, "", ErrorKind::Unavailable, true, Billed::No),
            (Phase::Create, 504, "", ErrorKind::Timeout, true, Billed::Unknown),
            (Phase::DryRun, 504, "", ErrorKind::Timeout, true, Billed::No),
            (
                Phase::Asset,
                500,
                "",
                ErrorKind::Unavailable,
                true,
                Billed::Unknown,
            ),
        ];
        for (phase, status, body, kind, temporary, billed) in table {
            let e = http(phase, status, body, None);
            assert_eq!(
                (e.kind(), e.is_temporary(), e.billing()),
                (kind, temporary, &billed),
                "{phase} {status} {body}"
            );
            assert_eq!(e.http_status(), Some(status));
        }
        let cost = Money::cu(Decimal::from(20));
        let e = http(Phase::Asset, 404, r#"{"message":"asset gone"}"#, Some(&cost));
        assert_eq!(e.billing(), &Billed::Yes(cost));
    }

    #[test]
    fn carries_details_code_request_id_and_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("3"));
        h.insert("x-request-id", HeaderValue::from_static("rq-5"));
        let e = parse_error(Failure::Http {
            phase: Phase::Create,
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: &h,
            body: br#"{"message":"Concurrency limit","code":"too_many_jobs","details":{"actionName":"generate","actionLimit":3}}"#,
            charged: None,
        });
        assert_eq!(
            e.message(),
            "scenario create: Concurrency limit (limit for generate: 3)"
        );
        assert_eq!(e.provider_code(), Some("too_many_jobs"));
        assert_eq!(e.provider_request_id(), Some("rq-5"));
        assert_eq!(e.retry_after_hint(), Some(std::time::Duration::from_secs(3)));
    }

    #[test]
    fn ended_jobs() {
        let err = json!({"message": "CUDA out of memory"});
        let e = parse_error(Failure::Job {
            status: "failure",
            error: Some(&err),
        });
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (ErrorKind::Failed, false, &Billed::No)
        );
        assert_eq!(e.message(), "scenario job ended as failure: CUDA out of memory");
        let nsfw = json!("NSFW content detected");
        let e = parse_error(Failure::Job {
            status: "failure",
            error: Some(&nsfw),
        });
        assert_eq!((e.kind(), e.billing()), (ErrorKind::ContentRejected, &Billed::No));
        let e = parse_error(Failure::Job {
            status: "canceled",
            error: None,
        });
        assert_eq!((e.kind(), e.billing()), (ErrorKind::Cancelled, &Billed::Unknown));
        assert_eq!(e.provider_code(), Some("canceled"));
    }
}
