//! The per-call context: who pays, by when, under which idempotency key, and where progress goes.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::ids::{ApiKeyId, IdempotencyKey, JobId, MemberId, ProjectId, TeamId};

/// Who a job is for: the budget scopes it draws from.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Caller {
    /// The team whose pooled balance pays.
    pub team: TeamId,
    /// The member, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberId>,
    /// The project, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectId>,
    /// The API key's id, if the call came through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyId>,
}

impl Caller {
    /// A caller known only by team.
    pub fn team(team: TeamId) -> Self {
        Self {
            team,
            member: None,
            project: None,
            api_key: None,
        }
    }

    /// Adds the member.
    pub fn member(mut self, member: MemberId) -> Self {
        self.member = Some(member);
        self
    }

    /// Adds the project.
    pub fn project(mut self, project: ProjectId) -> Self {
        self.project = Some(project);
        self
    }

    /// Adds the API key id.
    pub fn api_key(mut self, key: ApiKeyId) -> Self {
        self.api_key = Some(key);
        self
    }
}

/// Where a job stands.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Sent; the provider has accepted it.
    Submitted,
    /// Waiting in the provider's queue.
    Queued,
    /// Running.
    Running,
    /// Done on the provider's side; results being fetched.
    Finalizing,
}

/// A progress report from an adapter.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// Where the job stands.
    pub stage: Stage,
    /// Fraction complete (0–1), if the provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f32>,
    /// Position in the provider's queue, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// The provider's job id, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_job_id: Option<String>,
    /// The provider's status spelling, as received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_status: Option<String>,
}

impl ProgressEvent {
    /// An event at a stage with nothing else known.
    pub fn stage(stage: Stage) -> Self {
        Self {
            stage,
            fraction: None,
            queue_position: None,
            provider_job_id: None,
            provider_status: None,
        }
    }
}

/// Receives progress events. Implement it over a channel, a progress bar or a webhook; it must not block.
pub trait ProgressSink: Send + Sync {
    /// Called for every event, in order.
    fn report(&self, event: ProgressEvent);
}

impl<F: Fn(ProgressEvent) + Send + Sync> ProgressSink for F {
    fn report(&self, event: ProgressEvent) {
        self(event)
    }
}

/// Everything an adapter needs to know about the call besides the job itself.
///
/// Cancellation is by drop: an adapter's future that is dropped (or whose deadline passes) stops polling
/// and, where the provider allows, cancels the upstream job.
#[derive(Clone)]
pub struct CallContext {
    job_id: JobId,
    attempt: u32,
    caller: Caller,
    idempotency_key: IdempotencyKey,
    deadline: Option<Instant>,
    progress: Option<Arc<dyn ProgressSink>>,
}

impl fmt::Debug for CallContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallContext")
            .field("job_id", &self.job_id)
            .field("attempt", &self.attempt)
            .field("caller", &self.caller)
            .field("idempotency_key", &self.idempotency_key)
            .field("deadline", &self.deadline)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl CallContext {
    /// A context for the first attempt of a job; the idempotency key defaults to `<job id>:1`.
    pub fn new(job_id: JobId, caller: Caller) -> Self {
        let idempotency_key = attempt_key(&job_id, 1);
        Self {
            job_id,
            attempt: 1,
            caller,
            idempotency_key,
            deadline: None,
            progress: None,
        }
    }

    /// The same job at another attempt number, with that attempt's idempotency key.
    pub fn for_attempt(&self, attempt: u32) -> Self {
        let mut next = self.clone();
        next.attempt = attempt;
        next.idempotency_key = attempt_key(&self.job_id, attempt);
        next
    }

    /// Sets an absolute deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Sets a deadline `timeout` from now.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        let deadline = Instant::now() + timeout;
        self.with_deadline(deadline)
    }

    /// Overrides the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = key;
        self
    }

    /// Sends progress events to a sink.
    pub fn with_progress(mut self, sink: Arc<dyn ProgressSink>) -> Self {
        self.progress = Some(sink);
        self
    }

    /// The job's id.
    pub fn job_id(&self) -> &JobId {
        &self.job_id
    }
    /// The attempt number (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
    /// Who pays.
    pub fn caller(&self) -> &Caller {
        &self.caller
    }
    /// The idempotency key of this attempt.
    pub fn idempotency_key(&self) -> &IdempotencyKey {
        &self.idempotency_key
    }
    /// The deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
    /// Time left before the deadline (zero once passed); `None` without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining().is_some_and(|r| r.is_zero())
    }
    /// Reports progress, if anyone listens.
    pub fn report(&self, event: ProgressEvent) {
        if let Some(sink) = &self.progress {
            sink.report(event);
        }
    }
}

fn attempt_key(job: &JobId, attempt: u32) -> IdempotencyKey {
    // A valid job id plus ":<n>" is non-empty and free of control characters; only the length limit could
    // be crossed, and that limit exists to bound what callers send us, not what we derive.
    IdempotencyKey::derived(format!("{job}:{attempt}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ctx() -> CallContext {
        let caller = Caller::team(TeamId::new("t1").unwrap())
            .member(MemberId::new("alice").unwrap())
            .project(ProjectId::new("p1").unwrap())
            .api_key(ApiKeyId::new("k1").unwrap());
        CallContext::new(JobId::new("job-42").unwrap(), caller)
    }

    #[test]
    fn attempts_get_distinct_idempotency_keys() {
        let c = ctx();
        assert_eq!(c.attempt(), 1);
        assert_eq!(c.idempotency_key().as_str(), "job-42:1");
        let c3 = c.for_attempt(3);
        assert_eq!(c3.attempt(), 3);
        assert_eq!(c3.idempotency_key().as_str(), "job-42:3");
        assert_eq!(c3.caller(), c.caller());
        assert_eq!(c3.job_id(), c.job_id());
    }

    #[test]
    fn deadline_and_remaining() {
        let c = ctx();
        assert_eq!(c.remaining(), None);
        assert!(!c.is_expired());
        let c = c.with_timeout(Duration::from_secs(60));
        assert!(c.remaining().unwrap() > Duration::from_secs(59));
        let past = ctx().with_deadline(Instant::now() - Duration::from_millis(1));
        assert!(past.is_expired());
        assert_eq!(past.remaining(), Some(Duration::ZERO));
    }

    #[test]
    fn progress_reaches_the_sink_in_order() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink_seen = Arc::clone(&seen);
        let c = ctx().with_progress(Arc::new(move |e: ProgressEvent| {
            sink_seen.lock().unwrap().push(e.stage)
        }));
        c.report(ProgressEvent::stage(Stage::Queued));
        c.report(ProgressEvent::stage(Stage::Running));
        assert_eq!(*seen.lock().unwrap(), vec![Stage::Queued, Stage::Running]);
        // Without a sink, reporting is a no-op rather than an error.
        ctx().report(ProgressEvent::stage(Stage::Finalizing));
    }

    #[test]
    fn caller_serde_is_strict() {
        let c = ctx();
        let json = serde_json::to_value(c.caller()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"team":"t1","member":"alice","project":"p1","api_key":"k1"})
        );
        assert!(serde_json::from_value::<Caller>(serde_json::json!({"team":"t1","teem":"x"})).is_err());
    }
}
