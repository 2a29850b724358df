use std::time::Duration;

use super::common::{authed, client, json};
use genroute_emulators::{Emulator, Endpoint, Fault, Kind, Progression};
use serde_json::json;

#[tokio::test]
async fn txt2img_defaults_to_four_samples_and_reports_cost() {
    let sc = Emulator::builder(Kind::Scenario)
        .progression(Progression::polls(1, 1))
        .start()
        .await
        .unwrap();
    let c = client();
    let (code, b) = json(
        authed(&sc, c.post(format!("{}/generate/txt2img", sc.base_url())))
            .json(&json!({"modelId": "sdxl", "prompt": "a castle"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(b["creativeUnitsCost"], 20);
    assert_eq!(b["creativeUnitsDiscount"], 0);
    assert_eq!(b["job"]["status"], "queued");
    assert!(b["inference"].is_object());
    let id = b["job"]["jobId"].as_str().unwrap().to_owned();
    assert!(id.starts_with("job_"));
    let mut seen = Vec::new();
    let job = loop {
        let (_, j) = json(
            authed(&sc, c.get(format!("{}/jobs/{id}", sc.base_url())))
                .send()
                .await
                .unwrap(),
        )
        .await;
        seen.push(j["job"]["status"].as_str().unwrap().to_owned());
        if j["job"]["status"] == "success" {
            break j["job"].clone();
        }
    };
    assert_eq!(seen, ["queued", "in-progress", "success"]);
    let assets = job["metadata"]["assetIds"].as_array().unwrap();
    assert_eq!(assets.len(), 4);
    let (code, a) = json(
        authed(
            &sc,
            c.get(format!(
                "{}/assets/{}",
                sc.base_url(),
                assets[0].as_str().unwrap()
            )),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let url = a["asset"]["url"].as_str().unwrap();
    assert_eq!(c.get(url).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn dry_run_answers_269_and_creates_nothing() {
    let sc = Emulator::builder(Kind::Scenario)
        .configure(|s| s.scenario_discount_percent = 10)
        .start()
        .await
        .unwrap();
    let c = client();
    let r = authed(
        &sc,
        c.post(format!("{}/generate/txt2img?dryRun=true", sc.base_url())),
    )
    .json(&json!({"modelId": "sdxl", "prompt": "x", "numSamples": 2, "numInferenceSteps": 60}))
    .send()
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 269);
    let (_, b) = json(r).await;
    assert_eq!(b, json!({"creativeUnitsCost": 18, "creativeUnitsDiscount": 2}));
    let (code, b) = json(
        authed(
            &sc,
            c.post(format!("{}/generate/custom/model_abc?dryRun=true", sc.base_url())),
        )
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 269);
    assert_eq!(b["job"], json!({}));
    assert!(sc.jobs().is_empty());
    assert_eq!(sc.count(Endpoint::Create), 2);
}

#[tokio::test]
async fn validation_auth_cancel_and_faults() {
    let sc = Emulator::builder(Kind::Scenario)
        .progression(Progression::polls(2, 0))
        .start()
        .await
        .unwrap();
    let c = client();
    let url = format!("{}/generate/txt2img", sc.base_url());
    let (code, _) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x", "seed": 5}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x", "width": 100}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let r = c
        .post(&url)
        .basic_auth("emu_api_key", Some("bad"))
        .json(&json!({"modelId": "sdxl", "prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (_, b) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = b["job"]["jobId"].as_str().unwrap();
    let (code, j) = json(
        authed(&sc, c.post(format!("{}/jobs/{id}/action", sc.base_url())))
            .json(&json!({"action": "cancel"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, j["job"]["status"].as_str().unwrap()), (200, "canceled"));
    assert_eq!(sc.cancels(), vec![id.to_owned()]);

    sc.faults().push(Fault::credit_exhausted());
    sc.faults().push(Fault::rate_limited(Duration::from_secs(2)));
    let (code, _) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 402);
    let (code, e) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["details"]["actionName"].as_str().unwrap()),
        (429, "generate")
    );

    sc.set_progression(Progression::immediate());
    sc.faults().push(Fault::fail_after_running());
    let (_, b) = json(
        authed(&sc, c.post(&url))
            .json(&json!({"modelId": "sdxl", "prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = b["job"]["jobId"].as_str().unwrap();
    let (_, j) = json(
        authed(&sc, c.get(format!("{}/jobs/{id}", sc.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["job"]["status"], "failure");
    assert_eq!(j["job"]["metadata"]["assetIds"], json!([]));
    // A finished job refuses cancellation.
    let (code, _) = json(
        authed(&sc, c.post(format!("{}/jobs/{id}/action", sc.base_url())))
            .json(&json!({"action": "cancel"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
}

#[tokio::test]
async fn custom_model_and_fixed_operations() {
    let sc = Emulator::builder(Kind::Scenario)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    let c = client();
    let (code, b) = json(
        authed(
            &sc,
            c.post(format!("{}/generate/custom/model_video_xyz", sc.base_url())),
        )
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    assert!(b.get("inference").is_none());
    assert_eq!(b["creativeUnitsCost"], 5);
    let (code, up) = json(
        authed(&sc, c.post(format!("{}/generate/upscale", sc.base_url())))
            .json(&json!({"image": "asset_1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, up["creativeUnitsCost"].as_u64().unwrap()), (200, 10));
    let (code, _) = json(
        authed(&sc, c.post(format!("{}/generate/upscale", sc.base_url())))
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 400);
    let id = up["job"]["jobId"].as_str().unwrap();
    let (_, j) = json(
        authed(&sc, c.get(format!("{}/jobs/{id}", sc.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(j["job"]["status"], "success");
    assert_eq!(j["job"]["metadata"]["assetIds"].as_array().unwrap().len(), 1);
    assert_eq!(
        sc.jobs().iter().map(|j| j.model.as_str()).collect::<Vec<_>>(),
        ["model_video_xyz", "upscale"]
    );
}
