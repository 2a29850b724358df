//! fal.ai: queue API (`queue.fal.run`) and sync API (`fal.run`), PROVIDERS.md §1.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault::FaultKind;
use crate::jobs::{Job, JobState};
use crate::log::Endpoint;
use crate::server::{
    Shared, Tag, header_str, json_response, now_rfc3339, parse_json, serve_file, set_header, uuid, with_tag,
};
use crate::validate::{Violation, opt_enum, opt_int, opt_num, opt_u64, req_str};

pub(crate) fn routers() -> (Router<Arc<Shared>>, Router<Arc<Shared>>) {
    let queue = Router::new()
        .route("/files/{*rest}", get(serve_file))
        .fallback(queue_dispatch);
    let sync = Router::new()
        .route("/files/{*rest}", get(serve_file))
        .fallback(sync_dispatch);
    (queue, sync)
}

/// `owner/alias` of a model id (`fal-ai/flux/dev` → `fal-ai/flux`).
fn app_of(model: &str) -> String {
    model.split('/').take(2).collect::<Vec<_>>().join("/")
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let Some(v) = header_str(h, "authorization") else {
        return Err(json_response(
            401,
            &json!({"detail": "Authentication is required to access this application."}),
        ));
    };
    let key = v.strip_prefix("Key ").unwrap_or("");
    if !key.contains(':') {
        return Err(json_response(
            401,
            &json!({"detail": "Invalid Key Authorization header format. Expected '<key_id>:<key_secret>'."}),
        ));
    }
    if key != s.settings().api_key {
        return Err(json_response(
            401,
            &json!({"detail": "No user found for Key ID and Secret"}),
        ));
    }
    Ok(())
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status } => {
            let (etype, detail) = match status {
                502 => (
                    "runner_incomplete_response",
                    "Runner returned an incomplete response",
                ),
                503 => (
                    "runner_scheduling_failure",
                    "Failed to schedule a runner for the request",
                ),
                504 => ("request_timeout", "Request timed out"),
                _ => ("internal_error", "Internal server error"),
            };
            let mut r = json_response(*status, &json!({"detail": detail, "error_type": etype}));
            set_header(&mut r, "x-fal-error-type", etype);
            set_header(&mut r, "x-fal-retryable", "true");
            r
        }
        FaultKind::RateLimited { retry_after } => {
            // Unconfirmed body: fal documents 429 on direct `fal.run` without a body shape.
            let mut r = json_response(
                429,
                &json!({"detail": "Rate limit exceeded. Please retry later."}),
            );
            set_header(
                &mut r,
                "retry-after",
                &crate::server::retry_after_secs(*retry_after).to_string(),
            );
            r
        }
        FaultKind::CreditExhausted => json_response(
            403,
            &json!({"detail": "User is locked. Reason: Exhausted balance. Top up your balance at fal.ai/dashboard/billing."}),
        ),
        FaultKind::ContentRejected => content_rejected(),
        _ => json_response(
            500,
            &json!({"detail": "Internal server error", "error_type": "internal_error"}),
        ),
    }
}

fn content_rejected() -> Response {
    let mut r = json_response(
        422,
        &json!({"detail": [{
            "loc": ["body", "prompt"],
            "msg": "The content could not be processed because it contained material flagged by a content checker.",
            "type": "content_policy_violation",
            "url": "https://docs.fal.ai/errors#content_policy_violation"
        }]}),
    );
    set_header(&mut r, "x-fal-retryable", "false");
    r
}

fn failed_after_running() -> Response {
    let mut r = json_response(
        500,
        &json!({"detail": "Runner encountered an error while processing the request", "error_type": "runner_server_error"}),
    );
    set_header(&mut r, "x-fal-error-type", "runner_server_error");
    r
}

fn validation_error(v: &Violation) -> Response {
    json_response(
        422,
        &json!({"detail": [{"loc": ["body", v.field], "msg": v.msg, "type": v.kind}]}),
    )
}

const SIZES: [(&str, u32, u32); 6] = [
    ("square_hd", 1024, 1024),
    ("square", 512, 512),
    ("portrait_4_3", 768, 1024),
    ("portrait_16_9", 576, 1024),
    ("landscape_4_3", 1024, 768),
    ("landscape_16_9", 1024, 576),
];

fn image_size(input: &Value) -> Result<(u32, u32), Violation> {
    match input.get("image_size") {
        None | Some(Value::Null) => Ok((1024, 768)),
        Some(Value::String(s)) => SIZES
            .iter()
            .find(|(n, _, _)| n == s)
            .map(|(_, w, h)| (*w, *h))
            .ok_or_else(|| {
                let names: Vec<&str> = SIZES.iter().map(|(n, _, _)| *n).collect();
                Violation::new(
                    "image_size",
                    "enum",
                    format!("Input should be {}", crate::validate::quoted_list(&names)),
                )
            }),
        Some(o @ Value::Object(_)) => {
            let w = opt_int(o, "width", 1, 14_142)?;
            let h = opt_int(o, "height", 1, 14_142)?;
            match (w, h) {
                (Some(w), Some(h)) => Ok((w as u32, h as u32)),
                _ => Err(Violation::new(
                    "image_size",
                    "missing",
                    "width and height are required",
                )),
            }
        }
        Some(_) => Err(Violation::new(
            "image_size",
            "model_attributes_type",
            "Input should be a valid dictionary",
        )),
    }
}

/// Megapixels billed for one image: whole MP rounded up, with 1 MP = 1024 × 1024 pixels.
fn billed_mp(w: u32, h: u32) -> u64 {
    (u64::from(w) * u64::from(h)).div_ceil(1024 * 1024)
}

/// Compute a model's output and billable units from its input, validating like the real app.
fn run_model(
    model: &str,
    input: &Value,
    origin: &str,
    id: &str,
    seq: u64,
) -> Result<(Value, String), Violation> {
    crate::validate::obj(input, "body")?;
    let seed = opt_u64(input, "seed")?.unwrap_or(1_000_003 * (seq + 1));
    match model {
        "fal-ai/flux/dev" | "fal-ai/flux/schnell" => {
            let prompt = req_str(input, "prompt")?;
            let (w, h) = image_size(input)?;
            let max_steps = if model.ends_with("dev") { 50 } else { 12 };
            opt_int(input, "num_inference_steps", 1, max_steps)?;
            opt_num(input, "guidance_scale", 1.0, 20.0)?;
            let n = opt_int(input, "num_images", 1, 4)?.unwrap_or(1) as u64;
            let fmt = opt_enum(input, "output_format", &["jpeg", "png"])?.unwrap_or("jpeg");
            let images: Vec<Value> = (0..n)
                .map(|i| {
                    json!({"url": format!("{origin}/files/{id}-{i}.{fmt}"), "width": w, "height": h,
                           "content_type": format!("image/{fmt}")})
                })
                .collect();
            let out = json!({"images": images, "timings": {"inference": 1.87}, "seed": seed,
                             "has_nsfw_concepts": vec![false; n as usize], "prompt": prompt});
            Ok((out, (n * billed_mp(w, h)).to_string()))
        }
        "fal-ai/flux-pro/kontext" => {
            let prompt = req_str(input, "prompt")?;
            req_str(input, "image_url")?;
            let n = opt_int(input, "num_images", 1, 4)?.unwrap_or(1) as u64;
            let fmt = opt_enum(input, "output_format", &["jpeg", "png"])?.unwrap_or("jpeg");
            let images: Vec<Value> = (0..n)
                .map(|i| {
                    json!({"url": format!("{origin}/files/{id}-{i}.{fmt}"), "width": 1024, "height": 1024,
                           "content_type": format!("image/{fmt}")})
                })
                .collect();
            let out = json!({"images": images, "timings": {}, "seed": seed,
                             "has_nsfw_concepts": vec![false; n as usize], "prompt": prompt});
            Ok((out, n.to_string()))
        }
        "fal-ai/kling-video/v1.6/standard/text-to-video" => {
            req_str(input, "prompt")?;
            let secs = match input.get("duration") {
                None | Some(Value::Null) => 5,
                Some(Value::String(s)) if s == "5" || s == "10" => s.parse().unwrap_or(5),
                Some(Value::Number(n)) if n.as_u64() == Some(5) || n.as_u64() == Some(10) => {
                    n.as_u64().unwrap_or(5)
                }
                Some(_) => return Err(Violation::new("duration", "enum", "Input should be '5' or '10'")),
            };
            opt_enum(input, "aspect_ratio", &["16:9", "9:16", "1:1"])?;
            let out = json!({"video": {"url": format!("{origin}/files/{id}-0.mp4"), "content_type": "video/mp4",
                                       "file_name": "output.mp4", "file_size": 2048}});
            Ok((out, secs.to_string()))
        }
        _ => {
            let out = json!({"images": [{"url": format!("{origin}/files/{id}-0.png"), "width": 1024,
                             "height": 1024, "content_type": "image/png"}], "seed": seed});
            Ok((out, "1".to_owned()))
        }
    }
}

fn urls(s: &Shared, app: &str, id: &str) -> (String, String, String) {
    let base = format!("{}/{app}/requests/{id}", s.origin);
    (format!("{base}/status"), base.clone(), format!("{base}/cancel"))
}

enum Route<'a> {
    Submit(String),
    Status(String, &'a str),
    Result(String, &'a str),
    Cancel(String, &'a str),
    Unknown,
}

fn route<'a>(method: &Method, segs: &[&'a str]) -> Route<'a> {
    match (method, segs) {
        (&Method::POST, [o, a, rest @ ..]) if !rest.contains(&"requests") => Route::Submit(
            std::iter::once(*o)
                .chain(std::iter::once(*a))
                .chain(rest.iter().copied())
                .collect::<Vec<_>>()
                .join("/"),
        ),
        (&Method::GET, [o, a, "requests", id, "status"]) => Route::Status(format!("{o}/{a}"), id),
        (&Method::GET, [o, a, "requests", id]) => Route::Result(format!("{o}/{a}"), id),
        (&Method::PUT, [o, a, "requests", id, "cancel"]) => Route::Cancel(format!("{o}/{a}"), id),
        _ => Route::Unknown,
    }
}

async fn queue_dispatch(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    match route(&method, &segs) {
        Route::Submit(model) => submit(&s, model, &uri, &headers, &body).await,
        Route::Status(app, id) => status(&s, &app, id, &uri, &headers).await,
        Route::Result(app, id) => result(&s, &app, id, &headers).await,
        Route::Cancel(app, id) => cancel(&s, &app, id, &headers).await,
        Route::Unknown => with_tag(
            json_response(404, &json!({"detail": "Not Found"})),
            crate::server::not_found_tag(&s),
        ),
    }
}

async fn submit(s: &Arc<Shared>, model: String, uri: &Uri, h: &HeaderMap, body: &Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    tag.model = Some(model.clone());
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    let input = match parse_json(body) {
        Ok(v) => v,
        Err(e) => return with_tag(json_response(422, &json!({"detail": e})), tag),
    };
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let fault = s.job_fault(&mut tag);
    let id = uuid();
    let seq = s.next_seq();
    let mut job = Job::new(
        id.clone(),
        seq,
        model.clone(),
        input.clone(),
        s.settings().progression,
        fault,
    );
    // The queue accepts any JSON; the app validates when it runs, so errors surface at the result.
    job.meta = match run_model(&model, &input, &s.origin, &id, seq) {
        Ok((out, units)) => json!({"output": out, "units": units}),
        Err(v) => json!({"violation": {"field": v.field, "msg": v.msg, "type": v.kind}}),
    };
    job.outputs = output_urls(&job.meta);
    let app = app_of(&model);
    let (status_url, response_url, cancel_url) = urls(s, &app, &id);
    let mut out = json!({
        "status": "IN_QUEUE", "request_id": id, "response_url": response_url, "status_url": status_url,
        "cancel_url": cancel_url, "logs": null, "metrics": {}, "queue_position": 0
    });
    if uri.query().is_some_and(|q| q.contains("fal_webhook=")) {
        out["gateway_request_id"] = json!(id);
    }
    job.labels = (
        s.settings().queued_status.clone(),
        s.settings().running_status.clone(),
    );
    s.jobs.insert(job);
    tag.job_id = Some(id.clone());
    let mut r = json_response(200, &out);
    set_header(&mut r, "x-fal-request-id", &id);
    with_tag(r, tag)
}

fn output_urls(meta: &Value) -> Vec<String> {
    let out = &meta["output"];
    let mut v: Vec<String> = out["images"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i["url"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(u) = out["video"]["url"].as_str() {
        v.push(u.to_owned());
    }
    v
}

/// Find the job and check that the URL used the app the job was submitted to (without sub-path).
fn find(s: &Shared, app: &str, id: &str, tag: &mut Tag) -> Option<String> {
    let model = s.jobs.with(id, |j| j.model.clone())?;
    tag.model = Some(model.clone());
    tag.job_id = Some(id.to_owned());
    (app_of(&model) == app).then_some(model)
}

async fn status(s: &Arc<Shared>, app: &str, id: &str, uri: &Uri, h: &HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Status);
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    if find(s, app, id, &mut tag).is_none() {
        return with_tag(json_response(404, &json!({"detail": "Request not found"})), tag);
    }
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let logs = uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "logs=1" || p == "logs=true"));
    let (state, failure, labels) = s
        .jobs
        .with(id, |j| {
            j.polls += 1;
            (j.state(), j.meta.get("violation").is_some(), j.labels.clone())
        })
        .unwrap_or((JobState::Canceled, false, (None, None)));
    let (status_url, response_url, cancel_url) = urls(s, app, id);
    let (code, label) = match &state {
        JobState::Queued => (202, labels.0.unwrap_or_else(|| "IN_QUEUE".to_owned())),
        JobState::Running => (202, labels.1.unwrap_or_else(|| "IN_PROGRESS".to_owned())),
        JobState::Unknown(x) => (202, x.clone()),
        JobState::Canceled | JobState::Aborted => (200, "CANCELLED".to_owned()),
        _ => (200, "COMPLETED".to_owned()),
    };
    let mut out = json!({"status": label, "request_id": id, "response_url": response_url,
                         "status_url": status_url, "cancel_url": cancel_url});
    out["logs"] = if logs && state != JobState::Queued {
        json!([{"timestamp": now_rfc3339(), "level": "INFO", "source": "user", "message": "Generating..."}])
    } else {
        Value::Null
    };
    match &state {
        JobState::Queued => out["queue_position"] = json!(0),
        JobState::Succeeded if !failure => out["metrics"] = json!({"inference_time": 1.92}),
        JobState::Failed => {
            out["error"] = json!("Runner encountered an error while processing the request");
            out["error_type"] = json!("runner_server_error");
        }
        _ => {}
    }
    with_tag(json_response(code, &out), tag)
}

async fn result(s: &Arc<Shared>, app: &str, id: &str, h: &HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Result);
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    if find(s, app, id, &mut tag).is_none() {
        return with_tag(json_response(404, &json!({"detail": "Request not found"})), tag);
    }
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let Some((state, meta)) = s.jobs.with(id, |j| (j.state(), j.meta.clone())) else {
        return with_tag(json_response(404, &json!({"detail": "Request not found"})), tag);
    };
    let mut r = match state {
        JobState::Queued | JobState::Running | JobState::Unknown(_) => {
            json_response(400, &json!({"detail": "Request is still in progress"}))
        }
        JobState::Canceled | JobState::Aborted => {
            let mut r = json_response(
                499,
                &json!({"detail": "Request was cancelled", "error_type": "client_cancelled"}),
            );
            set_header(&mut r, "x-fal-error-type", "client_cancelled");
            r
        }
        JobState::Rejected => content_rejected(),
        JobState::Failed => failed_after_running(),
        JobState::Succeeded => match meta.get("violation") {
            Some(v) => json_response(
                422,
                &json!({"detail": [{"loc": ["body", v["field"]], "msg": v["msg"], "type": v["type"]}]}),
            ),
            None => {
                let units = s
                    .settings()
                    .fal_billable_units
                    .clone()
                    .unwrap_or_else(|| meta["units"].as_str().unwrap_or("1").to_owned());
                let mut r = json_response(200, &meta["output"]);
                set_header(&mut r, "x-fal-billable-units", &units);
                r
            }
        },
    };
    set_header(&mut r, "x-fal-request-id", id);
    with_tag(r, tag)
}

async fn cancel(s: &Arc<Shared>, app: &str, id: &str, h: &HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Cancel);
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    if find(s, app, id, &mut tag).is_none() {
        return with_tag(json_response(404, &json!({"status": "NOT_FOUND"})), tag);
    }
    s.record_cancel(id);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let done = s
        .jobs
        .with(id, |j| {
            if j.state().is_terminal() {
                true
            } else {
                j.canceled = true;
                false
            }
        })
        .unwrap_or(true);
    let r = if done {
        json_response(400, &json!({"status": "ALREADY_COMPLETED"}))
    } else {
        json_response(202, &json!({"status": "CANCELLATION_REQUESTED"}))
    };
    with_tag(r, tag)
}

/// `fal.run`: run and answer the output directly.
async fn sync_dispatch(
    State(s): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().trim_matches('/').to_owned();
    let segs: Vec<&str> = path.split('/').filter(|x| !x.is_empty()).collect();
    if method != Method::POST || segs.len() < 2 || segs.contains(&"requests") {
        return with_tag(
            json_response(404, &json!({"detail": "Not Found"})),
            crate::server::not_found_tag(&s),
        );
    }
    let model = segs.join("/");
    let mut tag = s.enter(Endpoint::Create);
    tag.model = Some(model.clone());
    if let Err(r) = check_auth(&s, &headers) {
        return with_tag(r, tag);
    }
    let input = match parse_json(&body) {
        Ok(v) => v,
        Err(e) => return with_tag(json_response(422, &json!({"detail": e})), tag),
    };
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let id = uuid();
    let (out, units) = match run_model(&model, &input, &s.sync_origin, &id, s.next_seq()) {
        Ok(x) => x,
        Err(v) => return with_tag(validation_error(&v), tag),
    };
    let mut r = match s.job_fault(&mut tag) {
        Some(FaultKind::ContentRejected) => content_rejected(),
        Some(FaultKind::FailAfterRunning) => failed_after_running(),
        Some(FaultKind::Stuck | FaultKind::StuckInQueue) => {
            s.hang().await;
            render_fault(&FaultKind::ServerError { status: 504 })
        }
        // An unknown status has no meaning for a synchronous call: answered normally.
        _ => {
            let units = s.settings().fal_billable_units.clone().unwrap_or(units);
            let mut r = json_response(200, &out);
            set_header(&mut r, "x-fal-billable-units", &units);
            r
        }
    };
    set_header(&mut r, "x-fal-request-id", &id);
    with_tag(r, tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn megapixels_round_up_per_image() {
        assert_eq!(billed_mp(1024, 768), 1);
        assert_eq!(billed_mp(1024, 1024), 1);
        assert_eq!(billed_mp(1025, 1024), 2);
        assert_eq!(billed_mp(2048, 2048), 4);
    }

    #[test]
    fn units_per_model() {
        let (_, u) = run_model(
            "fal-ai/flux/dev",
            &json!({"prompt": "a", "num_images": 2, "image_size": {"width": 1536, "height": 1024}}),
            "o",
            "i",
            0,
        )
        .unwrap();
        assert_eq!(u, "4");
        let (_, u) = run_model(
            "fal-ai/kling-video/v1.6/standard/text-to-video",
            &json!({"prompt": "a", "duration": "10"}),
            "o",
            "i",
            0,
        )
        .unwrap();
        assert_eq!(u, "10");
        let (_, u) = run_model(
            "fal-ai/flux-pro/kontext",
            &json!({"prompt": "a", "image_url": "u", "num_images": 3}),
            "o",
            "i",
            0,
        )
        .unwrap();
        assert_eq!(u, "3");
        let e = run_model(
            "fal-ai/flux/dev",
            &json!({"prompt": "a", "num_images": 5}),
            "o",
            "i",
            0,
        )
        .unwrap_err();
        assert_eq!(e.field, "num_images");
    }

    #[test]
    fn app_strips_subpath() {
        assert_eq!(app_of("fal-ai/flux/dev"), "fal-ai/flux");
        assert_eq!(
            app_of("fal-ai/kling-video/v1.6/standard/text-to-video"),
            "fal-ai/kling-video"
        );
    }
}
