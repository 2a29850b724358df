//! Helpers for adapter tests (feature `test-support`, off by default): the polling configuration and call
//! context every wire test and emulator test uses, so a new adapter's tests start from the same footing.

use std::time::Duration;

use genroute_core::{CallContext, Caller, JobId, TeamId};

use crate::poll::PollConfig;

/// Polling fast enough for tests: 2 ms growing to 10 ms, at most 3 unknown statuses in a row, 10 s cap.
pub fn fast_poll() -> PollConfig {
    PollConfig {
        initial_interval: Duration::from_millis(2),
        max_interval: Duration::from_millis(10),
        backoff_factor: 2,
        max_consecutive_unknown: 3,
        max_wait: Some(Duration::from_secs(10)),
        queue_time_unbilled: false,
    }
}

/// A context for job `job-1` of team `t`, with no deadline.
#[allow(clippy::expect_used)] // literal identifiers: valid by construction
pub fn test_context() -> CallContext {
    CallContext::new(
        JobId::new("job-1").expect("valid literal id"),
        Caller::team(TeamId::new("t").expect("valid literal id")),
    )
}
