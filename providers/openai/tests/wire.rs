#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! OpenAI adapter against a wiremock server: exact requests (JSON and multipart), responses, failures.

use std::time::Duration;

use base64::Engine as _;
use genroute_core::{
    AssetContent, AudioJobSpec, Billed, Decimal, Dimensions, EditJobSpec, EditOp, ErrorKind, ImageJobSpec,
    MediaInput, ModelId, Provider, ProviderRequest, VideoJobSpec,
};
use genroute_http::testing::test_context as ctx;
use genroute_provider_openai::{OpenAiConfig, OpenAiProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "sk-test-key";

fn provider(server: &MockServer) -> OpenAiProvider {
    let mut c = OpenAiConfig::new(KEY).base_url(format!("{}/v1", server.uri()));
    c.organization = Some("org-1".into());
    c.project = Some("proj-1".into());
    OpenAiProvider::new(c).unwrap()
}

fn req(model: &str, job: impl Into<genroute_core::Job>) -> ProviderRequest {
    ProviderRequest::new(ModelId::new(model).unwrap(), job)
}

fn png(bytes: &[u8]) -> MediaInput {
    MediaInput::Bytes {
        media_type: "image/png".into(),
        data: bytes.to_vec(),
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[derive(Debug)]
struct PartSeen {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

/// A small multipart/form-data reader, enough to check what the adapter sent.
fn parts(r: &Request) -> Vec<PartSeen> {
    let ct = r
        .headers
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("multipart/form-data"), "{ct}");
    let boundary = format!("--{}", ct.split("boundary=").nth(1).unwrap());
    let body = &r.body;
    let mut out = Vec::new();
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay[from..]
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut pos = find(body, boundary.as_bytes(), 0).unwrap() + boundary.len();
    while body[pos..].starts_with(b"\r\n") {
        let head_end = find(body, b"\r\n\r\n", pos).unwrap();
        let head = String::from_utf8(body[pos + 2..head_end].to_vec()).unwrap();
        let next = find(body, boundary.as_bytes(), head_end).unwrap();
        let data = body[head_end + 4..next - 2].to_vec();
        let attr = |key: &str| {
            head.split(';')
                .map(str::trim)
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| {
                    v.trim_end_matches(['"', '\r', '\n'])
                        .split('"')
                        .next()
                        .unwrap()
                        .to_owned()
                })
        };
        let content_type = head.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        });
        out.push(PartSeen {
            name: attr("name").unwrap(),
            filename: attr("filename"),
            content_type,
            data,
        });
        pos = next + boundary.len();
    }
    out
}

fn text_of<'a>(parts: &'a [PartSeen], name: &str) -> &'a str {
    std::str::from_utf8(&parts.iter().find(|p| p.name == name).unwrap().data).unwrap()
}

#[tokio::test]
async fn gpt_image_generation_decodes_base64_and_reads_token_usage() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("openai-organization", "org-1"))
        .and(header("openai-project", "proj-1"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({
            "model": "gpt-image-1",
            "prompt": "a watercolor fox",
            "n": 2,
            "size": "1536x1024",
            "quality": "medium",
            "output_format": "webp"
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "req_abc")
                .set_body_json(json!({
                    "created": 1_763_700_000,
                    "data": [{"b64_json": b64(b"IMG-ONE")}, {"b64_json": b64(b"IMG-TWO")}],
                    "size": "1536x1024",
                    "quality": "medium",
                    "output_format": "webp",
                    "usage": {
                        "input_tokens": 50,
                        "input_tokens_details": {"text_tokens": 40, "image_tokens": 10},
                        "output_tokens": 2112,
                        "output_tokens_details": {"image_tokens": 2112, "text_tokens": 0},
                        "total_tokens": 2162
                    }
                })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let job = ImageJobSpec::new("a watercolor fox")
        .size(1536, 1024)
        .count(2)
        .extra("quality", json!("medium"))
        .extra("output_format", json!("webp"))
        .build()
        .unwrap();
    let g = provider(&server)
        .generate(&req("gpt-image-1", job), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 2);
    assert_eq!(g.outputs[0].content, AssetContent::Bytes(b"IMG-ONE".to_vec()));
    assert_eq!(g.outputs[1].content, AssetContent::Bytes(b"IMG-TWO".to_vec()));
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/webp"));
    assert_eq!(
        g.outputs[0].dimensions,
        Some(Dimensions::new(1536, 1024).unwrap())
    );
    assert_eq!(g.usage.input_tokens, Some(50));
    assert_eq!(g.usage.input_image_tokens, Some(10));
    assert_eq!(g.usage.output_tokens, Some(2112));
    assert_eq!(g.usage.other.get("input_text_tokens"), Some(&Decimal::from(40)));
    assert_eq!(g.provider_request_id.as_deref(), Some("req_abc"));
    assert_eq!(g.charged, None);
}

#[tokio::test]
async fn dall_e_3_returns_a_url() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/generations"))
        .and(body_json(json!({
            "model": "dall-e-3",
            "prompt": "a lighthouse",
            "n": 1,
            "size": "1792x1024",
            "quality": "hd"
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "created": 1,
            "data": [{"url": "https://oaidalleapiprodscus.blob.core.windows.net/x/img.png", "revised_prompt": "A tall lighthouse"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let job = ImageJobSpec::new("a lighthouse")
        .size(1792, 1024)
        .extra("quality", json!("hd"))
        .build()
        .unwrap();
    let g = provider(&server)
        .generate(&req("dall-e-3", job), &ctx())
        .await
        .unwrap();
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Url("https://oaidalleapiprodscus.blob.core.windows.net/x/img.png".into())
    );
    assert_eq!(g.usage.output_tokens, None, "dall-e reports no usage");
}

#[tokio::test]
async fn inpaint_and_references_go_multipart_to_edits() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/images/edits"))
        .and(header("authorization", format!("Bearer {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "data": [{"b64_json": b64(b"EDITED")}],
            "usage": {"input_tokens": 300, "input_tokens_details": {"text_tokens": 20, "image_tokens": 280}, "output_tokens": 1056}
        })))
        .expect(2)
        .mount(&server)
        .await;
    let p = provider(&server);
    let inpaint = EditJobSpec::new(
        EditOp::Inpaint {
            prompt: "add a boat".into(),
            mask: png(b"MASKBYTES"),
        },
        png(b"IMAGEBYTES"),
    )
    .extra("quality", json!("high"))
    .build()
    .unwrap();
    let g = p.generate(&req("gpt-image-1", inpaint), &ctx()).await.unwrap();
    assert_eq!(g.outputs[0].content, AssetContent::Bytes(b"EDITED".to_vec()));
    assert_eq!(g.usage.input_image_tokens, Some(280));

    let with_refs = ImageJobSpec::new("a gift basket")
        .reference(png(b"REF-A"))
        .reference(png(b"REF-B"))
        .build()
        .unwrap();
    p.generate(&req("gpt-image-1", with_refs), &ctx()).await.unwrap();

    let sent = server.received_requests().await.unwrap();
    let first = parts(&sent[0]);
    assert_eq!(text_of(&first, "model"), "gpt-image-1");
    assert_eq!(text_of(&first, "prompt"), "add a boat");
    assert_eq!(text_of(&first, "n"), "1");
    assert_eq!(text_of(&first, "quality"), "high");
    let image = first.iter().find(|p| p.name == "image[]").unwrap();
    assert_eq!(image.data, b"IMAGEBYTES");
    assert_eq!(image.filename.as_deref(), Some("image-0.png"));
    assert_eq!(image.content_type.as_deref(), Some("image/png"));
    let mask = first.iter().find(|p| p.name == "mask").unwrap();
    assert_eq!(mask.data, b"MASKBYTES");
    assert!(first.iter().all(|p| p.name != "size"));

    let second = parts(&sent[1]);
    let images: Vec<&[u8]> = second
        .iter()
        .filter(|p| p.name == "image[]")
        .map(|p| p.data.as_slice())
        .collect();
    assert_eq!(images, vec![b"REF-A".as_slice(), b"REF-B".as_slice()]);
    assert_eq!(text_of(&second, "size"), "1024x1024");
}

#[tokio::test]
async fn speech_returns_bytes_with_the_content_type_and_counts_characters() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .and(body_json(json!({
            "model": "tts-1-hd",
            "input": "Hello, wörld",
            "voice": "nova",
            "response_format": "wav",
            "speed": 1.25
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-request-id", "req_tts")
                .set_body_raw(b"RIFF....WAVE".to_vec(), "audio/wav"),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .and(body_json(
            json!({"model": "tts-1", "input": "Hi", "voice": "alloy"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_raw(b"ID3mp3".to_vec(), "application/octet-stream"))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server);
    let job = AudioJobSpec::speech("Hello, wörld")
        .voice("nova")
        .format("wav")
        .extra("speed", json!(1.25))
        .build()
        .unwrap();
    let g = p.generate(&req("tts-1-hd", job), &ctx()).await.unwrap();
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Bytes(b"RIFF....WAVE".to_vec())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("audio/wav"));
    assert_eq!(g.usage.characters, Some(12));
    assert_eq!(g.provider_request_id.as_deref(), Some("req_tts"));
    // Defaults: mp3, the configured voice; a non-audio content type falls back to the format's.
    let g = p
        .generate(&req("tts-1", AudioJobSpec::speech("Hi").build().unwrap()), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("audio/mpeg"));
    assert_eq!(g.usage.characters, Some(2));
}

#[tokio::test]
async fn speech_answer_that_is_json_is_malformed_not_audio() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/audio/speech"))
        .respond_with(ResponseTemplate::new(200).set_body_raw(br#"{"id": "x"}"#.to_vec(), "application/json"))
        .expect(1)
        .mount(&server)
        .await;
    let err = provider(&server)
        .generate(&req("tts-1", AudioJobSpec::speech("Hi").build().unwrap()), &ctx())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    assert!(!err.is_temporary());
    assert_eq!(err.billing(), &Billed::Unknown);
}

#[tokio::test]
async fn invalid_input_sends_nothing() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let many_refs = (0..17).fold(ImageJobSpec::new("x"), |s, _| s.reference(png(b"r")));
    let cases = vec![
        req("dall-e-3", ImageJobSpec::new("x").count(2).build().unwrap()),
        req(
            "gpt-image-1",
            ImageJobSpec::new("x").size(512, 512).build().unwrap(),
        ),
        req("gpt-image-1", ImageJobSpec::new("x").count(11).build().unwrap()),
        req("gpt-image-1", many_refs.build().unwrap()),
        req("tts-1", AudioJobSpec::speech("a".repeat(4097)).build().unwrap()),
        req("tts-1", AudioJobSpec::speech("hi").format("ogg").build().unwrap()),
        req("tts-1", AudioJobSpec::sound_effect("boom").build().unwrap()),
        req(
            "gpt-image-1",
            EditJobSpec::new(
                EditOp::Img2Img {
                    prompt: "x".into(),
                    strength: None,
                },
                MediaInput::Url {
                    url: "https://x/a.png".into(),
                },
            )
            .build()
            .unwrap(),
        ),
        req(
            "gpt-image-1",
            EditJobSpec::new(EditOp::RemoveBackground, png(b"i"))
                .build()
                .unwrap(),
        ),
        req(
            "dall-e-3",
            EditJobSpec::new(
                EditOp::Img2Img {
                    prompt: "x".into(),
                    strength: None,
                },
                png(b"i"),
            )
            .build()
            .unwrap(),
        ),
        req(
            "gpt-image-1",
            VideoJobSpec::new("x", Decimal::from(4)).build().unwrap(),
        ),
        req("sora-2", ImageJobSpec::new("x").build().unwrap()),
    ];
    for r in cases {
        let e = p.generate(&r, &ctx()).await.unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest),
            "{e}"
        );
        assert_eq!(e.billing(), &Billed::No);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn failure(code: u16, headers: &[(&str, &str)], body: Value) -> genroute_core::ProviderError {
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
    provider(&server)
        .generate(
            &req("gpt-image-1", ImageJobSpec::new("x").build().unwrap()),
            &ctx(),
        )
        .await
        .unwrap_err()
}

fn err(message: &str, kind: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}})
}

#[tokio::test]
async fn failures_are_classified() {
    let e = failure(
        429,
        &[("retry-after-ms", "750"), ("x-request-id", "req_rl")],
        err(
            "Rate limit reached for gpt-image-1",
            "requests",
            Some("rate_limit_exceeded"),
        ),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::RateLimited, true, &Billed::No)
    );
    assert_eq!(e.retry_after_hint(), Some(Duration::from_millis(750)));
    assert_eq!(e.provider_request_id(), Some("req_rl"));
    let e = failure(
        429,
        &[("retry-after", "20")],
        err(
            "You exceeded your current quota",
            "insufficient_quota",
            Some("insufficient_quota"),
        ),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InsufficientCredits, false, &Billed::No)
    );
    assert_eq!(e.retry_after_hint(), None);
    let e = failure(
        400,
        &[],
        err(
            "Your request was rejected as a result of our safety system.",
            "image_generation_user_error",
            Some("moderation_blocked"),
        ),
    )
    .await;
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::ContentRejected, false));
    let e = failure(
        400,
        &[],
        err(
            "This request has been blocked by our content filters.",
            "invalid_request_error",
            Some("content_policy_violation"),
        ),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::ContentRejected);
    let e = failure(
        400,
        &[],
        err(
            "Billing hard limit has been reached",
            "invalid_request_error",
            Some("billing_hard_limit_reached"),
        ),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary()),
        (ErrorKind::InsufficientCredits, false)
    );
    let e = failure(
        401,
        &[],
        err(
            "Incorrect API key provided",
            "invalid_request_error",
            Some("invalid_api_key"),
        ),
    )
    .await;
    assert_eq!(e.kind(), ErrorKind::Auth);
    let e = failure(
        500,
        &[("x-should-retry", "false")],
        err("The server had an error", "server_error", None),
    )
    .await;
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Unavailable, false));
    let e = failure(503, &[], err("Engine overloaded", "server_error", None)).await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Unavailable, true, &Billed::No)
    );
    let e = failure(200, &[], json!({"data": []})).await;
    assert_eq!(
        (e.kind(), e.billing()),
        (ErrorKind::MalformedResponse, &Billed::Unknown)
    );
}

#[tokio::test]
async fn a_slow_answer_past_the_deadline_is_a_timeout_with_unknown_billing() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let c = ctx().with_timeout(Duration::from_millis(100));
    let e = provider(&server)
        .generate(&req("gpt-image-1", ImageJobSpec::new("x").build().unwrap()), &c)
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Timeout, &Billed::Unknown));
}
