//! The error every provider adapter returns.
//!
//! A [`ProviderError`] carries a *kind* and, separately, whether it is *temporary*: the router retries only
//! temporary errors, and decides failover from the kind. It also says whether the provider **billed** the
//! failed call, so a failure is never silently free (or silently charged twice).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::money::Money;

/// What went wrong, independent of whether it is worth retrying.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// Too many requests or too much concurrency.
    RateLimited,
    /// The provider (or the network to it) is down or overloaded.
    Unavailable,
    /// The call or the job did not finish in time.
    Timeout,
    /// The account has no credit left (402, fal's 403 lock, ElevenLabs' quota_exceeded...).
    InsufficientCredits,
    /// The request was refused as invalid (400/422).
    InvalidRequest,
    /// The prompt, an input or the output was refused by moderation.
    ContentRejected,
    /// The credentials were refused (401/403).
    Auth,
    /// The model cannot do what the job asks (checked before sending).
    Unsupported,
    /// The provider answered something that could not be understood.
    MalformedResponse,
    /// The job was cancelled (by us, a deadline, or the provider).
    Cancelled,
    /// The provider ran the job and it failed on its side.
    Failed,
}

impl ErrorKind {
    /// Whether errors of this kind are worth retrying unless the adapter knows better.
    pub fn temporary_by_default(self) -> bool {
        matches!(
            self,
            ErrorKind::RateLimited | ErrorKind::Unavailable | ErrorKind::Timeout
        )
    }

    /// snake_case name, as used for `error.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::RateLimited => "rate_limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InsufficientCredits => "insufficient_credits",
            ErrorKind::InvalidRequest => "invalid_request",
            ErrorKind::ContentRejected => "content_rejected",
            ErrorKind::Auth => "auth",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Failed => "failed",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the provider charged for a failed call.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "billed", content = "amount", rename_all = "snake_case")]
pub enum Billed {
    /// Not charged (e.g. 5xx, rate limit, validation before any compute).
    No,
    /// Charged this amount.
    Yes(Money),
    /// Charged, or possibly charged, an amount we do not know (settle conservatively).
    Unknown,
}

/// A failed provider call. Boxed inside, so `Result<T, ProviderError>` stays one pointer wide.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ProviderError {
    inner: Box<Inner>,
}

#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
struct Inner {
    kind: ErrorKind,
    temporary: bool,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_millis")]
    retry_after: Option<Duration>,
    billed: Billed,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_job_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    provider_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http_status: Option<u16>,
}

mod humantime_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

impl ProviderError {
    /// An error from a call that reached the provider. Temporary per [`ErrorKind::temporary_by_default`];
    /// billing [`Billed::Unknown`] until the adapter says otherwise.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        let inner = Inner {
            kind,
            temporary: kind.temporary_by_default(),
            message: message.into(),
            retry_after: None,
            billed: Billed::Unknown,
            provider_request_id: None,
            provider_job_id: None,
            provider_code: None,
            http_status: None,
        };
        Self {
            inner: Box::new(inner),
        }
    }

    /// An error raised locally, before anything was sent: never billed.
    pub fn local(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(kind, message).billed(Billed::No)
    }

    /// Overrides whether the error is worth retrying.
    pub fn temporary(mut self, temporary: bool) -> Self {
        self.inner.temporary = temporary;
        self
    }

    /// How long the provider asked us to wait.
    pub fn retry_after(mut self, after: Option<Duration>) -> Self {
        self.inner.retry_after = after;
        self
    }

    /// Whether the call was billed.
    pub fn billed(mut self, billed: Billed) -> Self {
        self.inner.billed = billed;
        self
    }

    /// The provider's request id (for support tickets).
    pub fn request_id(mut self, id: Option<String>) -> Self {
        self.inner.provider_request_id = id;
        self
    }

    /// The provider's job id, when a job was created: lets the caller resume or reconcile it.
    pub fn job_id(mut self, id: Option<String>) -> Self {
        self.inner.provider_job_id = id;
        self
    }

    /// The provider's own error code (`insufficient_quota`, `quota_exceeded`, ...).
    pub fn code(mut self, code: Option<String>) -> Self {
        self.inner.provider_code = code;
        self
    }

    /// The HTTP status, if the error came from one.
    pub fn status(mut self, status: Option<u16>) -> Self {
        self.inner.http_status = status;
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// Whether a retry could succeed.
    pub fn is_temporary(&self) -> bool {
        self.inner.temporary
    }
    /// Human-readable detail (never contains credentials).
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    /// How long to wait before retrying, if the provider said.
    pub fn retry_after_hint(&self) -> Option<Duration> {
        self.inner.retry_after
    }
    /// Whether the provider charged for this call.
    pub fn billing(&self) -> &Billed {
        &self.inner.billed
    }
    /// The provider's request id.
    pub fn provider_request_id(&self) -> Option<&str> {
        self.inner.provider_request_id.as_deref()
    }
    /// The provider's job id, when one was created before the failure.
    pub fn provider_job_id(&self) -> Option<&str> {
        self.inner.provider_job_id.as_deref()
    }
    /// The provider's error code.
    pub fn provider_code(&self) -> Option<&str> {
        self.inner.provider_code.as_deref()
    }
    /// The HTTP status.
    pub fn http_status(&self) -> Option<u16> {
        self.inner.http_status
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.kind)?;
        if let Some(status) = self.inner.http_status {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(code) = &self.inner.provider_code {
            write!(f, " [{code}]")?;
        }
        write!(f, ": {}", self.inner.message)?;
        if let Some(id) = &self.inner.provider_request_id {
            write!(f, " (request id {id})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ProviderError {}

impl From<crate::job::JobError> for ProviderError {
    fn from(e: crate::job::JobError) -> Self {
        ProviderError::local(ErrorKind::InvalidRequest, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn temporary_is_separate_from_kind_and_conservative_by_default() {
        for kind in [ErrorKind::RateLimited, ErrorKind::Unavailable, ErrorKind::Timeout] {
            assert!(ProviderError::new(kind, "x").is_temporary(), "{kind}");
        }
        for kind in [
            ErrorKind::InsufficientCredits,
            ErrorKind::InvalidRequest,
            ErrorKind::ContentRejected,
            ErrorKind::Auth,
            ErrorKind::Unsupported,
            ErrorKind::MalformedResponse,
            ErrorKind::Cancelled,
            ErrorKind::Failed,
        ] {
            assert!(!ProviderError::new(kind, "x").is_temporary(), "{kind}");
        }
        // The adapter can override: a runner failure marked internal is retryable.
        assert!(
            ProviderError::new(ErrorKind::Failed, "INTERNAL")
                .temporary(true)
                .is_temporary()
        );
        assert!(
            !ProviderError::new(ErrorKind::Timeout, "start timeout")
                .temporary(false)
                .is_temporary()
        );
    }

    #[test]
    fn billing_defaults() {
        assert_eq!(
            ProviderError::new(ErrorKind::Unavailable, "x").billing(),
            &Billed::Unknown
        );
        assert_eq!(
            ProviderError::local(ErrorKind::Unsupported, "x").billing(),
            &Billed::No
        );
        let billed = Billed::Yes(Money::usd(Decimal::new(25, 3)));
        let e = ProviderError::new(ErrorKind::ContentRejected, "nsfw").billed(billed.clone());
        assert_eq!(e.billing(), &billed);
    }

    #[test]
    fn display_carries_context_and_round_trips() {
        let e = ProviderError::new(ErrorKind::RateLimited, "slow down")
            .status(Some(429))
            .code(Some("rate_limit_exceeded".into()))
            .request_id(Some("req_1".into()))
            .job_id(Some("job_9".into()))
            .retry_after(Some(Duration::from_millis(1500)));
        assert_eq!(
            e.to_string(),
            "rate_limited (HTTP 429) [rate_limit_exceeded]: slow down (request id req_1)"
        );
        assert_eq!(e.retry_after_hint(), Some(Duration::from_millis(1500)));
        assert_eq!(e.provider_job_id(), Some("job_9"));
        let json = serde_json::to_string(&e).unwrap();
        let back: ProviderError = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn job_errors_become_local_invalid_requests() {
        let e: ProviderError = crate::job::JobError::Zero { field: "count" }.into();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert_eq!(e.billing(), &Billed::No);
        assert!(e.message().contains("count"));
    }
}
