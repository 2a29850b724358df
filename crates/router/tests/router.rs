//! The router's behaviour, end to end against in-process scripted providers, the real price book and the
//! memory ledger.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genroute_core::{
    Billed, Caller, Decimal, ErrorKind, ImageJobSpec, Job, JobId, MemberId, ModelId, ModelRef, Money,
    ProviderError, ProviderId, TeamId,
};
use genroute_ledger::{Ledger, MemoryLedger, Scope, TeamConfig};
use genroute_pricing::{Catalog, PriceBook};
use genroute_router::breaker::{BreakerConfig, BreakerState};
use genroute_router::plan::DropReason;
use genroute_router::retry::{Jitter, RetryBudgetConfig, RetryPolicy};
use genroute_router::route::{CandidateConfig, OnContentRejection, Policy, RouteConfig, RouteTable, Tier};
use genroute_router::testing::{ScriptedProvider, Step};
use genroute_router::{GateVerdict, GenerateRequest, Limits, Router, RouterError, RouterSettings};
use genroute_telemetry::{AttemptEvent, AttemptOutcome, CostSink};

/// Prices in CU so the arithmetic in assertions is plain: a = 10, b = 12, c = 30, d = 8 CU per image.
const CATALOGS: &[(&str, &str)] = &[("a", "10"), ("b", "12"), ("c", "30"), ("d", "8")];

fn prices() -> PriceBook {
    let mut builder = PriceBook::builder();
    for (p, price) in CATALOGS {
        let text = format!(
            "provider = \"{p}\"\ncurrency = \"CU\"\nverified = 2026-11-21\n[models.m]\nkind = \"per_output\"\nprice = \"{price}\"\n"
        );
        builder = builder.catalog(Catalog::from_toml(&text, "test").unwrap());
    }
    builder.build().unwrap()
}

fn cand(p: &str) -> CandidateConfig {
    CandidateConfig::new(ProviderId::new(p).unwrap(), ModelId::new("m").unwrap())
}

fn quick_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
        ..RetryPolicy::default()
    }
}

fn route(cands: Vec<CandidateConfig>, policy: Policy) -> RouteConfig {
    let mut r = RouteConfig::new(cands);
    r.policy = policy;
    r.allow_escalation = true;
    r.retry = quick_retry(0);
    r
}

fn team() -> TeamId {
    TeamId::new("t1").unwrap()
}

fn caller() -> Caller {
    Caller::team(team()).member(MemberId::new("alice").unwrap())
}

async fn ledger(allowance: i64) -> Arc<MemoryLedger> {
    let l = Arc::new(MemoryLedger::new());
    l.create_team(&TeamConfig::new(
        team(),
        Money::cu(Decimal::from(allowance)),
        chrono::Utc::now(),
    ))
    .await
    .unwrap();
    l
}

#[derive(Default)]
struct Events(Mutex<Vec<AttemptEvent>>);
impl CostSink for Events {
    fn record(&self, event: &AttemptEvent) {
        self.0.lock().unwrap().push(event.clone());
    }
}

struct Fixture {
    router: Router,
    ledger: Arc<MemoryLedger>,
    events: Arc<Events>,
}

async fn fixture(route_cfg: RouteConfig, providers: &[Arc<ScriptedProvider>], allowance: i64) -> Fixture {
    fixture_with(route_cfg, providers, allowance, |b| b).await
}

async fn fixture_with(
    route_cfg: RouteConfig,
    providers: &[Arc<ScriptedProvider>],
    allowance: i64,
    f: impl FnOnce(genroute_router::RouterBuilder) -> genroute_router::RouterBuilder,
) -> Fixture {
    let table = RouteTable::new([("r".to_owned(), route_cfg)], []).unwrap();
    let ledger = ledger(allowance).await;
    let events = Arc::new(Events::default());
    let mut b = Router::builder(table, prices(), ledger.clone() as Arc<dyn Ledger>)
        .cost_sink(events.clone())
        .jitter(Jitter::with_seed(3))
        .settings(RouterSettings {
            retry_budget: RetryBudgetConfig {
                retry_ratio: 10.0,
                min_per_second: 100,
                ttl: Duration::from_secs(10),
            },
            ..RouterSettings::default()
        });
    for p in providers {
        b = b.provider(p.clone());
    }
    Fixture {
        router: f(b).build(),
        ledger,
        events,
    }
}

fn image() -> Job {
    ImageJobSpec::new("a lighthouse").build().unwrap().into()
}

fn req() -> GenerateRequest {
    GenerateRequest::new(image(), "r", caller())
}

fn unavailable() -> ProviderError {
    ProviderError::new(ErrorKind::Unavailable, "503").billed(Billed::No)
}

fn sp(id: &str, script: Vec<Step>) -> Arc<ScriptedProvider> {
    ScriptedProvider::new(id, &["m"], script).unwrap()
}

async fn used(l: &MemoryLedger) -> Decimal {
    l.usage(&Scope::Team(team())).await.unwrap().used.amount()
}

fn providers_tried(attempts: &[genroute_router::AttemptRecord]) -> Vec<String> {
    attempts.iter().map(|a| a.target.provider.to_string()).collect()
}

#[tokio::test]
async fn failover_order_follows_each_policy() {
    // Priority: a fails, b answers.
    let (a, b, c) = (
        sp("a", vec![Step::Fail(unavailable())]),
        sp("b", vec![Step::Succeed]),
        sp("c", vec![Step::Succeed]),
    );
    let fx = fixture(
        route(vec![cand("a"), cand("b"), cand("c")], Policy::Priority),
        &[a.clone(), b.clone(), c.clone()],
        1000,
    )
    .await;
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(providers_tried(&out.attempts), ["a", "b"]);
    assert_eq!(out.target.provider.as_str(), "b");
    assert_eq!(out.attempts[0].moved_on.as_deref(), Some("unavailable"));
    assert_eq!((a.calls(), b.calls(), c.calls()), (1, 1, 0));

    // Cheapest: d (8) then a (10) then b (12) then c (30); d and a fail.
    let (a, b, c, d) = (
        sp("a", vec![Step::Fail(unavailable())]),
        sp("b", vec![Step::Succeed]),
        sp("c", vec![Step::Succeed]),
        sp("d", vec![Step::Fail(unavailable())]),
    );
    let fx = fixture(
        route(vec![cand("c"), cand("b"), cand("a"), cand("d")], Policy::Cheapest),
        &[a, b, c, d],
        1000,
    )
    .await;
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(providers_tried(&out.attempts), ["d", "a", "b"]);

    // Latency-aware: after measuring, the faster deployment goes first.
    let slow = sp(
        "a",
        vec![Step::After(Duration::from_millis(60), Box::new(Step::Succeed))],
    );
    let fast = sp("b", vec![Step::Succeed]);
    let fx = fixture(
        route(vec![cand("a"), cand("b")], Policy::LatencyAware),
        &[slow.clone(), fast.clone()],
        1000,
    )
    .await;
    // Warm up: both unmeasured, so configured order; then b unmeasured goes first; then the fastest.
    let first = fx.router.generate(req()).await.unwrap();
    assert_eq!(first.target.provider.as_str(), "a");
    let second = fx.router.generate(req()).await.unwrap();
    assert_eq!(
        second.target.provider.as_str(),
        "b",
        "unmeasured candidates are tried first"
    );
    for _ in 0..3 {
        let out = fx.router.generate(req()).await.unwrap();
        assert_eq!(out.target.provider.as_str(), "b", "b is faster");
    }

    // Weighted: a heavy candidate is first most of the time.
    let (a, b) = (sp("a", vec![Step::Succeed]), sp("b", vec![Step::Succeed]));
    let fx = fixture(
        route(vec![cand("a").weight(1), cand("b").weight(9)], Policy::Weighted),
        &[a.clone(), b.clone()],
        100_000,
    )
    .await;
    for _ in 0..200 {
        fx.router.generate(req()).await.unwrap();
    }
    assert!(
        b.calls() > 150 && a.calls() > 5,
        "weights 1:9 gave a={} b={}",
        a.calls(),
        b.calls()
    );
}

#[tokio::test]
async fn ceiling_excludes_and_no_candidate_lists_every_reason() {
    let (a, c) = (sp("a", vec![Step::Succeed]), sp("c", vec![Step::Succeed]));
    let mut r = route(vec![cand("c"), cand("a"), cand("zz")], Policy::Priority);
    r.cost_ceiling = Some(Money::cu(Decimal::from(20)));
    let fx = fixture(r, &[a.clone(), c.clone()], 1000).await;
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(
        out.target.provider.as_str(),
        "a",
        "c (30 CU) is above the 20 CU ceiling"
    );
    assert_eq!(c.calls(), 0);

    // A job ceiling below every quote: nothing left, and the error says why for each candidate.
    let tight = req().limits(Limits {
        cost_ceiling: Some(Money::cu(Decimal::from(5))),
        ..Limits::default()
    });
    match fx.router.generate(tight).await.unwrap_err() {
        RouterError::NoCandidate { dropped, .. } => {
            let reasons: BTreeMap<String, DropReason> = dropped
                .into_iter()
                .map(|(t, r)| (t.provider.to_string(), r))
                .collect();
            assert!(matches!(reasons["c"], DropReason::OverCeiling { .. }));
            assert!(matches!(reasons["a"], DropReason::OverCeiling { .. }));
            assert_eq!(reasons["zz"], DropReason::UnknownProvider);
        }
        other => panic!("expected NoCandidate, got {other:?}"),
    }
    assert_eq!(a.calls(), 1, "nothing was sent for the refused job");
}

#[tokio::test]
async fn escalation_guard_never_fails_over_to_a_pricier_tier_unasked() {
    let a = sp("a", vec![Step::Fail(unavailable())]);
    let c = sp("c", vec![Step::Succeed]);
    let mut r = route(vec![cand("a"), cand("c").tier(Tier::Standard)], Policy::Priority);
    r.allow_escalation = false;
    r.max_escalation = Decimal::new(15, 1); // fallback may cost ≤ 15 CU; c costs 30
    let fx = fixture(r, &[a.clone(), c.clone()], 1000).await;
    let err = fx.router.generate(req()).await.unwrap_err();
    assert!(matches!(err, RouterError::Exhausted { .. }), "{err:?}");
    assert_eq!(c.calls(), 0, "the pricier fallback was not used");

    // A higher tier is refused even when cheaper.
    let a = sp("a", vec![Step::Fail(unavailable())]);
    let d = sp("d", vec![Step::Succeed]);
    let mut r = route(vec![cand("a"), cand("d").tier(Tier::Premium)], Policy::Priority);
    r.allow_escalation = false;
    let fx = fixture(r, &[a, d.clone()], 1000).await;
    let (_, _, plan) = fx.router.plan(&req()).unwrap();
    assert!(
        plan.dropped
            .iter()
            .any(|(_, r)| matches!(r, DropReason::HigherTier { .. }))
    );
    assert!(fx.router.generate(req()).await.is_err());
    assert_eq!(d.calls(), 0);
}

#[tokio::test]
async fn max_spend_bounds_all_attempts_of_a_job() {
    // Every attempt is billed 10 CU (billed unknown → conservative). Max spend 25 allows two attempts.
    let billed = ProviderError::new(ErrorKind::Unavailable, "lost").billed(Billed::Unknown);
    let a = sp("a", vec![Step::Fail(billed)]);
    let mut r = route(vec![cand("a")], Policy::Priority);
    r.retry = quick_retry(5);
    let fx = fixture(r, std::slice::from_ref(&a), 1000).await;
    let job = req().limits(Limits {
        max_spend: Some(Money::cu(Decimal::from(25))),
        ..Limits::default()
    });
    match fx.router.generate(job).await.unwrap_err() {
        RouterError::MaxSpend {
            spent,
            next,
            attempts,
            ..
        } => {
            assert_eq!(spent, Decimal::from(20));
            assert_eq!(next, Decimal::from(10));
            assert_eq!(attempts.len(), 2);
        }
        other => panic!("expected MaxSpend, got {other:?}"),
    }
    assert_eq!(a.calls(), 2);
    assert_eq!(
        used(&fx.ledger).await,
        Decimal::from(20),
        "both billed attempts are in the ledger"
    );
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_then_half_opens_then_closes() {
    let a = sp(
        "a",
        vec![
            Step::Fail(unavailable()),
            Step::Fail(unavailable()),
            Step::Succeed,
        ],
    );
    let b = sp("b", vec![Step::Succeed]);
    let fx = fixture_with(
        route(vec![cand("a"), cand("b")], Policy::Priority),
        &[a.clone(), b.clone()],
        1000,
        |bld| {
            bld.settings(RouterSettings {
                breaker: BreakerConfig {
                    consecutive_failures: 2,
                    failure_ratio: None,
                    cooldown: Duration::from_secs(30),
                    ..BreakerConfig::default()
                },
                retry_budget: RetryBudgetConfig {
                    retry_ratio: 10.0,
                    min_per_second: 100,
                    ttl: Duration::from_secs(10),
                },
                ..RouterSettings::default()
            })
        },
    )
    .await;
    let target = ModelRef::new(ProviderId::new("a").unwrap(), ModelId::new("m").unwrap());
    fx.router.generate(req()).await.unwrap();
    fx.router.generate(req()).await.unwrap();
    assert_eq!(fx.router.breaker(&target).state(), BreakerState::Open);
    // While open, a is not even planned.
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(providers_tried(&out.attempts), ["b"]);
    assert_eq!(a.calls(), 2);
    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(fx.router.breaker(&target).state(), BreakerState::HalfOpen);
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(
        providers_tried(&out.attempts),
        ["a"],
        "the half-open probe goes through and succeeds"
    );
    assert_eq!(fx.router.breaker(&target).state(), BreakerState::Closed);
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_respected() {
    let limited = ProviderError::new(ErrorKind::RateLimited, "429")
        .billed(Billed::No)
        .retry_after(Some(Duration::from_secs(3)));
    let a = sp("a", vec![Step::Fail(limited), Step::Succeed]);
    let mut r = route(vec![cand("a")], Policy::Priority);
    r.retry = quick_retry(2);
    let fx = fixture(r, std::slice::from_ref(&a), 1000).await;
    let start = tokio::time::Instant::now();
    let out = fx.router.generate(req()).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_secs(3),
        "waited {:?}",
        start.elapsed()
    );
    assert_eq!(out.attempts.len(), 2);
    assert_eq!(out.attempts[0].moved_on.as_deref(), Some("rate_limited_retry"));
    assert_eq!(
        out.retry_spend_cu.amount(),
        Decimal::ZERO,
        "an unbilled 429 costs nothing"
    );
    assert_eq!(used(&fx.ledger).await, Decimal::from(10));

    // A Retry-After longer than the policy allows is not waited for: fail over at once.
    let long = ProviderError::new(ErrorKind::RateLimited, "429")
        .billed(Billed::No)
        .retry_after(Some(Duration::from_secs(3600)));
    let a = sp("a", vec![Step::Fail(long)]);
    let b = sp("b", vec![Step::Succeed]);
    let mut r = route(vec![cand("a"), cand("b")], Policy::Priority);
    r.retry = quick_retry(2);
    let fx = fixture(r, &[a, b], 1000).await;
    let start = tokio::time::Instant::now();
    let out = fx.router.generate(req()).await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(providers_tried(&out.attempts), ["a", "b"]);
}

#[tokio::test]
async fn gate_rejection_is_charged_and_retried() {
    let a = sp("a", vec![Step::Succeed]);
    let mut r = route(vec![cand("a")], Policy::Priority);
    r.retry = quick_retry(2);
    let seen = Arc::new(Mutex::new(0u32));
    let seen_gate = seen.clone();
    let fx = fixture_with(r, std::slice::from_ref(&a), 1000, move |b| {
        b.quality_gate(Arc::new(move |_: &Job, _: &genroute_core::Generation| {
            let mut n = seen_gate.lock().unwrap();
            *n += 1;
            if *n < 3 {
                GateVerdict::Reject {
                    reason: "blurry".into(),
                }
            } else {
                GateVerdict::Accept
            }
        }))
    })
    .await;
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(out.attempts.len(), 3);
    assert_eq!(out.attempts[0].outcome, AttemptOutcome::GateRejected);
    assert_eq!(out.attempts[1].outcome, AttemptOutcome::GateRejected);
    assert_eq!(out.attempts[2].outcome, AttemptOutcome::Success);
    assert_eq!(
        out.total_spend_cu.amount(),
        Decimal::from(30),
        "rejected outputs were billed"
    );
    assert_eq!(out.retry_spend_cu.amount(), Decimal::from(20));
    assert_eq!(out.cost_per_output_cu.amount(), Decimal::from(30));
    assert_eq!(used(&fx.ledger).await, Decimal::from(30));
    let events = fx.events.0.lock().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[2].retry_spend_cu.amount(), Decimal::from(20));
    assert_eq!(events[2].job_spend_cu.amount(), Decimal::from(30));
}

#[tokio::test]
async fn budget_denial_stops_before_any_provider_call() {
    let a = sp("a", vec![Step::Succeed]);
    let fx = fixture(
        route(vec![cand("a")], Policy::Priority),
        std::slice::from_ref(&a),
        5,
    )
    .await; // 10 CU job, 5 CU left
    match fx.router.generate(req()).await.unwrap_err() {
        RouterError::BudgetExceeded { denial, attempts } => {
            assert_eq!(denial.scope, Scope::Team(team()));
            assert_eq!(denial.remaining.amount(), Decimal::from(5));
            assert_eq!(attempts.len(), 1);
            assert_eq!(attempts[0].outcome, AttemptOutcome::BudgetDenied);
        }
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
    assert_eq!(a.calls(), 0);
    // A member cap denies too, and names the member.
    let fx = fixture(
        route(vec![cand("a")], Policy::Priority),
        std::slice::from_ref(&a),
        1000,
    )
    .await;
    let member = Scope::Member(team(), MemberId::new("alice").unwrap());
    fx.ledger
        .set_cap(&member, &Money::cu(Decimal::from(15)))
        .await
        .unwrap();
    fx.router.generate(req()).await.unwrap();
    match fx.router.generate(req()).await.unwrap_err() {
        RouterError::BudgetExceeded { denial, .. } => assert_eq!(denial.scope, member),
        other => panic!("expected BudgetExceeded, got {other:?}"),
    }
    assert_eq!(a.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn deadline_cancels_the_in_flight_call_and_releases_its_hold() {
    let a = sp("a", vec![Step::Hang]);
    let fx = fixture(
        route(vec![cand("a")], Policy::Priority),
        std::slice::from_ref(&a),
        1000,
    )
    .await;
    let job = req().limits(Limits {
        deadline: Some(Duration::from_secs(5)),
        ..Limits::default()
    });
    let err = fx.router.generate(job).await.unwrap_err();
    match &err {
        RouterError::Deadline { attempts } => assert_eq!(attempts[0].outcome, AttemptOutcome::Cancelled),
        other => panic!("expected Deadline, got {other:?}"),
    }
    let usage = fx.ledger.usage(&Scope::Team(team())).await.unwrap();
    assert_eq!(usage.used.amount(), Decimal::ZERO);
    assert_eq!(usage.held.amount(), Decimal::ZERO, "the hold was released");
}

#[tokio::test]
async fn unknown_outcome_is_resumed_not_resent() {
    let lost = ProviderError::new(ErrorKind::Timeout, "response lost")
        .billed(Billed::Unknown)
        .job_id(Some("job-77".into()));
    let a = sp("a", vec![Step::Fail(lost), Step::Succeed]);
    let mut r = route(vec![cand("a")], Policy::Priority);
    r.retry = quick_retry(2);
    let fx = fixture(r, std::slice::from_ref(&a), 1000).await;
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(a.calls(), 1, "the create was not sent twice");
    assert_eq!(a.resumes(), 1);
    assert_eq!(
        out.total_spend_cu.amount(),
        Decimal::from(10),
        "one create, one charge"
    );
    assert_eq!(used(&fx.ledger).await, Decimal::from(10));
}

#[tokio::test]
async fn invalid_request_stops_and_content_rejection_is_configurable() {
    let bad = ProviderError::new(ErrorKind::InvalidRequest, "bad size").billed(Billed::No);
    let (a, b) = (sp("a", vec![Step::Fail(bad)]), sp("b", vec![Step::Succeed]));
    let fx = fixture(
        route(vec![cand("a"), cand("b")], Policy::Priority),
        &[a, b.clone()],
        1000,
    )
    .await;
    assert!(matches!(
        fx.router.generate(req()).await.unwrap_err(),
        RouterError::Stopped { .. }
    ));
    assert_eq!(b.calls(), 0);

    let nsfw = || ProviderError::new(ErrorKind::ContentRejected, "moderated").billed(Billed::No);
    let (a, b) = (sp("a", vec![Step::Fail(nsfw())]), sp("b", vec![Step::Succeed]));
    let fx = fixture(
        route(vec![cand("a"), cand("b")], Policy::Priority),
        &[a, b.clone()],
        1000,
    )
    .await;
    assert!(matches!(
        fx.router.generate(req()).await.unwrap_err(),
        RouterError::Stopped { .. }
    ));
    assert_eq!(b.calls(), 0);

    let (a, b) = (sp("a", vec![Step::Fail(nsfw())]), sp("b", vec![Step::Succeed]));
    let mut r = route(vec![cand("a"), cand("b")], Policy::Priority);
    r.on_content_rejection = OnContentRejection::Failover;
    let fx = fixture(r, &[a, b.clone()], 1000).await;
    assert_eq!(
        fx.router.generate(req()).await.unwrap().target.provider.as_str(),
        "b"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_jobs_never_exceed_a_cap_through_the_router() {
    let a = sp(
        "a",
        vec![Step::After(Duration::from_millis(5), Box::new(Step::Succeed))],
    );
    let fx = fixture(
        route(vec![cand("a")], Policy::Priority),
        std::slice::from_ref(&a),
        10_000,
    )
    .await;
    let member = Scope::Member(team(), MemberId::new("alice").unwrap());
    fx.ledger
        .set_cap(&member, &Money::cu(Decimal::from(255)))
        .await
        .unwrap(); // room for 25 jobs of 10 CU
    let router = fx.router.clone();
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let router = router.clone();
            tokio::spawn(async move {
                router
                    .generate(req().job_id(JobId::new(format!("job-{i}")).unwrap()))
                    .await
            })
        })
        .collect();
    let mut ok = 0;
    let mut denied = 0;
    for h in handles {
        match h.await.unwrap() {
            Ok(_) => ok += 1,
            Err(RouterError::BudgetExceeded { .. }) => denied += 1,
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok, 25, "exactly ⌊255 / 10⌋ jobs admitted");
    assert_eq!(denied, 39);
    assert_eq!(a.calls(), 25);
    let usage = fx.ledger.usage(&member).await.unwrap();
    assert_eq!(usage.used.amount(), Decimal::from(250));
    assert_eq!(usage.held.amount(), Decimal::ZERO);
}

#[tokio::test]
async fn aliases_choose_routes_by_metadata_and_the_router_is_a_tower_service() {
    use genroute_router::route::{AliasConfig, RouteRule};
    use tower::{Service, ServiceExt};
    let (a, d) = (sp("a", vec![Step::Succeed]), sp("d", vec![Step::Succeed]));
    let table = RouteTable::new(
        [
            ("standard".to_owned(), route(vec![cand("a")], Policy::Priority)),
            (
                "budget".to_owned(),
                route(vec![cand("d").tier(Tier::Budget)], Policy::Priority),
            ),
        ],
        [(
            "image".to_owned(),
            AliasConfig {
                rules: vec![RouteRule {
                    when: BTreeMap::from([("plan".into(), "free".into())]),
                    route: "budget".into(),
                }],
                default: "standard".into(),
            },
        )],
    )
    .unwrap();
    let ledger = ledger(1000).await;
    let mut router = Router::builder(table, prices(), ledger)
        .provider(a)
        .provider(d)
        .build();
    let free = GenerateRequest::new(image(), "image", caller()).meta("plan", "free");
    let out = router.ready().await.unwrap().call(free).await.unwrap();
    assert_eq!(out.target.provider.as_str(), "d");
    assert_eq!(out.route, "budget");
    let paid = GenerateRequest::new(image(), "image", caller()).meta("plan", "pro");
    assert_eq!(
        router
            .ready()
            .await
            .unwrap()
            .call(paid)
            .await
            .unwrap()
            .target
            .provider
            .as_str(),
        "a"
    );
}

#[tokio::test]
async fn cost_log_and_ledger_agree_after_failures_retries_and_gate_rejections() {
    use genroute_ledger::{EntryKind, HistoryFilter};
    use genroute_telemetry::{CostLogOptions, FlushPolicy, JsonlCostLog, read_cost_log};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cost.jsonl");
    let log = Arc::new(
        JsonlCostLog::open(
            &path,
            CostLogOptions {
                flush: FlushPolicy::EveryLine,
                ..CostLogOptions::default()
            },
        )
        .unwrap(),
    );
    // a: unbilled outages and a billed-unknown failure; b: answers, but the gate rejects every other output.
    let lost =
        ProviderError::new(ErrorKind::Unavailable, "connection reset after send").billed(Billed::Unknown);
    let a = sp(
        "a",
        vec![
            Step::Fail(unavailable()),
            Step::Fail(lost.clone()),
            Step::Succeed,
            Step::Fail(lost),
            Step::Fail(unavailable()),
        ],
    );
    let b = sp("b", vec![Step::Succeed]);
    let mut r = route(vec![cand("a"), cand("b")], Policy::Priority);
    r.retry = quick_retry(1);
    let flip = Arc::new(Mutex::new(false));
    let gate_flip = flip.clone();
    let fx = fixture_with(r, &[a, b], 100, move |bld| {
        bld.cost_sink(log.clone())
            .quality_gate(Arc::new(move |_: &Job, _: &genroute_core::Generation| {
                let mut f = gate_flip.lock().unwrap();
                *f = !*f;
                if *f {
                    GateVerdict::Reject {
                        reason: "off-spec".into(),
                    }
                } else {
                    GateVerdict::Accept
                }
            }))
    })
    .await;
    let mut outcomes = Vec::new();
    for i in 0..8 {
        let member = if i % 2 == 0 { "alice" } else { "bob" };
        let who = Caller::team(team()).member(MemberId::new(member).unwrap());
        let job = GenerateRequest::new(image(), "r", who).job_id(JobId::new(format!("j{i}")).unwrap());
        outcomes.push(fx.router.generate(job).await);
    }
    assert!(outcomes.iter().any(Result::is_ok));
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Err(RouterError::BudgetExceeded { .. }))),
        "the 100 CU allowance runs out part-way"
    );
    drop(fx.router);
    let contents = read_cost_log(&path).unwrap();
    let summary = contents.summary().unwrap();
    let usage = fx.ledger.usage(&Scope::Team(team())).await.unwrap();
    assert_eq!(usage.held.amount(), Decimal::ZERO, "no hold left open");
    assert_eq!(
        summary.total.cu,
        usage.used.amount(),
        "cost log total == ledger used"
    );
    assert!(summary.total.cu > Decimal::ZERO);
    // Per provider and per member too, from the ledger's own append-only history.
    let history = fx
        .ledger
        .history(&HistoryFilter::scope(Scope::Team(team())))
        .await
        .unwrap();
    // A settle entry's amount is the whole charge (overruns included): one per billed attempt.
    let settled_by_provider = |p: &str| -> Decimal {
        history
            .iter()
            .filter(|e| e.kind == EntryKind::Settle)
            .filter(|e| e.meta.as_ref().is_some_and(|m| m.provider.as_str() == p))
            .map(|e| e.amount.amount())
            .sum()
    };
    for p in ["a", "b"] {
        let logged = summary
            .by_provider
            .get(&ProviderId::new(p).unwrap())
            .map_or(Decimal::ZERO, |t| t.cu);
        assert_eq!(logged, settled_by_provider(p), "provider {p}");
    }
    for m in ["alice", "bob"] {
        let member = Scope::Member(team(), MemberId::new(m).unwrap());
        let used = fx.ledger.usage(&member).await.unwrap().used.amount();
        let logged = summary
            .by_member
            .get(&Some(MemberId::new(m).unwrap()))
            .map_or(Decimal::ZERO, |t| t.cu);
        assert_eq!(logged, used, "member {m}");
    }
    // Every attempt is a line, denials included; retries and gate rejections are visible.
    let records = contents.records;
    assert!(
        records
            .iter()
            .any(|r| r.outcome == genroute_telemetry::OutcomeCode::GateRejected)
    );
    assert!(
        records
            .iter()
            .any(|r| r.outcome == genroute_telemetry::OutcomeCode::BudgetDenied)
    );
    assert!(records.iter().any(|r| r.fallback_reason.is_some()));
}

#[tokio::test]
async fn dropping_a_job_releases_its_hold() {
    let a = sp("a", vec![Step::Hang]);
    let fx = fixture(
        route(vec![cand("a")], Policy::Priority),
        std::slice::from_ref(&a),
        1000,
    )
    .await;
    let job = fx.router.generate(req());
    // The caller gives up (a dropped future, as on Ctrl-C) while the provider call is in flight.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), job)
            .await
            .is_err()
    );
    assert_eq!(a.calls(), 1);
    let mut held = Decimal::ONE;
    for _ in 0..100 {
        held = fx.ledger.usage(&Scope::Team(team())).await.unwrap().held.amount();
        if held.is_zero() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        held,
        Decimal::ZERO,
        "the hold was released, not left until its TTL"
    );
    assert_eq!(used(&fx.ledger).await, Decimal::ZERO);
}

#[tokio::test]
async fn dry_run_quotes_explain_themselves_and_match_what_a_run_reserves() {
    let (a, c) = (sp("a", vec![Step::Succeed]), sp("c", vec![Step::Succeed]));
    let fx = fixture(
        route(vec![cand("a"), cand("c")], Policy::Priority),
        &[a.clone(), c],
        1000,
    )
    .await;
    let (_, _, plan) = fx.router.plan(&req()).unwrap();
    assert_eq!(plan.steps.len(), 2);
    for step in &plan.steps {
        assert!(
            !step.quote.lines.is_empty(),
            "the dry run explains {}",
            step.target
        );
    }
    assert_eq!(a.calls(), 0, "a dry run calls nothing");
    assert_eq!(
        fx.ledger.usage(&Scope::Team(team())).await.unwrap().held.amount(),
        Decimal::ZERO
    );
    let out = fx.router.generate(req()).await.unwrap();
    assert_eq!(
        out.attempts[0].quoted_cu.amount(),
        plan.steps[0].quote_cu,
        "run and dry run price alike"
    );
}

/// Records what each attempt was asked for, delegating the answer to a script.
#[derive(Debug)]
struct Recorder {
    inner: Arc<ScriptedProvider>,
    seen: Mutex<Vec<(String, String, String, u32)>>,
}

#[async_trait::async_trait]
impl genroute_core::Provider for Recorder {
    fn id(&self) -> &ProviderId {
        self.inner.id()
    }

    fn models(&self) -> &[genroute_core::ModelInfo] {
        self.inner.models()
    }

    async fn generate(
        &self,
        request: &genroute_core::ProviderRequest,
        ctx: &genroute_core::CallContext,
    ) -> Result<genroute_core::Generation, ProviderError> {
        let prompt = match &request.job {
            Job::Image(j) => j.prompt().to_owned(),
            other => format!("{other:?}"),
        };
        self.seen.lock().unwrap().push((
            request.model.to_string(),
            prompt,
            ctx.idempotency_key().to_string(),
            ctx.attempt(),
        ));
        self.inner.generate(request, ctx).await
    }
}

#[tokio::test]
async fn each_candidate_gets_its_own_model_and_attempt_key_and_job_ids_are_fresh_uuid_v7s() {
    // One provider, two models: the failover re-targets the same job at the second model.
    let text = "provider = \"e\"\ncurrency = \"CU\"\nverified = 2026-11-21\n[models.m]\nkind = \"per_output\"\nprice = \"5\"\n[models.m2]\nkind = \"per_output\"\nprice = \"6\"\n";
    let prices = PriceBook::builder()
        .catalog(Catalog::from_toml(text, "test").unwrap())
        .build()
        .unwrap();
    let rec = Arc::new(Recorder {
        inner: ScriptedProvider::new("e", &["m", "m2"], vec![Step::Fail(unavailable()), Step::Succeed])
            .unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    let e = ProviderId::new("e").unwrap();
    let cfg = route(
        vec![
            CandidateConfig::new(e.clone(), ModelId::new("m").unwrap()),
            CandidateConfig::new(e, ModelId::new("m2").unwrap()),
        ],
        Policy::Priority,
    );
    let table = RouteTable::new([("r".to_owned(), cfg)], []).unwrap();
    let ledger = ledger(1000).await;
    let router = Router::builder(table, prices, ledger.clone() as Arc<dyn Ledger>)
        .provider(rec.clone())
        .build();

    let out = router.generate(req()).await.unwrap();
    assert_eq!(out.target.model.as_str(), "m2");
    assert_eq!(out.attempts.len(), 2);
    let job = out.job_id.to_string();
    let seen = rec.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("m".to_owned(), "a lighthouse".to_owned(), format!("{job}:1"), 1),
            ("m2".to_owned(), "a lighthouse".to_owned(), format!("{job}:2"), 2),
        ]
    );
    // Only the successful attempt was charged: 6 CU, reserved and settled under that attempt's key.
    assert_eq!(used(&ledger).await, Decimal::from(6));

    // Generated job ids: version-7 UUIDs, all distinct, in time order at millisecond resolution.
    let mut ids = vec![uuid::Uuid::parse_str(&job).unwrap()];
    for _ in 0..50 {
        let o = router.generate(req()).await.unwrap();
        ids.push(uuid::Uuid::parse_str(o.job_id.as_str()).unwrap());
    }
    assert!(ids.iter().all(|u| u.get_version_num() == 7), "{ids:?}");
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len());
    let millis: Vec<u64> = ids
        .iter()
        .map(|u| {
            let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
            secs * 1000 + u64::from(nanos) / 1_000_000
        })
        .collect();
    assert!(millis.windows(2).all(|w| w[0] <= w[1]), "{millis:?}");
}
