#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The JSON-lines cost log: exact round trip, sums, torn lines, flush policies, and the callback fan-out.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use genroute_core::{Currency, MemberId, ModelId, ModelRef, Money, ProjectId, ProviderId, TeamId};
use genroute_telemetry::{
    AttemptEvent, AttemptOutcome, CallbackSink, CostLogOptions, CostSink, FlushPolicy, JsonlCostLog,
    ProblemKind, Sinks, read_cost_log,
};

fn options(flush: FlushPolicy) -> CostLogOptions {
    CostLogOptions {
        flush,
        ..CostLogOptions::default()
    }
}

/// A varied set of events: two currencies, three members (one absent), two projects, odd decimal scales.
fn events() -> Vec<AttemptEvent> {
    let (first, second) = failover_pair();
    let runway = ProviderId::new("runway").unwrap();
    let video = AttemptEvent {
        job_id: genroute_core::JobId::new("job-8").unwrap(),
        attempt: 1,
        provider: runway.clone(),
        model: ModelId::new("gen4_turbo").unwrap(),
        operation: genroute_core::Operation::VideoGeneration,
        modality: genroute_core::Modality::Video,
        route: None,
        outcome: AttemptOutcome::GateRejected,
        quoted: Some(Money::usd(d("0.50"))),
        charged: Money::new(d("50"), Currency::Credits(runway)),
        cost_source: Some(genroute_core::CostSource::ProviderReported),
        cu: Money::cu(d("62.50")),
        job_spend_cu: Money::cu(d("62.50")),
        retry_spend_cu: Money::cu(d("62.50")),
        latency: Duration::from_millis(41_000),
        outputs: 0,
        fallback_reason: Some("gate_rejected".into()),
        caller: caller().member(MemberId::new("bob").unwrap()),
        ..second.clone()
    };
    let anonymous = AttemptEvent {
        job_id: genroute_core::JobId::new("job-9").unwrap(),
        charged: Money::usd(d("0.0030")),
        quoted: None,
        cu: Money::cu(d("0.375")),
        job_spend_cu: Money::cu(d("0.375")),
        retry_spend_cu: Money::cu(d("0")),
        caller: genroute_core::Caller::team(TeamId::new("acme").unwrap())
            .project(ProjectId::new("ads").unwrap()),
        outcome: AttemptOutcome::Cancelled,
        ..second.clone()
    };
    let denied = AttemptEvent {
        job_id: genroute_core::JobId::new("job-10").unwrap(),
        outcome: AttemptOutcome::BudgetDenied,
        budget_decision: genroute_telemetry::BudgetDecision::Denied {
            scope: "member:alice".into(),
        },
        fallback_reason: None,
        ..first.clone()
    };
    vec![first, second, video, anonymous, denied]
}

#[test]
fn writes_and_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    let log = JsonlCostLog::open(&path, options(FlushPolicy::EveryLine)).unwrap();
    let events = events();
    for e in &events {
        log.record(e);
    }
    log.flush().unwrap();
    assert_eq!(log.written(), events.len() as u64);
    log.close().unwrap();

    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), events.len());
    // Amounts are strings with their scale; currencies spelled out.
    let first: serde_json::Value = serde_json::from_str(text.lines().nth(2).unwrap()).unwrap();
    assert_eq!(first["charged"], "50");
    assert_eq!(first["currency"], "credits:runway");
    assert_eq!(first["quoted"], "0.50");
    assert_eq!(first["quoted_currency"], "USD");
    assert_eq!(first["cu"], "62.50");
    assert_eq!(first["member"], "bob");
    assert_eq!(first["latency_ms"], 41_000);

    let contents = read_cost_log(&path).unwrap();
    assert!(contents.problems.is_empty(), "{:?}", contents.problems);
    let back: Vec<AttemptEvent> = contents.records.iter().map(|r| r.to_event().unwrap()).collect();
    assert_eq!(
        back, events,
        "every field, amounts with their exact scale, survives the round trip"
    );
    assert_eq!(
        back[3].charged.amount().scale(),
        4,
        "0.0030 keeps its trailing zero"
    );
}

#[test]
fn sums_by_provider_model_member_project_and_currency() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    {
        let log = JsonlCostLog::open(&path, CostLogOptions::default()).unwrap();
        for e in events() {
            log.record(&e);
        }
        // Dropping the log writes what is pending.
    }
    let summary = read_cost_log(&path).unwrap().summary().unwrap();
    let usd = Currency::Usd;
    let runway_credits = Currency::Credits(ProviderId::new("runway").unwrap());

    assert_eq!(summary.total.attempts, 5);
    assert_eq!(summary.total.successes, 1);
    assert_eq!(summary.total.cu, d("66.000"));
    assert_eq!(summary.total.charged_in(&usd), d("0.0280"));
    assert_eq!(summary.total.charged_in(&runway_credits), d("50"));

    let replicate = &summary.by_provider[&ProviderId::new("replicate").unwrap()];
    assert_eq!((replicate.attempts, replicate.cu), (2, d("3.500")));
    assert_eq!(summary.by_provider[&ProviderId::new("fal").unwrap()].cu, d("0"));
    let flux = ModelRef::new(
        ProviderId::new("replicate").unwrap(),
        ModelId::new("black-forest-labs/flux-dev").unwrap(),
    );
    assert_eq!(summary.by_model[&flux].charged_in(&usd), d("0.0280"));
    assert_eq!(
        summary.by_member[&Some(MemberId::new("alice").unwrap())].cu,
        d("3.125")
    );
    assert_eq!(
        summary.by_member[&Some(MemberId::new("bob").unwrap())].cu,
        d("62.50")
    );
    assert_eq!(summary.by_member[&None].cu, d("0.375"));
    assert_eq!(
        summary.by_project[&Some(ProjectId::new("ads").unwrap())].attempts,
        1
    );
    assert_eq!(
        summary.by_project[&Some(ProjectId::new("posters").unwrap())].cu,
        d("65.625")
    );
    assert_eq!(summary.by_team[&TeamId::new("acme").unwrap()].attempts, 5);

    // Streaming line by line gives the same sums.
    let mut streamed = genroute_telemetry::CostSummary::default();
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    for line in genroute_telemetry::CostLogLines::new(file) {
        streamed.add(&line.unwrap().unwrap()).unwrap();
    }
    assert_eq!(streamed, summary);
    assert_eq!(summary.by_provider[&ProviderId::new("fal").unwrap()].attempts, 2);
}

#[test]
fn torn_last_line_is_reported_not_fatal_and_appending_resumes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    let events = events();
    {
        let log = JsonlCostLog::open(&path, options(FlushPolicy::EveryLine)).unwrap();
        log.record(&events[0]);
        log.record(&events[1]);
    }
    // Simulate a crash mid-write: half of a third line, no newline.
    let line = serde_json::to_string(&genroute_telemetry::CostLogRecord::from_event(&events[2])).unwrap();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&line.as_bytes()[..line.len() / 2])
        .unwrap();

    let contents = read_cost_log(&path).unwrap();
    assert_eq!(contents.records.len(), 2);
    assert_eq!(contents.problems.len(), 1);
    assert_eq!(contents.problems[0].line, 3);
    assert_eq!(contents.problems[0].kind, ProblemKind::Torn);

    // Reopening seals the torn line, so the next record is intact on its own line.
    let log = JsonlCostLog::open(&path, options(FlushPolicy::EveryLine)).unwrap();
    log.record(&events[3]);
    log.close().unwrap();
    let contents = read_cost_log(&path).unwrap();
    assert_eq!(contents.records.len(), 3);
    assert_eq!(contents.records[2].to_event().unwrap(), events[3]);
    assert_eq!(contents.problems.len(), 1);
    assert_eq!(contents.problems[0].kind, ProblemKind::Torn);

    // A complete line that is not a record is reported as invalid.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(b"{\"hello\":1}\n")
        .unwrap();
    let contents = read_cost_log(&path).unwrap();
    assert_eq!(contents.problems.last().unwrap().kind, ProblemKind::Invalid);
    assert_eq!(contents.problems.last().unwrap().line, 5);
}

#[test]
fn batch_policy_writes_on_line_count_and_on_interval() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    let (first, _) = failover_pair();
    let log = JsonlCostLog::open(
        &path,
        options(FlushPolicy::Batch {
            lines: 3,
            interval: Duration::from_millis(50),
        }),
    )
    .unwrap();
    for _ in 0..3 {
        log.record(&first);
    }
    wait_until(|| log.written() == 3);
    log.record(&first);
    // One pending line is written once the interval passes, without any further call.
    wait_until(|| log.written() == 4);
    assert_eq!(read_cost_log(&path).unwrap().records.len(), 4);
    assert_eq!(log.dropped(), 0);
}

#[test]
fn on_close_policy_writes_only_on_flush_or_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    let (first, second) = failover_pair();
    let log = JsonlCostLog::open(
        &path,
        CostLogOptions {
            flush: FlushPolicy::OnClose,
            fsync: true,
            capacity: 16,
        },
    )
    .unwrap();
    log.record(&first);
    log.record(&second);
    // Nothing reaches the file until asked; a flush is a barrier.
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    log.flush().unwrap();
    assert_eq!(read_cost_log(&path).unwrap().records.len(), 2);
    log.record(&first);
    drop(log);
    assert_eq!(read_cost_log(&path).unwrap().records.len(), 3);
}

fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    panic!("condition not reached in 1 s");
}

#[test]
fn callback_and_fanout_deliver_to_every_sink_even_if_one_panics() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let queue = Arc::clone(&seen);
    let (tx, rx) = std::sync::mpsc::sync_channel::<AttemptEvent>(8);
    let sinks = Sinks::new()
        .with(CallbackSink::new(move |e: &AttemptEvent| {
            queue.lock().unwrap().push((e.provider.to_string(), e.cu.clone()))
        }))
        .with(CallbackSink::new(|_: &AttemptEvent| panic!("a broken user sink")))
        .with(CallbackSink::new(move |e: &AttemptEvent| {
            let _ = tx.try_send(e.clone());
        }));
    assert_eq!(sinks.len(), 3);
    let (first, second) = failover_pair();
    sinks.record(&first);
    sinks.record(&second);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            ("fal".to_owned(), Money::cu(d("0"))),
            ("replicate".to_owned(), Money::cu(d("3.125")))
        ]
    );
    let queued: Vec<AttemptEvent> = rx.try_iter().collect();
    assert_eq!(queued, vec![first, second]);
}

#[cfg(target_os = "linux")]
#[test]
fn write_failures_are_reported_and_counted_not_raised_at_the_caller() {
    // Every write to /dev/full fails with ENOSPC.
    let log = JsonlCostLog::open("/dev/full", options(FlushPolicy::EveryLine)).unwrap();
    let (first, second) = failover_pair();
    log.record(&first);
    log.record(&second);
    let error = log.flush().unwrap_err();
    assert!(error.to_string().contains("/dev/full"), "{error}");
    assert_eq!(log.dropped(), 2);
    assert_eq!(log.written(), 0);
    assert!(log.last_error().is_some());
    assert!(log.close().is_err());
}
