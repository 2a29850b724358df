//! Throughput of 4-scope reserve + settle pairs, per backend, at 1, 4 and 16 concurrent clients.
//!
//! `cargo bench -p genroute-ledger --bench throughput -- [memory] [memory-bounded] [sqlite-full] [sqlite-normal] [postgres]
//! [postgres-async] (`GENROUTE_BENCH_PG_CONNECTIONS` overrides the worker connections per instance)
//! [noop] [floor] [floor-forget] (lower bounds, not ledgers: see `throughput/floor.rs`)
//! [--secs N] [--clients 1,4,16] [--pairs N]` (all backends when none is named). PostgreSQL reads `GENROUTE_TEST_POSTGRES_URL` (source
//! `scripts/lib/postgres.sh` and run `ensure_postgres` for a throwaway cluster) and is skipped without it.
//! Every pair is one fresh job as the router makes it (UUIDv7 job id, idempotency key `<job>:1`): a full
//! reservation on team + member + project + API key (each capped, so every cap is
//! checked), then a settle of a smaller amount; both are acknowledged only after they are durable to the
//! degree the backend line states.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use genroute_ledger::{
    EntryMeta, Ledger, MemoryLedger, PostgresLedger, PostgresOptions, ReserveRequest, Scope, SqliteLedger,
    SqliteOptions, SqliteSync, SystemClock, TeamConfig,
};

#[path = "throughput/floor.rs"]
mod floor;

fn cu(s: &str) -> Money {
    Money::cu(Decimal::from_str(s).unwrap())
}

/// The SQLite file of one bench cell (in cargo's per-target temporary directory).
fn sqlite_path(run: usize) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ledger-bench-{}-{run}.db", std::process::id()))
}

/// Deletes a cell's SQLite file and its WAL and shared-memory files (each run writes tens of MB).
fn remove_sqlite_files(run: usize) {
    let path = sqlite_path(run);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

async fn make(backend: &str, run: usize) -> Option<Arc<dyn Ledger>> {
    let clock = Arc::new(SystemClock);
    let sqlite = |sync| {
        let path = sqlite_path(run);
        remove_sqlite_files(run);
        let options = SqliteOptions {
            sync,
            ..SqliteOptions::default()
        };
        Arc::new(SqliteLedger::open_with(&path, options, clock.clone()).unwrap()) as Arc<dyn Ledger>
    };
    Some(match backend {
        "memory" => Arc::new(MemoryLedger::with_clock(clock.clone())),
        "floor" => Arc::new(floor::Floor::default()),
        "floor-forget" => Arc::new(floor::Floor::forgetting()),
        "noop" => Arc::new(floor::Noop),
        // Bounded memory for a long-lived process: the newest 100,000 entries, closed holds kept 1 s.
        "memory-bounded" => {
            Arc::new(MemoryLedger::with_clock(clock.clone()).with_retention(100_000, Duration::from_secs(1)))
        }
        "sqlite-full" => sqlite(SqliteSync::Full),
        "sqlite-normal" => sqlite(SqliteSync::Normal),
        "postgres" | "postgres-async" => {
            let Ok(url) = std::env::var("GENROUTE_TEST_POSTGRES_URL") else {
                eprintln!("postgres: GENROUTE_TEST_POSTGRES_URL unset, skipped");
                return None;
            };
            let options = PostgresOptions {
                schema: Some(format!("bench_{}_{run}", std::process::id())),
                synchronous_commit: backend == "postgres",
                connections: std::env::var("GENROUTE_BENCH_PG_CONNECTIONS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(PostgresOptions::default().connections),
                ..PostgresOptions::default()
            };
            Arc::new(
                PostgresLedger::connect_with(&url, options, clock.clone())
                    .await
                    .unwrap(),
            )
        }
        other => panic!("unknown backend {other}"),
    })
}

/// A fresh job's ids as the router makes them: a UUIDv7 job id (millisecond timestamp first, so keys arrive
/// roughly in order, as in real traffic) and attempt 1's idempotency key `<job>:1`. The 74 low bits come
/// from a cheap mix of client and counter: the shape of the keys matters here, not their secrecy.
fn router_like_ids(client: usize, i: u64) -> (JobId, IdempotencyKey) {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let mut x = ((client as u64) << 48) ^ i ^ 0x9E37_79B9_7F4A_7C15;
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    let mut random = [0u8; 10];
    random[..8].copy_from_slice(&x.to_le_bytes());
    random[8..].copy_from_slice(&(client as u16).to_le_bytes());
    let id = uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid();
    let job = JobId::new(id.to_string()).unwrap();
    let key = IdempotencyKey::new(format!("{id}:1")).unwrap();
    (job, key)
}

/// Runs `clients` clients for `secs` seconds, or for exactly `pairs` pairs each when given (a fixed amount
/// of work, for instruction counts under `valgrind --tool=callgrind` or `perf stat`).
async fn measure(ledger: Arc<dyn Ledger>, clients: usize, secs: f64, pairs: Option<u64>) -> f64 {
    let team = TeamId::new("bench").unwrap();
    let cfg = TeamConfig::new(team.clone(), cu("1000000000000"), Utc::now());
    ledger.create_team(&cfg).await.unwrap();
    let caller = Caller::team(team.clone())
        .member(MemberId::new("m").unwrap())
        .project(ProjectId::new("p").unwrap())
        .api_key(ApiKeyId::new("k").unwrap());
    for s in Scope::of_caller(&caller).iter().skip(1) {
        ledger.set_cap(s, &cu("100000000000")).await.unwrap();
    }
    let count = Arc::new(AtomicU64::new(0));
    let meta = EntryMeta {
        job_id: JobId::new("job").unwrap(),
        attempt: 1,
        provider: ProviderId::new("fal").unwrap(),
        model: ModelId::new("flux").unwrap(),
    };
    let mut tasks = Vec::new();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    for c in 0..clients {
        let (ledger, count, caller, meta) = (ledger.clone(), count.clone(), caller.clone(), meta.clone());
        tasks.push(tokio::spawn(async move {
            let (amount, charge) = (cu("5"), cu("4.5"));
            let mut i = 0u64;
            // The memory backend never returns `Pending`: check the time here and yield now and then, or
            // the clients would starve the runtime's timer.
            while pairs.map_or_else(|| Instant::now() < deadline, |n| i < n) {
                let (job, key) = router_like_ids(c, i);
                let req = ReserveRequest {
                    caller: caller.clone(),
                    amount: amount.clone(),
                    idempotency_key: key,
                    ttl: Duration::from_secs(300),
                    meta: EntryMeta {
                        job_id: job,
                        ..meta.clone()
                    },
                };
                let hold = ledger.reserve(&req).await.unwrap();
                ledger.settle(&hold.id, &charge).await.unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
                if i.is_multiple_of(64) {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut secs: f64 = 2.0;
    let mut pairs: Option<u64> = None;
    let mut clients: Vec<usize> = vec![1, 4, 16];
    let mut backends = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = it.next().and_then(|s| s.parse().ok()).unwrap_or(secs),
            "--clients" => {
                clients = it
                    .next()
                    .map(|s| s.split(',').filter_map(|c| c.parse().ok()).collect())
                    .unwrap_or(clients);
            }
            "--pairs" => pairs = it.next().and_then(|s| s.parse().ok()),
            "--bench" => {}
            other if !other.starts_with('-') => backends.push(other.to_owned()),
            _ => {}
        }
    }
    if backends.is_empty() {
        backends = ["memory", "sqlite-full", "sqlite-normal", "postgres"]
            .map(String::from)
            .to_vec();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!("4-scope reserve+settle pairs per second ({secs} s per cell)");
    let header: String = clients
        .iter()
        .map(|c| format!(" {:>11}", format!("{c} clients")))
        .collect();
    println!("{:<14}{header}", "backend");
    let mut run = 0;
    for b in &backends {
        let mut cells = Vec::new();
        for &clients in &clients {
            run += 1;
            let Some(ledger) = rt.block_on(make(b, run)) else {
                break;
            };
            // Memory (and the floor) keep every hold and entry: a short run keeps the footprint to a few GB.
            let secs = if matches!(b.as_str(), "memory" | "floor") {
                secs.min(1.0)
            } else {
                secs
            };
            cells.push(rt.block_on(measure(ledger, clients, secs, pairs)));
            remove_sqlite_files(run);
        }
        if cells.len() == clients.len() {
            let row: String = cells.iter().map(|v| format!(" {v:>11.0}")).collect();
            println!("{b:<14}{row}");
        }
    }
}
