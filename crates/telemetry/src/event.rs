//! The attempt event: one attempt of one job, with its cost.

use std::time::Duration;

use genroute_core::{
    Caller, CostSource, Decimal, ErrorKind, JobId, Modality, ModelId, Money, Operation, ProviderId,
};
use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

/// How one attempt ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AttemptOutcome {
    /// The provider delivered and the output was accepted.
    Success,
    /// The provider call failed.
    Failed {
        /// The error's kind, as `error.type`.
        error_type: ErrorKind,
    },
    /// The provider delivered, and the quality gate rejected the output (the attempt is still billed).
    GateRejected,
    /// The ledger refused to reserve budget for the attempt; nothing was sent.
    BudgetDenied,
    /// The attempt was cancelled (by the caller or a deadline).
    Cancelled,
    /// The call's result could not be determined (e.g. a lost response to a create); billed conservatively.
    OutcomeUnknown,
}

impl AttemptOutcome {
    /// The outcome's code without its error type: `success`, `failed`, `gate_rejected`, ...
    pub fn code(self) -> OutcomeCode {
        match self {
            AttemptOutcome::Success => OutcomeCode::Success,
            AttemptOutcome::Failed { .. } => OutcomeCode::Failed,
            AttemptOutcome::GateRejected => OutcomeCode::GateRejected,
            AttemptOutcome::BudgetDenied => OutcomeCode::BudgetDenied,
            AttemptOutcome::Cancelled => OutcomeCode::Cancelled,
            AttemptOutcome::OutcomeUnknown => OutcomeCode::OutcomeUnknown,
        }
    }

    /// snake_case name, as used for `genroute.outcome`.
    pub fn as_str(self) -> &'static str {
        self.code().as_str()
    }

    /// The value of `error.type`: the error kind for failures, the outcome's name for other non-successes,
    /// `None` for success.
    pub fn error_type(self) -> Option<&'static str> {
        match self {
            AttemptOutcome::Success => None,
            AttemptOutcome::Failed { error_type } => Some(error_type.as_str()),
            other => Some(other.as_str()),
        }
    }

    /// Whether the attempt succeeded.
    pub fn is_success(self) -> bool {
        matches!(self, AttemptOutcome::Success)
    }

    /// Rebuilds an outcome from its code and error type (as stored in the cost log).
    pub fn from_parts(code: OutcomeCode, error_type: Option<ErrorKind>) -> Option<Self> {
        Some(match code {
            OutcomeCode::Success => AttemptOutcome::Success,
            OutcomeCode::Failed => AttemptOutcome::Failed {
                error_type: error_type?,
            },
            OutcomeCode::GateRejected => AttemptOutcome::GateRejected,
            OutcomeCode::BudgetDenied => AttemptOutcome::BudgetDenied,
            OutcomeCode::Cancelled => AttemptOutcome::Cancelled,
            OutcomeCode::OutcomeUnknown => AttemptOutcome::OutcomeUnknown,
        })
    }
}

/// An [`AttemptOutcome`] without its data: what metrics label and the cost log stores.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeCode {
    /// See [`AttemptOutcome::Success`].
    Success,
    /// See [`AttemptOutcome::Failed`].
    Failed,
    /// See [`AttemptOutcome::GateRejected`].
    GateRejected,
    /// See [`AttemptOutcome::BudgetDenied`].
    BudgetDenied,
    /// See [`AttemptOutcome::Cancelled`].
    Cancelled,
    /// See [`AttemptOutcome::OutcomeUnknown`].
    OutcomeUnknown,
}

impl OutcomeCode {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeCode::Success => "success",
            OutcomeCode::Failed => "failed",
            OutcomeCode::GateRejected => "gate_rejected",
            OutcomeCode::BudgetDenied => "budget_denied",
            OutcomeCode::Cancelled => "cancelled",
            OutcomeCode::OutcomeUnknown => "outcome_unknown",
        }
    }
}

/// What the budget check before an attempt decided.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum BudgetDecision {
    /// A hold was reserved.
    Reserved,
    /// The ledger refused; `scope` names the scope that had too little (e.g. `member:alice`).
    Denied {
        /// The scope that refused.
        scope: String,
    },
    /// No ledger is configured, or the check was skipped.
    NotChecked,
}

impl BudgetDecision {
    /// `reserved`, `denied` or `not_checked`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BudgetDecision::Reserved => "reserved",
            BudgetDecision::Denied { .. } => "denied",
            BudgetDecision::NotChecked => "not_checked",
        }
    }

    /// The denying scope, if denied.
    pub fn denied_scope(&self) -> Option<&str> {
        match self {
            BudgetDecision::Denied { scope } => Some(scope),
            _ => None,
        }
    }
}

/// One attempt of one job, with its cost: the unit of the cost log, metrics and span attributes.
///
/// Amounts are exact ([`Money`] over `Decimal`). Exporters that need a float (OpenTelemetry metric values and
/// `gen_ai.usage.cost.amount`) convert at the boundary; the cost log keeps them exact.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AttemptEvent {
    /// When the attempt ended.
    pub time: chrono::DateTime<chrono::Utc>,
    /// The job.
    pub job_id: JobId,
    /// 1-based across the whole job (retries and fallbacks).
    pub attempt: u32,
    /// The provider the attempt ran on.
    pub provider: ProviderId,
    /// The model requested.
    pub model: ModelId,
    /// The model the provider says answered, when it says.
    pub response_model: Option<String>,
    /// What the job asks for.
    pub operation: Operation,
    /// Broad kind of output.
    pub modality: Modality,
    /// The route or alias the job was submitted to, if any.
    pub route: Option<String>,
    /// How the attempt ended.
    pub outcome: AttemptOutcome,
    /// The quote the attempt was reserved against (provider currency), if one was made.
    pub quoted: Option<Money>,
    /// What the provider charged (provider currency); zero when not billed.
    pub charged: Money,
    /// Where the charged figure came from; `None` when nothing was billed.
    pub cost_source: Option<CostSource>,
    /// `charged` in CU.
    pub cu: Money,
    /// The job's total spend in CU after this attempt.
    pub job_spend_cu: Money,
    /// The part of `job_spend_cu` spent on attempts that did not produce the accepted output.
    pub retry_spend_cu: Money,
    /// How long the attempt took.
    pub latency: Duration,
    /// Accepted outputs (images, clips...) this attempt delivered; 0 unless it succeeded. Feeds the
    /// cost-per-generation histogram.
    pub outputs: u32,
    /// Why the router moved on after this attempt (retry or failover); `None` if it did not.
    /// Keep it a short code (`unavailable`, `rate_limited`, `gate_rejected`...): it is also a label.
    pub fallback_reason: Option<String>,
    /// What the budget check decided.
    pub budget_decision: BudgetDecision,
    /// Who the job is for.
    pub caller: Caller,
}

impl AttemptEvent {
    /// The effective cost of one accepted output of the job, retries and fallbacks included:
    /// `job_spend_cu / outputs`, for a successful attempt with at least one output.
    pub fn cost_per_generation_cu(&self) -> Option<Decimal> {
        if !self.outcome.is_success() || self.outputs == 0 {
            return None;
        }
        self.job_spend_cu
            .amount()
            .checked_div(Decimal::from(self.outputs))
    }
}

/// Receives every attempt event. Implementations must not block the caller: buffer, hand off to a thread
/// or a channel, or drop (and count) under pressure.
pub trait CostSink: Send + Sync {
    /// Called once per attempt, after it ends.
    fn record(&self, event: &AttemptEvent);
}

impl<T: CostSink + ?Sized> CostSink for std::sync::Arc<T> {
    fn record(&self, event: &AttemptEvent) {
        (**self).record(event)
    }
}

impl<T: CostSink + ?Sized> CostSink for Box<T> {
    fn record(&self, event: &AttemptEvent) {
        (**self).record(event)
    }
}

/// The draft convention's `gen_ai.usage.cost.source`: `provider` when the provider reported the figure,
/// `local` when genroute computed or estimated it.
pub fn convention_cost_source(source: CostSource) -> &'static str {
    match source {
        CostSource::ProviderReported => "provider",
        CostSource::PriceTable | CostSource::ConservativeEstimate => "local",
    }
}

/// A decimal as `f64`, for exporters that only take floats. Exact amounts stay in the cost log.
pub(crate) fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_codes_and_error_types() {
        let failed = AttemptOutcome::Failed {
            error_type: ErrorKind::Unavailable,
        };
        assert_eq!(failed.as_str(), "failed");
        assert_eq!(failed.error_type(), Some("unavailable"));
        assert_eq!(AttemptOutcome::Success.error_type(), None);
        assert_eq!(AttemptOutcome::GateRejected.error_type(), Some("gate_rejected"));
        for o in [
            AttemptOutcome::Success,
            failed,
            AttemptOutcome::GateRejected,
            AttemptOutcome::BudgetDenied,
            AttemptOutcome::Cancelled,
            AttemptOutcome::OutcomeUnknown,
        ] {
            let kind = match o {
                AttemptOutcome::Failed { error_type } => Some(error_type),
                _ => None,
            };
            assert_eq!(AttemptOutcome::from_parts(o.code(), kind), Some(o));
        }
        assert_eq!(AttemptOutcome::from_parts(OutcomeCode::Failed, None), None);
    }

    #[test]
    fn convention_source_mapping() {
        assert_eq!(convention_cost_source(CostSource::ProviderReported), "provider");
        assert_eq!(convention_cost_source(CostSource::PriceTable), "local");
        assert_eq!(convention_cost_source(CostSource::ConservativeEstimate), "local");
    }
}
