#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Replicate adapter against a wiremock server: exact requests, the prediction lifecycle, every failure.

use std::time::Duration;

use genroute_core::{
    AssetContent, AudioJobSpec, Billed, Decimal, Dimensions, ErrorKind, ImageJobSpec, MediaInput, ModelId,
    Provider, ProviderRequest, VideoJobSpec,
};
use genroute_http::testing::{fast_poll, test_context as ctx};
use genroute_provider_replicate::{ReplicateConfig, ReplicateProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "r8_testtoken";

fn config(server: &MockServer) -> ReplicateConfig {
    ReplicateConfig::new(TOKEN)
        .base_url(format!("{}/v1", server.uri()))
        .poll(fast_poll())
}

fn provider(server: &MockServer) -> ReplicateProvider {
    ReplicateProvider::new(config(server)).unwrap()
}

fn req(model: &str, job: impl Into<genroute_core::Job>) -> ProviderRequest {
    ProviderRequest::new(ModelId::new(model).unwrap(), job)
}

fn prediction(server: &MockServer, id: &str, model: &str, status: &str, output: Value) -> Value {
    let get = format!("{}/v1/predictions/{id}", server.uri());
    json!({
        "id": id,
        "model": model,
        "version": "hidden",
        "input": {},
        "logs": "",
        "error": null,
        "status": status,
        "output": output,
        "data_removed": false,
        "created_at": "2026-11-21T05:00:00.000Z",
        "started_at": if status == "starting" { Value::Null } else { json!("2026-11-21T05:00:00.100Z") },
        "completed_at": null,
        "metrics": if status == "succeeded" { json!({"predict_time": 1.78, "total_time": 2.03}) } else { json!({}) },
        "urls": {
            "get": get,
            "cancel": format!("{get}/cancel"),
            "stream": format!("{}/stream/{id}", server.uri())
        }
    })
}

#[tokio::test]
async fn sync_create_with_prefer_wait_reads_outputs_and_predict_time() {
    let server = MockServer::start().await;
    let seed: u64 = 9_007_199_254_740_993; // 2^53 + 1
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-schnell/predictions"))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .and(header("prefer", "wait=60"))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({"input": {
            "prompt": "a red fox",
            "aspect_ratio": "16:9",
            "num_outputs": 2,
            "num_inference_steps": 4,
            "seed": seed,
            "output_format": "png"
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "gm3q1",
            "black-forest-labs/flux-schnell",
            "succeeded",
            json!([
                "https://replicate.delivery/xe/out-0.png",
                "https://replicate.delivery/xe/out-1.png"
            ]),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let job = ImageJobSpec::new("a red fox")
        .size(1920, 1080)
        .count(2)
        .steps(4)
        .seed(seed)
        .extra("output_format", json!("png"))
        .build()
        .unwrap();
    let g = provider(&server)
        .generate(&req("black-forest-labs/flux-schnell", job), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 2);
    assert_eq!(
        g.outputs[1].content,
        AssetContent::Url("https://replicate.delivery/xe/out-1.png".into())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/png"));
    assert_eq!(g.usage.compute_seconds, Some(Decimal::new(178, 2)));
    assert_eq!(g.timings.running, Some(Duration::from_millis(1780)));
    assert_eq!(g.charged, None);
    assert_eq!(g.provider_job_id.as_deref(), Some("gm3q1"));
    assert_eq!(
        g.response_model.as_deref(),
        Some("black-forest-labs/flux-schnell")
    );
    // No deadline in the context: no Cancel-After.
    let sent = server.received_requests().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].headers.get("cancel-after").is_none());
}

#[tokio::test]
async fn unfinished_create_is_polled_at_urls_get_with_deadline_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-1.1-pro/predictions"))
        .and(header("prefer", "wait=60"))
        .and(header("cancel-after", "600s"))
        .and(body_json(json!({"input": {
            "prompt": "a harbour",
            "aspect_ratio": "custom",
            "width": 1440,
            "height": 768
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "p2",
            "black-forest-labs/flux-1.1-pro",
            "starting",
            Value::Null,
        )))
        .expect(1)
        .mount(&server)
        .await;
    for (status, output) in [
        ("processing", Value::Null),
        ("succeeded", json!("https://replicate.delivery/p2/out.webp")),
    ] {
        Mock::given(method("GET"))
            .and(path("/v1/predictions/p2"))
            .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
            .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
                &server,
                "p2",
                "black-forest-labs/flux-1.1-pro",
                status,
                output,
            )))
            .up_to_n_times(1)
            .mount(&server)
            .await;
    }
    let job = ImageJobSpec::new("a harbour").size(1440, 768).build().unwrap();
    let c = ctx().with_timeout(Duration::from_secs(600));
    let g = provider(&server)
        .generate(&req("black-forest-labs/flux-1.1-pro", job), &c)
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 1);
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/webp"));
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
}

#[tokio::test]
async fn video_with_first_frame_and_no_prefer_when_disabled() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/models/minimax/video-01/predictions"))
        .and(body_json(json!({"input": {
            "prompt": "the cat turns its head",
            "first_frame_image": "https://example.com/cat.png"
        }})))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "v1",
            "minimax/video-01",
            "succeeded",
            json!("https://replicate.delivery/v1/output.mp4"),
        )))
        .expect(1)
        .mount(&server)
        .await;
    let p = ReplicateProvider::new(config(&server).prefer_wait_seconds(None)).unwrap();
    let job = VideoJobSpec::from_image(
        MediaInput::Url {
            url: "https://example.com/cat.png".into(),
        },
        Decimal::from(6),
    )
    .prompt("the cat turns its head")
    .build()
    .unwrap();
    let g = p.generate(&req("minimax/video-01", job), &ctx()).await.unwrap();
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("video/mp4"));
    let sent = server.received_requests().await.unwrap();
    assert!(sent[0].headers.get("prefer").is_none());
}

#[tokio::test]
async fn invalid_input_sends_nothing() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let cases = vec![
        req(
            "black-forest-labs/flux-1.1-pro",
            ImageJobSpec::new("x").size(1000, 768).build().unwrap(),
        ),
        req(
            "black-forest-labs/flux-1.1-pro",
            ImageJobSpec::new("x").size(1440, 768).count(2).build().unwrap(),
        ),
        req(
            "black-forest-labs/flux-schnell",
            ImageJobSpec::new("x").steps(5).build().unwrap(),
        ),
        req(
            "black-forest-labs/flux-dev",
            ImageJobSpec::new("x").count(5).build().unwrap(),
        ),
        req(
            "minimax/video-01",
            VideoJobSpec::new("x", Decimal::from(5)).build().unwrap(),
        ),
        req(
            "minimax/video-01",
            VideoJobSpec::new("x", Decimal::from(6))
                .resolution(Dimensions::new(1920, 1080).unwrap())
                .build()
                .unwrap(),
        ),
        req(
            "black-forest-labs/flux-dev",
            AudioJobSpec::speech("hi").build().unwrap(),
        ),
        req("stability-ai/sdxl", ImageJobSpec::new("x").build().unwrap()),
    ];
    for r in cases {
        let e = p.generate(&r, &ctx()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
        assert_eq!(e.billing(), &Billed::No);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn create_failure(code: u16, headers: &[(&str, &str)], body: Value) -> genroute_core::ProviderError {
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
            &req(
                "black-forest-labs/flux-dev",
                ImageJobSpec::new("x").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err()
}

#[tokio::test]
async fn http_failures_are_classified() {
    let e = create_failure(402, &[], json!({"title": "Insufficient credit", "detail": "You have insufficient credit to run this model.", "status": 402})).await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InsufficientCredits, false, &Billed::No)
    );
    let e = create_failure(
        429,
        &[("retry-after", "30")],
        json!({"detail": "Request was throttled. Your rate limit resets in ~30s.", "status": 429}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::RateLimited, true, &Billed::No)
    );
    assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(30)));
    let e = create_failure(
        401,
        &[],
        json!({"title": "Unauthenticated", "detail": "Invalid token", "status": 401}),
    )
    .await;
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Auth, false));
    let e = create_failure(
        422,
        &[],
        json!({"title": "Input validation failed", "detail": "- input.seed: Invalid type", "status": 422}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InvalidRequest, false, &Billed::No)
    );
    assert!(e.message().contains("input.seed"));
    let e = create_failure(404, &[], json!({"title": "Not found", "status": 404})).await;
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = create_failure(503, &[], json!({"detail": "unavailable"})).await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Unavailable, true, &Billed::No)
    );
    let e = create_failure(504, &[], json!({})).await;
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Timeout, &Billed::Unknown));
}

async fn terminal(status: &str, error: Value) -> genroute_core::ProviderError {
    let server = MockServer::start().await;
    let mut body = prediction(&server, "t1", "black-forest-labs/flux-dev", status, Value::Null);
    body["error"] = error;
    if status == "aborted" {
        body["started_at"] = Value::Null;
    }
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(body))
        .mount(&server)
        .await;
    provider(&server)
        .generate(
            &req(
                "black-forest-labs/flux-dev",
                ImageJobSpec::new("x").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err()
}

#[tokio::test]
async fn terminal_states_are_classified() {
    let e = terminal(
        "failed",
        json!("NSFW content detected. Try running it again, or try a different prompt."),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::ContentRejected, false, &Billed::Unknown)
    );
    assert_eq!(e.provider_job_id(), Some("t1"));
    let e = terminal("failed", json!("CUDA error: out of memory")).await;
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Failed, &Billed::Unknown));
    let e = terminal("canceled", Value::Null).await;
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Cancelled, &Billed::Unknown));
    let e = terminal("aborted", Value::Null).await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, true, &Billed::No)
    );
    // Succeeded with text instead of media.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "x1",
            "black-forest-labs/flux-dev",
            "succeeded",
            json!("just some text"),
        )))
        .mount(&server)
        .await;
    let e = provider(&server)
        .generate(
            &req(
                "black-forest-labs/flux-dev",
                ImageJobSpec::new("x").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.billing()),
        (ErrorKind::MalformedResponse, &Billed::Unknown)
    );
}

async fn wait_for_post(server: &MockServer, p: &str) -> Request {
    for _ in 0..200 {
        if let Some(r) = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.method.as_str() == "POST" && r.url.path() == p)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no POST {p}");
}

#[tokio::test]
async fn deadline_cancels_via_urls_cancel() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/models/black-forest-labs/flux-dev/predictions"))
        .and(header("prefer", "wait=1"))
        .respond_with(ResponseTemplate::new(201).set_body_json(prediction(
            &server,
            "slow",
            "black-forest-labs/flux-dev",
            "starting",
            Value::Null,
        )))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
            &server,
            "slow",
            "black-forest-labs/flux-dev",
            "processing",
            Value::Null,
        )))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions/slow/cancel"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let c = ctx().with_timeout(Duration::from_millis(1500));
    let e = provider(&server)
        .generate(
            &req(
                "black-forest-labs/flux-dev",
                ImageJobSpec::new("x").build().unwrap(),
            ),
            &c,
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Timeout, &Billed::Unknown));
    assert_eq!(e.provider_job_id(), Some("slow"));
    let cancel = wait_for_post(&server, "/v1/predictions/slow/cancel").await;
    assert_eq!(
        cancel.headers.get("authorization").unwrap(),
        format!("Bearer {TOKEN}").as_str()
    );
}

#[tokio::test]
async fn resume_and_cancel_by_id() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/predictions/old"))
        .respond_with(ResponseTemplate::new(200).set_body_json(prediction(
            &server,
            "old",
            "black-forest-labs/flux-dev",
            "succeeded",
            json!(["https://replicate.delivery/old/0.webp"]),
        )))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions/old/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "old", "status": "canceled"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/predictions/missing/cancel"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"title": "Not found", "status": 404})))
        .mount(&server)
        .await;
    let p = provider(&server);
    let g = p
        .resume(
            "old",
            &req(
                "black-forest-labs/flux-dev",
                ImageJobSpec::new("x").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(g.provider_job_id.as_deref(), Some("old"));
    assert_eq!(g.usage.compute_seconds, Some(Decimal::new(178, 2)));
    p.cancel("old").await.unwrap();
    assert_eq!(
        p.cancel("missing").await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    server.verify().await;
}
