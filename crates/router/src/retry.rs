//! Retry policy: bounded by count and by elapsed time, jittered exponential backoff, `Retry-After`
//! honoured, and a retry budget shared by all jobs so an outage cannot turn into a retry storm.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower::retry::budget::{Budget, TpsBudget};

/// How one candidate is retried before the router fails over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Retries of the same candidate after the first attempt (0 = fail over at once).
    pub max_retries: u32,
    /// No retry starts once this much time has passed since the job's first attempt.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Duration,
    /// First backoff.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Largest backoff.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the router fails over instead.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 2,
            max_elapsed: Duration::from_secs(60),
            base_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The exponential ceiling for retry number `retry` (1-based): `base × 2^(retry-1)`, capped.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1).min(30))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// The wait before retry number `retry`: "full jitter" (uniform in `[0, ceiling]`), but never less than
    /// the provider's `Retry-After`. `None` when the provider asks for longer than `max_retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &Jitter) -> Option<Duration> {
        let jittered = rng.up_to(self.ceiling(retry));
        match retry_after {
            Some(after) if after > self.max_retry_after => None,
            Some(after) => Some(after.max(jittered)),
            None => Some(jittered),
        }
    }
}

/// A source of jitter; seedable so tests are deterministic.
#[derive(Debug)]
pub struct Jitter(Mutex<fastrand::Rng>);

impl Jitter {
    /// Seeded from the OS.
    pub fn new() -> Self {
        Self(Mutex::new(fastrand::Rng::new()))
    }

    /// Seeded, for reproducible tests.
    pub fn with_seed(seed: u64) -> Self {
        Self(Mutex::new(fastrand::Rng::with_seed(seed)))
    }

    /// Uniform in `[0, max]` at millisecond resolution.
    pub fn up_to(&self, max: Duration) -> Duration {
        let ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
        let mut rng = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Duration::from_millis(rng.u64(0..=ms))
    }

    /// Uniform in `[0, n)`.
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        let mut rng = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rng.u64(0..n)
    }
}

impl Default for Jitter {
    fn default() -> Self {
        Self::new()
    }
}

/// Shared limits on retries across all jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryBudgetConfig {
    /// Retries allowed as a share of first attempts (0.2 = one retry per five jobs).
    pub retry_ratio: f32,
    /// Retries always allowed per second, however few first attempts there were.
    pub min_per_second: u32,
    /// How long a first attempt's deposit counts.
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            retry_ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

/// A retry budget (tower's token-per-second budget): each first attempt deposits, each retry withdraws.
#[derive(Debug)]
pub struct RetryBudget(TpsBudget);

impl RetryBudget {
    /// A budget from its configuration.
    pub fn new(config: &RetryBudgetConfig) -> Self {
        let ttl = config.ttl.clamp(Duration::from_secs(1), Duration::from_secs(60));
        let ratio = config.retry_ratio.clamp(0.0, 1000.0);
        Self(TpsBudget::new(ttl, config.min_per_second, ratio))
    }

    /// Records a first attempt.
    pub fn deposit(&self) {
        self.0.deposit();
    }

    /// Takes a retry token; `false` means the budget is spent and the router should fail over instead.
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_and_is_capped() {
        let p = RetryPolicy {
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            ..RetryPolicy::default()
        };
        assert_eq!(p.ceiling(1), Duration::from_millis(100));
        assert_eq!(p.ceiling(2), Duration::from_millis(200));
        assert_eq!(p.ceiling(4), Duration::from_millis(800));
        assert_eq!(p.ceiling(5), Duration::from_millis(1000));
        assert_eq!(p.ceiling(200), Duration::from_millis(1000));
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_varies() {
        let p = RetryPolicy::default();
        let j = Jitter::with_seed(7);
        let delays: Vec<Duration> = (0..200).map(|_| p.delay(3, None, &j).unwrap()).collect();
        assert!(delays.iter().all(|d| *d <= p.ceiling(3)));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(
            distinct.len() > 50,
            "full jitter should spread delays, got {}",
            distinct.len()
        );
    }

    #[test]
    fn retry_after_is_a_floor_and_too_long_means_fail_over() {
        let p = RetryPolicy {
            max_retry_after: Duration::from_secs(5),
            ..RetryPolicy::default()
        };
        let j = Jitter::with_seed(1);
        for _ in 0..50 {
            let d = p.delay(1, Some(Duration::from_secs(2)), &j).unwrap();
            assert!(d >= Duration::from_secs(2));
        }
        assert_eq!(p.delay(1, Some(Duration::from_secs(6)), &j), None);
    }

    #[test]
    fn budget_limits_retries_to_a_share_of_first_attempts() {
        let b = RetryBudget::new(&RetryBudgetConfig {
            retry_ratio: 0.5,
            min_per_second: 0,
            ttl: Duration::from_secs(10),
        });
        for _ in 0..10 {
            b.deposit();
        }
        let allowed = (0..100).filter(|_| b.withdraw()).count();
        assert!(
            (4..=6).contains(&allowed),
            "about half of 10 deposits, got {allowed}"
        );
        assert!(!b.withdraw());
    }
}
