//! Circuit breaker per deployment.
//!
//! Closed → Open when either `consecutive_failures` failures happen in a row, or the failure ratio over a
//! sliding window crosses `failure_ratio` (with at least `min_calls` calls in the window). Open rejects
//! calls until `cooldown` has passed, then lets `half_open_probes` probe calls through (half-open): a
//! successful probe closes the breaker, a failed one re-opens it for another cooldown.
//!
//! Only failures that say something about the deployment's health count (unavailable, timeout, rate
//! limited, malformed responses, provider-side failures). A refused prompt or an invalid request is the
//! caller's problem and leaves the breaker alone. An auth failure forces the breaker open for
//! `auth_cooldown`: the deployment is down until its credentials are fixed.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use genroute_core::ErrorKind;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Breaker thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Open after this many health failures in a row (0 disables the rule).
    pub consecutive_failures: u32,
    /// Open when this share of calls in the window failed (e.g. 0.5); `None` disables the rule.
    pub failure_ratio: Option<f64>,
    /// Calls needed in the window before the ratio rule applies.
    pub min_calls: u32,
    /// The sliding window for the ratio rule.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long the breaker stays open before probing.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// How long an auth failure takes the deployment out.
    #[serde(with = "humantime_serde")]
    pub auth_cooldown: Duration,
    /// Probe calls allowed at once while half-open.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: Some(0.5),
            min_calls: 20,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
            auth_cooldown: Duration::from_secs(600),
            half_open_probes: 1,
        }
    }
}

/// The breaker's state, as seen from outside.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the cooldown ends.
    Open,
    /// A limited number of probe calls flow.
    HalfOpen,
}

/// How a call ended, for the breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallResult {
    /// The deployment answered well.
    Success,
    /// The deployment failed in a way that says something about its health.
    Failure,
    /// The credentials were refused: take the deployment out for longer.
    AuthFailure,
    /// Says nothing about the deployment's health (bad input, moderation, cancelled by us).
    Neutral,
}

impl CallResult {
    /// Classifies an error kind.
    pub fn from_error(kind: ErrorKind) -> Self {
        match kind {
            ErrorKind::Unavailable
            | ErrorKind::Timeout
            | ErrorKind::RateLimited
            | ErrorKind::MalformedResponse
            | ErrorKind::Failed => CallResult::Failure,
            ErrorKind::Auth | ErrorKind::InsufficientCredits => CallResult::AuthFailure,
            _ => CallResult::Neutral,
        }
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive: u32,
    window: VecDeque<(Instant, bool)>,
}

/// A circuit breaker. Cheap to share behind an `Arc`; all methods take `&self`.
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Permission to make one call; report its result with [`CircuitBreaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Permit {
    probe: bool,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive: 0,
                window: VecDeque::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means another thread panicked mid-update; the counters stay usable.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current state (an expired open state reads as half-open).
    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if Instant::now() >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// Whether a call would be let through now, without taking a permit (used while planning).
    pub fn is_available(&self) -> bool {
        let inner = self.lock();
        match inner.state {
            State::Closed => true,
            State::Open { until } => Instant::now() >= until,
            State::HalfOpen { in_flight } => in_flight < self.config.half_open_probes,
        }
    }

    /// Asks to make a call. `None` means the breaker is open (or half-open with its probes busy).
    pub fn try_acquire(&self) -> Option<Permit> {
        let mut inner = self.lock();
        let now = Instant::now();
        match inner.state {
            State::Closed => Some(Permit { probe: false }),
            State::Open { until } if now >= until => {
                inner.state = State::HalfOpen { in_flight: 1 };
                Some(Permit { probe: true })
            }
            State::Open { .. } => None,
            State::HalfOpen { in_flight } if in_flight < self.config.half_open_probes => {
                inner.state = State::HalfOpen {
                    in_flight: in_flight + 1,
                };
                Some(Permit { probe: true })
            }
            State::HalfOpen { .. } => None,
        }
    }

    /// Records how a permitted call ended.
    pub fn record(&self, permit: Permit, result: CallResult) {
        let mut inner = self.lock();
        let now = Instant::now();
        if permit.probe
            && let State::HalfOpen { in_flight } = inner.state
        {
            inner.state = State::HalfOpen {
                in_flight: in_flight.saturating_sub(1),
            };
        }
        match result {
            CallResult::Neutral => {}
            CallResult::Success => {
                inner.consecutive = 0;
                self.push_window(&mut inner, now, true);
                if matches!(inner.state, State::HalfOpen { .. }) {
                    inner.state = State::Closed;
                    inner.window.clear();
                }
            }
            CallResult::AuthFailure => {
                inner.state = State::Open {
                    until: now + self.config.auth_cooldown,
                };
                inner.consecutive = 0;
                inner.window.clear();
            }
            CallResult::Failure => {
                inner.consecutive = inner.consecutive.saturating_add(1);
                self.push_window(&mut inner, now, false);
                let trip = match inner.state {
                    State::HalfOpen { .. } => true,
                    State::Open { .. } => false,
                    State::Closed => self.should_trip(&inner),
                };
                if trip {
                    inner.state = State::Open {
                        until: now + self.config.cooldown,
                    };
                    inner.consecutive = 0;
                    inner.window.clear();
                }
            }
        }
    }

    fn push_window(&self, inner: &mut Inner, now: Instant, ok: bool) {
        inner.window.push_back((now, ok));
        while let Some((t, _)) = inner.window.front() {
            if now.duration_since(*t) > self.config.window {
                inner.window.pop_front();
            } else {
                break;
            }
        }
    }

    fn should_trip(&self, inner: &Inner) -> bool {
        if self.config.consecutive_failures > 0 && inner.consecutive >= self.config.consecutive_failures {
            return true;
        }
        if let Some(ratio) = self.config.failure_ratio {
            let calls = inner.window.len();
            if calls >= self.config.min_calls as usize && calls > 0 {
                let failures = inner.window.iter().filter(|(_, ok)| !ok).count();
                #[allow(clippy::cast_precision_loss)] // counts are small; a ratio needs no exactness
                let observed = failures as f64 / calls as f64;
                return observed >= ratio;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: None,
            min_calls: 4,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(5),
            auth_cooldown: Duration::from_secs(100),
            half_open_probes: 1,
        }
    }

    fn fail(b: &CircuitBreaker) {
        let p = b.try_acquire().unwrap();
        b.record(p, CallResult::Failure);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_after_consecutive_failures_then_half_open_then_closed() {
        let b = CircuitBreaker::new(cfg());
        fail(&b);
        fail(&b);
        // A success resets the run.
        let p = b.try_acquire().unwrap();
        b.record(p, CallResult::Success);
        fail(&b);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Closed);
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_none());
        assert!(!b.is_available());

        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().unwrap();
        // Only one probe at a time.
        assert!(b.try_acquire().is_none());
        b.record(probe, CallResult::Success);
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.try_acquire().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn failed_probe_reopens_for_another_cooldown() {
        let b = CircuitBreaker::new(cfg());
        for _ in 0..3 {
            fail(&b);
        }
        tokio::time::advance(Duration::from_secs(5)).await;
        let probe = b.try_acquire().unwrap();
        b.record(probe, CallResult::Failure);
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn ratio_rule_needs_min_calls_and_forgets_old_calls() {
        let mut c = cfg();
        c.consecutive_failures = 0;
        c.failure_ratio = Some(0.5);
        let b = CircuitBreaker::new(c);
        for ok in [true, false, true] {
            let p = b.try_acquire().unwrap();
            b.record(
                p,
                if ok {
                    CallResult::Success
                } else {
                    CallResult::Failure
                },
            );
        }
        assert_eq!(b.state(), BreakerState::Closed, "below min_calls");
        // Old calls slide out of the window.
        tokio::time::advance(Duration::from_secs(11)).await;
        for ok in [true, true, false] {
            let p = b.try_acquire().unwrap();
            b.record(
                p,
                if ok {
                    CallResult::Success
                } else {
                    CallResult::Failure
                },
            );
        }
        assert_eq!(b.state(), BreakerState::Closed, "1/3 failed in window");
        fail(&b);
        assert_eq!(b.state(), BreakerState::Open, "2/4 failed reaches 0.5");
    }

    #[tokio::test(start_paused = true)]
    async fn neutral_results_do_not_count_and_auth_takes_the_deployment_out() {
        let b = CircuitBreaker::new(cfg());
        for _ in 0..10 {
            let p = b.try_acquire().unwrap();
            b.record(p, CallResult::from_error(ErrorKind::ContentRejected));
        }
        assert_eq!(b.state(), BreakerState::Closed);
        let p = b.try_acquire().unwrap();
        b.record(p, CallResult::from_error(ErrorKind::Auth));
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(99)).await;
        assert_eq!(b.state(), BreakerState::Open);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }
}
