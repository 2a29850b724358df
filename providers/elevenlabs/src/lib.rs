#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::str::FromStr;
use std::time::Instant;

use async_trait::async_trait;
use genroute_core::{
    Asset, AudioKind, Billed, CallContext, Decimal, ErrorKind, Generation, Job, ModelInfo, Provider,
    ProviderError, ProviderId, ProviderRequest, Rounding, validate_request,
};
use genroute_http::reqwest::Method;
use genroute_http::{Auth, BaseUrl, HttpClient, HttpError, RawResponse};
use serde_json::{Map, Number, Value, json};

pub use config::ElevenLabsConfig;
pub use error::parse_error;

/// The header carrying the billed characters.
pub const CHARACTER_COST_HEADER: &str = "character-cost";
/// The spelling of the same header in ElevenLabs' documentation example; read when the first is absent.
pub const CHARACTER_COUNT_HEADER: &str = "x-character-count";
/// The header naming the history item the request created.
pub const HISTORY_ITEM_HEADER: &str = "history-item-id";

/// ElevenLabs: speech, sound effects and music, each one synchronous call returning audio bytes.
#[derive(Debug)]
pub struct ElevenLabsProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    default_voice_id: String,
    output_format: String,
}

/// One upstream call, built from a job.
#[derive(Debug)]
struct Call {
    path: String,
    body: Value,
    format: String,
    /// Requested length of the clip (sound effect, music), in seconds.
    seconds: Option<Decimal>,
}

fn local(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::local(kind, message)
}

/// A decimal as a JSON number, written exactly as the decimal reads (`2.5`, not `2.5000`).
fn json_number(d: Decimal) -> Result<Value, ProviderError> {
    Number::from_str(&d.normalize().to_string())
        .map(Value::Number)
        .map_err(|_| local(ErrorKind::InvalidRequest, format!("{d} is not a JSON number")))
}

/// The media type of an `output_format` such as `mp3_44100_128`, `pcm_16000`, `ulaw_8000`.
fn media_type_of_format(format: &str) -> Option<&'static str> {
    let codec = format.split('_').next().unwrap_or(format);
    match codec {
        "mp3" => Some("audio/mpeg"),
        "pcm" => Some("audio/pcm"),
        "ulaw" => Some("audio/basic"),
        "alaw" => Some("audio/x-alaw-basic"),
        "opus" => Some("audio/opus"),
        "wav" => Some("audio/wav"),
        _ => None,
    }
}

impl ElevenLabsProvider {
    /// An adapter from settings.
    pub fn new(config: ElevenLabsConfig) -> Result<Self, HttpError> {
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::header("xi-api-key", &config.api_key)?;
        if config.default_voice_id.trim().is_empty() || config.default_voice_id.contains('/') {
            return Err(HttpError::InvalidConfig(
                "default_voice_id must be a non-empty voice id without `/`".into(),
            ));
        }
        if config.output_format.trim().is_empty() {
            return Err(HttpError::InvalidConfig("output_format must not be empty".into()));
        }
        Ok(Self {
            id: ProviderId::new("elevenlabs")?,
            models: models::all()?,
            http: HttpClient::new(&config.http, base, auth)?,
            default_voice_id: config.default_voice_id,
            output_format: config.output_format,
        })
    }

    /// The request for a job. Fields derived from the job win over `extras` of the same name, so the
    /// quote and the request cannot disagree; other `extras` (`voice_settings`, `language_code`,
    /// `prompt_influence`, `loop`, ...) pass through.
    fn build_call(&self, request: &ProviderRequest) -> Result<Call, ProviderError> {
        let Job::Audio(job) = &request.job else {
            return Err(local(
                ErrorKind::Unsupported,
                "the elevenlabs adapter only makes audio",
            ));
        };
        let model = request.model.as_str();
        let mut body: Map<String, Value> = job.extras().clone();
        let format = job.format().unwrap_or(&self.output_format).to_owned();
        let (path, seconds) = match job.kind() {
            AudioKind::Speech { text, voice } => {
                let voice = voice.as_deref().unwrap_or(&self.default_voice_id);
                if voice.contains('/') {
                    return Err(local(
                        ErrorKind::InvalidRequest,
                        format!("voice {voice:?} is not a voice id"),
                    ));
                }
                body.insert("text".into(), json!(text));
                body.insert("model_id".into(), json!(model));
                if let Some(seed) = job.seed() {
                    // ElevenLabs takes a 32-bit unsigned seed.
                    let seed = u32::try_from(seed).map_err(|_| {
                        local(
                            ErrorKind::InvalidRequest,
                            format!("seed {seed} is above ElevenLabs' limit of {}", u32::MAX),
                        )
                    })?;
                    body.insert("seed".into(), json!(seed));
                }
                (format!("v1/text-to-speech/{voice}"), None)
            }
            AudioKind::SoundEffect {
                prompt,
                duration_seconds,
            } => {
                body.insert("text".into(), json!(prompt));
                body.insert("model_id".into(), json!(model));
                if let Some(d) = duration_seconds {
                    body.insert("duration_seconds".into(), json_number(*d)?);
                }
                ("v1/sound-generation".to_owned(), *duration_seconds)
            }
            AudioKind::Music {
                prompt,
                length_seconds,
            } => {
                let ms = Rounding::half_up(0).apply(*length_seconds * Decimal::from(1000));
                let ms = u64::try_from(ms).map_err(|_| {
                    local(
                        ErrorKind::InvalidRequest,
                        format!("{length_seconds} s is not a music length"),
                    )
                })?;
                body.insert("prompt".into(), json!(prompt));
                body.insert("music_length_ms".into(), json!(ms));
                body.insert("model_id".into(), json!(model));
                ("v1/music".to_owned(), Some(*length_seconds))
            }
        };
        Ok(Call {
            path,
            body: Value::Object(body),
            format,
            seconds,
        })
    }

    fn read_audio(
        &self,
        request: &ProviderRequest,
        call: &Call,
        resp: &RawResponse,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let request_id = resp.header(error::REQUEST_ID_HEADER).map(str::to_owned);
        let content_type = resp
            .header("content-type")
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        if resp.body.is_empty() || content_type.as_deref().is_some_and(|c| c.contains("json")) {
            // A 2xx that is not audio: the characters may have been spent.
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("elevenlabs answered without audio: {}", resp.snippet(300)),
            )
            .billed(Billed::Unknown)
            .status(Some(resp.status.as_u16()))
            .request_id(request_id));
        }
        let media_type = content_type
            .filter(|c| c.starts_with("audio/"))
            .or_else(|| media_type_of_format(&call.format).map(str::to_owned));
        let characters = [CHARACTER_COST_HEADER, CHARACTER_COUNT_HEADER]
            .iter()
            .find_map(|h| resp.header(h).and_then(|v| v.trim().parse::<u64>().ok()));
        let mut asset = Asset::bytes(resp.body.to_vec(), media_type);
        asset.duration_seconds = call.seconds;
        let mut generation = Generation::new(vec![asset]);
        generation.provider_job_id = resp.header(HISTORY_ITEM_HEADER).map(str::to_owned);
        generation.provider_request_id = request_id;
        generation.response_model = Some(request.model.to_string());
        generation.usage.characters = characters;
        generation.usage.output_seconds = call.seconds;
        generation.seed = request.job.seed();
        generation.timings.total = started.elapsed();
        Ok(generation)
    }
}

#[async_trait]
impl Provider for ElevenLabsProvider {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn models(&self) -> &[ModelInfo] {
        &self.models
    }

    async fn generate(
        &self,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        validate_request(self, request)?;
        let call = self.build_call(request)?;
        let mut url = self.http.endpoint(&call.path)?;
        url.query_pairs_mut().append_pair("output_format", &call.format);
        let started = Instant::now();
        let req = self.http.request(Method::POST, url).json(&call.body);
        let resp = self.http.send_within(ctx, req).await?;
        if !resp.status.is_success() {
            return Err(parse_error(resp.status, &resp.headers, &resp.body));
        }
        self.read_audio(request, &call, &resp, started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_map_to_media_types() {
        assert_eq!(media_type_of_format("mp3_44100_128"), Some("audio/mpeg"));
        assert_eq!(media_type_of_format("pcm_16000"), Some("audio/pcm"));
        assert_eq!(media_type_of_format("ulaw_8000"), Some("audio/basic"));
        assert_eq!(media_type_of_format("flac"), None);
    }

    #[test]
    fn decimals_become_exact_json_numbers() {
        assert_eq!(json_number(Decimal::new(2500, 3)).unwrap().to_string(), "2.5");
        assert_eq!(json_number(Decimal::from(30)).unwrap().to_string(), "30");
    }
}
