//! The in-memory backend: one mutex per team, nothing persisted.

use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{Money, TeamId};

use crate::clock::{Clock, SystemClock};
use crate::engine::{Backend, Engine, RefillHook, forward_ledger};
use crate::error::LedgerError;
use crate::logic::{Book, HashMap, Op, Outcome, apply, apply_reserve, apply_settle};
use crate::types::{Entry, HistoryFilter, HoldId, ReserveRequest, TeamConfig};

#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    teams: RwLock<HashMap<TeamId, Mutex<Book>>>,
}

fn poisoned() -> LedgerError {
    LedgerError::storage("memory", "a lock was poisoned by a panic")
}

impl MemoryBackend {
    /// Runs `f` on a team's book under its mutex. The map's read lock is held meanwhile (only
    /// `create_team` writes the map), which spares a reference count per operation.
    fn with_book<T>(&self, team: &TeamId, f: impl FnOnce(&mut Book) -> T) -> Result<T, LedgerError> {
        let teams = self.teams.read().map_err(|_| poisoned())?;
        let book = teams
            .get(team)
            .ok_or_else(|| LedgerError::UnknownTeam(team.clone()))?;
        let mut book = book.lock().map_err(|_| poisoned())?;
        Ok(f(&mut book))
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    async fn create(&self, cfg: &TeamConfig, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let book = Book::create(cfg, now, false)?;
        let mut teams = self.teams.write().map_err(|_| poisoned())?;
        if teams.contains_key(&cfg.team) {
            return Err(LedgerError::TeamExists(cfg.team.clone()));
        }
        teams.insert(cfg.team.clone(), Mutex::new(book));
        Ok(())
    }

    async fn run(&self, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError> {
        let team = op.team().clone();
        self.with_book(&team, |book| apply(book, op, now))?
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        self.with_book(filter.scope.team(), |book| book.history(filter))
    }

    fn reserve_now(&self, req: &ReserveRequest, now: DateTime<Utc>) -> Option<Result<Outcome, LedgerError>> {
        Some(
            self.with_book(&req.caller.team, |book| apply_reserve(book, req, now))
                .and_then(|r| r),
        )
    }

    fn settle_now(
        &self,
        hold: &HoldId,
        actual: &Money,
        now: DateTime<Utc>,
    ) -> Option<Result<Outcome, LedgerError>> {
        Some(
            self.with_book(&hold.team, |book| apply_settle(book, hold, actual, now))
                .and_then(|r| r),
        )
    }
}

/// The in-memory ledger: exact and fast, for tests and single-process use. Nothing survives the process.
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
