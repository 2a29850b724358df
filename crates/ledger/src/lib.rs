#![doc = include_str!("../README.md")]

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
