//! Job state shared by the queue emulators: lifecycle progression, faults attached at creation, a sharded
//! store (no global lock on the polling path).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::fault::{FaultKind, lock};

/// How a queued job moves through its lifecycle. Captured when the job is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progression {
    /// The first `queued` status polls answer "queued", the next `running` answer "running", every later
    /// poll answers the terminal state. `polls(0, 0)`: the first poll already sees the job done.
    Polls {
        /// Polls answered in the queued state.
        queued: u32,
        /// Polls answered in the running state after that.
        running: u32,
    },
    /// The job is queued for `queued`, then runs for `running` (measured with `tokio::time`, so paused
    /// test time works), then is done whenever it is next observed.
    Timed {
        /// Time spent queued.
        queued: Duration,
        /// Time spent running after that.
        running: Duration,
    },
}

impl Progression {
    /// [`Progression::Polls`].
    pub fn polls(queued: u32, running: u32) -> Self {
        Progression::Polls { queued, running }
    }
    /// [`Progression::Timed`].
    pub fn timed(queued: Duration, running: Duration) -> Self {
        Progression::Timed { queued, running }
    }
    /// Done at the first poll.
    pub fn immediate() -> Self {
        Progression::Polls {
            queued: 0,
            running: 0,
        }
    }
}

impl Default for Progression {
    /// One poll queued, one poll running, then done.
    fn default() -> Self {
        Progression::polls(1, 1)
    }
}

/// Where a job is, provider-neutral.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobState {
    /// Waiting to start.
    Queued,
    /// Running.
    Running,
    /// Finished with outputs.
    Succeeded,
    /// Failed after running (a scripted `FailAfterRunning`).
    Failed,
    /// Failed by content moderation (a scripted `ContentRejected`).
    Rejected,
    /// Cancelled by a cancel request (or, at Replicate, by `Cancel-After` after it started).
    Canceled,
    /// Replicate only: `Cancel-After` ran out before the job started (not billed).
    Aborted,
    /// Reporting a scripted unknown status string.
    Unknown(String),
}

impl JobState {
    /// Whether the job will not change any more.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobState::Succeeded
                | JobState::Failed
                | JobState::Rejected
                | JobState::Canceled
                | JobState::Aborted
        )
    }
}

/// A snapshot of a job the emulator created.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JobRecord {
    /// The provider's id for it (fal `request_id`, Replicate prediction id, Scenario `jobId`, Runway task id).
    pub id: String,
    /// Model id (fal endpoint id with sub-path, Replicate `owner/name`, Scenario `modelId` or operation,
    /// Runway `model`).
    pub model: String,
    /// The input as received (for fal the body, for Replicate `input`, ...).
    pub input: Value,
    /// Its state now (observing it here does not count as a poll).
    pub state: JobState,
    /// How many status polls it has answered.
    pub polls: u32,
    /// Output URLs it reports (or will report) on success.
    pub outputs: Vec<String>,
    /// Whether a cancel request reached it while it could still be cancelled.
    pub canceled: bool,
    /// The scripted job fault attached at creation, if any.
    pub fault: Option<FaultKind>,
}

#[derive(Debug, Clone)]
pub(crate) struct Job {
    pub id: String,
    pub seq: u64,
    pub model: String,
    pub input: Value,
    pub created: Instant,
    pub created_at: SystemTime,
    pub progression: Progression,
    pub polls: u32,
    pub fault: Option<FaultKind>,
    pub canceled: bool,
    /// Forced to completion (Replicate `Prefer: wait` with poll-based progression).
    pub force_done: bool,
    /// Replicate `Cancel-After`: the job is cancelled (or aborted if not started) once this passes.
    pub deadline: Option<Instant>,
    /// Spellings that replace the provider's queued / running status (from settings at creation).
    pub labels: (Option<String>, Option<String>),
    pub outputs: Vec<String>,
    /// Provider-specific data computed at creation (costs, sizes...).
    pub meta: Value,
}

/// Natural phase from progression only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Natural {
    Queued,
    Running,
    Done,
}

impl Job {
    pub(crate) fn new(
        id: String,
        seq: u64,
        model: String,
        input: Value,
        progression: Progression,
        fault: Option<FaultKind>,
    ) -> Self {
        Self {
            id,
            seq,
            model,
            input,
            created: Instant::now(),
            created_at: SystemTime::now(),
            progression,
            polls: 0,
            fault,
            canceled: false,
            force_done: false,
            deadline: None,
            labels: (None, None),
            outputs: Vec::new(),
            meta: Value::Null,
        }
    }

    fn natural(&self, now: Instant) -> Natural {
        if self.force_done {
            return Natural::Done;
        }
        match self.progression {
            Progression::Polls { queued, running } => {
                if self.polls <= queued {
                    Natural::Queued
                } else if self.polls <= queued.saturating_add(running) {
                    Natural::Running
                } else {
                    Natural::Done
                }
            }
            Progression::Timed { queued, running } => {
                let e = now.saturating_duration_since(self.created);
                if e < queued {
                    Natural::Queued
                } else if e < queued + running {
                    Natural::Running
                } else {
                    Natural::Done
                }
            }
        }
    }

    /// The state now, without counting a poll.
    pub(crate) fn state(&self) -> JobState {
        if self.canceled {
            return JobState::Canceled;
        }
        let now = Instant::now();
        let n = self.natural(now);
        if let Some(d) = self.deadline
            && now >= d
            && self.natural(d) != Natural::Done
        {
            // Judge where the job was when the deadline passed.
            let started =
                self.natural(d) == Natural::Running && !matches!(self.fault, Some(FaultKind::StuckInQueue));
            return if started {
                JobState::Canceled
            } else {
                JobState::Aborted
            };
        }
        match (&self.fault, n) {
            (Some(FaultKind::StuckInQueue), _) | (_, Natural::Queued) => JobState::Queued,
            (Some(FaultKind::UnknownStatus(s)), _) => JobState::Unknown(s.clone()),
            (Some(FaultKind::Stuck), _) | (_, Natural::Running) => JobState::Running,
            (Some(FaultKind::FailAfterRunning), Natural::Done) => JobState::Failed,
            (Some(FaultKind::ContentRejected), Natural::Done) => JobState::Rejected,
            (_, Natural::Done) => JobState::Succeeded,
        }
    }

    /// The queued status spelling: the configured override or the provider's `default`.
    pub(crate) fn queued_label<'a>(&'a self, default: &'a str) -> &'a str {
        self.labels.0.as_deref().unwrap_or(default)
    }

    /// The running status spelling: the configured override or the provider's `default`.
    pub(crate) fn running_label<'a>(&'a self, default: &'a str) -> &'a str {
        self.labels.1.as_deref().unwrap_or(default)
    }

    /// Running progress in 0..1 for providers that report it.
    pub(crate) fn progress(&self) -> f64 {
        match self.state() {
            JobState::Queued => 0.0,
            JobState::Running | JobState::Unknown(_) => match self.progression {
                Progression::Polls { queued, running } if running > 0 => {
                    let done = self.polls.saturating_sub(queued) as f64;
                    (done / (running as f64 + 1.0)).clamp(0.0, 0.99)
                }
                Progression::Timed { queued, running } if !running.is_zero() => {
                    let e = Instant::now()
                        .saturating_duration_since(self.created)
                        .saturating_sub(queued);
                    (e.as_secs_f64() / running.as_secs_f64()).clamp(0.0, 0.99)
                }
                _ => 0.5,
            },
            JobState::Succeeded => 1.0,
            _ => 0.0,
        }
    }

    pub(crate) fn record(&self) -> JobRecord {
        JobRecord {
            id: self.id.clone(),
            model: self.model.clone(),
            input: self.input.clone(),
            state: self.state(),
            polls: self.polls,
            outputs: self.outputs.clone(),
            canceled: self.canceled,
            fault: self.fault.clone(),
        }
    }
}

const SHARDS: usize = 32;

/// Jobs by id, sharded so that concurrent polls of different jobs rarely share a lock.
#[derive(Debug)]
pub(crate) struct JobStore {
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Job>>>,
}

impl Default for JobStore {
    fn default() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl JobStore {
    fn shard(&self, id: &str) -> &Mutex<HashMap<String, Job>> {
        let h = self.hasher.hash_one(id) as usize;
        // `shards` is never empty, so the index is in range.
        &self.shards[h % self.shards.len()]
    }

    pub(crate) fn insert(&self, job: Job) {
        lock(self.shard(&job.id)).insert(job.id.clone(), job);
    }

    /// Run `f` on the job, if it exists.
    pub(crate) fn with<R>(&self, id: &str, f: impl FnOnce(&mut Job) -> R) -> Option<R> {
        lock(self.shard(id)).get_mut(id).map(f)
    }

    pub(crate) fn remove(&self, id: &str) -> Option<Job> {
        lock(self.shard(id)).remove(id)
    }

    /// Every job, oldest first.
    pub(crate) fn all(&self) -> Vec<Job> {
        let mut v: Vec<Job> = self
            .shards
            .iter()
            .flat_map(|s| lock(s).values().cloned().collect::<Vec<_>>())
            .collect();
        v.sort_by_key(|j| j.seq);
        v
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            lock(s).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(p: Progression, fault: Option<FaultKind>) -> Job {
        Job::new("j".into(), 0, "m".into(), Value::Null, p, fault)
    }

    #[test]
    fn poll_progression() {
        let mut j = job(Progression::polls(1, 2), None);
        let mut seen = Vec::new();
        for _ in 0..5 {
            j.polls += 1;
            seen.push(j.state());
        }
        assert_eq!(
            seen,
            vec![
                JobState::Queued,
                JobState::Running,
                JobState::Running,
                JobState::Succeeded,
                JobState::Succeeded
            ]
        );
    }

    #[test]
    fn faults_shape_the_lifecycle() {
        let mut stuck = job(Progression::immediate(), Some(FaultKind::Stuck));
        let mut in_queue = job(Progression::immediate(), Some(FaultKind::StuckInQueue));
        let mut failing = job(Progression::polls(0, 1), Some(FaultKind::FailAfterRunning));
        for _ in 0..10 {
            stuck.polls += 1;
            in_queue.polls += 1;
            failing.polls += 1;
        }
        assert_eq!(stuck.state(), JobState::Running);
        assert_eq!(in_queue.state(), JobState::Queued);
        assert_eq!(failing.state(), JobState::Failed);
        failing.canceled = true;
        assert_eq!(failing.state(), JobState::Canceled);
    }

    #[tokio::test(start_paused = true)]
    async fn timed_progression_uses_tokio_time() {
        let j = job(
            Progression::timed(Duration::from_secs(5), Duration::from_secs(5)),
            None,
        );
        assert_eq!(j.state(), JobState::Queued);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(j.state(), JobState::Running);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(j.state(), JobState::Succeeded);
    }
}
