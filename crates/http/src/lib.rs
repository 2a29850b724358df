#![doc = include_str!("../README.md")]

pub mod auth;
pub mod body;
pub mod classify;
pub mod client;
pub mod error;
pub mod poll;
pub mod retry_after;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod webhook;

pub use auth::{Auth, strip_sensitive};
pub use body::{BodyError, DEFAULT_MAX_BODY_BYTES, read_limited};
pub use classify::{Classification, classify, classify_status, header_str, validation_detail};
pub use client::{BaseUrl, HttpClient, HttpConfig, RawResponse, snippet, transport_error};
pub use error::HttpError;
pub use poll::{CancelGuard, JobStatus, PollConfig, StatusUpdate, poll_until_done};
pub use retry_after::{retry_after, retry_after_at, should_retry_override};
pub use webhook::{DEFAULT_TOLERANCE, FalWebhookVerifier, StandardWebhook, WebhookError};

/// Re-exported so adapters use the same `reqwest` (and its `header`, `Method`, `StatusCode`, `Url`).
pub use reqwest;
/// Re-exported for adapter configs (`api_key: SecretString`).
pub use secrecy;
