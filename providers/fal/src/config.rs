//! The adapter's settings.

use std::time::Duration;

use genroute_http::{HttpConfig, PollConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// fal's queue host.
pub const DEFAULT_BASE_URL: &str = "https://queue.fal.run";

/// Settings for [`crate::FalProvider`]. `Debug` never shows the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FalConfig {
    /// The API key (`<key id>:<key secret>`), sent as `Authorization: Key <api_key>`.
    pub api_key: SecretString,
    /// The queue base URL; override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Sent as `X-Fal-Request-Start-Timeout`: fal gives up if the job has not *started* by then (a 504
    /// with `X-Fal-Request-Timeout-Type`, not retried, not billed).
    #[serde(default, with = "humantime_serde")]
    pub request_start_timeout: Option<Duration>,
    /// Transport settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// Queue polling.
    #[serde(default)]
    pub poll: PollConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

impl FalConfig {
    /// Defaults with this key.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            base_url: default_base_url(),
            request_start_timeout: None,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_strict() {
        let c: FalConfig = serde_json::from_value(serde_json::json!({
            "api_key": "id:supersecret",
            "request_start_timeout": "20s",
            "poll": {"initial_interval": "250ms"}
        }))
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.request_start_timeout, Some(Duration::from_secs(20)));
        assert_eq!(c.poll.initial_interval, Duration::from_millis(250));
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(
            serde_json::from_value::<FalConfig>(serde_json::json!({"api_key": "k", "retries": 2})).is_err()
        );
    }
}
