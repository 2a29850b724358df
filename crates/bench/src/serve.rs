//! `genroute-bench serve`: the emulators the client parts talk to, in their own process (so their CPU is
//! never counted as client CPU), plus an admin endpoint with upstream request counts and an OTLP/HTTP sink
//! that accepts and discards spans and metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use genroute_emulators::{Emulator, EmulatorHandle, Endpoint, Fault, Kind, Progression};
use serde_json::json;

use crate::measure::{Args, Res};

struct Admin {
    openai_ok: EmulatorHandle,
    openai_fail: EmulatorHandle,
    fal: EmulatorHandle,
    otlp_requests: AtomicU64,
}

async fn counts(State(admin): State<Arc<Admin>>) -> axum::Json<serde_json::Value> {
    axum::Json(json!({
        "openai_ok_create": admin.openai_ok.count(Endpoint::Create),
        "openai_ok_total": admin.openai_ok.total_requests(),
        "openai_fail_create": admin.openai_fail.count(Endpoint::Create),
        "openai_fail_total": admin.openai_fail.total_requests(),
        "fal_create": admin.fal.count(Endpoint::Create),
        "fal_status": admin.fal.count(Endpoint::Status),
        "fal_result": admin.fal.count(Endpoint::Result),
        "fal_total": admin.fal.total_requests(),
        "otlp_requests": admin.otlp_requests.load(Ordering::Relaxed),
    }))
}

async fn otlp_sink(State(admin): State<Arc<Admin>>) -> impl IntoResponse {
    admin.otlp_requests.fetch_add(1, Ordering::Relaxed);
    // An empty protobuf message is a valid ExportTraceServiceResponse / ExportMetricsServiceResponse.
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        Vec::<u8>::new(),
    )
}

/// Starts everything, writes the endpoints as JSON to `--out`, and serves until killed.
pub fn run(args: &Args) -> Res<()> {
    let out = args.need("out")?.to_owned();
    let queued_ms: u64 = args.num("fal-queued-ms", 8_000)?;
    let running_ms: u64 = args.num("fal-running-ms", 8_000)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let openai_ok = Emulator::builder(Kind::OpenAi)
            .record_requests(false)
            .start()
            .await?;
        let openai_fail = Emulator::builder(Kind::OpenAi)
            .record_requests(false)
            .start()
            .await?;
        openai_fail
            .faults()
            .push(Fault::server_error(500).times(u32::MAX));
        let fal = Emulator::builder(Kind::Fal)
            .record_requests(false)
            .progression(Progression::timed(
                Duration::from_millis(queued_ms),
                Duration::from_millis(running_ms),
            ))
            .start()
            .await?;
        let env = json!({
            "openai_ok": openai_ok.base_url(),
            "openai_fail": openai_fail.base_url(),
            "openai_key": openai_ok.api_key(),
            "fal": fal.base_url(),
            "fal_key": fal.api_key(),
        });
        let admin = Arc::new(Admin {
            openai_ok,
            openai_fail,
            fal,
            otlp_requests: AtomicU64::new(0),
        });
        let app = axum::Router::new()
            .route("/counts", axum::routing::get(counts))
            .fallback(otlp_sink)
            .with_state(admin);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut env = env;
        env["admin"] = json!(format!("http://{addr}"));
        let tmp = format!("{out}.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&env)?)?;
        std::fs::rename(&tmp, &out)?;
        axum::serve(listener, app).await?;
        Ok(())
    })
}

/// The endpoints written by `serve`.
#[derive(Debug, Clone)]
pub struct Env {
    /// Healthy OpenAI emulator base (`.../v1`).
    pub openai_ok: String,
    /// OpenAI emulator answering 500 to everything.
    pub openai_fail: String,
    /// The OpenAI key both accept.
    pub openai_key: String,
    /// fal queue base.
    pub fal: String,
    /// fal key.
    pub fal_key: String,
    /// Admin base (`/counts`, OTLP sink).
    pub admin: String,
}

impl Env {
    /// Reads the file `serve` wrote.
    pub fn load(path: &str) -> Res<Self> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path)?)?;
        let s = |k: &str| -> Res<String> {
            v[k].as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{path}: missing {k}").into())
        };
        Ok(Self {
            openai_ok: s("openai_ok")?,
            openai_fail: s("openai_fail")?,
            openai_key: s("openai_key")?,
            fal: s("fal")?,
            fal_key: s("fal_key")?,
            admin: s("admin")?,
        })
    }

    /// The admin counters.
    pub async fn counts(&self, http: &reqwest::Client) -> Res<serde_json::Value> {
        Ok(http
            .get(format!("{}/counts", self.admin))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}
