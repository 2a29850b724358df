//! Fault scripts: an ordered queue of failures an emulator applies to the requests it receives.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::log::Endpoint;

/// What goes wrong. Each emulator renders a kind in its provider's real wire shape (see the crate docs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FaultKind {
    /// Answer with this 5xx status (500, 502, 503, 504) and the provider's body for it.
    ServerError {
        /// The HTTP status to answer with.
        status: u16,
    },
    /// Answer 429 with the provider's rate-limit body and `Retry-After` (OpenAI adds `retry-after-ms`).
    RateLimited {
        /// The advertised wait.
        retry_after: Duration,
    },
    /// Wait this long, then answer normally (the client sees a slow provider or times out).
    Slow {
        /// How long to wait before handling the request.
        delay: Duration,
    },
    /// Answer 200 with `Content-Type: application/json` and a truncated, unparseable JSON body.
    MalformedJson,
    /// Answer 200 with a syntactically valid JSON body of exactly this many bytes (at least 16).
    Oversized {
        /// Body size in bytes.
        bytes: usize,
    },
    /// Refuse the create exactly as the provider reports an exhausted balance or quota.
    CreditExhausted,
    /// Reject the content: synchronous providers answer the provider's moderation error; queue
    /// providers accept the job and fail it with their moderation failure.
    ContentRejected,
    /// The job never leaves its running state (after its queued phase).
    Stuck,
    /// The job never leaves its queued state.
    StuckInQueue,
    /// After its queued phase the job reports this status string, forever.
    UnknownStatus(String),
    /// The job runs and then fails with the provider's generic (retryable) failure.
    FailAfterRunning,
    /// Answer with exactly this response (an escape hatch for shapes the emulator does not model).
    Raw {
        /// HTTP status.
        status: u16,
        /// `Content-Type` header value.
        content_type: String,
        /// Extra response headers.
        headers: Vec<(String, String)>,
        /// Body bytes.
        body: Vec<u8>,
    },
}

/// When in a request's handling a fault is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Before the body is validated: transport-like and account faults.
    Request,
    /// After validation, when the job is created: job faults.
    Job,
}

impl FaultKind {
    pub(crate) fn phase(&self) -> Phase {
        match self {
            FaultKind::ContentRejected
            | FaultKind::Stuck
            | FaultKind::StuckInQueue
            | FaultKind::UnknownStatus(_)
            | FaultKind::FailAfterRunning => Phase::Job,
            _ => Phase::Request,
        }
    }

    /// Which endpoints this kind can apply to when the fault has no explicit endpoint scope.
    fn applies_to(&self, endpoint: Endpoint) -> bool {
        match self {
            FaultKind::CreditExhausted => endpoint == Endpoint::Create,
            k if k.phase() == Phase::Job => endpoint == Endpoint::Create,
            _ => !matches!(endpoint, Endpoint::File),
        }
    }
}

/// One scripted fault: a kind, an optional scope (endpoint, model) and how many requests it affects.
///
/// ```
/// use std::time::Duration;
/// use genroute_emulators::{Endpoint, Fault};
/// let f = Fault::server_error(503).times(2).on(Endpoint::Create).for_model("fal-ai/flux/dev");
/// assert_eq!(f.remaining(), 2);
/// let _ = Fault::rate_limited(Duration::from_secs(3));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    kind: FaultKind,
    endpoint: Option<Endpoint>,
    model: Option<String>,
    times: u32,
}

impl Fault {
    /// A fault of this kind, applying once, to any endpoint it can apply to.
    pub fn new(kind: FaultKind) -> Self {
        Self {
            kind,
            endpoint: None,
            model: None,
            times: 1,
        }
    }
    /// `ServerError` with this status (500, 502, 503, 504).
    pub fn server_error(status: u16) -> Self {
        Self::new(FaultKind::ServerError { status })
    }
    /// `RateLimited` advertising this wait.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Self::new(FaultKind::RateLimited { retry_after })
    }
    /// `Slow`: delay, then answer normally.
    pub fn slow(delay: Duration) -> Self {
        Self::new(FaultKind::Slow { delay })
    }
    /// `MalformedJson`.
    pub fn malformed_json() -> Self {
        Self::new(FaultKind::MalformedJson)
    }
    /// `Oversized` body of `bytes` bytes.
    pub fn oversized(bytes: usize) -> Self {
        Self::new(FaultKind::Oversized { bytes })
    }
    /// `CreditExhausted` (creates only).
    pub fn credit_exhausted() -> Self {
        Self::new(FaultKind::CreditExhausted)
    }
    /// `ContentRejected` (creates only).
    pub fn content_rejected() -> Self {
        Self::new(FaultKind::ContentRejected)
    }
    /// `Stuck` in the running state (creates only).
    pub fn stuck() -> Self {
        Self::new(FaultKind::Stuck)
    }
    /// `StuckInQueue` (creates only).
    pub fn stuck_in_queue() -> Self {
        Self::new(FaultKind::StuckInQueue)
    }
    /// `UnknownStatus` reporting `status` (creates only).
    pub fn unknown_status(status: impl Into<String>) -> Self {
        Self::new(FaultKind::UnknownStatus(status.into()))
    }
    /// `FailAfterRunning` (creates only).
    pub fn fail_after_running() -> Self {
        Self::new(FaultKind::FailAfterRunning)
    }
    /// `Raw`: answer exactly this status, content type and body.
    pub fn raw(status: u16, content_type: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Self::new(FaultKind::Raw {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        })
    }
    /// Apply to the next `n` matching requests (default 1). `0` is treated as 1.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n.max(1);
        self
    }
    /// Only requests to this endpoint match.
    #[must_use]
    pub fn on(mut self, endpoint: Endpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
    /// Only requests for this model id match (for follow-up requests, the model of the job they address).
    #[must_use]
    pub fn for_model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }
    /// The kind.
    pub fn kind(&self) -> &FaultKind {
        &self.kind
    }
    /// How many more requests this fault will affect.
    pub fn remaining(&self) -> u32 {
        self.times
    }

    fn matches(&self, endpoint: Endpoint, model: Option<&str>) -> bool {
        let endpoint_ok = match self.endpoint {
            Some(e) => e == endpoint && (self.kind.phase() == Phase::Request || e == Endpoint::Create),
            None => self.kind.applies_to(endpoint),
        };
        let model_ok = match (&self.model, model) {
            (None, _) => true,
            (Some(want), Some(got)) => want == got,
            (Some(_), None) => false,
        };
        endpoint_ok && model_ok
    }
}

/// The ordered fault queue of one emulator. Get it with [`crate::EmulatorHandle::faults`].
///
/// Each request looks for the **first** fault in the queue that matches it (endpoint and model scope); if
/// that fault belongs to the request's current phase it is applied and its count decremented, otherwise the
/// request goes on unfaulted for now. So faults fire in the order they were pushed. When the queue is empty
/// the check is one atomic load.
#[derive(Debug, Default)]
pub struct FaultScript {
    pending: AtomicUsize,
    fired: AtomicU64,
    queue: Mutex<VecDeque<Fault>>,
}

impl FaultScript {
    /// Append a fault to the queue.
    pub fn push(&self, fault: Fault) {
        let mut q = lock(&self.queue);
        q.push_back(fault);
        self.pending.store(q.len(), Ordering::Release);
    }

    /// Append several faults in order.
    pub fn push_all(&self, faults: impl IntoIterator<Item = Fault>) {
        for f in faults {
            self.push(f);
        }
    }

    /// Remove every queued fault.
    pub fn clear(&self) {
        let mut q = lock(&self.queue);
        q.clear();
        self.pending.store(0, Ordering::Release);
    }

    /// The faults still queued (with their remaining counts).
    pub fn queued(&self) -> Vec<Fault> {
        lock(&self.queue).iter().cloned().collect()
    }

    /// Whether no fault is queued.
    pub fn is_empty(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// How many times a fault has been applied since start.
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::Relaxed)
    }

    pub(crate) fn take(&self, endpoint: Endpoint, model: Option<&str>, phase: Phase) -> Option<FaultKind> {
        if self.pending.load(Ordering::Acquire) == 0 {
            return None;
        }
        let mut q = lock(&self.queue);
        let idx = q.iter().position(|f| f.matches(endpoint, model))?;
        let f = q.get_mut(idx)?;
        if f.kind.phase() != phase {
            return None;
        }
        let kind = f.kind.clone();
        f.times -= 1;
        if f.times == 0 {
            q.remove(idx);
        }
        self.pending.store(q.len(), Ordering::Release);
        self.fired.fetch_add(1, Ordering::Relaxed);
        Some(kind)
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_in_order_and_respect_phase() {
        let s = FaultScript::default();
        s.push(Fault::stuck());
        s.push(Fault::server_error(500));
        // The first matching fault is a job fault: the request phase must not skip past it.
        assert_eq!(s.take(Endpoint::Create, None, Phase::Request), None);
        assert_eq!(s.take(Endpoint::Create, None, Phase::Job), Some(FaultKind::Stuck));
        assert_eq!(
            s.take(Endpoint::Create, None, Phase::Request),
            Some(FaultKind::ServerError { status: 500 })
        );
        assert!(s.is_empty());
        assert_eq!(s.fired(), 2);
    }

    #[test]
    fn scope_and_times() {
        let s = FaultScript::default();
        s.push(
            Fault::server_error(503)
                .times(2)
                .on(Endpoint::Status)
                .for_model("m"),
        );
        assert_eq!(s.take(Endpoint::Create, Some("m"), Phase::Request), None);
        assert_eq!(s.take(Endpoint::Status, Some("other"), Phase::Request), None);
        assert_eq!(s.take(Endpoint::Status, None, Phase::Request), None);
        assert!(s.take(Endpoint::Status, Some("m"), Phase::Request).is_some());
        assert_eq!(s.queued()[0].remaining(), 1);
        assert!(s.take(Endpoint::Status, Some("m"), Phase::Request).is_some());
        assert!(s.take(Endpoint::Status, Some("m"), Phase::Request).is_none());
    }

    #[test]
    fn job_faults_only_apply_to_creates() {
        let s = FaultScript::default();
        s.push(Fault::credit_exhausted());
        assert_eq!(s.take(Endpoint::Status, None, Phase::Request), None);
        assert_eq!(
            s.take(Endpoint::Create, None, Phase::Request),
            Some(FaultKind::CreditExhausted)
        );
    }
}
