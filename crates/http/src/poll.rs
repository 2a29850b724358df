//! Polling a provider's queue until the job ends, and cancelling it upstream when we stop caring.
//!
//! [`poll_until_done`] calls the adapter's status check repeatedly with capped exponential backoff until a
//! terminal status, the call's deadline ([`CallContext::deadline`], and/or [`PollConfig::max_wait`]), or too
//! many consecutive unknown statuses. It reports progress through [`CallContext::report`]. It runs on
//! tokio time, so tests can use paused time.
//!
//! [`CancelGuard`] holds the upstream cancel request: dropping it (the caller dropped the future, the
//! deadline passed, polling failed) spawns the cancel; [`CancelGuard::disarm`] once the job has ended.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use genroute_core::{Billed, CallContext, ErrorKind, ProgressEvent, ProviderError, Stage};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// A provider's job status, mapped from its own spelling.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Accepted, waiting to run.
    Queued,
    /// Running.
    Running,
    /// Done and successful (or, for fal, done: the result decides).
    Succeeded,
    /// Done and failed.
    Failed,
    /// Cancelled (by us, a deadline or the provider).
    Cancelled,
    /// A spelling we do not know: treated as not finished, up to a cap.
    Unknown,
}

impl JobStatus {
    /// Whether the job has ended.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }

    fn stage(self) -> Option<Stage> {
        match self {
            JobStatus::Queued => Some(Stage::Queued),
            JobStatus::Running => Some(Stage::Running),
            JobStatus::Succeeded => Some(Stage::Finalizing),
            JobStatus::Failed | JobStatus::Cancelled | JobStatus::Unknown => None,
        }
    }
}

/// One answer of a status check.
#[derive(Clone, PartialEq, Debug)]
pub struct StatusUpdate<T> {
    /// The mapped status.
    pub status: JobStatus,
    /// The provider's spelling, as received.
    pub provider_status: String,
    /// Fraction complete (0–1), if reported.
    pub fraction: Option<f32>,
    /// Queue position, if reported.
    pub queue_position: Option<u32>,
    /// Whatever the adapter needs from the answer (the parsed body, URLs...).
    pub payload: T,
}

impl<T> StatusUpdate<T> {
    /// An update with only a status.
    pub fn new(status: JobStatus, provider_status: impl Into<String>, payload: T) -> Self {
        Self {
            status,
            provider_status: provider_status.into(),
            fraction: None,
            queue_position: None,
            payload,
        }
    }
}

/// How to poll.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollConfig {
    /// Wait before the second check (the first is immediate).
    #[serde(with = "humantime_serde")]
    pub initial_interval: Duration,
    /// Longest wait between checks.
    #[serde(with = "humantime_serde")]
    pub max_interval: Duration,
    /// Each wait is the previous one times this (1 = constant interval).
    pub backoff_factor: u32,
    /// Consecutive unknown statuses (or temporary check failures) tolerated before giving up.
    pub max_consecutive_unknown: u32,
    /// Longest time to poll one job, on top of the call's deadline.
    #[serde(default, with = "humantime_serde")]
    pub max_wait: Option<Duration>,
    /// Set by adapters, not configuration: the provider bills nothing for a job that never left its queue
    /// and a cancel reliably stops it before it starts (fal, Replicate). A deadline that passes while the
    /// job was only ever seen queued is then reported unbilled; otherwise billing is unknown.
    #[serde(skip)]
    pub queue_time_unbilled: bool,
}

impl PollConfig {
    /// Declares the provider's queue time unbilled (see [`PollConfig::queue_time_unbilled`]).
    pub fn queue_time_unbilled(mut self, unbilled: bool) -> Self {
        self.queue_time_unbilled = unbilled;
        self
    }
}

impl Default for PollConfig {
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(5),
            backoff_factor: 2,
            max_consecutive_unknown: 10,
            max_wait: Some(Duration::from_secs(30 * 60)),
            queue_time_unbilled: false,
        }
    }
}

/// Polls `check` until the job ends; returns the terminal update (succeeded, failed or cancelled — the
/// adapter turns the last two into errors).
///
/// - The first check is immediate; then waits grow from `initial_interval` by `backoff_factor` up to
///   `max_interval`, stretched to a temporary error's `retry_after` when it says more.
/// - An `Unknown` status or a *temporary* check error (a 503 on the status URL) counts against
///   `max_consecutive_unknown`; any known status resets the count. Re-reading a status is not a retry of
///   the create: nothing new is started or billed.
/// - A non-temporary check error ends polling with that error.
/// - Past the deadline (the context's, or `max_wait`): a `Timeout` error carrying the provider job id so the
///   caller can resume it; dropping a [`CancelGuard`] then cancels upstream. Billing is unknown, except for
///   a job only ever seen queued on a provider whose queue time is unbilled
///   ([`PollConfig::queue_time_unbilled`]): that job never started, so the timeout is reported unbilled.
pub async fn poll_until_done<T, F, Fut>(
    ctx: &CallContext,
    config: &PollConfig,
    provider_job_id: &str,
    mut check: F,
) -> Result<StatusUpdate<T>, ProviderError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<StatusUpdate<T>, ProviderError>>,
{
    let start = Instant::now();
    let limit = match (ctx.remaining(), config.max_wait) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let deadline = limit.map(|l| start + l);
    // Whether the job may have started: any status other than `Queued` seen, or none seen yet.
    let mut may_have_started = false;
    let mut seen_any = false;
    let timeout = |may_have_started: bool| {
        let billed = if may_have_started || !config.queue_time_unbilled {
            Billed::Unknown
        } else {
            Billed::No
        };
        ProviderError::new(
            ErrorKind::Timeout,
            format!(
                "job {provider_job_id} did not finish within {:?}",
                limit.unwrap_or_default()
            ),
        )
        .billed(billed)
        .job_id(Some(provider_job_id.to_owned()))
    };
    let mut interval = config.initial_interval;
    let mut unknown_in_a_row = 0u32;
    let mut last_reported: Option<(JobStatus, String, Option<u32>, Option<u32>)> = None;
    loop {
        let result = match deadline {
            Some(d) => tokio::time::timeout_at(d, check())
                .await
                .map_err(|_| timeout(may_have_started || !seen_any))?,
            None => check().await,
        };
        let mut wait = interval;
        match result {
            Ok(update) if update.status.is_terminal() => return Ok(update),
            Ok(update) => {
                seen_any = true;
                if update.status != JobStatus::Queued {
                    may_have_started = true;
                }
                if update.status == JobStatus::Unknown {
                    unknown_in_a_row += 1;
                } else {
                    unknown_in_a_row = 0;
                }
                let key = (
                    update.status,
                    update.provider_status.clone(),
                    update.queue_position,
                    update.fraction.map(|f| (f * 1000.0) as u32),
                );
                if last_reported.as_ref() != Some(&key) {
                    if let Some(stage) = update.status.stage() {
                        ctx.report(ProgressEvent {
                            stage,
                            fraction: update.fraction,
                            queue_position: update.queue_position,
                            provider_job_id: Some(provider_job_id.to_owned()),
                            provider_status: Some(update.provider_status.clone()),
                        });
                    }
                    last_reported = Some(key);
                }
                if unknown_in_a_row > config.max_consecutive_unknown {
                    return Err(ProviderError::new(
                        ErrorKind::MalformedResponse,
                        format!(
                            "job {provider_job_id}: {unknown_in_a_row} unknown statuses in a row (last {:?})",
                            update.provider_status
                        ),
                    )
                    .billed(Billed::Unknown)
                    .job_id(Some(provider_job_id.to_owned())));
                }
            }
            Err(e) if e.is_temporary() => {
                unknown_in_a_row += 1;
                if unknown_in_a_row > config.max_consecutive_unknown {
                    return Err(e.job_id(Some(provider_job_id.to_owned())));
                }
                if let Some(hint) = e.retry_after_hint() {
                    wait = wait.max(hint);
                }
            }
            Err(e) => return Err(e.job_id(Some(provider_job_id.to_owned()))),
        }
        if let Some(d) = deadline
            && Instant::now() + wait >= d
        {
            // No further check fits before the deadline: the job keeps its whole time upstream, then stops.
            tokio::time::sleep_until(d).await;
            return Err(timeout(may_have_started || !seen_any));
        }
        tokio::time::sleep(wait).await;
        interval = interval
            .saturating_mul(config.backoff_factor.max(1))
            .min(config.max_interval);
    }
}

type CancelFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Cancels an upstream job when dropped, unless disarmed. The cancel request is spawned on the current
/// tokio runtime (fire and forget); with no runtime it is skipped.
#[must_use = "dropping the guard cancels the job at once"]
pub struct CancelGuard {
    cancel: Option<CancelFuture>,
}

impl std::fmt::Debug for CancelGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelGuard")
            .field("armed", &self.cancel.is_some())
            .finish()
    }
}

impl CancelGuard {
    /// A guard that will run `cancel` if dropped while armed.
    pub fn new(cancel: impl Future<Output = ()> + Send + 'static) -> Self {
        Self {
            cancel: Some(Box::pin(cancel)),
        }
    }

    /// The job ended by itself: do not cancel.
    pub fn disarm(mut self) {
        self.cancel = None;
    }

    /// Whether dropping would cancel.
    pub fn is_armed(&self) -> bool {
        self.cancel.is_some()
    }
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if let Some(cancel) = self.cancel.take()
            && let Ok(handle) = tokio::runtime::Handle::try_current()
        {
            // Counted until it finishes, so a program exiting right after can wait for the cancel to go out.
            let token = genroute_core::cleanup::begin();
            handle.spawn(async move {
                let _token = token;
                cancel.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_core::{Caller, JobId, TeamId};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    fn ctx() -> CallContext {
        CallContext::new(JobId::new("j").unwrap(), Caller::team(TeamId::new("t").unwrap()))
    }

    fn cfg() -> PollConfig {
        PollConfig {
            initial_interval: Duration::from_millis(100),
            max_interval: Duration::from_millis(400),
            backoff_factor: 2,
            max_consecutive_unknown: 2,
            max_wait: None,
            queue_time_unbilled: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn backs_off_reports_progress_and_returns_terminal() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let ctx = ctx().with_progress(Arc::new(move |e: ProgressEvent| {
            sink.lock()
                .unwrap()
                .push((e.stage, e.queue_position, e.provider_status))
        }));
        let script = [
            (JobStatus::Queued, "IN_QUEUE", Some(2)),
            (JobStatus::Queued, "IN_QUEUE", Some(2)),
            (JobStatus::Queued, "IN_QUEUE", Some(1)),
            (JobStatus::Running, "IN_PROGRESS", None),
            (JobStatus::Running, "IN_PROGRESS", None),
            (JobStatus::Succeeded, "COMPLETED", None),
        ];
        let calls = AtomicU32::new(0);
        let times = Mutex::new(Vec::new());
        let start = Instant::now();
        let done = poll_until_done(&ctx, &cfg(), "req_1", || {
            let i = calls.fetch_add(1, Ordering::SeqCst) as usize;
            times.lock().unwrap().push(start.elapsed());
            let (s, p, q) = script[i];
            async move {
                let mut u = StatusUpdate::new(s, p, i);
                u.queue_position = q;
                Ok(u)
            }
        })
        .await
        .unwrap();
        assert_eq!(done.status, JobStatus::Succeeded);
        assert_eq!(done.payload, 5);
        // 0, +100, +200, +400, +400 (capped), +400
        let ms: Vec<u128> = times.lock().unwrap().iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 100, 300, 700, 1100, 1500]);
        // Reported on change only; the terminal success is returned, not reported as Finalizing here.
        let seen = seen.lock().unwrap();
        assert_eq!(
            *seen,
            vec![
                (Stage::Queued, Some(2), Some("IN_QUEUE".to_owned())),
                (Stage::Queued, Some(1), Some("IN_QUEUE".to_owned())),
                (Stage::Running, None, Some("IN_PROGRESS".to_owned())),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn caps_unknown_statuses_and_tolerates_some() {
        // Two unknowns then a known status: fine.
        let calls = AtomicU32::new(0);
        let out = poll_until_done(&ctx(), &cfg(), "p", || {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                Ok(match i {
                    0 | 1 => StatusUpdate::new(JobStatus::Unknown, "weird", ()),
                    _ => StatusUpdate::new(JobStatus::Failed, "failed", ()),
                })
            }
        })
        .await
        .unwrap();
        assert_eq!(out.status, JobStatus::Failed);

        // Three in a row: give up, with the job id.
        let err = poll_until_done(&ctx(), &cfg(), "p2", || async {
            Ok(StatusUpdate::new(JobStatus::Unknown, "weird", ()))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::MalformedResponse);
        assert_eq!(err.provider_job_id(), Some("p2"));
        assert!(err.message().contains("weird"));
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_check_errors_count_as_unknown_others_end_polling() {
        let calls = AtomicU32::new(0);
        let start = Instant::now();
        let out = poll_until_done(&ctx(), &cfg(), "p", || {
            let i = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if i == 0 {
                    Err(ProviderError::new(ErrorKind::Unavailable, "503")
                        .retry_after(Some(Duration::from_secs(3))))
                } else {
                    Ok(StatusUpdate::new(JobStatus::Succeeded, "ok", ()))
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(out.status, JobStatus::Succeeded);
        // The retry-after hint stretched the wait.
        assert_eq!(start.elapsed(), Duration::from_secs(3));

        let err = poll_until_done(&ctx(), &cfg(), "p", || async {
            Err::<StatusUpdate<()>, _>(ProviderError::new(ErrorKind::Auth, "401"))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Auth);
        assert_eq!(err.provider_job_id(), Some("p"));
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_gives_a_timeout_with_the_job_id() {
        let mut c = cfg();
        c.max_wait = Some(Duration::from_secs(2));
        let start = Instant::now();
        let calls = AtomicU32::new(0);
        let err = poll_until_done(&ctx(), &c, "slow", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Ok(StatusUpdate::new(JobStatus::Running, "processing", ())) }
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.billing(), &Billed::Unknown);
        assert_eq!(err.provider_job_id(), Some("slow"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        // 0, .1, .3, .7, 1.1, 1.5, 1.9 → 7 checks
        assert_eq!(calls.load(Ordering::SeqCst), 7);

        // Queued only, on a provider that bills queue time or cannot cancel reliably: still unknown.
        let err = poll_until_done(&ctx(), &c, "queued", || async {
            Ok(StatusUpdate::new(JobStatus::Queued, "pending", ()))
        })
        .await
        .unwrap_err();
        assert_eq!(err.billing(), &Billed::Unknown);
        // A job only ever seen queued where queue time is unbilled never started: its timeout is not billed.
        let c = c.queue_time_unbilled(true);
        let err = poll_until_done(&ctx(), &c, "queued", || async {
            Ok(StatusUpdate::new(JobStatus::Queued, "PENDING", ()))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        assert_eq!(err.billing(), &Billed::No);
        assert_eq!(err.provider_job_id(), Some("queued"));
        // Seen running once, even if queued again after: billing unknown.
        let seen = AtomicU32::new(0);
        let err = poll_until_done(&ctx(), &c, "flip", || {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            async move {
                let status = if n == 1 {
                    JobStatus::Running
                } else {
                    JobStatus::Queued
                };
                Ok(StatusUpdate::new(status, "x", ()))
            }
        })
        .await
        .unwrap_err();
        assert_eq!(err.billing(), &Billed::Unknown);

        // A check that hangs is cut at the deadline too.
        let err = poll_until_done(&ctx(), &c, "hang", || async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(StatusUpdate::new(JobStatus::Running, "processing", ()))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);

        // The context's deadline counts as well.
        let short = ctx().with_timeout(Duration::from_millis(250));
        let err = poll_until_done(&short, &cfg(), "ctx", || async {
            Ok(StatusUpdate::new(JobStatus::Queued, "starting", ()))
        })
        .await
        .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_guard_spawns_on_drop_unless_disarmed() {
        let fired = Arc::new(AtomicU32::new(0));
        let f = Arc::clone(&fired);
        let guard = CancelGuard::new(async move {
            f.fetch_add(1, Ordering::SeqCst);
        });
        assert!(guard.is_armed());
        drop(guard);
        tokio::task::yield_now().await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);

        let f = Arc::clone(&fired);
        let guard = CancelGuard::new(async move {
            f.fetch_add(1, Ordering::SeqCst);
        });
        guard.disarm();
        tokio::task::yield_now().await;
        assert_eq!(fired.load(Ordering::SeqCst), 1);
    }
}
