//! `genroute-bench report`: reads the result files of one run and prints the Markdown tables (with each
//! goal marked met / not met) that go into BENCHMARKS.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::measure::{Args, Res};

fn load(dir: &Path, name: &str) -> Option<Value> {
    let bytes = std::fs::read(dir.join(format!("{name}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn row<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v["rows"].as_array()?.iter().find(|r| r["key"] == key)
}

fn f(v: Option<&Value>, field: &str) -> Option<f64> {
    v.and_then(|r| r[field].as_f64())
}

fn fmt_us(x: Option<f64>) -> String {
    match x {
        None => "n/a".into(),
        Some(x) if x >= 10_000.0 => format!("{:.1} ms", x / 1e3),
        Some(x) if x >= 1_000.0 => format!("{:.2} ms", x / 1e3),
        Some(x) => format!("{x:.0} µs"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.3}", a / b),
        _ => "n/a".into(),
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

/// Prints the tables for the results in `--dir`.
pub fn run(args: &Args) -> Res<()> {
    let dir = PathBuf::from(args.need("dir")?);
    let mut s = String::new();
    let ov = load(&dir, "overhead");
    let lit = load(&dir, "litellm");
    let empty = Value::Null;
    let ov_v = ov.as_ref().unwrap_or(&empty);
    let lit_v = lit.as_ref().unwrap_or(&empty);
    let raw = row(ov_v, "raw");
    let raw_p50 = f(raw, "p50_us");
    let raw_cpu = f(raw, "cpu_us");

    writeln!(s, "### One image job, sequential (concurrency 1)\n")?;
    writeln!(
        s,
        "| client | p50 | p99 | client CPU / call | p50 ÷ raw | CPU ÷ raw |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    let mut all: Vec<&Value> = ov_v["rows"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    all.extend(
        lit_v["rows"]
            .as_array()
            .map(|a| a.iter().collect::<Vec<_>>())
            .unwrap_or_default(),
    );
    for r in &all {
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r["name"].as_str().unwrap_or("?"),
            fmt_us(r["p50_us"].as_f64()),
            fmt_us(r["p99_us"].as_f64()),
            fmt_us(r["cpu_us"].as_f64()),
            ratio(r["p50_us"].as_f64(), raw_p50),
            ratio(r["cpu_us"].as_f64(), raw_cpu),
        )?;
    }
    if let Some(e) = lit_v["error"].as_str() {
        writeln!(s, "\nLiteLLM: not measured — {e}")?;
    }
    let g_mem = row(ov_v, "router_memory");
    let g_two = row(ov_v, "router_two");
    let l_direct = row(lit_v, "litellm_image_generation");
    let l_router = row(lit_v, "litellm_router");
    let cpu_ratio = |g: Option<&Value>, l: Option<&Value>| match (f(g, "cpu_us"), f(l, "cpu_us")) {
        (Some(g), Some(l)) if l > 0.0 => Some(g / l),
        _ => None,
    };
    let c1 = cpu_ratio(g_mem, l_direct);
    let c2 = cpu_ratio(g_two, l_router);
    let p = match (f(g_mem, "p50_us"), raw_p50) {
        (Some(g), Some(r)) if r > 0.0 => Some(g / r),
        _ => None,
    };
    writeln!(s, "\nGoals:")?;
    writeln!(
        s,
        "- client CPU, genroute router (MemoryLedger) ÷ `litellm.image_generation`: {} (goal ≤ 0.01): {}",
        c1.map_or("n/a".into(), |x| format!("{x:.4} (1/{:.0})", 1.0 / x)),
        verdict(c1.map(|x| x <= 0.01))
    )?;
    writeln!(
        s,
        "- client CPU, genroute 2-deployment route ÷ `litellm.Router` (2 deployments): {} (goal ≤ 0.01): {}",
        c2.map_or("n/a".into(), |x| format!("{x:.4} (1/{:.0})", 1.0 / x)),
        verdict(c2.map(|x| x <= 0.01))
    )?;
    writeln!(
        s,
        "- p50, genroute router (MemoryLedger) ÷ raw reqwest: {} (goal ≤ 1.05): {}",
        p.map_or("n/a".into(), |x| format!("{x:.3}")),
        verdict(p.map(|x| x <= 1.05))
    )?;
    // Context for the CPU goal: what the floor (no HTTP library, no parsing) costs against LiteLLM.
    let floor = row(ov_v, "floor");
    if let (Some(fl), Some(l)) = (f(floor, "cpu_us"), f(l_direct, "cpu_us")) {
        writeln!(
            s,
            "- context: the floor (blocking socket, no HTTP library, no parsing) costs {fl:.0} µs CPU per call, \
             {:.4} (1/{:.0}) of `litellm.image_generation`'s; a 1/100 client would need ≤ {:.0} µs",
            fl / l,
            l / fl,
            l / 100.0
        )?;
    }

    // Failover.
    writeln!(
        s,
        "\n### Failover: primary answers 500, fallback succeeds (retries 0)\n"
    )?;
    writeln!(
        s,
        "| client | jobs | calls to the primary per job | p50 of the job | added beyond the failed call (p50 job − p50 failed call − p50 plain call) |"
    )?;
    writeln!(s, "|---|---|---|---|---|")?;
    let raw_fail = f(row(ov_v, "raw_fail"), "p50_us");
    let fo = &ov_v["failover"];
    let per_job = |calls: &Value, jobs: &Value| match (calls.as_f64(), jobs.as_f64()) {
        (Some(c), Some(j)) if j > 0.0 => Some(c / j),
        _ => None,
    };
    let g_fo = f(row(ov_v, "failover"), "p50_us");
    let g_calls = per_job(&fo["primary_calls"], &fo["jobs"]);
    let g_added = match (g_fo, raw_fail, f(g_mem, "p50_us")) {
        (Some(a), Some(b), Some(c)) => Some(a - b - c),
        _ => None,
    };
    writeln!(
        s,
        "| genroute (breaker never opens) | {} | {} | {} | {} (vs a router call; {} vs a raw call) |",
        fo["jobs"],
        g_calls.map_or("n/a".into(), |x| format!("{x:.3}")),
        fmt_us(g_fo),
        fmt_us(g_added),
        fmt_us(match (g_fo, raw_fail, raw_p50) {
            (Some(a), Some(b), Some(c)) => Some(a - b - c),
            _ => None,
        }),
    )?;
    writeln!(
        s,
        "| genroute (default breaker: opens after 5 consecutive failures) | {} | {} | | |",
        fo["default_breaker_jobs"],
        per_job(&fo["default_breaker_primary_calls"], &fo["default_breaker_jobs"])
            .map_or("n/a".into(), |x| format!("{x:.3}")),
    )?;
    let lfo = &lit_v["failover"];
    let l_fo = f(row(lit_v, "litellm_failover"), "p50_us");
    let l_calls = per_job(&lfo["primary_calls"], &lfo["jobs"]);
    let l_added = match (l_fo, raw_fail, f(l_direct, "p50_us")) {
        (Some(a), Some(b), Some(c)) => Some(a - b - c),
        _ => None,
    };
    writeln!(
        s,
        "| LiteLLM Router, fallbacks, num_retries=0, max_retries=0 | {} | {} | {} | {} (vs a `litellm.image_generation` call) |",
        lfo["jobs"],
        l_calls.map_or("n/a".into(), |x| format!("{x:.3}")),
        fmt_us(l_fo),
        fmt_us(l_added),
    )?;
    writeln!(
        s,
        "| LiteLLM Router, same, default cooldowns | {} | {} | | |",
        lfo["default_cooldown_jobs"],
        per_job(
            &lfo["default_cooldown_primary_calls"],
            &lfo["default_cooldown_jobs"]
        )
        .map_or("n/a".into(), |x| format!("{x:.3}")),
    )?;
    if let Some(v) = lit_v["litellm_version"].as_str() {
        writeln!(
            s,
            "\nLiteLLM {v} (Python {}).",
            lit_v["python"].as_str().unwrap_or("?")
        )?;
    }
    writeln!(s, "\nGoals:")?;
    writeln!(
        s,
        "- genroute: exactly 1 call to the primary per job: {}",
        verdict(g_calls.map(|x| (x - 1.0).abs() < 1e-9))
    )?;
    writeln!(
        s,
        "- genroute: latency added beyond the failed call < 1 ms: {}",
        verdict(g_added.map(|x| x < 1_000.0))
    )?;

    // Scale.
    if let Some(sc) = load(&dir, "scale") {
        writeln!(
            s,
            "\n### Router overhead vs route size (in-process instant providers)\n"
        )?;
        writeln!(
            s,
            "| candidates | plan only p50 | job (1st succeeds) p50 / p99 | CPU / job | job (1st fails, 2nd succeeds) p50 | growth vs 2 (p50, 1st succeeds) |"
        )?;
        writeln!(s, "|---|---|---|---|---|---|")?;
        let rows = sc["rows"].as_array().cloned().unwrap_or_default();
        let base = rows.first().and_then(|r| r["first"]["p50_us"].as_f64());
        let mut worst: Option<f64> = None;
        for r in &rows {
            let p = r["first"]["p50_us"].as_f64();
            let g = match (p, base) {
                (Some(p), Some(b)) if b > 0.0 => Some(p / b),
                _ => None,
            };
            if let Some(g) = g {
                worst = Some(worst.map_or(g, |w: f64| w.max(g)));
            }
            writeln!(
                s,
                "| {} | {} | {} / {} | {} | {} | {} |",
                r["candidates"],
                fmt_us(r["plan"]["p50_us"].as_f64()),
                fmt_us(p),
                fmt_us(r["first"]["p99_us"].as_f64()),
                fmt_us(r["first"]["cpu_us"].as_f64()),
                fmt_us(r["failover"]["p50_us"].as_f64()),
                g.map_or("n/a".into(), |g| format!("{g:.2}×")),
            )?;
        }
        writeln!(
            s,
            "\nGoal ≤ 2× growth from 2 to 200 candidates: {} ({})",
            verdict(worst.map(|w| w <= 2.0)),
            worst.map_or("n/a".into(), |w| format!("{w:.2}×"))
        )?;
    }

    // Polling.
    for via in ["router", "adapter"] {
        let Some(p) = load(&dir, &format!("poll-{via}")) else {
            continue;
        };
        let per_job = p["bytes_per_in_flight_job"].as_f64();
        writeln!(s, "\n### {} in-flight fal video jobs, via the {via}\n", p["jobs"])?;
        writeln!(
            s,
            "| max in flight (at RSS peak) | RSS before → peak → after | (peak − before) ÷ max in flight | job's top-level future | client CPU / job | client CPU / upstream request | upstream requests (creates / polls / results) | max open connections | job p50 / p99 | failed |"
        )?;
        writeln!(s, "|---|---|---|---|---|---|---|---|---|---|")?;
        writeln!(
            s,
            "| {} ({}) | {:.1} → {:.1} → {:.1} MiB | {} | {} B | {} | {} | {} ({} / {} / {}) | {} | {:.1} s / {:.1} s | {} |",
            p["max_in_flight"],
            p["in_flight_at_peak"],
            p["rss_before_mib"].as_f64().unwrap_or(0.0),
            p["rss_peak_mib"].as_f64().unwrap_or(0.0),
            p["rss_after_mib"].as_f64().unwrap_or(0.0),
            per_job.map_or("n/a".into(), |b| format!("{:.1} KiB", b / 1024.0)),
            p["top_level_future_bytes"],
            fmt_us(p["cpu_us_per_job"].as_f64()),
            fmt_us(p["cpu_us_per_request"].as_f64()),
            p["upstream_requests"],
            p["creates"],
            p["status_polls"],
            p["results"],
            p["max_open_connections"],
            p["job_p50_ms"].as_f64().unwrap_or(0.0) / 1e3,
            p["job_p99_ms"].as_f64().unwrap_or(0.0) / 1e3,
            p["failed"],
        )?;
        writeln!(
            s,
            "\nGoal ≤ 16 KiB per in-flight job: {}",
            verdict(per_job.map(|b| b <= 16.0 * 1024.0))
        )?;
    }
    print!("{s}");
    Ok(())
}
