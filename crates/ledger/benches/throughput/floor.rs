//! Lower bounds for the memory line: what this harness reaches with ledgers that do less than any real one.
//!
//! - `noop` answers every reserve and settle at once, touching no shared state: the cost of the clients
//!   (ids, requests), the `Ledger` trait's boxed futures and the `Hold`/`Settlement` values alone.
//! - `floor` keeps the least state that still honours this workload's contract: one mutex per ledger, the
//!   four scopes as integer counters checked against their caps, one ordered map of holds by idempotency
//!   key (UUIDv7 keys arrive nearly in order, so inserts stay at the map's right edge; a hash map measured
//!   slower) and an append-only history of fixed-size records. No periods, top-ups, refills, expiry, usage views or
//!   `Decimal` arithmetic under the lock — none of which the real backends may skip.
//!
//! - `floor-forget` is `floor` dropping each hold at settle and all but the newest records: small,
//!   cache-resident state, which no real ledger can have (a replayed key must still find its hold).
//!
//! None is a ledger: anything outside reserve, settle, create_team and set_cap answers with an error.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{Decimal, Money, TeamId};
use genroute_ledger::{
    AutoRefill, Balance, Denial, Entry, FundsBatch, HistoryFilter, Hold, HoldId, Ledger, LedgerError,
    PlanChange, ReserveRequest, Scope, ScopeKind, Settlement, TeamConfig, Usage,
};

fn unsupported() -> LedgerError {
    LedgerError::Storage {
        backend: "memory",
        message: "not part of the bench's lower bound".into(),
    }
}

/// Thousandths of a CU, as an integer (the bench's amounts have at most three decimals).
fn milli(m: &Money) -> i64 {
    let d = m.amount();
    let scaled = d.mantissa() * 10_i128.pow(3) / 10_i128.pow(d.scale());
    i64::try_from(scaled).unwrap_or(i64::MAX)
}

fn money(milli: i64) -> Money {
    Money::cu(Decimal::new(milli, 3))
}

fn settlement(hold: HoldId, held: &Money, charged: &Money, replayed: bool) -> Settlement {
    Settlement {
        hold,
        held: held.clone(),
        charged: charged.clone(),
        overrun: None,
        hold_expired: false,
        uncovered: money(0),
        replayed,
    }
}

/// Answers at once; keeps nothing.
#[derive(Default, Debug)]
pub struct Noop;

/// `impl Ledger for $ty` with the given methods; every other method answers [`unsupported`]. (The
/// attribute is inside the macro so that `async_trait` sees the expanded methods.)
macro_rules! ledger_impl {
    ($ty:ty { $($methods:tt)* }) => {
        #[async_trait]
        impl Ledger for $ty {
        $($methods)*
        async fn change_plan(&self, _: &TeamId, _: &Money, _: PlanChange) -> Result<(), LedgerError> {
            Err(unsupported())
        }
        async fn set_default_cap(&self, _: &TeamId, _: Option<&Money>) -> Result<(), LedgerError> {
            Err(unsupported())
        }
        async fn set_auto_refill(&self, _: &TeamId, _: Option<&AutoRefill>) -> Result<(), LedgerError> {
            Err(unsupported())
        }
        async fn release(&self, _: &HoldId) -> Result<(), LedgerError> {
            Err(unsupported())
        }
        async fn extend(&self, _: &HoldId, _: Duration) -> Result<Hold, LedgerError> {
            Err(unsupported())
        }
        async fn top_up(&self, _: &TeamId, _: &Money, _: DateTime<Utc>) -> Result<FundsBatch, LedgerError> {
            Err(unsupported())
        }
        async fn remove_cap(&self, _: &Scope) -> Result<(), LedgerError> {
            Err(unsupported())
        }
        async fn usage(&self, _: &Scope) -> Result<Usage, LedgerError> {
            Err(unsupported())
        }
        async fn balance(&self, _: &TeamId) -> Result<Balance, LedgerError> {
            Err(unsupported())
        }
        async fn history(&self, _: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
            Err(unsupported())
        }
        }
    };
}

ledger_impl!(Noop {
    async fn create_team(&self, _: &TeamConfig) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn set_cap(&self, _: &Scope, _: &Money) -> Result<(), LedgerError> {
        Ok(())
    }
    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, LedgerError> {
        Ok(Hold {
            id: HoldId {
                team: req.caller.team.clone(),
                key: Arc::from(req.idempotency_key.as_str()),
            },
            caller: req.caller.clone(),
            amount: req.amount.clone(),
            expires_at: Utc::now() + req.ttl,
            idempotency_key: req.idempotency_key.clone(),
            replayed: false,
        })
    }
    async fn settle(&self, hold: &HoldId, actual: &Money) -> Result<Settlement, LedgerError> {
        Ok(settlement(hold.clone(), actual, actual, false))
    }
});

/// One scope's counters, in thousandths of a CU.
#[derive(Default, Clone, Copy, Debug)]
struct Counter {
    cap: Option<i64>,
    used: i64,
    held: i64,
}

#[derive(Debug)]
struct FloorHold {
    /// Indexes into `Book::scopes` (team first).
    scopes: [usize; 4],
    amount: i64,
    charged: Option<i64>,
}

/// One history record: which hold, how much, when (ms).
#[derive(Debug)]
#[expect(
    dead_code,
    reason = "the records are the state a ledger must keep; the bench never reads them"
)]
struct Record {
    hold: Arc<str>,
    amount: i64,
    at: i64,
}

#[derive(Default, Debug)]
struct Book {
    funds: i64,
    scope_ids: HashMap<(ScopeKind, String), usize>,
    scopes: Vec<Counter>,
    holds: std::collections::BTreeMap<Arc<str>, FloorHold>,
    history: Vec<Record>,
}

impl Book {
    fn scope(&mut self, kind: ScopeKind, id: &str) -> usize {
        if let Some(&i) = self.scope_ids.get(&(kind, id.to_owned())) {
            return i;
        }
        self.scopes.push(Counter::default());
        self.scope_ids
            .insert((kind, id.to_owned()), self.scopes.len() - 1);
        self.scopes.len() - 1
    }
}

/// The least state that honours reserve/settle for this workload (see the module docs).
#[derive(Default, Debug)]
pub struct Floor {
    book: Mutex<Book>,
    /// Forget a hold (and its key) when it settles, and keep only the newest `HISTORY` records: the state
    /// then stays small and cache-resident, as no real ledger can (a replayed key must find its hold).
    forget: bool,
}

impl Floor {
    pub fn forgetting() -> Self {
        Floor {
            forget: true,
            ..Floor::default()
        }
    }
}

const HISTORY: usize = 100_000;

ledger_impl!(Floor {
    async fn create_team(&self, cfg: &TeamConfig) -> Result<(), LedgerError> {
        let mut b = self.book.lock().unwrap();
        b.funds = milli(&cfg.allowance);
        b.scope(ScopeKind::Team, "");
        Ok(())
    }

    async fn set_cap(&self, scope: &Scope, cap: &Money) -> Result<(), LedgerError> {
        let mut b = self.book.lock().unwrap();
        let i = b.scope(scope.kind(), scope.local_id());
        b.scopes[i].cap = Some(milli(cap));
        Ok(())
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, LedgerError> {
        let amount = milli(&req.amount);
        let expires_at = Utc::now() + req.ttl;
        let c = &req.caller;
        // Scope rows are looked up by borrowed keys in a real ledger; here the bench's four rows are
        // resolved once per call by kind and id, without an allocation on the hit path.
        let mut b = self.book.lock().unwrap();
        let hold = |key: Arc<str>, replayed| Hold {
            id: HoldId {
                team: c.team.clone(),
                key,
            },
            caller: c.clone(),
            amount: req.amount.clone(),
            expires_at,
            idempotency_key: req.idempotency_key.clone(),
            replayed,
        };
        // A hold is keyed by its idempotency key, so one map serves replays and settles.
        if let Some((key, _)) = b.holds.get_key_value(req.idempotency_key.as_str()) {
            return Ok(hold(key.clone(), true));
        }
        let find = |b: &Book, kind, id: Option<&str>| {
            id.and_then(|id| {
                b.scope_ids
                    .iter()
                    .find(|((k, s), _)| *k == kind && s == id)
                    .map(|(_, &i)| i)
            })
        };
        let scopes = [
            find(&b, ScopeKind::Team, Some("")).ok_or_else(unsupported)?,
            find(&b, ScopeKind::Member, c.member.as_ref().map(|m| m.as_str())).ok_or_else(unsupported)?,
            find(&b, ScopeKind::Project, c.project.as_ref().map(|p| p.as_str())).ok_or_else(unsupported)?,
            find(&b, ScopeKind::ApiKey, c.api_key.as_ref().map(|k| k.as_str())).ok_or_else(unsupported)?,
        ];
        let team = b.scopes[scopes[0]];
        let mut refusal = (team.used + team.held + amount > b.funds).then_some((scopes[0], b.funds - team.used - team.held));
        for &i in &scopes {
            let s = b.scopes[i];
            if let Some(cap) = s.cap
                && s.used + s.held + amount > cap
            {
                refusal = Some((i, cap - s.used - s.held));
            }
        }
        if let Some((_, remaining)) = refusal {
            return Err(LedgerError::Denied(Denial {
                scope: Scope::Team(c.team.clone()),
                requested: req.amount.clone(),
                remaining: money(remaining),
                cap: None,
            }));
        }
        for &i in &scopes {
            b.scopes[i].held += amount;
        }
        let key: Arc<str> = Arc::from(req.idempotency_key.as_str());
        b.holds.insert(
            key.clone(),
            FloorHold {
                scopes,
                amount,
                charged: None,
            },
        );
        b.history.push(Record {
            hold: key.clone(),
            amount,
            at: expires_at.timestamp_millis(),
        });
        Ok(hold(key, false))
    }

    async fn settle(&self, id: &HoldId, actual: &Money) -> Result<Settlement, LedgerError> {
        let charged = milli(actual);
        let at = Utc::now().timestamp_millis();
        let mut b = self.book.lock().unwrap();
        let b = &mut *b;
        let h = b
            .holds
            .get_mut(&id.key)
            .ok_or_else(|| LedgerError::UnknownHold(id.clone()))?;
        if let Some(c) = h.charged {
            return Ok(settlement(id.clone(), &money(h.amount), &money(c), true));
        }
        h.charged = Some(charged);
        for &i in &h.scopes {
            b.scopes[i].held -= h.amount;
            b.scopes[i].used += charged;
        }
        let held = h.amount;
        b.history.push(Record {
            hold: id.key.clone(),
            amount: -charged,
            at,
        });
        if self.forget {
            b.holds.remove(&id.key);
            if b.history.len() >= 2 * HISTORY {
                b.history.drain(..HISTORY);
            }
        }
        Ok(settlement(id.clone(), &money(held), actual, false))
    }

});
