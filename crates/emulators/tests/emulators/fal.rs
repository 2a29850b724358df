use std::time::Duration;

use super::common::{authed, client, header, json};
use genroute_emulators::{Emulator, Endpoint, Fault, JobState, Kind, Progression};
use serde_json::json;

#[tokio::test]
async fn queue_lifecycle_with_absolute_urls_and_billable_units() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::polls(1, 1))
        .start()
        .await
        .unwrap();
    let c = client();
    let r = authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.base_url())))
        .json(&json!({"prompt": "a cat", "image_size": "square_hd", "num_images": 2}))
        .send()
        .await
        .unwrap();
    let (code, sub) = json(r).await;
    assert_eq!(code, 200);
    assert_eq!(sub["status"], "IN_QUEUE");
    let id = sub["request_id"].as_str().unwrap();
    let status_url = sub["status_url"].as_str().unwrap();
    // Follow-up URLs are absolute, point back at the emulator, and drop the `/dev` sub-path.
    assert_eq!(
        status_url,
        format!("{}/fal-ai/flux/requests/{id}/status", fal.base_url())
    );
    assert_eq!(
        sub["response_url"],
        format!("{}/fal-ai/flux/requests/{id}", fal.base_url())
    );
    assert_eq!(
        sub["cancel_url"],
        format!("{}/fal-ai/flux/requests/{id}/cancel", fal.base_url())
    );

    let mut seen = Vec::new();
    loop {
        let r = authed(&fal, c.get(format!("{status_url}?logs=1")))
            .send()
            .await
            .unwrap();
        let (code, st) = json(r).await;
        let s = st["status"].as_str().unwrap().to_owned();
        assert_eq!(code, if s == "COMPLETED" { 200 } else { 202 });
        seen.push(s.clone());
        if s == "COMPLETED" {
            assert!(st["metrics"]["inference_time"].is_number());
            break;
        }
        // Result is not ready before completion.
        let r = authed(&fal, c.get(sub["response_url"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }
    assert_eq!(seen, ["IN_QUEUE", "IN_PROGRESS", "COMPLETED"]);

    let r = authed(&fal, c.get(sub["response_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "x-fal-billable-units").as_deref(), Some("2"));
    assert_eq!(header(&r, "x-fal-request-id").as_deref(), Some(id));
    let (code, out) = json(r).await;
    assert_eq!(code, 200);
    assert_eq!(out["images"].as_array().unwrap().len(), 2);
    assert_eq!(out["images"][0]["width"], 1024);
    // Output files are served by the emulator.
    let img = c
        .get(out["images"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(header(&img, "content-type").as_deref(), Some("image/jpeg"));
    assert_eq!(fal.count(Endpoint::Create), 1);
    assert_eq!(fal.count(Endpoint::Status), 3);
    assert_eq!(fal.jobs()[0].state, JobState::Succeeded);
}

#[tokio::test]
async fn subpath_in_status_url_is_not_found() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let c = client();
    let (_, sub) = json(
        authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.base_url())))
            .json(&json!({"prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let id = sub["request_id"].as_str().unwrap();
    let r = authed(
        &fal,
        c.get(format!("{}/fal-ai/flux/dev/requests/{id}/status", fal.base_url())),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn auth_failures_use_fal_bodies() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let c = client();
    let url = format!("{}/fal-ai/flux/dev", fal.base_url());
    let r = c
        .post(&url)
        .header("authorization", "Key wrong:key")
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    let (code, body) = json(r).await;
    assert_eq!(
        (code, body["detail"].as_str().unwrap()),
        (401, "No user found for Key ID and Secret")
    );
    let r = c.post(&url).json(&json!({"prompt": "x"})).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(fal.jobs().is_empty());
    assert_eq!(fal.count(Endpoint::Create), 2);
}

#[tokio::test]
async fn sync_run_answers_output_directly() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    assert_ne!(fal.sync_base_url(), fal.base_url());
    let c = client();
    let r = authed(
        &fal,
        c.post(format!(
            "{}/fal-ai/kling-video/v1.6/standard/text-to-video",
            fal.sync_base_url()
        )),
    )
    .json(&json!({"prompt": "waves", "duration": "10"}))
    .send()
    .await
    .unwrap();
    assert_eq!(header(&r, "x-fal-billable-units").as_deref(), Some("10"));
    let (code, out) = json(r).await;
    assert_eq!(code, 200);
    assert!(out["video"]["url"].as_str().unwrap().ends_with(".mp4"));
    // Validation errors come back as 422 with fal's detail list.
    let r = authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.sync_base_url())))
        .json(&json!({"prompt": "x", "num_images": 9}))
        .send()
        .await
        .unwrap();
    let (code, body) = json(r).await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "num_images"]));
}

#[tokio::test]
async fn cancel_queued_then_already_completed() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::polls(5, 0))
        .start()
        .await
        .unwrap();
    let c = client();
    let (_, sub) = json(
        authed(&fal, c.post(format!("{}/fal-ai/flux/schnell", fal.base_url())))
            .json(&json!({"prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let r = authed(&fal, c.put(sub["cancel_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let (code, body) = json(r).await;
    assert_eq!(
        (code, body["status"].as_str().unwrap()),
        (202, "CANCELLATION_REQUESTED")
    );
    let (_, st) = json(
        authed(&fal, c.get(sub["status_url"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st["status"], "CANCELLED");
    let r = authed(&fal, c.put(sub["cancel_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let (code, body) = json(r).await;
    assert_eq!(
        (code, body["status"].as_str().unwrap()),
        (400, "ALREADY_COMPLETED")
    );
    assert_eq!(fal.cancels().len(), 2);
}

#[tokio::test]
async fn faults_render_fal_shapes() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    let c = client();
    let submit =
        || authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.base_url()))).json(&json!({"prompt": "x"}));
    fal.faults().push(Fault::server_error(503).times(2));
    fal.faults().push(Fault::credit_exhausted());
    fal.faults().push(Fault::rate_limited(Duration::from_secs(7)));
    for _ in 0..2 {
        let r = submit().send().await.unwrap();
        assert_eq!(
            header(&r, "x-fal-error-type").as_deref(),
            Some("runner_scheduling_failure")
        );
        assert_eq!(r.status(), 503);
    }
    let (code, body) = json(submit().send().await.unwrap()).await;
    assert_eq!(code, 403);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("User is locked. Reason: Exhausted balance.")
    );
    let r = submit().send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(header(&r, "retry-after").as_deref(), Some("7"));
    assert!(fal.jobs().is_empty());

    // Content rejection: accepted by the queue, 422 at the result.
    fal.faults().push(Fault::content_rejected());
    let (_, sub) = json(submit().send().await.unwrap()).await;
    let (_, st) = json(
        authed(&fal, c.get(sub["status_url"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st["status"], "COMPLETED");
    let (code, body) = json(
        authed(&fal, c.get(sub["response_url"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(body["detail"][0]["type"], "content_policy_violation");

    // Failure after running: 500 runner_server_error at the result, no billable units.
    fal.faults().push(Fault::fail_after_running());
    let (_, sub) = json(submit().send().await.unwrap()).await;
    let _ = authed(&fal, c.get(sub["status_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let r = authed(&fal, c.get(sub["response_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(header(&r, "x-fal-billable-units").is_none());

    // Stuck and unknown status never complete.
    fal.faults().push(Fault::stuck());
    fal.faults().push(Fault::unknown_status("WARMING"));
    let (_, stuck) = json(submit().send().await.unwrap()).await;
    let (_, odd) = json(submit().send().await.unwrap()).await;
    for _ in 0..5 {
        let (_, st) = json(
            authed(&fal, c.get(stuck["status_url"].as_str().unwrap()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(st["status"], "IN_PROGRESS");
        let (code, st) = json(
            authed(&fal, c.get(odd["status_url"].as_str().unwrap()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((code, st["status"].as_str().unwrap()), (202, "WARMING"));
    }
    assert!(fal.faults().is_empty());
}

#[tokio::test]
async fn malformed_oversized_and_scoped_faults() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    let c = client();
    fal.faults().push(Fault::malformed_json().on(Endpoint::Status));
    fal.faults().push(
        Fault::oversized(100_000)
            .on(Endpoint::Result)
            .for_model("fal-ai/flux/dev"),
    );
    let (_, sub) = json(
        authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.base_url())))
            .json(&json!({"prompt": "x"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let r = authed(&fal, c.get(sub["status_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).is_err());
    let r = authed(&fal, c.get(sub["response_url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 100_000);
    let rec = fal.requests();
    assert_eq!(rec.len(), 3);
    assert!(rec[1].faulted && rec[2].faulted && !rec[0].faulted);
    assert_eq!(rec[0].json().unwrap()["prompt"], "x");
    assert_eq!(rec[0].header("authorization"), Some("<redacted>"));
}

#[tokio::test(start_paused = true)]
async fn slow_fault_delays_the_answer() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    fal.faults().push(Fault::slow(Duration::from_secs(30)));
    let c = client();
    let start = tokio::time::Instant::now();
    let r = authed(&fal, c.post(format!("{}/fal-ai/flux/dev", fal.sync_base_url())))
        .json(&json!({"prompt": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(start.elapsed() >= Duration::from_secs(30));
}
