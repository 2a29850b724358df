//! The adapter's settings.

use std::time::Duration;

use genroute_http::HttpConfig;
use secrecy::SecretString;
use serde::Deserialize;

/// OpenAI's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Settings for [`crate::OpenAiProvider`]. `Debug` never shows the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiConfig {
    /// The API key (`sk-...`), sent as `Authorization: Bearer <key>`.
    pub api_key: SecretString,
    /// The API base URL (with `/v1`); override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Sent as `OpenAI-Organization`, if set.
    #[serde(default)]
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project`, if set.
    #[serde(default)]
    pub project: Option<String>,
    /// The voice used when a speech job names none.
    #[serde(default = "default_voice")]
    pub default_voice: String,
    /// Transport settings (high-quality GPT images can take minutes: the default request timeout is 5 min).
    #[serde(default = "default_http")]
    pub http: HttpConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_voice() -> String {
    "alloy".to_owned()
}

fn default_http() -> HttpConfig {
    HttpConfig {
        request_timeout: Duration::from_secs(300),
        ..HttpConfig::default()
    }
}

impl OpenAiConfig {
    /// Defaults with this key.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            base_url: default_base_url(),
            organization: None,
            project: None,
            default_voice: default_voice(),
            http: default_http(),
        }
    }

    /// Points the adapter at another base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_strict() {
        let c: OpenAiConfig =
            serde_json::from_value(serde_json::json!({"api_key": "sk-supersecret", "project": "proj_1"}))
                .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.project.as_deref(), Some("proj_1"));
        assert_eq!(c.http.request_timeout, Duration::from_secs(300));
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(
            serde_json::from_value::<OpenAiConfig>(serde_json::json!({"api_key": "k", "org": "x"})).is_err()
        );
    }
}
