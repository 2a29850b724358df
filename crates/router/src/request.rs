//! What an application asks the router for, and what it gets back.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use genroute_core::{
    Caller, CostSource, Generation, Job, JobId, ModelRef, Money, ProgressSink, ProviderError,
};
use genroute_telemetry::AttemptOutcome;
use serde::Serialize;

/// Limits on one job.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Limits {
    /// No attempt may be quoted above this (any currency the price book converts to CU). The route's own
    /// ceiling applies too; the stricter wins.
    pub cost_ceiling: Option<Money>,
    /// The sum of all attempts — retries and fallbacks included — may not exceed this (converted to CU).
    pub max_spend: Option<Money>,
    /// The whole job, every attempt and backoff included, must finish within this.
    pub deadline: Option<Duration>,
}

/// One job for the router.
#[derive(Clone)]
pub struct GenerateRequest {
    /// The job.
    pub job: Job,
    /// A route or alias name.
    pub route: String,
    /// Who pays.
    pub caller: Caller,
    /// The job's id; generated (UUIDv7) when absent. Reusing an id makes reservations replay-safe.
    pub job_id: Option<JobId>,
    /// Limits.
    pub limits: Limits,
    /// Request metadata route rules match on (e.g. `plan = "free"`).
    pub metadata: BTreeMap<String, String>,
    /// Where progress events go.
    pub progress: Option<Arc<dyn ProgressSink>>,
}

impl fmt::Debug for GenerateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenerateRequest")
            .field("job", &self.job)
            .field("route", &self.route)
            .field("caller", &self.caller)
            .field("job_id", &self.job_id)
            .field("limits", &self.limits)
            .field("metadata", &self.metadata)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl GenerateRequest {
    /// A request with no limits or metadata.
    pub fn new(job: impl Into<Job>, route: impl Into<String>, caller: Caller) -> Self {
        Self {
            job: job.into(),
            route: route.into(),
            caller,
            job_id: None,
            limits: Limits::default(),
            metadata: BTreeMap::new(),
            progress: None,
        }
    }

    /// Sets the job id.
    pub fn job_id(mut self, id: JobId) -> Self {
        self.job_id = Some(id);
        self
    }

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Adds a metadata pair.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Sends progress events to a sink.
    pub fn progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }
}

/// One attempt, as the caller sees it.
#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    /// 1-based across the job.
    pub attempt: u32,
    /// Where it ran.
    pub target: ModelRef,
    /// How it ended.
    #[serde(serialize_with = "outcome_str")]
    pub outcome: AttemptOutcome,
    /// The quote it was reserved against (provider currency).
    pub quoted: Money,
    /// The same in CU.
    pub quoted_cu: Money,
    /// What it cost (provider currency; zero when not billed).
    pub charged: Money,
    /// The same in CU.
    pub charged_cu: Money,
    /// Where `charged` came from; `None` when nothing was billed.
    pub cost_source: Option<CostSource>,
    /// How long it took.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Why the router moved on after it (retry or failover), if it did.
    pub moved_on: Option<String>,
    /// The error, for failed attempts.
    #[serde(skip)]
    pub error: Option<ProviderError>,
}

fn outcome_str<S: serde::Serializer>(o: &AttemptOutcome, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(o.as_str())
}

/// A finished job.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The job's id.
    pub job_id: JobId,
    /// The route that ran it (after alias resolution).
    pub route: String,
    /// Where the accepted output came from.
    pub target: ModelRef,
    /// The accepted generation (its `charged` filled in).
    pub generation: Generation,
    /// Every attempt, in order.
    pub attempts: Vec<AttemptRecord>,
    /// What the whole job cost, in CU.
    pub total_spend_cu: Money,
    /// What attempts that did not produce the accepted output cost, in CU.
    pub retry_spend_cu: Money,
    /// `total_spend_cu` divided by the accepted outputs: the effective cost of one output.
    pub cost_per_output_cu: Money,
}
