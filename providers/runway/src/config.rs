//! The adapter's settings.

use std::time::Duration;

use genroute_http::{HttpConfig, PollConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// Runway's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.dev.runwayml.com";
/// The API version sent as `X-Runway-Version` on every request.
pub const DEFAULT_API_VERSION: &str = "2024-11-06";

/// Settings for [`crate::RunwayProvider`]. `Debug` never shows the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunwayConfig {
    /// The API key (`key_...`), sent as `Authorization: Bearer <api_key>`.
    pub api_key: SecretString,
    /// The API base URL; override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Sent as `X-Runway-Version` on every request.
    #[serde(default = "default_api_version")]
    pub api_version: String,
    /// Transport settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// Task polling (Runway's own SDK polls about every 6 s; video tasks take minutes).
    #[serde(default = "default_poll")]
    pub poll: PollConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_api_version() -> String {
    DEFAULT_API_VERSION.to_owned()
}

/// Polling suited to Runway: 2 s, doubling to 8 s, for at most 30 minutes.
pub fn default_poll() -> PollConfig {
    PollConfig {
        initial_interval: Duration::from_secs(2),
        max_interval: Duration::from_secs(8),
        backoff_factor: 2,
        max_consecutive_unknown: 10,
        max_wait: Some(Duration::from_secs(30 * 60)),
        queue_time_unbilled: false,
    }
}

impl RunwayConfig {
    /// Defaults with this key.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            base_url: default_base_url(),
            api_version: default_api_version(),
            http: HttpConfig::default(),
            poll: default_poll(),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_strict() {
        let c: RunwayConfig = serde_json::from_value(serde_json::json!({
            "api_key": "key_supersecret",
            "poll": {"initial_interval": "1s"}
        }))
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.api_version, DEFAULT_API_VERSION);
        assert_eq!(c.poll.initial_interval, Duration::from_secs(1));
        assert_eq!(RunwayConfig::new("k").poll, default_poll());
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(
            serde_json::from_value::<RunwayConfig>(serde_json::json!({"api_key": "k", "version": "x"}))
                .is_err()
        );
    }
}
