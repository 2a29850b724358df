//! The adapter's settings.

use std::collections::BTreeMap;
use std::time::Duration;

use genroute_http::{HttpConfig, PollConfig};
use secrecy::SecretString;
use serde::Deserialize;

/// Scenario's API base.
pub const DEFAULT_BASE_URL: &str = "https://api.cloud.scenario.com/v1";

/// Which Scenario model a genroute model id (`sd-1.5`, `sdxl`) runs on, and through which endpoint.
#[derive(Clone, PartialEq, Eq, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioModel {
    /// Scenario's `modelId` (a public base model or one of your trained `model_...` ids).
    pub model_id: String,
    /// Send image jobs to `POST /generate/custom/{modelId}` instead of `/generate/txt2img`.
    #[serde(default)]
    pub custom: bool,
}

impl ScenarioModel {
    /// A model run through `/generate/txt2img`.
    pub fn txt2img(model_id: impl Into<String>) -> Self {
        Self {
            model_id: model_id.into(),
            custom: false,
        }
    }
}

/// The default mapping: `sd-1.5` → `stable-diffusion-v1-5`, `sdxl` → `stable-diffusion-xl-base-1.0`,
/// both through `/generate/txt2img`.
pub fn default_models() -> BTreeMap<String, ScenarioModel> {
    BTreeMap::from([
        (
            crate::models::SD15.to_owned(),
            ScenarioModel::txt2img("stable-diffusion-v1-5"),
        ),
        (
            crate::models::SDXL.to_owned(),
            ScenarioModel::txt2img("stable-diffusion-xl-base-1.0"),
        ),
    ])
}

/// Settings for [`crate::ScenarioProvider`]. `Debug` never shows the key or the secret.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioConfig {
    /// The API key, sent as the user part of `Authorization: Basic base64(key:secret)`.
    pub api_key: SecretString,
    /// The API secret.
    pub api_secret: SecretString,
    /// The API base URL (with its `/v1`); override it to point at a mock or an emulator.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Overrides of the model mapping, by genroute model id (`sd-1.5`, `sdxl`); ids not given keep
    /// [`default_models`].
    #[serde(default)]
    pub models: BTreeMap<String, ScenarioModel>,
    /// Charge `creativeUnitsCost − creativeUnitsDiscount` instead of `creativeUnitsCost` (off by default:
    /// whether the cost Scenario reports is before or after the plan discount is unconfirmed, and the
    /// cost alone is the conservative reading).
    #[serde(default)]
    pub subtract_discount: bool,
    /// Transport settings.
    #[serde(default)]
    pub http: HttpConfig,
    /// Job polling.
    #[serde(default = "default_poll")]
    pub poll: PollConfig,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_owned()
}

/// Polling suited to Scenario image jobs: 1 s, doubling to 5 s, for at most 30 minutes.
pub fn default_poll() -> PollConfig {
    PollConfig {
        initial_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(5),
        backoff_factor: 2,
        max_consecutive_unknown: 10,
        max_wait: Some(Duration::from_secs(30 * 60)),
        queue_time_unbilled: false,
    }
}

impl ScenarioConfig {
    /// Defaults with this key and secret.
    pub fn new(api_key: impl Into<String>, api_secret: impl Into<String>) -> Self {
        Self {
            api_key: SecretString::from(api_key.into()),
            api_secret: SecretString::from(api_secret.into()),
            base_url: default_base_url(),
            models: BTreeMap::new(),
            subtract_discount: false,
            http: HttpConfig::default(),
            poll: default_poll(),
        }
    }

    /// Points the adapter at another base URL.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = url.into();
        self
    }

    /// Maps a genroute model id (`sd-1.5`, `sdxl`) onto a Scenario model.
    pub fn model(mut self, genroute_id: impl Into<String>, model: ScenarioModel) -> Self {
        self.models.insert(genroute_id.into(), model);
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
        let c: ScenarioConfig = serde_json::from_value(serde_json::json!({
            "api_key": "api_supersecretkey",
            "api_secret": "topsecretsecret",
            "models": {"sdxl": {"model_id": "model_abc", "custom": true}}
        }))
        .unwrap();
        assert_eq!(c.base_url, DEFAULT_BASE_URL);
        assert_eq!(
            c.models.get("sdxl"),
            Some(&ScenarioModel {
                model_id: "model_abc".into(),
                custom: true
            })
        );
        assert!(!c.subtract_discount);
        assert_eq!(c.poll, default_poll());
        let debug = format!("{c:?}");
        assert!(!debug.contains("supersecretkey") && !debug.contains("topsecretsecret"));
        assert!(
            serde_json::from_value::<ScenarioConfig>(
                serde_json::json!({"api_key": "k", "api_secret": "s", "team": "x"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<ScenarioConfig>(serde_json::json!({
                "api_key": "k", "api_secret": "s", "models": {"sdxl": {"modelId": "x"}}
            }))
            .is_err()
        );
    }
}
