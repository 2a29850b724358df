//! The behaviour suite: every scenario runs against every backend (see `behaviour.rs`).
#![allow(dead_code)]

use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use genroute_ledger::{
    AutoRefill, EntryKind, EntryMeta, FundsKind, HistoryFilter, HoldState, Ledger, LedgerError, ManualClock,
    RefillHook, ReserveRequest, Scope, TeamConfig, UsageStatus,
};

pub type Made = Pin<Box<dyn Future<Output = Option<Arc<dyn Ledger>>> + Send>>;

/// Builds a fresh, empty ledger of one backend (each call its own file / schema), or `None` to skip.
pub trait Maker: Send + Sync {
    fn make(&self, clock: Arc<ManualClock>, hook: Option<Arc<dyn RefillHook>>) -> Made;
}

impl<F> Maker for F
where
    F: Fn(Arc<ManualClock>, Option<Arc<dyn RefillHook>>) -> Made + Send + Sync,
{
    fn make(&self, clock: Arc<ManualClock>, hook: Option<Arc<dyn RefillHook>>) -> Made {
        self(clock, hook)
    }
}

pub fn cu(s: &str) -> Money {
    Money::cu(Decimal::from_str(s).unwrap())
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 12, 0, 0).unwrap()
}

pub fn team(s: &str) -> TeamId {
    TeamId::new(s).unwrap()
}

pub fn member(t: &str, m: &str) -> Scope {
    Scope::Member(team(t), MemberId::new(m).unwrap())
}

pub fn project(t: &str, p: &str) -> Scope {
    Scope::Project(team(t), ProjectId::new(p).unwrap())
}

pub fn key(t: &str, k: &str) -> Scope {
    Scope::ApiKey(team(t), ApiKeyId::new(k).unwrap())
}

/// A caller with all four scopes: team t, member alice, project p1, key k1.
pub fn full_caller(t: &str) -> Caller {
    Caller::team(team(t))
        .member(MemberId::new("alice").unwrap())
        .project(ProjectId::new("p1").unwrap())
        .api_key(ApiKeyId::new("k1").unwrap())
}

pub fn meta(job: &str, attempt: u32) -> EntryMeta {
    EntryMeta {
        job_id: JobId::new(job).unwrap(),
        attempt,
        provider: ProviderId::new("fal").unwrap(),
        model: ModelId::new("flux").unwrap(),
    }
}

pub fn req(caller: &Caller, amount: &str, idem: &str) -> ReserveRequest {
    ReserveRequest {
        caller: caller.clone(),
        amount: cu(amount),
        idempotency_key: IdempotencyKey::new(idem).unwrap(),
        ttl: Duration::from_secs(60),
        meta: meta(&format!("job-{idem}"), 1),
    }
}

pub async fn setup(m: &dyn Maker, allowance: &str) -> Option<(Arc<dyn Ledger>, Arc<ManualClock>)> {
    setup_with(m, allowance, None).await
}

pub async fn setup_with(
    m: &dyn Maker,
    allowance: &str,
    hook: Option<Arc<dyn RefillHook>>,
) -> Option<(Arc<dyn Ledger>, Arc<ManualClock>)> {
    let clock = Arc::new(ManualClock::new(t0()));
    let ledger = m.make(clock.clone(), hook).await?;
    ledger
        .create_team(&TeamConfig::new(team("t"), cu(allowance), t0()))
        .await
        .unwrap();
    Some((ledger, clock))
}

fn denied(e: LedgerError) -> genroute_ledger::Denial {
    match e {
        LedgerError::Denied(d) => d,
        other => panic!("expected a denial, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------------

pub async fn reserve_settle_touches_every_scope(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "40", "a")).await.unwrap();
    assert!(!h.replayed);
    for s in [
        Scope::Team(team("t")),
        member("t", "alice"),
        project("t", "p1"),
        key("t", "k1"),
    ] {
        let u = l.usage(&s).await.unwrap();
        assert_eq!(u.held, cu("40"), "{s}");
        assert_eq!(u.used, cu("0"), "{s}");
    }
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("960"));
    let s = l.settle(&h.id, &cu("25.5")).await.unwrap();
    assert_eq!(s.charged, cu("25.5"));
    assert_eq!(s.overrun, None);
    for sc in [
        Scope::Team(team("t")),
        member("t", "alice"),
        project("t", "p1"),
        key("t", "k1"),
    ] {
        let u = l.usage(&sc).await.unwrap();
        assert_eq!(u.held, cu("0"), "{sc}");
        assert_eq!(u.used, cu("25.5"), "{sc}");
    }
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.available, cu("974.5"));
    assert_eq!(b.funds, cu("974.5"));
    let hist = l
        .history(&HistoryFilter::scope(member("t", "alice")))
        .await
        .unwrap();
    let kinds: Vec<EntryKind> = hist.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EntryKind::Reserve, EntryKind::Settle]);
    assert_eq!(hist[1].amount, cu("25.5"));
    let m = hist[1].meta.as_ref().unwrap();
    assert_eq!(
        (m.job_id.as_str(), m.attempt, m.provider.as_str()),
        ("job-a", 1, "fal")
    );
    // A member never involved has no entries; the team sees its allowance grant too.
    assert!(
        l.history(&HistoryFilter::scope(member("t", "bob")))
            .await
            .unwrap()
            .is_empty()
    );
    let team_hist = l
        .history(&HistoryFilter::scope(Scope::Team(team("t"))))
        .await
        .unwrap();
    assert_eq!(team_hist[0].kind, EntryKind::Allowance);
    assert_eq!(team_hist.len(), 3);
}

pub async fn denial_names_scope_and_holds_nothing(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    l.set_cap(&project("t", "p1"), &cu("30")).await.unwrap();
    let c = full_caller("t");
    l.reserve(&req(&c, "20", "a")).await.unwrap();
    let d = denied(l.reserve(&req(&c, "15", "b")).await.unwrap_err());
    assert_eq!(d.scope, project("t", "p1"));
    assert_eq!(d.requested, cu("15"));
    assert_eq!(d.remaining, cu("10"));
    assert_eq!(d.cap, Some(cu("30")));
    // All-or-nothing: no scope holds the refused 15.
    for s in [
        Scope::Team(team("t")),
        member("t", "alice"),
        project("t", "p1"),
        key("t", "k1"),
    ] {
        assert_eq!(l.usage(&s).await.unwrap().held, cu("20"), "{s}");
    }
    // The pool refuses when the team runs dry.
    let other = Caller::team(team("t")).member(MemberId::new("bob").unwrap());
    let d = denied(l.reserve(&req(&other, "990", "c")).await.unwrap_err());
    assert_eq!(d.scope, Scope::Team(team("t")));
    assert_eq!(d.remaining, cu("980"));
    assert_eq!(d.cap, None);
    // Denials leave no history.
    let kinds: Vec<_> = l
        .history(&HistoryFilter::scope(Scope::Team(team("t"))))
        .await
        .unwrap()
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec![EntryKind::Allowance, EntryKind::Reserve]);
}

/// 64 concurrent tasks against one cap: admitted × amount ≤ cap and admitted = ⌊cap / amount⌋.
pub async fn concurrent_reservations_fill_cap_exactly(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "100000").await else {
        return;
    };
    l.set_cap(&member("t", "alice"), &cu("1000")).await.unwrap();
    let c = full_caller("t");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let l = l.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut admitted = 0u32;
            for j in 0..4 {
                match l.reserve(&req(&c, "7", &format!("k{i}-{j}"))).await {
                    Ok(_) => admitted += 1,
                    Err(LedgerError::Denied(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            admitted
        }));
    }
    let mut admitted = 0;
    for t in tasks {
        admitted += t.await.unwrap();
    }
    assert_eq!(admitted, 1000 / 7, "admitted = floor(cap / amount)");
    assert!(Decimal::from(admitted * 7) <= Decimal::from(1000));
    let u = l.usage(&member("t", "alice")).await.unwrap();
    assert_eq!(u.held, cu(&(admitted * 7).to_string()));
    assert_eq!(l.usage(&Scope::Team(team("t"))).await.unwrap().held, u.held);
}

pub async fn idempotent_replay(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    let c = full_caller("t");
    let a = l.reserve(&req(&c, "10", "same")).await.unwrap();
    let b = l.reserve(&req(&c, "10", "same")).await.unwrap();
    assert_eq!(a.id, b.id);
    assert!(b.replayed);
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().held, cu("10"));
    let e = l.reserve(&req(&c, "11", "same")).await.unwrap_err();
    assert!(matches!(e, LedgerError::IdempotencyConflict { .. }), "{e:?}");
    let s1 = l.settle(&a.id, &cu("8")).await.unwrap();
    let s2 = l.settle(&a.id, &cu("8")).await.unwrap();
    assert!(!s1.replayed && s2.replayed);
    assert_eq!(s1.charged, s2.charged);
    let e = l.settle(&a.id, &cu("9")).await.unwrap_err();
    assert!(matches!(e, LedgerError::SettleConflict { .. }), "{e:?}");
    // Replaying the reservation after settlement charges nothing more.
    let again = l.reserve(&req(&c, "10", "same")).await.unwrap();
    assert_eq!(again.id, a.id);
    let u = l.usage(&member("t", "alice")).await.unwrap();
    assert_eq!((u.used, u.held), (cu("8"), cu("0")));
    let hist = l
        .history(&HistoryFilter::scope(member("t", "alice")))
        .await
        .unwrap();
    assert_eq!(hist.len(), 2, "one reserve, one settle: {hist:?}");
}

pub async fn period_rollover_renews_without_rollover(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "1000").await else {
        return;
    };
    let c = full_caller("t");
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(
        b.period_start,
        Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap()
    );
    assert_eq!(b.resets_at, Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    let h = l.reserve(&req(&c, "300", "a")).await.unwrap();
    l.settle(&h.id, &cu("300")).await.unwrap();
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("700"));
    clock.set(Utc.with_ymd_and_hms(2026, 2, 14, 23, 59, 59).unwrap());
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().used, cu("300"));
    clock.set(Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.available, cu("1000"), "no rollover of the unused 700");
    assert_eq!(b.resets_at, Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).unwrap());
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().used, cu("0"));
    let hist = l
        .history(&HistoryFilter::scope(Scope::Team(team("t"))))
        .await
        .unwrap();
    let expire = hist.iter().find(|e| e.kind == EntryKind::Expire).unwrap();
    assert_eq!(expire.amount, cu("700"));
    assert_eq!(hist.iter().filter(|e| e.kind == EntryKind::Allowance).count(), 2);
    // Several periods skipped at once land in the right one.
    clock.set(Utc.with_ymd_and_hms(2026, 6, 20, 0, 0, 0).unwrap());
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(
        b.period_start,
        Utc.with_ymd_and_hms(2026, 6, 15, 0, 0, 0).unwrap()
    );
    assert_eq!(b.available, cu("1000"));
}

pub async fn day_31_anchoring(m: &dyn Maker) {
    let clock = Arc::new(ManualClock::new(
        Utc.with_ymd_and_hms(2026, 1, 31, 9, 0, 0).unwrap(),
    ));
    let Some(l) = m.make(clock.clone(), None).await else {
        return;
    };
    l.create_team(&TeamConfig::new(team("t"), cu("100"), clock.now_pub()))
        .await
        .unwrap();
    let at = |m, d| Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap();
    assert_eq!(l.balance(&team("t")).await.unwrap().resets_at, at(2, 28));
    clock.set(at(2, 28));
    assert_eq!(l.balance(&team("t")).await.unwrap().resets_at, at(3, 31));
    clock.set(at(3, 31));
    assert_eq!(l.balance(&team("t")).await.unwrap().resets_at, at(4, 30));
    clock.set(at(4, 30));
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!((b.period_start, b.resets_at), (at(4, 30), at(5, 31)));
}

pub trait NowPub {
    fn now_pub(&self) -> DateTime<Utc>;
}
impl NowPub for ManualClock {
    fn now_pub(&self) -> DateTime<Utc> {
        genroute_ledger::Clock::now(self)
    }
}

pub async fn upgrade_restarts_period(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "1000").await else {
        return;
    };
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "400", "a")).await.unwrap();
    l.settle(&h.id, &cu("400")).await.unwrap();
    clock.set(Utc.with_ymd_and_hms(2026, 1, 20, 10, 0, 0).unwrap());
    l.upgrade(&team("t"), &cu("5000")).await.unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(
        b.period_start,
        Utc.with_ymd_and_hms(2026, 1, 20, 10, 0, 0).unwrap()
    );
    assert_eq!(b.resets_at, Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap());
    assert_eq!(b.plan_allowance, cu("5000"));
    assert_eq!(b.available, cu("5000"));
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().used, cu("0"));
    // The reset day moved: the old day (15th) no longer resets.
    clock.set(Utc.with_ymd_and_hms(2026, 2, 16, 0, 0, 0).unwrap());
    let h = l.reserve(&req(&c, "100", "b")).await.unwrap();
    l.settle(&h.id, &cu("100")).await.unwrap();
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("4900"));
    clock.set(Utc.with_ymd_and_hms(2026, 2, 20, 0, 0, 0).unwrap());
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("5000"));
}

pub async fn downgrade_waits_for_reset(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "1000").await else {
        return;
    };
    clock.set(Utc.with_ymd_and_hms(2026, 1, 20, 0, 0, 0).unwrap());
    l.downgrade(&team("t"), &cu("200")).await.unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.plan_allowance, cu("1000"));
    assert_eq!(b.pending_allowance, Some(cu("200")));
    assert_eq!(b.available, cu("1000"), "the current period keeps what it has");
    assert_eq!(b.resets_at, Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    clock.set(Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.plan_allowance, cu("200"));
    assert_eq!(b.pending_allowance, None);
    assert_eq!(b.available, cu("200"));
    assert_eq!(b.resets_at, Utc.with_ymd_and_hms(2026, 3, 15, 0, 0, 0).unwrap());
}

pub async fn spend_draws_earliest_expiring_first(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "100").await else {
        return;
    };
    // Plan allowance expires at the period end, 2026-02-15.
    let late = l
        .top_up(
            &team("t"),
            &cu("50"),
            Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap(),
        )
        .await
        .unwrap();
    let early = l
        .top_up(
            &team("t"),
            &cu("30"),
            Utc.with_ymd_and_hms(2026, 2, 1, 0, 0, 0).unwrap(),
        )
        .await
        .unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.available, cu("180"));
    let order: Vec<_> = b.batches.iter().map(|x| x.id.clone()).collect();
    assert_eq!(order[0], early.id);
    assert_eq!(b.batches[1].kind, FundsKind::Plan);
    assert_eq!(order[2], late.id);
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "60", "a")).await.unwrap();
    l.settle(&h.id, &cu("60")).await.unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    // 30 from the early top-up (now empty, gone), 30 from the plan; the late top-up untouched.
    assert_eq!(b.batches.len(), 2);
    assert_eq!(b.batches[0].kind, FundsKind::Plan);
    assert_eq!(b.batches[0].remaining, cu("70"));
    assert_eq!(b.batches[1].remaining, cu("50"));
    let h = l.reserve(&req(&c, "90", "b")).await.unwrap();
    l.settle(&h.id, &cu("90")).await.unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.batches.len(), 1);
    assert_eq!(b.batches[0].id, late.id);
    assert_eq!(b.batches[0].remaining, cu("30"));
}

pub async fn funds_vanish_at_expiry(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "100").await else {
        return;
    };
    let exp = Utc.with_ymd_and_hms(2026, 1, 20, 0, 0, 0).unwrap();
    let b = l.top_up(&team("t"), &cu("500"), exp).await.unwrap();
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("600"));
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "50", "a")).await.unwrap();
    l.settle(&h.id, &cu("50")).await.unwrap(); // from the top-up (expires first)
    clock.set(exp);
    let bal = l.balance(&team("t")).await.unwrap();
    assert_eq!(bal.available, cu("100"));
    assert!(bal.batches.iter().all(|x| x.id != b.id));
    let hist = l
        .history(&HistoryFilter::scope(Scope::Team(team("t"))))
        .await
        .unwrap();
    let e = hist
        .iter()
        .find(|e| e.kind == EntryKind::Expire && e.batch.as_deref() == Some(b.id.as_str()))
        .unwrap();
    assert_eq!(e.amount, cu("450"));
    assert_eq!(e.at, exp);
    // Expired-on-arrival top-ups are refused.
    assert!(matches!(
        l.top_up(&team("t"), &cu("1"), exp).await.unwrap_err(),
        LedgerError::Invalid(_)
    ));
}

#[derive(Debug, Default)]
pub struct CountingHook {
    pub calls: AtomicU32,
    pub decline: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl RefillHook for CountingHook {
    async fn refill(&self, _team: &TeamId, amount: &Money) -> Result<(), String> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        assert_eq!(amount, &cu("500"));
        if self.decline.load(Ordering::SeqCst) {
            Err("card declined".to_owned())
        } else {
            Ok(())
        }
    }
}

pub async fn auto_refill_respects_threshold_and_limit(m: &dyn Maker) {
    let hook = Arc::new(CountingHook::default());
    let Some((l, clock)) = setup_with(m, "1000", Some(hook.clone())).await else {
        return;
    };
    let refill = AutoRefill {
        threshold: cu("200"),
        amount: cu("500"),
        max_per_period: 2,
        valid_for: Duration::from_secs(365 * 86400),
    };
    l.set_auto_refill(&team("t"), Some(&refill)).await.unwrap();
    let c = full_caller("t");
    let spend = |k: &'static str, a: &'static str| {
        let l = l.clone();
        let c = c.clone();
        async move {
            let h = l.reserve(&req(&c, a, k)).await.unwrap();
            l.settle(&h.id, &cu(a)).await.unwrap();
        }
    };
    spend("a", "700").await; // 300 left: above the threshold
    assert_eq!(hook.calls.load(Ordering::SeqCst), 0);
    spend("b", "150").await; // 150 left: refill → 650
    assert_eq!(hook.calls.load(Ordering::SeqCst), 1);
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!((b.available.clone(), b.refills_this_period), (cu("650"), 1));
    assert!(b.batches.iter().any(|x| x.kind == FundsKind::Refill));
    spend("c", "500").await; // 150 → refill → 650
    spend("d", "500").await; // 150, limit reached: no refill
    assert_eq!(hook.calls.load(Ordering::SeqCst), 2);
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("150"));
    // A reservation the pool cannot cover is denied (no refill left this period).
    assert!(matches!(
        l.reserve(&req(&c, "400", "e")).await,
        Err(LedgerError::Denied(_))
    ));
    let hist = l
        .history(&HistoryFilter::scope(Scope::Team(team("t"))))
        .await
        .unwrap();
    assert_eq!(hist.iter().filter(|e| e.kind == EntryKind::Refill).count(), 2);
    // Next period: the counter resets; a declined payment adds nothing and gives the slot back.
    clock.set(Utc.with_ymd_and_hms(2026, 2, 15, 0, 0, 0).unwrap());
    hook.decline.store(true, Ordering::SeqCst);
    // 1150 (new plan + what is left of the 2nd refill) − 1000 = 150: below the threshold. The declined
    // hook is asked again at the next operation below it (reserve, then settle).
    spend("f", "1000").await;
    assert_eq!(hook.calls.load(Ordering::SeqCst), 4);
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!(b.refills_this_period, 0);
    hook.decline.store(false, Ordering::SeqCst);
    // Denied by the pool → refill, then the retry succeeds.
    let h = l.reserve(&req(&c, "400", "g")).await.unwrap();
    assert_eq!(hook.calls.load(Ordering::SeqCst), 5);
    assert_eq!(h.amount, cu("400"));
}

pub async fn default_caps_apply_to_members_and_keys(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    l.set_default_cap(&team("t"), Some(&cu("50"))).await.unwrap();
    l.set_cap(&member("t", "bob"), &cu("80")).await.unwrap();
    let u = l.usage(&member("t", "alice")).await.unwrap();
    assert_eq!((u.cap, u.cap_is_default), (Some(cu("50")), true));
    assert_eq!(u.remaining, cu("50"));
    let u = l.usage(&member("t", "bob")).await.unwrap();
    assert_eq!((u.cap, u.cap_is_default), (Some(cu("80")), false));
    assert_eq!(
        l.usage(&project("t", "p1")).await.unwrap().cap,
        None,
        "projects have no default cap"
    );
    let alice = Caller::team(team("t")).member(MemberId::new("alice").unwrap());
    let d = denied(l.reserve(&req(&alice, "60", "a")).await.unwrap_err());
    assert_eq!(d.scope, member("t", "alice"));
    let bob = Caller::team(team("t")).member(MemberId::new("bob").unwrap());
    l.reserve(&req(&bob, "60", "b")).await.unwrap();
    let keyed = Caller::team(team("t")).api_key(ApiKeyId::new("k9").unwrap());
    let d = denied(l.reserve(&req(&keyed, "51", "c")).await.unwrap_err());
    assert_eq!(d.scope, key("t", "k9"));
    // Caps restrict, never grant: a cap above the pool grants nothing beyond the pool.
    l.set_cap(&member("t", "carol"), &cu("5000")).await.unwrap();
    let carol = Caller::team(team("t")).member(MemberId::new("carol").unwrap());
    let d = denied(l.reserve(&req(&carol, "1000", "d")).await.unwrap_err());
    assert_eq!(d.scope, Scope::Team(team("t")));
    assert_eq!(l.usage(&member("t", "carol")).await.unwrap().remaining, cu("940"));
    // Removing bob's own cap falls back to the default.
    l.remove_cap(&member("t", "bob")).await.unwrap();
    let u = l.usage(&member("t", "bob")).await.unwrap();
    assert_eq!(
        (u.cap, u.remaining, u.status),
        (Some(cu("50")), cu("0"), UsageStatus::Red)
    );
    l.set_default_cap(&team("t"), None).await.unwrap();
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().cap, None);
}

pub async fn usage_status_amber_and_red(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    l.set_cap(&member("t", "alice"), &cu("100")).await.unwrap();
    let c = Caller::team(team("t")).member(MemberId::new("alice").unwrap());
    let h = l.reserve(&req(&c, "79", "a")).await.unwrap();
    l.settle(&h.id, &cu("79")).await.unwrap();
    assert_eq!(
        l.usage(&member("t", "alice")).await.unwrap().status,
        UsageStatus::Ok
    );
    let h = l.reserve(&req(&c, "1", "b")).await.unwrap();
    // Held counts: 80 committed.
    assert_eq!(
        l.usage(&member("t", "alice")).await.unwrap().status,
        UsageStatus::Amber
    );
    l.settle(&h.id, &cu("1")).await.unwrap();
    let h = l.reserve(&req(&c, "20", "c")).await.unwrap();
    l.settle(&h.id, &cu("20")).await.unwrap();
    let u = l.usage(&member("t", "alice")).await.unwrap();
    assert_eq!((u.status, u.remaining.clone()), (UsageStatus::Red, cu("0")));
    // The team pool: 100 used of 1000 → ok; uncapped members show the team's status.
    assert_eq!(
        l.usage(&Scope::Team(team("t"))).await.unwrap().status,
        UsageStatus::Ok
    );
    let bob = Caller::team(team("t")).member(MemberId::new("bob").unwrap());
    let h = l.reserve(&req(&bob, "750", "d")).await.unwrap();
    l.settle(&h.id, &cu("750")).await.unwrap();
    assert_eq!(
        l.usage(&Scope::Team(team("t"))).await.unwrap().status,
        UsageStatus::Amber
    );
    assert_eq!(
        l.usage(&member("t", "bob")).await.unwrap().status,
        UsageStatus::Amber
    );
}

pub async fn overrun_is_recorded_and_flagged(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "100").await else {
        return;
    };
    let c = full_caller("t");
    l.set_cap(&member("t", "alice"), &cu("20")).await.unwrap();
    let h = l.reserve(&req(&c, "10", "a")).await.unwrap();
    let s = l.settle(&h.id, &cu("25")).await.unwrap();
    assert_eq!(s.overrun, Some(cu("15")));
    assert!(!s.hold_expired);
    let u = l.usage(&member("t", "alice")).await.unwrap();
    assert_eq!(
        (u.used.clone(), u.status),
        (cu("25"), UsageStatus::Red),
        "beyond the cap, recorded"
    );
    let hist = l
        .history(&HistoryFilter::scope(member("t", "alice")))
        .await
        .unwrap();
    let o = hist.iter().find(|e| e.kind == EntryKind::Overrun).unwrap();
    assert_eq!(o.amount, cu("15"));
    // A bill beyond the pool overdraws the team; the next funds repay it.
    let bob = Caller::team(team("t")).member(MemberId::new("bob").unwrap());
    let h = l.reserve(&req(&bob, "75", "b")).await.unwrap();
    let s = l.settle(&h.id, &cu("90")).await.unwrap();
    assert_eq!(s.uncovered, cu("15"));
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!((b.overdraft.clone(), b.available.clone()), (cu("15"), cu("0")));
    l.top_up(
        &team("t"),
        &cu("40"),
        Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
    )
    .await
    .unwrap();
    let b = l.balance(&team("t")).await.unwrap();
    assert_eq!((b.overdraft, b.available), (cu("0"), cu("25")));
    // A charge on an expired hold is recorded in full as overrun.
    let h = l.reserve(&req(&bob, "5", "c")).await.unwrap();
    clock.advance(Duration::from_secs(61));
    assert_eq!(l.usage(&member("t", "bob")).await.unwrap().held, cu("0"));
    let s = l.settle(&h.id, &cu("5")).await.unwrap();
    assert!(s.hold_expired);
    assert_eq!(s.overrun, Some(cu("5")));
    assert_eq!(l.usage(&member("t", "bob")).await.unwrap().used, cu("95"));
}

pub async fn holds_expire_after_ttl_and_extend(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "100").await else {
        return;
    };
    let c = full_caller("t");
    let a = l.reserve(&req(&c, "30", "a")).await.unwrap();
    let b = l.reserve(&req(&c, "20", "b")).await.unwrap();
    clock.advance(Duration::from_secs(50));
    let b2 = l.extend(&b.id, Duration::from_secs(60)).await.unwrap();
    assert!(b2.expires_at > b.expires_at);
    clock.advance(Duration::from_secs(11)); // a is 61 s old: expired; b was extended
    let u = l.usage(&Scope::Team(team("t"))).await.unwrap();
    assert_eq!(u.held, cu("20"));
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("80"));
    assert!(matches!(
        l.extend(&a.id, Duration::from_secs(5)).await.unwrap_err(),
        LedgerError::HoldClosed {
            state: HoldState::Expired,
            ..
        }
    ));
    l.release(&a.id).await.unwrap(); // no-op
    let hist = l
        .history(&HistoryFilter::scope(member("t", "alice")))
        .await
        .unwrap();
    let exp: Vec<_> = hist.iter().filter(|e| e.kind == EntryKind::Expire).collect();
    assert_eq!(exp.len(), 1);
    assert_eq!(exp[0].hold.as_ref(), Some(&a.id));
    assert_eq!(exp[0].amount, cu("30"));
    clock.advance(Duration::from_secs(60));
    assert_eq!(l.usage(&member("t", "alice")).await.unwrap().held, cu("0"));
}

pub async fn release_frees_and_closes(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "100").await else {
        return;
    };
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "30", "a")).await.unwrap();
    l.release(&h.id).await.unwrap();
    l.release(&h.id).await.unwrap();
    assert_eq!(l.usage(&key("t", "k1")).await.unwrap().held, cu("0"));
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("100"));
    assert!(matches!(
        l.settle(&h.id, &cu("1")).await.unwrap_err(),
        LedgerError::HoldClosed {
            state: HoldState::Released,
            ..
        }
    ));
    let h2 = l.reserve(&req(&c, "30", "b")).await.unwrap();
    l.settle(&h2.id, &cu("30")).await.unwrap();
    assert!(matches!(
        l.release(&h2.id).await.unwrap_err(),
        LedgerError::HoldClosed {
            state: HoldState::Settled,
            ..
        }
    ));
    let bogus = genroute_ledger::HoldId {
        team: team("t"),
        key: Arc::from("nope"),
    };
    assert!(matches!(
        l.settle(&bogus, &cu("1")).await.unwrap_err(),
        LedgerError::UnknownHold(_)
    ));
}

pub async fn amounts_must_be_cu_and_teams_known(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "100").await else {
        return;
    };
    let c = full_caller("t");
    let mut r = req(&c, "1", "a");
    r.amount = Money::usd(Decimal::ONE);
    assert!(matches!(l.reserve(&r).await.unwrap_err(), LedgerError::NotCu(_)));
    assert!(matches!(
        l.reserve(&req(&c, "-1", "b")).await.unwrap_err(),
        LedgerError::Negative(_)
    ));
    assert!(matches!(
        l.set_cap(&member("t", "x"), &Money::usd(Decimal::ONE))
            .await
            .unwrap_err(),
        LedgerError::NotCu(_)
    ));
    let stranger = full_caller("nobody");
    assert!(matches!(
        l.reserve(&req(&stranger, "1", "c")).await.unwrap_err(),
        LedgerError::UnknownTeam(_)
    ));
    assert!(matches!(
        l.create_team(&TeamConfig::new(team("t"), cu("1"), t0()))
            .await
            .unwrap_err(),
        LedgerError::TeamExists(_)
    ));
    // Exact decimals survive storage.
    let h = l.reserve(&req(&c, "0.0001", "d")).await.unwrap();
    l.settle(&h.id, &cu("0.00005")).await.unwrap();
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("99.99995"));
}

pub async fn team_cap_limits_period_spend(m: &dyn Maker) {
    let Some((l, _)) = setup(m, "1000").await else {
        return;
    };
    l.set_cap(&Scope::Team(team("t")), &cu("100")).await.unwrap();
    let c = full_caller("t");
    l.reserve(&req(&c, "90", "a")).await.unwrap();
    let d = denied(l.reserve(&req(&c, "20", "b")).await.unwrap_err());
    assert_eq!((d.scope, d.remaining), (Scope::Team(team("t")), cu("10")));
}

/// An administrative operation on one scope still settles what time made due (expired holds) on every
/// scope, the team's included.
pub async fn maintenance_inside_admin_ops_keeps_counters(m: &dyn Maker) {
    let Some((l, clock)) = setup(m, "1000").await else {
        return;
    };
    let c = full_caller("t");
    let h = l.reserve(&req(&c, "30", "a")).await.unwrap();
    l.settle(&h.id, &cu("10")).await.unwrap();
    l.reserve(&req(&c, "25", "b")).await.unwrap();
    clock.advance(Duration::from_secs(61));
    // The first operation after the TTL is a cap change on a member: it expires the hold everywhere.
    l.set_cap(&member("t", "zed"), &cu("5")).await.unwrap();
    for s in [
        Scope::Team(team("t")),
        member("t", "alice"),
        project("t", "p1"),
        key("t", "k1"),
    ] {
        let u = l.usage(&s).await.unwrap();
        assert_eq!((u.used, u.held), (cu("10"), cu("0")), "{s}");
    }
    assert_eq!(l.balance(&team("t")).await.unwrap().available, cu("990"));
}
