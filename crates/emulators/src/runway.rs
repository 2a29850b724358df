//! Runway tasks API, PROVIDERS.md §7.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault::FaultKind;
use crate::jobs::{Job, JobState};
use crate::log::Endpoint;
use crate::server::{
    Shared, header_str, hex_id, json_response, parse_json, rfc3339, serve_file, set_header, uuid, with_tag,
};
use crate::validate::{Violation, opt_int, req_str};

pub(crate) fn router() -> Router<Arc<Shared>> {
    let mut r = Router::new();
    for op in OPS {
        r = r.route(&format!("/v1/{op}"), post(move |st, h, b| create(st, op, h, b)));
    }
    r.route("/v1/tasks/{id}", get(get_task).delete(delete_task))
        .route("/v1/organization", get(organization))
        .route("/files/{*rest}", get(serve_file))
        .fallback(not_found)
}

const OPS: [&str; 8] = [
    "image_to_video",
    "text_to_video",
    "video_to_video",
    "text_to_image",
    "sound_effect",
    "text_to_speech",
    "image_upscale",
    "video_upscale",
];

fn error(status: u16, msg: &str) -> Response {
    json_response(status, &json!({"error": msg}))
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let st = s.settings();
    match header_str(h, "authorization").and_then(|v| v.strip_prefix("Bearer ")) {
        None => {
            return Err(error(
                401,
                "Missing API key. Provide it as a bearer token in the Authorization header.",
            ));
        }
        Some(k) if k != st.api_key => return Err(error(401, "Incorrect API key provided.")),
        Some(_) => {}
    }
    match header_str(h, "x-runway-version") {
        None => Err(error(
            400,
            "The X-Runway-Version header is required. Use e.g. X-Runway-Version: 2024-11-06.",
        )),
        Some(v) if v != st.runway_version => Err(error(400, &format!("Invalid API version: {v}"))),
        Some(_) => Ok(()),
    }
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status } => error(*status, "An unexpected error occurred. Please retry."),
        FaultKind::RateLimited { retry_after } => {
            let mut r = error(
                429,
                "You have exceeded the rate limit for this model. Please retry later.",
            );
            set_header(
                &mut r,
                "retry-after",
                &crate::server::retry_after_secs(*retry_after).to_string(),
            );
            r
        }
        // Status unconfirmed; the message is the one Runway's SDK users report.
        FaultKind::CreditExhausted => error(400, "You do not have enough credits to run this task."),
        _ => error(500, "An unexpected error occurred."),
    }
}

fn invalid(v: &Violation) -> Response {
    json_response(
        400,
        &json!({"error": "Validation of body failed",
                "issues": [{"code": v.kind, "path": [v.field], "message": v.msg}]}),
    )
}

/// Credits per second of video / per image.
fn video_rate(model: &str) -> Option<i64> {
    match model {
        "gen4_turbo" => Some(5),
        "gen4.5" => Some(12),
        "gen4_aleph" => Some(15),
        "veo3" | "veo3.1" => Some(40),
        "veo3.1_fast" => Some(15),
        _ => None,
    }
}

const RATIOS_GEN4: [&str; 6] = [
    "1280:720", "720:1280", "1104:832", "832:1104", "960:960", "1584:672",
];
const RATIOS_VEO: [&str; 4] = ["1280:720", "720:1280", "1920:1080", "1080:1920"];
const RATIOS_IMAGE: [&str; 14] = [
    "1920:1080",
    "1080:1920",
    "1024:1024",
    "1360:768",
    "1080:1080",
    "1168:880",
    "1440:1080",
    "1080:1440",
    "1808:768",
    "2112:912",
    "1280:720",
    "720:1280",
    "720:720",
    "960:720",
];

fn enum_of(b: &Value, field: &str, allowed: &[&str], required: bool) -> Result<Option<String>, Violation> {
    match b.get(field).and_then(Value::as_str) {
        None if required => Err(Violation::new(field, "invalid_type", "Required")),
        None => Ok(None),
        Some(x) if allowed.contains(&x) => Ok(Some(x.to_owned())),
        Some(x) => Err(Violation::new(
            field,
            "invalid_enum_value",
            format!(
                "Invalid enum value. Expected {}, received '{x}'",
                crate::validate::quoted_list(allowed)
            ),
        )),
    }
}

/// Validate and price a create; returns (model, credits, output extension).
fn plan(op: &str, b: &Value) -> Result<(String, i64, &'static str), Violation> {
    crate::validate::obj(b, "body")?;
    if let Some(t) = b.get("promptText").and_then(Value::as_str)
        && t.chars().count() > 1000
    {
        return Err(Violation::new(
            "promptText",
            "too_big",
            "String must contain at most 1000 character(s)",
        ));
    }
    match op {
        "image_to_video" | "text_to_video" => {
            let models: &[&str] = if op == "image_to_video" {
                &["gen4.5", "gen4_turbo", "veo3.1", "veo3.1_fast", "veo3"]
            } else {
                &["gen4.5", "veo3.1", "veo3.1_fast", "veo3"]
            };
            let model = enum_of(b, "model", models, true)?.unwrap_or_default();
            if op == "image_to_video" {
                match b.get("promptImage") {
                    Some(Value::String(_) | Value::Array(_)) => {}
                    _ => return Err(Violation::new("promptImage", "invalid_type", "Required")),
                }
            } else {
                req_str(b, "promptText")?;
            }
            let veo = model.starts_with("veo");
            enum_of(b, "ratio", if veo { &RATIOS_VEO } else { &RATIOS_GEN4 }, false)?;
            let secs = match model.as_str() {
                "veo3" => {
                    let d = opt_int(b, "duration", 8, 8)?;
                    d.unwrap_or(8)
                }
                "veo3.1" | "veo3.1_fast" => {
                    let d = opt_int(b, "duration", 4, 8)?.unwrap_or(8);
                    if d % 2 != 0 {
                        return Err(Violation::new(
                            "duration",
                            "invalid_literal",
                            "Expected 4, 6 or 8",
                        ));
                    }
                    d
                }
                _ => opt_int(b, "duration", 2, 10)?.unwrap_or(5),
            };
            Ok((model.clone(), video_rate(&model).unwrap_or(10) * secs, "mp4"))
        }
        "text_to_image" => {
            let model = enum_of(b, "model", &["gen4_image", "gen4_image_turbo"], true)?.unwrap_or_default();
            req_str(b, "promptText")?;
            let ratio = enum_of(b, "ratio", &RATIOS_IMAGE, true)?.unwrap_or_default();
            let hd = ratio
                .split(':')
                .filter_map(|x| x.parse::<u32>().ok())
                .min()
                .unwrap_or(720)
                >= 1080;
            let credits = if model == "gen4_image_turbo" {
                2
            } else if hd {
                8
            } else {
                5
            };
            Ok((model, credits, "png"))
        }
        "video_to_video" => {
            let model = enum_of(b, "model", &["gen4_aleph"], true)?.unwrap_or_default();
            req_str(b, "videoUri")?;
            req_str(b, "promptText")?;
            Ok((model, 15 * 5, "mp4"))
        }
        "sound_effect" | "text_to_speech" => {
            let model = b
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("eleven_multilingual_v2")
                .to_owned();
            req_str(b, "promptText")?;
            Ok((model, 1, "mp3"))
        }
        _ => {
            let model = b
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or("upscale_v1")
                .to_owned();
            Ok((
                model,
                if op == "video_upscale" { 10 } else { 2 },
                if op == "video_upscale" { "mp4" } else { "png" },
            ))
        }
    }
}

async fn create(State(s): State<Arc<Shared>>, op: &'static str, h: HeaderMap, body: Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let b = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return with_tag(error(400, &e), tag),
    };
    tag.model = b.get("model").and_then(Value::as_str).map(str::to_owned);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let (model, credits, ext) = match plan(op, &b) {
        Ok(x) => x,
        Err(v) => return with_tag(invalid(&v), tag),
    };
    let settings = s.settings();
    let spent = s.credits_spent.load(Ordering::Relaxed);
    if spent + credits > settings.runway_credit_balance {
        return with_tag(render_fault(&FaultKind::CreditExhausted), tag);
    }
    s.credits_spent.fetch_add(credits, Ordering::Relaxed);
    let fault = s.job_fault(&mut tag);
    let id = uuid();
    let mut job = Job::new(id.clone(), s.next_seq(), model, b, settings.progression, fault);
    job.outputs = vec![format!("{}/files/{id}.{ext}?_jwt={}", s.origin, hex_id(32))];
    job.meta = json!({"op": op, "credits": credits});
    job.labels = (
        s.settings().queued_status.clone(),
        s.settings().running_status.clone(),
    );
    s.jobs.insert(job);
    tag.job_id = Some(id.clone());
    with_tag(json_response(200, &json!({"id": id})), tag)
}

fn task_json(j: &Job) -> Value {
    let state = j.state();
    let mut t = json!({"id": j.id, "createdAt": rfc3339(j.created_at)});
    match &state {
        JobState::Queued => t["status"] = json!(j.queued_label("PENDING")),
        JobState::Running => {
            t["status"] = json!(j.running_label("RUNNING"));
            t["progress"] = json!(j.progress());
        }
        JobState::Succeeded => {
            t["status"] = json!("SUCCEEDED");
            t["output"] = json!(j.outputs);
        }
        JobState::Failed => {
            t["status"] = json!("FAILED");
            t["failure"] = json!("An unexpected error occurred while generating. Please try again.");
            t["failureCode"] = json!("INTERNAL");
        }
        JobState::Rejected => {
            t["status"] = json!("FAILED");
            t["failure"] = json!("Your input was flagged by our content moderation system.");
            t["failureCode"] = json!("SAFETY.INPUT.TEXT");
        }
        JobState::Canceled | JobState::Aborted => t["status"] = json!("CANCELLED"),
        JobState::Unknown(x) => t["status"] = json!(x),
    }
    t
}

async fn get_task(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Status);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(error(404, "Task not found"), tag);
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let t = s
        .jobs
        .with(&id, |j| {
            j.polls += 1;
            task_json(j)
        })
        .unwrap_or(Value::Null);
    with_tag(json_response(200, &t), tag)
}

/// Cancels a task that has not finished; deletes a finished one (it then answers 404).
async fn delete_task(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Cancel);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(error(404, "Task not found"), tag);
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    s.record_cancel(&id);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let terminal = s
        .jobs
        .with(&id, |j| {
            let t = j.state().is_terminal();
            if !t {
                j.canceled = true;
            }
            t
        })
        .unwrap_or(false);
    if terminal {
        s.jobs.remove(&id);
    }
    with_tag(axum::http::StatusCode::NO_CONTENT.into_response(), tag)
}

async fn organization(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Account);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let balance = s.settings().runway_credit_balance - s.credits_spent.load(Ordering::Relaxed);
    let body = json!({"creditBalance": balance,
                      "tier": {"maxMonthlyCreditSpend": 1_000_000, "models": {}},
                      "usage": {"models": {}}});
    with_tag(json_response(200, &body), tag)
}

async fn not_found(State(s): State<Arc<Shared>>) -> Response {
    with_tag(error(404, "Not found"), crate::server::not_found_tag(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credits() {
        let p = plan(
            "image_to_video",
            &json!({"model": "gen4_turbo", "promptImage": "https://x", "duration": 10}),
        )
        .ok()
        .unwrap();
        assert_eq!(p.1, 50);
        let p = plan("text_to_video", &json!({"model": "veo3", "promptText": "x"}))
            .ok()
            .unwrap();
        assert_eq!(p.1, 320);
        let p = plan(
            "text_to_image",
            &json!({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080"}),
        )
        .ok()
        .unwrap();
        assert_eq!(p.1, 8);
        let p = plan(
            "text_to_image",
            &json!({"model": "gen4_image", "promptText": "x", "ratio": "1280:720"}),
        )
        .ok()
        .unwrap();
        assert_eq!(p.1, 5);
        assert!(
            plan(
                "text_to_video",
                &json!({"model": "veo3.1", "promptText": "x", "duration": 5})
            )
            .is_err()
        );
        assert!(plan("image_to_video", &json!({"model": "gen4_turbo"})).is_err());
        assert!(plan("image_to_video", &json!({"model": "gen9", "promptImage": "x"})).is_err());
    }
}
