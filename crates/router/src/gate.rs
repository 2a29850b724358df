//! Quality gates: user code that accepts or rejects a delivered output.
//!
//! A rejected output was still billed: the attempt is settled, counted as retry spend, and the router
//! retries (same candidate while retries remain, then the next one).

use async_trait::async_trait;
use genroute_core::{Generation, Job};

/// A gate's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateVerdict {
    /// Keep the output.
    Accept,
    /// Discard it and try again.
    Reject {
        /// Why (recorded with the attempt).
        reason: String,
    },
}

/// Checks outputs before they are accepted.
#[async_trait]
pub trait QualityGate: Send + Sync {
    /// Inspects one delivered generation.
    async fn check(&self, job: &Job, generation: &Generation) -> GateVerdict;
}

#[async_trait]
impl<F> QualityGate for F
where
    F: Fn(&Job, &Generation) -> GateVerdict + Send + Sync,
{
    async fn check(&self, job: &Job, generation: &Generation) -> GateVerdict {
        self(job, generation)
    }
}
