//! What a successful provider call returns.

use std::collections::BTreeMap;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::job::Dimensions;
use crate::quote::Charge;

/// Where an output's content lives.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssetContent {
    /// A URL (many expire: BFL after 10 minutes, Replicate after an hour). Fetch promptly.
    Url(String),
    /// The bytes themselves (speech, Stability, GPT image base64 decoded).
    Bytes(Vec<u8>),
}

/// One output.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Asset {
    /// The content.
    pub content: AssetContent,
    /// Media type, e.g. `image/png`, `video/mp4`, `audio/mpeg`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Pixel size of an image or video, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<Dimensions>,
    /// Length of a video or audio clip in seconds, when known.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub duration_seconds: Option<Decimal>,
}

impl Asset {
    /// An asset at a URL.
    pub fn url(url: impl Into<String>, media_type: Option<String>) -> Self {
        Self {
            content: AssetContent::Url(url.into()),
            media_type,
            dimensions: None,
            duration_seconds: None,
        }
    }

    /// An asset held as bytes.
    pub fn bytes(data: Vec<u8>, media_type: Option<String>) -> Self {
        Self {
            content: AssetContent::Bytes(data),
            media_type,
            dimensions: None,
            duration_seconds: None,
        }
    }
}

/// What the provider metered, as reported. Each field is `None` when the provider did not report it.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Billed quantity in the model's unit (fal's `X-Fal-Billable-Units`; may be fractional).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub billable_units: Option<Decimal>,
    /// Input tokens (OpenAI GPT image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Input tokens that were images (OpenAI GPT image, priced differently from text tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_image_tokens: Option<u64>,
    /// Output tokens (OpenAI GPT image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    /// Billed characters (ElevenLabs `character-cost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub characters: Option<u64>,
    /// Compute seconds (Replicate `metrics.predict_time`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub compute_seconds: Option<Decimal>,
    /// Seconds of output media produced.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub output_seconds: Option<Decimal>,
    /// Anything else the provider metered, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub other: BTreeMap<String, Decimal>,
}

/// How long the call took.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting in the provider's queue, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<Duration>,
    /// Running, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<Duration>,
    /// Wall time of the whole call, as seen by the adapter.
    pub total: Duration,
}

/// A successful generation.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// The outputs, in order.
    pub outputs: Vec<Asset>,
    /// The provider's id for the job (prediction, request, task...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_job_id: Option<String>,
    /// The provider's request id (for support), if different.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_request_id: Option<String>,
    /// The model that actually answered, if the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// The cost, when the provider reported money (BFL `cost`, Scenario `creativeUnitsCost`). `None` means
    /// the caller prices `usage` against the catalog; the router always fills it before recording.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged: Option<Charge>,
    /// What the provider metered.
    #[serde(default)]
    pub usage: Usage,
    /// How long it took.
    #[serde(default)]
    pub timings: Timings,
    /// The seed used, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Generation {
    /// A generation with these outputs and nothing else known yet.
    pub fn new(outputs: Vec<Asset>) -> Self {
        Self {
            outputs,
            provider_job_id: None,
            provider_request_id: None,
            response_model: None,
            charged: None,
            usage: Usage::default(),
            timings: Timings::default(),
            seed: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;
    use crate::quote::CostSource;

    #[test]
    fn generation_round_trips_with_fractional_usage() {
        let mut g = Generation::new(vec![Asset::url("https://x/a.mp4", Some("video/mp4".into()))]);
        g.provider_job_id = Some("req_1".into());
        g.usage.billable_units = Some(Decimal::new(3008, 3));
        g.usage.other.insert("gpu_seconds".into(), Decimal::new(125, 2));
        g.charged = Some(Charge {
            amount: Money::usd(Decimal::new(135360, 6)),
            source: CostSource::PriceTable,
        });
        g.timings.total = Duration::from_millis(2500);
        let json = serde_json::to_string(&g).unwrap();
        assert!(json.contains(r#""billable_units":"3.008""#), "{json}");
        assert_eq!(serde_json::from_str::<Generation>(&json).unwrap(), g);
    }
}
