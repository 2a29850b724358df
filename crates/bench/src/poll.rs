//! `genroute-bench poll`: 10,000 in-flight fal video jobs (kling text-to-video, 5 s) through the real fal
//! adapter — via the router (memory ledger) or the adapter alone — against the fal emulator in the `serve`
//! process (timed progression: every job stays queued then running for a few seconds, so all are in flight
//! at once). Jobs are started at a steady rate (so connections are reused rather than opened 10,000 at
//! once) and each polls on the adapter's own schedule. Reports the client's resident memory per in-flight
//! job (peak RSS minus the RSS before the run, divided by the jobs in flight at that peak) and client CPU
//! per job and per upstream request.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use genroute_core::{CallContext, Job, JobId, ModelId, Provider, ProviderRequest, VideoJobSpec};
use genroute_http::PollConfig;
use genroute_ledger::{Ledger, MemoryLedger};
use genroute_pricing::PriceBook;
use genroute_provider_fal::{FalConfig, FalProvider};
use genroute_router::route::RouteTable;
use genroute_router::{GenerateRequest, Router};
use rust_decimal::Decimal;
use serde_json::json;

use crate::measure::{Args, Res, process_cpu_ns, quantile_us, rss_bytes, write_result};
use crate::serve::Env;
use crate::setup::{caller, fund, route};

const MODEL: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";

#[derive(Clone)]
enum Via {
    Router(Router),
    Adapter(Arc<dyn Provider>),
}

async fn one(via: &Via, job: &Job, caller: &genroute_core::Caller, i: usize) -> Res<()> {
    match via {
        Via::Router(r) => {
            let o = r
                .generate(GenerateRequest::new(job.clone(), "vid", caller.clone()))
                .await?;
            if o.generation.outputs.is_empty() {
                return Err("no video".into());
            }
        }
        Via::Adapter(p) => {
            let req = ProviderRequest {
                model: ModelId::new(MODEL)?,
                job: job.clone(),
            };
            let ctx = CallContext::new(JobId::new(format!("j{i}"))?, caller.clone());
            let g = p.generate(&req, &ctx).await?;
            if g.outputs.is_empty() {
                return Err("no video".into());
            }
        }
    }
    Ok(())
}

/// Open file descriptors of this process (sockets, in practice: one per HTTP/1.1 connection).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Runs the in-flight polling measurement and writes `poll-<via>.json`.
pub fn run(args: &Args) -> Res<()> {
    let env = Env::load(args.need("env")?)?;
    let out = PathBuf::from(args.need("out")?);
    let jobs: usize = args.num("jobs", 10_000)?;
    let rate: u64 = args.num("rate", 1_000)?;
    let via_name = args.get("via").unwrap_or("router").to_owned();
    let initial_ms: u64 = args.num("poll-initial-ms", 2_000)?;
    let max_ms: u64 = args.num("poll-max-ms", 4_000)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let http = reqwest::Client::new();
        let poll = PollConfig {
            initial_interval: Duration::from_millis(initial_ms),
            max_interval: Duration::from_millis(max_ms),
            ..PollConfig::default()
        };
        let fal: Arc<dyn Provider> = Arc::new(FalProvider::new(
            FalConfig::new(env.fal_key.clone())
                .base_url(env.fal.clone())
                .poll(poll),
        )?);
        let caller = caller()?;
        let via = if via_name == "router" {
            let ledger: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
            fund(ledger.as_ref(), &caller).await?;
            let table = RouteTable::new([("vid".to_owned(), route(&[("fal", MODEL)])?)], [])?;
            Via::Router(
                Router::builder(table, PriceBook::with_builtin()?, ledger)
                    .provider(fal)
                    .build(),
            )
        } else {
            Via::Adapter(fal)
        };
        let job: Job = VideoJobSpec::new("a drone shot over a fjord at dawn", Decimal::from(5))
            .build()?
            .into();
        // Size of the state machine each job keeps while it waits (the adapter's future is boxed by
        // async-trait; its own inner boxes are separate allocations, so this is a lower bound).
        let future_bytes = {
            let req = ProviderRequest {
                model: ModelId::new(MODEL)?,
                job: job.clone(),
            };
            let ctx = CallContext::new(JobId::new("size")?, caller.clone());
            match &via {
                Via::Router(r) => {
                    let f = r.generate(GenerateRequest::new(job.clone(), "vid", caller.clone()));
                    std::mem::size_of_val(&f)
                }
                Via::Adapter(p) => {
                    let f = p.generate(&req, &ctx);
                    std::mem::size_of_val(&*f)
                }
            }
        };
        // Warm-up: a few jobs end to end (connection pool, lazy statics, allocator arenas).
        let mut warm = Vec::new();
        for i in 0..8 {
            let (via, job, caller) = (via.clone(), job.clone(), caller.clone());
            warm.push(tokio::spawn(async move {
                one(&via, &job, &caller, i).await.map_err(|e| e.to_string())
            }));
        }
        for w in warm {
            w.await??;
        }
        let before = env.counts(&http).await?;
        let rss0 = rss_bytes();
        let cpu0 = process_cpu_ns();
        let t0 = Instant::now();

        let in_flight = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(rss0));
        let in_flight_at_peak = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let fds0 = open_fds();
        let max_fds = Arc::new(AtomicUsize::new(fds0));
        let sampler = {
            let max_fds = max_fds.clone();
            let (in_flight, done, peak, at_peak, max_if) = (
                in_flight.clone(),
                done.clone(),
                peak.clone(),
                in_flight_at_peak.clone(),
                max_in_flight.clone(),
            );
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(25));
                let mut k = 0u64;
                while done.load(Ordering::Relaxed) < jobs {
                    tick.tick().await;
                    k += 1;
                    if k.is_multiple_of(8) {
                        max_fds.fetch_max(open_fds(), Ordering::Relaxed);
                    }
                    let rss = rss_bytes();
                    let n = in_flight.load(Ordering::Relaxed);
                    max_if.fetch_max(n, Ordering::Relaxed);
                    if rss > peak.load(Ordering::Relaxed) {
                        peak.store(rss, Ordering::Relaxed);
                        at_peak.store(n, Ordering::Relaxed);
                    }
                }
            })
        };
        // Join handles are dropped at once: a finished task's allocation (sized like its future) lives as long
        // as its handle, and holding 10,000 of them would count finished jobs as in-flight memory.
        let latencies = Arc::new(std::sync::Mutex::new(Vec::with_capacity(jobs)));
        let per_tick = (rate / 100).max(1) as usize;
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let mut started = 0usize;
        while started < jobs {
            tick.tick().await;
            for _ in 0..per_tick.min(jobs - started) {
                let (via, job, caller) = (via.clone(), job.clone(), caller.clone());
                let (in_flight, done, failed) = (in_flight.clone(), done.clone(), failed.clone());
                let latencies = latencies.clone();
                let i = started;
                in_flight.fetch_add(1, Ordering::Relaxed);
                drop(tokio::spawn(async move {
                    let s = Instant::now();
                    let r = one(&via, &job, &caller, i).await;
                    let elapsed = s.elapsed();
                    if let Ok(mut l) = latencies.lock() {
                        l.push(elapsed);
                    }
                    if r.is_err() {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    done.fetch_add(1, Ordering::Relaxed);
                }));
                started += 1;
            }
        }
        while done.load(Ordering::Relaxed) < jobs {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let latencies: Vec<Duration> = latencies.lock().map(|l| l.clone()).unwrap_or_default();
        let wall = t0.elapsed();
        let cpu = process_cpu_ns() - cpu0;
        sampler.await?;
        let rss_after = rss_bytes();
        let after = env.counts(&http).await?;
        let d = |k: &str| after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0);
        let requests = d("fal_total");
        let peak = peak.load(Ordering::Relaxed);
        let at_peak = in_flight_at_peak.load(Ordering::Relaxed).max(1);
        let result = json!({
            "via": via_name,
            "jobs": jobs,
            "failed": failed.load(Ordering::Relaxed),
            "start_rate_per_s": rate,
            "poll_initial_ms": initial_ms,
            "poll_max_ms": max_ms,
            "wall_s": wall.as_secs_f64(),
            "max_in_flight": max_in_flight.load(Ordering::Relaxed),
            "in_flight_at_peak": at_peak,
            "rss_before_mib": rss0 as f64 / 1048576.0,
            "rss_peak_mib": peak as f64 / 1048576.0,
            "rss_after_mib": rss_after as f64 / 1048576.0,
            "bytes_per_in_flight_job": (peak.saturating_sub(rss0)) as f64
                / max_in_flight.load(Ordering::Relaxed).max(1) as f64,
            "top_level_future_bytes": future_bytes,
            "max_open_connections": max_fds.load(Ordering::Relaxed).saturating_sub(fds0),
            "upstream_requests": requests,
            "creates": d("fal_create"),
            "status_polls": d("fal_status"),
            "results": d("fal_result"),
            "cpu_s": cpu as f64 / 1e9,
            "cpu_us_per_job": cpu as f64 / 1e3 / jobs as f64,
            "cpu_us_per_request": if requests > 0 { cpu as f64 / 1e3 / requests as f64 } else { 0.0 },
            "job_p50_ms": quantile_us(&latencies, 0.5) / 1e3,
            "job_p99_ms": quantile_us(&latencies, 0.99) / 1e3,
        });
        write_result(&out, &format!("poll-{via_name}"), &result)?;
        Ok(())
    })
}
