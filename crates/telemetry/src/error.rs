//! The crate's error type. Messages never contain secrets: header values are never quoted, endpoints are
//! shown with credentials and query strings redacted.

use std::path::PathBuf;

/// What failed in telemetry setup, export or the cost log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A configuration value (from the config struct or an `OTEL_*` variable) is invalid.
    #[error("invalid telemetry setting {setting}: {reason}")]
    Config {
        /// Which setting (a config field or an environment variable name).
        setting: String,
        /// Why (never the value of a secret).
        reason: String,
    },
    /// Building an exporter failed.
    #[error("cannot build the OTLP {signal} exporter for {endpoint}: {reason}")]
    Exporter {
        /// `traces` or `metrics`.
        signal: &'static str,
        /// The endpoint, redacted.
        endpoint: String,
        /// Why, with the endpoint and any header values scrubbed.
        reason: String,
    },
    /// Flushing or shutting down the OpenTelemetry providers failed.
    #[error("telemetry {operation} failed: {reason}")]
    Sdk {
        /// `flush` or `shutdown`.
        operation: &'static str,
        /// Why.
        reason: String,
    },
    /// The cost log could not be opened or read.
    #[error("cost log {path}: {source}")]
    CostLogIo {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the cost log failed (lines were lost; see `JsonlCostLog::dropped`).
    #[error("cost log {path}: write failed: {message}")]
    CostLogWrite {
        /// The file.
        path: PathBuf,
        /// The error.
        message: String,
    },
    /// A cost log record is inconsistent, or sums overflowed.
    #[error("cost log record: {message}")]
    CostLogRecord {
        /// What is wrong.
        message: String,
    },
}
