//! One behaviour suite, instantiated for every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

mod common;

use std::sync::Arc;

use common::Made;
use std::sync::atomic::{AtomicU32, Ordering};

use genroute_ledger::{
    Ledger, ManualClock, MemoryLedger, PostgresLedger, PostgresOptions, RefillHook, SqliteLedger,
    SqliteOptions,
};

macro_rules! behaviour_suite {
    ($backend:ident, $make:path) => {
        mod $backend {
            use super::common;

            macro_rules! scenario {
                ($name:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $name() {
                        common::$name(&$make).await;
                    }
                };
            }

            scenario!(reserve_settle_touches_every_scope);
            scenario!(denial_names_scope_and_holds_nothing);
            scenario!(concurrent_reservations_fill_cap_exactly);
            scenario!(idempotent_replay);
            scenario!(period_rollover_renews_without_rollover);
            scenario!(day_31_anchoring);
            scenario!(upgrade_restarts_period);
            scenario!(downgrade_waits_for_reset);
            scenario!(spend_draws_earliest_expiring_first);
            scenario!(funds_vanish_at_expiry);
            scenario!(auto_refill_respects_threshold_and_limit);
            scenario!(default_caps_apply_to_members_and_keys);
            scenario!(usage_status_amber_and_red);
            scenario!(overrun_is_recorded_and_flagged);
            scenario!(holds_expire_after_ttl_and_extend);
            scenario!(release_frees_and_closes);
            scenario!(amounts_must_be_cu_and_teams_known);
            scenario!(team_cap_limits_period_spend);
            scenario!(maintenance_inside_admin_ops_keeps_counters);
        }
    };
}

fn make_memory(clock: Arc<ManualClock>, hook: Option<Arc<dyn RefillHook>>) -> Made {
    Box::pin(async move {
        let mut l = MemoryLedger::with_clock(clock);
        if let Some(h) = hook {
            l = l.with_refill_hook(h);
        }
        Some(Arc::new(l) as Arc<dyn Ledger>)
    })
}

behaviour_suite!(memory, super::make_memory);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh file per test under Cargo's per-target temporary directory.
pub fn temp_db(name: &str) -> std::path::PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let p = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ledger-{name}-{}-{n}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
    }
    p
}

fn make_sqlite(clock: Arc<ManualClock>, hook: Option<Arc<dyn RefillHook>>) -> Made {
    Box::pin(async move {
        let path = temp_db("behaviour");
        let mut l = SqliteLedger::open_with(&path, SqliteOptions::default(), clock).unwrap();
        if let Some(h) = hook {
            l = l.with_refill_hook(h);
        }
        Some(Arc::new(l) as Arc<dyn Ledger>)
    })
}

behaviour_suite!(sqlite, super::make_sqlite);

/// The test database's URL; `None` (after a notice) when unset outside CI. In CI a missing URL fails.
pub fn postgres_url() -> Option<String> {
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

/// A schema name unique to this test.
pub fn unique_schema(name: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("t_{name}_{}_{n}_{nanos}", std::process::id())
}

fn make_postgres(clock: Arc<ManualClock>, hook: Option<Arc<dyn RefillHook>>) -> Made {
    Box::pin(async move {
        let url = postgres_url()?;
        let options = PostgresOptions {
            schema: Some(unique_schema("b")),
            ..PostgresOptions::default()
        };
        let mut l = PostgresLedger::connect_with(&url, options, clock).await.unwrap();
        if let Some(h) = hook {
            l = l.with_refill_hook(h);
        }
        Some(Arc::new(l) as Arc<dyn Ledger>)
    })
}

behaviour_suite!(postgres, super::make_postgres);
