#![doc = include_str!("../README.md")]
// `LedgerError::Denied` carries the whole `Denial` (scope, amounts, cap) by value so callers can match on it
// directly, as the router does; a budget refusal is not a hot path worth a box.
#![allow(clippy::result_large_err)]

mod clock;
mod engine;
mod error;
mod logic;
mod memory;
mod period;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{ApproveRefills, Ledger, RefillHook};
pub use error::{Denial, HoldState, LedgerError};
pub use memory::MemoryLedger;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresLedger, PostgresOptions};
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteLedger, SqliteOptions, SqliteSync};
pub use types::{
    AutoRefill, Balance, Entry, EntryKind, EntryMeta, FundsBatch, FundsKind, HistoryFilter, Hold, HoldId,
    PlanChange, ReserveRequest, Scope, ScopeKind, Settlement, TeamConfig, Usage, UsageStatus,
};
