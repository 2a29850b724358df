//! What every emulator shares: start/stop, settings, the request log, fault application, small helpers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use base64::Engine;
use bytes::Bytes;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fault::{FaultKind, FaultScript, Phase, lock};
use crate::jobs::{JobRecord, JobStore, Progression};
use crate::log::{Counters, Endpoint, RequestRecord};

/// Which provider an emulator imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// fal.ai queue (`queue.fal.run`) and sync (`fal.run`) APIs.
    Fal,
    /// Replicate predictions API.
    Replicate,
    /// OpenAI images and speech.
    OpenAi,
    /// Scenario generate/jobs/assets API.
    Scenario,
    /// ElevenLabs TTS, sound effects, music.
    ElevenLabs,
    /// Runway tasks API.
    Runway,
}

impl Kind {
    /// All six emulators.
    pub const ALL: [Kind; 6] = [
        Kind::Fal,
        Kind::Replicate,
        Kind::OpenAi,
        Kind::Scenario,
        Kind::ElevenLabs,
        Kind::Runway,
    ];

    /// The provider id used across genroute (`fal`, `replicate`, `openai`, `scenario`, `elevenlabs`, `runway`).
    pub fn provider_id(self) -> &'static str {
        match self {
            Kind::Fal => "fal",
            Kind::Replicate => "replicate",
            Kind::OpenAi => "openai",
            Kind::Scenario => "scenario",
            Kind::ElevenLabs => "elevenlabs",
            Kind::Runway => "runway",
        }
    }

    /// The model ids (from the shared `MODEL_IDS` list) whose inputs this emulator validates and whose
    /// costs it reports as documented. Other model ids are accepted with generic behaviour.
    pub fn models(self) -> &'static [&'static str] {
        match self {
            Kind::Fal => &[
                "fal-ai/flux/dev",
                "fal-ai/flux/schnell",
                "fal-ai/flux-pro/kontext",
                "fal-ai/kling-video/v1.6/standard/text-to-video",
            ],
            Kind::Replicate => &[
                "black-forest-labs/flux-schnell",
                "black-forest-labs/flux-dev",
                "black-forest-labs/flux-1.1-pro",
                "black-forest-labs/flux-1.1-pro-ultra",
                "minimax/video-01",
            ],
            Kind::OpenAi => &["gpt-image-1", "dall-e-3", "tts-1", "tts-1-hd"],
            Kind::Scenario => &[
                "sd-1.5",
                "sdxl",
                "upscale",
                "remove-background",
                "detection",
                "captioning",
                "pixelate",
                "vectorize",
            ],
            Kind::ElevenLabs => &[
                "eleven_multilingual_v2",
                "eleven_v3",
                "eleven_flash_v2_5",
                "eleven_turbo_v2_5",
                "eleven_text_to_sound_v2",
                "music_v1",
            ],
            Kind::Runway => &["gen4_turbo", "gen4.5", "veo3", "veo3.1_fast", "gen4_image"],
        }
    }

    /// The credential an emulator accepts unless configured otherwise.
    pub fn default_api_key(self) -> &'static str {
        match self {
            Kind::Fal => "emu-key-id:emu-key-secret",
            Kind::Replicate => "r8_emulator_token",
            Kind::OpenAi => "sk-emulator-key",
            Kind::Scenario => "emu_api_key",
            Kind::ElevenLabs => "emu-xi-api-key",
            Kind::Runway => "key_emulator",
        }
    }
}

/// Knobs of one emulator. Read on every request; change them at runtime with
/// [`EmulatorHandle::update_settings`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// The accepted key (fal `Key` value, bearer token, `xi-api-key`, Scenario API key).
    pub api_key: String,
    /// Scenario only: the API secret (`Basic base64(key:secret)`).
    pub api_secret: String,
    /// Lifecycle of newly created jobs.
    pub progression: Progression,
    /// Keep a full request log (method, path, headers, body). Counters are always kept. Turn off for
    /// benchmarks: the log is the only lock every request takes.
    pub record_requests: bool,
    /// Spell the queued state this way instead of the provider's usual word (e.g. Runway `THROTTLED`,
    /// Scenario `warming-up`), for jobs created from now on.
    pub queued_status: Option<String>,
    /// Spell the running state this way (e.g. Scenario `finalizing`), for jobs created from now on.
    pub running_status: Option<String>,
    /// ElevenLabs: the header that carries the billed characters (`character-cost`; the docs' example
    /// uses `x-character-count`).
    pub elevenlabs_cost_header: String,
    /// fal: report this `X-Fal-Billable-Units` instead of the computed value.
    pub fal_billable_units: Option<String>,
    /// Replicate: report this `metrics.predict_time` instead of the per-model default.
    pub replicate_predict_time: Option<f64>,
    /// OpenAI: image input tokens counted per input image on `/v1/images/edits` (approximation).
    pub openai_image_input_tokens: u64,
    /// ElevenLabs: report this `character-cost` instead of the computed one (the real value may differ
    /// from the text length).
    pub elevenlabs_character_cost: Option<u64>,
    /// ElevenLabs: concurrent requests allowed before `429 too_many_concurrent_requests` (`None`: no limit;
    /// the `maximum-concurrent-requests` header then says 10).
    pub elevenlabs_concurrency_limit: Option<u32>,
    /// Scenario: creative units per output instead of the computed ones.
    pub scenario_units_per_sample: Option<u64>,
    /// Scenario: plan discount in percent, reported in `creativeUnitsDiscount`.
    pub scenario_discount_percent: u32,
    /// Runway: starting credit balance (`GET /v1/organization`); a create costing more than what is left
    /// answers the not-enough-credits error.
    pub runway_credit_balance: i64,
    /// Runway: the accepted `X-Runway-Version`.
    pub runway_version: String,
}

impl Settings {
    /// The defaults for an emulator of this kind.
    pub fn for_kind(kind: Kind) -> Self {
        Self {
            api_key: kind.default_api_key().to_owned(),
            api_secret: "emu_api_secret".to_owned(),
            progression: Progression::default(),
            record_requests: true,
            queued_status: None,
            running_status: None,
            elevenlabs_cost_header: "character-cost".to_owned(),
            fal_billable_units: None,
            replicate_predict_time: None,
            openai_image_input_tokens: 323,
            elevenlabs_character_cost: None,
            elevenlabs_concurrency_limit: None,
            scenario_units_per_sample: None,
            scenario_discount_percent: 0,
            runway_credit_balance: 1_000_000,
            runway_version: "2024-11-06".to_owned(),
        }
    }
}

/// Failure to start an emulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EmulatorError {
    /// Binding 127.0.0.1:0 or reading the bound address failed.
    #[error("{kind:?} emulator: cannot bind a local port: {source}")]
    Bind {
        /// Which emulator.
        kind: Kind,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Entry point: start emulators.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use genroute_emulators::{Emulator, Kind, Progression};
/// let fal = Emulator::start(Kind::Fal).await.unwrap();
/// assert!(fal.base_url().starts_with("http://127.0.0.1:"));
/// let replicate = Emulator::builder(Kind::Replicate).progression(Progression::immediate()).start().await.unwrap();
/// assert!(replicate.base_url().ends_with("/v1"));
/// # }
/// ```
#[derive(Debug)]
pub struct Emulator;

impl Emulator {
    /// Start an emulator of this kind with default settings on 127.0.0.1:0.
    pub async fn start(kind: Kind) -> Result<EmulatorHandle, EmulatorError> {
        Self::builder(kind).start().await
    }

    /// Configure, then [`EmulatorBuilder::start`].
    pub fn builder(kind: Kind) -> EmulatorBuilder {
        EmulatorBuilder {
            kind,
            settings: Settings::for_kind(kind),
            faults: Vec::new(),
        }
    }

    /// Start all six, with default settings.
    pub async fn start_all() -> Result<Vec<EmulatorHandle>, EmulatorError> {
        let mut v = Vec::with_capacity(Kind::ALL.len());
        for k in Kind::ALL {
            v.push(Self::start(k).await?);
        }
        Ok(v)
    }
}

/// Builder for one emulator.
#[derive(Debug)]
#[must_use]
pub struct EmulatorBuilder {
    kind: Kind,
    settings: Settings,
    faults: Vec<crate::Fault>,
}

impl EmulatorBuilder {
    /// The accepted key.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.settings.api_key = key.into();
        self
    }
    /// The accepted Scenario secret.
    pub fn api_secret(mut self, secret: impl Into<String>) -> Self {
        self.settings.api_secret = secret.into();
        self
    }
    /// Lifecycle of created jobs.
    pub fn progression(mut self, p: Progression) -> Self {
        self.settings.progression = p;
        self
    }
    /// Keep the full request log (default true).
    pub fn record_requests(mut self, on: bool) -> Self {
        self.settings.record_requests = on;
        self
    }
    /// Edit any setting.
    pub fn configure(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }
    /// Queue a fault before the first request.
    pub fn fault(mut self, f: crate::Fault) -> Self {
        self.faults.push(f);
        self
    }

    /// Bind 127.0.0.1:0 and serve on the current tokio runtime until the handle is dropped. Must be
    /// awaited inside a tokio runtime (the server is spawned on it).
    pub async fn start(self) -> Result<EmulatorHandle, EmulatorError> {
        let kind = self.kind;
        let bind = || async move {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|source| EmulatorError::Bind { kind, source })?;
            let a = l
                .local_addr()
                .map_err(|source| EmulatorError::Bind { kind, source })?;
            Ok::<_, EmulatorError>((l, a))
        };
        let (listener, addr) = bind().await?;
        let second = if kind == Kind::Fal {
            Some(bind().await?)
        } else {
            None
        };
        let (tx, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            kind,
            origin: format!("http://{addr}"),
            sync_origin: second
                .as_ref()
                .map_or_else(|| format!("http://{addr}"), |(_, a)| format!("http://{a}")),
            settings: RwLock::new(Arc::new(self.settings)),
            faults: FaultScript::default(),
            jobs: JobStore::default(),
            counters: Counters::default(),
            log: Mutex::new(Vec::new()),
            cancels: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            req_seq: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
            credits_spent: AtomicI64::new(0),
            webhook_secret: format!(
                "whsec_{}",
                base64::engine::general_purpose::STANDARD.encode(uuid::Uuid::new_v4().as_bytes())
            ),
            webhooks: Mutex::new(Vec::new()),
            shutdown: tx,
        });
        shared.faults.push_all(self.faults);

        let (main, sync) = crate::routers(&shared);
        let mut tasks = vec![spawn_server(listener, main, &shared)];
        let mut sync_addr = None;
        if let (Some((l, a)), Some(r)) = (second, sync) {
            tasks.push(spawn_server(l, r, &shared));
            sync_addr = Some(a);
        }
        Ok(EmulatorHandle {
            shared,
            addr,
            sync_addr,
            tasks,
        })
    }
}

fn spawn_server(listener: TcpListener, router: Router<Arc<Shared>>, shared: &Arc<Shared>) -> JoinHandle<()> {
    let app = router
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .layer(DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(shared.clone());
    let listener = listener.tap_io(|tcp| {
        // Best effort: a socket that refuses TCP_NODELAY still works.
        let _ = tcp.set_nodelay(true);
    });
    let mut rx = shared.shutdown.subscribe();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|v| *v).await;
            })
            .await;
    })
}

/// A running emulator. Dropping it stops the server (in-flight slow or stuck requests end at once).
#[derive(Debug)]
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    addr: SocketAddr,
    sync_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl EmulatorHandle {
    /// Which provider it imitates.
    pub fn kind(&self) -> Kind {
        self.shared.kind
    }

    /// The base URL to give the adapter, shaped like the provider's documented base:
    /// fal `http://127.0.0.1:P` (the queue host), Replicate/OpenAI/Scenario `http://127.0.0.1:P/v1`,
    /// ElevenLabs/Runway `http://127.0.0.1:P`.
    pub fn base_url(&self) -> String {
        match self.shared.kind {
            Kind::Replicate | Kind::OpenAi | Kind::Scenario => format!("{}/v1", self.shared.origin),
            _ => self.shared.origin.clone(),
        }
    }

    /// `http://127.0.0.1:P`, without any path.
    pub fn origin(&self) -> &str {
        &self.shared.origin
    }

    /// fal only: the `fal.run` (synchronous) host, a second port served by the same emulator state.
    /// Other emulators return their origin.
    pub fn sync_base_url(&self) -> &str {
        &self.shared.sync_origin
    }

    /// The main listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// fal only: the sync listening address.
    pub fn sync_addr(&self) -> Option<SocketAddr> {
        self.sync_addr
    }

    /// The accepted key.
    pub fn api_key(&self) -> String {
        self.shared.settings().api_key.clone()
    }

    /// The accepted Scenario secret.
    pub fn api_secret(&self) -> String {
        self.shared.settings().api_secret.clone()
    }

    /// The headers a client must send to be authenticated (name, value), e.g. for fal
    /// `("authorization", "Key ...")`, for Runway also `("x-runway-version", "2024-11-06")`.
    pub fn auth_headers(&self) -> Vec<(String, String)> {
        let s = self.shared.settings();
        match self.shared.kind {
            Kind::Fal => vec![("authorization".into(), format!("Key {}", s.api_key))],
            Kind::Replicate | Kind::OpenAi => vec![("authorization".into(), format!("Bearer {}", s.api_key))],
            Kind::Scenario => vec![(
                "authorization".into(),
                crate::scenario::basic_auth(&s.api_key, &s.api_secret),
            )],
            Kind::ElevenLabs => vec![("xi-api-key".into(), s.api_key.clone())],
            Kind::Runway => vec![
                ("authorization".into(), format!("Bearer {}", s.api_key)),
                ("x-runway-version".into(), s.runway_version.clone()),
            ],
        }
    }

    /// The fault script: push faults here.
    pub fn faults(&self) -> &FaultScript {
        &self.shared.faults
    }

    /// A copy of the current settings.
    pub fn settings(&self) -> Settings {
        (*self.shared.settings()).clone()
    }

    /// Change settings for subsequent requests (jobs keep the progression they were created with).
    pub fn update_settings(&self, f: impl FnOnce(&mut Settings)) {
        let mut w = self
            .shared
            .settings
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut s = (**w).clone();
        f(&mut s);
        *w = Arc::new(s);
    }

    /// Shorthand for `update_settings(|s| s.progression = p)`.
    pub fn set_progression(&self, p: Progression) {
        self.update_settings(|s| s.progression = p);
    }

    /// Every recorded request, in arrival order of their responses (empty when `record_requests` is off).
    pub fn requests(&self) -> Vec<RequestRecord> {
        lock(&self.shared.log).clone()
    }

    /// Recorded requests to one endpoint.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<RequestRecord> {
        lock(&self.shared.log)
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .cloned()
            .collect()
    }

    /// Requests received by an endpoint (counted on arrival, always on, lock-free).
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.shared.counters.get(endpoint)
    }

    /// Requests received in total.
    pub fn total_requests(&self) -> u64 {
        self.shared.counters.total()
    }

    /// The jobs created so far, oldest first (queue providers; OpenAI and ElevenLabs create none).
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.shared.jobs.all().iter().map(|j| j.record()).collect()
    }

    /// One job.
    pub fn job(&self, id: &str) -> Option<JobRecord> {
        self.shared.jobs.with(id, |j| j.record())
    }

    /// Ids of the jobs a cancel request was received for, in order (including refused cancels).
    pub fn cancels(&self) -> Vec<String> {
        lock(&self.shared.cancels).clone()
    }

    /// Replicate: the webhook signing secret (`whsec_...`), also served at
    /// `GET /v1/webhooks/default/secret`.
    pub fn webhook_secret(&self) -> &str {
        &self.shared.webhook_secret
    }

    /// Webhooks sent so far (Replicate), in order.
    pub fn webhooks(&self) -> Vec<crate::WebhookDelivery> {
        lock(&self.shared.webhooks).clone()
    }

    /// Runway: credits spent so far.
    pub fn credits_spent(&self) -> i64 {
        self.shared.credits_spent.load(Ordering::Relaxed)
    }

    /// Forget the request log, counters, cancels and jobs (faults and settings stay).
    pub fn reset(&self) {
        lock(&self.shared.log).clear();
        lock(&self.shared.cancels).clear();
        lock(&self.shared.webhooks).clear();
        self.shared.counters.reset();
        self.shared.jobs.clear();
    }

    /// Stop serving and wait for the server tasks to end.
    pub async fn shutdown(mut self) {
        let _ = self.shared.shutdown.send(true);
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        let _ = self.shared.shutdown.send(true);
    }
}

/// State shared by the handlers of one emulator.
#[derive(Debug)]
pub(crate) struct Shared {
    pub kind: Kind,
    pub origin: String,
    pub sync_origin: String,
    settings: RwLock<Arc<Settings>>,
    pub faults: FaultScript,
    pub jobs: JobStore,
    pub counters: Counters,
    log: Mutex<Vec<RequestRecord>>,
    pub cancels: Mutex<Vec<String>>,
    seq: AtomicU64,
    req_seq: AtomicU64,
    pub inflight: AtomicI64,
    pub credits_spent: AtomicI64,
    pub webhook_secret: String,
    pub webhooks: Mutex<Vec<crate::WebhookDelivery>>,
    shutdown: watch::Sender<bool>,
}

/// What a handler says about the request it answered (read by the logging middleware).
#[derive(Debug, Clone)]
pub(crate) struct Tag {
    pub endpoint: Endpoint,
    pub model: Option<String>,
    pub job_id: Option<String>,
    pub faulted: bool,
}

impl Shared {
    pub(crate) fn settings(&self) -> Arc<Settings> {
        self.settings
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn next_seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Count an arriving request and start its tag.
    pub(crate) fn enter(&self, endpoint: Endpoint) -> Tag {
        self.counters.bump(endpoint);
        Tag {
            endpoint,
            model: None,
            job_id: None,
            faulted: false,
        }
    }

    pub(crate) fn record_cancel(&self, id: &str) {
        lock(&self.cancels).push(id.to_owned());
    }

    /// Sleep unless the emulator shuts down first. Returns false on shutdown.
    pub(crate) async fn sleep(&self, d: Duration) -> bool {
        let mut rx = self.shutdown.subscribe();
        tokio::select! {
            () = tokio::time::sleep(d) => true,
            _ = rx.wait_for(|v| *v) => false,
        }
    }

    /// Apply the request-phase fault for this request, if any. `Slow` delays and lets the request go on.
    pub(crate) async fn request_fault(
        &self,
        tag: &mut Tag,
        render: fn(&FaultKind) -> Response,
    ) -> Option<Response> {
        let kind = self
            .faults
            .take(tag.endpoint, tag.model.as_deref(), Phase::Request)?;
        tag.faulted = true;
        match kind {
            FaultKind::Slow { delay } => {
                self.sleep(delay).await;
                None
            }
            FaultKind::MalformedJson => Some(malformed()),
            FaultKind::Oversized { bytes } => Some(oversized(bytes)),
            FaultKind::Raw {
                status,
                content_type,
                headers,
                body,
            } => {
                let mut r = (status_code(status), body).into_response();
                set_header(&mut r, "content-type", &content_type);
                for (k, v) in &headers {
                    set_header(&mut r, k, v);
                }
                Some(r)
            }
            other => Some(render(&other)),
        }
    }

    /// Take the job-phase fault for a create, if any.
    pub(crate) fn job_fault(&self, tag: &mut Tag) -> Option<FaultKind> {
        let k = self
            .faults
            .take(Endpoint::Create, tag.model.as_deref(), Phase::Job);
        if k.is_some() {
            tag.faulted = true;
        }
        k
    }

    /// A synchronous create hit by `Stuck`: hang until the client gives up or the emulator stops.
    pub(crate) async fn hang(&self) {
        self.sleep(Duration::from_secs(24 * 3600)).await;
    }
}

/// Logging middleware: request log (optional) with the tag the handler left in the response.
async fn observe(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if !s.settings().record_requests {
        return next.run(req).await;
    }
    let seq = s.req_seq.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().map(str::to_owned);
    let headers = redact(&parts.headers);
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let resp = next
        .run(Request::from_parts(parts, Body::from(bytes.clone())))
        .await;
    let tag = resp.extensions().get::<Tag>().cloned();
    let rec = RequestRecord {
        seq,
        method,
        path,
        query,
        headers,
        body: bytes,
        endpoint: tag.as_ref().map_or(Endpoint::Unknown, |t| t.endpoint),
        model: tag.as_ref().and_then(|t| t.model.clone()),
        job_id: tag.as_ref().and_then(|t| t.job_id.clone()),
        status: resp.status().as_u16(),
        faulted: tag.as_ref().is_some_and(|t| t.faulted),
    };
    lock(&s.log).push(rec);
    resp
}

fn redact(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            let name = k.as_str().to_owned();
            let val = if matches!(name.as_str(), "authorization" | "xi-api-key" | "x-key") {
                "<redacted>".to_owned()
            } else {
                String::from_utf8_lossy(v.as_bytes()).into_owned()
            };
            (name, val)
        })
        .collect()
}

// ---------- response helpers ----------

pub(crate) fn status_code(s: u16) -> StatusCode {
    StatusCode::from_u16(s).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn json_response(status: u16, body: &Value) -> Response {
    json_bytes(
        status,
        serde_json::to_vec(body).unwrap_or_default(),
        "application/json",
    )
}

pub(crate) fn json_bytes(status: u16, body: Vec<u8>, content_type: &'static str) -> Response {
    let mut r = (status_code(status), body).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn set_header(r: &mut Response, name: &str, value: &str) {
    if let (Ok(n), Ok(v)) = (
        HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        r.headers_mut().insert(n, v);
    }
}

pub(crate) fn with_tag(mut r: Response, tag: Tag) -> Response {
    r.extensions_mut().insert(tag);
    r
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_millis().div_ceil(1000) as u64).max(1)
}

pub(crate) fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn malformed() -> Response {
    json_bytes(
        200,
        br#"{"id": "emulated-broken", "status": "IN_PROGRESS", "output": [{"url": "#.to_vec(),
        "application/json",
    )
}

fn oversized(bytes: usize) -> Response {
    let prefix = br#"{"padding":""#;
    let suffix = br#""}"#;
    let fill = bytes.saturating_sub(prefix.len() + suffix.len());
    let mut v = Vec::with_capacity(prefix.len() + fill + suffix.len());
    v.extend_from_slice(prefix);
    v.resize(prefix.len() + fill, b'x');
    v.extend_from_slice(suffix);
    json_bytes(200, v, "application/json")
}

/// Parse a JSON body; `Err` carries the provider's own rendering of the parse error.
pub(crate) fn parse_json(body: &Bytes) -> Result<Value, String> {
    if body.is_empty() {
        return Err("request body is empty".to_owned());
    }
    serde_json::from_slice::<Value>(body).map_err(|e| format!("invalid JSON body: {e}"))
}

// ---------- ids and times ----------

pub(crate) fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Lower-case RFC 4648 base32 of 128 random bits, 26 characters (the shape of Replicate ids).
pub(crate) fn base32_id() -> String {
    const ALPHA: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let n = uuid::Uuid::new_v4().as_u128();
    (0..26)
        .map(|i| ALPHA[((n >> (i * 5)) & 31) as usize] as char)
        .collect()
}

pub(crate) fn hex_id(len: usize) -> String {
    let n = uuid::Uuid::new_v4().simple().to_string();
    n.chars().cycle().take(len).collect()
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_micros()
    )
}

pub(crate) fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

// ---------- fake output files ----------

/// A 1x1 transparent PNG.
pub(crate) const PNG_1X1: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00,
    0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01,
    0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// Content type and fake bytes for a file name, by extension. Bytes start with the format's magic
/// number; only the PNG is a decodable image.
pub(crate) fn fake_file(name: &str, len_hint: usize) -> (&'static str, Vec<u8>) {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    let (ct, magic): (&'static str, &[u8]) = match ext.as_str() {
        "png" => return ("image/png", PNG_1X1.to_vec()),
        "jpg" | "jpeg" => (
            "image/jpeg",
            &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0x00],
        ),
        "webp" => ("image/webp", b"RIFF\x24\x00\x00\x00WEBPVP8 "),
        "mp4" => ("video/mp4", b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isommp41"),
        "mp3" => ("audio/mpeg", b"ID3\x04\x00\x00\x00\x00\x00\x00\xFF\xFB\x90\x64"),
        "wav" => ("audio/wav", b"RIFF\x24\x00\x00\x00WAVEfmt "),
        "svg" => {
            return (
                "image/svg+xml",
                br#"<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>"#.to_vec(),
            );
        }
        _ => ("application/octet-stream", b"\x00"),
    };
    let mut v = Vec::with_capacity(len_hint.max(magic.len()));
    v.extend_from_slice(magic);
    v.resize(len_hint.max(magic.len()), 0);
    (ct, v)
}

/// Fake audio of about `seconds` (1 KiB per second, capped at 1 MiB: sizes are not realistic).
pub(crate) fn fake_audio(magic_name: &str, seconds: f64) -> (&'static str, Vec<u8>) {
    let len = ((seconds.max(0.1) * 1024.0) as usize).min(1 << 20);
    fake_file(magic_name, len)
}

pub(crate) async fn serve_file(State(s): State<Arc<Shared>>, uri: axum::http::Uri) -> Response {
    let tag = s.enter(Endpoint::File);
    let name = uri.path().rsplit('/').next().unwrap_or("");
    let (ct, bytes) = fake_file(name, 2048);
    let mut r = (StatusCode::OK, bytes).into_response();
    set_header(&mut r, "content-type", ct);
    with_tag(r, tag)
}

pub(crate) fn not_found_tag(s: &Shared) -> Tag {
    s.enter(Endpoint::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        let t = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        assert_eq!(rfc3339(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn ids_have_provider_shapes() {
        let r = base32_id();
        assert_eq!(r.len(), 26);
        assert!(
            r.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(hex_id(40).len(), 40);
        assert_ne!(base32_id(), base32_id());
    }

    #[test]
    fn oversized_is_exact_and_valid_json() {
        let r = oversized(1000);
        let (_, body) = r.into_parts();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let b = rt.block_on(axum::body::to_bytes(body, usize::MAX)).unwrap();
        assert_eq!(b.len(), 1000);
        assert!(serde_json::from_slice::<Value>(&b).is_ok());
    }
}
