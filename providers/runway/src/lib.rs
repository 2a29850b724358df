#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::time::Instant;

use async_trait::async_trait;
use base64::Engine as _;
use genroute_core::{
    Asset, Billed, CallContext, Decimal, ErrorKind, Generation, Job, MediaInput, ModelInfo, ProgressEvent,
    Provider, ProviderError, ProviderId, ProviderRequest, Stage, validate_request,
};
use genroute_http::reqwest::{Method, RequestBuilder, Url};
use genroute_http::{
    Auth, BaseUrl, CancelGuard, HttpClient, HttpError, JobStatus, PollConfig, StatusUpdate, poll_until_done,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use config::RunwayConfig;
pub use error::{Failure, Phase, parse_error};
use models::{Kind, Spec};

/// The version header sent on every request.
pub const VERSION_HEADER: &str = "X-Runway-Version";

/// Runway's task API: create a task, poll it, read its output URLs.
#[derive(Debug)]
pub struct RunwayProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    api_version: String,
    poll: PollConfig,
}

#[derive(Deserialize)]
struct Created {
    id: String,
}

#[derive(Deserialize, Clone, Default)]
struct Task {
    #[serde(default)]
    status: String,
    #[serde(default)]
    progress: Option<f32>,
    #[serde(default)]
    output: Option<Vec<String>>,
    #[serde(default)]
    failure: Option<String>,
    #[serde(default, rename = "failureCode")]
    failure_code: Option<String>,
}

fn status_of(s: &str) -> JobStatus {
    match s {
        "PENDING" | "THROTTLED" => JobStatus::Queued,
        "RUNNING" => JobStatus::Running,
        "SUCCEEDED" => JobStatus::Succeeded,
        "FAILED" => JobStatus::Failed,
        "CANCELLED" | "CANCELED" => JobStatus::Cancelled,
        _ => JobStatus::Unknown,
    }
}

fn local(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::local(kind, message)
}

/// A media input as a `uri`: URLs as given, bytes as a data URI.
fn uri_of(input: &MediaInput, field: &str) -> Result<String, ProviderError> {
    match input {
        MediaInput::Url { url } => Ok(url.clone()),
        MediaInput::Bytes { media_type, data } => Ok(format!(
            "data:{media_type};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(data)
        )),
        MediaInput::Asset { .. } => Err(local(
            ErrorKind::Unsupported,
            format!("{field}: runway takes a URL or bytes, not a stored asset id"),
        )),
    }
}

fn seed_u32(seed: Option<u64>) -> Result<Option<u32>, ProviderError> {
    seed.map(|s| {
        u32::try_from(s).map_err(|_| {
            local(
                ErrorKind::InvalidRequest,
                format!("seed {s} is above Runway's limit of {}", u32::MAX),
            )
        })
    })
    .transpose()
}

/// The media type implied by an output URL's extension (signed URLs carry a query after it).
fn media_type_of(url: &str) -> Option<String> {
    let path = Url::parse(url).ok()?.path().to_ascii_lowercase();
    let ext = path.rsplit_once('.')?.1.to_owned();
    let t = match ext.as_str() {
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        _ => return None,
    };
    Some(t.to_owned())
}

/// The create call for a job: its path and body. Fields derived from the job win over `extras` of the
/// same name, so the quote and the request cannot disagree; other `extras` pass through.
fn build_create(spec: &Spec, job: &Job) -> Result<(&'static str, Value), ProviderError> {
    let mut body: Map<String, Value> = job.extras().clone();
    body.insert("model".into(), json!(spec.id));
    let path = match (spec.kind, job) {
        (Kind::Video, Job::Video(v)) => {
            let path = match (v.first_frame(), v.last_frame()) {
                (Some(first), None) => {
                    body.insert("promptImage".into(), json!(uri_of(first, "first_frame")?));
                    "v1/image_to_video"
                }
                (Some(first), Some(last)) => {
                    body.insert(
                        "promptImage".into(),
                        json!([
                            {"uri": uri_of(first, "first_frame")?, "position": "first"},
                            {"uri": uri_of(last, "last_frame")?, "position": "last"},
                        ]),
                    );
                    "v1/image_to_video"
                }
                (None, Some(_)) => {
                    return Err(local(
                        ErrorKind::Unsupported,
                        "runway takes a last frame only together with a first frame",
                    ));
                }
                (None, None) if !spec.text_to_video => {
                    return Err(local(
                        ErrorKind::Unsupported,
                        format!("{} only makes video from a first frame", spec.id),
                    ));
                }
                (None, None) => "v1/text_to_video",
            };
            if let Some(p) = v.prompt() {
                body.insert("promptText".into(), json!(p));
            }
            let (w, h) = models::ratio_for(spec, v.resolution());
            body.insert("ratio".into(), json!(format!("{w}:{h}")));
            // Capabilities allow only the model's whole-second durations.
            let seconds = u64::try_from(v.duration_seconds().normalize()).map_err(|_| {
                local(
                    ErrorKind::Unsupported,
                    format!("{} s is not a whole number of seconds", v.duration_seconds()),
                )
            })?;
            body.insert("duration".into(), json!(seconds));
            if spec.audio {
                body.insert("audio".into(), json!(v.audio()));
            }
            path
        }
        (Kind::Image, Job::Image(i)) => {
            body.insert("promptText".into(), json!(i.prompt()));
            let size = i.size();
            body.insert(
                "ratio".into(),
                json!(format!("{}:{}", size.width(), size.height())),
            );
            if !i.references().is_empty() {
                let refs = i
                    .references()
                    .iter()
                    .map(|r| Ok(json!({"uri": uri_of(r, "references")?})))
                    .collect::<Result<Vec<Value>, ProviderError>>()?;
                body.insert("referenceImages".into(), Value::Array(refs));
            }
            "v1/text_to_image"
        }
        _ => {
            return Err(local(
                ErrorKind::Unsupported,
                format!("{} does not do {}", spec.id, job.operation()),
            ));
        }
    };
    if let Some(seed) = seed_u32(job.seed())? {
        body.insert("seed".into(), json!(seed));
    }
    Ok((path, Value::Object(body)))
}

impl RunwayProvider {
    /// An adapter from settings.
    pub fn new(config: RunwayConfig) -> Result<Self, HttpError> {
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::bearer(&config.api_key)?;
        if config.api_version.trim().is_empty() {
            return Err(HttpError::InvalidConfig("api_version must not be empty".into()));
        }
        Ok(Self {
            id: ProviderId::new("runway")?,
            models: models::all()?,
            http: HttpClient::new(&config.http, base, auth)?,
            api_version: config.api_version,
            poll: config.poll,
        })
    }

    /// A request with both credentials and the version header.
    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        versioned(&self.http, &self.api_version, method, url)
    }

    fn task_url(&self, task_id: &str) -> Result<Url, ProviderError> {
        if task_id.contains('/') {
            return Err(local(
                ErrorKind::InvalidRequest,
                format!("{task_id:?} is not a Runway task id"),
            ));
        }
        self.http.endpoint(&format!("v1/tasks/{task_id}"))
    }

    async fn create(&self, path: &str, body: &Value, ctx: &CallContext) -> Result<String, ProviderError> {
        let url = self.http.endpoint(path)?;
        let resp = self
            .http
            .send_within(ctx, self.request(Method::POST, url).json(body))
            .await?;
        if !resp.status.is_success() {
            return Err(parse_error(Failure::Http {
                phase: Phase::Create,
                status: resp.status,
                headers: &resp.headers,
                body: &resp.body,
            }));
        }
        let created: Created = resp.json().map_err(|e| e.billed(Billed::Unknown))?;
        ctx.report(ProgressEvent {
            stage: Stage::Submitted,
            fraction: None,
            queue_position: None,
            provider_job_id: Some(created.id.clone()),
            provider_status: None,
        });
        Ok(created.id)
    }

    async fn check(&self, url: &Url) -> Result<StatusUpdate<Task>, ProviderError> {
        let resp = self.http.send(self.request(Method::GET, url.clone())).await?;
        if !resp.status.is_success() {
            return Err(parse_error(Failure::Http {
                phase: Phase::Status,
                status: resp.status,
                headers: &resp.headers,
                body: &resp.body,
            }));
        }
        let task: Task = resp.json()?;
        let mut update = StatusUpdate::new(status_of(&task.status), task.status.clone(), task.clone());
        update.fraction = task.progress;
        Ok(update)
    }

    /// Polls a task to its end and reads its outputs. Dropping the future (or failing to poll) deletes
    /// the task upstream.
    async fn follow(
        &self,
        task_id: &str,
        job: &Job,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let url = self.task_url(task_id)?;
        let guard = CancelGuard::new({
            let http = self.http.clone();
            let version = self.api_version.clone();
            let url = url.clone();
            async move {
                let _ = http.send(versioned(&http, &version, Method::DELETE, url)).await;
            }
        });
        let done = poll_until_done(ctx, &self.poll, task_id, || self.check(&url)).await?;
        guard.disarm();
        let job_id = Some(task_id.to_owned());
        let task = done.payload;
        match done.status {
            JobStatus::Succeeded => {}
            JobStatus::Failed => {
                return Err(parse_error(Failure::Task {
                    failure: task.failure.as_deref(),
                    failure_code: task.failure_code.as_deref(),
                })
                .job_id(job_id));
            }
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::Cancelled,
                    format!("runway task {task_id} ended as {}", done.provider_status),
                )
                .billed(Billed::Unknown)
                .job_id(job_id));
            }
        }
        let urls = task.output.unwrap_or_default();
        if urls.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("runway task {task_id} succeeded without output"),
            )
            .billed(Billed::Unknown)
            .job_id(job_id));
        }
        let (duration, dimensions) = match job {
            Job::Video(v) => (Some(v.duration_seconds()), None),
            Job::Image(i) => (None, Some(i.size())),
            _ => (None, None),
        };
        let outputs: Vec<Asset> = urls
            .into_iter()
            .map(|u| {
                let media_type = media_type_of(&u);
                let mut asset = Asset::url(u, media_type);
                asset.duration_seconds = duration;
                asset.dimensions = dimensions;
                asset
            })
            .collect();
        let count = outputs.len();
        let mut generation = Generation::new(outputs);
        generation.provider_job_id = job_id;
        match job {
            // Runway bills video in credits per second of output: the job's own duration.
            Job::Video(v) => generation.usage.output_seconds = Some(v.duration_seconds()),
            _ => generation.usage.billable_units = Some(Decimal::from(count)),
        }
        generation.seed = job.seed();
        generation.timings.total = started.elapsed();
        Ok(generation)
    }

    fn spec_of(&self, request: &ProviderRequest) -> Result<&'static Spec, ProviderError> {
        models::spec(request.model.as_str()).ok_or_else(|| {
            local(
                ErrorKind::Unsupported,
                format!("runway does not offer model {}", request.model),
            )
        })
    }
}

fn versioned(http: &HttpClient, version: &str, method: Method, url: Url) -> RequestBuilder {
    http.request(method, url).header(VERSION_HEADER, version)
}

#[async_trait]
impl Provider for RunwayProvider {
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
        let spec = self.spec_of(request)?;
        let (path, body) = build_create(spec, &request.job)?;
        let started = Instant::now();
        let task_id = self.create(path, &body, ctx).await?;
        self.follow(&task_id, &request.job, ctx, started).await
    }

    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        self.follow(provider_job_id, &request.job, ctx, Instant::now())
            .await
    }

    /// Cancels (or, once finished, deletes) a task: `DELETE /v1/tasks/{id}` → 204.
    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        let url = self.task_url(provider_job_id)?;
        let resp = self.http.send(self.request(Method::DELETE, url)).await?;
        if resp.status.is_success() {
            return Ok(());
        }
        Err(parse_error(Failure::Http {
            phase: Phase::Cancel,
            status: resp.status,
            headers: &resp.headers,
            body: &resp.body,
        })
        .job_id(Some(provider_job_id.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_one_enum() {
        assert_eq!(status_of("PENDING"), JobStatus::Queued);
        assert_eq!(status_of("THROTTLED"), JobStatus::Queued);
        assert_eq!(status_of("RUNNING"), JobStatus::Running);
        assert_eq!(status_of("SUCCEEDED"), JobStatus::Succeeded);
        assert_eq!(status_of("FAILED"), JobStatus::Failed);
        assert_eq!(status_of("CANCELLED"), JobStatus::Cancelled);
        assert_eq!(status_of("CANCELED"), JobStatus::Cancelled);
        assert_eq!(status_of("ARCHIVED"), JobStatus::Unknown);
    }

    #[test]
    fn media_types_from_signed_urls() {
        assert_eq!(
            media_type_of("https://dnznrvs05pmza.cloudfront.net/a/b.mp4?_jwt=x.y.z").as_deref(),
            Some("video/mp4")
        );
        assert_eq!(media_type_of("https://x/y/out.PNG").as_deref(), Some("image/png"));
        assert_eq!(media_type_of("https://x/y/out"), None);
    }
}
