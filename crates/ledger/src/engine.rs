//! The [`Ledger`] trait and the engine every backend shares (clock, auto-refill, argument checks).

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{Money, TeamId};

use crate::clock::Clock;
use crate::error::{Denial, LedgerError};
use crate::logic::{Op, Out, Outcome};
use crate::types::{
    AutoRefill, Balance, Entry, FundsBatch, HistoryFilter, Hold, HoldId, PlanChange, ReserveRequest, Scope,
    ScopeKind, Settlement, TeamConfig, Usage,
};

/// The CU budget as the router and administrators use it.
///
/// Every method is atomic: it takes effect entirely or not at all. Time comes from the ledger's
/// [`Clock`]; holds past their TTL, funds past their expiry and finished billing periods are settled
/// lazily, before any operation on their team.
#[async_trait]
pub trait Ledger: Send + Sync + Debug {
    /// Creates a team with its plan; its first period starts on the last reset at or before now.
    async fn create_team(&self, config: &TeamConfig) -> Result<(), LedgerError>;
    /// Changes the plan allowance: an upgrade restarts the period now, a downgrade waits for the reset.
    async fn change_plan(
        &self,
        team: &TeamId,
        allowance: &Money,
        change: PlanChange,
    ) -> Result<(), LedgerError>;
    /// Upgrades the plan: the period restarts today with the new allowance in full.
    async fn upgrade(&self, team: &TeamId, allowance: &Money) -> Result<(), LedgerError> {
        self.change_plan(team, allowance, PlanChange::Upgrade).await
    }
    /// Downgrades the plan from the next reset.
    async fn downgrade(&self, team: &TeamId, allowance: &Money) -> Result<(), LedgerError> {
        self.change_plan(team, allowance, PlanChange::Downgrade).await
    }
    /// Sets (or with `None` removes) the cap for members and API keys without their own.
    async fn set_default_cap(&self, team: &TeamId, cap: Option<&Money>) -> Result<(), LedgerError>;
    /// Sets (or with `None` disables) automatic refill.
    async fn set_auto_refill(&self, team: &TeamId, refill: Option<&AutoRefill>) -> Result<(), LedgerError>;

    /// Holds `amount` on every scope of the caller at once, or on none (then [`LedgerError::Denied`]
    /// names the scope that refused). Replaying an idempotency key returns the first hold.
    async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, LedgerError>;
    /// Charges a hold `actual` and frees the rest. A charge larger than the hold, or on a hold that had
    /// expired, is recorded and flagged as overrun, never refused. Replaying the same amount is a no-op.
    async fn settle(&self, hold: &HoldId, actual: &Money) -> Result<Settlement, LedgerError>;
    /// Frees a hold unused (a no-op when already released or expired).
    async fn release(&self, hold: &HoldId) -> Result<(), LedgerError>;
    /// Moves an open hold's expiry to now + `ttl`.
    async fn extend(&self, hold: &HoldId, ttl: Duration) -> Result<Hold, LedgerError>;
    /// Adds a purchased batch of funds that expires at `expires_at`.
    async fn top_up(
        &self,
        team: &TeamId,
        amount: &Money,
        expires_at: DateTime<Utc>,
    ) -> Result<FundsBatch, LedgerError>;
    /// Caps a scope (the team itself included: a team cap limits the period's spend below its funds).
    async fn set_cap(&self, scope: &Scope, cap: &Money) -> Result<(), LedgerError>;
    /// Removes a scope's own cap (a member or key falls back to the default cap).
    async fn remove_cap(&self, scope: &Scope) -> Result<(), LedgerError>;
    /// A scope's usage in the current period.
    async fn usage(&self, scope: &Scope) -> Result<Usage, LedgerError>;
    /// A team's pool.
    async fn balance(&self, team: &TeamId) -> Result<Balance, LedgerError>;
    /// Append-only history, oldest first.
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError>;
}

/// The payment step of an automatic refill. Called outside any ledger transaction; the refill is
/// applied only when it returns `Ok`. At most `max_per_period` calls per period are made per team.
#[async_trait]
pub trait RefillHook: Send + Sync + Debug {
    /// Pays for `amount` of CU for `team`; an error declines the refill.
    async fn refill(&self, team: &TeamId, amount: &Money) -> Result<(), String>;
}

/// A hook that approves every refill (for tests and demos; no payment happens).
#[derive(Debug, Default, Clone, Copy)]
pub struct ApproveRefills;

#[async_trait]
impl RefillHook for ApproveRefills {
    async fn refill(&self, _team: &TeamId, _amount: &Money) -> Result<(), String> {
        Ok(())
    }
}

/// Storage: runs one operation atomically on one team.
#[async_trait]
pub(crate) trait Backend: Send + Sync + Debug + 'static {
    async fn create(&self, cfg: &TeamConfig, now: DateTime<Utc>) -> Result<(), LedgerError>;
    async fn run(&self, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError>;
    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError>;

    /// A reservation run in place, for a backend that never waits (memory): no future to box, no
    /// request to clone, the answer as the operation made it. With `refill_due`, also says whether an
    /// automatic refill became due. `None` when the backend cannot, and [`Backend::run`] then does it.
    fn reserve_now(
        &self,
        _req: &ReserveRequest,
        _now: DateTime<Utc>,
        _refill_due: Option<&mut bool>,
    ) -> Option<Result<Out, LedgerError>> {
        None
    }

    /// A settle run in place, as [`Backend::reserve_now`].
    fn settle_now(
        &self,
        _hold: &HoldId,
        _actual: &Money,
        _now: DateTime<Utc>,
        _refill_due: Option<&mut bool>,
    ) -> Option<Result<Out, LedgerError>> {
        None
    }
}

/// A backend with a clock and an optional refill hook.
#[derive(Debug)]
pub(crate) struct Engine<B> {
    pub(crate) backend: B,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) hook: Option<Arc<dyn RefillHook>>,
}

fn unexpected() -> LedgerError {
    LedgerError::storage("ledger", "operation returned an unexpected result")
}

fn hold_of(out: Result<Out, LedgerError>) -> Result<Hold, LedgerError> {
    match out? {
        Out::Hold(h) => Ok(h),
        _ => Err(unexpected()),
    }
}

impl<B: Backend> Engine<B> {
    async fn exec(&self, op: Op) -> Result<Out, LedgerError> {
        // Only a reservation or a settle may trigger a refill.
        let refill_team = match &op {
            Op::Reserve(_) | Op::Settle(..) if self.hook.is_some() => Some(op.team().clone()),
            _ => None,
        };
        let outcome = self.backend.run(op, self.clock.now()).await?;
        match refill_team {
            Some(team) if self.wants_refill(&outcome) => Box::pin(self.refill_then(outcome.out, &team)).await,
            _ => Ok(outcome.out),
        }
    }

    /// The automatic refill an operation made due, then the operation's result. Boxed where it is awaited:
    /// it is rare, and inlining its state would make every reserve's and settle's future (which `Ledger`
    /// boxes again) several times larger.
    async fn refill_then(&self, out: Out, team: &TeamId) -> Result<Out, LedgerError> {
        // The operation itself succeeded; a declined refill only means no funds were added.
        let _ = self.refill(team).await;
        Ok(out)
    }

    fn wants_refill(&self, outcome: &Outcome) -> bool {
        outcome.refill_due && self.hook.is_some()
    }

    /// A reservation, in place when the backend can ([`Backend::reserve_now`]), then the automatic refill
    /// it made due (only asked when a hook is installed).
    async fn exec_reserve(&self, req: &ReserveRequest) -> Result<Out, LedgerError> {
        let now = self.clock.now();
        let ask = self.hook.is_some();
        let mut due = false;
        // `if let`, not `match`: the in-place answer must not stay alive across the other branch's await
        // (it would enlarge the future).
        let out = if let Some(done) = self.backend.reserve_now(req, now, ask.then_some(&mut due)) {
            done?
        } else {
            let outcome = self.backend.run(Op::Reserve(req.clone()), now).await?;
            due = outcome.refill_due;
            outcome.out
        };
        if ask && due {
            return Box::pin(self.refill_then(out, &req.caller.team)).await;
        }
        Ok(out)
    }

    /// Claims a refill slot, pays through the hook, then applies it (or gives the slot back).
    async fn refill(&self, team: &TeamId) -> Result<bool, LedgerError> {
        let Some(hook) = &self.hook else { return Ok(false) };
        let claim = self
            .backend
            .run(Op::ClaimRefill(team.clone()), self.clock.now())
            .await?;
        let Out::Claim(Some((amount, valid_for))) = claim.out else {
            return Ok(false);
        };
        match hook.refill(team, &amount).await {
            Ok(()) => {
                self.backend
                    .run(Op::ApplyRefill(team.clone(), amount, valid_for), self.clock.now())
                    .await?;
                Ok(true)
            }
            Err(message) => {
                self.backend
                    .run(Op::UnclaimRefill(team.clone()), self.clock.now())
                    .await?;
                Err(LedgerError::Refill {
                    team: team.clone(),
                    message,
                })
            }
        }
    }

    async fn unit(&self, op: Op) -> Result<(), LedgerError> {
        match self.exec(op).await? {
            Out::Unit => Ok(()),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn create_team(&self, config: &TeamConfig) -> Result<(), LedgerError> {
        self.backend.create(config, self.clock.now()).await
    }

    pub(crate) async fn change_plan(
        &self,
        team: &TeamId,
        allowance: &Money,
        change: PlanChange,
    ) -> Result<(), LedgerError> {
        self.unit(Op::ChangePlan(team.clone(), allowance.clone(), change))
            .await
    }

    pub(crate) async fn set_default_cap(
        &self,
        team: &TeamId,
        cap: Option<&Money>,
    ) -> Result<(), LedgerError> {
        self.unit(Op::SetDefaultCap(team.clone(), cap.cloned())).await
    }

    pub(crate) async fn set_auto_refill(
        &self,
        team: &TeamId,
        refill: Option<&AutoRefill>,
    ) -> Result<(), LedgerError> {
        self.unit(Op::SetAutoRefill(team.clone(), refill.cloned())).await
    }

    pub(crate) async fn reserve(&self, req: &ReserveRequest) -> Result<Hold, LedgerError> {
        crate::logic::cu(&req.amount)?;
        if self.hook.is_none() {
            // Without a refill hook nothing follows the reservation: the answer is unwrapped where it is
            // made (each layer it would cross copies it, and the future stays small).
            let now = self.clock.now();
            return hold_of(match self.backend.reserve_now(req, now, None) {
                Some(done) => done,
                None => self
                    .backend
                    .run(Op::Reserve(req.clone()), now)
                    .await
                    .map(|o| o.out),
            });
        }
        let denial = match self.exec_reserve(req).await {
            Err(LedgerError::Denied(d)) if d.scope.kind() == ScopeKind::Team && self.hook.is_some() => {
                Box::new(d)
            }
            other => return hold_of(other),
        };
        // The pool ran dry: an automatic refill may make room; try once more after it (boxed: rare).
        hold_of(Box::pin(self.retry_after_refill(req, denial)).await)
    }

    async fn retry_after_refill(
        &self,
        req: &ReserveRequest,
        denial: Box<Denial>,
    ) -> Result<Out, LedgerError> {
        if self.refill(&req.caller.team).await.unwrap_or(false) {
            self.exec_reserve(req).await
        } else {
            Err(LedgerError::Denied(*denial))
        }
    }

    pub(crate) async fn settle(&self, hold: &HoldId, actual: &Money) -> Result<Settlement, LedgerError> {
        crate::logic::cu(actual)?;
        let now = self.clock.now();
        let ask = self.hook.is_some();
        let mut due = false;
        let out = if let Some(done) = self
            .backend
            .settle_now(hold, actual, now, ask.then_some(&mut due))
        {
            done?
        } else {
            let outcome = self
                .backend
                .run(Op::Settle(hold.clone(), actual.clone()), now)
                .await?;
            due = outcome.refill_due;
            outcome.out
        };
        let out = if ask && due {
            Box::pin(self.refill_then(out, &hold.team)).await?
        } else {
            out
        };
        match out {
            Out::Settlement(s) => Ok(s),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn release(&self, hold: &HoldId) -> Result<(), LedgerError> {
        self.unit(Op::Release(hold.clone())).await
    }

    pub(crate) async fn extend(&self, hold: &HoldId, ttl: Duration) -> Result<Hold, LedgerError> {
        match self.exec(Op::Extend(hold.clone(), ttl)).await? {
            Out::Hold(h) => Ok(h),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn top_up(
        &self,
        team: &TeamId,
        amount: &Money,
        expires_at: DateTime<Utc>,
    ) -> Result<FundsBatch, LedgerError> {
        match self
            .exec(Op::TopUp(team.clone(), amount.clone(), expires_at))
            .await?
        {
            Out::Batch(b) => Ok(b),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn set_cap(&self, scope: &Scope, cap: &Money) -> Result<(), LedgerError> {
        self.unit(Op::SetCap(scope.clone(), Some(cap.clone()))).await
    }

    pub(crate) async fn remove_cap(&self, scope: &Scope) -> Result<(), LedgerError> {
        self.unit(Op::SetCap(scope.clone(), None)).await
    }

    pub(crate) async fn usage(&self, scope: &Scope) -> Result<Usage, LedgerError> {
        match self.exec(Op::Usage(scope.clone())).await? {
            Out::Usage(u) => Ok(*u),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn balance(&self, team: &TeamId) -> Result<Balance, LedgerError> {
        match self.exec(Op::Balance(team.clone())).await? {
            Out::Balance(b) => Ok(*b),
            _ => Err(unexpected()),
        }
    }

    pub(crate) async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        // Settle what time has made due first, so expiries show.
        self.unit(Op::Maintain(filter.scope.team().clone())).await?;
        self.backend.history(filter).await
    }
}

/// Implements [`Ledger`] for a backend's public type by forwarding to its `engine` field.
macro_rules! forward_ledger {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::Ledger for $ty {
            async fn create_team(&self, config: &$crate::TeamConfig) -> Result<(), $crate::LedgerError> {
                self.engine.create_team(config).await
            }
            async fn change_plan(
                &self,
                team: &genroute_core::TeamId,
                allowance: &genroute_core::Money,
                change: $crate::PlanChange,
            ) -> Result<(), $crate::LedgerError> {
                self.engine.change_plan(team, allowance, change).await
            }
            async fn set_default_cap(
                &self,
                team: &genroute_core::TeamId,
                cap: Option<&genroute_core::Money>,
            ) -> Result<(), $crate::LedgerError> {
                self.engine.set_default_cap(team, cap).await
            }
            async fn set_auto_refill(
                &self,
                team: &genroute_core::TeamId,
                refill: Option<&$crate::AutoRefill>,
            ) -> Result<(), $crate::LedgerError> {
                self.engine.set_auto_refill(team, refill).await
            }
            async fn reserve(
                &self,
                req: &$crate::ReserveRequest,
            ) -> Result<$crate::Hold, $crate::LedgerError> {
                self.engine.reserve(req).await
            }
            async fn settle(
                &self,
                hold: &$crate::HoldId,
                actual: &genroute_core::Money,
            ) -> Result<$crate::Settlement, $crate::LedgerError> {
                self.engine.settle(hold, actual).await
            }
            async fn release(&self, hold: &$crate::HoldId) -> Result<(), $crate::LedgerError> {
                self.engine.release(hold).await
            }
            async fn extend(
                &self,
                hold: &$crate::HoldId,
                ttl: std::time::Duration,
            ) -> Result<$crate::Hold, $crate::LedgerError> {
                self.engine.extend(hold, ttl).await
            }
            async fn top_up(
                &self,
                team: &genroute_core::TeamId,
                amount: &genroute_core::Money,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> Result<$crate::FundsBatch, $crate::LedgerError> {
                self.engine.top_up(team, amount, expires_at).await
            }
            async fn set_cap(
                &self,
                scope: &$crate::Scope,
                cap: &genroute_core::Money,
            ) -> Result<(), $crate::LedgerError> {
                self.engine.set_cap(scope, cap).await
            }
            async fn remove_cap(&self, scope: &$crate::Scope) -> Result<(), $crate::LedgerError> {
                self.engine.remove_cap(scope).await
            }
            async fn usage(&self, scope: &$crate::Scope) -> Result<$crate::Usage, $crate::LedgerError> {
                self.engine.usage(scope).await
            }
            async fn balance(
                &self,
                team: &genroute_core::TeamId,
            ) -> Result<$crate::Balance, $crate::LedgerError> {
                self.engine.balance(team).await
            }
            async fn history(
                &self,
                filter: &$crate::HistoryFilter,
            ) -> Result<Vec<$crate::Entry>, $crate::LedgerError> {
                self.engine.history(filter).await
            }
        }
    };
}
pub(crate) use forward_ledger;
