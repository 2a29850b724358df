use std::time::Duration;

use super::common::{authed, client, header, json};
use genroute_emulators::{Emulator, Endpoint, Fault, Kind, Progression};
use serde_json::json;

#[tokio::test]
async fn official_model_lifecycle_follows_urls_get() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::polls(1, 1))
        .start()
        .await
        .unwrap();
    let c = client();
    let r = authed(
        &rep,
        c.post(format!(
            "{}/models/black-forest-labs/flux-schnell/predictions",
            rep.base_url()
        )),
    )
    .json(&json!({"input": {"prompt": "a cat", "num_outputs": 2}}))
    .send()
    .await
    .unwrap();
    let (code, p) = json(r).await;
    assert_eq!(code, 201);
    assert_eq!(p["status"], "starting");
    assert_eq!(p["model"], "black-forest-labs/flux-schnell");
    let get = p["urls"]["get"].as_str().unwrap().to_owned();
    assert_eq!(
        get,
        format!("{}/predictions/{}", rep.base_url(), p["id"].as_str().unwrap())
    );
    assert_eq!(p["urls"]["cancel"], format!("{get}/cancel"));
    let mut seen = Vec::new();
    let done = loop {
        let (code, p) = json(authed(&rep, c.get(&get)).send().await.unwrap()).await;
        assert_eq!(code, 200);
        seen.push(p["status"].as_str().unwrap().to_owned());
        if p["status"] == "succeeded" {
            break p;
        }
    };
    assert_eq!(seen, ["starting", "processing", "succeeded"]);
    assert!(done["metrics"]["predict_time"].as_f64().unwrap() > 0.0);
    assert_eq!(done["metrics"]["image_count"], 2);
    let outs = done["output"].as_array().unwrap();
    assert_eq!(outs.len(), 2);
    let f = c.get(outs[0].as_str().unwrap()).send().await.unwrap();
    assert_eq!(header(&f, "content-type").as_deref(), Some("image/webp"));
    assert!(done["completed_at"].is_string() && done["started_at"].is_string());
}

#[tokio::test]
async fn prefer_wait_blocks_until_done_and_single_url_outputs() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::polls(3, 3))
        .configure(|s| s.replicate_predict_time = Some(4.5))
        .start()
        .await
        .unwrap();
    let c = client();
    let r = authed(
        &rep,
        c.post(format!(
            "{}/models/black-forest-labs/flux-1.1-pro/predictions",
            rep.base_url()
        )),
    )
    .header("Prefer", "wait=10")
    .json(&json!({"input": {"prompt": "x"}}))
    .send()
    .await
    .unwrap();
    let (code, p) = json(r).await;
    assert_eq!(code, 201);
    assert_eq!(p["status"], "succeeded");
    assert!(p["output"].is_string());
    assert_eq!(p["metrics"]["predict_time"], 4.5);
    assert_eq!(rep.count(Endpoint::Status), 0);
}

#[tokio::test(start_paused = true)]
async fn prefer_wait_on_stuck_returns_unfinished_after_wait() {
    let rep = Emulator::start(Kind::Replicate).await.unwrap();
    rep.faults().push(Fault::stuck());
    let c = client();
    let r = authed(
        &rep,
        c.post(format!("{}/models/minimax/video-01/predictions", rep.base_url())),
    )
    .header("Prefer", "wait=5")
    .json(&json!({"input": {"prompt": "x"}}))
    .send()
    .await
    .unwrap();
    let (_, p) = json(r).await;
    assert!(p["status"] == "starting" || p["status"] == "processing");
}

#[tokio::test]
async fn version_create_cancel_and_list() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::polls(5, 5))
        .start()
        .await
        .unwrap();
    let c = client();
    let (code, p) = json(
        authed(&rep, c.post(format!("{}/predictions", rep.base_url())))
            .json(&json!({"version": "owner/model:5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa", "input": {"prompt": "x"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(p["model"], "owner/model");
    let (code, canceled) = json(
        authed(&rep, c.post(p["urls"]["cancel"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, canceled["status"].as_str().unwrap()), (200, "canceled"));
    let (_, list) = json(
        authed(&rep, c.get(format!("{}/predictions", rep.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(list["results"].as_array().unwrap().len(), 1);
    assert_eq!(rep.cancels(), vec![p["id"].as_str().unwrap().to_owned()]);
}

#[tokio::test]
async fn validation_auth_and_faults() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    let c = client();
    let url = format!("{}/models/black-forest-labs/flux-dev/predictions", rep.base_url());
    let (code, e) = json(
        authed(&rep, c.post(&url))
            .json(&json!({"input": {"prompt": "x", "num_outputs": 5}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code, 422);
    assert_eq!(e["invalid_fields"][0]["field"], "input.num_outputs");
    let r = c
        .post(&url)
        .bearer_auth("r8_wrong")
        .json(&json!({"input": {"prompt": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let (code, e) = json(r).await;
    assert_eq!((code, e["title"].as_str().unwrap()), (401, "Unauthenticated"));

    rep.faults().push(Fault::credit_exhausted());
    rep.faults().push(Fault::rate_limited(Duration::from_secs(30)));
    rep.faults().push(Fault::server_error(502));
    let (code, e) = json(
        authed(&rep, c.post(&url))
            .json(&json!({"input": {"prompt": "x"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((code, e["status"].as_i64().unwrap()), (402, 402));
    assert_eq!(e["title"], "Insufficient credit");
    let r = authed(&rep, c.post(&url))
        .json(&json!({"input": {"prompt": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "retry-after").as_deref(), Some("30"));
    let (code, e) = json(r).await;
    assert_eq!(code, 429);
    assert!(
        e["detail"]
            .as_str()
            .unwrap()
            .starts_with("Request was throttled.")
    );
    let r = authed(&rep, c.post(&url))
        .json(&json!({"input": {"prompt": "x"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(rep.jobs().is_empty());

    rep.faults().push(Fault::content_rejected());
    rep.faults().push(Fault::fail_after_running());
    rep.faults().push(Fault::unknown_status("queued_for_gpu"));
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (_, p) = json(
            authed(&rep, c.post(&url))
                .json(&json!({"input": {"prompt": "x"}}))
                .send()
                .await
                .unwrap(),
        )
        .await;
        ids.push(p["urls"]["get"].as_str().unwrap().to_owned());
    }
    let (_, nsfw) = json(authed(&rep, c.get(&ids[0])).send().await.unwrap()).await;
    assert_eq!(nsfw["status"], "failed");
    assert!(nsfw["error"].as_str().unwrap().contains("NSFW"));
    let (_, failed) = json(authed(&rep, c.get(&ids[1])).send().await.unwrap()).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["output"].is_null());
    let (_, odd) = json(authed(&rep, c.get(&ids[2])).send().await.unwrap()).await;
    assert_eq!(odd["status"], "queued_for_gpu");
    assert_eq!(rep.count(Endpoint::Create), 8);
}

#[tokio::test(start_paused = true)]
async fn cancel_after_aborts_before_start_and_cancels_after() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::timed(
            Duration::from_secs(10),
            Duration::from_secs(60),
        ))
        .start()
        .await
        .unwrap();
    let c = client();
    let url = format!("{}/models/minimax/video-01/predictions", rep.base_url());
    let (_, early) = json(
        authed(&rep, c.post(&url))
            .header("Cancel-After", "5s")
            .json(&json!({"input": {"prompt": "x"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, late) = json(
        authed(&rep, c.post(&url))
            .header("Cancel-After", "15s")
            .json(&json!({"input": {"prompt": "x"}}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let (_, e) = json(
        authed(&rep, c.get(early["urls"]["get"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let (_, l) = json(
        authed(&rep, c.get(late["urls"]["get"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(e["status"], "aborted");
    assert_eq!(l["status"], "canceled");
}

#[tokio::test]
async fn deployment_predictions_use_the_deployment_name() {
    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::immediate())
        .start()
        .await
        .unwrap();
    let c = client();
    let (code, p) = json(
        authed(
            &rep,
            c.post(format!(
                "{}/deployments/acme/fast-flux/predictions",
                rep.base_url()
            )),
        )
        .json(&json!({"input": {"prompt": "x"}}))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(p["model"], "acme/fast-flux");
    let (_, done) = json(
        authed(&rep, c.get(p["urls"]["get"].as_str().unwrap()))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(rep.jobs()[0].outputs.len(), 1);
}

#[tokio::test]
async fn webhooks_are_delivered_and_signed() {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};

    // A local receiver that forwards (headers, body) of every POST.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(axum::http::HeaderMap, bytes::Bytes)>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |h: axum::http::HeaderMap, b: bytes::Bytes| {
            let tx = tx.clone();
            async move {
                tx.send((h, b)).unwrap();
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let rep = Emulator::builder(Kind::Replicate)
        .progression(Progression::polls(1, 1))
        .start()
        .await
        .unwrap();
    let c = client();
    let (_, secret) = json(
        authed(&rep, c.get(format!("{}/webhooks/default/secret", rep.base_url())))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(secret["key"], rep.webhook_secret());
    let (_, p) = json(
        authed(&rep, c.post(format!("{}/models/black-forest-labs/flux-dev/predictions", rep.base_url())))
            .json(&json!({"input": {"prompt": "x"}, "webhook": hook, "webhook_events_filter": ["start", "completed"]}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let mut events = Vec::new();
    for _ in 0..2 {
        let (h, body) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        let (id, ts, sig) = (
            h["webhook-id"].to_str().unwrap(),
            h["webhook-timestamp"].to_str().unwrap(),
            h["webhook-signature"].to_str().unwrap(),
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(rep.webhook_secret().trim_start_matches("whsec_"))
            .unwrap();
        let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(&body);
        let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sig, format!("v1,{expected}"));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], p["id"]);
        events.push(v["status"].as_str().unwrap().to_owned());
    }
    assert_eq!(events, ["processing", "succeeded"]);
    // The emulator records a delivery once the receiver has answered.
    for _ in 0..100 {
        if rep.webhooks().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let sent = rep.webhooks();
    assert_eq!(
        sent.iter()
            .map(|w| (w.event.as_str(), w.status))
            .collect::<Vec<_>>(),
        [("start", Some(200)), ("completed", Some(200))]
    );
    // Nobody polled: the prediction advanced by itself.
    assert_eq!(rep.count(Endpoint::Status), 0);
}
