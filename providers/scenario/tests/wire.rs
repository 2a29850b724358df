#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Scenario adapter against a wiremock server: the exact requests sent, the job lifecycle through
//! `/jobs` and `/assets`, Creative Units read as the charge, dry runs, and every failure class.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use genroute_core::{
    AssetContent, Billed, Charge, CostSource, Decimal, Dimensions, EditJobSpec, EditOp, ErrorKind,
    ImageJobSpec, MediaInput, ModelId, Money, ProgressEvent, Provider, ProviderError, ProviderRequest, Stage,
    VideoJobSpec,
};
use genroute_http::testing::{fast_poll, test_context as ctx};
use genroute_provider_scenario::{ScenarioConfig, ScenarioModel, ScenarioProvider};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

fn config(server: &MockServer) -> ScenarioConfig {
    ScenarioConfig::new("api-key", "api-secret")
        .base_url(format!("{}/v1", server.uri()))
        .poll(fast_poll())
}

fn provider(server: &MockServer) -> ScenarioProvider {
    ScenarioProvider::new(config(server)).unwrap()
}

fn basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("api-key:api-secret")
    )
}

fn req(model: &str, job: impl Into<genroute_core::Job>) -> ProviderRequest {
    ProviderRequest::new(ModelId::new(model).unwrap(), job)
}

fn authed(m: wiremock::MockBuilder) -> wiremock::MockBuilder {
    m.and(header("authorization", basic().as_str()))
}

fn created(job_id: &str, cost: Value, discount: Value) -> Value {
    json!({
        "creativeUnitsCost": cost,
        "creativeUnitsDiscount": discount,
        "inference": {"id": "inf_1"},
        "job": {
            "jobId": job_id,
            "jobType": "inference",
            "status": "queued",
            "progress": 0,
            "statusHistory": [{"status": "queued", "date": "2026-11-21T05:00:00.000Z"}],
            "metadata": {"input": {}, "assetIds": []}
        }
    })
}

fn job(job_id: &str, status: &str, assets: &[&str]) -> Value {
    json!({"job": {"jobId": job_id, "status": status, "progress": 1, "metadata": {"assetIds": assets}}})
}

async fn mount_create(server: &MockServer, endpoint: &str, body: Value, answer: Value) {
    authed(Mock::given(method("POST")).and(path(endpoint)))
        .and(query_param_is_missing("dryRun"))
        .and(header("content-type", "application/json"))
        .and(body_json(body))
        .respond_with(ResponseTemplate::new(200).set_body_json(answer))
        .expect(1)
        .mount(server)
        .await;
}

async fn mount_job_sequence(server: &MockServer, job_id: &str, answers: Vec<Value>) {
    for body in answers {
        authed(Mock::given(method("GET")).and(path(format!("/v1/jobs/{job_id}"))))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .up_to_n_times(1)
            .mount(server)
            .await;
    }
}

async fn mount_asset(server: &MockServer, asset_id: &str, asset: Value) {
    authed(Mock::given(method("GET")).and(path(format!("/v1/assets/{asset_id}"))))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"asset": asset})))
        .mount(server)
        .await;
}

#[tokio::test]
async fn txt2img_lifecycle_sends_exact_request_and_charges_creative_units() {
    let server = MockServer::start().await;
    let seed: u64 = 18_446_744_073_709_551_557;
    mount_create(
        &server,
        "/v1/generate/txt2img",
        json!({
            "modelId": "stable-diffusion-xl-base-1.0",
            "prompt": "a knight, game asset",
            "negativePrompt": "blurry",
            "numSamples": 2,
            "numInferenceSteps": 30,
            "width": 1024,
            "height": 1024,
            "seed": "18446744073709551557",
            "guidance": 7.5
        }),
        created("job_abc", json!(10), json!(1)),
    )
    .await;
    mount_job_sequence(
        &server,
        "job_abc",
        vec![
            json!({"job": {"jobId": "job_abc", "status": "warming-up", "progress": 0}}),
            json!({"job": {"jobId": "job_abc", "status": "in-progress", "progress": 0.5}}),
            json!({"job": {"jobId": "job_abc", "status": "finalizing", "progress": 0.9}}),
            job("job_abc", "success", &["asset_1", "asset_2"]),
        ],
    )
    .await;
    // The first asset answers last: outputs keep the job's order anyway.
    authed(Mock::given(method("GET")).and(path("/v1/assets/asset_1")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"asset": {
                    "id": "asset_1",
                    "url": "https://cdn.cloud.scenario.com/assets/asset_1.png?sig=1",
                    "mimeType": "image/png",
                    "metadata": {"width": 1024, "height": 1024, "kind": "image"}
                }}))
                .set_delay(Duration::from_millis(40)),
        )
        .mount(&server)
        .await;
    mount_asset(
        &server,
        "asset_2",
        json!({"id": "asset_2", "url": "https://cdn.cloud.scenario.com/assets/asset_2.jpeg", "metadata": {}}),
    )
    .await;

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    let ctx = ctx().with_progress(Arc::new(move |e: ProgressEvent| sink.lock().unwrap().push(e)));
    let job = ImageJobSpec::new("a knight, game asset")
        .negative_prompt("blurry")
        .count(2)
        .steps(30)
        .seed(seed)
        .extra("guidance", json!(7.5))
        // Job fields win over extras of the same name.
        .extra("numSamples", json!(4))
        .build()
        .unwrap();
    let g = provider(&server).generate(&req("sdxl", job), &ctx).await.unwrap();

    assert_eq!(
        g.charged,
        Some(Charge {
            amount: Money::cu(Decimal::from(10)),
            source: CostSource::ProviderReported
        })
    );
    assert_eq!(g.usage.other.get("creative_units_cost"), Some(&Decimal::from(10)));
    assert_eq!(g.usage.other.get("creative_units_discount"), Some(&Decimal::ONE));
    assert_eq!(g.outputs.len(), 2);
    assert_eq!(
        g.outputs[0].content,
        AssetContent::Url("https://cdn.cloud.scenario.com/assets/asset_1.png?sig=1".into())
    );
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/png"));
    assert_eq!(
        g.outputs[0].dimensions,
        Some(Dimensions::new(1024, 1024).unwrap())
    );
    assert_eq!(g.outputs[1].media_type.as_deref(), Some("image/jpeg"));
    assert_eq!(g.provider_job_id.as_deref(), Some("job_abc"));
    assert_eq!(g.response_model.as_deref(), Some("stable-diffusion-xl-base-1.0"));
    assert_eq!(g.seed, Some(seed));

    let seen: Vec<(Stage, Option<String>)> = events
        .lock()
        .unwrap()
        .iter()
        .map(|e| (e.stage, e.provider_status.clone()))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Stage::Submitted, Some("queued".into())),
            (Stage::Queued, Some("warming-up".into())),
            (Stage::Running, Some("in-progress".into())),
            (Stage::Running, Some("finalizing".into())),
            (Stage::Finalizing, Some("success".into())),
        ]
    );
    // 1 create + 4 polls + 2 assets; no cancel; no query string (the create is not a dry run).
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 7);
    assert!(requests.iter().all(|q| q.url.query().is_none()));
    server.verify().await;
}

#[tokio::test]
async fn custom_endpoint_mapping_default_count_and_discount_option() {
    let server = MockServer::start().await;
    // A default job (count 1) still sends numSamples explicitly: Scenario's own default is 4.
    mount_create(
        &server,
        "/v1/generate/custom/model_myflux",
        json!({"prompt": "a potion icon", "numSamples": 1, "width": 512, "height": 512}),
        json!({"creativeUnitsCost": 5, "creativeUnitsDiscount": 0.5, "job": {"jobId": "job_c", "status": "queued"}}),
    )
    .await;
    mount_job_sequence(&server, "job_c", vec![job("job_c", "success", &["a_c"])]).await;
    mount_asset(&server, "a_c", json!({"url": "https://cdn.example/a_c.png"})).await;
    let mut cfg = config(&server).model(
        "sd-1.5",
        ScenarioModel {
            model_id: "model_myflux".into(),
            custom: true,
        },
    );
    cfg.subtract_discount = true;
    let p = ScenarioProvider::new(cfg).unwrap();
    let g = p
        .generate(
            &req(
                "sd-1.5",
                ImageJobSpec::new("a potion icon").size(512, 512).build().unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap();
    assert_eq!(g.charged.map(|c| c.amount), Some(Money::cu(Decimal::new(45, 1))));
    server.verify().await;

    // Overrides are only for the generator ids.
    let bad = config(&server).model("detection", ScenarioModel::txt2img("x"));
    assert!(ScenarioProvider::new(bad).is_err());
}

#[tokio::test]
async fn edit_operations_hit_their_endpoints_with_exact_bodies() {
    let server = MockServer::start().await;
    let cases: Vec<(&str, &str, Value, ProviderRequest)> = vec![
        (
            "j_up",
            "/v1/generate/upscale",
            json!({"image": "data:image/png;base64,AQID", "scalingFactor": 2}),
            req(
                "upscale",
                EditJobSpec::new(
                    EditOp::Upscale {
                        factor: Decimal::from(2),
                    },
                    MediaInput::Bytes {
                        media_type: "image/png".into(),
                        data: vec![1, 2, 3],
                    },
                )
                .build()
                .unwrap(),
            ),
        ),
        (
            "j_bg",
            "/v1/generate/remove-background",
            json!({"image": "asset_in", "backgroundColor": "#ffffff"}),
            req(
                "remove-background",
                EditJobSpec::new(
                    EditOp::RemoveBackground,
                    MediaInput::Asset {
                        id: "asset_in".into(),
                    },
                )
                .extra("backgroundColor", json!("#ffffff"))
                .build()
                .unwrap(),
            ),
        ),
        (
            "j_px",
            "/v1/generate/pixelate",
            json!({"image": "asset_in", "pixelGridSize": 32}),
            req(
                "pixelate",
                EditJobSpec::new(
                    EditOp::Pixelate { grid_size: Some(32) },
                    MediaInput::Asset {
                        id: "asset_in".into(),
                    },
                )
                .build()
                .unwrap(),
            ),
        ),
        (
            "j_vec",
            "/v1/generate/vectorize",
            json!({"image": "asset_in"}),
            req(
                "vectorize",
                EditJobSpec::new(
                    EditOp::Vectorize,
                    MediaInput::Asset {
                        id: "asset_in".into(),
                    },
                )
                .build()
                .unwrap(),
            ),
        ),
        (
            "j_i2i",
            "/v1/generate/img2img",
            json!({"modelId": "stable-diffusion-v1-5", "prompt": "make it winter",
                   "imageUrl": "https://example.com/in.png", "strength": 0.6, "numSamples": 2}),
            req(
                "sd-1.5",
                EditJobSpec::new(
                    EditOp::Img2Img {
                        prompt: "make it winter".into(),
                        strength: Some(Decimal::new(6, 1)),
                    },
                    MediaInput::Url {
                        url: "https://example.com/in.png".into(),
                    },
                )
                .count(2)
                .build()
                .unwrap(),
            ),
        ),
        (
            "j_inp",
            "/v1/generate/inpaint",
            json!({"modelId": "stable-diffusion-xl-base-1.0", "prompt": "a red door",
                   "image": "asset_in", "mask": "asset_mask", "numSamples": 1, "seed": "42"}),
            {
                let mut spec = EditJobSpec::new(
                    EditOp::Inpaint {
                        prompt: "a red door".into(),
                        mask: MediaInput::Asset {
                            id: "asset_mask".into(),
                        },
                    },
                    MediaInput::Asset {
                        id: "asset_in".into(),
                    },
                );
                spec.seed = Some(42);
                req("sdxl", spec.build().unwrap())
            },
        ),
    ];
    for (job_id, endpoint, body, _) in &cases {
        mount_create(
            &server,
            endpoint,
            body.clone(),
            created(job_id, json!(10), json!(0)),
        )
        .await;
        mount_job_sequence(&server, job_id, vec![job(job_id, "success", &[job_id])]).await;
        mount_asset(
            &server,
            job_id,
            json!({"url": format!("https://cdn.example/{job_id}.svg")}),
        )
        .await;
    }
    let p = provider(&server);
    for (job_id, _, _, r) in &cases {
        let g = p.generate(r, &ctx()).await.unwrap();
        assert_eq!(g.provider_job_id.as_deref(), Some(*job_id));
        assert_eq!(g.charged.map(|c| c.amount), Some(Money::cu(Decimal::from(10))));
        assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/svg+xml"));
    }
    server.verify().await;
}

#[tokio::test]
async fn dry_run_returns_creative_units_without_running_anything() {
    let server = MockServer::start().await;
    authed(Mock::given(method("POST")).and(path("/v1/generate/txt2img")))
        .and(query_param("dryRun", "true"))
        .and(body_json(json!({
            "modelId": "stable-diffusion-xl-base-1.0",
            "prompt": "a castle",
            "numSamples": 4,
            "width": 1024,
            "height": 1024
        })))
        .respond_with(
            ResponseTemplate::new(269)
                .set_body_json(json!({"creativeUnitsCost": 20, "creativeUnitsDiscount": 0})),
        )
        .expect(1)
        .mount(&server)
        .await;
    // Custom models answer the cost with an empty job, under any 2xx.
    authed(Mock::given(method("POST")).and(path("/v1/generate/upscale")))
        .and(query_param("dryRun", "true"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"creativeUnitsCost": 10, "creativeUnitsDiscount": 0, "job": {}})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server);
    let castle = req("sdxl", ImageJobSpec::new("a castle").count(4).build().unwrap());
    assert_eq!(
        p.dry_run(&castle).await.unwrap(),
        Some(Money::cu(Decimal::from(20)))
    );
    let up = req(
        "upscale",
        EditJobSpec::new(
            EditOp::Upscale {
                factor: Decimal::from(4),
            },
            MediaInput::Asset { id: "a".into() },
        )
        .build()
        .unwrap(),
    );
    assert_eq!(p.dry_run(&up).await.unwrap(), Some(Money::cu(Decimal::from(10))));
    // Nothing but the two dry runs: no job was created or polled.
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.url.query() == Some("dryRun=true")));
    server.verify().await;

    // A refused dry run is never billed; an invalid one sends nothing.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(json!({"message": "Upgrade to Pro to use this model"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let p = provider(&server);
    let e = p.dry_run(&castle).await.unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Auth, false, &Billed::No)
    );
    let e = p
        .dry_run(&req("sdxl", ImageJobSpec::new("x").count(129).build().unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    server.verify().await;
}

#[tokio::test]
async fn invalid_input_is_refused_before_any_request() {
    let server = MockServer::start().await;
    let asset = || MediaInput::Asset { id: "a".into() };
    let custom = ScenarioProvider::new(config(&server).model(
        "sdxl",
        ScenarioModel {
            model_id: "model_x".into(),
            custom: true,
        },
    ))
    .unwrap();
    let p = provider(&server);
    let cases = vec![
        req("sdxl", ImageJobSpec::new("x").count(129).build().unwrap()),
        req("sdxl", ImageJobSpec::new("x").size(2056, 1024).build().unwrap()),
        req("sdxl", ImageJobSpec::new("x").size(1020, 1024).build().unwrap()),
        req("sd-1.5", ImageJobSpec::new("x").steps(151).build().unwrap()),
        // Declared for the catalog only.
        req("detection", ImageJobSpec::new("x").build().unwrap()),
        req("training", ImageJobSpec::new("x").build().unwrap()),
        // Operation on the wrong model.
        req("upscale", ImageJobSpec::new("x").build().unwrap()),
        req(
            "sd-1.5",
            EditJobSpec::new(EditOp::Vectorize, asset()).build().unwrap(),
        ),
        req(
            "upscale",
            EditJobSpec::new(
                EditOp::Upscale {
                    factor: Decimal::from(2),
                },
                asset(),
            )
            .count(2)
            .build()
            .unwrap(),
        ),
        req("sdxl", VideoJobSpec::new("x", Decimal::from(5)).build().unwrap()),
        req("sd-3", ImageJobSpec::new("x").build().unwrap()),
    ];
    for r in &cases {
        let err = p.generate(r, &ctx()).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest),
            "{} {err}",
            r.model
        );
        assert_eq!(err.billing(), &Billed::No);
    }
    // A custom-endpoint model makes images only.
    let edit = req(
        "sdxl",
        EditJobSpec::new(
            EditOp::Img2Img {
                prompt: "x".into(),
                strength: None,
            },
            asset(),
        )
        .build()
        .unwrap(),
    );
    assert_eq!(
        custom.generate(&edit, &ctx()).await.unwrap_err().kind(),
        ErrorKind::Unsupported
    );
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
    let e = provider(&server)
        .generate(&req("sdxl", ImageJobSpec::new("x").build().unwrap()), &ctx())
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
            json!({"message": "width must be a multiple of 8"}),
            ErrorKind::InvalidRequest,
            false,
            Billed::No,
        ),
        (
            401,
            json!({"message": "Invalid credentials"}),
            ErrorKind::Auth,
            false,
            Billed::No,
        ),
        (
            403,
            json!({"message": "This model is not available on your current plan"}),
            ErrorKind::Auth,
            false,
            Billed::No,
        ),
        (
            400,
            json!({"message": "Not enough creative units"}),
            ErrorKind::InsufficientCredits,
            false,
            Billed::No,
        ),
        (
            402,
            json!({"message": "Payment required"}),
            ErrorKind::InsufficientCredits,
            false,
            Billed::No,
        ),
        (
            429,
            json!({"message": "Team concurrency limit reached",
                   "details": {"actionName": "generate", "actionLimit": 3}}),
            ErrorKind::RateLimited,
            true,
            Billed::No,
        ),
        (
            500,
            json!({"message": "Internal error"}),
            ErrorKind::Unavailable,
            true,
            Billed::No,
        ),
    ];
    for (code, body, kind, temporary, billed) in cases {
        let e = create_failure(code, &[("x-request-id", "rq-1")], body.clone()).await;
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (kind, temporary, &billed),
            "{code} {body}"
        );
        assert_eq!(e.http_status(), Some(code));
        assert_eq!(e.provider_request_id(), Some("rq-1"));
    }
    let e = create_failure(
        429,
        &[("retry-after", "5")],
        json!({"message": "Too many jobs", "details": {"actionName": "generate", "actionLimit": 3}}),
    )
    .await;
    assert_eq!(e.retry_after_hint(), Some(Duration::from_secs(5)));
    assert!(e.message().contains("limit for generate: 3"), "{e}");
    // A 2xx that is not a job: it may have been charged.
    let e = create_failure(200, &[], json!({"creativeUnitsCost": 5})).await;
    assert_eq!(
        (e.kind(), e.billing()),
        (ErrorKind::MalformedResponse, &Billed::Unknown)
    );
}

/// A create that succeeds (10 CU), then `answer` for the job, then `asset` (if given) for `a1`.
async fn job_ending(answer: Value, asset: Option<ResponseTemplate>) -> ProviderError {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/generate/txt2img"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created("j_end", json!(10), json!(0))))
        .mount(&server)
        .await;
    mount_job_sequence(
        &server,
        "j_end",
        vec![
            json!({"job": {"jobId": "j_end", "status": "in-progress", "progress": 0.3}}),
            answer,
        ],
    )
    .await;
    if let Some(t) = asset {
        Mock::given(method("GET"))
            .and(path("/v1/assets/a1"))
            .respond_with(t)
            .mount(&server)
            .await;
    }
    let e = provider(&server)
        .generate(&req("sdxl", ImageJobSpec::new("x").build().unwrap()), &ctx())
        .await
        .unwrap_err();
    let requests: Vec<Request> = server.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| !r.url.path().ends_with("/action")),
        "a job that ended by itself is not cancelled"
    );
    e
}

#[tokio::test]
async fn ended_jobs_and_asset_failures_are_classified() {
    let ten = Money::cu(Decimal::from(10));
    let cases: Vec<(Value, Option<ResponseTemplate>, ErrorKind, bool, Billed)> = vec![
        (
            json!({"job": {"jobId": "j_end", "status": "failure", "error": "CUDA out of memory"}}),
            None,
            ErrorKind::Failed,
            false,
            Billed::No,
        ),
        (
            json!({"job": {"jobId": "j_end", "status": "failure", "error": {"message": "NSFW content detected"}}}),
            None,
            ErrorKind::ContentRejected,
            false,
            Billed::No,
        ),
        (
            json!({"job": {"jobId": "j_end", "status": "canceled"}}),
            None,
            ErrorKind::Cancelled,
            false,
            Billed::Unknown,
        ),
        (
            job("j_end", "success", &[]),
            None,
            ErrorKind::MalformedResponse,
            false,
            Billed::Yes(ten.clone()),
        ),
        (
            job("j_end", "success", &["a1"]),
            Some(ResponseTemplate::new(404).set_body_json(json!({"message": "Asset not found"}))),
            ErrorKind::InvalidRequest,
            false,
            Billed::Yes(ten.clone()),
        ),
        (
            job("j_end", "success", &["a1"]),
            Some(ResponseTemplate::new(503)),
            ErrorKind::Unavailable,
            true,
            Billed::Yes(ten.clone()),
        ),
        (
            job("j_end", "success", &["a1"]),
            Some(ResponseTemplate::new(200).set_body_json(json!({"asset": {"id": "a1"}}))),
            ErrorKind::MalformedResponse,
            false,
            Billed::Yes(ten.clone()),
        ),
    ];
    for (answer, asset, kind, temporary, billed) in cases {
        let e = job_ending(answer.clone(), asset).await;
        assert_eq!(
            (e.kind(), e.is_temporary(), e.billing()),
            (kind, temporary, &billed),
            "{answer}"
        );
        assert_eq!(e.provider_job_id(), Some("j_end"));
    }
}

async fn wait_for_cancel(server: &MockServer) -> Request {
    for _ in 0..200 {
        if let Some(r) = server
            .received_requests()
            .await
            .unwrap()
            .into_iter()
            .find(|r| r.url.path().ends_with("/action"))
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("no cancel action received");
}

#[tokio::test]
async fn deadline_requests_cancel_and_unknown_statuses_are_capped() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/generate/txt2img"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created("slow", json!(10), json!(0))))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/jobs/slow"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"job": {"jobId": "slow", "status": "pending"}})),
        )
        .mount(&server)
        .await;
    authed(Mock::given(method("POST")).and(path("/v1/jobs/slow/action")))
        .and(body_json(json!({"action": "cancel"})))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"message": "Job cannot be canceled"})))
        .expect(1)
        .mount(&server)
        .await;
    let r = req("sdxl", ImageJobSpec::new("x").build().unwrap());
    let e = provider(&server)
        .generate(&r, &ctx().with_timeout(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind(), e.is_temporary(), e.billing()),
        (ErrorKind::Timeout, true, &Billed::Unknown)
    );
    assert_eq!(e.provider_job_id(), Some("slow"));
    wait_for_cancel(&server).await;
    server.verify().await;

    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/generate/txt2img"))
        .respond_with(ResponseTemplate::new(200).set_body_json(created("odd", json!(10), json!(0))))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/jobs/odd"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"job": {"jobId": "odd", "status": "paused"}})),
        )
        .expect(4)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/jobs/odd/action"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .expect(1)
        .mount(&server)
        .await;
    let e = provider(&server).generate(&r, &ctx()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::MalformedResponse);
    wait_for_cancel(&server).await;
    server.verify().await;
}

#[tokio::test]
async fn resume_polls_without_creating_and_cancel_by_id() {
    let server = MockServer::start().await;
    mount_job_sequence(
        &server,
        "old",
        vec![
            json!({"job": {"jobId": "old", "status": "in-progress", "progress": 0.7}}),
            job("old", "success", &["a_old"]),
        ],
    )
    .await;
    mount_asset(&server, "a_old", json!({"url": "https://cdn.example/old.webp"})).await;
    authed(Mock::given(method("POST")).and(path("/v1/jobs/running/action")))
        .and(body_json(json!({"action": "cancel"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"job": {"status": "canceled"}})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/jobs/uncancellable/action"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({"message": "cannot cancel"})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/jobs/gone/action"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Job not found"})))
        .mount(&server)
        .await;
    let p = provider(&server);
    let r = req("sdxl", ImageJobSpec::new("x").build().unwrap());
    let g = p.resume("old", &r, &ctx()).await.unwrap();
    assert_eq!(g.provider_job_id.as_deref(), Some("old"));
    assert_eq!(g.charged, None, "the cost is only in the create answer");
    assert_eq!(g.outputs[0].media_type.as_deref(), Some("image/webp"));
    p.cancel("running").await.unwrap();
    p.cancel("uncancellable").await.unwrap();
    let e = p.cancel("gone").await.unwrap_err();
    assert_eq!(
        (e.kind(), e.http_status()),
        (ErrorKind::InvalidRequest, Some(404))
    );
    assert_eq!(
        p.cancel("../assets").await.unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    let requests = server.received_requests().await.unwrap();
    assert!(
        requests.iter().all(|r| !r.url.path().starts_with("/v1/generate")),
        "resume never creates"
    );
    server.verify().await;
}

#[tokio::test]
async fn many_assets_are_read_in_a_bounded_window_and_keep_their_order() {
    let server = MockServer::start().await;
    let ids: Vec<String> = (0..20).map(|i| format!("asset_{i:02}")).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    mount_create(
        &server,
        "/v1/generate/txt2img",
        json!({"modelId": "stable-diffusion-v1-5", "prompt": "tiles", "numSamples": 20,
               "width": 512, "height": 512}),
        created("j_many", json!(100), json!(0)),
    )
    .await;
    mount_job_sequence(&server, "j_many", vec![job("j_many", "success", &id_refs)]).await;
    for (i, id) in ids.iter().enumerate() {
        // Later assets answer sooner.
        authed(Mock::given(method("GET")).and(path(format!("/v1/assets/{id}"))))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!({"asset": {"url": format!("https://cdn.example/{id}.png")}}))
                    .set_delay(Duration::from_millis(2 * (20 - i as u64))),
            )
            .expect(1)
            .mount(&server)
            .await;
    }
    let g = provider(&server)
        .generate(
            &req(
                "sd-1.5",
                ImageJobSpec::new("tiles")
                    .size(512, 512)
                    .count(20)
                    .build()
                    .unwrap(),
            ),
            &ctx(),
        )
        .await
        .unwrap();
    let urls: Vec<AssetContent> = g.outputs.into_iter().map(|a| a.content).collect();
    let want: Vec<AssetContent> = ids
        .iter()
        .map(|id| AssetContent::Url(format!("https://cdn.example/{id}.png")))
        .collect();
    assert_eq!(urls, want);
    server.verify().await;
}
