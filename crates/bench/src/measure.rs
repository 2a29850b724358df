//! Measuring helpers: process CPU time (all threads), resident memory, percentiles, result files.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

/// Result type of the harness.
pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// CPU time consumed so far by this process (every thread, including threads that have exited), in
/// nanoseconds: `clock_gettime(CLOCK_PROCESS_CPUTIME_ID)`, the same clock as Python's
/// `time.process_time_ns()`. The emulators run in another process, so none of their CPU is in it.
pub fn process_cpu_ns() -> u64 {
    cpu_time::ProcessTime::try_now()
        .map(|t| u64::try_from(t.as_duration().as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Resident set size of this process in bytes (`VmRSS` of `/proc/self/status`).
pub fn rss_bytes() -> u64 {
    let Ok(text) = std::fs::read_to_string("/proc/self/status") else {
        return 0;
    };
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Latency samples of one measured mode.
#[derive(Default, Debug, Clone)]
pub struct Samples {
    /// Per-call wall times.
    pub latencies: Vec<Duration>,
    /// Process CPU spent over the measured batches.
    pub cpu_ns: u64,
    /// Calls measured.
    pub calls: u64,
}

impl Samples {
    /// The `q` quantile (0..=1) of the latencies, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        quantile_us(&self.latencies, q)
    }

    /// Client CPU per call, in microseconds.
    pub fn cpu_per_call_us(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        self.cpu_ns as f64 / self.calls as f64 / 1_000.0
    }

    /// The row for the result file.
    pub fn row(&self, name: &str) -> Value {
        json!({
            "name": name,
            "calls": self.calls,
            "p50_us": self.quantile_us(0.5),
            "p99_us": self.quantile_us(0.99),
            "cpu_us": self.cpu_per_call_us(),
        })
    }
}

/// The `q` quantile (nearest rank) of durations, in microseconds.
pub fn quantile_us(values: &[Duration], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v: Vec<Duration> = values.to_vec();
    v.sort_unstable();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1].as_secs_f64() * 1e6
}

/// Writes `{"rows": rows, ...extra}` to `dir/name.json`.
pub fn write_result(dir: &Path, name: &str, value: &Value) -> Res<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_vec_pretty(value)?,
    )?;
    Ok(())
}

/// Reads `--key value` options from the command line.
#[derive(Debug, Clone)]
pub struct Args(pub Vec<String>);

impl Args {
    /// The value after `--key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        let flag = format!("--{key}");
        self.0
            .iter()
            .position(|a| *a == flag)
            .and_then(|i| self.0.get(i + 1))
            .map(String::as_str)
    }

    /// A parsed value with a default.
    pub fn num<T: std::str::FromStr>(&self, key: &str, default: T) -> Res<T> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{key}: cannot parse {v:?}").into()),
        }
    }

    /// A required value.
    pub fn need(&self, key: &str) -> Res<&str> {
        self.get(key).ok_or_else(|| format!("--{key} is required").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(quantile_us(&v, 0.5), 50.0);
        assert_eq!(quantile_us(&v, 0.99), 99.0);
        assert_eq!(quantile_us(&v, 1.0), 100.0);
        assert!(quantile_us(&[], 0.5).is_nan());
    }

    #[test]
    fn options_parse_and_default() {
        let a = Args(vec![
            "--iters".into(),
            "7".into(),
            "--env".into(),
            "e.json".into(),
        ]);
        assert_eq!(a.num("iters", 1u64).unwrap(), 7);
        assert_eq!(a.num("rounds", 3usize).unwrap(), 3);
        assert_eq!(a.need("env").unwrap(), "e.json");
        assert!(a.need("out").is_err());
        assert!(
            Args(vec!["--iters".into(), "x".into()])
                .num("iters", 1u64)
                .is_err()
        );
    }

    #[test]
    fn process_cpu_time_advances_with_work() {
        let t0 = process_cpu_ns();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(process_cpu_ns() > t0);
        assert!(rss_bytes() > 0);
    }
}
