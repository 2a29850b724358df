//! The facade's one error type.

use genroute_ledger::LedgerError;
use genroute_pricing::PricingError;
use genroute_router::RouterError;
use genroute_telemetry::TelemetryError;

use crate::config::ConfigError;

/// What went wrong building or using a [`crate::Client`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file is invalid (every problem is listed, with file, line and key).
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A provider could not be built from its settings.
    #[error("provider {id:?} (type {kind:?}): {message}")]
    Provider {
        /// The provider id (`[providers.<id>]`).
        id: String,
        /// The adapter type.
        kind: String,
        /// Why.
        message: String,
    },
    /// A file or directory could not be used.
    #[error("{what} {path}: {source}")]
    Io {
        /// What it was for.
        what: &'static str,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The ledger failed or refused (boxed: ledger errors are large).
    #[error(transparent)]
    Ledger(Box<LedgerError>),
    /// The router failed or refused the job (boxed: it carries every attempt).
    #[error(transparent)]
    Router(Box<RouterError>),
    /// A price could not be computed.
    #[error(transparent)]
    Pricing(#[from] PricingError),
    /// Telemetry could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// An argument was invalid (an id, a team the config does not know...).
    #[error("{0}")]
    Invalid(String),
}

impl From<LedgerError> for Error {
    fn from(e: LedgerError) -> Self {
        Error::Ledger(Box::new(e))
    }
}

impl From<RouterError> for Error {
    fn from(e: RouterError) -> Self {
        Error::Router(Box::new(e))
    }
}
