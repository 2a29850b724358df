//! Replicate predictions API, PROVIDERS.md §2.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::fault::FaultKind;
use crate::jobs::{Job, JobState, Progression};
use crate::log::Endpoint;
use crate::server::{
    Shared, base32_id, header_str, json_bytes, json_response, parse_json, rfc3339, serve_file, set_header,
    with_tag,
};
use crate::validate::{Violation, opt_enum, opt_int, opt_num, req_str};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/predictions", post(create_version).get(list))
        .route("/v1/models/{owner}/{name}/predictions", post(create_model))
        .route(
            "/v1/deployments/{owner}/{name}/predictions",
            post(create_deployment),
        )
        .route("/v1/predictions/{id}", get(get_prediction))
        .route("/v1/predictions/{id}/cancel", post(cancel))
        .route("/v1/webhooks/default/secret", get(webhook_secret))
        .route("/files/{*rest}", get(serve_file))
        .fallback(not_found)
}

fn problem(status: u16, title: &str, detail: &str) -> Response {
    let body = json!({"title": title, "detail": detail, "status": status});
    json_bytes(
        status,
        serde_json::to_vec(&body).unwrap_or_default(),
        "application/problem+json",
    )
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let token = header_str(h, "authorization")
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("Token ")));
    if token == Some(s.settings().api_key.as_str()) {
        Ok(())
    } else {
        Err(problem(
            401,
            "Unauthenticated",
            "You did not pass a valid authentication token",
        ))
    }
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status } => {
            let title = match status {
                502 => "Bad Gateway",
                503 => "Service Unavailable",
                504 => "Gateway Timeout",
                _ => "Internal Server Error",
            };
            problem(*status, title, "An unexpected error occurred. Please try again.")
        }
        FaultKind::RateLimited { retry_after } => {
            let secs = crate::server::retry_after_secs(*retry_after);
            let mut r = problem(
                429,
                "Request was throttled.",
                &format!("Request was throttled. Your rate limit resets in ~{secs}s."),
            );
            set_header(&mut r, "retry-after", &secs.to_string());
            r
        }
        FaultKind::CreditExhausted => problem(
            402,
            "Insufficient credit",
            "You have insufficient credit to run this model. Go to https://replicate.com/account/billing#billing to purchase credit. Once you purchase credit, please wait a few minutes before trying to run again.",
        ),
        _ => problem(500, "Internal Server Error", "An unexpected error occurred."),
    }
}

fn invalid(v: &Violation) -> Response {
    let field = format!("input.{}", v.field);
    let body = json!({
        "title": "Input validation failed",
        "detail": format!("- {field}: {}\n", v.msg),
        "status": 422,
        "invalid_fields": [{"type": v.kind, "field": field, "description": v.msg}],
    });
    json_bytes(
        422,
        serde_json::to_vec(&body).unwrap_or_default(),
        "application/problem+json",
    )
}

const RATIOS: [&str; 11] = [
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
];

/// Outputs (URLs or single URL) and the default predict time, validating the input of known models.
fn run_model(model: &str, input: &Value, origin: &str, id: &str) -> Result<(Value, f64), Violation> {
    crate::validate::obj(input, "input")?;
    let url = |i: usize, ext: &str| format!("{origin}/files/{id}/out-{i}.{ext}");
    match model {
        "black-forest-labs/flux-schnell" | "black-forest-labs/flux-dev" => {
            req_str(input, "prompt")?;
            let n = opt_int(input, "num_outputs", 1, 4)?.unwrap_or(1) as usize;
            opt_enum(input, "aspect_ratio", &RATIOS)?;
            let fmt = opt_enum(input, "output_format", &["webp", "jpg", "png"])?.unwrap_or("webp");
            let schnell = model.ends_with("schnell");
            opt_int(input, "num_inference_steps", 1, if schnell { 4 } else { 50 })?;
            opt_num(input, "guidance", 0.0, 10.0)?;
            let outs: Vec<Value> = (0..n).map(|i| json!(url(i, fmt))).collect();
            Ok((Value::Array(outs), if schnell { 0.62 } else { 2.41 } * n as f64))
        }
        "black-forest-labs/flux-1.1-pro" | "black-forest-labs/flux-1.1-pro-ultra" => {
            req_str(input, "prompt")?;
            let mut ratios = RATIOS.to_vec();
            if !model.ends_with("ultra") {
                ratios.push("custom");
                opt_int(input, "width", 256, 1440)?;
                opt_int(input, "height", 256, 1440)?;
            }
            opt_enum(input, "aspect_ratio", &ratios)?;
            let fmt = opt_enum(input, "output_format", &["webp", "jpg", "png"])?.unwrap_or("webp");
            Ok((
                json!(url(0, fmt)),
                if model.ends_with("ultra") { 7.3 } else { 3.1 },
            ))
        }
        "minimax/video-01" => {
            req_str(input, "prompt")?;
            Ok((json!(url(0, "mp4")), 182.4))
        }
        _ => Ok((json!([url(0, "png")]), 1.78)),
    }
}

async fn create_version(State(s): State<Arc<Shared>>, h: HeaderMap, body: Bytes) -> Response {
    create(&s, None, &h, &body).await
}

async fn create_model(
    State(s): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    create(&s, Some(format!("{owner}/{name}")), &h, &body).await
}

async fn create_deployment(
    State(s): State<Arc<Shared>>,
    Path((owner, name)): Path<(String, String)>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    create(&s, Some(format!("{owner}/{name}")), &h, &body).await
}

/// `Prefer: wait` / `Prefer: wait=N` → seconds to block (1–60).
fn prefer_wait(h: &HeaderMap) -> Option<u64> {
    let v = header_str(h, "prefer")?;
    v.split(',').map(str::trim).find_map(|p| {
        if p == "wait" {
            Some(60)
        } else {
            p.strip_prefix("wait=")
                .and_then(|n| n.parse::<u64>().ok())
                .map(|n| n.clamp(1, 60))
        }
    })
}

/// `Cancel-After` values: `90`, `90s`, `500ms`, `5m`, `1h`, or combinations like `1m30s`.
fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let (mut total, mut num) = (Duration::ZERO, String::new());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        let unit = match (c, chars.peek()) {
            ('m', Some('s')) => {
                chars.next();
                0.001
            }
            ('s', _) => 1.0,
            ('m', _) => 60.0,
            ('h', _) => 3600.0,
            _ => return None,
        };
        total += Duration::from_secs_f64(n * unit);
    }
    num.is_empty().then_some(total)
}

async fn create(s: &Arc<Shared>, model: Option<String>, h: &HeaderMap, body: &Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    let req = match parse_json(body) {
        Ok(v) => v,
        Err(e) => return with_tag(problem(400, "Bad Request", &e), tag),
    };
    let version = req.get("version").and_then(Value::as_str).map(str::to_owned);
    let model = match (model, &version) {
        (Some(m), _) => m,
        (None, Some(v)) => v
            .split_once(':')
            .map_or_else(|| "unknown/unknown".to_owned(), |(m, _)| m.to_owned()),
        (None, None) => {
            let r = problem(
                422,
                "Invalid version or not permitted",
                "- version: Additional property version is required\n",
            );
            return with_tag(r, tag);
        }
    };
    tag.model = Some(model.clone());
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let input = req.get("input").cloned().unwrap_or(Value::Null);
    if input.is_null() {
        let v = Violation::new("input", "required", "input is required");
        return with_tag(
            invalid(&Violation {
                field: String::new(),
                ..v
            }),
            tag,
        );
    }
    let id = base32_id();
    let (output, predict) = match run_model(&model, &input, &s.origin, &id) {
        Ok(x) => x,
        Err(v) => return with_tag(invalid(&v), tag),
    };
    let fault = s.job_fault(&mut tag);
    let settings = s.settings();
    let mut job = Job::new(
        id.clone(),
        s.next_seq(),
        model,
        input,
        settings.progression,
        fault,
    );
    job.meta = json!({
        "output": output,
        "predict_time": settings.replicate_predict_time.unwrap_or(predict),
        "version": version.as_deref().map_or("hidden", |v| v.rsplit(':').next().unwrap_or(v)),
        "webhook": req.get("webhook").cloned().unwrap_or(Value::Null),
    });
    job.outputs = match &job.meta["output"] {
        Value::Array(a) => a.iter().filter_map(|u| u.as_str().map(str::to_owned)).collect(),
        Value::String(u) => vec![u.clone()],
        _ => Vec::new(),
    };
    job.deadline = header_str(h, "cancel-after")
        .and_then(parse_duration)
        .map(|d| job.created + d);
    let wait = prefer_wait(h);
    let stuck = matches!(
        job.fault,
        Some(FaultKind::Stuck | FaultKind::StuckInQueue | FaultKind::UnknownStatus(_))
    );
    if wait.is_some() && !stuck && matches!(job.progression, Progression::Polls { .. }) {
        job.force_done = true;
    }
    let (created, timed) = (job.created, matches!(job.progression, Progression::Timed { .. }));
    job.labels = (
        s.settings().queued_status.clone(),
        s.settings().running_status.clone(),
    );
    let webhook = req.get("webhook").and_then(Value::as_str).map(str::to_owned);
    let events: Vec<String> = req
        .get("webhook_events_filter")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
        .unwrap_or_else(|| vec!["start".into(), "output".into(), "logs".into(), "completed".into()]);
    s.jobs.insert(job);
    if let Some(url) = webhook {
        tokio::spawn(drive_webhooks(s.clone(), id.clone(), url, events));
    }
    tag.job_id = Some(id.clone());
    if let Some(secs) = wait {
        // Block until the prediction is done or the wait runs out, then answer whatever it is.
        let deadline = created + Duration::from_secs(secs);
        if stuck || timed {
            loop {
                let done = s.jobs.with(&id, |j| j.state().is_terminal()).unwrap_or(true);
                if done || Instant::now() >= deadline {
                    break;
                }
                let step = deadline
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(50));
                if !s.sleep(step).await {
                    break;
                }
            }
        }
    }
    let body = s.jobs.with(&id, |j| prediction(s, j)).unwrap_or(Value::Null);
    with_tag(json_response(201, &body), tag)
}

fn prediction(s: &Shared, j: &Job) -> Value {
    let state = j.state();
    let status = match &state {
        JobState::Queued => j.queued_label("starting").to_owned(),
        JobState::Running => j.running_label("processing").to_owned(),
        JobState::Succeeded => "succeeded".to_owned(),
        JobState::Failed | JobState::Rejected => "failed".to_owned(),
        JobState::Canceled => "canceled".to_owned(),
        JobState::Aborted => "aborted".to_owned(),
        JobState::Unknown(x) => x.clone(),
    };
    let url = format!("{}/v1/predictions/{}", s.origin, j.id);
    let started = !(matches!(state, JobState::Queued) || state == JobState::Canceled && j.polls == 0);
    let mut p = json!({
        "id": j.id,
        "model": j.model,
        "version": j.meta["version"],
        "input": j.input,
        "logs": "",
        "output": null,
        "data_removed": false,
        "error": null,
        "status": status,
        "created_at": rfc3339(j.created_at),
        "started_at": null,
        "completed_at": null,
        "urls": {"get": url, "cancel": format!("{url}/cancel")},
    });
    if started {
        p["started_at"] = json!(rfc3339(j.created_at + Duration::from_millis(150)));
        p["logs"] = json!("Using seed: 12345\nRunning prediction...\n");
    }
    let predict = j.meta["predict_time"].as_f64().unwrap_or(1.0);
    let completed = rfc3339(j.created_at + Duration::from_secs_f64(predict + 0.25));
    match state {
        JobState::Succeeded => {
            p["output"] = j.meta["output"].clone();
            p["completed_at"] = json!(completed);
            let mut metrics = json!({"predict_time": predict, "total_time": predict + 0.25});
            if let Value::Array(a) = &j.meta["output"] {
                metrics["image_count"] = json!(a.len());
            } else if !j.model.contains("video") {
                metrics["image_count"] = json!(1);
            }
            p["metrics"] = metrics;
        }
        JobState::Failed => {
            p["error"] = json!(
                "Prediction failed: the model raised an unexpected error (CUDA error: an illegal memory access was encountered)"
            );
            p["completed_at"] = json!(completed);
            p["metrics"] = json!({"predict_time": predict / 2.0, "total_time": predict / 2.0 + 0.25});
        }
        JobState::Rejected => {
            p["error"] = json!(
                "All generated images contained NSFW content. Try running it again with a different prompt."
            );
            p["completed_at"] = json!(completed);
            p["metrics"] = json!({"predict_time": predict, "total_time": predict + 0.25});
        }
        JobState::Aborted => p["completed_at"] = json!(crate::server::now_rfc3339()),
        JobState::Canceled => {
            p["completed_at"] = json!(crate::server::now_rfc3339());
            if started {
                p["metrics"] = json!({"predict_time": predict / 2.0});
            }
        }
        _ => {}
    }
    p
}

async fn get_prediction(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Status);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(
            problem(404, "Not found", "The requested resource could not be found."),
            tag,
        );
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let body = s
        .jobs
        .with(&id, |j| {
            j.polls += 1;
            prediction(&s, j)
        })
        .unwrap_or(Value::Null);
    with_tag(json_response(200, &body), tag)
}

async fn cancel(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Cancel);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(
            problem(404, "Not found", "The requested resource could not be found."),
            tag,
        );
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    s.record_cancel(&id);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let body = s
        .jobs
        .with(&id, |j| {
            if !j.state().is_terminal() {
                j.canceled = true;
            }
            prediction(&s, j)
        })
        .unwrap_or(Value::Null);
    with_tag(json_response(200, &body), tag)
}

/// Advance a prediction that has a webhook by itself (one poll step every 50 ms: nobody polls it) and
/// deliver `start` and `completed` events as the real API does.
async fn drive_webhooks(s: Arc<Shared>, id: String, url: String, events: Vec<String>) {
    let wants = |e: &str| events.iter().any(|x| x == e);
    let mut started = false;
    // Replicate times predictions out after 30 minutes; the driver gives up then too.
    for _ in 0..36_000 {
        let Some((state, body)) = s.jobs.with(&id, |j| {
            if matches!(j.progression, Progression::Polls { .. }) {
                j.polls += 1;
            }
            (j.state(), prediction(&s, j))
        }) else {
            return;
        };
        if !started && state != JobState::Queued {
            started = true;
            if wants("start") && !state.is_terminal() {
                deliver(&s, &id, &url, "start", &body).await;
            }
        }
        if state.is_terminal() {
            if wants("completed") {
                deliver(&s, &id, &url, "completed", &body).await;
            }
            return;
        }
        if !s.sleep(Duration::from_millis(50)).await {
            return;
        }
    }
}

async fn deliver(s: &Shared, job_id: &str, url: &str, event: &str, body: &Value) {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let msg_id = format!("msg_{}", crate::server::hex_id(24));
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let headers = vec![
        ("webhook-id".to_owned(), msg_id.clone()),
        ("webhook-timestamp".to_owned(), ts.to_string()),
        (
            "webhook-signature".to_owned(),
            crate::webhook::sign(&s.webhook_secret, &msg_id, ts, &bytes),
        ),
    ];
    let status = crate::webhook::post(url, &headers, &bytes).await;
    crate::fault::lock(&s.webhooks).push(crate::WebhookDelivery {
        url: url.to_owned(),
        event: event.to_owned(),
        job_id: job_id.to_owned(),
        headers,
        body: bytes,
        status,
    });
}

async fn webhook_secret(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Account);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    with_tag(json_response(200, &json!({"key": s.webhook_secret})), tag)
}

async fn list(State(s): State<Arc<Shared>>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::List);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let mut all = s.jobs.all();
    all.reverse();
    let results: Vec<Value> = all.iter().take(100).map(|j| prediction(&s, j)).collect();
    with_tag(
        json_response(200, &json!({"next": null, "previous": null, "results": results})),
        tag,
    )
}

async fn not_found(State(s): State<Arc<Shared>>) -> Response {
    with_tag(
        problem(404, "Not found", "The requested resource could not be found."),
        crate::server::not_found_tag(&s),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_after_durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1m"), Some(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration("5m3"), None);
    }
}
