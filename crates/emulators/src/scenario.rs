//! Scenario generate / jobs / assets API, PROVIDERS.md §6.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault::FaultKind;
use crate::jobs::{Job, JobState};
use crate::log::Endpoint;
use crate::server::{
    Shared, header_str, hex_id, json_response, parse_json, rfc3339, serve_file, set_header, with_tag,
};
use crate::validate::{Violation, opt_int, opt_num, opt_str, req_str};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/generate/custom/{model_id}", post(generate_custom))
        .route("/v1/generate/{op}", post(generate_typed))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/action", post(job_action))
        .route("/v1/assets/{id}", get(get_asset))
        .route("/files/{*rest}", get(serve_file))
        .fallback(not_found)
}

/// `Basic base64(key:secret)`.
pub(crate) fn basic_auth(key: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{key}:{secret}"))
    )
}

/// Error body (shape unconfirmed: `{"error": message}` plus optional `details`).
fn error(status: u16, message: &str) -> Response {
    json_response(status, &json!({"error": message}))
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    let st = s.settings();
    if header_str(h, "authorization") == Some(basic_auth(&st.api_key, &st.api_secret).as_str()) {
        Ok(())
    } else {
        Err(error(401, "Unauthorized"))
    }
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status } => error(*status, "Internal server error"),
        FaultKind::RateLimited { retry_after } => {
            let mut r = json_response(
                429,
                &json!({"error": "Too many requests: your team reached its concurrent generation limit",
                        "details": {"actionName": "generate", "actionLimit": 5}}),
            );
            set_header(
                &mut r,
                "retry-after",
                &crate::server::retry_after_secs(*retry_after).to_string(),
            );
            r
        }
        // Unconfirmed: Scenario's answer when creative units run out is not documented.
        FaultKind::CreditExhausted => json_response(
            402,
            &json!({"error": "Not enough creative units to run this generation",
                    "details": {"reason": "insufficient_creative_units"}}),
        ),
        _ => error(500, "Internal server error"),
    }
}

fn invalid(v: &Violation) -> Response {
    json_response(
        400,
        &json!({"error": format!("{}: {}", v.field, v.msg), "details": {"field": v.field}}),
    )
}

const TYPED: [&str; 12] = [
    "txt2img",
    "img2img",
    "inpaint",
    "controlnet",
    "txt2img-ip-adapter",
    "img2img-ip-adapter",
    "upscale",
    "remove-background",
    "pixelate",
    "vectorize",
    "detection",
    "captioning",
];

struct Plan {
    model: String,
    samples: u64,
    /// Creative units per sample before discount.
    units_per_sample: u64,
    width: u64,
    height: u64,
    inference: bool,
}

/// Validate a typed generation body and price it. CU per sample for diffusion: 5 × steps/30 ×
/// pixels/1024² rounded up (SDXL 1024², 30 steps = 5 CU, seed 002); composition control ×1.2; upscale 10,
/// vectorize 5, other fixed operations as listed (unconfirmed).
fn plan_typed(op: &str, b: &Value) -> Result<Plan, Violation> {
    crate::validate::obj(b, "body")?;
    let diffusion = matches!(
        op,
        "txt2img" | "img2img" | "inpaint" | "controlnet" | "txt2img-ip-adapter" | "img2img-ip-adapter"
    );
    if !diffusion {
        req_str(b, "image")?;
        let units = match op {
            "upscale" => 10,
            "vectorize" | "remove-background" => 5,
            "pixelate" | "captioning" => 1,
            _ => 2,
        };
        return Ok(Plan {
            model: op.to_owned(),
            samples: 1,
            units_per_sample: units,
            width: 1024,
            height: 1024,
            inference: false,
        });
    }
    let model = req_str(b, "modelId")?.to_owned();
    req_str(b, "prompt")?;
    opt_str(b, "negativePrompt")?;
    if op != "txt2img" && op != "txt2img-ip-adapter" {
        req_str(b, "image")?;
    }
    if op == "inpaint" {
        req_str(b, "mask")?;
    }
    let samples = opt_int(b, "numSamples", 1, 128)?.unwrap_or(4) as u64;
    let steps = opt_int(b, "numInferenceSteps", 1, 150)?.unwrap_or(30) as u64;
    opt_num(b, "guidance", 0.0, 20.0)?;
    let side = if model.contains("1.5") || model.contains("sd15") {
        512
    } else {
        1024
    };
    let dim = |k: &str| -> Result<u64, Violation> {
        let v = opt_int(b, k, 64, 2048)?.unwrap_or(side) as u64;
        if !v.is_multiple_of(8) {
            return Err(Violation::new(
                k,
                "multiple_of",
                format!("{k} must be a multiple of 8"),
            ));
        }
        Ok(v)
    };
    let (width, height) = (dim("width")?, dim("height")?);
    match b.get("seed") {
        None | Some(Value::Null | Value::String(_)) => {}
        Some(_) => return Err(Violation::new("seed", "string_type", "seed must be a string")),
    }
    let mut units = 5.0 * steps as f64 / 30.0 * (width * height) as f64 / (1024.0 * 1024.0);
    if op == "controlnet" {
        units *= 1.2;
    }
    Ok(Plan {
        model,
        samples,
        units_per_sample: (units.ceil() as u64).max(1),
        width,
        height,
        inference: true,
    })
}

fn plan_custom(model_id: &str, b: &Value) -> Result<Plan, Violation> {
    crate::validate::obj(b, "body")?;
    let samples = opt_int(b, "numSamples", 1, 128)?.unwrap_or(1) as u64;
    Ok(Plan {
        model: model_id.to_owned(),
        samples,
        units_per_sample: 5,
        width: 1024,
        height: 1024,
        inference: false,
    })
}

fn dry_run(q: &Option<String>) -> bool {
    q.as_deref()
        .is_some_and(|q| q.split('&').any(|p| p.eq_ignore_ascii_case("dryRun=true")))
}

async fn generate_typed(
    State(s): State<Arc<Shared>>,
    Path(op): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    if !TYPED.contains(&op.as_str()) {
        return with_tag(error(404, "Not Found"), crate::server::not_found_tag(&s));
    }
    generate(&s, &op, None, &q, &h, &body).await
}

async fn generate_custom(
    State(s): State<Arc<Shared>>,
    Path(model_id): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    generate(&s, "custom", Some(model_id), &q, &h, &body).await
}

async fn generate(
    s: &Arc<Shared>,
    op: &str,
    custom: Option<String>,
    q: &Option<String>,
    h: &HeaderMap,
    body: &Bytes,
) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(s, h) {
        return with_tag(r, tag);
    }
    let b = match parse_json(body) {
        Ok(v) => v,
        Err(e) => return with_tag(error(400, &e), tag),
    };
    tag.model = Some(match &custom {
        Some(m) => m.clone(),
        None => b.get("modelId").and_then(Value::as_str).unwrap_or(op).to_owned(),
    });
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let plan = match &custom {
        Some(m) => plan_custom(m, &b),
        None => plan_typed(op, &b),
    };
    let plan = match plan {
        Ok(p) => p,
        Err(v) => return with_tag(invalid(&v), tag),
    };
    let settings = s.settings();
    let gross = settings
        .scenario_units_per_sample
        .unwrap_or(plan.units_per_sample)
        * plan.samples;
    let discount = gross * u64::from(settings.scenario_discount_percent.min(100)) / 100;
    let cost = gross - discount;
    if dry_run(q) {
        let mut out = json!({"creativeUnitsCost": cost, "creativeUnitsDiscount": discount});
        if custom.is_some() {
            out["job"] = json!({});
        }
        return with_tag(json_response(269, &out), tag);
    }
    let fault = s.job_fault(&mut tag);
    let id = format!("job_{}", hex_id(24));
    let mut job = Job::new(
        id.clone(),
        s.next_seq(),
        plan.model.clone(),
        b.clone(),
        settings.progression,
        fault,
    );
    job.labels = (settings.queued_status.clone(), settings.running_status.clone());
    let ext = if op == "vectorize" { "svg" } else { "png" };
    let assets: Vec<String> = (0..plan.samples)
        .map(|i| format!("asset_{}-{i}", &id[4..]))
        .collect();
    job.outputs = assets
        .iter()
        .map(|a| format!("{}/files/{a}.{ext}", s.origin))
        .collect();
    job.meta = json!({"op": op, "assets": assets, "cost": cost, "discount": discount,
                      "width": plan.width, "height": plan.height, "ext": ext});
    let mut out =
        json!({"creativeUnitsCost": cost, "creativeUnitsDiscount": discount, "job": job_json(&job)});
    if plan.inference {
        out["inference"] = json!({
            "id": format!("inf_{}", hex_id(24)), "modelId": plan.model, "status": "queued",
            "prompt": b.get("prompt"), "parameters": {"type": op, "numSamples": plan.samples,
            "width": plan.width, "height": plan.height}, "images": [], "imagesNumber": plan.samples,
            "createdAt": rfc3339(job.created_at),
        });
    }
    s.jobs.insert(job);
    tag.job_id = Some(id);
    with_tag(json_response(200, &out), tag)
}

fn status_str(j: &Job, state: &JobState) -> String {
    match state {
        JobState::Queued => j.queued_label("queued").into(),
        JobState::Running => j.running_label("in-progress").into(),
        JobState::Succeeded => "success".into(),
        JobState::Failed | JobState::Rejected => "failure".into(),
        JobState::Canceled | JobState::Aborted => "canceled".into(),
        JobState::Unknown(x) => x.clone(),
    }
}

fn job_json(j: &Job) -> Value {
    let state = j.state();
    let created = rfc3339(j.created_at);
    let mut history = vec![json!({"status": "queued", "date": created})];
    if !matches!(state, JobState::Queued) {
        history.push(
            json!({"status": status_str(j, &state), "date": rfc3339(j.created_at + Duration::from_secs(1))}),
        );
    }
    let assets = if state == JobState::Succeeded {
        j.meta["assets"].clone()
    } else {
        json!([])
    };
    let mut job = json!({
        "jobId": j.id,
        "jobType": if j.meta["op"] == "custom" { "custom" } else { "inference" },
        "status": status_str(j, &state),
        "progress": j.progress(),
        "statusHistory": history,
        "metadata": {"input": j.input, "assetIds": assets},
        "creativeUnitsCost": j.meta["cost"],
        "createdAt": created,
        "updatedAt": crate::server::now_rfc3339(),
    });
    match state {
        JobState::Failed => job["error"] = json!("Generation failed, your creative units were reimbursed"),
        JobState::Rejected => {
            job["error"] = json!("NSFW content detected in the request; generation refused")
        }
        _ => {}
    }
    job
}

async fn get_job(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Status);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(error(404, &format!("Job {id} not found")), tag);
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let job = s
        .jobs
        .with(&id, |j| {
            j.polls += 1;
            job_json(j)
        })
        .unwrap_or(Value::Null);
    with_tag(json_response(200, &json!({"job": job})), tag)
}

async fn job_action(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    let mut tag = s.enter(Endpoint::Cancel);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let Some(model) = s.jobs.with(&id, |j| j.model.clone()) else {
        return with_tag(error(404, &format!("Job {id} not found")), tag);
    };
    tag.model = Some(model);
    tag.job_id = Some(id.clone());
    let action = parse_json(&body)
        .ok()
        .and_then(|v| v.get("action").and_then(Value::as_str).map(str::to_owned));
    if action.as_deref() != Some("cancel") {
        return with_tag(error(400, "action: must be one of 'cancel'"), tag);
    }
    s.record_cancel(&id);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    // Only a job that has not started can be cancelled (most generation jobs refuse once running).
    let r = s
        .jobs
        .with(&id, |j| {
            if j.state() == JobState::Queued {
                j.canceled = true;
                json_response(200, &json!({"job": job_json(j)}))
            } else {
                error(400, "This job cannot be canceled in its current state")
            }
        })
        .unwrap_or_else(|| error(404, "Job not found"));
    with_tag(r, tag)
}

async fn get_asset(State(s): State<Arc<Shared>>, Path(id): Path<String>, h: HeaderMap) -> Response {
    let mut tag = s.enter(Endpoint::Asset);
    if let Err(r) = check_auth(&s, &h) {
        return with_tag(r, tag);
    }
    let job_id = id
        .strip_prefix("asset_")
        .and_then(|r| r.rsplit_once('-'))
        .map(|(j, _)| format!("job_{j}"))
        .unwrap_or_default();
    let found = s.jobs.with(&job_id, |j| {
        let ok = j.state() == JobState::Succeeded
            && j.meta["assets"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x.as_str() == Some(id.as_str())));
        (ok, j.model.clone(), j.meta.clone())
    });
    let Some((true, model, meta)) = found else {
        return with_tag(error(404, &format!("Asset {id} not found")), tag);
    };
    tag.model = Some(model.clone());
    tag.job_id = Some(job_id);
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return with_tag(r, tag);
    }
    let ext = meta["ext"].as_str().unwrap_or("png");
    let asset = json!({"asset": {
        "id": id,
        "url": format!("{}/files/{id}.{ext}", s.origin),
        "mimeType": if ext == "svg" { "image/svg+xml" } else { "image/png" },
        "kind": "image",
        "status": "success",
        "metadata": {"type": format!("inference-{}", meta["op"].as_str().unwrap_or("txt2img")), "modelId": model,
                     "width": meta["width"], "height": meta["height"], "size": 67},
    }});
    with_tag(json_response(200, &asset), tag)
}

async fn not_found(State(s): State<Arc<Shared>>) -> Response {
    with_tag(error(404, "Not Found"), crate::server::not_found_tag(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        let p = plan_typed("txt2img", &json!({"modelId": "sdxl", "prompt": "x"}))
            .ok()
            .unwrap();
        assert_eq!((p.samples, p.units_per_sample), (4, 5));
        let p = plan_typed(
            "txt2img",
            &json!({"modelId": "sdxl", "prompt": "x", "numInferenceSteps": 60, "numSamples": 1}),
        )
        .ok()
        .unwrap();
        assert_eq!(p.units_per_sample, 10);
        let p = plan_typed(
            "controlnet",
            &json!({"modelId": "sdxl", "prompt": "x", "image": "a"}),
        )
        .ok()
        .unwrap();
        assert_eq!(p.units_per_sample, 6);
        assert_eq!(
            plan_typed("upscale", &json!({"image": "asset_1"}))
                .ok()
                .unwrap()
                .units_per_sample,
            10
        );
        assert!(plan_typed("txt2img", &json!({"modelId": "sdxl", "prompt": "x", "seed": 42})).is_err());
        assert!(
            plan_typed(
                "txt2img",
                &json!({"modelId": "sdxl", "prompt": "x", "width": 1001})
            )
            .is_err()
        );
        assert!(
            plan_typed(
                "txt2img",
                &json!({"modelId": "sdxl", "prompt": "x", "numSamples": 129})
            )
            .is_err()
        );
    }
}
