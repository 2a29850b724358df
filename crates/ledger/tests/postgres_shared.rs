//! Two PostgreSQL ledger instances on one database, as on two hosts. Each connection keeps the books of
//! the teams it wrote last and reuses them while the team's version proves nobody else wrote since: these
//! scenarios interleave the instances so that every such book goes stale in each way it can, and check
//! that each instance still answers from the database's state.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{cu, full_caller, member, req, t0, team};
use genroute_ledger::{Ledger, LedgerError, ManualClock, PostgresLedger, PostgresOptions, TeamConfig};

/// Two instances on one fresh schema with one clock, team `t` created with `allowance`; `None` without
/// a test database (outside CI).
async fn pair(name: &str, allowance: &str) -> Option<(PostgresLedger, PostgresLedger, Arc<ManualClock>)> {
    let url = match std::env::var("GENROUTE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var_os("CI").is_some() => {
            panic!("GENROUTE_TEST_POSTGRES_URL is unset in CI: the PostgreSQL backend must be tested")
        }
        _ => return None,
    };
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!("t_shared_{name}_{}_{nanos}", std::process::id());
    let clock = Arc::new(ManualClock::new(t0()));
    let open = || {
        let options = PostgresOptions {
            schema: Some(schema.clone()),
            ..PostgresOptions::default()
        };
        PostgresLedger::connect_with(&url, options, clock.clone())
    };
    let a = open().await.unwrap();
    let b = open().await.unwrap();
    a.create_team(&TeamConfig::new(team("t"), cu(allowance), t0()))
        .await
        .unwrap();
    Some((a, b, clock))
}

fn is_denied(r: Result<genroute_ledger::Hold, LedgerError>) -> bool {
    matches!(r, Err(LedgerError::Denied(_)))
}

/// A hold taken through B counts against the cap when A reserves next, although A's previous batch ran
/// from its own book; then the same with the roles swapped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_elsewhere_is_seen() {
    let Some((a, b, _)) = pair("seen", "1000").await else {
        return;
    };
    let caller = full_caller("t");
    b.set_cap(&member("t", "alice"), &cu("10")).await.unwrap();
    a.reserve(&req(&caller, "6", "a1")).await.unwrap();
    a.reserve(&req(&caller, "1", "a2")).await.unwrap();
    b.reserve(&req(&caller, "2", "b1")).await.unwrap();
    b.reserve(&req(&caller, "1", "b2")).await.unwrap();
    assert!(is_denied(a.reserve(&req(&caller, "1", "a3")).await));
    let a2 = a.reserve(&req(&caller, "1", "a2")).await.unwrap();
    assert!(a2.replayed);
    a.release(&a2.id).await.unwrap();
    a.reserve(&req(&caller, "1", "a4")).await.unwrap();
    assert!(is_denied(b.reserve(&req(&caller, "1", "b3")).await));
    for l in [&a, &b] {
        let u = l.usage(&member("t", "alice")).await.unwrap();
        assert_eq!(u.held, cu("10"));
    }
}

/// A replay must find the first hold even where the instance's book does not hold it: one B took, or one
/// A finished (finished holds leave the book). With the cap full, a reservation taken for new would be
/// refused, so only a replay can succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_find_holds_missing_from_the_book() {
    let Some((a, b, _)) = pair("replay", "1000").await else {
        return;
    };
    let caller = full_caller("t");
    b.set_cap(&member("t", "alice"), &cu("8")).await.unwrap();
    let first = b.reserve(&req(&caller, "5", "k")).await.unwrap();
    // A reads the team's rows for this caller (not B's hold: it names another key), then runs from them.
    let f = a.reserve(&req(&caller, "2", "f")).await.unwrap();
    let again = a.reserve(&req(&caller, "5", "k")).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.id, first.id);
    a.settle(&again.id, &cu("5")).await.unwrap();
    a.settle(&f.id, &cu("3")).await.unwrap();
    // The cap is now spent: 5 + 3 of 8. Both holds were finished by A.
    let k = a.reserve(&req(&caller, "5", "k")).await.unwrap();
    assert!(k.replayed);
    assert_eq!(k.id, first.id);
    let s = a.settle(&k.id, &cu("5")).await.unwrap();
    assert!(s.replayed);
    assert!(is_denied(a.reserve(&req(&caller, "1", "g")).await));
    let u = b.usage(&member("t", "alice")).await.unwrap();
    assert_eq!((u.used, u.held), (cu("8"), cu("0")));
}

/// A hold B took expires on time in A's operations, although A never read it: A's book covers only the
/// time before the first open hold it does not know comes due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_unknown_to_the_book_still_expire() {
    let Some((a, b, clock)) = pair("expire", "1000").await else {
        return;
    };
    let caller = full_caller("t");
    let mut short = req(&caller, "5", "short");
    short.ttl = Duration::from_secs(60);
    b.reserve(&short).await.unwrap();
    // A reads the team (B's hold, not yet due, stays out of A's book), then runs from its book.
    for k in ["long", "a1", "a2"] {
        let mut r = req(&caller, if k == "long" { "2" } else { "1" }, k);
        r.ttl = Duration::from_secs(600);
        a.reserve(&r).await.unwrap();
    }
    assert_eq!(a.usage(&member("t", "alice")).await.unwrap().held, cu("9"));
    clock.advance(Duration::from_secs(61));
    assert_eq!(a.usage(&member("t", "alice")).await.unwrap().held, cu("4"));
    a.reserve(&req(&caller, "1", "a3")).await.unwrap();
    assert_eq!(b.usage(&member("t", "alice")).await.unwrap().held, cu("5"));
    let expired = b
        .history(&genroute_ledger::HistoryFilter::scope(member("t", "alice")))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == genroute_ledger::EntryKind::Expire)
        .count();
    assert_eq!(expired, 1);
}
