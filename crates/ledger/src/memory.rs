//! The in-memory backend: one mutex per team, nothing persisted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::TeamId;

use crate::clock::{Clock, SystemClock};
use crate::engine::{Backend, Engine, RefillHook, forward_ledger};
use crate::error::LedgerError;
use crate::logic::{Book, Op, Outcome, apply};
use crate::types::{Entry, HistoryFilter, TeamConfig};

#[derive(Debug, Default)]
pub(crate) struct MemoryBackend {
    teams: RwLock<HashMap<TeamId, Arc<Mutex<Book>>>>,
}

fn poisoned() -> LedgerError {
    LedgerError::storage("memory", "a lock was poisoned by a panic")
}

impl MemoryBackend {
    fn book(&self, team: &TeamId) -> Result<Arc<Mutex<Book>>, LedgerError> {
        let teams = self.teams.read().map_err(|_| poisoned())?;
        teams
            .get(team)
            .cloned()
            .ok_or_else(|| LedgerError::UnknownTeam(team.clone()))
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
        teams.insert(cfg.team.clone(), Arc::new(Mutex::new(book)));
        Ok(())
    }

    async fn run(&self, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError> {
        let book = self.book(op.team())?;
        let mut book = book.lock().map_err(|_| poisoned())?;
        apply(&mut book, op, now)
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        let book = self.book(filter.scope.team())?;
        let book = book.lock().map_err(|_| poisoned())?;
        let it = book.entries.iter().filter(|e| filter.matches(e)).cloned();
        Ok(match filter.limit {
            Some(n) => it.take(n).collect(),
            None => it.collect(),
        })
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
