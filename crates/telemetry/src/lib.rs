#![doc = include_str!("../README.md")]

pub mod costlog;
pub mod error;
pub mod event;
pub mod metrics;
pub mod names;
pub mod otlp;
pub mod sinks;
pub mod spans;

pub use costlog::{
    CostLogContents, CostLogLines, CostLogOptions, CostLogRecord, CostSummary, FlushPolicy, JsonlCostLog,
    LineProblem, ProblemKind, Totals, parse_cost_log, read_cost_log,
};
pub use error::TelemetryError;
pub use event::{
    AttemptEvent, AttemptOutcome, BudgetDecision, CostSink, OutcomeCode, convention_cost_source,
};
pub use metrics::CostMetrics;
pub use otlp::{MetricsTemporality, Protocol, ResolvedTelemetry, TelemetryConfig, TelemetryGuard};
pub use sinks::{CallbackSink, Fanout, Sinks};
pub use spans::{attempt_span, job_span, record_attempt, record_job_end};

/// Re-exported so applications configure secrets without depending on `secrecy` directly.
pub use secrecy::{ExposeSecret, SecretString};
