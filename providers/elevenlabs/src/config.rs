//! The adapter's settings.

use std::time::Duration;

use genroute_http::HttpConfig;
use secrecy::SecretString;
use serde::Deserialize;

/// ElevenLabs' API host.
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";
/// The voice used when a speech job names none ("George", the voice of ElevenLabs' own quick-start
/// examples). Override it with [`ElevenLabsConfig::default_voice_id`].
pub const DEFAULT_VOICE_ID: &str = "JBFqnCBsd6RMkjVDRZzb";
/// The `output_format` sent when a job names none.
pub const DEFAULT_OUTPUT_FORMAT: &str = "mp3_44100_128";

/// Settings for [`crate::ElevenLabsProvider`]. `Debug` never shows the key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevenLabsConfig {
    /// The API key, sent as `xi-api-key`.
    pub api_key: SecretString,
    /// The API base URL; override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The voice for speech jobs that name none.
    #[serde(default = "default_voice_id")]
    pub default_voice_id: String,
    /// The `output_format` query value for jobs that name none (`mp3_44100_128`, `pcm_16000`, ...).
    #[serde(default = "default_output_format")]
    pub output_format: String,
    /// Transport settings. The default request timeout is 5 minutes, not the shared 2: the whole clip is
    /// made inside one synchronous call, and music can run to 10 minutes of audio.
    #[serde(default = "default_http")]
    pub http: HttpConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

fn default_voice_id() -> String {
    DEFAULT_VOICE_ID.to_owned()
}

fn default_output_format() -> String {
    DEFAULT_OUTPUT_FORMAT.to_owned()
}

/// The shared transport defaults with a 5-minute request timeout.
pub fn default_http() -> HttpConfig {
    HttpConfig {
        request_timeout: Duration::from_secs(300),
        ..HttpConfig::default()
    }
}

impl ElevenLabsConfig {
    /// Defaults with this key.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            base_url: default_base_url(),
            default_voice_id: default_voice_id(),
            output_format: default_output_format(),
            http: default_http(),
        }
    }

    /// Points the adapter at another base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Sets the voice used when a speech job names none.
    pub fn default_voice_id(mut self, voice_id: impl Into<String>) -> Self {
        self.default_voice_id = voice_id.into();
        self
    }

    /// Sets the default `output_format`.
    pub fn output_format(mut self, format: impl Into<String>) -> Self {
        self.output_format = format.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_serde_is_strict() {
        let c: ElevenLabsConfig = serde_json::from_value(serde_json::json!({
            "api_key": "sk_supersecret",
            "default_voice_id": "v1"
        }))
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(c.default_voice_id, "v1");
        assert_eq!(c.output_format, DEFAULT_OUTPUT_FORMAT);
        assert_eq!(c.http.request_timeout, Duration::from_secs(300));
        assert_eq!(ElevenLabsConfig::new("k").http, default_http());
        assert!(!format!("{c:?}").contains("supersecret"));
        assert!(
            serde_json::from_value::<ElevenLabsConfig>(serde_json::json!({"api_key": "k", "voice": "x"}))
                .is_err()
        );
    }
}
