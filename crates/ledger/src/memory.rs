//! The in-memory backend: one mutex per team, nothing persisted.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{Money, TeamId};

use crate::clock::{Clock, SystemClock};
use crate::engine::{Backend, Engine, RefillHook, forward_ledger};
use crate::error::LedgerError;
use crate::logic::{Book, HashMap, Op, Out, Outcome, Retention, apply, apply_reserve, apply_settle};
use crate::types::{Entry, HistoryFilter, HoldId, ReserveRequest, TeamConfig};

#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    teams: RwLock<HashMap<TeamId, Mutex<Book>>>,
    retention: Option<Retention>,
}

fn poisoned() -> LedgerError {
    LedgerError::storage("memory", "a lock was poisoned by a panic")
}

impl MemoryBackend {
    /// Runs `f` on a team's book under its mutex. The map's read lock is held meanwhile (only
    /// `create_team` writes the map), which spares a reference count per operation.
    fn with_book<T>(&self, team: &TeamId, f: impl FnOnce(&mut Book) -> T) -> Result<T, LedgerError> {
        self.try_with_book(team, |book| Ok(f(book)))
    }

    /// [`MemoryBackend::with_book`] for an `f` that may fail: its result is returned as it is, not nested
    /// in another (unnesting copies it).
    fn try_with_book<T>(
        &self,
        team: &TeamId,
        f: impl FnOnce(&mut Book) -> Result<T, LedgerError>,
    ) -> Result<T, LedgerError> {
        let teams = self.teams.read().map_err(|_| poisoned())?;
        let book = teams
            .get(team)
            .ok_or_else(|| LedgerError::UnknownTeam(team.clone()))?;
        let mut book = book.lock().map_err(|_| poisoned())?;
        f(&mut book)
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn create(&self, cfg: &TeamConfig, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let mut book = Book::create(cfg, now, false)?;
        book.retention = self.retention;
        let mut teams = self.teams.write().map_err(|_| poisoned())?;
        if teams.contains_key(&cfg.team) {
            return Err(LedgerError::TeamExists(cfg.team.clone()));
        }
        teams.insert(cfg.team.clone(), Mutex::new(book));
        Ok(())
    }

    async fn run(&self, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError> {
        let team = op.team().clone();
        self.try_with_book(&team, |book| apply(book, op, now))
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        self.with_book(filter.scope.team(), |book| book.history(filter))
    }

    fn reserve_now(
        &self,
        req: &ReserveRequest,
        now: DateTime<Utc>,
        refill_due: Option<&mut bool>,
    ) -> Option<Result<Out, LedgerError>> {
        Some(self.try_with_book(&req.caller.team, |book| apply_reserve(book, req, now, refill_due)))
    }

    fn settle_now(
        &self,
        hold: &HoldId,
        actual: &Money,
        now: DateTime<Utc>,
        refill_due: Option<&mut bool>,
    ) -> Option<Result<Out, LedgerError>> {
        Some(self.try_with_book(&hold.team, |book| {
            apply_settle(book, hold, actual, now, refill_due)
        }))
    }
}

/// The in-memory ledger: exact and fast, for tests and single-process use. Nothing survives the process.
///
/// By default it keeps every hold (so any idempotency key can be replayed) and every history entry, so
/// its memory grows with every operation. A long-lived process bounds it with
/// [`MemoryLedger::with_retention`].
#[derive(Debug)]
pub struct MemoryLedger {
    engine: Engine<MemoryBackend>,
}

impl MemoryLedger {
    /// An empty ledger on the system clock.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty ledger on the given clock.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            engine: Engine {
                backend: MemoryBackend::default(),
                clock,
                hook: None,
            },
        }
    }

    /// Bounds what the ledger keeps, for teams created afterwards: the newest `history` entries per team,
    /// and each closed (settled, released or expired) hold for `window` after it closed. A closed hold is
    /// also kept while any of its entries is still in the history. Open holds are always kept.
    ///
    /// Once a hold is forgotten, replaying its idempotency key reserves afresh, and settling or releasing
    /// it fails with [`LedgerError::UnknownHold`]. So `window` must outlast every retry and every late
    /// settle of an attempt (an hour is generous for the router). History older than the newest
    /// `history` entries is gone.
    pub fn with_retention(mut self, history: usize, window: Duration) -> Self {
        self.engine.backend.retention = Some(Retention { history, window });
        self
    }

    /// Installs the payment step of automatic refills.
    pub fn with_refill_hook(mut self, hook: Arc<dyn RefillHook>) -> Self {
        self.engine.hook = Some(hook);
        self
    }
}

impl Default for MemoryLedger {
    fn default() -> Self {
        Self::new()
    }
}

forward_ledger!(MemoryLedger);

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::TimeZone;
    use genroute_core::{Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, ProviderId};

    use super::*;
    use crate::clock::ManualClock;
    use crate::engine::Ledger;
    use crate::types::{EntryMeta, HistoryFilter, Hold, Scope};

    fn cu(s: &str) -> Money {
        Money::cu(Decimal::from_str(s).unwrap())
    }

    fn team() -> TeamId {
        TeamId::new("t").unwrap()
    }

    async fn ledger(retention: Option<(usize, Duration)>) -> (MemoryLedger, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new(
            Utc.with_ymd_and_hms(2026, 3, 10, 9, 0, 0).unwrap(),
        ));
        let mut l = MemoryLedger::with_clock(clock.clone());
        if let Some((history, window)) = retention {
            l = l.with_retention(history, window);
        }
        let start = Utc.with_ymd_and_hms(2026, 1, 15, 0, 0, 0).unwrap();
        l.create_team(&TeamConfig::new(team(), cu("1000000"), start))
            .await
            .unwrap();
        (l, clock)
    }

    fn req(key: &str, amount: &str, ttl: Duration) -> ReserveRequest {
        ReserveRequest {
            caller: Caller::team(team()).member(MemberId::new("m").unwrap()),
            amount: cu(amount),
            idempotency_key: IdempotencyKey::new(key).unwrap(),
            ttl,
            meta: EntryMeta {
                job_id: JobId::new(key).unwrap(),
                attempt: 1,
                provider: ProviderId::new("fal").unwrap(),
                model: ModelId::new("flux").unwrap(),
            },
        }
    }

    /// `n` reserve + settle pairs (two entries each) under fresh keys.
    async fn traffic(l: &MemoryLedger, tag: &str, n: usize) {
        for i in 0..n {
            let h = l
                .reserve(&req(&format!("{tag}-{i}"), "1", Duration::from_secs(60)))
                .await
                .unwrap();
            l.settle(&h.id, &cu("1")).await.unwrap();
        }
    }

    fn held(l: &MemoryLedger) -> (usize, usize, usize) {
        let teams = l.engine.backend.teams.read().unwrap();
        let book = teams.get(&team()).unwrap().lock().unwrap();
        (book.holds.len(), book.idem.len(), book.log.len())
    }

    async fn history(l: &MemoryLedger) -> Vec<crate::types::Entry> {
        l.history(&HistoryFilter::scope(Scope::Team(team())))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn replay_inside_the_window_gives_the_same_hold() {
        let (l, clock) = ledger(Some((4, Duration::from_secs(60)))).await;
        let first = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        let settled = l.settle(&first.id, &cu("4")).await.unwrap();
        // Its entries leave the history, but the window has not passed.
        traffic(&l, "x", 10).await;
        clock.advance(Duration::from_secs(59));
        traffic(&l, "y", 1).await;
        let again: Hold = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        assert_eq!(again.id, first.id);
        assert!(again.replayed);
        let resettled = l.settle(&first.id, &cu("4")).await.unwrap();
        assert!(resettled.replayed);
        assert_eq!(resettled.charged, settled.charged);
        assert_eq!(history(&l).await.len(), 4);
    }

    #[tokio::test]
    async fn closed_holds_are_forgotten_after_the_window_and_their_history() {
        let (l, clock) = ledger(Some((4, Duration::from_secs(60)))).await;
        let first = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        l.settle(&first.id, &cu("4")).await.unwrap();
        clock.advance(Duration::from_secs(61));
        // Past the window, but still in the history: kept.
        traffic(&l, "x", 1).await;
        assert!(
            l.reserve(&req("a", "5", Duration::from_secs(300)))
                .await
                .unwrap()
                .replayed
        );
        // Out of the history too: forgotten, and the key reserves afresh.
        traffic(&l, "y", 3).await;
        let again = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        assert!(!again.replayed);
        assert_ne!(again.id, first.id);
        assert!(matches!(
            l.settle(&first.id, &cu("4")).await,
            Err(LedgerError::UnknownHold(_))
        ));
        // The fresh hold is an ordinary one.
        assert_eq!(l.settle(&again.id, &cu("5")).await.unwrap().charged, cu("5"));
    }

    #[tokio::test]
    async fn open_holds_are_never_forgotten() {
        let (l, clock) = ledger(Some((2, Duration::from_secs(1)))).await;
        let open = l
            .reserve(&req("open", "7", Duration::from_secs(3600)))
            .await
            .unwrap();
        for i in 0..5 {
            clock.advance(Duration::from_secs(10));
            traffic(&l, &format!("x{i}"), 3).await;
        }
        let usage = l.usage(&Scope::Team(team())).await.unwrap();
        assert_eq!(usage.held, cu("7"));
        let s = l.settle(&open.id, &cu("6")).await.unwrap();
        assert_eq!(s.charged, cu("6"));
        assert_eq!(l.usage(&Scope::Team(team())).await.unwrap().held, cu("0"));
    }

    #[tokio::test]
    async fn a_late_settle_inside_the_window_is_still_charged() {
        let (l, clock) = ledger(Some((2, Duration::from_secs(600)))).await;
        let h = l
            .reserve(&req("late", "5", Duration::from_secs(10)))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(20));
        traffic(&l, "x", 3).await; // expires it, and pushes its entries out of the history
        clock.advance(Duration::from_secs(60));
        let s = l.settle(&h.id, &cu("5")).await.unwrap();
        assert!(s.hold_expired);
        assert_eq!(s.overrun, Some(cu("5")));
        // 3 CU of traffic, then the late 5.
        assert_eq!(l.balance(&team()).await.unwrap().funds, cu("999992"));
    }

    #[tokio::test]
    async fn a_hold_closed_twice_is_forgotten_after_its_last_close() {
        let (l, clock) = ledger(Some((2, Duration::from_secs(60)))).await;
        let h = l
            .reserve(&req("late", "5", Duration::from_secs(10)))
            .await
            .unwrap();
        clock.advance(Duration::from_secs(20));
        traffic(&l, "x", 2).await; // expires at 20 s: forgettable from 80 s
        clock.advance(Duration::from_secs(30));
        let s = l.settle(&h.id, &cu("3")).await.unwrap(); // settled late at 50 s: from 110 s
        assert!(s.hold_expired);
        clock.advance(Duration::from_secs(40));
        traffic(&l, "y", 2).await; // 90 s: the expiry's record is due, the settle's is not
        let again = l.settle(&h.id, &cu("3")).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.charged, cu("3"));
        clock.advance(Duration::from_secs(30));
        traffic(&l, "z", 2).await; // 120 s
        assert!(matches!(
            l.settle(&h.id, &cu("3")).await,
            Err(LedgerError::UnknownHold(_))
        ));
    }

    #[tokio::test]
    async fn memory_stays_bounded_and_history_is_the_newest_entries() {
        let (bounded, clock) = ledger(Some((50, Duration::from_secs(5)))).await;
        let (full, full_clock) = ledger(None).await;
        for round in 0..20 {
            for l in [&bounded, &full] {
                traffic(l, &format!("r{round}"), 25).await;
            }
            clock.advance(Duration::from_secs(1));
            full_clock.advance(Duration::from_secs(1));
            let (holds, idems, log) = held(&bounded);
            assert!(log <= 50, "history {log}");
            // At most the window's worth of closed holds (5 s × 25 per second) plus those in the history.
            assert!(
                holds <= 6 * 25 + 50 && idems == holds,
                "holds {holds}, keys {idems}"
            );
        }
        let (holds, _, log) = held(&full);
        assert_eq!((holds, log), (500, 1001));
        // The bounded history is the tail of the full one (hold keys differ between the two ledgers).
        let strip = |es: &[crate::types::Entry]| -> Vec<_> {
            es.iter()
                .map(|e| (e.kind, e.amount.clone(), e.meta.clone(), e.at, e.caller.clone()))
                .collect()
        };
        let all = history(&full).await;
        assert_eq!(strip(&history(&bounded).await), strip(&all[all.len() - 50..]));
        // Balances agree: retention forgets records, never charges.
        assert_eq!(
            bounded.balance(&team()).await.unwrap(),
            full.balance(&team()).await.unwrap()
        );
    }

    #[tokio::test]
    async fn without_retention_everything_is_kept() {
        let (l, clock) = ledger(None).await;
        let first = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        l.settle(&first.id, &cu("4")).await.unwrap();
        clock.advance(Duration::from_secs(86_400 * 3));
        traffic(&l, "x", 100).await;
        let again = l.reserve(&req("a", "5", Duration::from_secs(300))).await.unwrap();
        assert!(again.replayed);
        assert_eq!(again.id, first.id);
        assert_eq!(history(&l).await.len(), 1 + 2 + 200);
    }
}
