//! The `genroute` binary run as a real process: demo, config check, quote, generate, budget, report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use genroute_emulators::{Emulator, Kind, Progression};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_genroute");

fn run(dir: &Path, args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("GENROUTE_CONFIG")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn config(fal_url: &str) -> String {
    format!(
        r#"
[providers.fal]
api_key = {{ env = "FAL_KEY" }}
base_url = "{fal_url}"
poll = {{ initial_interval = "10ms", max_interval = "20ms" }}

[routes.posters]
candidates = [
  {{ provider = "fal", model = "fal-ai/flux/dev" }},
  {{ provider = "fal", model = "fal-ai/flux/schnell", tier = "budget" }},
]
cost_ceiling = "0.02 USD"

[aliases.image]
default = "posters"

[budgets.teams.acme]
allowance = "1000 CU"
subscribed = 2026-11-01
members = {{ alice = "100 CU", bob = "1 CU" }}

[defaults]
team = "acme"
member = "alice"
"#
    )
}

fn setup(fal_url: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("genroute.toml");
    std::fs::write(&path, config(fal_url)).unwrap();
    (dir, path)
}

#[test]
fn demo_runs_offline_and_the_books_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["demo", "--json"], &[]);
    let v = json(&out);
    assert_eq!(v["totals_agree"], true);
    assert_eq!(v["ledger"]["total_cu"], v["cost_log"]["total_cu"]);
    assert!(v["ledger"]["attempts"].as_u64().unwrap() >= 6);
    assert!(v["failovers"].as_u64().unwrap() >= 2, "{v:#}");
    assert!(v["retries"].as_u64().unwrap() >= 1);
    assert_eq!(v["deadlines"], 1);
    assert!(
        v["upstream_cancels"].as_u64().unwrap() >= 1,
        "the stuck job is cancelled upstream"
    );
    let breakers: Vec<&str> = v["breakers_open"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap())
        .collect();
    assert!(
        breakers.contains(&"elevenlabs/eleven_multilingual_v2"),
        "{breakers:?}"
    );
    // The capped member's job is denied before any provider call.
    assert_eq!(v["budget_denials"], 1);
    let jobs = v["jobs"].as_array().unwrap();
    let denied: Vec<&Value> = jobs
        .iter()
        .filter(|j| j["error_kind"] == "budget_exceeded")
        .collect();
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["provider_requests"], 0);
    assert_eq!(denied[0]["spend_cu"], "0");
    assert!(v["ledger"]["by_member"].get("bob").is_none(), "bob spent nothing");
    // A failover from fal's credit lock landed on Replicate.
    assert!(jobs.iter().any(|j| {
        let a = j["attempts"].as_array().unwrap();
        a.len() == 2
            && a[0]["moved_on"] == "insufficient_credits"
            && a[1]["target"] == "replicate/black-forest-labs/flux-dev"
    }));
    // Caps held: no scope used more than its cap; alice is amber (≥ 80 %).
    for u in v["budget"].as_array().unwrap() {
        if let Some(cap) = u["cap"]["amount"].as_str() {
            let used: f64 = u["used"]["amount"].as_str().unwrap().parse().unwrap();
            assert!(used <= cap.parse::<f64>().unwrap(), "{u}");
        }
    }
    let alice = v["budget"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["scope"]["member"][1] == "alice")
        .unwrap();
    assert_eq!(alice["status"], "amber", "{alice}");
    // Only the demo's temp dir was used.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

#[test]
fn config_check_names_file_line_and_key() {
    let (dir, path) = setup("http://127.0.0.1:9");
    let out = run(dir.path(), &["config", "check"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 providers, 1 routes, 1 aliases, 1 teams"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("environment variable FAL_KEY is not set"));

    let text = config("http://127.0.0.1:9").replace(
        "provider = \"fal\", model = \"fal-ai/flux/schnell\"",
        "provider = \"fall\", model = \"x\"",
    );
    std::fs::write(&path, text).unwrap();
    let out = run(dir.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out)
            .contains("genroute.toml:10: `routes.posters.candidates[1].provider`: unknown provider \"fall\""),
        "{}",
        stderr(&out)
    );
    let out = run(dir.path(), &["--json", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["problems"][0]["line"], 10);

    // Adapter keys are checked too (each adapter's own strict serde config), and unknown types.
    let text = format!(
        "{}\n[providers.rw]\ntype = \"runway\"\napi_key = {{ env = \"RW\" }}\nretries = 3\n",
        config("http://127.0.0.1:9")
    );
    std::fs::write(&path, text).unwrap();
    let out = run(dir.path(), &["config", "check"], &[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stderr(&out).contains("genroute.toml:29: `providers.rw.retries`: unknown field `retries`"),
        "{}",
        stderr(&out)
    );

    let out = run(dir.path(), &["-c", "missing.toml", "config", "check"], &[]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn quote_explains_every_candidate() {
    let (dir, _) = setup("http://127.0.0.1:9");
    let out = run(dir.path(), &["quote", "image", "a fox", "--json"], &[]);
    let v = json(&out);
    assert_eq!(v["route"], "posters");
    let c = v["candidates"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    // flux/dev at 1 MP costs 0.025 USD, above the 0.02 USD ceiling: out, with its quote shown.
    let dev = c.iter().find(|x| x["model"] == "fal-ai/flux/dev").unwrap();
    assert_eq!(dev["included"], false);
    assert_eq!(dev["cost"], "0.025 USD");
    assert!(
        dev["reason"].as_str().unwrap().contains("above the ceiling"),
        "{dev}"
    );
    let schnell = c.iter().find(|x| x["model"] == "fal-ai/flux/schnell").unwrap();
    assert_eq!(schnell["rank"], 1);
    assert_eq!(schnell["cost"], "0.003 USD");
    assert!(
        schnell["cost_cu"].as_str().unwrap().starts_with("0.468"),
        "{schnell}"
    );

    let out = run(dir.path(), &["quote", "image", "a fox", "--route", "nope"], &[]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
}

#[test]
fn budget_commands_change_and_show_the_ledger() {
    let (dir, _) = setup("http://127.0.0.1:9");
    let v = json(&run(dir.path(), &["budget", "status", "--json"], &[]));
    assert_eq!(v["balance"]["available"]["amount"], "1000");
    let out = run(dir.path(), &["budget", "top-up", "250", "--expires", "30d"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        dir.path(),
        &["budget", "cap", "set", "40", "--member", "carol"],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&run(dir.path(), &["budget", "status", "--json"], &[]));
    assert_eq!(v["balance"]["available"]["amount"], "1250");
    let bob = v["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["scope"]["member"][1] == "bob")
        .unwrap();
    assert_eq!(bob["cap"]["amount"], "1");
    let out = run(
        dir.path(),
        &["budget", "cap", "remove", "--member", "bob", "--json"],
        &[],
    );
    let v = json(&out);
    assert_eq!(v["cap"], Value::Null);
    let out = run(dir.path(), &["budget", "history", "--json"], &[]);
    let v = json(&out);
    assert!(v.as_array().unwrap().iter().any(|e| e["kind"] == "top_up"));
    // Usage bars only colour a terminal; the text still says the status.
    let out = run(dir.path(), &["budget", "status"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("member alice") && text.contains(" ok"), "{text}");
    assert!(!text.contains('\u{1b}'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generate_saves_outputs_and_reports_agree() {
    let fal = Emulator::builder(Kind::Fal)
        .progression(Progression::polls(1, 1))
        .start()
        .await
        .unwrap();
    let (dir, _) = setup(&fal.base_url());
    let key = fal.api_key();
    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        run(
            &d,
            &["generate", "image", "a fox", "--out", "out", "--json"],
            &[("FAL_KEY", key)],
        )
    })
    .await
    .unwrap();
    let v = json(&out);
    assert_eq!(v["target"], "fal/fal-ai/flux/schnell");
    let saved = v["outputs"].as_array().unwrap();
    assert_eq!(saved.len(), 1);
    let bytes = std::fs::read(dir.path().join(saved[0].as_str().unwrap())).unwrap();
    // The emulator serves a JPEG (fal's default output format); it is downloaded and named for its type.
    assert!(saved[0].as_str().unwrap().ends_with(".jpg"), "{saved:?}");
    assert_eq!(&bytes[..2], b"\xff\xd8");

    // Bob's 1 CU cap holds two 0.47 CU jobs, not three: the third exits 4.
    let key = fal.api_key();
    let d = dir.path().to_path_buf();
    let codes = tokio::task::spawn_blocking(move || {
        let a = run(
            &d,
            &["generate", "image", "a", "--member", "bob", "--out", "out"],
            &[("FAL_KEY", key.clone())],
        );
        let b = run(
            &d,
            &["generate", "image", "b", "--member", "bob", "--out", "out"],
            &[("FAL_KEY", key.clone())],
        );
        let c = run(
            &d,
            &["generate", "image", "c", "--member", "bob", "--out", "out"],
            &[("FAL_KEY", key)],
        );
        let text = String::from_utf8_lossy(&a.stdout).into_owned();
        assert!(
            text.contains("saved out/") && text.contains("done on fal/fal-ai/flux/schnell"),
            "{text}"
        );
        (a.status.code(), b.status.code(), c.status.code(), stderr(&c))
    })
    .await
    .unwrap();
    assert_eq!(
        (codes.0, codes.1, codes.2),
        (Some(0), Some(0), Some(4)),
        "{}",
        codes.3
    );
    assert!(codes.3.contains("budget exceeded: member bob"), "{}", codes.3);

    let d = dir.path().to_path_buf();
    let out = tokio::task::spawn_blocking(move || run(&d, &["report", "--source", "both", "--json"], &[]))
        .await
        .unwrap();
    let v = json(&out);
    assert_eq!(v[0]["total_cu"], v[1]["total_cu"]);
    assert_eq!(v[0]["attempts"], 3);
    assert!(
        v[0]["by_member"]["bob"].as_str().unwrap().starts_with("0.93"),
        "{v:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_cancels_the_job_upstream_and_exits_130() {
    let fal = Emulator::start(Kind::Fal).await.unwrap();
    fal.faults().push(genroute_emulators::Fault::stuck());
    let (dir, _) = setup(&fal.base_url());
    let key = fal.api_key();
    let d = dir.path().to_path_buf();
    let child = Command::new(BIN)
        .current_dir(&d)
        .args(["generate", "image", "a fox", "--out", "out"])
        .env("FAL_KEY", key)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the job is submitted (and therefore the Ctrl-C handler installed).
    for _ in 0..500 {
        if fal.count(genroute_emulators::Endpoint::Status) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = tokio::task::spawn_blocking(move || {
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code.0, Some(130), "{}", code.1);
    assert!(code.1.contains("cancelled"), "{}", code.1);
    for _ in 0..50 {
        if !fal.cancels().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(fal.cancels().len(), 1, "the stuck job was cancelled upstream");
}
