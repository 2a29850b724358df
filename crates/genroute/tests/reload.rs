//! Reload: a good file swaps routes and prices without dropping in-flight jobs; a bad file is refused and
//! the running configuration stays.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use genroute::{Client, Decimal, GenerateRequest, ImageJobSpec, Money};
use genroute_emulators::{Emulator, Endpoint, Fault, Kind};

fn config(base: &str, first: &str, second: &str) -> String {
    // The emulator's default key, written literally (test only; `config check` warns about literals).
    let key = Kind::Fal.default_api_key();
    format!(
        r#"
[providers.fal]
api_key = "{key}"
base_url = "{base}"
poll = {{ initial_interval = "10ms", max_interval = "20ms" }}

[routes.posters]
candidates = [
  {{ provider = "fal", model = "{first}" }},
  {{ provider = "fal", model = "{second}" }},
]
max_escalation = "100"

[ledger]
backend = "memory"

[cost_log]
path = "cost.jsonl"

[budgets.teams.acme]
allowance = "1000 CU"
"#
    )
}

fn request() -> GenerateRequest {
    let job = ImageJobSpec::new("a fox").size(1024, 1024).build().unwrap();
    GenerateRequest::new(job, "posters", genroute::Caller::team("acme".parse().unwrap()))
}

async fn client(path: &Path) -> Client {
    Client::builder()
        .config_file(path)
        .unwrap()
        .telemetry(false)
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_keeps_in_flight_jobs_and_refuses_bad_files() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genroute.toml");
    std::fs::write(
        &path,
        config(&fal.base_url(), "fal-ai/flux/dev", "fal-ai/flux/schnell"),
    )
    .unwrap();
    let client = client(&path).await;
    assert_eq!(
        client.quote(&request()).unwrap().first().unwrap().model,
        "fal-ai/flux/dev"
    );

    // A job in flight (slowed down upstream) while the file changes.
    fal.faults()
        .push(Fault::slow(Duration::from_millis(300)).on(Endpoint::Create));
    let c2 = client.clone();
    let in_flight = tokio::spawn(async move { c2.generate(request()).await });
    tokio::time::sleep(Duration::from_millis(50)).await;

    std::fs::write(
        &path,
        config(&fal.base_url(), "fal-ai/flux/schnell", "fal-ai/flux/dev"),
    )
    .unwrap();
    client.reload().unwrap();
    let q = client.quote(&request()).unwrap();
    assert!(q.first().is_some(), "{q:#?}");
    assert_eq!(
        client.quote(&request()).unwrap().first().unwrap().model,
        "fal-ai/flux/schnell"
    );
    let outcome = in_flight.await.unwrap().unwrap();
    assert_eq!(
        outcome.target.model.as_str(),
        "fal-ai/flux/dev",
        "the job finished on the plan it started with"
    );
    assert_eq!(client.reload_status().reloads, 1);
    assert!(
        client.reload_status().needs_restart.is_empty(),
        "{:?}",
        client.reload_status()
    );

    // A bad file: refused, reason kept, running config unchanged.
    let bad = config(&fal.base_url(), "fal-ai/flux/schnell", "fal-ai/flux/dev")
        .replace("max_escalation", "max_escalaton");
    std::fs::write(&path, bad).unwrap();
    assert!(client.reload().is_err());
    let status = client.reload_status();
    assert_eq!(status.failures, 1);
    let why = status.last_error.unwrap();
    assert!(
        why.contains("genroute.toml:12") && why.contains("max_escalaton"),
        "{why}"
    );
    assert_eq!(
        client.quote(&request()).unwrap().first().unwrap().model,
        "fal-ai/flux/schnell"
    );

    // The watcher picks up the next change by itself, including a price override.
    let watcher = client.watch(Duration::from_millis(20)).unwrap();
    let mut text = config(&fal.base_url(), "fal-ai/flux/dev", "fal-ai/flux/schnell");
    text.push_str(
        "\n[[pricing.overrides]]\nprovider = \"fal\"\n[pricing.overrides.models.\"fal-ai/flux/dev\"]\n\
         kind = \"per_output\"\nprice = \"0.5\"\nverified = 2026-12-01\n",
    );
    // Make sure the modification time moves even on coarse-grained file systems.
    tokio::time::sleep(Duration::from_millis(30)).await;
    std::fs::write(&path, text).unwrap();
    let mut seen = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if client.reload_status().reloads == 2 {
            seen = true;
            break;
        }
    }
    drop(watcher);
    assert!(seen, "{:?}", client.reload_status());
    let q = client.quote(&request()).unwrap();
    assert_eq!(q.first().unwrap().cost.as_deref(), Some("0.5 USD"));
    assert_eq!(client.reload_status().last_error, None);

    // Settled spend is in the ledger and the cost log alike.
    let team = "acme".parse().unwrap();
    let ledger = client.report_from_ledger(&team).await.unwrap();
    let log = client.report_from_cost_log(Some(&team)).unwrap();
    assert_eq!(ledger.total_cu, log.total_cu);
    assert!(ledger.total_cu > Decimal::ZERO);
    let _ = Money::cu(ledger.total_cu);
}
