//! ElevenLabs text-to-speech, sound effects and music, PROVIDERS.md §5.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};

use crate::fault::FaultKind;
use crate::log::Endpoint;
use crate::server::{
    Shared, Tag, fake_audio, header_str, hex_id, json_response, parse_json, serve_file, set_header, with_tag,
};
use crate::validate::{Violation, chars, opt_bool, opt_int, opt_num, opt_str};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/text-to-speech/{voice_id}", post(tts))
        .route("/v1/text-to-speech/{voice_id}/stream", post(tts_stream))
        .route(
            "/v1/text-to-speech/{voice_id}/with-timestamps",
            post(tts_timestamps),
        )
        .route("/v1/sound-generation", post(sound))
        .route("/v1/music", post(music))
        .route("/files/{*rest}", get(serve_file))
        .fallback(not_found)
}

fn detail(status: u16, code: &str, message: &str) -> Response {
    json_response(status, &json!({"detail": {"status": code, "message": message}}))
}

fn check_auth(s: &Shared, h: &HeaderMap) -> Result<(), Response> {
    match header_str(h, "xi-api-key") {
        None => Err(detail(
            401,
            "needs_authorization",
            "Neither authorization header nor xi-api-key received, please provide one.",
        )),
        Some(k) if k == s.settings().api_key => Ok(()),
        Some(_) => Err(detail(401, "invalid_api_key", "Invalid API key")),
    }
}

pub(crate) fn render_fault(f: &FaultKind) -> Response {
    match f {
        FaultKind::ServerError { status: 503 } => detail(
            503,
            "service_unavailable",
            "The service is temporarily unavailable, please try again later.",
        ),
        FaultKind::ServerError { status } => detail(
            *status,
            "internal_server_error",
            "An internal error occurred, please try again later.",
        ),
        FaultKind::RateLimited { retry_after } => {
            let mut r = detail(
                429,
                "system_busy",
                "The system is experiencing heavy traffic, please try again. Higher subscriptions have higher priority.",
            );
            set_header(
                &mut r,
                "retry-after",
                &crate::server::retry_after_secs(*retry_after).to_string(),
            );
            r
        }
        FaultKind::CreditExhausted => detail(
            401,
            "quota_exceeded",
            "This request exceeds your quota of 10000. You have 12 credits remaining, while 86 credits are required for this request.",
        ),
        _ => detail(500, "internal_server_error", "An internal error occurred."),
    }
}

/// FastAPI validation error.
fn invalid(v: &Violation) -> Response {
    json_response(
        422,
        &json!({"detail": [{"type": v.kind, "loc": ["body", v.field], "msg": v.msg}]}),
    )
}

/// `output_format` query → content type and a file name whose extension picks the magic bytes.
fn output_format(q: &Option<String>) -> Result<(&'static str, &'static str), Response> {
    let fmt = q
        .as_deref()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("output_format=")))
        .unwrap_or("mp3_44100_128");
    let out = match fmt.split('_').next().unwrap_or("") {
        "mp3" => ("audio/mpeg", "x.mp3"),
        "pcm" => ("audio/pcm", "x.bin"),
        "ulaw" | "alaw" => ("audio/basic", "x.bin"),
        "opus" => ("audio/opus", "x.bin"),
        "wav" => ("audio/wav", "x.wav"),
        _ => {
            return Err(detail(
                400,
                "invalid_output_format",
                &format!("Invalid output format: {fmt}"),
            ));
        }
    };
    Ok(out)
}

/// Decrements the in-flight gauge when the request ends.
struct InFlight<'a>(&'a Shared);
impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Common prologue: count, auth, concurrency, request fault. Returns the guard and the parsed body.
async fn begin<'a>(
    s: &'a Shared,
    h: &HeaderMap,
    body: &Bytes,
    tag: &mut Tag,
) -> Result<(InFlight<'a>, Value), Response> {
    check_auth(s, h)?;
    let now = s.inflight.fetch_add(1, Ordering::Relaxed) + 1;
    let guard = InFlight(s);
    if let Some(limit) = s.settings().elevenlabs_concurrency_limit
        && now > i64::from(limit)
    {
        return Err(detail(
            429,
            "too_many_concurrent_requests",
            &format!("You have too many concurrent requests. Your limit is {limit}."),
        ));
    }
    let v = match parse_json(body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return Err(invalid(&Violation::new(
                "body",
                "dict_type",
                "Input should be a valid dictionary",
            )));
        }
        Err(e) => {
            return Err(json_response(
                422,
                &json!({"detail": [{"type": "json_invalid", "loc": ["body"], "msg": e}]}),
            ));
        }
    };
    tag.model = v.get("model_id").and_then(Value::as_str).map(str::to_owned);
    if let Some(r) = s.request_fault(tag, render_fault).await {
        return Err(r);
    }
    Ok((guard, v))
}

/// The job-phase fault of a synchronous create, rendered.
async fn job_fault(s: &Shared, tag: &mut Tag) -> Option<Response> {
    match s.job_fault(tag)? {
        // Unconfirmed shape: ElevenLabs does not document a moderation error for these endpoints.
        FaultKind::ContentRejected => Some(detail(
            400,
            "content_against_policy",
            "This request was flagged by our content moderation system and cannot be processed.",
        )),
        FaultKind::FailAfterRunning => Some(render_fault(&FaultKind::ServerError { status: 500 })),
        FaultKind::Stuck | FaultKind::StuckInQueue => {
            s.hang().await;
            Some(render_fault(&FaultKind::ServerError { status: 500 }))
        }
        _ => None,
    }
}

fn audio(s: &Shared, ct: &'static str, name: &str, seconds: f64, cost: u64) -> Response {
    let (_, bytes) = fake_audio(name, seconds);
    let mut r = bytes.into_response();
    headers(s, &mut r, cost);
    set_header(&mut r, "content-type", ct);
    r
}

fn headers(s: &Shared, r: &mut Response, cost: u64) {
    let st = s.settings();
    let cost = st.elevenlabs_character_cost.unwrap_or(cost);
    set_header(r, &st.elevenlabs_cost_header, &cost.to_string());
    set_header(r, "request-id", &hex_id(20));
    set_header(r, "history-item-id", &hex_id(20));
    let cur = s.inflight.load(Ordering::Relaxed).max(1);
    set_header(r, "current-concurrent-requests", &cur.to_string());
    set_header(
        r,
        "maximum-concurrent-requests",
        &st.elevenlabs_concurrency_limit.unwrap_or(10).to_string(),
    );
}

const TTS_MODELS: [(&str, u64); 4] = [
    ("eleven_multilingual_v2", 10_000),
    ("eleven_v3", 5_000),
    ("eleven_flash_v2_5", 40_000),
    ("eleven_turbo_v2_5", 40_000),
];

/// Validate a TTS body; returns the text.
fn tts_input(v: &Value) -> Result<String, Response> {
    let text = match v.get("text") {
        Some(Value::String(t)) => t.clone(),
        None | Some(Value::Null) => {
            return Err(invalid(&Violation::new("text", "missing", "Field required")));
        }
        Some(_) => {
            return Err(invalid(&Violation::new(
                "text",
                "string_type",
                "Input should be a valid string",
            )));
        }
    };
    let model = v
        .get("model_id")
        .and_then(Value::as_str)
        .unwrap_or("eleven_multilingual_v2");
    let Some((_, max)) = TTS_MODELS.iter().find(|(m, _)| *m == model) else {
        return Err(detail(
            400,
            "model_not_found",
            &format!("A model with model ID {model} does not exist."),
        ));
    };
    if text.trim().is_empty() {
        return Err(detail(400, "invalid_text", "Text must not be empty."));
    }
    let n = chars(&text);
    if n > *max {
        return Err(detail(
            400,
            "max_character_limit_exceeded",
            &format!(
                "You are sending {n} characters with a single request, but the maximum for {model} is {max} characters."
            ),
        ));
    }
    if let Some(vs) = v.get("voice_settings") {
        for k in ["stability", "similarity_boost", "style"] {
            opt_num(vs, k, 0.0, 1.0)
                .map_err(|e| invalid(&Violation::new(&format!("voice_settings.{k}"), e.kind, e.msg)))?;
        }
    }
    opt_int(v, "seed", 0, 4_294_967_295).map_err(|e| invalid(&e))?;
    Ok(text)
}

async fn tts_common(
    s: &Shared,
    q: &Option<String>,
    h: &HeaderMap,
    body: &Bytes,
    timestamps: bool,
) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    let (_guard, v) = match begin(s, h, body, &mut tag).await {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    if tag.model.is_none() {
        tag.model = Some("eleven_multilingual_v2".into());
    }
    let (ct, name) = match output_format(q) {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    let text = match tts_input(&v) {
        Ok(t) => t,
        Err(r) => return with_tag(r, tag),
    };
    if let Some(r) = job_fault(s, &mut tag).await {
        return with_tag(r, tag);
    }
    let n = chars(&text);
    let seconds = n as f64 / 15.0;
    if !timestamps {
        return with_tag(audio(s, ct, name, seconds, n), tag);
    }
    let (_, bytes) = fake_audio(name, seconds);
    let letters: Vec<String> = text.chars().map(String::from).collect();
    let starts: Vec<f64> = (0..letters.len()).map(|i| i as f64 / 15.0).collect();
    let ends: Vec<f64> = (1..=letters.len()).map(|i| i as f64 / 15.0).collect();
    let alignment = json!({"characters": letters, "character_start_times_seconds": starts,
                           "character_end_times_seconds": ends});
    let body = json!({"audio_base64": base64::engine::general_purpose::STANDARD.encode(bytes),
                      "alignment": alignment, "normalized_alignment": alignment});
    let mut r = json_response(200, &body);
    headers(s, &mut r, n);
    with_tag(r, tag)
}

async fn tts(
    State(s): State<Arc<Shared>>,
    Path(_voice): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    tts_common(&s, &q, &h, &body, false).await
}

async fn tts_stream(
    State(s): State<Arc<Shared>>,
    Path(_voice): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    tts_common(&s, &q, &h, &body, false).await
}

async fn tts_timestamps(
    State(s): State<Arc<Shared>>,
    Path(_voice): Path<String>,
    RawQuery(q): RawQuery,
    h: HeaderMap,
    body: Bytes,
) -> Response {
    tts_common(&s, &q, &h, &body, true).await
}

async fn sound(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    let (_guard, v) = match begin(&s, &h, &body, &mut tag).await {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    if tag.model.is_none() {
        tag.model = Some("eleven_text_to_sound_v2".into());
    }
    let (ct, name) = match output_format(&q) {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    let checked = (|| {
        let text = crate::validate::req_str(&v, "text")?.to_owned();
        let d = opt_num(&v, "duration_seconds", 0.5, 30.0)?;
        opt_num(&v, "prompt_influence", 0.0, 1.0)?;
        opt_bool(&v, "loop")?;
        Ok::<_, Violation>((text, d))
    })();
    let (_text, duration) = match checked {
        Ok(x) => x,
        Err(e) => return with_tag(invalid(&e), tag),
    };
    if let Some(r) = job_fault(&s, &mut tag).await {
        return with_tag(r, tag);
    }
    // Billed as 20 credits per second when a duration is given, 100 otherwise (unconfirmed).
    let cost = duration.map_or(100, |d| (d * 20.0).ceil() as u64);
    with_tag(audio(&s, ct, name, duration.unwrap_or(5.0), cost), tag)
}

async fn music(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery, h: HeaderMap, body: Bytes) -> Response {
    let mut tag = s.enter(Endpoint::Create);
    let (_guard, v) = match begin(&s, &h, &body, &mut tag).await {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    if tag.model.is_none() {
        tag.model = Some("music_v1".into());
    }
    let (ct, name) = match output_format(&q) {
        Ok(x) => x,
        Err(r) => return with_tag(r, tag),
    };
    let checked = (|| {
        let prompt = opt_str(&v, "prompt")?;
        let plan = v.get("composition_plan").filter(|p| !p.is_null());
        let ms = opt_int(&v, "music_length_ms", 3000, 600_000)?;
        match (prompt, plan) {
            (Some(_), Some(_)) => Err(Violation::new(
                "prompt",
                "value_error",
                "Only one of prompt or composition_plan may be provided",
            )),
            (None, None) => Err(Violation::new(
                "prompt",
                "missing",
                "One of prompt or composition_plan must be provided",
            )),
            (Some(p), None) => Ok((chars(p), ms.unwrap_or(30_000))),
            (None, Some(p)) => {
                let total: i64 = p["sections"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x["duration_ms"].as_i64()).sum())
                    .unwrap_or(30_000);
                Ok((chars(&p.to_string()), ms.unwrap_or(total)))
            }
        }
    })();
    let (chars_in, ms) = match checked {
        Ok(x) => x,
        Err(e) => return with_tag(invalid(&e), tag),
    };
    if let Some(r) = job_fault(&s, &mut tag).await {
        return with_tag(r, tag);
    }
    with_tag(audio(&s, ct, name, ms as f64 / 1000.0, chars_in), tag)
}

async fn not_found(State(s): State<Arc<Shared>>) -> Response {
    with_tag(
        json_response(404, &json!({"detail": "Not Found"})),
        crate::server::not_found_tag(&s),
    )
}
