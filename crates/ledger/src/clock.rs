//! Injectable time.

use std::cell::Cell;
use std::fmt;
use std::sync::Mutex;
use std::thread::LocalKey;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};

/// Where the ledger reads the time: periods, expiry of funds and TTLs of holds all use it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Clone, Copy, Default, Debug)]
pub struct SystemClock;

/// The date of the day a thread last read the system clock on, and that day's number since the epoch.
type Day = Cell<Option<(u64, NaiveDate)>>;

thread_local! {
    static DAY: Day = const { Cell::new(None) };
}

impl Clock for SystemClock {
    /// [`Utc::now`], with the calendar date of the day remembered per thread: turning a day number into a
    /// date costs more than reading the clock, and the day rarely changes between two calls.
    fn now(&self) -> DateTime<Utc> {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => since_epoch(since, &DAY).unwrap_or_else(Utc::now),
            Err(_) => Utc::now(),
        }
    }
}

/// The instant `since` after the Unix epoch, as [`DateTime::from_timestamp`] gives it, taking the date from
/// `day` when it is that day's (and remembering it there otherwise).
fn since_epoch(since: Duration, day: &'static LocalKey<Day>) -> Option<DateTime<Utc>> {
    let (secs, nanos) = (since.as_secs(), since.subsec_nanos());
    let (n, second) = (secs / 86_400, (secs % 86_400) as u32);
    match day.get() {
        Some((d, date)) if d == n => {
            let time = NaiveTime::from_num_seconds_from_midnight_opt(second, nanos)?;
            Some(date.and_time(time).and_utc())
        }
        _ => {
            let t = DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)?;
            day.set(Some((n, t.date_naive())));
            Some(t)
        }
    }
}

/// A clock that moves only when told to: for tests.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<DateTime<Utc>>,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: Mutex::new(start),
        }
    }

    /// Sets the time.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = to;
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system clock agrees with chrono's, from the first call of a thread (no date remembered) on.
    #[test]
    fn system_clock_is_utc_now() {
        let check = || {
            for _ in 0..1000 {
                let before = Utc::now();
                let t = SystemClock.now();
                let after = Utc::now();
                assert!(before <= t && t <= after, "{before} {t} {after}");
            }
        };
        check();
        std::thread::spawn(check).join().unwrap();
    }

    /// With a date remembered or not, across midnights, the instant is chrono's.
    #[test]
    fn a_remembered_day_gives_chronos_instant() {
        thread_local! {
            static TEST_DAY: Day = const { Cell::new(None) };
        }
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut secs: u64 = 1_700_000_000;
        for i in 0..100_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Mostly small steps (the same day), sometimes onto and across midnight.
            secs += match i % 7 {
                0 => 86_400 - secs % 86_400,
                1 => x % 200_000,
                _ => x % 5,
            };
            let nanos = (x >> 20) as u32 % 1_000_000_000;
            let got = since_epoch(Duration::new(secs, nanos), &TEST_DAY).unwrap();
            let want = DateTime::from_timestamp(secs as i64, nanos).unwrap();
            assert_eq!(got, want);
        }
    }
}
