#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! ElevenLabs adapter against a wiremock server: the exact requests sent, audio bytes and billed
//! characters read, and every failure class.

use std::time::Duration;

use genroute_core::{
    AssetContent, AudioJobSpec, Billed, Decimal, ErrorKind, ImageJobSpec, ModelId, Provider, ProviderError,
    ProviderRequest,
};
use genroute_http::testing::test_context as ctx;
use genroute_provider_elevenlabs::{ElevenLabsConfig, ElevenLabsProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "sk_test_key";

fn provider(server: &MockServer) -> ElevenLabsProvider {
    ElevenLabsProvider::new(
        ElevenLabsConfig::new(KEY)
            .base_url(server.uri())
            .default_voice_id("default-voice"),
    )
    .unwrap()
}

fn req(model: &str, job: impl Into<genroute_core::Job>) -> ProviderRequest {
    ProviderRequest::new(ModelId::new(model).unwrap(), job)
}

fn audio(bytes: &[u8], content_type: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(bytes.to_vec(), content_type)
}

#[tokio::test]
async fn speech_sends_exact_request_and_reads_bytes_and_character_cost() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/text-to-speech/voice-123"))
        .and(query_param("output_format", "mp3_44100_128"))
        .and(header("xi-api-key", KEY))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "text": "Hello there, general.",
            "model_id": "eleven_multilingual_v2",
            "seed": 4_000_000_000u32,
            "voice_settings": {"stability": 0.5, "similarity_boost": 0.75},
        })))
        .respond_with(
            audio(b"ID3\x04mp3-bytes", "audio/mpeg")
                .insert_header("character-cost", "42")
                .insert_header("request-id", "req-abc")
                .insert_header("history-item-id", "hist-1"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let job = AudioJobSpec::speech("Hello there, general.")
        .voice("voice-123")
        .extra(
            "voice_settings",
            json!({"stability": 0.5, "similarity_boost": 0.75}),
        )
        // A job field wins over an extra of the same name.
        .extra("model_id", json!("eleven_v3"));
    let mut job = job;
    job.seed = Some(4_000_000_000);
    let g = provider(&server)
        .generate(&req("eleven_multilingual_v2", job.build().unwrap()), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 1);
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Bytes(b"ID3\x04mp3-bytes".to_vec())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("audio/mpeg"));
    assert_eq!(g.usage.characters, Some(42));
    assert_eq!(g.charged, None, "ElevenLabs reports characters, not money");
    assert_eq!(g.provider_request_id.as_deref(), Some("req-abc"));
    assert_eq!(g.provider_job_id.as_deref(), Some("hist-1"));
    assert_eq!(g.response_model.as_deref(), Some("eleven_multilingual_v2"));
    assert_eq!(g.seed, Some(4_000_000_000));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.query(), Some("output_format=mp3_44100_128"));
    server.verify().await;
}

#[tokio::test]
async fn default_voice_job_format_and_the_documented_header_spelling() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/text-to-speech/default-voice"))
        .and(query_param("output_format", "pcm_16000"))
        .and(header("xi-api-key", KEY))
        .and(body_json(
            json!({"text": "short", "model_id": "eleven_flash_v2_5"}),
        ))
        // No Content-Type: the media type comes from the format.
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_bytes(vec![0u8, 1, 2, 3])
                .insert_header("x-character-count", "5"),
        )
        .expect(1)
        .mount(&server)
        .await;
    let job = AudioJobSpec::speech("short").format("pcm_16000").build().unwrap();
    let g = provider(&server)
        .generate(&req("eleven_flash_v2_5", job), &ctx())
        .await
        .unwrap();
    assert_eq!(g.usage.characters, Some(5));
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("audio/pcm"));
    server.verify().await;
}

#[tokio::test]
async fn sound_effect_and_music_bodies() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/sound-generation"))
        .and(query_param("output_format", "mp3_44100_128"))
        .and(header("xi-api-key", KEY))
        .and(body_json(json!({
            "text": "a door creaks open",
            "model_id": "eleven_text_to_sound_v2",
            "duration_seconds": 2.5,
            "prompt_influence": 0.3
        })))
        .respond_with(audio(b"sfx", "audio/mpeg").insert_header("character-cost", "100"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/music"))
        .and(query_param("output_format", "mp3_44100_128"))
        .and(header("xi-api-key", KEY))
        .and(body_json(json!({
            "prompt": "lo-fi beat for studying",
            "music_length_ms": 30500,
            "model_id": "music_v1"
        })))
        .respond_with(audio(b"music", "audio/mpeg"))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server);
    let sfx = AudioJobSpec::sound_effect("a door creaks open")
        .duration_seconds(Decimal::new(25, 1))
        .extra("prompt_influence", json!(0.3))
        .build()
        .unwrap();
    let g = p
        .generate(&req("eleven_text_to_sound_v2", sfx), &ctx())
        .await
        .unwrap();
    assert_eq!(g.usage.output_seconds, Some(Decimal::new(25, 1)));
    assert_eq!(g.usage.characters, Some(100));
    assert_eq!(g.outputs[0].duration_seconds, Some(Decimal::new(25, 1)));

    let music = AudioJobSpec::music("lo-fi beat for studying", Decimal::new(305, 1))
        .build()
        .unwrap();
    let g = p.generate(&req("music_v1", music), &ctx()).await.unwrap();
    assert_eq!(g.outputs[0].content, AssetContent::Bytes(b"music".to_vec()));
    assert_eq!(g.usage.output_seconds, Some(Decimal::new(305, 1)));
    assert_eq!(g.usage.characters, None, "no header: not guessed");
    server.verify().await;
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let mut big_seed = AudioJobSpec::speech("hi");
    big_seed.seed = Some(u64::from(u32::MAX) + 1);
    let cases = vec![
        // Sound effects: 0.5–30 s.
        req(
            "eleven_text_to_sound_v2",
            AudioJobSpec::sound_effect("boom")
                .duration_seconds(Decimal::from(31))
                .build()
                .unwrap(),
        ),
        req(
            "eleven_text_to_sound_v2",
            AudioJobSpec::sound_effect("boom")
                .duration_seconds(Decimal::new(4, 1))
                .build()
                .unwrap(),
        ),
        // Music: 3–600 s.
        req(
            "music_v1",
            AudioJobSpec::music("x", Decimal::from(2)).build().unwrap(),
        ),
        req(
            "music_v1",
            AudioJobSpec::music("x", Decimal::from(601)).build().unwrap(),
        ),
        // eleven_v3 takes at most 5,000 characters.
        req(
            "eleven_v3",
            AudioJobSpec::speech("a".repeat(5_001)).build().unwrap(),
        ),
        // Wrong operation for the model, unknown model, not audio.
        req("music_v1", AudioJobSpec::speech("hi").build().unwrap()),
        req(
            "eleven_monolingual_v1",
            AudioJobSpec::speech("hi").build().unwrap(),
        ),
        req("eleven_v3", ImageJobSpec::new("a cat").build().unwrap()),
        // A voice that would climb out of the path; a seed above 2^32-1.
        req(
            "eleven_v3",
            AudioJobSpec::speech("hi").voice("../v1/user").build().unwrap(),
        ),
        req("eleven_v3", big_seed.build().unwrap()),
    ];
    for r in cases {
        let err = p.generate(&r, &ctx()).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest),
            "{err}"
        );
        assert_eq!(err.billing(), &Billed::No);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn failure(code: u16, headers: &[(&str, &str)], body: Value) -> ProviderError {
    let server = MockServer::start().await;
    let mut t = ResponseTemplate::new(code).set_body_json(body);
    for (k, v) in headers {
        t = t.insert_header(*k, *v);
    }
    Mock::given(method("POST"))
        .respond_with(t)
        .expect(1)
        .mount(&server)
        .await;
    let job = AudioJobSpec::speech("hello").build().unwrap();
    let e = provider(&server)
        .generate(&req("eleven_turbo_v2_5", job), &ctx())
        .await
        .unwrap_err();
    server.verify().await;
    e
}

#[tokio::test]
async fn every_error_class_is_mapped() {
    let detail = |status: &str, message: &str| json!({"detail": {"status": status, "message": message}});
    let cases: Vec<(u16, Value, ErrorKind, bool, Billed)> = vec![
        (
            401,
            detail("quota_exceeded", "This request exceeds your quota."),
            ErrorKind::InsufficientCredits,
            false,
            Billed::No,
        ),
        (
            401,
            detail("invalid_api_key", "Invalid API key"),
            ErrorKind::Auth,
            false,
            Billed::No,
        ),
        (
            429,
            detail("too_many_concurrent_requests", "Too many concurrent requests"),
            ErrorKind::RateLimited,
            true,
            Billed::No,
        ),
        (
            429,
            detail("system_busy", "The system is busy"),
            ErrorKind::RateLimited,
            true,
            Billed::No,
        ),
        (
            400,
            detail("max_character_limit_exceeded", "Text too long"),
            ErrorKind::InvalidRequest,
            false,
            Billed::No,
        ),
        (
            422,
            json!({"detail": [{"loc": ["body", "text"], "msg": "field required", "type": "missing"}]}),
            ErrorKind::InvalidRequest,
            false,
            Billed::No,
        ),
        (
            500,
            json!({"detail": "Internal Server Error"}),
            ErrorKind::Unavailable,
            true,
            Billed::No,
        ),
    ];
    for (code, body, kind, temporary, billed) in cases {
        let e = failure(code, &[("request-id", "rq-1")], body.clone()).await;
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (kind, temporary, &billed),
            "{code} {body}"
        );
        assert_eq!(e.http_status(), Some(code));
        assert_eq!(e.provider_request_id(), Some("rq-1"));
    }
    let e = failure(429, &[("retry-after", "7")], detail("system_busy", "busy")).await;
    assert_eq!(e.provider_code(), Some("system_busy"));
    assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(7)));
    let e = failure(401, &[], detail("quota_exceeded", "no credits")).await;
    assert_eq!(e.provider_code(), Some("quota_exceeded"));
    assert_eq!(e.retry_after_hint(), None);
}

#[tokio::test]
async fn success_without_audio_is_malformed_and_possibly_billed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    let e = provider(&server)
        .generate(
            &req("eleven_v3", AudioJobSpec::speech("hi").build().unwrap()),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.billing()),
        (ErrorKind::MalformedResponse, &Billed::Unknown)
    );
}

#[tokio::test]
async fn deadline_bounds_the_call_and_billing_is_unknown() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(audio(b"late", "audio/mpeg").set_delay(Duration::from_millis(500)))
        .mount(&server)
        .await;
    let short = ctx().with_timeout(Duration::from_millis(50));
    let e = provider(&server)
        .generate(
            &req("eleven_v3", AudioJobSpec::speech("hi").build().unwrap()),
            &short,
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, true, &Billed::Unknown)
    );
}
