use std::time::Duration;

use base64::Engine;

use super::common::{authed, client, header, json};
use genroute_emulators::{Emulator, Endpoint, Fault, Kind};
use serde_json::json;

#[tokio::test]
async fn tts_returns_audio_with_cost_headers() {
    let el = Emulator::start(Kind::ElevenLabs).await.unwrap();
    let c = client();
    let r = authed(
        &el,
        c.post(format!(
            "{}/v1/text-to-speech/voice123?output_format=mp3_44100_128",
            el.base_url()
        )),
    )
    .json(&json!({"text": "Hello world", "model_id": "eleven_flash_v2_5"}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("audio/mpeg"));
    assert_eq!(header(&r, "character-cost").as_deref(), Some("11"));
    assert!(header(&r, "request-id").is_some() && header(&r, "history-item-id").is_some());
    assert_eq!(header(&r, "current-concurrent-requests").as_deref(), Some("1"));
    assert!(r.bytes().await.unwrap().starts_with(b"ID3"));

    // The billed characters are configurable to differ from the text length.
    el.update_settings(|s| s.elevenlabs_character_cost = Some(3));
    let r = authed(
        &el,
        c.post(format!("{}/v1/text-to-speech/v/stream", el.base_url())),
    )
    .json(&json!({"text": "Hello world"}))
    .send()
    .await
    .unwrap();
    assert_eq!(header(&r, "character-cost").as_deref(), Some("3"));
    el.update_settings(|s| s.elevenlabs_cost_header = "x-character-count".into());
    let r = authed(&el, c.post(format!("{}/v1/text-to-speech/v", el.base_url())))
        .json(&json!({"text": "Hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            header(&r, "x-character-count").as_deref(),
            header(&r, "character-cost")
        ),
        (Some("3"), None)
    );
    assert_eq!(
        el.requests_to(Endpoint::Create)[1].model.as_deref(),
        Some("eleven_multilingual_v2")
    );
}

#[tokio::test]
async fn with_timestamps_and_limits() {
    let el = Emulator::start(Kind::ElevenLabs).await.unwrap();
    let c = client();
    let (code, b) = json(
        authed(
            &el,
            c.post(format!("{}/v1/text-to-speech/v/with-timestamps", el.base_url())),
        )
        .json(&json!({"text": "abc"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(b["alignment"]["characters"], json!(["a", "b", "c"]));
    assert!(
        !base64::engine::general_purpose::STANDARD
            .decode(b["audio_base64"].as_str().unwrap())
            .unwrap()
            .is_empty()
    );
    let (code, e) = json(
        authed(&el, c.post(format!("{}/v1/text-to-speech/v", el.base_url())))
            .json(&json!({"text": "x".repeat(5001), "model_id": "eleven_v3"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["detail"]["status"].as_str().unwrap()),
        (400, "max_character_limit_exceeded")
    );
}

#[tokio::test]
async fn sound_effects_and_music_validate_ranges() {
    let el = Emulator::start(Kind::ElevenLabs).await.unwrap();
    let c = client();
    let url = format!("{}/v1/sound-generation", el.base_url());
    let (code, e) = json(
        authed(&el, c.post(&url))
            .json(&json!({"text": "boom", "duration_seconds": 31}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["detail"][0]["loc"][1].as_str().unwrap()),
        (422, "duration_seconds")
    );
    let (code, _) = json(
        authed(&el, c.post(&url))
            .json(&json!({"text": "boom", "duration_seconds": 0.4}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 422);
    let r = authed(&el, c.post(&url))
        .json(&json!({"text": "boom", "duration_seconds": 2.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "character-cost").as_deref(), Some("50"));
    let murl = format!("{}/v1/music", el.base_url());
    let (code, _) = json(
        authed(&el, c.post(&murl))
            .json(&json!({"prompt": "jazz", "music_length_ms": 1000}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 422);
    let r = authed(&el, c.post(&murl))
        .json(&json!({"prompt": "jazz", "music_length_ms": 10000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("audio/mpeg"));
}

#[tokio::test]
async fn auth_quota_and_concurrency() {
    let el = Emulator::builder(Kind::ElevenLabs)
        .configure(|s| s.elevenlabs_concurrency_limit = Some(1))
        .start()
        .await
        .unwrap();
    let c = client();
    let url = format!("{}/v1/text-to-speech/v", el.base_url());
    let (code, e) = json(
        c.post(&url)
            .header("xi-api-key", "nope")
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["detail"]["status"].as_str().unwrap()),
        (401, "invalid_api_key")
    );
    el.faults().push(Fault::credit_exhausted());
    let (code, e) = json(
        authed(&el, c.post(&url))
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["detail"]["status"].as_str().unwrap()),
        (401, "quota_exceeded")
    );

    // One slow request holds the only slot: a second concurrent one gets 429 too_many_concurrent_requests.
    el.faults().push(Fault::slow(Duration::from_millis(400)));
    let slow = tokio::spawn({
        let rb = authed(&el, c.post(&url)).json(&json!({"text": "x"}));
        async move { rb.send().await.unwrap().status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (code, e) = json(
        authed(&el, c.post(&url))
            .json(&json!({"text": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["detail"]["status"].as_str().unwrap()),
        (429, "too_many_concurrent_requests")
    );
    assert_eq!(slow.await.unwrap(), 200);
}
