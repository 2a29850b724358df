//! The crate's own error, for what can fail while setting an adapter up (not while calling a provider:
//! those failures are [`genroute_core::ProviderError`]s).

/// Setting up an HTTP client, a base URL or credentials failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// A base URL or a URL returned by a provider could not be used.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given (never contains credentials: auth travels in headers).
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// A credential cannot be sent as an HTTP header (control characters, non-ASCII...). The value itself
    /// is never included.
    #[error("invalid credential for {what}: it cannot be sent in an HTTP header")]
    InvalidCredential {
        /// Which credential (e.g. `Authorization`, `xi-api-key`).
        what: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// Any other invalid adapter setting (an identifier, a range).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
}

impl From<genroute_core::IdError> for HttpError {
    fn from(e: genroute_core::IdError) -> Self {
        HttpError::InvalidConfig(e.to_string())
    }
}
