#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use genroute_core::{
    Asset, Billed, CallContext, Decimal, ErrorKind, Generation, Job, MediaInput, ModelInfo, ProgressEvent,
    Provider, ProviderError, ProviderId, ProviderRequest, Stage, validate_request,
};
use genroute_http::reqwest::{Method, Url};
use genroute_http::{
    Auth, BaseUrl, CancelGuard, HttpClient, HttpError, JobStatus, PollConfig, StatusUpdate, poll_until_done,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use config::ReplicateConfig;
pub use error::{parse_error, prediction_failure};
use models::SizeInput;

/// Replicate, through official-model predictions.
#[derive(Debug)]
pub struct ReplicateProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    poll: PollConfig,
    prefer_wait_seconds: Option<u8>,
    send_cancel_after: bool,
}

#[derive(Deserialize, Clone, Debug)]
struct Prediction {
    id: String,
    status: String,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    output: Value,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    started_at: Option<String>,
    #[serde(default)]
    metrics: Option<PredictionMetrics>,
    #[serde(default)]
    urls: Option<PredictionUrls>,
}

#[derive(Deserialize, Clone, Debug)]
struct PredictionMetrics {
    #[serde(default)]
    predict_time: Option<serde_json::Number>,
}

#[derive(Deserialize, Clone, Debug)]
struct PredictionUrls {
    #[serde(default)]
    get: Option<String>,
    #[serde(default)]
    cancel: Option<String>,
}

fn status_of(s: &str) -> JobStatus {
    match s {
        "starting" => JobStatus::Queued,
        "processing" => JobStatus::Running,
        "succeeded" => JobStatus::Succeeded,
        "failed" => JobStatus::Failed,
        "canceled" | "cancelled" | "aborted" => JobStatus::Cancelled,
        _ => JobStatus::Unknown,
    }
}

fn media_ref(input: &MediaInput, field: &str) -> Result<String, ProviderError> {
    match input {
        MediaInput::Url { url } => Ok(url.clone()),
        MediaInput::Bytes { media_type, data } => Ok(format!(
            "data:{media_type};base64,{}",
            base64::engine::general_purpose::STANDARD.encode(data)
        )),
        MediaInput::Asset { .. } => Err(ProviderError::local(
            ErrorKind::Unsupported,
            format!("{field}: Replicate has no asset store here; pass a URL or bytes"),
        )),
    }
}

/// The prediction `input`. Fields derived from the job win over `extras` of the same name.
fn build_input(request: &ProviderRequest) -> Result<Value, ProviderError> {
    let model = request.model.as_str();
    let job = &request.job;
    let mut input: Map<String, Value> = job.extras().clone();
    match job {
        Job::Image(j) => {
            input.insert("prompt".into(), json!(j.prompt()));
            match models::size_input(model) {
                SizeInput::AspectRatio(ratios) => {
                    input.insert(
                        "aspect_ratio".into(),
                        json!(models::nearest_ratio(j.size(), ratios)),
                    );
                }
                SizeInput::Custom => {
                    input.insert("aspect_ratio".into(), json!("custom"));
                    input.insert("width".into(), json!(j.size().width()));
                    input.insert("height".into(), json!(j.size().height()));
                }
                SizeInput::None => {}
            }
            if models::takes_steps_and_outputs(model) {
                input.insert("num_outputs".into(), json!(j.count()));
                if let Some(steps) = j.steps() {
                    input.insert("num_inference_steps".into(), json!(steps));
                }
            }
        }
        Job::Video(j) => {
            if let Some(p) = j.prompt() {
                input.insert("prompt".into(), json!(p));
            }
            if let Some(frame) = j.first_frame() {
                input.insert(
                    "first_frame_image".into(),
                    json!(media_ref(frame, "first_frame")?),
                );
            }
        }
        Job::Audio(_) | Job::Edit(_) => {
            return Err(ProviderError::local(
                ErrorKind::Unsupported,
                format!("{model} takes image or video jobs only"),
            ));
        }
    }
    if let Some(seed) = job.seed() {
        input.insert("seed".into(), json!(seed));
    }
    Ok(Value::Object(input))
}

fn guess_media_type(url: &str) -> Option<String> {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
    let t = match ext.as_str() {
        "webp" => "image/webp",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => return None,
    };
    Some(t.to_owned())
}

fn asset_from(s: &str) -> Option<Asset> {
    if let Some(rest) = s.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(data).ok()?;
        return Some(Asset::bytes(bytes, Some(media_type.to_owned())));
    }
    if s.starts_with("https://") || s.starts_with("http://") {
        return Some(Asset::url(s, guess_media_type(s)));
    }
    None
}

/// Collects outputs from Replicate's polymorphic `output`: a URL, a list of URLs, or an object holding
/// them. A bare non-URL string (text) is not media: `None`.
fn collect_outputs(v: &Value, out: &mut Vec<Asset>) -> Option<()> {
    match v {
        Value::String(s) => out.push(asset_from(s)?),
        Value::Array(items) => {
            for item in items {
                collect_outputs(item, out)?;
            }
        }
        Value::Object(map) => {
            for item in map.values() {
                match item {
                    Value::String(s) => {
                        if let Some(a) = asset_from(s) {
                            out.push(a);
                        }
                    }
                    Value::Array(_) | Value::Object(_) => collect_outputs(item, out)?,
                    _ => {}
                }
            }
        }
        Value::Null => {}
        _ => return None,
    }
    Some(())
}

impl ReplicateProvider {
    /// An adapter from settings.
    pub fn new(config: ReplicateConfig) -> Result<Self, HttpError> {
        if config.prefer_wait_seconds.is_some_and(|s| !(1..=60).contains(&s)) {
            return Err(HttpError::InvalidConfig(
                "prefer_wait_seconds must be within 1–60".into(),
            ));
        }
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::bearer(&config.api_key)?;
        Ok(Self {
            id: ProviderId::new("replicate")?,
            models: models::all()?,
            http: HttpClient::new(&config.http, base, auth)?,
            // Replicate: a prediction cancelled before it starts ends `aborted`, which is not billed.
            poll: config.poll.queue_time_unbilled(true),
            prefer_wait_seconds: config.prefer_wait_seconds,
            send_cancel_after: config.send_cancel_after,
        })
    }

    async fn get_prediction(&self, url: &Url) -> Result<Prediction, ProviderError> {
        let resp = self
            .http
            .send(self.http.request(Method::GET, url.clone()))
            .await?;
        if !resp.status.is_success() {
            return Err(parse_error(resp.status, &resp.headers, &resp.body));
        }
        resp.json()
    }

    fn urls(&self, p: &Prediction) -> Result<(Url, Url), ProviderError> {
        let given = p.urls.as_ref();
        let get = match given.and_then(|u| u.get.as_deref()) {
            Some(u) => self.http.follow(u)?,
            None => self.http.endpoint(&format!("predictions/{}", p.id))?,
        };
        let cancel = match given.and_then(|u| u.cancel.as_deref()) {
            Some(u) => self.http.follow(u)?,
            None => self.http.endpoint(&format!("predictions/{}/cancel", p.id))?,
        };
        Ok((get, cancel))
    }

    /// Follows a prediction to its end (polling `urls.get` if unfinished) and reads it.
    async fn finish(
        &self,
        prediction: Prediction,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let id = prediction.id.clone();
        let final_prediction = if status_of(&prediction.status).is_terminal() {
            prediction
        } else {
            let (get, cancel) = self.urls(&prediction).map_err(|e| e.job_id(Some(id.clone())))?;
            let http = self.http.clone();
            let guard = CancelGuard::new(async move {
                let _ = http.send(http.request(Method::POST, cancel)).await;
            });
            // On error the guard drops here and cancels upstream.
            let done = poll_until_done(ctx, &self.poll, &id, || async {
                let p = self.get_prediction(&get).await?;
                Ok(StatusUpdate::new(status_of(&p.status), p.status.clone(), p))
            })
            .await?;
            guard.disarm();
            done.payload
        };
        self.outcome(final_prediction, ctx, started)
    }

    fn outcome(
        &self,
        p: Prediction,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        if p.status != "succeeded" {
            let error = match &p.error {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            };
            return Err(prediction_failure(
                &p.id,
                &p.status,
                error.as_deref(),
                p.started_at.is_some(),
            ));
        }
        ctx.report(ProgressEvent {
            stage: Stage::Finalizing,
            fraction: Some(1.0),
            queue_position: None,
            provider_job_id: Some(p.id.clone()),
            provider_status: Some(p.status.clone()),
        });
        let mut outputs = Vec::new();
        if collect_outputs(&p.output, &mut outputs).is_none() || outputs.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                format!(
                    "replicate prediction {} succeeded without media output: {}",
                    p.id, p.output
                ),
            )
            .billed(Billed::Unknown)
            .job_id(Some(p.id.clone())));
        }
        let predict_time = p
            .metrics
            .as_ref()
            .and_then(|m| m.predict_time.as_ref())
            .and_then(|n| n.to_string().parse::<Decimal>().ok());
        let mut g = Generation::new(outputs);
        g.provider_job_id = Some(p.id.clone());
        g.response_model = p.model.clone();
        g.usage.compute_seconds = predict_time;
        g.timings.running = predict_time
            .and_then(|d| d.to_string().parse::<f64>().ok())
            .and_then(|s| Duration::try_from_secs_f64(s).ok());
        g.timings.total = started.elapsed();
        Ok(g)
    }
}

#[async_trait]
impl Provider for ReplicateProvider {
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
        let url = self
            .http
            .endpoint(&format!("models/{}/predictions", request.model))?;
        let mut req = self
            .http
            .request(Method::POST, url)
            .json(&json!({ "input": input }));
        let remaining = ctx.remaining();
        if let Some(wait) = self.prefer_wait_seconds {
            let cap = remaining.map_or(u64::from(wait), |r| r.as_secs().min(u64::from(wait)));
            if cap >= 1 {
                req = req.header("prefer", format!("wait={cap}"));
            }
        }
        if self.send_cancel_after
            && let Some(r) = remaining
        {
            let secs = r.as_secs() + u64::from(r.subsec_nanos() > 0);
            req = req.header("cancel-after", format!("{}s", secs.max(1)));
        }
        let resp = self.http.send_within(ctx, req).await?;
        if !resp.status.is_success() {
            return Err(parse_error(resp.status, &resp.headers, &resp.body));
        }
        let prediction: Prediction = resp.json().map_err(|e| e.billed(Billed::Unknown))?;
        ctx.report(ProgressEvent {
            stage: Stage::Submitted,
            fraction: None,
            queue_position: None,
            provider_job_id: Some(prediction.id.clone()),
            provider_status: Some(prediction.status.clone()),
        });
        self.finish(prediction, ctx, started).await
    }

    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        let url = self.http.endpoint(&format!("predictions/{provider_job_id}"))?;
        let prediction = self
            .get_prediction(&url)
            .await
            .map_err(|e| e.job_id(Some(provider_job_id.to_owned())))?;
        self.finish(prediction, ctx, Instant::now()).await
    }

    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        let url = self
            .http
            .endpoint(&format!("predictions/{provider_job_id}/cancel"))?;
        let resp = self.http.send(self.http.request(Method::POST, url)).await?;
        if resp.status.is_success() {
            Ok(())
        } else {
            Err(parse_error(resp.status, &resp.headers, &resp.body))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polymorphic_output() {
        let mut out = Vec::new();
        collect_outputs(
            &json!(["https://r.delivery/a.webp", "https://r.delivery/b.png?x=1"]),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].media_type.as_deref(), Some("image/webp"));
        assert_eq!(out[1].media_type.as_deref(), Some("image/png"));
        let mut out = Vec::new();
        collect_outputs(&json!("https://r.delivery/v.mp4"), &mut out).unwrap();
        assert_eq!(out[0].media_type.as_deref(), Some("video/mp4"));
        let mut out = Vec::new();
        collect_outputs(
            &json!({"video": "https://r.delivery/v.mp4", "note": "hello"}),
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        let mut out = Vec::new();
        collect_outputs(&json!("data:image/png;base64,AQID"), &mut out).unwrap();
        assert_eq!(out[0].content, genroute_core::AssetContent::Bytes(vec![1, 2, 3]));
        assert!(collect_outputs(&json!("just text"), &mut Vec::new()).is_none());
        assert!(collect_outputs(&json!(42), &mut Vec::new()).is_none());
    }

    #[test]
    fn statuses() {
        assert_eq!(status_of("starting"), JobStatus::Queued);
        assert_eq!(status_of("processing"), JobStatus::Running);
        assert_eq!(status_of("succeeded"), JobStatus::Succeeded);
        assert_eq!(status_of("failed"), JobStatus::Failed);
        assert_eq!(status_of("canceled"), JobStatus::Cancelled);
        assert_eq!(status_of("aborted"), JobStatus::Cancelled);
        assert_eq!(status_of("booting"), JobStatus::Unknown);
    }
}
