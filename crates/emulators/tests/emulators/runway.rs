use std::time::Duration;

use super::common::{authed, client, header, json};
use genroute_emulators::{Emulator, Endpoint, Fault, JobState, Kind, Progression};
use serde_json::json;

#[tokio::test]
async fn image_to_video_lifecycle() {
    let rw = Emulator::builder(Kind::Runway)
        .progression(Progression::polls(1, 2))
        .start()
        .await
        .unwrap();
    let c = client();
    let (code, b) = json(
        authed(&rw, c.post(format!("{}/v1/image_to_video", rw.base_url())))
            .json(&json!({"model": "gen4_turbo", "promptImage": "https://example.com/a.png", "promptText": "pan", "ratio": "1280:720", "duration": 5}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 200);
    let id = b["id"].as_str().unwrap().to_owned();
    assert_eq!(b.as_object().unwrap().len(), 1);
    let mut seen = Vec::new();
    let done = loop {
        let (_, t) = json(
            authed(&rw, c.get(format!("{}/v1/tasks/{id}", rw.base_url())))
                .send()
                .await
                .unwrap(),
        )
        .await;
        seen.push(t["status"].as_str().unwrap().to_owned());
        if t["status"] == "RUNNING" {
            assert!(t["progress"].as_f64().unwrap() < 1.0);
        }
        if t["status"] == "SUCCEEDED" {
            break t;
        }
    };
    assert_eq!(seen, ["PENDING", "RUNNING", "RUNNING", "SUCCEEDED"]);
    let out = done["output"][0].as_str().unwrap();
    assert!(out.contains("_jwt="));
    let f = c.get(out).send().await.unwrap();
    assert_eq!(header(&f, "content-type").as_deref(), Some("video/mp4"));
    assert_eq!(rw.credits_spent(), 25);
    let (_, org) = json(
        authed(&rw, c.get(format!("{}/v1/organization", rw.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(org["creditBalance"], 1_000_000 - 25);
}

#[tokio::test]
async fn version_header_required_and_auth() {
    let rw = Emulator::start(Kind::Runway).await.unwrap();
    let c = client();
    let url = format!("{}/v1/text_to_image", rw.base_url());
    let body = json!({"model": "gen4_image", "promptText": "x", "ratio": "1920:1080"});
    let r = c
        .post(&url)
        .bearer_auth(rw.api_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(&url)
        .bearer_auth("key_wrong")
        .header("X-Runway-Version", "2024-11-06")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (code, e) = json(
        authed(&rw, c.post(&url))
            .json(&json!({"model": "gen4_image", "promptText": "x", "ratio": "3:2"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (code, e["issues"][0]["path"][0].as_str().unwrap()),
        (400, "ratio")
    );
    let (code, _) = json(authed(&rw, c.post(&url)).json(&body).send().await.unwrap()).await;
    assert_eq!(code, 200);
    assert_eq!(rw.credits_spent(), 8);
    assert_eq!(rw.jobs().len(), 1);
}

#[tokio::test]
async fn delete_cancels_running_and_deletes_finished() {
    let rw = Emulator::builder(Kind::Runway)
        .progression(Progression::polls(3, 3))
        .start()
        .await
        .unwrap();
    let c = client();
    let create = || {
        authed(&rw, c.post(format!("{}/v1/text_to_video", rw.base_url())))
            .json(&json!({"model": "veo3.1_fast", "promptText": "x", "duration": 4}))
    };
    let (_, a) = json(create().send().await.unwrap()).await;
    let id = a["id"].as_str().unwrap();
    let r = authed(&rw, c.delete(format!("{}/v1/tasks/{id}", rw.base_url())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, t) = json(
        authed(&rw, c.get(format!("{}/v1/tasks/{id}", rw.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(t["status"], "CANCELLED");
    assert_eq!(rw.job(id).unwrap().state, JobState::Canceled);
    let r = authed(&rw, c.delete(format!("{}/v1/tasks/{id}", rw.base_url())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = authed(&rw, c.get(format!("{}/v1/tasks/{id}", rw.base_url())))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(rw.count(Endpoint::Cancel), 2);
}

#[tokio::test]
async fn faults_in_runway_shapes() {
    let rw = Emulator::builder(Kind::Runway)
        .progression(Progression::immediate())
        .configure(|s| s.runway_credit_balance = 100)
        .start()
        .await
        .unwrap();
    let c = client();
    let url = format!("{}/v1/image_to_video", rw.base_url());
    let body = json!({"model": "gen4_turbo", "promptImage": "https://x/a.png", "duration": 10});
    rw.faults().push(Fault::content_rejected());
    rw.faults().push(Fault::fail_after_running());
    rw.faults().push(Fault::credit_exhausted());
    rw.faults()
        .push(Fault::rate_limited(Duration::from_secs(9)).on(Endpoint::Create));
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (_, b) = json(authed(&rw, c.post(&url)).json(&body).send().await.unwrap()).await;
        tasks.push(b["id"].as_str().unwrap_or_else(|| panic!("{b}")).to_owned());
    }
    let (_, t) = json(
        authed(&rw, c.get(format!("{}/v1/tasks/{}", rw.base_url(), tasks[0])))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (t["status"].as_str().unwrap(), t["failureCode"].as_str().unwrap()),
        ("FAILED", "SAFETY.INPUT.TEXT")
    );
    let (_, t) = json(
        authed(&rw, c.get(format!("{}/v1/tasks/{}", rw.base_url(), tasks[1])))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (t["status"].as_str().unwrap(), t["failureCode"].as_str().unwrap()),
        ("FAILED", "INTERNAL")
    );
    let (code, e) = json(authed(&rw, c.post(&url)).json(&body).send().await.unwrap()).await;
    assert_eq!(
        (code, e["error"].as_str().unwrap()),
        (400, "You do not have enough credits to run this task.")
    );
    let r = authed(&rw, c.post(&url)).json(&body).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), header(&r, "retry-after").as_deref()),
        (429, Some("9"))
    );
    // The balance (100) is now spent by the two tasks: a real exhaustion, no fault needed.
    let (code, _) = json(authed(&rw, c.post(&url)).json(&body).send().await.unwrap()).await;
    assert_eq!(code, 400);
    assert_eq!(rw.jobs().len(), 2);
}

#[tokio::test]
async fn status_spellings_can_be_overridden() {
    let rw = Emulator::builder(Kind::Runway)
        .progression(Progression::polls(1, 1))
        .configure(|s| s.queued_status = Some("THROTTLED".into()))
        .start()
        .await
        .unwrap();
    let c = client();
    let (_, b) = json(
        authed(&rw, c.post(format!("{}/v1/text_to_image", rw.base_url())))
            .json(&json!({"model": "gen4_image", "promptText": "x", "ratio": "1280:720"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let url = format!("{}/v1/tasks/{}", rw.base_url(), b["id"].as_str().unwrap());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (_, t) = json(authed(&rw, c.get(&url)).send().await.unwrap()).await;
        seen.push(t["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(seen, ["THROTTLED", "RUNNING", "SUCCEEDED"]);
}
