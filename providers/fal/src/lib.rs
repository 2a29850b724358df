#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use genroute_core::{
    Asset, Billed, CallContext, Decimal, Dimensions, EditOp, ErrorKind, Generation, Job, MediaInput,
    ModelInfo, ProgressEvent, Provider, ProviderError, ProviderId, ProviderRequest, Stage, validate_request,
};
use genroute_http::reqwest::{Method, Url};
use genroute_http::{
    Auth, BaseUrl, CancelGuard, HttpClient, HttpError, JobStatus, PollConfig, RawResponse, StatusUpdate,
    poll_until_done,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use config::FalConfig;
pub use error::{Phase, parse_error};

/// The header carrying the billed quantity, in the model's unit (may be fractional).
pub const BILLABLE_UNITS_HEADER: &str = "x-fal-billable-units";

/// fal.ai through its queue API.
#[derive(Debug)]
pub struct FalProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    poll: PollConfig,
    request_start_timeout: Option<Duration>,
    /// Cancel URLs of jobs in flight, by request id, so `cancel(request_id)` can follow fal's own URL.
    in_flight: Arc<Mutex<HashMap<String, Url>>>,
}

#[derive(Clone, Debug)]
struct JobUrls {
    status: Url,
    response: Url,
    cancel: Url,
}

#[derive(Deserialize)]
struct SubmitBody {
    request_id: String,
    #[serde(default)]
    status_url: Option<String>,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    cancel_url: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    queue_position: Option<u32>,
}

#[derive(Deserialize)]
struct StatusBody {
    status: String,
    #[serde(default)]
    queue_position: Option<u32>,
    #[serde(default)]
    metrics: Option<Metrics>,
}

#[derive(Deserialize, Default, Clone, Copy)]
struct Metrics {
    #[serde(default)]
    inference_time: Option<f64>,
}

#[derive(Deserialize)]
struct FalFile {
    url: String,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Deserialize)]
struct OutputBody {
    #[serde(default)]
    images: Vec<FalFile>,
    #[serde(default)]
    video: Option<FalFile>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    has_nsfw_concepts: Option<Vec<bool>>,
}

fn status_of(s: &str) -> JobStatus {
    match s {
        "IN_QUEUE" => JobStatus::Queued,
        "IN_PROGRESS" => JobStatus::Running,
        "COMPLETED" => JobStatus::Succeeded,
        "CANCELLED" | "CANCELLATION_REQUESTED" => JobStatus::Cancelled,
        _ => JobStatus::Unknown,
    }
}

fn media_url(input: &MediaInput, field: &str) -> Result<String, ProviderError> {
    match input {
        MediaInput::Url { url } => Ok(url.clone()),
        // fal accepts data URIs wherever it takes a file URL.
        MediaInput::Bytes { media_type, data } => Ok(format!(
            "data:{media_type};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(data)
        )),
        MediaInput::Asset { .. } => Err(ProviderError::local(
            ErrorKind::Unsupported,
            format!("{field}: fal has no asset store; pass a URL or bytes"),
        )),
    }
}

/// The nearest of Kling's aspect ratios.
fn kling_aspect(size: Dimensions) -> &'static str {
    let ratio = f64::from(size.width()) / f64::from(size.height());
    [("16:9", 16.0 / 9.0), ("9:16", 9.0 / 16.0), ("1:1", 1.0)]
        .into_iter()
        .min_by(|a, b| (a.1 - ratio).abs().total_cmp(&(b.1 - ratio).abs()))
        .map_or("16:9", |(name, _)| name)
}

/// The model input JSON (sent as the body itself, not wrapped). Fields derived from the job win over
/// `extras` of the same name, so the quote and the request cannot disagree.
fn build_input(request: &ProviderRequest) -> Result<Value, ProviderError> {
    let job = &request.job;
    let mut body: Map<String, Value> = job.extras().clone();
    match job {
        Job::Image(j) => {
            body.insert("prompt".into(), json!(j.prompt()));
            body.insert(
                "image_size".into(),
                json!({"width": j.size().width(), "height": j.size().height()}),
            );
            body.insert("num_images".into(), json!(j.count()));
            if let Some(steps) = j.steps() {
                body.insert("num_inference_steps".into(), json!(steps));
            }
        }
        Job::Edit(j) => {
            let EditOp::Img2Img { prompt, .. } = j.op() else {
                return Err(ProviderError::local(
                    ErrorKind::Unsupported,
                    format!("{} only edits from a prompt", request.model),
                ));
            };
            body.insert("prompt".into(), json!(prompt));
            body.insert("image_url".into(), json!(media_url(j.input(), "input")?));
            body.insert("num_images".into(), json!(j.count()));
        }
        Job::Video(j) => {
            if let Some(p) = j.prompt() {
                body.insert("prompt".into(), json!(p));
            }
            // Kling takes whole seconds as a string ("5" | "10"); capabilities allow only those.
            body.insert(
                "duration".into(),
                json!(j.duration_seconds().normalize().to_string()),
            );
            if let Some(size) = j.resolution() {
                body.insert("aspect_ratio".into(), json!(kling_aspect(size)));
            }
        }
        Job::Audio(_) => {
            return Err(ProviderError::local(
                ErrorKind::Unsupported,
                "fal adapter has no audio models",
            ));
        }
    }
    if let Some(seed) = job.seed() {
        // u64 stays exact in serde_json (seeds may exceed 2^53).
        body.insert("seed".into(), json!(seed));
    }
    Ok(Value::Object(body))
}

fn decimal_header(resp: &RawResponse, name: &str) -> Option<Decimal> {
    resp.header(name)?.trim().parse::<Decimal>().ok()
}

impl FalProvider {
    /// An adapter from settings.
    pub fn new(config: FalConfig) -> Result<Self, HttpError> {
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::fal_key(&config.api_key)?;
        Ok(Self {
            id: ProviderId::new("fal")?,
            models: models::all()?,
            http: HttpClient::new(&config.http, base, auth)?,
            // fal: queue wait and cold starts are not billed, and a queued request is cancellable.
            poll: config.poll.queue_time_unbilled(true),
            request_start_timeout: config.request_start_timeout,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The URLs of a request we did not submit (resume, cancel by id): fal's documented layout under the
    /// model's app. Only used when fal's own URLs are not at hand.
    fn built_urls(&self, model: &str, request_id: &str) -> Result<JobUrls, ProviderError> {
        let app = models::app_of(model);
        Ok(JobUrls {
            status: self
                .http
                .endpoint(&format!("{app}/requests/{request_id}/status"))?,
            response: self.http.endpoint(&format!("{app}/requests/{request_id}"))?,
            cancel: self
                .http
                .endpoint(&format!("{app}/requests/{request_id}/cancel"))?,
        })
    }

    fn follow_or(&self, given: Option<&str>, fallback: Url) -> Result<Url, ProviderError> {
        match given {
            Some(u) => self.http.follow(u),
            None => Ok(fallback),
        }
    }

    fn remember(&self, request_id: &str, cancel: &Url) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.insert(request_id.to_owned(), cancel.clone());
        }
    }

    fn forget(&self, request_id: &str) {
        if let Ok(mut map) = self.in_flight.lock() {
            map.remove(request_id);
        }
    }

    async fn submit(
        &self,
        request: &ProviderRequest,
        input: &Value,
        ctx: &CallContext,
    ) -> Result<(String, JobUrls), ProviderError> {
        let url = self.http.endpoint(request.model.as_str())?;
        let mut req = self.http.request(Method::POST, url).json(input);
        if let Some(t) = self.request_start_timeout {
            req = req.header("x-fal-request-start-timeout", t.as_secs().max(1).to_string());
        }
        let resp = self.http.send_within(ctx, req).await?;
        if !resp.status.is_success() {
            return Err(parse_error(Phase::Submit, resp.status, &resp.headers, &resp.body));
        }
        let body: SubmitBody = resp.json()?;
        let built = self.built_urls(request.model.as_str(), &body.request_id)?;
        let urls = JobUrls {
            status: self.follow_or(body.status_url.as_deref(), built.status)?,
            response: self.follow_or(body.response_url.as_deref(), built.response)?,
            cancel: self.follow_or(body.cancel_url.as_deref(), built.cancel)?,
        };
        ctx.report(ProgressEvent {
            stage: Stage::Submitted,
            fraction: None,
            queue_position: body.queue_position,
            provider_job_id: Some(body.request_id.clone()),
            provider_status: body.status.clone(),
        });
        Ok((body.request_id, urls))
    }

    async fn check_status(&self, status_url: &Url) -> Result<StatusUpdate<Metrics>, ProviderError> {
        let mut url = status_url.clone();
        url.query_pairs_mut().append_pair("logs", "1");
        let resp = self.http.send(self.http.request(Method::GET, url)).await?;
        // 202 while queued or running, 200 when completed: the body's `status` decides.
        if !resp.status.is_success() {
            return Err(parse_error(Phase::Status, resp.status, &resp.headers, &resp.body));
        }
        let body: StatusBody = resp.json()?;
        let mut update = StatusUpdate::new(
            status_of(&body.status),
            body.status,
            body.metrics.unwrap_or_default(),
        );
        update.queue_position = body.queue_position;
        Ok(update)
    }

    fn cancel_guard(&self, request_id: &str, cancel: Url) -> CancelGuard {
        let http = self.http.clone();
        let in_flight = Arc::clone(&self.in_flight);
        let id = request_id.to_owned();
        CancelGuard::new(async move {
            let _ = http.send(http.request(Method::PUT, cancel)).await;
            if let Ok(mut map) = in_flight.lock() {
                map.remove(&id);
            }
        })
    }

    /// Polls a submitted request to its end and fetches the result.
    async fn follow_job(
        &self,
        request_id: &str,
        urls: JobUrls,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        self.remember(request_id, &urls.cancel);
        let guard = self.cancel_guard(request_id, urls.cancel.clone());
        // On error (deadline, too many unknown statuses...) the guard drops here and cancels upstream.
        let done = poll_until_done(ctx, &self.poll, request_id, || self.check_status(&urls.status)).await?;
        guard.disarm();
        self.forget(request_id);
        if done.status != JobStatus::Succeeded {
            return Err(ProviderError::new(
                ErrorKind::Cancelled,
                format!("fal request {request_id} ended as {}", done.provider_status),
            )
            .billed(Billed::Unknown)
            .job_id(Some(request_id.to_owned())));
        }
        ctx.report(ProgressEvent {
            stage: Stage::Finalizing,
            fraction: Some(1.0),
            queue_position: None,
            provider_job_id: Some(request_id.to_owned()),
            provider_status: Some(done.provider_status.clone()),
        });
        let resp = self
            .http
            .send(self.http.request(Method::GET, urls.response))
            .await
            .map_err(|e| e.job_id(Some(request_id.to_owned())))?;
        if !resp.status.is_success() {
            return Err(parse_error(Phase::Result, resp.status, &resp.headers, &resp.body)
                .job_id(Some(request_id.to_owned())));
        }
        self.read_output(request_id, &resp, done.payload, started)
    }

    fn read_output(
        &self,
        request_id: &str,
        resp: &RawResponse,
        metrics: Metrics,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let job_id = Some(request_id.to_owned());
        let request_header = resp.header(error::REQUEST_ID_HEADER).map(str::to_owned);
        let billable = decimal_header(resp, BILLABLE_UNITS_HEADER);
        let out: OutputBody = resp
            .json()
            .map_err(|e| e.billed(Billed::Unknown).job_id(job_id.clone()))?;
        if let Some(flags) = &out.has_nsfw_concepts
            && !flags.is_empty()
            && flags.iter().all(|f| *f)
        {
            return Err(ProviderError::new(
                ErrorKind::ContentRejected,
                "fal's safety checker blanked every output (has_nsfw_concepts)",
            )
            .billed(Billed::Unknown)
            .job_id(job_id)
            .request_id(request_header));
        }
        let mut outputs = Vec::new();
        for f in out.images.into_iter().chain(out.video) {
            let mut asset = Asset::url(f.url, f.content_type);
            if let (Some(w), Some(h)) = (f.width, f.height) {
                asset.dimensions = Dimensions::new(w, h).ok();
            }
            outputs.push(asset);
        }
        if outputs.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                "fal result has neither images nor video",
            )
            .billed(Billed::Unknown)
            .job_id(job_id));
        }
        let mut generation = Generation::new(outputs);
        generation.provider_job_id = job_id;
        generation.provider_request_id = request_header;
        generation.usage.billable_units = billable;
        generation.seed = out.seed;
        generation.timings.running = metrics
            .inference_time
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        generation.timings.total = started.elapsed();
        Ok(generation)
    }
}

#[async_trait]
impl Provider for FalProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    async fn generate(
        &self,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        let input = build_input(request)?;
        let started = Instant::now();
        let (request_id, urls) = self.submit(request, &input, ctx).await?;
        self.follow_job(&request_id, urls, ctx, started).await
    }

    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        let urls = self.built_urls(request.model.as_str(), provider_job_id)?;
        self.follow_job(provider_job_id, urls, ctx, Instant::now()).await
    }

    /// Cancels a request: by its id while this adapter follows it (using fal's own cancel URL), or, for
    /// any request, by `"<model id>:<request id>"`.
    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        let known = self
            .in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(provider_job_id).cloned());
        let url = match (known, provider_job_id.rsplit_once(':')) {
            (Some(url), _) => url,
            (None, Some((model, id))) => self.built_urls(model, id)?.cancel,
            (None, None) => {
                return Err(ProviderError::local(
                    ErrorKind::InvalidRequest,
                    format!(
                        "fal request {provider_job_id} is not followed here; cancel it as \"<model id>:<request id>\""
                    ),
                ));
            }
        };
        let resp = self.http.send(self.http.request(Method::PUT, url)).await?;
        let body: Value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        let status = body.get("status").and_then(Value::as_str).unwrap_or("");
        if resp.status.is_success() || status == "ALREADY_COMPLETED" {
            // Already completed: nothing left to cancel (and it will be billed).
            self.forget(provider_job_id);
            return Ok(());
        }
        Err(parse_error(Phase::Cancel, resp.status, &resp.headers, &resp.body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kling_aspect_is_nearest() {
        let d = |w, h| Dimensions::new(w, h).unwrap();
        assert_eq!(kling_aspect(d(1920, 1080)), "16:9");
        assert_eq!(kling_aspect(d(720, 1280)), "9:16");
        assert_eq!(kling_aspect(d(1000, 1100)), "1:1");
    }

    #[test]
    fn statuses_map_to_one_enum() {
        assert_eq!(status_of("IN_QUEUE"), JobStatus::Queued);
        assert_eq!(status_of("IN_PROGRESS"), JobStatus::Running);
        assert_eq!(status_of("COMPLETED"), JobStatus::Succeeded);
        assert_eq!(status_of("CANCELLED"), JobStatus::Cancelled);
        assert_eq!(status_of("SOMETHING_NEW"), JobStatus::Unknown);
    }
}
