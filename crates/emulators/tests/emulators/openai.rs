use std::time::Duration;

use base64::Engine;

use super::common::{authed, client, header, json};
use genroute_emulators::{Emulator, Endpoint, Fault, Kind};
use serde_json::json;

#[tokio::test]
async fn gpt_image_reports_usage_tokens_by_quality() {
    let oa = Emulator::start(Kind::OpenAi).await.unwrap();
    let c = client();
    for (quality, size, n, tokens) in [
        ("low", "1024x1024", 1, 272),
        ("medium", "1024x1024", 2, 2112),
        ("high", "1536x1024", 1, 6208),
    ] {
        let r = authed(&oa, c.post(format!("{}/images/generations", oa.base_url())))
            .json(&json!({"model": "gpt-image-1", "prompt": "a red fox in snow", "quality": quality, "size": size, "n": n}))
            .send()
            .await
            .unwrap();
        assert!(header(&r, "x-request-id").unwrap().starts_with("req_"));
        let (code, b) = json(r).await;
        assert_eq!(code, 200);
        assert_eq!(b["usage"]["output_tokens"], tokens);
        assert_eq!(b["usage"]["input_tokens_details"]["text_tokens"], 5);
        assert_eq!(b["quality"], quality);
        assert_eq!(b["data"].as_array().unwrap().len(), n);
        let png = base64::engine::general_purpose::STANDARD
            .decode(b["data"][0]["b64_json"].as_str().unwrap())
            .unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}

#[tokio::test]
async fn dalle3_rules_and_urls() {
    let oa = Emulator::start(Kind::OpenAi).await.unwrap();
    let c = client();
    let url = format!("{}/images/generations", oa.base_url());
    let (code, e) = json(
        authed(&oa, c.post(&url))
            .json(&json!({"model": "dall-e-3", "prompt": "x", "n": 2}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, e["error"]["param"].as_str().unwrap()), (400, "n"));
    let (code, e) = json(
        authed(&oa, c.post(&url))
            .json(&json!({"model": "dall-e-3", "prompt": "x", "size": "1536x1024"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, e["error"]["param"].as_str().unwrap()), (400, "size"));
    let (code, b) = json(
        authed(&oa, c.post(&url))
            .json(&json!({"model": "dall-e-3", "prompt": "x", "size": "1792x1024", "quality": "hd"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert!(b.get("usage").is_none());
    let u = b["data"][0]["url"].as_str().unwrap();
    assert!(u.starts_with(oa.origin()));
    assert!(b["data"][0]["revised_prompt"].is_string());
    assert_eq!(c.get(u).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn edits_are_multipart_and_count_image_input_tokens() {
    let oa = Emulator::start(Kind::OpenAi).await.unwrap();
    let c = client();
    let png = reqwest::multipart::Part::bytes(vec![0x89, b'P', b'N', b'G'])
        .file_name("a.png")
        .mime_str("image/png")
        .unwrap();
    let png2 = reqwest::multipart::Part::bytes(vec![0x89, b'P', b'N', b'G'])
        .file_name("b.png")
        .mime_str("image/png")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .part("image[]", png)
        .part("image[]", png2)
        .text("model", "gpt-image-1")
        .text("prompt", "combine")
        .text("quality", "low");
    let (code, b) = json(
        authed(&oa, c.post(format!("{}/images/edits", oa.base_url())))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(b["usage"]["input_tokens_details"]["image_tokens"], 2 * 323);
    assert_eq!(b["usage"]["output_tokens"], 272);
}

#[tokio::test]
async fn speech_returns_audio_bytes() {
    let oa = Emulator::start(Kind::OpenAi).await.unwrap();
    let c = client();
    let url = format!("{}/audio/speech", oa.base_url());
    let r = authed(&oa, c.post(&url))
        .json(&json!({"model": "tts-1", "input": "Hello there", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type").as_deref(), Some("audio/mpeg"));
    assert!(r.bytes().await.unwrap().starts_with(b"ID3"));
    let r = authed(&oa, c.post(&url))
        .json(&json!({"model": "tts-1-hd", "input": "Hi", "voice": "nova", "response_format": "wav"}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type").as_deref(), Some("audio/wav"));
    let long = "a".repeat(4097);
    let (code, e) = json(
        authed(&oa, c.post(&url))
            .json(&json!({"model": "tts-1", "input": long, "voice": "alloy"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, e["error"]["param"].as_str().unwrap()), (400, "input"));
}

#[tokio::test]
async fn auth_and_faults_in_openai_shapes() {
    let oa = Emulator::start(Kind::OpenAi).await.unwrap();
    let c = client();
    let url = format!("{}/images/generations", oa.base_url());
    let body = json!({"model": "gpt-image-1", "prompt": "x"});
    let (code, e) = json(
        c.post(&url)
            .bearer_auth("sk-nope")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["error"]["code"].as_str().unwrap()),
        (401, "invalid_api_key")
    );

    oa.faults().push(Fault::rate_limited(Duration::from_millis(1500)));
    oa.faults().push(Fault::credit_exhausted());
    oa.faults().push(Fault::content_rejected());
    oa.faults().push(Fault::server_error(502));
    let r = authed(&oa, c.post(&url)).json(&body).send().await.unwrap();
    assert_eq!(header(&r, "retry-after-ms").as_deref(), Some("1500"));
    assert_eq!(header(&r, "retry-after").as_deref(), Some("2"));
    let (code, e) = json(r).await;
    assert_eq!(
        (code, e["error"]["code"].as_str().unwrap()),
        (429, "rate_limit_exceeded")
    );
    let (code, e) = json(authed(&oa, c.post(&url)).json(&body).send().await.unwrap()).await;
    assert_eq!(
        (code, e["error"]["code"].as_str().unwrap()),
        (429, "insufficient_quota")
    );
    assert_eq!(e["error"]["type"], "insufficient_quota");
    let (code, e) = json(authed(&oa, c.post(&url)).json(&body).send().await.unwrap()).await;
    assert_eq!(
        (code, e["error"]["code"].as_str().unwrap()),
        (400, "moderation_blocked")
    );
    let r = authed(&oa, c.post(&url)).json(&body).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert_eq!(header(&r, "content-type").as_deref(), Some("text/html"));
    assert_eq!(oa.count(Endpoint::Create), 5);
    assert_eq!(oa.faults().fired(), 4);
}
