//! `genroute-bench scale`: router overhead as a route grows from 2 to 200 candidates, with in-process
//! instant providers (`genroute_router::testing::ScriptedProvider`) so no network hides it. Per size: the
//! dry-run plan alone (`Router::plan`: resolve, quote and plan every candidate), a whole job whose first
//! candidate succeeds, and a whole job whose first candidate fails (503, not billed) and whose second
//! succeeds.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use genroute_core::{Billed, ErrorKind, ImageJobSpec, Job, ProviderError};
use genroute_ledger::{Ledger, MemoryLedger};
use genroute_pricing::{Catalog, PriceBook};
use genroute_router::route::RouteTable;
use genroute_router::testing::{ScriptedProvider, Step};
use genroute_router::{GenerateRequest, Router, RouterSettings};
use serde_json::json;

use crate::measure::{Args, Res, Samples, process_cpu_ns, write_result};
use crate::setup::{caller, fund, route};

async fn build(n: usize, first_fails: bool) -> Res<Router> {
    let mut prices = PriceBook::builder();
    let mut providers = Vec::with_capacity(n);
    let mut cands = Vec::with_capacity(n);
    let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let text = format!(
            "provider = \"{id}\"\ncurrency = \"CU\"\nverified = 2026-11-21\n[models.m]\nkind = \"per_output\"\nprice = \"10\"\n"
        );
        prices = prices.catalog(Catalog::from_toml(&text, id)?);
        let step = if first_fails && i == 0 {
            Step::Fail(ProviderError::new(ErrorKind::Unavailable, "503").billed(Billed::No))
        } else {
            Step::Succeed
        };
        providers.push(ScriptedProvider::new(id, &["m"], vec![step])?);
    }
    for id in &ids {
        cands.push((id.as_str(), "m"));
    }
    let table = RouteTable::new([("r".to_owned(), route(&cands)?)], [])?;
    let ledger: Arc<dyn Ledger> = Arc::new(MemoryLedger::new());
    fund(ledger.as_ref(), &caller()?).await?;
    let mut settings = RouterSettings::default();
    settings.breaker.consecutive_failures = u32::MAX;
    settings.breaker.failure_ratio = None;
    let mut b = Router::builder(table, prices.build()?, ledger).settings(settings);
    for p in providers {
        b = b.provider(p);
    }
    Ok(b.build())
}

/// Runs the scale curve and writes `scale.json`.
pub fn run(args: &Args) -> Res<()> {
    let out = PathBuf::from(args.need("out")?);
    let jobs: u64 = args.num("jobs", 3000)?;
    let sizes: Vec<usize> = args
        .get("sizes")
        .unwrap_or("2,10,50,100,200")
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let job: Job = ImageJobSpec::new("a lighthouse").build()?.into();
        let caller = caller()?;
        let mut rows = Vec::new();
        for &n in &sizes {
            let ok = build(n, false).await?;
            let fo = build(n, true).await?;
            let req = GenerateRequest::new(job.clone(), "r", caller.clone());
            let mut plan = Samples::default();
            let mut first = Samples::default();
            let mut failover = Samples::default();
            // Warm-up, then interleave the three measurements in 10 slices.
            for _ in 0..(jobs / 10).max(1) {
                ok.generate(req.clone()).await?;
                fo.generate(req.clone()).await?;
            }
            let slice = (jobs / 10).max(1);
            for _ in 0..10 {
                let c0 = process_cpu_ns();
                for _ in 0..slice {
                    let t0 = Instant::now();
                    let (_, _, p) = ok.plan(&req)?;
                    plan.latencies.push(t0.elapsed());
                    if p.steps.len() != n {
                        return Err(format!("plan of {n} kept {}", p.steps.len()).into());
                    }
                }
                plan.cpu_ns += process_cpu_ns() - c0;
                plan.calls += slice;
                let c0 = process_cpu_ns();
                for _ in 0..slice {
                    let t0 = Instant::now();
                    let o = ok.generate(req.clone()).await?;
                    first.latencies.push(t0.elapsed());
                    if o.attempts.len() != 1 {
                        return Err("first candidate did not answer".into());
                    }
                }
                first.cpu_ns += process_cpu_ns() - c0;
                first.calls += slice;
                let c0 = process_cpu_ns();
                for _ in 0..slice {
                    let t0 = Instant::now();
                    let o = fo.generate(req.clone()).await?;
                    failover.latencies.push(t0.elapsed());
                    if o.attempts.len() != 2 {
                        return Err("failover did not take two attempts".into());
                    }
                }
                failover.cpu_ns += process_cpu_ns() - c0;
                failover.calls += slice;
            }
            rows.push(json!({
                "candidates": n,
                "plan": plan.row("plan"),
                "first": first.row("job, first candidate succeeds"),
                "failover": failover.row("job, first fails, second succeeds"),
            }));
        }
        write_result(&out, "scale", &json!({ "jobs_per_size": jobs, "rows": rows }))?;
        Ok(())
    })
}
