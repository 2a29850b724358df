#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Instant;

use async_trait::async_trait;
use base64::Engine as _;
use genroute_core::{
    Asset, Billed, CallContext, Charge, CostSource, Decimal, Dimensions, EditOp, ErrorKind, Generation, Job,
    MediaInput, ModelInfo, Money, ProgressEvent, Provider, ProviderError, ProviderId, ProviderRequest, Stage,
    validate_request,
};
use genroute_http::reqwest::{Method, Url};
use genroute_http::{
    Auth, BaseUrl, CancelGuard, HttpClient, HttpError, JobStatus, PollConfig, RawResponse, StatusUpdate,
    poll_until_done,
};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

pub use config::{ScenarioConfig, ScenarioModel};
pub use error::{Failure, Phase, parse_error};

/// Most asset reads in flight at once after a job succeeds (a job can make up to 128 images).
pub const ASSET_READS_IN_FLIGHT: usize = 8;

/// Scenario: jobs created by `POST /generate/...`, polled at `/jobs/{id}`, outputs read from
/// `/assets/{id}`; cost reported in Creative Units.
#[derive(Debug)]
pub struct ScenarioProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    mapping: BTreeMap<String, ScenarioModel>,
    subtract_discount: bool,
    poll: PollConfig,
}

/// One create call: its path under the base and its JSON body.
#[derive(Debug)]
struct Call {
    path: String,
    body: Value,
}

/// `creativeUnitsCost` / `creativeUnitsDiscount` of a create or dry-run answer.
#[derive(Clone, Debug, PartialEq)]
struct Cost {
    cost: Decimal,
    discount: Option<Decimal>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct JobBody {
    #[serde(default)]
    job_id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    progress: Option<f32>,
    #[serde(default)]
    metadata: Option<JobMetadata>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(rename_all = "camelCase")]
struct JobMetadata {
    #[serde(default)]
    asset_ids: Vec<String>,
}

#[derive(Deserialize)]
struct JobEnvelope {
    job: JobBody,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssetBody {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    metadata: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct AssetEnvelope {
    asset: AssetBody,
}

fn status_of(s: &str) -> JobStatus {
    match s {
        "queued" | "warming-up" | "pending" => JobStatus::Queued,
        "in-progress" | "finalizing" => JobStatus::Running,
        "success" => JobStatus::Succeeded,
        "failure" => JobStatus::Failed,
        "canceled" | "cancelled" => JobStatus::Cancelled,
        _ => JobStatus::Unknown,
    }
}

fn local(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::local(kind, message)
}

/// A JSON number or numeric string as an exact decimal (`20`, `4.5`, `"4.5"`).
fn decimal_of(v: &Value) -> Option<Decimal> {
    match v {
        Value::Number(n) => Decimal::from_str_exact(&n.to_string())
            .or_else(|_| Decimal::from_scientific(&n.to_string()))
            .ok(),
        Value::String(s) => Decimal::from_str(s.trim()).ok(),
        _ => None,
    }
}

fn read_cost(body: &Value) -> Option<Cost> {
    let cost = body.get("creativeUnitsCost").and_then(decimal_of)?;
    let discount = body.get("creativeUnitsDiscount").and_then(decimal_of);
    Some(Cost { cost, discount })
}

/// Puts an input image into the body: a stored asset id or bytes (as a data URL) under `key`, a URL under
/// `{key}Url`.
fn put_image(body: &mut Map<String, Value>, key: &str, input: &MediaInput) {
    match input {
        MediaInput::Asset { id } => {
            body.insert(key.to_owned(), json!(id));
        }
        MediaInput::Bytes { media_type, data } => {
            let uri = format!(
                "data:{media_type};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(data)
            );
            body.insert(key.to_owned(), json!(uri));
        }
        MediaInput::Url { url } => {
            body.insert(format!("{key}Url"), json!(url));
        }
    }
}

fn json_number(d: Decimal) -> Value {
    serde_json::Number::from_str(&d.normalize().to_string()).map_or(Value::Null, Value::Number)
}

fn media_type_from_url(url: &str) -> Option<String> {
    let path = Url::parse(url).ok()?.path().to_ascii_lowercase();
    let t = match path.rsplit_once('.')?.1 {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "gif" => "image/gif",
        _ => return None,
    };
    Some(t.to_owned())
}

impl ScenarioProvider {
    /// An adapter from settings. Model overrides for ids other than `sd-1.5` and `sdxl` are refused.
    pub fn new(config: ScenarioConfig) -> Result<Self, HttpError> {
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::basic(&config.api_key, &config.api_secret)?;
        let mut mapping = config::default_models();
        for (id, model) in config.models {
            if !mapping.contains_key(&id) {
                return Err(HttpError::InvalidConfig(format!(
                    "scenario models: {id:?} is not a generator id (expected {} or {})",
                    models::SD15,
                    models::SDXL
                )));
            }
            if model.model_id.trim().is_empty() || model.model_id.contains('/') {
                return Err(HttpError::InvalidConfig(format!(
                    "scenario models.{id}.model_id must be a non-empty id without `/`"
                )));
            }
            mapping.insert(id, model);
        }
        Ok(Self {
            id: ProviderId::new("scenario")?,
            models: models::all()?,
            http: HttpClient::new(&config.http, base, auth)?,
            mapping,
            subtract_discount: config.subtract_discount,
            poll: config.poll,
        })
    }

    /// The Scenario model a genroute generator id runs on.
    pub fn scenario_model(&self, genroute_id: &str) -> Option<&ScenarioModel> {
        self.mapping.get(genroute_id)
    }

    /// The create call for a job. Fields derived from the job win over `extras` of the same name (so the
    /// quote, e.g. by `numSamples`, and the request cannot disagree); other `extras` (`guidance`,
    /// `scheduler`, `negativePromptStrength`, ...) pass through.
    fn build_call(&self, request: &ProviderRequest) -> Result<Call, ProviderError> {
        let model = request.model.as_str();
        let job = &request.job;
        let mut body: Map<String, Value> = job.extras().clone();
        let path = match (self.mapping.get(model), job) {
            (Some(sm), Job::Image(j)) => {
                body.insert("prompt".into(), json!(j.prompt()));
                if let Some(n) = j.negative_prompt() {
                    body.insert("negativePrompt".into(), json!(n));
                }
                // Scenario defaults to 4 samples: always send the job's count.
                body.insert("numSamples".into(), json!(j.count()));
                if let Some(steps) = j.steps() {
                    body.insert("numInferenceSteps".into(), json!(steps));
                }
                body.insert("width".into(), json!(j.size().width()));
                body.insert("height".into(), json!(j.size().height()));
                if sm.custom {
                    format!("generate/custom/{}", sm.model_id)
                } else {
                    body.insert("modelId".into(), json!(sm.model_id));
                    "generate/txt2img".to_owned()
                }
            }
            (Some(sm), Job::Edit(e)) if !sm.custom => {
                let path = match e.op() {
                    EditOp::Img2Img { prompt, strength } => {
                        body.insert("prompt".into(), json!(prompt));
                        if let Some(s) = strength {
                            body.insert("strength".into(), json_number(*s));
                        }
                        "generate/img2img"
                    }
                    EditOp::Inpaint { prompt, mask } => {
                        body.insert("prompt".into(), json!(prompt));
                        put_image(&mut body, "mask", mask);
                        "generate/inpaint"
                    }
                    other => {
                        return Err(local(
                            ErrorKind::Unsupported,
                            format!("{model} does not do {other:?}"),
                        ));
                    }
                };
                body.insert("modelId".into(), json!(sm.model_id));
                put_image(&mut body, "image", e.input());
                body.insert("numSamples".into(), json!(e.count()));
                path.to_owned()
            }
            (None, Job::Edit(e)) => {
                put_image(&mut body, "image", e.input());
                let path = match (model, e.op()) {
                    (models::UPSCALE, EditOp::Upscale { factor }) => {
                        body.insert("scalingFactor".into(), json_number(*factor));
                        "generate/upscale"
                    }
                    (models::REMOVE_BACKGROUND, EditOp::RemoveBackground) => "generate/remove-background",
                    (models::PIXELATE, EditOp::Pixelate { grid_size }) => {
                        if let Some(g) = grid_size {
                            body.insert("pixelGridSize".into(), json!(g));
                        }
                        "generate/pixelate"
                    }
                    (models::VECTORIZE, EditOp::Vectorize) => "generate/vectorize",
                    _ => {
                        return Err(local(
                            ErrorKind::Unsupported,
                            format!("{model} does not do {}", job.operation()),
                        ));
                    }
                };
                path.to_owned()
            }
            _ => {
                return Err(local(
                    ErrorKind::Unsupported,
                    format!("{model} does not do {} here", job.operation()),
                ));
            }
        };
        // Generators take a seed, as a string; the tools do not.
        if self.mapping.contains_key(model)
            && let Some(seed) = job.seed()
        {
            body.insert("seed".into(), json!(seed.to_string()));
        }
        Ok(Call {
            path,
            body: Value::Object(body),
        })
    }

    fn charge(&self, cost: &Cost) -> Money {
        let amount = match (self.subtract_discount, cost.discount) {
            (true, Some(d)) => (cost.cost - d).max(Decimal::ZERO),
            _ => cost.cost,
        };
        Money::cu(amount)
    }

    fn job_url(&self, job_id: &str) -> Result<Url, ProviderError> {
        if job_id.contains('/') {
            return Err(local(
                ErrorKind::InvalidRequest,
                format!("{job_id:?} is not a Scenario job id"),
            ));
        }
        self.http.endpoint(&format!("jobs/{job_id}"))
    }

    async fn create(&self, call: &Call, ctx: &CallContext) -> Result<(String, Option<Cost>), ProviderError> {
        let url = self.http.endpoint(&call.path)?;
        let resp = self
            .http
            .send_within(ctx, self.http.request(Method::POST, url).json(&call.body))
            .await?;
        if !resp.status.is_success() {
            return Err(parse_error(Failure::Http {
                phase: Phase::Create,
                status: resp.status,
                headers: &resp.headers,
                body: &resp.body,
                charged: None,
            }));
        }
        let body: Value = resp.json().map_err(|e| e.billed(Billed::Unknown))?;
        let cost = read_cost(&body);
        let job: JobEnvelope = serde_json::from_value(body).map_err(|e| {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!(
                    "scenario create answered without a job ({e}): {}",
                    resp.snippet(300)
                ),
            )
            .billed(Billed::Unknown)
        })?;
        if job.job.job_id.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                "scenario create answered without a jobId",
            )
            .billed(Billed::Unknown));
        }
        ctx.report(ProgressEvent {
            stage: Stage::Submitted,
            fraction: None,
            queue_position: None,
            provider_job_id: Some(job.job.job_id.clone()),
            provider_status: Some(job.job.status.clone()),
        });
        Ok((job.job.job_id, cost))
    }

    async fn check(&self, url: &Url) -> Result<StatusUpdate<JobBody>, ProviderError> {
        let resp = self
            .http
            .send(self.http.request(Method::GET, url.clone()))
            .await?;
        if !resp.status.is_success() {
            return Err(parse_error(Failure::Http {
                phase: Phase::Job,
                status: resp.status,
                headers: &resp.headers,
                body: &resp.body,
                charged: None,
            }));
        }
        let job: JobEnvelope = resp.json()?;
        let mut update = StatusUpdate::new(
            status_of(&job.job.status),
            job.job.status.clone(),
            job.job.clone(),
        );
        update.fraction = job.job.progress;
        Ok(update)
    }

    /// Reads every asset, at most [`ASSET_READS_IN_FLIGHT`] at a time, keeping the job's order. The first
    /// failure ends the reads (the others are aborted).
    async fn read_assets(
        &self,
        asset_ids: &[String],
        charged: Option<&Money>,
    ) -> Result<Vec<Asset>, ProviderError> {
        let mut slots: Vec<Option<Asset>> = vec![None; asset_ids.len()];
        let mut reads = JoinSet::new();
        let mut next = 0;
        while next < asset_ids.len() || !reads.is_empty() {
            while next < asset_ids.len() && reads.len() < ASSET_READS_IN_FLIGHT {
                let (http, id, charged) = (self.http.clone(), asset_ids[next].clone(), charged.cloned());
                let index = next;
                reads.spawn(async move { (index, read_asset(&http, &id, charged.as_ref()).await) });
                next += 1;
            }
            match reads.join_next().await {
                Some(Ok((index, Ok(asset)))) => slots[index] = Some(asset),
                Some(Ok((_, Err(e)))) => return Err(e),
                Some(Err(e)) => {
                    return Err(ProviderError::new(
                        ErrorKind::MalformedResponse,
                        format!("scenario asset read stopped: {e}"),
                    )
                    .billed(charged.cloned().map_or(Billed::Unknown, Billed::Yes)));
                }
                None => break,
            }
        }
        Ok(slots.into_iter().flatten().collect())
    }

    /// Polls a job to its end, then reads its assets.
    async fn follow(
        &self,
        job_id: &str,
        cost: Option<Cost>,
        request: &ProviderRequest,
        ctx: &CallContext,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let url = self.job_url(job_id)?;
        let guard = CancelGuard::new({
            let http = self.http.clone();
            let action = self.http.endpoint(&format!("jobs/{job_id}/action"))?;
            async move {
                let _ = http
                    .send(
                        http.request(Method::POST, action)
                            .json(&json!({"action": "cancel"})),
                    )
                    .await;
            }
        });
        let done = poll_until_done(ctx, &self.poll, job_id, || self.check(&url)).await?;
        guard.disarm();
        let job_ref = Some(job_id.to_owned());
        let job = done.payload;
        if done.status != JobStatus::Succeeded {
            return Err(parse_error(Failure::Job {
                status: &done.provider_status,
                error: job.error.as_ref(),
            })
            .job_id(job_ref));
        }
        ctx.report(ProgressEvent {
            stage: Stage::Finalizing,
            fraction: Some(1.0),
            queue_position: None,
            provider_job_id: job_ref.clone(),
            provider_status: Some(done.provider_status.clone()),
        });
        let charged = cost.as_ref().map(|c| self.charge(c));
        let asset_ids = job.metadata.map(|m| m.asset_ids).unwrap_or_default();
        if asset_ids.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("scenario job {job_id} succeeded without assetIds"),
            )
            .billed(charged.clone().map_or(Billed::Unknown, Billed::Yes))
            .job_id(job_ref));
        }
        let outputs = self
            .read_assets(&asset_ids, charged.as_ref())
            .await
            .map_err(|e| e.job_id(job_ref.clone()))?;
        let mut generation = Generation::new(outputs);
        generation.provider_job_id = job_ref;
        generation.response_model = self
            .mapping
            .get(request.model.as_str())
            .map(|m| m.model_id.clone());
        if let Some(c) = &cost {
            generation
                .usage
                .other
                .insert("creative_units_cost".into(), c.cost);
            if let Some(d) = c.discount {
                generation.usage.other.insert("creative_units_discount".into(), d);
            }
        }
        generation.charged = charged.map(|amount| Charge {
            amount,
            source: CostSource::ProviderReported,
        });
        generation.seed = request.job.seed();
        generation.timings.total = started.elapsed();
        Ok(generation)
    }
}

/// Reads one asset: its URL, media type and size.
async fn read_asset(
    http: &HttpClient,
    asset_id: &str,
    charged: Option<&Money>,
) -> Result<Asset, ProviderError> {
    let billed = || charged.map_or(Billed::Unknown, |m| Billed::Yes(m.clone()));
    if asset_id.contains('/') {
        return Err(ProviderError::new(
            ErrorKind::MalformedResponse,
            format!("{asset_id:?} is not a Scenario asset id"),
        )
        .billed(billed()));
    }
    let url = http.endpoint(&format!("assets/{asset_id}"))?;
    let resp: RawResponse = http
        .send(http.request(Method::GET, url))
        .await
        .map_err(|e| e.billed(billed()))?;
    if !resp.status.is_success() {
        return Err(parse_error(Failure::Http {
            phase: Phase::Asset,
            status: resp.status,
            headers: &resp.headers,
            body: &resp.body,
            charged,
        }));
    }
    let envelope: AssetEnvelope = resp.json().map_err(|e| e.billed(billed()))?;
    let a = envelope.asset;
    let Some(url) = a.url else {
        return Err(ProviderError::new(
            ErrorKind::MalformedResponse,
            format!("scenario asset {asset_id} has no url"),
        )
        .billed(billed()));
    };
    let meta = a.metadata.unwrap_or_default();
    let media_type = a
        .mime_type
        .or_else(|| meta.get("mimeType").and_then(Value::as_str).map(str::to_owned))
        .or_else(|| media_type_from_url(&url));
    let side = |k: &str| {
        meta.get(k)
            .and_then(Value::as_u64)
            .and_then(|v| u32::try_from(v).ok())
    };
    let mut asset = Asset::url(url, media_type);
    if let (Some(w), Some(h)) = (side("width"), side("height")) {
        asset.dimensions = Dimensions::new(w, h).ok();
    }
    Ok(asset)
}

#[async_trait]
impl Provider for ScenarioProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    /// `POST` the same call with `?dryRun=true`: Scenario answers the cost (status 269, or any 2xx)
    /// without running or charging anything.
    async fn dry_run(&self, request: &ProviderRequest) -> Result<Option<Money>, ProviderError> {
        validate_request(self, request)?;
        let call = self.build_call(request)?;
        let mut url = self.http.endpoint(&call.path)?;
        url.query_pairs_mut().append_pair("dryRun", "true");
        let resp = self
            .http
            .send(self.http.request(Method::POST, url).json(&call.body))
            .await
            .map_err(|e| e.billed(Billed::No))?;
        if !resp.status.is_success() {
            return Err(parse_error(Failure::Http {
                phase: Phase::DryRun,
                status: resp.status,
                headers: &resp.headers,
                body: &resp.body,
                charged: None,
            }));
        }
        let body: Value = resp.json().map_err(|e| e.billed(Billed::No))?;
        let cost = read_cost(&body).ok_or_else(|| {
            ProviderError::new(
                ErrorKind::MalformedResponse,
                format!(
                    "scenario dry run answered without creativeUnitsCost: {}",
                    resp.snippet(300)
                ),
            )
            .billed(Billed::No)
            .status(Some(resp.status.as_u16()))
        })?;
        Ok(Some(self.charge(&cost)))
    }

    async fn generate(
        &self,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        let call = self.build_call(request)?;
        let started = Instant::now();
        let (job_id, cost) = self.create(&call, ctx).await?;
        self.follow(&job_id, cost, request, ctx, started).await
    }

    /// Follows an existing job (no create). Its Creative Units cost is only in the create answer, so
    /// `charged` is `None` and the catalog prices it.
    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        self.follow(provider_job_id, None, request, ctx, Instant::now())
            .await
    }

    /// `POST /jobs/{id}/action {"action":"cancel"}`. Most generation jobs cannot be cancelled and answer
    /// 400: that is accepted (the job runs to its end; a failed one is reimbursed anyway).
    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        self.job_url(provider_job_id)?;
        let url = self.http.endpoint(&format!("jobs/{provider_job_id}/action"))?;
        let resp = self
            .http
            .send(
                self.http
                    .request(Method::POST, url)
                    .json(&json!({"action": "cancel"})),
            )
            .await?;
        if resp.status.is_success() || resp.status.as_u16() == 400 {
            return Ok(());
        }
        Err(parse_error(Failure::Http {
            phase: Phase::Cancel,
            status: resp.status,
            headers: &resp.headers,
            body: &resp.body,
            charged: None,
        })
        .job_id(Some(provider_job_id.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_one_enum() {
        for (s, want) in [
            ("queued", JobStatus::Queued),
            ("warming-up", JobStatus::Queued),
            ("pending", JobStatus::Queued),
            ("in-progress", JobStatus::Running),
            ("finalizing", JobStatus::Running),
            ("success", JobStatus::Succeeded),
            ("failure", JobStatus::Failed),
            ("canceled", JobStatus::Cancelled),
            ("paused", JobStatus::Unknown),
        ] {
            assert_eq!(status_of(s), want, "{s}");
        }
    }

    #[test]
    fn costs_read_exactly() {
        let c = read_cost(&json!({"creativeUnitsCost": 4.5, "creativeUnitsDiscount": 0.45})).unwrap();
        assert_eq!(c.cost, Decimal::new(45, 1));
        assert_eq!(c.discount, Some(Decimal::new(45, 2)));
        let c = read_cost(&json!({"creativeUnitsCost": "20"})).unwrap();
        assert_eq!((c.cost, c.discount), (Decimal::from(20), None));
        assert_eq!(read_cost(&json!({"job": {}})), None);
    }
}
