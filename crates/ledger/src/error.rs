//! The ledger's one error type.

use genroute_core::{Currency, IdempotencyKey, Money, TeamId};

use crate::types::{HoldId, Scope};

/// A reservation refused because a scope lacks room.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Denial {
    /// The scope that refused (the most restrictive one; a capped member, project or key before the team
    /// when both lack room).
    pub scope: Scope,
    /// What was asked for.
    pub requested: Money,
    /// What that scope could still grant.
    pub remaining: Money,
    /// The scope's cap, when the refusal came from a cap (`None` when the team pool ran dry).
    pub cap: Option<Money>,
}

/// The state a hold is in.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldState {
    /// Open.
    Held,
    /// Charged.
    Settled,
    /// Released unused.
    Released,
    /// Freed by its TTL.
    Expired,
}

impl HoldState {
    pub(crate) fn code(self) -> i64 {
        match self {
            HoldState::Held => 0,
            HoldState::Settled => 1,
            HoldState::Released => 2,
            HoldState::Expired => 3,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => HoldState::Held,
            1 => HoldState::Settled,
            2 => HoldState::Released,
            3 => HoldState::Expired,
            _ => return None,
        })
    }
}

/// What went wrong in a ledger operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// A scope lacks room for the reservation. Nothing was held on any scope.
    #[error("budget denied by {}: requested {}, remaining {}", .0.scope, .0.requested, .0.remaining)]
    Denied(Denial),
    /// An amount was not in compute units.
    #[error("ledger amounts must be in CU, got {0}")]
    NotCu(Currency),
    /// An amount was negative.
    #[error("ledger amounts must not be negative, got {0}")]
    Negative(Money),
    /// The team has not been created.
    #[error("unknown team {0}")]
    UnknownTeam(TeamId),
    /// `create_team` for a team that exists.
    #[error("team {0} already exists")]
    TeamExists(TeamId),
    /// No hold has this id.
    #[error("unknown hold {0}")]
    UnknownHold(HoldId),
    /// The hold was already closed in a way that forbids this operation.
    #[error("hold {hold} is {state:?}: cannot {operation}")]
    HoldClosed {
        /// The hold.
        hold: HoldId,
        /// Its state.
        state: HoldState,
        /// What was attempted.
        operation: &'static str,
    },
    /// An idempotency key was reused with a different request.
    #[error("idempotency key {key} was used for a different request ({detail})")]
    IdempotencyConflict {
        /// The key.
        key: IdempotencyKey,
        /// What differs.
        detail: String,
    },
    /// A settled hold was settled again with a different amount.
    #[error("hold {hold} was settled for {settled}, not {requested}")]
    SettleConflict {
        /// The hold.
        hold: HoldId,
        /// What it was settled for.
        settled: Money,
        /// What was asked now.
        requested: Money,
    },
    /// A cap cannot be set on this scope, or another argument is invalid.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// The auto-refill hook failed; the refill was not applied.
    #[error("auto-refill for team {team} failed: {message}")]
    Refill {
        /// The team.
        team: TeamId,
        /// What the hook said.
        message: String,
    },
    /// The storage backend failed; the operation did not take effect.
    #[error("{backend} storage error: {message}")]
    Storage {
        /// `memory`, `sqlite` or `postgres`.
        backend: &'static str,
        /// What failed.
        message: String,
    },
}

impl LedgerError {
    pub(crate) fn storage(backend: &'static str, e: impl std::fmt::Display) -> Self {
        LedgerError::Storage {
            backend,
            message: e.to_string(),
        }
    }
}
