//! Cost of recording one attempt, per sink, on the caller's thread; and cost log write throughput.
//!
//! A plain harness (no criterion): `cargo bench -p genroute-telemetry --bench record`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use chrono::Utc;
use genroute_core::{
    Caller, CostSource, Decimal, JobId, MemberId, Modality, ModelId, ModelRef, Money, Operation, ProjectId,
    ProviderId, TeamId,
};
use genroute_telemetry::{
    AttemptEvent, AttemptOutcome, BudgetDecision, CostLogOptions, CostLogRecord, CostSink, FlushPolicy,
    JsonlCostLog, TelemetryConfig, TelemetryGuard, attempt_span, job_span, read_cost_log, record_attempt,
};
use tracing_subscriber::layer::SubscriberExt;

fn event() -> AttemptEvent {
    AttemptEvent {
        time: Utc::now(),
        job_id: JobId::new("job-0194a3f2-7c1e-7d2a-9f3b-1c2d3e4f5a6b").unwrap(),
        attempt: 2,
        provider: ProviderId::new("replicate").unwrap(),
        model: ModelId::new("black-forest-labs/flux-dev").unwrap(),
        response_model: Some("black-forest-labs/flux-dev:6e4a".into()),
        operation: Operation::ImageGeneration,
        modality: Modality::Image,
        route: Some("posters".into()),
        outcome: AttemptOutcome::Success,
        quoted: Some(Money::usd(Decimal::new(25, 3))),
        charged: Money::usd(Decimal::new(25, 3)),
        cost_source: Some(CostSource::PriceTable),
        cu: Money::cu(Decimal::new(3125, 3)),
        job_spend_cu: Money::cu(Decimal::new(3125, 3)),
        retry_spend_cu: Money::cu(Decimal::ZERO),
        latency: Duration::from_millis(2750),
        outputs: 1,
        fallback_reason: None,
        budget_decision: BudgetDecision::Reserved,
        caller: Caller::team(TeamId::new("acme").unwrap())
            .member(MemberId::new("alice").unwrap())
            .project(ProjectId::new("posters").unwrap()),
    }
}

/// Median of `rounds` timings of `iters` calls, in ns per call.
fn measure(name: &str, iters: u32, rounds: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 {
        f();
    }
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    let median = samples[samples.len() / 2];
    println!("{name:<58} {median:>9.0} ns/call (median of {rounds} x {iters})");
    median
}

fn main() {
    let e = event();
    let dir = tempfile::tempdir().unwrap();

    measure(
        "cost log line: CostLogRecord::from_event + serde_json",
        20_000,
        7,
        || {
            black_box(serde_json::to_vec(&CostLogRecord::from_event(black_box(&e))).unwrap());
        },
    );

    // Caller-side cost of JsonlCostLog::record (the writer thread runs concurrently).
    let path = dir.path().join("bench.jsonl");
    let log = JsonlCostLog::open(&path, CostLogOptions::default()).unwrap();
    measure(
        "JsonlCostLog::record (batch 64 / 1 s), caller side",
        20_000,
        7,
        || log.record(black_box(&e)),
    );
    log.flush().unwrap();
    println!("    written {} lines, dropped {}", log.written(), log.dropped());
    drop(log);

    // Write throughput: N lines recorded as fast as possible, then a flush barrier.
    for (label, flush, fsync, n) in [
        (
            "batch 64 / 1 s, no fsync",
            FlushPolicy::Batch {
                lines: 64,
                interval: Duration::from_secs(1),
            },
            false,
            100_000u32,
        ),
        (
            "every line (group commit), no fsync",
            FlushPolicy::EveryLine,
            false,
            100_000,
        ),
        (
            "every line (group commit), fsync",
            FlushPolicy::EveryLine,
            true,
            2_000,
        ),
    ] {
        let path = dir.path().join(format!("tp-{}.jsonl", label.len()));
        let log = JsonlCostLog::open(
            &path,
            CostLogOptions {
                flush,
                fsync,
                capacity: 1 << 20,
            },
        )
        .unwrap();
        let start = Instant::now();
        for _ in 0..n {
            log.record(&e);
        }
        log.flush().unwrap();
        let elapsed = start.elapsed();
        assert_eq!(log.dropped(), 0);
        println!(
            "cost log throughput, {label:<38} {:>9.0} lines/s ({n} lines in {elapsed:.2?})",
            f64::from(n) / elapsed.as_secs_f64()
        );
        drop(log);
        assert_eq!(read_cost_log(&path).unwrap().records.len(), n as usize);
    }

    // Reading and summing.
    let path = dir.path().join("read.jsonl");
    let log = JsonlCostLog::open(&path, CostLogOptions::default()).unwrap();
    for _ in 0..100_000 {
        log.record(&e);
    }
    log.close().unwrap();
    let start = Instant::now();
    let summary = read_cost_log(&path).unwrap().summary().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(summary.total.attempts, 100_000);
    println!(
        "read_cost_log + summary                                    {:>9.0} lines/s (100000 lines in {elapsed:.2?})",
        100_000.0 / elapsed.as_secs_f64()
    );

    // OpenTelemetry: a real SDK pipeline (export to a closed port, once, at shutdown).
    let config = TelemetryConfig {
        metric_interval: Some(Duration::from_secs(3600)),
        timeout: Some(Duration::from_millis(200)),
        ..TelemetryConfig::otlp("http://127.0.0.1:9")
    };
    let guard = TelemetryGuard::init_with_env(&config, |_| None).unwrap();
    let metrics = guard.cost_metrics();
    measure(
        "CostMetrics::record (7 instruments, SDK aggregation)",
        20_000,
        7,
        || metrics.record(black_box(&e)),
    );

    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let target = ModelRef::new(e.provider.clone(), e.model.clone());
        let job = job_span(&e.job_id, e.operation, e.modality, e.route.as_deref(), &e.caller);
        measure(
            "attempt_span + record_attempt + close (otel layer)",
            2_000,
            7,
            || {
                let span = attempt_span(
                    &job,
                    &e.job_id,
                    2,
                    &target,
                    e.operation,
                    e.modality,
                    e.route.as_deref(),
                );
                record_attempt(&span, black_box(&e));
                drop(span);
            },
        );
    });
    measure("attempt_span + record_attempt, no subscriber", 20_000, 7, || {
        let job = tracing::Span::none();
        let span = attempt_span(
            &job,
            &e.job_id,
            2,
            &ModelRef::new(e.provider.clone(), e.model.clone()),
            e.operation,
            e.modality,
            None,
        );
        record_attempt(&span, black_box(&e));
    });
    let _ = guard.shutdown();
}
