//! End-to-end across the facade, router, ledger, telemetry, adapters and emulators. Offline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::time::Duration;

use genroute::{
    Caller, Client, Config, EntryKind, EnvMode, GenerateRequest, HistoryFilter, ImageJobSpec, RouterError,
    Scope, TeamId,
};
use genroute_emulators::{Emulator, EmulatorHandle, Endpoint, Fault, Kind};

fn config(fal: &EmulatorHandle, rep: &EmulatorHandle, cost_log: &str) -> String {
    format!(
        r#"
[providers.fal]
api_key = {{ env = "FAL_KEY" }}
base_url = "{}"
poll = {{ initial_interval = "10ms", max_interval = "20ms" }}

[providers.replicate]
api_key = {{ env = "REPLICATE_KEY" }}
base_url = "{}"
poll = {{ initial_interval = "10ms", max_interval = "20ms" }}

[routes.posters]
candidates = [
  {{ provider = "fal", model = "fal-ai/flux/dev" }},
  {{ provider = "replicate", model = "black-forest-labs/flux-dev" }},
]
retry = {{ max_retries = 1, base_delay = "10ms" }}

[ledger]
path = "shared/ledger.db"

[cost_log]
path = "{cost_log}"
fsync = true

[budgets.teams.acme]
allowance = "1000 CU"
members = {{ alice = "20 CU" }}
"#,
        fal.base_url(),
        rep.base_url()
    )
}

async fn client(dir: &Path, fal: &EmulatorHandle, rep: &EmulatorHandle, cost_log: &str) -> Client {
    let (fk, rk) = (fal.api_key(), rep.api_key());
    let env = move |n: &str| match n {
        "FAL_KEY" => Some(fk.clone()),
        "REPLICATE_KEY" => Some(rk.clone()),
        _ => None,
    };
    let cfg = Config::parse(
        &config(fal, rep, cost_log),
        "e2e.toml",
        dir,
        EnvMode::Require,
        &env,
    )
    .unwrap();
    Client::builder()
        .config(cfg)
        .telemetry(false)
        .build()
        .await
        .unwrap()
}

fn request(member: &str) -> GenerateRequest {
    let job = ImageJobSpec::new("a poster").size(1024, 1024).build().unwrap();
    let caller = Caller::team(TeamId::new("acme").unwrap()).member(member.parse().unwrap());
    GenerateRequest::new(job, "posters", caller)
}

/// Two clients (as two processes would) share one SQLite ledger: a member cap holds across both, every
/// denial happens before a provider call, and the ledger equals the sum of both cost logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_sqlite_ledger_enforces_caps_across_clients() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let rep = Emulator::start(Kind::Replicate).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let a = client(dir.path(), &fal, &rep, "a.jsonl").await;
    let b = client(dir.path(), &fal, &rep, "b.jsonl").await;

    let (mut ok, mut denied) = (0, 0);
    for i in 0..8 {
        let c = if i % 2 == 0 { &a } else { &b };
        let before = fal.total_requests() + rep.total_requests();
        match c.generate(request("alice")).await {
            Ok(_) => ok += 1,
            Err(RouterError::BudgetExceeded { denial, .. }) => {
                denied += 1;
                assert!(matches!(denial.scope, Scope::Member(..)), "{denial:?}");
                assert_eq!(
                    fal.total_requests() + rep.total_requests(),
                    before,
                    "denied before any call"
                );
            }
            Err(e) => panic!("{e}"),
        }
    }
    // 20 CU / 3.9063 CU per poster = 5 posters.
    assert_eq!((ok, denied), (5, 3));
    let team = TeamId::new("acme").unwrap();
    let usage = a
        .ledger()
        .usage(&Scope::Member(team.clone(), "alice".parse().unwrap()))
        .await
        .unwrap();
    assert!(usage.used.amount() <= usage.cap.unwrap().amount());
    let ledger = a.report_from_ledger(&team).await.unwrap();
    let la = a.report_from_cost_log(Some(&team)).unwrap();
    let lb = b.report_from_cost_log(Some(&team)).unwrap();
    assert_eq!(ledger.total_cu, la.total_cu + lb.total_cu);
    assert_eq!(ledger.attempts, 5);
}

/// Retries and fallbacks are never invisible: one cost log line and one ledger reservation per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_has_its_row_in_the_ledger_and_the_cost_log() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let rep = Emulator::start(Kind::Replicate).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let c = client(dir.path(), &fal, &rep, "cost.jsonl").await;
    // fal: a 503, then (on the retry) a rate limit longer than the route waits: fail over to Replicate.
    fal.faults().push(Fault::server_error(503).on(Endpoint::Create));
    fal.faults()
        .push(Fault::rate_limited(Duration::from_secs(120)).on(Endpoint::Create));
    let outcome = c.generate(request("bob")).await.unwrap();
    assert_eq!(outcome.attempts.len(), 3, "{:#?}", outcome.attempts);
    assert_eq!(outcome.target.provider.as_str(), "replicate");

    c.flush().unwrap();
    let log = genroute::telemetry::read_cost_log(c.cost_log_path().unwrap()).unwrap();
    let lines: Vec<_> = log
        .records
        .iter()
        .filter(|r| r.job_id == outcome.job_id)
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines.iter().map(|r| r.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    let team = TeamId::new("acme").unwrap();
    let history = c
        .history(&HistoryFilter::scope(Scope::Team(team)).job(outcome.job_id.clone()))
        .await
        .unwrap();
    let count = |k: EntryKind| history.iter().filter(|e| e.kind == k).count();
    assert_eq!(count(EntryKind::Reserve), 3);
    assert_eq!(
        count(EntryKind::Release),
        2,
        "unbilled failures release their holds"
    );
    assert_eq!(count(EntryKind::Settle), 1);
    let settled: genroute::Decimal = history
        .iter()
        .filter(|e| e.kind == EntryKind::Settle)
        .map(|e| e.amount.amount())
        .sum();
    assert_eq!(settled, outcome.total_spend_cu.amount());
}

/// The PostgreSQL ledger from `[ledger] url = { env = ... }`: two clients (two hosts) share one team and
/// its member cap. Skipped with a notice when `GENROUTE_TEST_POSTGRES_URL` is unset (`scripts/test` sets it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_ledger_from_the_config_file_is_shared() {
    let Ok(url) = std::env::var("GENROUTE_TEST_POSTGRES_URL") else {
        eprintln!("notice: GENROUTE_TEST_POSTGRES_URL unset; skipping the PostgreSQL facade test");
        return;
    };
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    let rep = Emulator::start(Kind::Replicate).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    // A team of its own per run: the database outlives the test.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let team = format!("pg-e2e-{nanos}");
    let text = config(&fal, &rep, "cost.jsonl")
        .replace(
            "[ledger]\npath = \"shared/ledger.db\"",
            "[ledger]\nurl = { env = \"PG_URL\" }",
        )
        .replace("[budgets.teams.acme]", &format!("[budgets.teams.{team}]"));
    let (fk, rk) = (fal.api_key(), rep.api_key());
    let env = move |n: &str| match n {
        "FAL_KEY" => Some(fk.clone()),
        "REPLICATE_KEY" => Some(rk.clone()),
        "PG_URL" => Some(url.clone()),
        _ => None,
    };
    let cfg = Config::parse(&text, "pg.toml", dir.path(), EnvMode::Require, &env).unwrap();
    assert!(matches!(cfg.ledger, genroute::LedgerSpec::Postgres { .. }));
    let a = Client::builder()
        .config(cfg.clone())
        .telemetry(false)
        .build()
        .await
        .unwrap();
    let b = Client::builder()
        .config(cfg)
        .telemetry(false)
        .build()
        .await
        .unwrap();
    let team = TeamId::new(&team).unwrap();
    let req = || {
        let job = ImageJobSpec::new("a poster").size(1024, 1024).build().unwrap();
        GenerateRequest::new(
            job,
            "posters",
            Caller::team(team.clone()).member("alice".parse().unwrap()),
        )
    };
    let mut ok = 0;
    for i in 0..7 {
        let c = if i % 2 == 0 { &a } else { &b };
        match c.generate(req()).await {
            Ok(_) => ok += 1,
            Err(RouterError::BudgetExceeded { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(ok, 5, "20 CU / 3.9063 CU per poster, across both clients");
    let report = b.report_from_ledger(&team).await.unwrap();
    assert_eq!(report.attempts, 5);
}
