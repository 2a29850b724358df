#![doc = include_str!("../README.md")]

pub mod config;
pub mod error;
pub mod models;

use std::borrow::Cow;
use std::time::Instant;

use async_trait::async_trait;
use base64::Engine as _;
use genroute_core::{
    Asset, AudioKind, Billed, CallContext, Decimal, Dimensions, EditOp, ErrorKind, Generation, Job,
    MediaInput, ModelInfo, Provider, ProviderError, ProviderId, ProviderRequest, validate_request,
};
use genroute_http::reqwest::multipart::{Form, Part};
use genroute_http::reqwest::{Method, RequestBuilder, Url};
use genroute_http::{Auth, BaseUrl, HttpClient, HttpError, RawResponse};
use serde::Deserialize;
use serde_json::{Map, Value, json};

pub use config::OpenAiConfig;
pub use error::parse_error;

/// OpenAI images (generations, edits) and speech. All calls are synchronous: one request per attempt.
#[derive(Debug)]
pub struct OpenAiProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    http: HttpClient,
    /// The three endpoints, joined to the base URL once.
    generations_url: Url,
    edits_url: Url,
    speech_url: Url,
    organization: Option<String>,
    project: Option<String>,
    default_voice: String,
}

#[derive(Deserialize)]
struct ImagesResponse<'a> {
    #[serde(default, borrow)]
    data: Vec<ImageData<'a>>,
    #[serde(default)]
    usage: Option<ImageUsage>,
    #[serde(default)]
    size: Option<String>,
    #[serde(default)]
    output_format: Option<String>,
}

#[derive(Deserialize)]
struct ImageData<'a> {
    /// Borrowed from the response body when it holds no JSON escapes (base64 never needs any), so the
    /// largest field of the answer is decoded straight from the body, never copied first.
    #[serde(default, borrow, deserialize_with = "borrowed_str")]
    b64_json: Option<Cow<'a, str>>,
    #[serde(default)]
    url: Option<String>,
}

#[derive(Deserialize)]
struct ImageUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    input_tokens_details: Option<InputDetails>,
}

#[derive(Deserialize)]
struct InputDetails {
    #[serde(default)]
    text_tokens: Option<u64>,
    #[serde(default)]
    image_tokens: Option<u64>,
}

/// A JSON string borrowed from the input when it has no escapes (serde's own `Cow<str>` always copies), owned
/// otherwise (e.g. a `\/` escape, which JSON allows in base64).
fn borrowed_str<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or null")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v)))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_str(self)
        }
    }
    d.deserialize_option(V)
}

fn image_media_type(format: &str) -> String {
    match format {
        "jpeg" | "jpg" => "image/jpeg".to_owned(),
        "webp" => "image/webp".to_owned(),
        _ => "image/png".to_owned(),
    }
}

fn parse_size(s: &str) -> Option<Dimensions> {
    let (w, h) = s.split_once('x')?;
    Dimensions::new(w.parse().ok()?, h.parse().ok()?).ok()
}

fn local(kind: ErrorKind, message: impl Into<String>) -> ProviderError {
    ProviderError::local(kind, message)
}

/// A file part for `image[]` / `mask`. OpenAI needs the bytes: a URL or an asset id is refused before
/// anything is sent.
fn file_part(input: &MediaInput, field: &str, index: usize) -> Result<Part, ProviderError> {
    match input {
        MediaInput::Bytes { media_type, data } => {
            let ext = media_type.rsplit('/').next().unwrap_or("png");
            Part::bytes(data.clone())
                .file_name(format!("{field}-{index}.{ext}"))
                .mime_str(media_type)
                .map_err(|_| {
                    local(
                        ErrorKind::InvalidRequest,
                        format!("{field}: invalid media type {media_type:?}"),
                    )
                })
        }
        MediaInput::Url { .. } | MediaInput::Asset { .. } => Err(local(
            ErrorKind::Unsupported,
            format!("{field}: OpenAI edits take uploaded bytes; pass MediaInput::Bytes"),
        )),
    }
}

fn text_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What will be sent for one request.
enum Call {
    Generations(Value),
    Edits(Form),
    Speech { body: Value, media_type: String },
}

impl OpenAiProvider {
    /// An adapter from settings.
    pub fn new(config: OpenAiConfig) -> Result<Self, HttpError> {
        let base = BaseUrl::parse(&config.base_url)?;
        let auth = Auth::bearer(&config.api_key)?;
        Ok(Self {
            id: ProviderId::new("openai")?,
            models: models::all().map_err(HttpError::InvalidConfig)?,
            generations_url: base.join("images/generations")?,
            edits_url: base.join("images/edits")?,
            speech_url: base.join("audio/speech")?,
            http: HttpClient::new(&config.http, base, auth)?,
            organization: config.organization,
            project: config.project,
            default_voice: config.default_voice,
        })
    }

    fn request(&self, url: &Url) -> RequestBuilder {
        let mut req = self.http.request(Method::POST, url.clone());
        if let Some(org) = &self.organization {
            req = req.header("openai-organization", org);
        }
        if let Some(project) = &self.project {
            req = req.header("openai-project", project);
        }
        req
    }

    /// Builds the request without sending anything, so every refusal is local.
    fn plan(&self, request: &ProviderRequest) -> Result<Call, ProviderError> {
        let model = request.model.as_str();
        let extras = request.job.extras();
        match &request.job {
            Job::Image(j) if j.references().is_empty() => {
                let mut body: Map<String, Value> = extras.clone();
                body.insert("model".into(), json!(model));
                body.insert("prompt".into(), json!(j.prompt()));
                body.insert("n".into(), json!(j.count()));
                body.insert("size".into(), json!(j.size().to_string()));
                Ok(Call::Generations(Value::Object(body)))
            }
            Job::Image(j) => {
                let mut form = self.base_form(model, j.prompt(), j.count(), extras);
                form = form.text("size", j.size().to_string());
                for (i, r) in j.references().iter().enumerate() {
                    form = form.part("image[]", file_part(r, "image", i)?);
                }
                Ok(Call::Edits(form))
            }
            Job::Edit(e) => {
                let (prompt, mask) = match e.op() {
                    EditOp::Img2Img { prompt, .. } => (prompt, None),
                    EditOp::Inpaint { prompt, mask } => (prompt, Some(mask)),
                    _ => {
                        return Err(local(
                            ErrorKind::Unsupported,
                            format!("{model} edits only from a prompt (img2img, inpaint)"),
                        ));
                    }
                };
                let mut form = self
                    .base_form(model, prompt, e.count(), extras)
                    .part("image[]", file_part(e.input(), "image", 0)?);
                if let Some(mask) = mask {
                    form = form.part("mask", file_part(mask, "mask", 0)?);
                }
                Ok(Call::Edits(form))
            }
            Job::Audio(a) => {
                let AudioKind::Speech { text, voice } = a.kind() else {
                    return Err(local(ErrorKind::Unsupported, format!("{model} only speaks")));
                };
                let format = a.format().unwrap_or("mp3");
                let media_type = models::SPEECH_FORMATS
                    .iter()
                    .find(|(f, _)| *f == format)
                    .map(|(_, m)| (*m).to_owned())
                    .ok_or_else(|| {
                        local(
                            ErrorKind::InvalidRequest,
                            format!("format {format:?} is not one of mp3, opus, aac, flac, wav, pcm"),
                        )
                    })?;
                let mut body: Map<String, Value> = extras.clone();
                body.insert("model".into(), json!(model));
                body.insert("input".into(), json!(text));
                body.insert(
                    "voice".into(),
                    json!(voice.as_deref().unwrap_or(&self.default_voice)),
                );
                if a.format().is_some() {
                    body.insert("response_format".into(), json!(format));
                }
                Ok(Call::Speech {
                    body: Value::Object(body),
                    media_type,
                })
            }
            Job::Video(_) => Err(local(ErrorKind::Unsupported, format!("{model} makes no video"))),
        }
    }

    fn base_form(&self, model: &str, prompt: &str, n: u32, extras: &Map<String, Value>) -> Form {
        let mut form = Form::new()
            .text("model", model.to_owned())
            .text("prompt", prompt.to_owned())
            .text("n", n.to_string());
        for (k, v) in extras {
            if !matches!(
                k.as_str(),
                "model" | "prompt" | "n" | "size" | "image" | "image[]" | "mask"
            ) {
                form = form.text(k.clone(), text_value(v));
            }
        }
        form
    }

    fn read_images(
        &self,
        resp: &RawResponse,
        request: &ProviderRequest,
        started: Instant,
    ) -> Result<Generation, ProviderError> {
        let body: ImagesResponse<'_> = resp.json_borrowed().map_err(|e| e.billed(Billed::Unknown))?;
        let format = body
            .output_format
            .clone()
            .or_else(|| {
                request
                    .job
                    .extras()
                    .get("output_format")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| "png".to_owned());
        let dimensions = body.size.as_deref().and_then(parse_size).or(match &request.job {
            Job::Image(j) => Some(j.size()),
            _ => None,
        });
        let mut outputs = Vec::new();
        for d in body.data {
            let mut asset = match (d.b64_json, d.url) {
                (Some(b64), _) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(b64.trim())
                        .map_err(|e| {
                            ProviderError::new(
                                ErrorKind::MalformedResponse,
                                format!("openai: bad b64_json: {e}"),
                            )
                            .billed(Billed::Unknown)
                        })?;
                    Asset::bytes(bytes, Some(image_media_type(&format)))
                }
                (None, Some(url)) => Asset::url(url, Some(image_media_type(&format))),
                (None, None) => continue,
            };
            asset.dimensions = dimensions;
            outputs.push(asset);
        }
        if outputs.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                "openai: no images in the response",
            )
            .billed(Billed::Unknown));
        }
        let mut g = Generation::new(outputs);
        g.provider_request_id = resp.header(error::REQUEST_ID_HEADER).map(str::to_owned);
        g.response_model = Some(request.model.to_string());
        if let Some(u) = body.usage {
            g.usage.input_tokens = u.input_tokens;
            g.usage.output_tokens = u.output_tokens;
            if let Some(d) = u.input_tokens_details {
                g.usage.input_image_tokens = d.image_tokens;
                if let Some(t) = d.text_tokens {
                    g.usage.other.insert("input_text_tokens".into(), Decimal::from(t));
                }
            }
        }
        g.timings.total = started.elapsed();
        Ok(g)
    }
}

#[async_trait]
impl Provider for OpenAiProvider {
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
        let call = self.plan(request)?;
        let started = Instant::now();
        let (req, speech_type) = match call {
            Call::Generations(body) => (self.request(&self.generations_url).json(&body), None),
            Call::Edits(form) => (self.request(&self.edits_url).multipart(form), None),
            Call::Speech { body, media_type } => {
                (self.request(&self.speech_url).json(&body), Some(media_type))
            }
        };
        let resp = self.http.send_within(ctx, req).await?;
        if !resp.status.is_success() {
            return Err(parse_error(resp.status, &resp.headers, &resp.body));
        }
        let Some(fallback_type) = speech_type else {
            return self.read_images(&resp, request, started);
        };
        let content_type = resp
            .header("content-type")
            .and_then(|t| t.split(';').next())
            .map(|t| t.trim().to_ascii_lowercase());
        if resp.body.is_empty() || content_type.as_deref().is_some_and(|t| t.contains("json")) {
            // Speech answers audio bytes; a JSON (or empty) 2xx is not audio, and may have been billed.
            return Err(ProviderError::new(
                ErrorKind::MalformedResponse,
                format!("openai: speech answered without audio: {}", resp.snippet(300)),
            )
            .billed(Billed::Unknown)
            .status(Some(resp.status.as_u16()))
            .request_id(resp.header(error::REQUEST_ID_HEADER).map(str::to_owned)));
        }
        let media_type = content_type
            .filter(|t| t.starts_with("audio/"))
            .unwrap_or(fallback_type);
        let mut g = Generation::new(vec![Asset::bytes(resp.body.to_vec(), Some(media_type))]);
        g.provider_request_id = resp.header(error::REQUEST_ID_HEADER).map(str::to_owned);
        g.response_model = Some(request.model.to_string());
        if let Job::Audio(a) = &request.job {
            // OpenAI bills speech per input character and reports nothing: count what was sent.
            g.usage.characters = Some(a.characters());
        }
        g.timings.total = started.elapsed();
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_is_borrowed_from_the_body_unless_escaped() {
        let plain = br#"{"data":[{"b64_json":"aGk/+w=="},{"url":"https://x/y.png"},{"b64_json":null}]}"#;
        let r: ImagesResponse<'_> = serde_json::from_slice(plain).unwrap();
        assert!(matches!(r.data[0].b64_json, Some(Cow::Borrowed("aGk/+w=="))));
        assert!(r.data[1].b64_json.is_none() && r.data[2].b64_json.is_none());
        // JSON may escape `/`: still read correctly (then owned).
        let escaped = br#"{"data":[{"b64_json":"aGk\/+w=="}]}"#;
        let r: ImagesResponse<'_> = serde_json::from_slice(escaped).unwrap();
        assert!(matches!(&r.data[0].b64_json, Some(Cow::Owned(s)) if s == "aGk/+w=="));
    }
}
