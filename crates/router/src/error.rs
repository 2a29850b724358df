//! The router's error type.

use genroute_core::{Decimal, ModelRef, ProviderError};
use genroute_ledger::{Denial, LedgerError};
use genroute_pricing::PricingError;

use crate::plan::DropReason;
use crate::request::AttemptRecord;
use crate::route::RouteError;

/// Why a job did not produce an accepted output. Every variant that happened after attempts began carries
/// them, so what was spent is never hidden.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouterError {
    /// The route or alias does not exist.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// No candidate survived planning; each is listed with the reason it was dropped.
    #[error("no candidate can run this job on route {route:?}: {}", describe(.dropped))]
    NoCandidate {
        /// The route.
        route: String,
        /// Every candidate and why it was dropped.
        dropped: Vec<(ModelRef, DropReason)>,
    },
    /// The ledger refused to reserve budget; no provider was called for the refused attempt.
    #[error("budget exceeded: {} has {} left, {} was needed", .denial.scope, .denial.remaining, .denial.requested)]
    BudgetExceeded {
        /// Which scope refused, and what it had left.
        denial: Box<Denial>,
        /// Attempts made before the refusal.
        attempts: Vec<AttemptRecord>,
    },
    /// The next attempt would take the job's total spend past its `max_spend`.
    #[error("max spend reached: spent {spent} CU, next attempt quoted {next} CU, limit {limit} CU")]
    MaxSpend {
        /// The limit (CU).
        limit: Decimal,
        /// Spent so far (CU).
        spent: Decimal,
        /// The refused attempt's quote (CU).
        next: Decimal,
        /// Attempts made.
        attempts: Vec<AttemptRecord>,
    },
    /// A failure that must not be retried elsewhere (invalid request, content rejection by policy).
    #[error("stopped: {error}")]
    Stopped {
        /// The error.
        error: ProviderError,
        /// Attempts made.
        attempts: Vec<AttemptRecord>,
    },
    /// Every candidate was tried and failed (or the gate rejected every output).
    #[error("all candidates failed; last error: {last}")]
    Exhausted {
        /// The last failure.
        last: String,
        /// Attempts made.
        attempts: Vec<AttemptRecord>,
    },
    /// The job's deadline passed.
    #[error("deadline passed after {} attempt(s)", .attempts.len())]
    Deadline {
        /// Attempts made.
        attempts: Vec<AttemptRecord>,
    },
    /// The ledger failed (not a denial): infrastructure trouble.
    #[error("ledger error: {0}")]
    Ledger(#[source] Box<LedgerError>),
    /// Prices could not be worked out.
    #[error("pricing error: {0}")]
    Pricing(#[source] Box<PricingError>),
}

impl RouterError {
    /// The attempts made before the error, if any.
    pub fn attempts(&self) -> &[AttemptRecord] {
        match self {
            RouterError::BudgetExceeded { attempts, .. }
            | RouterError::MaxSpend { attempts, .. }
            | RouterError::Stopped { attempts, .. }
            | RouterError::Exhausted { attempts, .. }
            | RouterError::Deadline { attempts } => attempts,
            _ => &[],
        }
    }
}

fn describe(dropped: &[(ModelRef, DropReason)]) -> String {
    dropped
        .iter()
        .map(|(t, r)| format!("{t} ({r})"))
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<PricingError> for RouterError {
    fn from(e: PricingError) -> Self {
        RouterError::Pricing(Box::new(e))
    }
}

impl From<LedgerError> for RouterError {
    fn from(e: LedgerError) -> Self {
        RouterError::Ledger(Box::new(e))
    }
}
