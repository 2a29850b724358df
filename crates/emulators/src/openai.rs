//! OpenAI images (generations, edits) and speech, PROVIDERS.md §3.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Map, Value, json};

use crate::fault::FaultKind;
use crate::log::Endpoint;
use crate::server::{
    PNG_1X1, Shared, Tag, fake_audio, header_str, hex_id, json_bytes, json_response, parse_json, serve_file,
    set_header, with_tag,
};
use crate::validate::chars;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/images/generations", post(generations))
        .route("/v1/images/edits", post(edits))
        .route("/v1/audio/speech", post(speech))
        .route("/files/{*rest}", get(serve_file))
        .fallback(not_found)
}

fn error(status: u16, message: &str, etype: &str, param: Option<&str>, code: Option<&str>) -> Response {
    json_response(
        status,
        &json!({"error": {"message": message, "type": etype, "param": param, "code": code}}),
    )
}

fn invalid(message: &str, param: &str, code: Option<&str>) -> Response {
    error(400, message, "invalid_request_error", Some(param), code)
}

/// Every OpenAI answer carries a request id.
fn finish(mut r: Response, tag: Tag) -> Response {
    set_header(&mut r, "x-request-id", &format!("req_{}", hex_id(32)));
    set_header(&mut r, "openai-processing-ms", "1234");
    with_tag(r, tag)
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    match header_str(h, "authorization").and_then(|v| v.strip_prefix("Bearer ")) {
        None => Err(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )),
        Some(k) if k == s.settings().api_key => Ok(()),
        Some(k) => {
            let shown: String = k.chars().take(6).collect();
            Err(error(
                401,
                &format!(
                    "Incorrect API key provided: {shown}*****. You can find your API key at https://platform.openai.com/account/api-keys."
                ),
                "invalid_request_error",
                None,
                Some("invalid_api_key"),
            ))
        }
    }
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status: 502 } => json_bytes(
            502,
            b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n".to_vec(),
            "text/html",
        ),
        FaultKind::ServerError { status: 503 } => {
            error(503, "The engine is currently overloaded, please try again later.", "server_error", None, None)
        }
        FaultKind::ServerError { status } => error(
            *status,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        ),
        FaultKind::RateLimited { retry_after } => {
            let ms = retry_after.as_millis().max(1);
            let mut r = error(
                429,
                &format!(
                    "Rate limit reached for images per minute (IPM): Limit 5, Used 5, Requested 1. Please try again in {:.3}s.",
                    retry_after.as_secs_f64()
                ),
                "requests",
                None,
                Some("rate_limit_exceeded"),
            );
            set_header(&mut r, "retry-after", &retry_after.as_secs_f64().ceil().max(1.0).to_string());
            set_header(&mut r, "retry-after-ms", &ms.to_string());
            set_header(&mut r, "x-ratelimit-limit-requests", "5");
            set_header(&mut r, "x-ratelimit-remaining-requests", "0");
            set_header(&mut r, "x-ratelimit-reset-requests", &format!("{}ms", ms));
            r
        }
        FaultKind::CreditExhausted => error(
            429,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        ),
        _ => error(500, "The server had an error while processing your request.", "server_error", None, None),
    }
}

fn moderation_blocked(model: &str) -> Response {
    if model.starts_with("dall-e") {
        error(
            400,
            "Your request was rejected as a result of our safety system. Your prompt may contain text that is not allowed by our safety system.",
            "invalid_request_error",
            None,
            Some("content_policy_violation"),
        )
    } else {
        error(
            400,
            "Your request was rejected by the safety system. If you believe this is an error, contact us at help.openai.com and include the request ID.",
            "image_generation_user_error",
            None,
            Some("moderation_blocked"),
        )
    }
}

fn b64_png() -> &'static str {
    static B64: OnceLock<String> = OnceLock::new();
    B64.get_or_init(|| base64::engine::general_purpose::STANDARD.encode(PNG_1X1))
}

const GPT: [&str; 4] = ["gpt-image-1", "gpt-image-1-mini", "gpt-image-1.5", "gpt-image-2"];
const MODELS: [&str; 6] = [
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "gpt-image-1-mini",
    "gpt-image-1.5",
    "gpt-image-2",
];

/// Output image tokens for one GPT image: the published per-quality table at the three standard sizes,
/// scaled by area for other sizes.
pub(crate) fn output_tokens(quality: &str, w: u32, h: u32) -> u64 {
    let (sq, port, land) = match quality {
        "low" => (272, 408, 400),
        "high" => (4160, 6240, 6208),
        _ => (1056, 1584, 1568),
    };
    match (w, h) {
        (1024, 1024) => sq,
        (1024, 1536) => port,
        (1536, 1024) => land,
        _ => (sq as f64 * (f64::from(w) * f64::from(h)) / (1024.0 * 1024.0)).round() as u64,
    }
}

/// Text input tokens, approximated as one token per 4 characters (rounded up).
fn text_tokens(prompt: &str) -> u64 {
    chars(prompt).div_ceil(4).max(1)
}

struct ImageReq {
    model: String,
    prompt: String,
    n: u64,
    size: (u32, u32),
    size_label: String,
    quality: String,
    response_format: String,
    output_format: String,
}

/// Validate an images request (fields as JSON values, for both JSON and multipart bodies).
fn validate(p: &Map<String, Value>, edit: bool) -> Result<ImageReq, Response> {
    let get_s = |k: &str| p.get(k).and_then(Value::as_str);
    let model = get_s("model").unwrap_or("dall-e-2").to_owned();
    if !MODELS.contains(&model.as_str()) || (edit && model == "dall-e-3") {
        return Err(invalid(
            &format!(
                "Invalid value: '{model}'. Supported values are: {}.",
                crate::validate::quoted_list(&MODELS)
            ),
            "model",
            Some("invalid_value"),
        ));
    }
    let gpt = GPT.contains(&model.as_str());
    let prompt = match get_s("prompt") {
        Some(s) if !s.is_empty() => s.to_owned(),
        _ => {
            return Err(invalid(
                "Missing required parameter: 'prompt'.",
                "prompt",
                Some("missing_required_parameter"),
            ));
        }
    };
    let max_prompt = if gpt {
        32_000
    } else if model == "dall-e-3" {
        4000
    } else {
        1000
    };
    if chars(&prompt) > max_prompt {
        return Err(invalid(
            &format!(
                "Invalid 'prompt': string too long. Expected a string with maximum length {max_prompt}, but got a string with length {} instead.",
                chars(&prompt)
            ),
            "prompt",
            Some("string_above_max_length"),
        ));
    }
    let n = match p.get("n") {
        None | Some(Value::Null) => 1,
        Some(v) => match v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())) {
            Some(n) if (1..=10).contains(&n) => n,
            _ => {
                return Err(invalid(
                    "Invalid 'n': integer must be between 1 and 10.",
                    "n",
                    Some("integer_out_of_range"),
                ));
            }
        },
    };
    if model == "dall-e-3" && n != 1 {
        return Err(invalid("You must provide n=1 for this model.", "n", None));
    }
    for k in [
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "partial_images",
        "stream",
    ] {
        if !gpt && p.contains_key(k) {
            return Err(invalid(
                &format!("Unknown parameter: '{k}'."),
                k,
                Some("unknown_parameter"),
            ));
        }
    }
    for k in ["response_format", "style"] {
        if gpt && p.contains_key(k) {
            return Err(invalid(
                &format!("Unknown parameter: '{k}'."),
                k,
                Some("unknown_parameter"),
            ));
        }
    }
    let sizes: &[&str] = match model.as_str() {
        "dall-e-2" => &["256x256", "512x512", "1024x1024"],
        "dall-e-3" => &["1024x1024", "1792x1024", "1024x1792"],
        _ => &["1024x1024", "1536x1024", "1024x1536", "auto"],
    };
    let size_label = get_s("size")
        .unwrap_or(if gpt { "auto" } else { "1024x1024" })
        .to_owned();
    let parse = |s: &str| {
        s.split_once('x')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
    };
    let size = if size_label == "auto" {
        (1024, 1024)
    } else if sizes.contains(&size_label.as_str()) {
        parse(&size_label).unwrap_or((1024, 1024))
    } else if model == "gpt-image-2" {
        match parse(&size_label) {
            Some((w, h))
                if w % 16 == 0 && h % 16 == 0 && w.max(h) <= 3840 && w.min(h) <= 2160 && w > 0 && h > 0 =>
            {
                (w, h)
            }
            _ => {
                return Err(invalid(
                    &format!("Invalid size '{size_label}'."),
                    "size",
                    Some("invalid_value"),
                ));
            }
        }
    } else {
        return Err(invalid(
            &format!(
                "Invalid value: '{size_label}'. Supported values are: {}.",
                crate::validate::quoted_list(sizes)
            ),
            "size",
            Some("invalid_value"),
        ));
    };
    let qualities: &[&str] = match model.as_str() {
        "dall-e-2" => &["standard"],
        "dall-e-3" => &["standard", "hd"],
        _ => &["low", "medium", "high", "auto"],
    };
    let quality = get_s("quality").unwrap_or(if gpt { "auto" } else { "standard" });
    if !qualities.contains(&quality) {
        return Err(invalid(
            &format!(
                "Invalid value: '{quality}'. Supported values are: {}.",
                crate::validate::quoted_list(qualities)
            ),
            "quality",
            Some("invalid_value"),
        ));
    }
    let quality = if quality == "auto" { "medium" } else { quality }.to_owned();
    let response_format = get_s("response_format")
        .unwrap_or(if gpt { "b64_json" } else { "url" })
        .to_owned();
    if !["url", "b64_json"].contains(&response_format.as_str()) {
        return Err(invalid(
            &format!("Invalid value: '{response_format}'. Supported values are: 'url' and 'b64_json'."),
            "response_format",
            Some("invalid_value"),
        ));
    }
    let output_format = get_s("output_format").unwrap_or("png").to_owned();
    if !["png", "jpeg", "webp"].contains(&output_format.as_str()) {
        return Err(invalid(
            "Invalid value for 'output_format'.",
            "output_format",
            Some("invalid_value"),
        ));
    }
    let size_label = if size_label == "auto" {
        "1024x1024".to_owned()
    } else {
        size_label
    };
    Ok(ImageReq {
        model,
        prompt,
        n,
        size,
        size_label,
        quality,
        response_format,
        output_format,
    })
}

fn image_response(s: &Shared, r: &ImageReq, input_images: u64) -> Response {
    let gpt = GPT.contains(&r.model.as_str());
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let data: Vec<Value> = (0..r.n)
        .map(|i| {
            if r.response_format == "b64_json" {
                let mut d = json!({"b64_json": b64_png()});
                if r.model == "dall-e-3" {
                    d["revised_prompt"] = json!(format!("A detailed rendering of: {}", r.prompt));
                }
                d
            } else {
                let mut d = json!({"url": format!("{}/files/img-{}-{i}.png", s.origin, hex_id(24))});
                if r.model == "dall-e-3" {
                    d["revised_prompt"] = json!(format!("A detailed rendering of: {}", r.prompt));
                }
                d
            }
        })
        .collect();
    let mut body = json!({"created": created, "data": data});
    if gpt {
        let text = text_tokens(&r.prompt);
        let image_in = input_images * s.settings().openai_image_input_tokens;
        let out = output_tokens(&r.quality, r.size.0, r.size.1) * r.n;
        body["background"] = json!("opaque");
        body["output_format"] = json!(r.output_format);
        body["quality"] = json!(r.quality);
        body["size"] = json!(r.size_label);
        body["usage"] = json!({
            "input_tokens": text + image_in,
            "input_tokens_details": {"text_tokens": text, "image_tokens": image_in},
            "output_tokens": out,
            "output_tokens_details": {"image_tokens": out, "text_tokens": 0},
            "total_tokens": text + image_in + out,
        });
    }
    json_response(200, &body)
}

/// The job-phase fault of a synchronous create, rendered; `None` to answer normally.
async fn sync_job_fault(s: &Shared, tag: &mut Tag, model: &str) -> Option<Response> {
    match s.job_fault(tag)? {
        FaultKind::ContentRejected => Some(moderation_blocked(model)),
        FaultKind::FailAfterRunning => Some(render_fault(&FaultKind::ServerError { status: 500 })),
        FaultKind::Stuck | FaultKind::StuckInQueue => {
            s.hang().await;
            Some(render_fault(&FaultKind::ServerError { status: 504 }))
        }
        _ => None,
    }
}

async fn generations(State(s): State<Arc<Shared>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(&s, &h) {
        return finish(r, tag);
    }
    let v = match parse_json(&body) {
        Ok(Value::Object(m)) => m,
        Ok(_) | Err(_) => {
            let r = invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
                "body",
                None,
            );
            return finish(r, tag);
        }
    };
    tag.model = Some(
        v.get("model")
            .and_then(Value::as_str)
            .unwrap_or("dall-e-2")
            .to_owned(),
    );
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return finish(r, tag);
    }
    let req = match validate(&v, false) {
        Ok(r) => r,
        Err(r) => return finish(r, tag),
    };
    if let Some(r) = sync_job_fault(&s, &mut tag, &req.model).await {
        return finish(r, tag);
    }
    finish(image_response(&s, &req, 0), tag)
}

async fn edits(State(s): State<Arc<Shared>>, req: Request) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(&s, req.headers()) {
        return finish(r, tag);
    }
    let mut mp = match Multipart::from_request(req, &()).await {
        Ok(m) => m,
        Err(_) => {
            let r = invalid(
                "Invalid Content-Type header (application/json), expected multipart/form-data.",
                "body",
                None,
            );
            return finish(r, tag);
        }
    };
    let mut fields = Map::new();
    let mut images = 0u64;
    loop {
        match mp.next_field().await {
            Ok(Some(f)) => {
                let name = f.name().unwrap_or("").to_owned();
                let is_file = f.file_name().is_some();
                let data = f.bytes().await.unwrap_or_default();
                match name.as_str() {
                    "image" | "image[]" => images += 1,
                    "mask" => {}
                    _ if !is_file => {
                        fields.insert(name, Value::String(String::from_utf8_lossy(&data).into_owned()));
                    }
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(_) => return finish(invalid("Could not parse multipart form.", "body", None), tag),
        }
    }
    tag.model = Some(
        fields
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("dall-e-2")
            .to_owned(),
    );
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return finish(r, tag);
    }
    if images == 0 {
        return finish(
            invalid(
                "Missing required parameter: 'image'.",
                "image",
                Some("missing_required_parameter"),
            ),
            tag,
        );
    }
    let req = match validate(&fields, true) {
        Ok(r) => r,
        Err(r) => return finish(r, tag),
    };
    if let Some(r) = sync_job_fault(&s, &mut tag, &req.model).await {
        return finish(r, tag);
    }
    finish(image_response(&s, &req, images), tag)
}

const VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse", "marin",
    "cedar",
];

async fn speech(State(s): State<Arc<Shared>>, h: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    if let Err(r) = check_auth(&s, &h) {
        return finish(r, tag);
    }
    let v = match parse_json(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return finish(
                invalid("We could not parse the JSON body of your request.", "body", None),
                tag,
            );
        }
    };
    let model = v.get("model").and_then(Value::as_str).unwrap_or("").to_owned();
    tag.model = Some(model.clone());
    if let Some(r) = s.request_fault(&mut tag, render_fault).await {
        return finish(r, tag);
    }
    if model.is_empty() {
        return finish(
            invalid(
                "Missing required parameter: 'model'.",
                "model",
                Some("missing_required_parameter"),
            ),
            tag,
        );
    }
    if !["tts-1", "tts-1-hd", "gpt-4o-mini-tts"].contains(&model.as_str()) {
        return finish(
            invalid(
                &format!(
                    "Invalid value: '{model}'. Supported values are: 'tts-1', 'tts-1-hd' and 'gpt-4o-mini-tts'."
                ),
                "model",
                Some("invalid_value"),
            ),
            tag,
        );
    }
    let input = match v.get("input").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => t,
        _ => {
            return finish(
                invalid(
                    "Missing required parameter: 'input'.",
                    "input",
                    Some("missing_required_parameter"),
                ),
                tag,
            );
        }
    };
    if chars(input) > 4096 {
        return finish(
            invalid(
                "Invalid 'input': string too long. Expected a string with maximum length 4096.",
                "input",
                Some("string_above_max_length"),
            ),
            tag,
        );
    }
    match v.get("voice").and_then(Value::as_str) {
        Some(voice) if VOICES.contains(&voice) => {}
        Some(voice) => {
            return finish(
                invalid(
                    &format!(
                        "Invalid value: '{voice}'. Supported values are: {}.",
                        crate::validate::quoted_list(&VOICES)
                    ),
                    "voice",
                    Some("invalid_value"),
                ),
                tag,
            );
        }
        None => {
            return finish(
                invalid(
                    "Missing required parameter: 'voice'.",
                    "voice",
                    Some("missing_required_parameter"),
                ),
                tag,
            );
        }
    }
    let fmt = v.get("response_format").and_then(Value::as_str).unwrap_or("mp3");
    let (ct, magic) = match fmt {
        "mp3" => ("audio/mpeg", "x.mp3"),
        "opus" => ("audio/opus", "x.bin"),
        "aac" => ("audio/aac", "x.bin"),
        "flac" => ("audio/flac", "x.bin"),
        "wav" => ("audio/wav", "x.wav"),
        "pcm" => ("audio/pcm", "x.bin"),
        other => {
            return finish(
                invalid(
                    &format!(
                        "Invalid value: '{other}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav' and 'pcm'."
                    ),
                    "response_format",
                    Some("invalid_value"),
                ),
                tag,
            );
        }
    };
    let speed = v.get("speed").and_then(Value::as_f64).unwrap_or(1.0);
    if !(0.25..=4.0).contains(&speed) {
        return finish(
            invalid(
                "Invalid 'speed': must be between 0.25 and 4.0.",
                "speed",
                Some("decimal_out_of_range"),
            ),
            tag,
        );
    }
    if let Some(r) = sync_job_fault(&s, &mut tag, &model).await {
        return finish(r, tag);
    }
    let secs = chars(input) as f64 / 15.0 / speed;
    let (_, bytes) = fake_audio(magic, secs);
    let mut r = bytes.into_response();
    set_header(&mut r, "content-type", ct);
    finish(r, tag)
}

async fn not_found(State(s): State<Arc<Shared>>) -> Response {
    let tag = crate::server::not_found_tag(&s);
    finish(
        error(404, "Invalid URL", "invalid_request_error", None, None),
        tag,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_table() {
        assert_eq!(output_tokens("low", 1024, 1024), 272);
        assert_eq!(output_tokens("medium", 1024, 1024), 1056);
        assert_eq!(output_tokens("high", 1024, 1024), 4160);
        assert_eq!(output_tokens("high", 1536, 1024), 6208);
        assert_eq!(output_tokens("medium", 1024, 1536), 1584);
        assert_eq!(output_tokens("low", 2048, 2048), 1088);
    }

    #[test]
    fn validation_rules() {
        let m = |v: Value| v.as_object().unwrap().clone();
        assert!(validate(&m(json!({"model": "dall-e-3", "prompt": "x", "n": 2})), false).is_err());
        assert!(
            validate(
                &m(json!({"model": "dall-e-3", "prompt": "x", "size": "1536x1024"})),
                false
            )
            .is_err()
        );
        assert!(
            validate(
                &m(json!({"model": "gpt-image-1", "prompt": "x", "response_format": "url"})),
                false
            )
            .is_err()
        );
        assert!(validate(&m(json!({"model": "gpt-image-1", "prompt": "x", "n": 11})), false).is_err());
        assert!(
            validate(
                &m(json!({"model": "gpt-image-2", "prompt": "x", "size": "2048x1152"})),
                false
            )
            .is_ok()
        );
        assert!(
            validate(
                &m(json!({"model": "gpt-image-2", "prompt": "x", "size": "2050x1152"})),
                false
            )
            .is_err()
        );
        let r = validate(&m(json!({"model": "gpt-image-1", "prompt": "x"})), false)
            .ok()
            .unwrap();
        assert_eq!((r.quality.as_str(), r.size), ("medium", (1024, 1024)));
    }
}
