#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Runway adapter against a wiremock server: the exact requests sent (both auth headers on every one),
//! the task lifecycle, usage, and every failure class.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use genroute_core::{
    AssetContent, AudioJobSpec, Billed, Decimal, Dimensions, ErrorKind, ImageJobSpec, MediaInput, ModelId,
    ProgressEvent, Provider, ProviderError, ProviderRequest, Stage, VideoJobSpec,
};
use genroute_http::testing::{fast_poll, test_context as ctx};
use genroute_provider_runway::{RunwayConfig, RunwayProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const KEY: &str = "key_test123";
const VERSION: &str = "2024-11-06";

fn provider(server: &MockServer) -> RunwayProvider {
    RunwayProvider::new(RunwayConfig::new(KEY).base_url(server.uri()).poll(fast_poll())).unwrap()
}

fn req(model: &str, job: impl Into<genroute_core::Job>) -> ProviderRequest {
    ProviderRequest::new(ModelId::new(model).unwrap(), job)
}

fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
    m.and(header("authorization", format!("Bearer {KEY}").as_str()))
        .and(header("x-runway-version", VERSION))
}

async fn mount_created(server: &MockServer, endpoint: &str, body: Value, id: &str) {
    authed(Mock::given(method("POST")).and(path(endpoint)))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": id})))
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_task_sequence(server: &MockServer, id: &str, answers: Vec<Value>) {
    for body in answers {
        authed(Mock::given(method("GET")).and(path(format!("/v1/tasks/{id}"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .up_to_n_times(1)
            .mount(server)
            .await;
    }
}

fn assert_every_request_versioned(requests: &[Request]) {
    for r in requests {
        assert_eq!(
            r.headers.get("x-runway-version").map(|v| v.to_str().unwrap()),
            Some(VERSION),
            "{} {}",
            r.method,
            r.url
        );
        assert_eq!(
            r.headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some(format!("Bearer {KEY}"))
        );
    }
}

#[tokio::test]
async fn text_to_video_lifecycle_sends_exact_request_and_reports_seconds() {
    let server = MockServer::start().await;
    mount_created(
        &server,
        "/v1/text_to_video",
        json!({
            "model": "gen4.5",
            "promptText": "a fox runs through snow",
            "ratio": "1280:720",
            "duration": 5,
            "seed": 4_294_967_295u32,
            "contentModeration": {"publicFigureThreshold": "low"}
        }),
        "task-1",
    )
    .await;
    mount_task_sequence(
        &server,
        "task-1",
        vec![
            json!({"id": "task-1", "status": "PENDING", "createdAt": "2026-11-21T05:00:00Z"}),
            json!({"id": "task-1", "status": "THROTTLED"}),
            json!({"id": "task-1", "status": "RUNNING", "progress": 0.4}),
            json!({"id": "task-1", "status": "SUCCEEDED",
                   "output": ["https://dnznrvs05pmza.cloudfront.net/x/task-1.mp4?_jwt=abc"]}),
        ],
    )
    .await;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let ctx = ctx().with_progress(Arc::new(move |e: ProgressEvent| sink.lock().unwrap().push(e)));
    let mut spec = VideoJobSpec::new("a fox runs through snow", Decimal::from(5))
        .resolution(Dimensions::new(1920, 1080).unwrap())
        .extra("contentModeration", json!({"publicFigureThreshold": "low"}))
        // A job field wins over an extra of the same name.
        .extra("duration", json!(10));
    spec.seed = Some(4_294_967_295);
    let g = provider(&server)
        .generate(&req("gen4.5", spec.build().unwrap()), &ctx)
        .await
        .unwrap();
    assert_eq!(g.outputs.len(), 1);
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Url("https://dnznrvs05pmza.cloudfront.net/x/task-1.mp4?_jwt=abc".into())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("video/mp4"));
    assert_eq!(g.outputs[0].duration_seconds, Some(Decimal::from(5)));
    assert_eq!(g.usage.output_seconds, Some(Decimal::from(5)));
    assert_eq!(g.charged, None, "Runway reports no cost");
    assert_eq!(g.provider_job_id.as_deref(), Some("task-1"));

    let seen: Vec<(Stage, Option<String>, Option<f32>)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.stage, e.provider_status.clone(), e.fraction))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Stage::Submitted, None, None),
            (Stage::Queued, Some("PENDING".into()), None),
            (Stage::Queued, Some("THROTTLED".into()), None),
            (Stage::Running, Some("RUNNING".into()), Some(0.4)),
        ]
    );
    let requests = server.received_requests().await.unwrap();
    // 1 create + 4 polls, no DELETE; no query string anywhere.
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|q| q.url.query().is_none()));
    assert_every_request_versioned(&requests);
    server.verify().await;
}

#[tokio::test]
async fn image_to_video_first_and_last_frames_and_audio() {
    let server = MockServer::start().await;
    mount_created(
        &server,
        "/v1/image_to_video",
        json!({
            "model": "veo3.1_fast",
            "promptImage": [
                {"uri": "https://example.com/first.png", "position": "first"},
                {"uri": "data:image/png;base64,AQID", "position": "last"}
            ],
            "promptText": "the sun sets",
            "ratio": "720:1280",
            "duration": 8,
            "audio": true
        }),
        "v31",
    )
    .await;
    mount_task_sequence(
        &server,
        "v31",
        vec![json!({"status": "SUCCEEDED", "output": ["https://cdn.example/v31.mp4"]})],
    )
    .await;
    // gen4_turbo with only a first frame: promptImage is the URI itself; no prompt, no audio field.
    mount_created(
        &server,
        "/v1/image_to_video",
        json!({
            "model": "gen4_turbo",
            "promptImage": "https://example.com/still.jpg",
            "ratio": "960:960",
            "duration": 10
        }),
        "g4t",
    )
    .await;
    mount_task_sequence(
        &server,
        "g4t",
        vec![json!({"status": "SUCCEEDED", "output": ["https://cdn.example/g4t.mp4"]})],
    )
    .await;
    let p = provider(&server);
    let veo = VideoJobSpec::from_image(
        MediaInput::Url {
            url: "https://example.com/first.png".into(),
        },
        Decimal::from(8),
    )
    .prompt("the sun sets")
    .last_frame(MediaInput::Bytes {
        media_type: "image/png".into(),
        data: vec![1, 2, 3],
    })
    .resolution(Dimensions::new(700, 1240).unwrap())
    .audio(true)
    .build()
    .unwrap();
    let g = p.generate(&req("veo3.1_fast", veo), &ctx()).await.unwrap();
    assert_eq!(g.usage.output_seconds, Some(Decimal::from(8)));

    let turbo = VideoJobSpec::from_image(
        MediaInput::Url {
            url: "https://example.com/still.jpg".into(),
        },
        Decimal::from(10),
    )
    .resolution(Dimensions::new(1024, 1024).unwrap())
    .build()
    .unwrap();
    let g = p.generate(&req("gen4_turbo", turbo), &ctx()).await.unwrap();
    assert_eq!(g.usage.output_seconds, Some(Decimal::from(10)));
    server.verify().await;
}

#[tokio::test]
async fn text_to_image_with_references() {
    let server = MockServer::start().await;
    mount_created(
        &server,
        "/v1/text_to_image",
        json!({
            "model": "gen4_image",
            "promptText": "@hero in a neon city",
            "ratio": "1920:1080",
            "referenceImages": [{"uri": "https://example.com/hero.png"}],
            "seed": 7
        }),
        "img-1",
    )
    .await;
    mount_task_sequence(
        &server,
        "img-1",
        vec![
            json!({"status": "RUNNING", "progress": 0.5}),
            json!({"status": "SUCCEEDED", "output": ["https://cdn.example/img-1.png?sig=1"]}),
        ],
    )
    .await;
    let job = ImageJobSpec::new("@hero in a neon city")
        .size(1920, 1080)
        .seed(7)
        .reference(MediaInput::Url {
            url: "https://example.com/hero.png".into(),
        })
        .build()
        .unwrap();
    let g = provider(&server)
        .generate(&req("gen4_image", job), &ctx())
        .await
        .unwrap();
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/png"));
    assert_eq!(
        g.outputs[0].dimensions,
        Some(Dimensions::new(1920, 1080).unwrap())
    );
    assert_eq!(g.usage.billable_units, Some(Decimal::ONE));
    assert_eq!(g.usage.output_seconds, None);
    assert_eq!(g.seed, Some(7));
    server.verify().await;
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let p = provider(&server);
    let url = || MediaInput::Url {
        url: "https://example.com/a.png".into(),
    };
    let mut big_seed = VideoJobSpec::new("x", Decimal::from(5));
    big_seed.seed = Some(u64::from(u32::MAX) + 1);
    let mut too_many_refs = ImageJobSpec::new("x");
    for _ in 0..4 {
        too_many_refs = too_many_refs.reference(url());
    }
    let cases = vec![
        // gen4_turbo needs a first frame.
        req(
            "gen4_turbo",
            VideoJobSpec::new("x", Decimal::from(5)).build().unwrap(),
        ),
        // Durations per model.
        req("veo3", VideoJobSpec::new("x", Decimal::from(5)).build().unwrap()),
        req(
            "veo3.1_fast",
            VideoJobSpec::new("x", Decimal::from(5)).build().unwrap(),
        ),
        req(
            "gen4.5",
            VideoJobSpec::new("x", Decimal::from(11)).build().unwrap(),
        ),
        req(
            "gen4.5",
            VideoJobSpec::new("x", Decimal::new(55, 1)).build().unwrap(),
        ),
        // Last frame and audio only where the model takes them.
        req(
            "gen4.5",
            VideoJobSpec::from_image(url(), Decimal::from(5))
                .last_frame(url())
                .build()
                .unwrap(),
        ),
        req(
            "gen4_turbo",
            VideoJobSpec::from_image(url(), Decimal::from(5))
                .audio(true)
                .build()
                .unwrap(),
        ),
        // gen4_image: exact sizes, at most 3 references, one image.
        req(
            "gen4_image",
            ImageJobSpec::new("x").size(1000, 1000).build().unwrap(),
        ),
        req("gen4_image", too_many_refs.build().unwrap()),
        req("gen4_image", ImageJobSpec::new("x").count(2).build().unwrap()),
        // Prompt length, seed range, stored assets, unknown model, wrong modality.
        req(
            "gen4.5",
            VideoJobSpec::new("a".repeat(1001), Decimal::from(5))
                .build()
                .unwrap(),
        ),
        req("gen4.5", big_seed.build().unwrap()),
        req(
            "gen4.5",
            VideoJobSpec::from_image(MediaInput::Asset { id: "a1".into() }, Decimal::from(5))
                .build()
                .unwrap(),
        ),
        req(
            "gen3a_turbo",
            VideoJobSpec::new("x", Decimal::from(5)).build().unwrap(),
        ),
        req("gen4.5", AudioJobSpec::speech("hi").build().unwrap()),
    ];
    for r in cases {
        let err = p.generate(&r, &ctx()).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest),
            "{} {err}",
            r.model
        );
        assert_eq!(err.billing(), &Billed::No);
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

async fn create_failure(code: u16, headers: &[(&str, &str)], body: Value) -> ProviderError {
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
    let job = VideoJobSpec::new("x", Decimal::from(5)).build().unwrap();
    let e = provider(&server)
        .generate(&req("gen4.5", job), &ctx())
        .await
        .unwrap_err();
    server.verify().await;
    e
}

#[tokio::test]
async fn create_failures_are_classified() {
    let cases: Vec<(u16, Value, ErrorKind, bool, Billed)> = vec![
        (
            400,
            json!({"error": "Invalid ratio"}),
            ErrorKind::InvalidRequest,
            false,
            Billed::No,
        ),
        (
            400,
            json!({"error": "You do not have enough credits to run this task."}),
            ErrorKind::InsufficientCredits,
            false,
            Billed::No,
        ),
        (
            401,
            json!({"error": "Invalid API key"}),
            ErrorKind::Auth,
            false,
            Billed::No,
        ),
        (
            429,
            json!({"error": "Daily task limit reached"}),
            ErrorKind::RateLimited,
            true,
            Billed::No,
        ),
        (
            502,
            json!({"error": "Bad gateway"}),
            ErrorKind::Unavailable,
            true,
            Billed::No,
        ),
        (
            503,
            json!({"error": "Service unavailable"}),
            ErrorKind::Unavailable,
            true,
            Billed::No,
        ),
    ];
    for (code, body, kind, temporary, billed) in cases {
        let e = create_failure(code, &[], body.clone()).await;
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (kind, temporary, &billed),
            "{code} {body}"
        );
        assert_eq!(e.http_status(), Some(code));
        assert_eq!(e.provider_job_id(), None, "no task was created");
    }
    let e = create_failure(429, &[("retry-after", "12")], json!({"error": "slow"})).await;
    assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(12)));
}

async fn task_ending(answer: Value) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "t-end"})))
        .mount(&server)
        .await;
    mount_task_sequence(
        &server,
        "t-end",
        vec![json!({"status": "RUNNING", "progress": 0.1}), answer],
    )
    .await;
    let job = VideoJobSpec::new("x", Decimal::from(5)).build().unwrap();
    let e = provider(&server)
        .generate(&req("gen4.5", job), &ctx())
        .await
        .unwrap_err();
    // A task that ended by itself is never deleted.
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| r.method.as_str() != "DELETE"));
    e
}

#[tokio::test]
async fn failed_tasks_are_classified_by_failure_code() {
    let failed = |code: &str| json!({"status": "FAILED", "failure": "It failed", "failureCode": code});
    let cases: Vec<(Value, ErrorKind, bool, Billed)> = vec![
        (
            failed("SAFETY.INPUT.TEXT"),
            ErrorKind::ContentRejected,
            false,
            Billed::No,
        ),
        (
            failed("SAFETY.OUTPUT.VIDEO"),
            ErrorKind::ContentRejected,
            false,
            Billed::Unknown,
        ),
        (
            failed("INTERNAL.BAD_OUTPUT.CODE01"),
            ErrorKind::Failed,
            true,
            Billed::Unknown,
        ),
        (failed("INTERNAL"), ErrorKind::Failed, true, Billed::Unknown),
        (
            failed("ASSET.INVALID"),
            ErrorKind::InvalidRequest,
            false,
            Billed::No,
        ),
        (
            json!({"status": "FAILED"}),
            ErrorKind::Failed,
            false,
            Billed::Unknown,
        ),
        (
            json!({"status": "CANCELED"}),
            ErrorKind::Cancelled,
            false,
            Billed::Unknown,
        ),
        (
            json!({"status": "CANCELLED"}),
            ErrorKind::Cancelled,
            false,
            Billed::Unknown,
        ),
        (
            json!({"status": "SUCCEEDED", "output": []}),
            ErrorKind::MalformedResponse,
            false,
            Billed::Unknown,
        ),
    ];
    for (answer, kind, temporary, billed) in cases {
        let e = task_ending(answer.clone()).await;
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (kind, temporary, &billed),
            "{answer}"
        );
        assert_eq!(
            e.provider_job_id(),
            Some("t-end"),
            "the task id travels with the error"
        );
    }
    let e = task_ending(failed("SAFETY.INPUT.IMAGE")).await;
    assert_eq!(e.provider_code(), Some("SAFETY.INPUT.IMAGE"));
    assert_eq!(e.message(), "runway task failed: It failed");
}

async fn wait_for_delete(server: &MockServer) -> Request {
    for _ in 0..200 {
        if let Some(r) = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.method.as_str() == "DELETE")
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no DELETE request received");
}

#[tokio::test]
async fn deadline_and_drop_delete_the_task_with_both_headers() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "slow"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tasks/slow"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "RUNNING", "progress": 0.2})))
        .mount(&server)
        .await;
    authed(Mock::given(method("DELETE")).and(path("/v1/tasks/slow")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let job = VideoJobSpec::new("x", Decimal::from(5)).build().unwrap();
    let r = req("gen4.5", job);
    let e = provider(&server)
        .generate(&r, &ctx().with_timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, true, &Billed::Unknown)
    );
    assert_eq!(e.provider_job_id(), Some("slow"));
    wait_for_delete(&server).await;
    server.verify().await;

    // Dropping the future deletes it too.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "dropped"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tasks/dropped"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "PENDING"})))
        .mount(&server)
        .await;
    authed(Mock::given(method("DELETE")).and(path("/v1/tasks/dropped")))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    let p = provider(&server);
    let c = ctx();
    {
        // Drive the call until the task has been polled at least once (so it exists upstream), then drop it.
        let run = p.generate(&r, &c);
        tokio::pin!(run);
        loop {
            tokio::select! {
                done = &mut run => panic!("a pending task cannot finish: {done:?}"),
                () = tokio::time::sleep(Duration::from_millis(5)) => {
                    let polled = server
                        .received_requests()
                        .await
                        .unwrap()
                        .iter()
                        .any(|q| q.method.as_str() == "GET");
                    if polled {
                        break;
                    }
                }
            }
        }
    }
    let delete = wait_for_delete(&server).await;
    assert_every_request_versioned(&[delete]);

    // Unknown statuses are capped, and the task is deleted.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "odd"})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/tasks/odd"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"status": "ARCHIVED"})))
        .expect(4)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/tasks/odd"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).generate(&r, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MalformedResponse);
    wait_for_delete(&server).await;
    server.verify().await;
}

#[tokio::test]
async fn resume_polls_without_creating_and_cancel_by_id() {
    let server = MockServer::start().await;
    mount_task_sequence(
        &server,
        "old-1",
        vec![
            json!({"status": "RUNNING", "progress": 0.9}),
            json!({"status": "SUCCEEDED", "output": ["https://cdn.example/old-1.mp4"]}),
        ],
    )
    .await;
    authed(Mock::given(method("DELETE")).and(path("/v1/tasks/run-1")))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/tasks/gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": "Task not found"})))
        .mount(&server)
        .await;
    let p = provider(&server);
    let r = req(
        "gen4.5",
        VideoJobSpec::new("x", Decimal::from(5)).build().unwrap(),
    );
    let g = p.resume("old-1", &r, &ctx()).await.unwrap();
    assert_eq!(g.provider_job_id.as_deref(), Some("old-1"));
    assert_eq!(g.usage.output_seconds, Some(Decimal::from(5)));
    p.cancel("run-1").await.unwrap();
    let e = p.cancel("gone").await.unwrap_err();
    assert_eq!(
        (e.kind(), e.http_status()),
        (ErrorKind::InvalidRequest, Some(404))
    );
    let e = p.cancel("../organization").await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    let requests = server.received_requests().await.unwrap();
    assert!(requests.iter().all(|r| r.method.as_str() != "POST"));
    assert_every_request_versioned(&requests);
    server.verify().await;
}
