//! A ledger that keeps no books, for the overhead bench only: reserve, settle and release answer at once
//! without recording anything, so `router_noledger` minus `router_memory` is the memory ledger's share of a
//! router job. Everything else is delegated to a real `MemoryLedger` (so funding calls still work).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{Money, TeamId};
use genroute_ledger::{
    AutoRefill, Balance, Entry, FundsBatch, HistoryFilter, Hold, HoldId, Ledger, LedgerError, MemoryLedger,
    PlanChange, ReserveRequest, Scope, Settlement, TeamConfig, Usage,
};

/// See the module doc. Never a real ledger: it enforces no budget.
#[derive(Debug, Default)]
pub struct NoLedger {
    inner: MemoryLedger,
    next: AtomicU64,
}

impl NoLedger {
    /// A fresh one.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Ledger for NoLedger {
    async fn create_team(&self, config: &TeamConfig) -> Result<(), LedgerError> {
        self.inner.create_team(config).await
    }

    async fn change_plan(
        &self,
        team: &TeamId,
        allowance: &Money,
        change: PlanChange,
    ) -> Result<(), LedgerError> {
        self.inner.change_plan(team, allowance, change).await
    }

    async fn set_default_cap(&self, team: &TeamId, cap: Option<&Money>) -> Result<(), LedgerError> {
        self.inner.set_default_cap(team, cap).await
    }

    async fn set_auto_refill(&self, team: &TeamId, refill: Option<&AutoRefill>) -> Result<(), LedgerError> {
        self.inner.set_auto_refill(team, refill).await
    }

    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, LedgerError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        Ok(Hold {
            id: HoldId {
                team: req.caller.team.clone(),
                key: Arc::from(n.to_string()),
            },
            caller: req.caller.clone(),
            amount: req.amount.clone(),
            expires_at: Utc::now(),
            idempotency_key: req.idempotency_key.clone(),
            replayed: false,
        })
    }

    async fn settle(&self, hold: &HoldId, actual: &Money) -> Result<Settlement, LedgerError> {
        Ok(Settlement {
            hold: hold.clone(),
            held: actual.clone(),
            charged: actual.clone(),
            overrun: None,
            hold_expired: false,
            uncovered: Money::zero(actual.currency().clone()),
            replayed: false,
        })
    }

    async fn release(&self, _hold: &HoldId) -> Result<(), LedgerError> {
        Ok(())
    }

    async fn extend(&self, hold: &HoldId, ttl: Duration) -> Result<Hold, LedgerError> {
        self.inner.extend(hold, ttl).await
    }

    async fn top_up(
        &self,
        team: &TeamId,
        amount: &Money,
        expires_at: DateTime<Utc>,
    ) -> Result<FundsBatch, LedgerError> {
        self.inner.top_up(team, amount, expires_at).await
    }

    async fn set_cap(&self, scope: &Scope, cap: &Money) -> Result<(), LedgerError> {
        self.inner.set_cap(scope, cap).await
    }

    async fn remove_cap(&self, scope: &Scope) -> Result<(), LedgerError> {
        self.inner.remove_cap(scope).await
    }

    async fn usage(&self, scope: &Scope) -> Result<Usage, LedgerError> {
        self.inner.usage(scope).await
    }

    async fn balance(&self, team: &TeamId) -> Result<Balance, LedgerError> {
        self.inner.balance(team).await
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        self.inner.history(filter).await
    }
}
