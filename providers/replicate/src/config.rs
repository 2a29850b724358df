//! The adapter's settings.

use genroute_http::{HttpConfig, PollConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// Replicate's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.replicate.com/v1";

/// Settings for [`crate::ReplicateProvider`]. `Debug` never shows the token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateConfig {
    /// The API token (`r8_...`), sent as `Authorization: Bearer <token>`.
    pub api_key: SecretString,
    /// The API base URL (with `/v1`); override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// `Prefer: wait=N` on create (1–60 s): Replicate holds the answer until done or N s, then returns the
    /// unfinished prediction to poll. `None` sends no `Prefer` header. Capped by the call's deadline.
    #[serde(default = "default_wait")]
    pub prefer_wait_seconds: Option<u8>,
    /// Send the call's deadline as `Cancel-After` so Replicate stops (and stops billing) an abandoned
    /// prediction even if this process dies.
    #[serde(default = "yes")]
    pub send_cancel_after: bool,
    /// Transport settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// Polling of `urls.get`.
    #[serde(default)]
    pub poll: PollConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_wait() -> Option<u8> {
    Some(60)
}

fn yes() -> bool {
    true
}

impl ReplicateConfig {
    /// Defaults with this token.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            base_url: default_base_url(),
            prefer_wait_seconds: default_wait(),
            send_cancel_after: true,
            http: HttpConfig::default(),
            poll: PollConfig::default(),
        }
    }

    /// Points the adapter at another base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Replaces the polling settings.
    pub fn poll(mut self, poll: PollConfig) -> Self {
        self.poll = poll;
        self
    }

    /// Sets `Prefer: wait=N` (`None`: do not wait on create).
    pub fn prefer_wait_seconds(mut self, seconds: Option<u8>) -> Self {
        self.prefer_wait_seconds = seconds;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_strict() {
        let c: ReplicateConfig = serde_json::from_value(
            serde_json::json!({"api_key": "r8_supersecret", "prefer_wait_seconds": 5}),
        )
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.prefer_wait_seconds, Some(5));
        assert!(c.send_cancel_after);
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(
            serde_json::from_value::<ReplicateConfig>(serde_json::json!({"api_key": "k", "wait": 1}))
                .is_err()
        );
    }
}
