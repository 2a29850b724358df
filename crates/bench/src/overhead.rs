//! `genroute-bench overhead`: one OpenAI `gpt-image-1` job, the same request every time, through raw
//! reqwest, the adapter alone, and the router (memory ledger; SQLite ledger; memory + telemetry; two
//! deployments), then failover (primary answers 500, fallback succeeds). Sequential calls (concurrency 1)
//! on a current-thread runtime; modes interleaved round by round so drift on a shared machine hits every
//! mode alike; the first round is a warm-up and is not recorded.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use genroute_core::{CallContext, Caller, ImageJobSpec, Job, JobId, ModelId, Provider, ProviderRequest};
use genroute_ledger::{Ledger, MemoryLedger, SqliteLedger};
use genroute_provider_openai::{OpenAiConfig, OpenAiProvider};
use genroute_router::breaker::BreakerConfig;
use genroute_router::route::RouteTable;
use genroute_router::{GenerateRequest, Router, RouterSettings};
use genroute_telemetry::{TelemetryConfig, TelemetryGuard};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::measure::{Args, Res, Samples, process_cpu_ns, write_result};
use crate::noledger::NoLedger;
use crate::serve::Env;
use crate::setup::{Renamed, caller, fund, prices_with_openai_aliases, route};

/// The prompt every client sends (LiteLLM's script uses the same one).
pub const PROMPT: &str = "a lighthouse at dusk, watercolor";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Floor,
    Raw,
    Hyper,
    RawClient,
    Adapter,
    RouterMemory,
    RouterSqlite,
    RouterTelemetry,
    RouterTwo,
    RouterNoLedger,
    RawFail,
    Failover,
}

impl Mode {
    const ALL: [Mode; 12] = [
        Mode::Floor,
        Mode::Raw,
        Mode::Hyper,
        Mode::RawClient,
        Mode::Adapter,
        Mode::RouterMemory,
        Mode::RouterSqlite,
        Mode::RouterTelemetry,
        Mode::RouterTwo,
        Mode::RouterNoLedger,
        Mode::RawFail,
        Mode::Failover,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Floor => {
                "floor: blocking socket, hand-written HTTP/1.1, body read by Content-Length, no parsing (context)"
            }
            Mode::Raw => "raw reqwest",
            Mode::Hyper => "raw hyper (hyper-util's client, no reqwest layer; context)",
            Mode::RawClient => {
                "raw reqwest, client built like the adapter's (HttpConfig: request timeout, pool, 5 redirects)"
            }
            Mode::Adapter => "genroute adapter only (OpenAiProvider::generate)",
            Mode::RouterMemory => "genroute router, MemoryLedger",
            Mode::RouterSqlite => "genroute router, SqliteLedger",
            Mode::RouterTelemetry => {
                "genroute router, MemoryLedger + telemetry (OTel layer, metrics, OTLP to a discarding sink)"
            }
            Mode::RouterTwo => "genroute router, route of 2 deployments",
            Mode::RouterNoLedger => {
                "genroute router, no-op ledger (bench-only breakdown: minus the ledger's share)"
            }
            Mode::RawFail => "raw reqwest to the failing primary (500)",
            Mode::Failover => "genroute failover job (500 then fallback)",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Mode::Floor => "floor",
            Mode::Raw => "raw",
            Mode::Hyper => "hyper",
            Mode::RawClient => "raw_client",
            Mode::Adapter => "adapter",
            Mode::RouterMemory => "router_memory",
            Mode::RouterSqlite => "router_sqlite",
            Mode::RouterTelemetry => "router_telemetry",
            Mode::RouterTwo => "router_two",
            Mode::RouterNoLedger => "router_noledger",
            Mode::RawFail => "raw_fail",
            Mode::Failover => "failover",
        }
    }
}

struct Ctx {
    env: Env,
    http: reqwest::Client,
    /// A client with the adapter's settings (`HttpConfig::build_client`), for `raw_client`.
    http_config: reqwest::Client,
    body: Value,
    job: Job,
    caller: Caller,
    adapter: Arc<dyn Provider>,
    r_mem: Router,
    r_sqlite: Router,
    r_tel: Router,
    r_fo: Router,
    r_noledger: Router,
    guard: TelemetryGuard,
    floor: std::sync::Mutex<Floor>,
    hyper: HyperClient,
    hyper_uri: hyper::Uri,
    hyper_auth: hyper::header::HeaderValue,
}

type HyperClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<hyper::body::Bytes>,
>;

/// The raw call through hyper-util's pooled client: what reqwest's own layer costs on top of hyper.
async fn hyper_call(ctx: &Ctx) -> Res<usize> {
    use http_body_util::BodyExt;
    let req = hyper::Request::post(ctx.hyper_uri.clone())
        .header(hyper::header::AUTHORIZATION, ctx.hyper_auth.clone())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(serde_json::to_vec(&ctx.body)?.into()))?;
    let resp = ctx.hyper.request(req).await?;
    if !resp.status().is_success() {
        return Err(format!("hyper call: {}", resp.status()).into());
    }
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: Value = serde_json::from_slice(&bytes)?;
    let b64 = v["data"][0]["b64_json"].as_str().ok_or("no b64_json")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?.len())
}

/// The least any client can spend on one call here: one `write` of a prepared request and the `read`s of
/// the response on a blocking keep-alive socket, with no HTTP library and no JSON. What the kernel and the
/// loopback device charge per call on this machine, as context for the per-call CPU figures.
struct Floor {
    stream: std::net::TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Floor {
    fn connect(base: &str, key: &str, body: &Value) -> Res<Self> {
        let url = reqwest::Url::parse(base)?;
        let host = url.host_str().ok_or("floor: base URL without a host")?.to_owned();
        let port = url
            .port_or_known_default()
            .ok_or("floor: base URL without a port")?;
        let stream = std::net::TcpStream::connect((host.as_str(), port))?;
        stream.set_nodelay(true)?;
        let body = serde_json::to_vec(body)?;
        let path = format!("{}/images/generations", url.path().trim_end_matches('/'));
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(&body);
        Ok(Self {
            stream,
            request,
            buf: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends the request and reads the whole response; returns the body's length.
    fn call(&mut self) -> Res<usize> {
        use std::io::{Read, Write};
        self.stream.write_all(&self.request)?;
        self.buf.clear();
        let mut chunk = [0u8; 16 * 1024];
        let mut need: Option<usize> = None;
        loop {
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err("floor: connection closed mid-response".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
            if need.is_none()
                && let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n")
            {
                let head = std::str::from_utf8(&self.buf[..end])?;
                if !head.starts_with("HTTP/1.1 200") {
                    return Err(format!("floor: {}", head.lines().next().unwrap_or("")).into());
                }
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .ok_or("floor: response without Content-Length")?;
                need = Some(end + 4 + len);
            }
            if let Some(total) = need
                && self.buf.len() >= total
            {
                return Ok(total);
            }
        }
    }
}

fn openai(env: &Env, base: &str) -> Res<Arc<dyn Provider>> {
    Ok(Arc::new(OpenAiProvider::new(
        OpenAiConfig::new(env.openai_key.clone()).base_url(base),
    )?))
}

/// One router over the three deployments (openai → healthy, openai-b → healthy, openai-fail → 500).
fn router(
    env: &Env,
    ledger: Arc<dyn Ledger>,
    settings: RouterSettings,
) -> Res<genroute_router::RouterBuilder> {
    let prices = prices_with_openai_aliases(&["openai-b", "openai-fail"])?;
    let model = "gpt-image-1";
    let table = RouteTable::new(
        [
            ("img".to_owned(), route(&[("openai", model)])?),
            (
                "img2".to_owned(),
                route(&[("openai", model), ("openai-b", model)])?,
            ),
            (
                "fo".to_owned(),
                route(&[("openai-fail", model), ("openai", model)])?,
            ),
        ],
        [],
    )?;
    Ok(Router::builder(table, prices, ledger)
        .settings(settings)
        .provider(openai(env, &env.openai_ok)?)
        .provider(Renamed::new("openai-b", openai(env, &env.openai_ok)?)?)
        .provider(Renamed::new("openai-fail", openai(env, &env.openai_fail)?)?))
}

/// A breaker that never opens, so every failover job really calls the failing primary.
fn never_open() -> RouterSettings {
    RouterSettings {
        breaker: BreakerConfig {
            consecutive_failures: u32::MAX,
            failure_ratio: None,
            ..BreakerConfig::default()
        },
        ..RouterSettings::default()
    }
}

async fn raw(ctx: &Ctx, http: &reqwest::Client, base: &str, expect_ok: bool) -> Res<usize> {
    let resp = http
        .post(format!("{base}/images/generations"))
        .bearer_auth(&ctx.env.openai_key)
        .json(&ctx.body)
        .send()
        .await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !expect_ok {
        if status.as_u16() != 500 {
            return Err(format!("expected 500 from the failing primary, got {status}").into());
        }
        return Ok(bytes.len());
    }
    if !status.is_success() {
        return Err(format!("raw call: {status}").into());
    }
    let v: Value = serde_json::from_slice(&bytes)?;
    let b64 = v["data"][0]["b64_json"].as_str().ok_or("no b64_json")?;
    Ok(base64::engine::general_purpose::STANDARD.decode(b64)?.len())
}

async fn call(ctx: &Ctx, mode: Mode, n: u64) -> Res<()> {
    match mode {
        Mode::Floor => {
            ctx.floor.lock().map_err(|_| "floor: lock poisoned")?.call()?;
        }
        Mode::Raw => {
            raw(ctx, &ctx.http, &ctx.env.openai_ok, true).await?;
        }
        Mode::Hyper => {
            hyper_call(ctx).await?;
        }
        Mode::RawClient => {
            raw(ctx, &ctx.http_config, &ctx.env.openai_ok, true).await?;
        }
        Mode::RawFail => {
            raw(ctx, &ctx.http, &ctx.env.openai_fail, false).await?;
        }
        Mode::Adapter => {
            let req = ProviderRequest {
                model: ModelId::new("gpt-image-1")?,
                job: ctx.job.clone(),
            };
            let cx = CallContext::new(JobId::new(format!("adapter-{n}"))?, ctx.caller.clone());
            let g = ctx.adapter.generate(&req, &cx).await?;
            if g.outputs.is_empty() {
                return Err("adapter: no output".into());
            }
        }
        Mode::RouterMemory
        | Mode::RouterSqlite
        | Mode::RouterTelemetry
        | Mode::RouterTwo
        | Mode::RouterNoLedger => {
            let (r, route) = match mode {
                Mode::RouterSqlite => (&ctx.r_sqlite, "img"),
                Mode::RouterNoLedger => (&ctx.r_noledger, "img"),
                Mode::RouterTelemetry => (&ctx.r_tel, "img"),
                Mode::RouterTwo => (&ctx.r_mem, "img2"),
                _ => (&ctx.r_mem, "img"),
            };
            let out = r
                .generate(GenerateRequest::new(ctx.job.clone(), route, ctx.caller.clone()))
                .await?;
            if out.attempts.len() != 1 {
                return Err(format!("{route}: {} attempts", out.attempts.len()).into());
            }
        }
        Mode::Failover => {
            let out = ctx
                .r_fo
                .generate(GenerateRequest::new(ctx.job.clone(), "fo", ctx.caller.clone()))
                .await?;
            if out.attempts.len() != 2 || out.target.provider.as_str() != "openai" {
                return Err(format!(
                    "failover: {} attempts, ended on {}",
                    out.attempts.len(),
                    out.target
                )
                .into());
            }
        }
    }
    Ok(())
}

async fn batch(ctx: &Ctx, mode: Mode, iters: u64, samples: &mut Samples) -> Res<()> {
    // Telemetry on: spans go through the OpenTelemetry layer of the real guard (this thread's default
    // subscriber, which is where the current-thread runtime polls the router).
    let _sub = (mode == Mode::RouterTelemetry).then(|| {
        tracing::subscriber::set_default(tracing_subscriber::registry().with(ctx.guard.tracing_layer()))
    });
    let cpu0 = process_cpu_ns();
    for i in 0..iters {
        let t0 = Instant::now();
        call(ctx, mode, i).await?;
        samples.latencies.push(t0.elapsed());
    }
    samples.cpu_ns += process_cpu_ns().saturating_sub(cpu0);
    samples.calls += iters;
    Ok(())
}

/// Runs the overhead and failover measurements and writes `overhead.json`.
pub fn run(args: &Args) -> Res<()> {
    let env = Env::load(args.need("env")?)?;
    let out = PathBuf::from(args.need("out")?);
    let iters: u64 = args.num("iters", 400)?;
    let rounds: usize = args.num("rounds", 6)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let caller = caller()?;
        let mem: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
        fund(mem.as_ref(), &caller).await?;
        let dir = tempfile::tempdir()?;
        let sqlite: Arc<dyn Ledger> = Arc::new(SqliteLedger::open(dir.path().join("ledger.db"))?);
        fund(sqlite.as_ref(), &caller).await?;
        let mem_tel: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
        fund(mem_tel.as_ref(), &caller).await?;
        let mem_fo: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
        fund(mem_fo.as_ref(), &caller).await?;
        let no_ledger: Arc<dyn Ledger> = Arc::new(NoLedger::new());
        fund(no_ledger.as_ref(), &caller).await?;
        let guard = TelemetryGuard::init_with_env(
            &TelemetryConfig {
                metric_interval: Some(Duration::from_secs(5)),
                ..TelemetryConfig::otlp(env.admin.clone())
            },
            |_| None,
        )?;
        let job: Job = ImageJobSpec::new(PROMPT)
            .size(1024, 1024)
            .extra("quality", json!("low"))
            .build()?
            .into();
        let body =
            json!({"model": "gpt-image-1", "prompt": PROMPT, "n": 1, "size": "1024x1024", "quality": "low"});
        let ctx = Ctx {
            floor: std::sync::Mutex::new(Floor::connect(&env.openai_ok, &env.openai_key, &body)?),
            hyper: {
                let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
                connector.set_nodelay(true);
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(connector)
            },
            hyper_uri: format!("{}/images/generations", env.openai_ok).parse()?,
            hyper_auth: format!("Bearer {}", env.openai_key).parse()?,
            http: reqwest::Client::new(),
            http_config: genroute_http::HttpConfig::default().build_client()?,
            body,
            job,
            adapter: openai(&env, &env.openai_ok)?,
            r_mem: router(&env, mem, RouterSettings::default())?.build(),
            r_sqlite: router(&env, sqlite, RouterSettings::default())?.build(),
            r_tel: router(&env, mem_tel, RouterSettings::default())?
                .cost_sink(Arc::new(guard.cost_metrics()))
                .build(),
            r_fo: router(&env, mem_fo.clone(), never_open())?.build(),
            r_noledger: router(&env, no_ledger, RouterSettings::default())?.build(),
            guard,
            caller,
            env,
        };
        let active: Vec<Mode> = match args.get("modes") {
            None => Mode::ALL.to_vec(),
            Some(list) => Mode::ALL
                .iter()
                .copied()
                .filter(|m| list.split(',').any(|k| k == m.key()))
                .collect(),
        };
        let mut samples: Vec<Samples> = vec![Samples::default(); active.len()];
        let mut fail_calls = 0u64;
        let mut ok_calls_in_failover = 0u64;
        for round in 0..=rounds {
            for k in 0..active.len() {
                let idx = (k + round) % active.len();
                let mode = active[idx];
                let before = (mode == Mode::Failover).then_some(ctx.env.counts(&ctx.http).await?);
                let mut s = Samples::default();
                batch(&ctx, mode, iters, &mut s).await?;
                if round > 0 {
                    let target = &mut samples[idx];
                    target.latencies.extend(s.latencies);
                    target.cpu_ns += s.cpu_ns;
                    target.calls += s.calls;
                    if let Some(before) = before {
                        let after = ctx.env.counts(&ctx.http).await?;
                        let d = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
                        fail_calls += d("openai_fail_create");
                        ok_calls_in_failover += d("openai_ok_create");
                    }
                }
            }
        }
        // The same failover with the default breaker: after its threshold the primary is skipped.
        let r_default = router(&ctx.env, mem_fo, RouterSettings::default())?.build();
        let before = ctx.env.counts(&ctx.http).await?;
        let n_default = 200u64;
        for _ in 0..n_default {
            r_default
                .generate(GenerateRequest::new(ctx.job.clone(), "fo", ctx.caller.clone()))
                .await?;
        }
        let after = ctx.env.counts(&ctx.http).await?;
        let default_fail_calls = after["openai_fail_create"].as_u64().unwrap_or(0)
            - before["openai_fail_create"].as_u64().unwrap_or(0);

        let fo_jobs = active
            .iter()
            .position(|m| *m == Mode::Failover)
            .map_or(0, |i| samples[i].calls);
        let mut rows = Vec::new();
        for (mode, s) in active.iter().zip(&samples) {
            let mut row = s.row(mode.name());
            row["key"] = json!(mode.key());
            rows.push(row);
        }
        let result = json!({
            "iters_per_batch": iters,
            "rounds": rounds,
            "rows": rows,
            "failover": {
                "jobs": fo_jobs,
                "primary_calls": fail_calls,
                "fallback_calls": ok_calls_in_failover,
                "default_breaker_jobs": n_default,
                "default_breaker_primary_calls": default_fail_calls,
            },
        });
        write_result(&out, "overhead", &result)?;
        ctx.guard.shutdown()?;
        Ok(())
    })
}
