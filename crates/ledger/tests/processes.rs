//! Cross-process proofs for the shared backends: several OS processes on one SQLite file or one
//! PostgreSQL database never overspend a cap, and a process killed between reserve and settle leaks nothing.
//!
//! Child processes are this test binary itself, started with `GENROUTE_LEDGER_CHILD` set and filtered to
//! `child_process_entry`, which plays the role the variable names.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use genroute_core::{Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProviderId, TeamId};
use genroute_ledger::{
    EntryKind, EntryMeta, HistoryFilter, Ledger, LedgerError, PostgresLedger, PostgresOptions,
    ReserveRequest, Scope, SqliteLedger, TeamConfig,
};

const CHILD: &str = "GENROUTE_LEDGER_CHILD";
const BACKEND: &str = "GENROUTE_LEDGER_CHILD_BACKEND";

fn cu(s: &str) -> Money {
    Money::cu(Decimal::from_str(s).unwrap())
}

fn caller() -> Caller {
    Caller::team(TeamId::new("t").unwrap()).member(MemberId::new("alice").unwrap())
}

fn alice() -> Scope {
    Scope::Member(TeamId::new("t").unwrap(), MemberId::new("alice").unwrap())
}

fn req(amount: &str, key: &str, ttl: Duration) -> ReserveRequest {
    ReserveRequest {
        caller: caller(),
        amount: cu(amount),
        idempotency_key: IdempotencyKey::new(key).unwrap(),
        ttl,
        meta: EntryMeta {
            job_id: JobId::new(format!("job-{key}")).unwrap(),
            attempt: 1,
            provider: ProviderId::new("fal").unwrap(),
            model: ModelId::new("flux").unwrap(),
        },
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn postgres_url() -> Option<String> {
    match std::env::var("GENROUTE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("GENROUTE_TEST_POSTGRES_URL is unset in CI: the PostgreSQL backend must be tested")
        }
        _ => {
            // Straight to the file descriptor: libtest captures `eprintln!`, and the notice must show.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "notice: GENROUTE_TEST_POSTGRES_URL unset; skipping a PostgreSQL test"
            );
            None
        }
    }
}

/// `sqlite:<path>` or `postgres:<schema>`: a fresh store for one test.
fn fresh_backend(kind: &str) -> Option<String> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    match kind {
        "sqlite" => {
            let p =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ledger-proc-{pid}-{n}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
            Some(format!("sqlite:{}", p.display()))
        }
        _ => {
            postgres_url()?;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            Some(format!("postgres:t_proc_{pid}_{n}_{nanos}"))
        }
    }
}

async fn open(backend: &str) -> Arc<dyn Ledger> {
    if let Some(path) = backend.strip_prefix("sqlite:") {
        Arc::new(SqliteLedger::open(path).unwrap())
    } else if let Some(schema) = backend.strip_prefix("postgres:") {
        let url = std::env::var("GENROUTE_TEST_POSTGRES_URL").unwrap();
        let options = PostgresOptions {
            schema: Some(schema.to_owned()),
            ..PostgresOptions::default()
        };
        Arc::new(
            PostgresLedger::connect_with(&url, options, Arc::new(genroute_ledger::SystemClock))
                .await
                .unwrap(),
        )
    } else {
        panic!("unknown backend {backend}")
    }
}

fn spawn_child(role: &str, backend: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, role)
        .env(BACKEND, backend)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// The child side: does nothing unless started by one of the tests below.
#[test]
fn child_process_entry() {
    let Ok(role) = std::env::var(CHILD) else { return };
    let backend = std::env::var(BACKEND).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ledger = open(&backend).await;
        let pid = std::process::id();
        match role.as_str() {
            "reserve" => {
                let mut tasks = Vec::new();
                for i in 0..16 {
                    let l = ledger.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut admitted = 0u32;
                        for j in 0..4 {
                            let r = req("7", &format!("{pid}-{i}-{j}"), Duration::from_secs(600));
                            match l.reserve(&r).await {
                                Ok(_) => admitted += 1,
                                Err(LedgerError::Denied(_)) => {}
                                Err(e) => panic!("{e}"),
                            }
                        }
                        admitted
                    }));
                }
                let mut admitted = 0;
                for t in tasks {
                    admitted += t.await.unwrap();
                }
                println!("ADMITTED {admitted}");
            }
            "crash" => {
                // A long TTL for the hold that gets settled (a slow machine must not expire it first), a
                // short one for the orphan.
                let a = ledger
                    .reserve(&req("10", "settled", Duration::from_secs(600)))
                    .await
                    .unwrap();
                ledger.settle(&a.id, &cu("9")).await.unwrap();
                let b = ledger
                    .reserve(&req("25", "orphan", Duration::from_secs(2)))
                    .await
                    .unwrap();
                println!("READY {}", b.id.key);
                tokio::time::sleep(Duration::from_secs(60)).await;
                println!("NOT KILLED");
            }
            other => panic!("unknown role {other}"),
        }
    });
}

async fn create_team(ledger: &dyn Ledger, cap: &str) {
    let cfg = TeamConfig::new(TeamId::new("t").unwrap(), cu("100000"), Utc::now());
    ledger.create_team(&cfg).await.unwrap();
    ledger.set_cap(&alice(), &cu(cap)).await.unwrap();
}

/// Four processes × 16 tasks × 4 attempts of 7 CU against a 1,000 CU cap: exactly ⌊1000 / 7⌋ = 142 admitted.
async fn four_processes_never_overspend(kind: &str) {
    let Some(backend) = fresh_backend(kind) else {
        return;
    };
    let ledger = open(&backend).await;
    create_team(ledger.as_ref(), "1000").await;
    let children: Vec<_> = (0..4).map(|_| spawn_child("reserve", &backend)).collect();
    let mut per_child = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "child failed: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout);
        // libtest prints "test child_process_entry ... " before the child's own output on the same line.
        let at = text
            .find("ADMITTED ")
            .unwrap_or_else(|| panic!("no ADMITTED line in {text:?}"));
        let n = text[at + "ADMITTED ".len()..].split_whitespace().next().unwrap();
        per_child.push(n.parse::<u32>().unwrap());
    }
    eprintln!("admitted per child: {per_child:?}");
    let admitted: u32 = per_child.iter().sum();
    assert_eq!(
        admitted,
        1000 / 7,
        "admitted = floor(cap / amount) across processes: {per_child:?}"
    );
    let u = ledger.usage(&alice()).await.unwrap();
    assert_eq!(u.held, cu(&(admitted * 7).to_string()));
    assert!(u.held.amount() <= Decimal::from(1000));
    let reserves = ledger
        .history(&HistoryFilter::scope(alice()))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EntryKind::Reserve)
        .count();
    assert_eq!(reserves, admitted as usize);
}

/// A child killed with SIGKILL between reserve and settle: after the TTL its hold is gone, the spend it
/// settled stays, and the history tells the story in order.
async fn killed_process_leaks_nothing(kind: &str) {
    let Some(backend) = fresh_backend(kind) else {
        return;
    };
    let ledger = open(&backend).await;
    create_team(ledger.as_ref(), "1000").await;
    let mut child = spawn_child("crash", &backend);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let ready = loop {
        let line = lines.next().expect("child ended before READY").unwrap();
        if let Some(at) = line.find("READY ") {
            break line[at + "READY ".len()..].trim().to_owned();
        }
    };
    child.kill().unwrap(); // SIGKILL on Unix
    let killed_at = Instant::now();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let u = ledger.usage(&alice()).await.unwrap();
    assert_eq!(u.used, cu("9"));
    if killed_at.elapsed() < Duration::from_millis(1500) {
        assert_eq!(u.held, cu("25"), "the orphan hold is still held before its TTL");
    }
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let u = ledger.usage(&alice()).await.unwrap();
    assert_eq!((u.used.clone(), u.held.clone()), (cu("9"), cu("0")));
    let team = ledger
        .usage(&Scope::Team(TeamId::new("t").unwrap()))
        .await
        .unwrap();
    assert_eq!((team.used, team.held), (cu("9"), cu("0")));
    let b = ledger.balance(&TeamId::new("t").unwrap()).await.unwrap();
    assert_eq!(b.available, cu("99991"));
    let hist = ledger.history(&HistoryFilter::scope(alice())).await.unwrap();
    let kinds: Vec<_> = hist.iter().map(|e| (e.kind, e.amount.clone())).collect();
    assert_eq!(
        kinds,
        vec![
            (EntryKind::Reserve, cu("10")),
            (EntryKind::Settle, cu("9")),
            (EntryKind::Reserve, cu("25")),
            (EntryKind::Expire, cu("25")),
        ]
    );
    assert_eq!(hist[3].hold.as_ref().unwrap().key.as_ref(), ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_four_processes_never_overspend() {
    four_processes_never_overspend("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_processes_never_overspend() {
    four_processes_never_overspend("postgres").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_killed_process_leaks_nothing() {
    killed_process_leaks_nothing("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_process_leaks_nothing() {
    killed_process_leaks_nothing("postgres").await;
}
