#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! fal adapter against a wiremock server: the exact requests sent, the queue lifecycle, and every
//! failure class.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genroute_core::{
    AssetContent, AudioJobSpec, Billed, Decimal, Dimensions, EditJobSpec, EditOp, ErrorKind, ImageJobSpec,
    MediaInput, ModelId, ProgressEvent, Provider, ProviderRequest, Stage, VideoJobSpec,
};
use genroute_http::testing::{fast_poll, test_context as ctx};
use genroute_provider_fal::{FalConfig, FalProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "key-id:key-secret";

fn provider(server: &MockServer) -> FalProvider {
    FalProvider::new(FalConfig::new(KEY).base_url(server.uri()).poll(fast_poll())).unwrap()
}

fn model(id: &str) -> ModelId {
    ModelId::new(id).unwrap()
}

/// The submit answer, with follow-up URLs under `prefix` on the mock (absolute, as fal sends them).
fn submitted(server: &MockServer, prefix: &str, id: &str) -> Value {
    let base = format!("{}/{prefix}/requests/{id}", server.uri());
    json!({
        "request_id": id,
        "response_url": base,
        "status_url": format!("{base}/status"),
        "cancel_url": format!("{base}/cancel"),
        "status": "IN_QUEUE",
        "queue_position": 2
    })
}

async fn mount_status_sequence(server: &MockServer, status_path: &str, answers: Vec<(u16, Value)>) {
    for (code, body) in answers {
        Mock::given(method("GET"))
            .and(path(status_path))
            .and(query_param("logs", "1"))
            .respond_with(ResponseTemplate::new(code).set_body_json(body))
            .up_to_n_times(1)
            .mount(server)
            .await;
    }
}

#[tokio::test]
async fn flux_dev_full_lifecycle_sends_exact_request_and_reads_billable_units() {
    let server = MockServer::start().await;
    let seed: u64 = 18_446_744_073_709_551_557; // > 2^53: must stay exact
    let expected_body = json!({
        "prompt": "a lighthouse at dusk",
        "image_size": {"width": 1024, "height": 1408},
        "num_images": 2,
        "num_inference_steps": 28,
        "seed": seed,
        "enable_safety_checker": false
    });
    Mock::given(method("POST"))
        .and(path("/fal-ai/flux/dev"))
        .and(header("authorization", format!("Key {KEY}").as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(&expected_body))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "req-1")))
        .expect(1)
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux/requests/req-1/status",
        vec![
            (202, json!({"status": "IN_QUEUE", "queue_position": 1, "response_url": "x"})),
            (202, json!({"status": "IN_PROGRESS", "logs": [{"message": "step 1", "level": "INFO", "source": "user", "timestamp": "t"}]})),
            (200, json!({"status": "COMPLETED", "metrics": {"inference_time": 1.92}, "logs": []})),
        ],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/req-1"))
        .and(header("authorization", format!("Key {KEY}").as_str()))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("X-Fal-Billable-Units", "2")
                .insert_header("x-fal-request-id", "req-1")
                .set_body_raw(
                    format!(
                        r#"{{"images":[{{"url":"https://v3.fal.media/files/a.jpeg","width":1024,"height":1408,"content_type":"image/jpeg"}},{{"url":"https://v3.fal.media/files/b.jpeg","width":1024,"height":1408,"content_type":"image/jpeg"}}],"timings":{{"inference":1.87}},"seed":{seed},"has_nsfw_concepts":[false,false],"prompt":"a lighthouse at dusk"}}"#
                    ),
                    "application/json",
                ),
        )
        .expect(1)
        .mount(&server)
        .await;

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let ctx = ctx().with_progress(Arc::new(move |e: ProgressEvent| sink.lock().unwrap().push(e)));
    let job = ImageJobSpec::new("a lighthouse at dusk")
        .size(1024, 1408)
        .count(2)
        .steps(28)
        .seed(seed)
        .extra("enable_safety_checker", json!(false))
        .build()
        .unwrap();
    let g = provider(&server)
        .generate(&ProviderRequest::new(model("fal-ai/flux/dev"), job), &ctx)
        .await
        .unwrap();

    assert_eq!(g.outputs.len(), 2);
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Url("https://v3.fal.media/files/a.jpeg".into())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/jpeg"));
    assert_eq!(
        g.outputs[0].dimensions,
        Some(Dimensions::new(1024, 1408).unwrap())
    );
    assert_eq!(g.usage.billable_units, Some(Decimal::from(2)));
    assert_eq!(g.charged, None, "fal reports a quantity, not money");
    assert_eq!(g.seed, Some(seed));
    assert_eq!(g.provider_job_id.as_deref(), Some("req-1"));
    assert_eq!(g.provider_request_id.as_deref(), Some("req-1"));
    assert_eq!(g.timings.running, Some(Duration::from_millis(1920)));

    let stages: Vec<(Stage, Option<u32>)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.stage, e.queue_position))
        .collect();
    assert_eq!(
        stages,
        vec![
            (Stage::Submitted, Some(2)),
            (Stage::Queued, Some(1)),
            (Stage::Running, None),
            (Stage::Finalizing, None)
        ]
    );
    assert!(
        events
            .lock()
            .unwrap()
            .iter()
            .all(|e| e.provider_job_id.as_deref() == Some("req-1"))
    );
    // 1 submit + 3 status + 1 result, nothing else (no cancel).
    assert_eq!(server.received_requests().await.unwrap().len(), 5);
}

#[tokio::test]
async fn follows_returned_urls_instead_of_rebuilding_them() {
    let server = MockServer::start().await;
    let base = server.uri();
    Mock::given(method("POST"))
        .and(path("/fal-ai/flux/schnell"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "request_id": "r2",
            "status_url": format!("{base}/elsewhere/st/r2"),
            "response_url": format!("{base}/elsewhere/res/r2"),
            "cancel_url": format!("{base}/elsewhere/cancel/r2"),
        })))
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/elsewhere/st/r2",
        vec![(200, json!({"status": "COMPLETED"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/elsewhere/res/r2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "images": [{"url": "https://v3.fal.media/x.png", "content_type": "image/png"}]
        })))
        .expect(1)
        .mount(&server)
        .await;
    let job = ImageJobSpec::new("cat").steps(4).build().unwrap();
    let g = provider(&server)
        .generate(&ProviderRequest::new(model("fal-ai/flux/schnell"), job), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 1);
    // No billable-units header: usage stays unknown rather than guessed.
    assert_eq!(g.usage.billable_units, None);
    let paths: Vec<String> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        ["/fal-ai/flux/schnell", "/elsewhere/st/r2", "/elsewhere/res/r2"]
    );
}

#[tokio::test]
async fn kling_video_and_kontext_edit_bodies() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/kling-video/v1.6/standard/text-to-video"))
        .and(body_json(
            json!({"prompt": "waves", "duration": "5", "aspect_ratio": "9:16"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(
            &server,
            "fal-ai/kling-video",
            "v1",
        )))
        .expect(1)
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/kling-video/requests/v1/status",
        vec![(200, json!({"status": "COMPLETED"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/kling-video/requests/v1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-fal-billable-units", "5.008")
                .set_body_json(json!({"video": {"url": "https://v3.fal.media/v.mp4", "content_type": "video/mp4", "file_size": 123}})),
        )
        .mount(&server)
        .await;
    let p = provider(&server);
    let video = VideoJobSpec::new("waves", Decimal::from(5))
        .resolution(Dimensions::new(720, 1280).unwrap())
        .build()
        .unwrap();
    let g = p
        .generate(
            &ProviderRequest::new(model("fal-ai/kling-video/v1.6/standard/text-to-video"), video),
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(g.usage.billable_units, Some(Decimal::new(5008, 3)));
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("video/mp4"));

    // Kontext: bytes become a data URI in image_url.
    Mock::given(method("POST"))
        .and(path("/fal-ai/flux-pro/kontext"))
        .and(body_json(json!({
            "prompt": "make it night",
            "image_url": "data:image/png;base64,AQID",
            "num_images": 1,
            "seed": 7
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux-pro", "k1")))
        .expect(1)
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux-pro/requests/k1/status",
        vec![(200, json!({"status": "COMPLETED"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux-pro/requests/k1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-fal-billable-units", "1")
                .set_body_json(json!({"images": [{"url": "https://v3.fal.media/k.png"}], "seed": 7})),
        )
        .mount(&server)
        .await;
    let mut spec = EditJobSpec::new(
        EditOp::Img2Img {
            prompt: "make it night".into(),
            strength: None,
        },
        MediaInput::Bytes {
            media_type: "image/png".into(),
            data: vec![1, 2, 3],
        },
    );
    spec.seed = Some(7);
    let g = p
        .generate(
            &ProviderRequest::new(model("fal-ai/flux-pro/kontext"), spec.build().unwrap()),
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(g.usage.billable_units, Some(Decimal::ONE));
    assert_eq!(g.seed, Some(7));
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let cases = vec![
        ProviderRequest::new(
            model("fal-ai/flux/dev"),
            ImageJobSpec::new("cat").steps(60).build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux/dev"),
            ImageJobSpec::new("cat").count(5).build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux/dev"),
            ImageJobSpec::new("cat").size(1000, 1000).build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux/schnell"),
            ImageJobSpec::new("cat").steps(13).build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux/pro"),
            ImageJobSpec::new("cat").build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux/dev"),
            AudioJobSpec::speech("hi").build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/kling-video/v1.6/standard/text-to-video"),
            VideoJobSpec::new("x", Decimal::from(7)).build().unwrap(),
        ),
        ProviderRequest::new(
            model("fal-ai/flux-pro/kontext"),
            EditJobSpec::new(
                EditOp::Img2Img {
                    prompt: "x".into(),
                    strength: None,
                },
                MediaInput::Asset { id: "a1".into() },
            )
            .build()
            .unwrap(),
        ),
    ];
    for req in cases {
        let err = p.generate(&req, &ctx()).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest),
            "{err}"
        );
        assert_eq!(err.billing(), &Billed::No);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn submit_failure(code: u16, headers: &[(&str, &str)], body: Value) -> genroute_core::ProviderError {
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
    let job = ImageJobSpec::new("cat").build().unwrap();
    provider(&server)
        .generate(&ProviderRequest::new(model("fal-ai/flux/dev"), job), &ctx())
        .await
        .unwrap_err()
}

#[tokio::test]
async fn submit_failures_are_classified() {
    let e = submit_failure(
        403,
        &[],
        json!({"detail": "User is locked. Reason: Exhausted balance. Top up your balance."}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InsufficientCredits, false, &Billed::No)
    );
    let e = submit_failure(401, &[], json!({"detail": "No user found for Key ID and Secret"})).await;
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::Auth, false));
    let e = submit_failure(
        422,
        &[("x-fal-request-id", "rq")],
        json!({"detail": [{"loc": ["body", "image_size"], "msg": "bad size", "type": "value_error"}]}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InvalidRequest, false, &Billed::No)
    );
    assert_eq!(e.provider_request_id(), Some("rq"));
    assert!(e.message().contains("body.image_size: bad size"));
    let e = submit_failure(429, &[("retry-after", "3")], json!({"detail": "rate limited"})).await;
    assert_eq!((e.kind(), e.is_temporary()), (ErrorKind::RateLimited, true));
    assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(3)));
    let e = submit_failure(
        503,
        &[("x-fal-error-type", "runner_scheduling_failure")],
        json!({"detail": "no runner"}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Unavailable, true, &Billed::No)
    );
    assert_eq!(e.provider_code(), Some("runner_scheduling_failure"));
}

#[tokio::test]
async fn start_timeout_header_is_sent_and_its_504_is_not_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/fal-ai/flux/dev"))
        .and(header("x-fal-request-start-timeout", "20"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "t1")))
        .expect(1)
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux/requests/t1/status",
        vec![(200, json!({"status": "COMPLETED"}))],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/t1"))
        .respond_with(
            ResponseTemplate::new(504)
                .insert_header("x-fal-request-timeout-type", "user")
                .set_body_json(json!({"detail": "Request timed out before it started"})),
        )
        .mount(&server)
        .await;
    let mut cfg = FalConfig::new(KEY).base_url(server.uri()).poll(fast_poll());
    cfg.request_start_timeout = Some(Duration::from_secs(20));
    let p = FalProvider::new(cfg).unwrap();
    let e = p
        .generate(
            &ProviderRequest::new(
                model("fal-ai/flux/dev"),
                ImageJobSpec::new("cat").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, false, &Billed::No)
    );
    assert_eq!(e.provider_job_id(), Some("t1"));
}

async fn result_failure(code: u16, headers: &[(&str, &str)], body: Value) -> genroute_core::ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "f1")))
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux/requests/f1/status",
        vec![(200, json!({"status": "COMPLETED"}))],
    )
    .await;
    let mut t = ResponseTemplate::new(code).set_body_json(body);
    for (k, v) in headers {
        t = t.insert_header(*k, *v);
    }
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/f1"))
        .respond_with(t)
        .mount(&server)
        .await;
    provider(&server)
        .generate(
            &ProviderRequest::new(
                model("fal-ai/flux/dev"),
                ImageJobSpec::new("cat").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err()
}

#[tokio::test]
async fn result_get_failures_are_classified_with_the_job_id() {
    let e = result_failure(
        422,
        &[],
        json!({"detail": [{"loc": ["body"], "msg": "unprocessable", "type": "value_error"}]}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::InvalidRequest, false, &Billed::Unknown)
    );
    assert_eq!(e.provider_job_id(), Some("f1"));
    let e = result_failure(
        500,
        &[("x-fal-retryable", "true")],
        json!({"detail": "crash", "error_type": "runner_server_error"}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Unavailable, true, &Billed::No)
    );
    let e = result_failure(
        500,
        &[("x-fal-retryable", "false")],
        json!({"detail": "bad weights", "error_type": "internal_error"}),
    )
    .await;
    assert!(!e.is_temporary());
    let e = result_failure(
        504,
        &[],
        json!({"detail": "too long", "error_type": "request_timeout"}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, true, &Billed::No)
    );
    // All outputs blanked by the safety checker.
    let e = result_failure(
        200,
        &[],
        json!({"images": [{"url": "https://x/black.png"}], "has_nsfw_concepts": [true]}),
    )
    .await;
    assert_eq!(
        (e.kind(), e.billing()),
        (ErrorKind::ContentRejected, &Billed::Unknown)
    );
    let e = result_failure(200, &[], json!({"unexpected": true})).await;
    assert_eq!(e.kind(), ErrorKind::MalformedResponse);
}

#[tokio::test]
async fn deadline_cancels_upstream_and_unknown_statuses_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "slow")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/slow/status"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "IN_PROGRESS"})))
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/fal-ai/flux/requests/slow/cancel"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "CANCELLATION_REQUESTED"})))
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server);
    let short = ctx().with_timeout(Duration::from_millis(80));
    let e = p
        .generate(
            &ProviderRequest::new(
                model("fal-ai/flux/dev"),
                ImageJobSpec::new("cat").build().unwrap(),
            ),
            &short,
        )
        .await
        .unwrap_err();
    assert_eq!((e.kind(), e.billing()), (ErrorKind::Timeout, &Billed::Unknown));
    assert_eq!(e.provider_job_id(), Some("slow"));
    wait_for(&server, "PUT").await;

    // Unknown statuses: capped, then the job is cancelled too.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "odd")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/odd/status"))
        .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "WARMING_UP"})))
        .expect(4)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/fal-ai/flux/requests/odd/cancel"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server)
        .generate(
            &ProviderRequest::new(
                model("fal-ai/flux/dev"),
                ImageJobSpec::new("cat").build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MalformedResponse);
    wait_for(&server, "PUT").await;
    server.verify().await;
}

async fn wait_for(server: &MockServer, verb: &str) -> Request {
    for _ in 0..200 {
        if let Some(r) = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.method.as_str() == verb)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no {verb} request received");
}

#[tokio::test]
async fn dropping_the_future_cancels_and_cancelled_status_is_an_error() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "d1")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/d1/status"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(json!({"status": "IN_QUEUE", "queue_position": 9})),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/fal-ai/flux/requests/d1/cancel"))
        .and(header("authorization", format!("Key {KEY}").as_str()))
        .respond_with(ResponseTemplate::new(202))
        .mount(&server)
        .await;
    let p = provider(&server);
    let req = ProviderRequest::new(
        model("fal-ai/flux/dev"),
        ImageJobSpec::new("cat").build().unwrap(),
    );
    let c = ctx();
    let run = p.generate(&req, &c);
    assert!(
        tokio::time::timeout(Duration::from_millis(50), run)
            .await
            .is_err()
    );
    wait_for(&server, "PUT").await;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(submitted(&server, "fal-ai/flux", "c1")))
        .mount(&server)
        .await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux/requests/c1/status",
        vec![(200, json!({"status": "CANCELLED"}))],
    )
    .await;
    let e = provider(&server).generate(&req, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Cancelled);
    assert_eq!(e.provider_job_id(), Some("c1"));
}

#[tokio::test]
async fn resume_polls_without_submitting_and_cancel_by_id() {
    let server = MockServer::start().await;
    mount_status_sequence(
        &server,
        "/fal-ai/flux/requests/old-1/status",
        vec![
            (202, json!({"status": "IN_PROGRESS"})),
            (200, json!({"status": "COMPLETED"})),
        ],
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/fal-ai/flux/requests/old-1"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("x-fal-billable-units", "1")
                .set_body_json(json!({"images": [{"url": "https://x/1.png"}]})),
        )
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/fal-ai/flux/requests/done-1/cancel"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"status": "ALREADY_COMPLETED"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PUT"))
        .and(path("/fal-ai/flux/requests/gone/cancel"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"status": "NOT_FOUND"})))
        .mount(&server)
        .await;
    let p = provider(&server);
    let req = ProviderRequest::new(
        model("fal-ai/flux/dev"),
        ImageJobSpec::new("cat").build().unwrap(),
    );
    let g = p.resume("old-1", &req, &ctx()).await.unwrap();
    assert_eq!(g.provider_job_id.as_deref(), Some("old-1"));
    assert_eq!(g.usage.billable_units, Some(Decimal::ONE));
    assert!(
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .all(|r| r.method.as_str() != "POST")
    );

    p.cancel("fal-ai/flux/dev:done-1").await.unwrap();
    let e = p.cancel("fal-ai/flux/dev:gone").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let e = p.cancel("bare-id").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    server.verify().await;
}
