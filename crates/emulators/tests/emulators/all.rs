//! Properties every emulator shares.
use super::common::client;
use genroute_emulators::{Emulator, Endpoint, Fault, Kind};

/// A create request for each emulator (method, path relative to the origin, JSON body).
fn create_of(kind: Kind) -> (&'static str, serde_json::Value) {
    use serde_json::json;
    match kind {
        Kind::Fal => ("/fal-ai/flux/dev", json!({"prompt": "x"})),
        Kind::Replicate => (
            "/v1/models/black-forest-labs/flux-schnell/predictions",
            json!({"input": {"prompt": "x"}}),
        ),
        Kind::OpenAi => (
            "/v1/images/generations",
            json!({"model": "gpt-image-1", "prompt": "x"}),
        ),
        Kind::Scenario => ("/v1/generate/txt2img", json!({"modelId": "sdxl", "prompt": "x"})),
        Kind::ElevenLabs => ("/v1/text-to-speech/v", json!({"text": "x"})),
        Kind::Runway => (
            "/v1/text_to_image",
            json!({"model": "gen4_image", "promptText": "x", "ratio": "1280:720"}),
        ),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_emulator_rejects_missing_auth_and_counts_requests() {
    let c = client();
    for h in Emulator::start_all().await.unwrap() {
        let (path, body) = create_of(h.kind());
        assert_eq!(h.total_requests(), 0, "{:?}", h.kind());
        let r = c
            .post(format!("{}{path}", h.origin()))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status().as_u16(), 400 | 401),
            "{:?}: {}",
            h.kind(),
            r.status()
        );
        let r = super::common::authed(&h, c.post(format!("{}{path}", h.origin())))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{:?}", h.kind());
        assert_eq!(h.count(Endpoint::Create), 2, "{:?}", h.kind());
        assert_eq!(h.requests().len(), 2);
        let rec = h.requests();
        assert!(rec.iter().all(|r| r.endpoint == Endpoint::Create));
        assert!(
            matches!(rec[0].status, 400 | 401)
                && rec[1].model.is_some()
                && rec[1].job_id.is_some() == !matches!(h.kind(), Kind::OpenAi | Kind::ElevenLabs)
        );
    }
}

#[tokio::test]
async fn every_emulator_renders_each_server_error() {
    let c = client();
    for h in Emulator::start_all().await.unwrap() {
        let (path, body) = create_of(h.kind());
        for status in [500u16, 502, 503] {
            h.faults().push(Fault::server_error(status).on(Endpoint::Create));
            let r = super::common::authed(&h, c.post(format!("{}{path}", h.origin())))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), status, "{:?}", h.kind());
            assert!(!r.bytes().await.unwrap().is_empty());
        }
        assert!(h.jobs().is_empty());
    }
}

#[tokio::test]
async fn drop_stops_the_server() {
    let h = Emulator::start(Kind::Runway).await.unwrap();
    let addr = h.origin().to_owned();
    drop(h);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let c = client();
    assert!(c.get(format!("{addr}/v1/organization")).send().await.is_err());
}

#[tokio::test]
async fn stuck_sync_request_ends_on_shutdown() {
    let h = Emulator::start(Kind::OpenAi).await.unwrap();
    h.faults().push(Fault::stuck());
    let c = client();
    let (path, body) = create_of(Kind::OpenAi);
    let req = super::common::authed(&h, c.post(format!("{}{path}", h.origin())))
        .json(&body)
        .send();
    let pending = tokio::spawn(req);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(h.count(Endpoint::Create), 1);
    tokio::time::timeout(std::time::Duration::from_secs(5), h.shutdown())
        .await
        .unwrap();
    let _ = pending.await.unwrap();
}

/// A minimal valid create (path relative to the origin, JSON body) for each shared model id.
fn create_for(kind: Kind, model: &str) -> (String, serde_json::Value) {
    use serde_json::json;
    match kind {
        Kind::Fal => (
            format!("/{model}"),
            if model.contains("kontext") {
                json!({"prompt": "x", "image_url": "https://example.com/a.png"})
            } else {
                json!({"prompt": "x"})
            },
        ),
        Kind::Replicate => (
            format!("/v1/models/{model}/predictions"),
            json!({"input": {"prompt": "x"}}),
        ),
        Kind::OpenAi if model.starts_with("tts") => (
            "/v1/audio/speech".into(),
            json!({"model": model, "input": "hello", "voice": "alloy"}),
        ),
        Kind::OpenAi => (
            "/v1/images/generations".into(),
            json!({"model": model, "prompt": "x"}),
        ),
        Kind::Scenario if model == "sdxl" || model == "sd-1.5" => (
            "/v1/generate/txt2img".into(),
            json!({"modelId": model, "prompt": "x", "numSamples": 1}),
        ),
        Kind::Scenario => (format!("/v1/generate/{model}"), json!({"image": "asset_abc"})),
        Kind::ElevenLabs if model == "music_v1" => {
            ("/v1/music".into(), json!({"prompt": "jazz", "model_id": model}))
        }
        Kind::ElevenLabs if model.contains("sound") => (
            "/v1/sound-generation".into(),
            json!({"text": "boom", "model_id": model}),
        ),
        Kind::ElevenLabs => (
            "/v1/text-to-speech/voice1".into(),
            json!({"text": "hello", "model_id": model}),
        ),
        Kind::Runway if model == "gen4_image" => (
            "/v1/text_to_image".into(),
            json!({"model": model, "promptText": "x", "ratio": "1920:1080"}),
        ),
        Kind::Runway if model == "gen4_turbo" => (
            "/v1/image_to_video".into(),
            json!({"model": model, "promptImage": "https://example.com/a.png"}),
        ),
        Kind::Runway => (
            "/v1/text_to_video".into(),
            json!({"model": model, "promptText": "x"}),
        ),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn every_shared_model_id_is_accepted_by_its_emulator() {
    let c = client();
    for h in Emulator::start_all().await.unwrap() {
        for model in h.kind().models() {
            let (path, body) = create_for(h.kind(), model);
            let r = super::common::authed(&h, c.post(format!("{}{path}", h.origin())))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            assert!(
                status.is_success(),
                "{:?} {model}: {status} {}",
                h.kind(),
                r.text().await.unwrap()
            );
        }
        let models: Vec<String> = h.requests().iter().filter_map(|r| r.model.clone()).collect();
        assert_eq!(models.len(), h.kind().models().len(), "{:?}", h.kind());
    }
}
