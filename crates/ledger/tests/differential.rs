//! Differential test: the same pseudo-random sequence of operations (reservations on random callers,
//! settles above and below the hold, releases, extensions, top-ups, caps, plan changes, time passing
//! across TTLs, expiries and period resets) applied to every backend gives the same answers, the same
//! usage, the same balance and the same history. SQLite and PostgreSQL persist rows and reload them
//! between operations, so this catches any field a backend fails to store or read back.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::print_stderr)]

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use genroute_ledger::{
    EntryMeta, HistoryFilter, Hold, Ledger, LedgerError, ManualClock, MemoryLedger, PostgresLedger,
    PostgresOptions, ReserveRequest, Scope, SqliteLedger, SqliteOptions, TeamConfig,
};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cu(s: &str) -> Money {
    Money::cu(Decimal::from_str(s).unwrap())
}

fn team() -> TeamId {
    TeamId::new("t").unwrap()
}

fn caller(rng: &mut Rng) -> Caller {
    let mut c = Caller::team(team());
    if rng.below(4) > 0 {
        c = c.member(MemberId::new(format!("m{}", rng.below(3))).unwrap());
    }
    if rng.below(2) > 0 {
        c = c.project(ProjectId::new(format!("p{}", rng.below(2))).unwrap());
    }
    if rng.below(3) == 0 {
        c = c.api_key(ApiKeyId::new(format!("k{}", rng.below(2))).unwrap());
    }
    c
}

fn scopes() -> Vec<Scope> {
    let mut v = vec![Scope::Team(team())];
    for i in 0..3 {
        v.push(Scope::Member(team(), MemberId::new(format!("m{i}")).unwrap()));
    }
    for i in 0..2 {
        v.push(Scope::Project(team(), ProjectId::new(format!("p{i}")).unwrap()));
        v.push(Scope::ApiKey(team(), ApiKeyId::new(format!("k{i}")).unwrap()));
    }
    v
}

/// An answer with ledger-made ids replaced by their position, comparable across backends.
fn describe<T: std::fmt::Debug>(r: &Result<T, LedgerError>, strip: impl Fn(&T) -> String) -> String {
    match r {
        Ok(v) => format!("ok {}", strip(v)),
        Err(LedgerError::Denied(d)) => format!("denied {} {} {:?}", d.scope, d.remaining, d.cap),
        Err(e) => {
            let s = format!("{e:?}");
            format!("err {}", s.split(['(', ' ', '{']).next().unwrap_or_default())
        }
    }
}

async fn run(ledger: Arc<dyn Ledger>, clock: Arc<ManualClock>, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let start = clock_now(&clock);
    ledger
        .create_team(&TeamConfig::new(team(), cu("2000"), start))
        .await
        .unwrap();
    ledger.set_default_cap(&team(), Some(&cu("400"))).await.unwrap();
    let mut holds: Vec<Hold> = Vec::new();
    for step in 0..160 {
        let r = rng.below(100);
        let line = if r < 40 {
            let c = caller(&mut rng);
            let amount = format!("{}.{}", rng.below(120), rng.below(100));
            // Now and then replay an earlier key (same or different amount).
            let key = if rng.below(8) == 0 && step > 0 {
                format!("key{}", rng.below(step))
            } else {
                format!("key{step}")
            };
            let req = ReserveRequest {
                caller: c,
                amount: cu(&amount),
                idempotency_key: IdempotencyKey::new(key).unwrap(),
                ttl: Duration::from_secs(30 + rng.below(600)),
                meta: EntryMeta {
                    job_id: JobId::new(format!("job{step}")).unwrap(),
                    attempt: 1 + rng.below(3) as u32,
                    provider: ProviderId::new("fal").unwrap(),
                    model: ModelId::new("flux").unwrap(),
                },
            };
            let res = ledger.reserve(&req).await;
            let d = describe(&res, |h| {
                let pos = holds.iter().position(|x| x.id == h.id);
                format!("{} {} replay={} pos={pos:?}", h.amount, h.expires_at, h.replayed)
            });
            if let Ok(h) = res
                && !h.replayed
            {
                holds.push(h);
            }
            d
        } else if r < 65 && !holds.is_empty() {
            let h = &holds[rng.below(holds.len() as u64) as usize];
            let actual = format!("{}.{}", rng.below(150), rng.below(10));
            let res = ledger.settle(&h.id, &cu(&actual)).await;
            describe(&res, |s| {
                format!(
                    "{} {} {:?} {} {} {}",
                    s.held, s.charged, s.overrun, s.hold_expired, s.uncovered, s.replayed
                )
            })
        } else if r < 72 && !holds.is_empty() {
            let h = &holds[rng.below(holds.len() as u64) as usize];
            describe(&ledger.release(&h.id).await, |_| String::new())
        } else if r < 77 && !holds.is_empty() {
            let h = &holds[rng.below(holds.len() as u64) as usize];
            let ttl = Duration::from_secs(rng.below(900));
            describe(&ledger.extend(&h.id, ttl).await, |h| h.expires_at.to_string())
        } else if r < 82 {
            let days = 1 + rng.below(60) as i64;
            let res = ledger
                .top_up(
                    &team(),
                    &cu(&rng.below(500).to_string()),
                    clock_now(&clock) + chrono::Duration::days(days),
                )
                .await;
            describe(&res, |b| format!("{} {} {:?}", b.granted, b.remaining, b.kind))
        } else if r < 87 {
            let s = &scopes()[rng.below(8) as usize];
            if rng.below(3) == 0 {
                describe(&ledger.remove_cap(s).await, |_| String::new())
            } else {
                describe(&ledger.set_cap(s, &cu(&rng.below(600).to_string())).await, |_| {
                    String::new()
                })
            }
        } else if r < 89 {
            let a = cu(&(500 + rng.below(3000)).to_string());
            let res = if rng.below(2) == 0 {
                ledger.upgrade(&team(), &a).await
            } else {
                ledger.downgrade(&team(), &a).await
            };
            describe(&res, |_| String::new())
        } else {
            // Time passes: seconds (TTLs), days (top-up expiry) or weeks (period resets).
            let secs = match rng.below(3) {
                0 => rng.below(400),
                1 => rng.below(3 * 86_400),
                _ => rng.below(20 * 86_400),
            };
            clock.advance(Duration::from_secs(secs));
            format!("advance {secs}")
        };
        let u = ledger.usage(&Scope::Team(team())).await.unwrap();
        log.push(format!(
            "{step}: {line} | team {} {} {}",
            u.used, u.held, u.remaining
        ));
    }
    for s in scopes() {
        let u = ledger.usage(&s).await.unwrap();
        log.push(format!(
            "usage {s}: {} {} {:?} {} {} {:?}",
            u.used, u.held, u.cap, u.cap_is_default, u.remaining, u.status
        ));
    }
    let b = ledger.balance(&team()).await.unwrap();
    let batches: Vec<_> = b
        .batches
        .iter()
        .map(|x| format!("{:?} {} {} {}", x.kind, x.granted, x.remaining, x.expires_at))
        .collect();
    log.push(format!(
        "balance: {} {} {} {} {} {:?} {} {} {} {batches:?}",
        b.available,
        b.funds,
        b.held,
        b.overdraft,
        b.plan_allowance,
        b.pending_allowance,
        b.period_start,
        b.resets_at,
        b.refills_this_period
    ));
    for e in ledger
        .history(&HistoryFilter::scope(Scope::Team(team())))
        .await
        .unwrap()
    {
        let hold = e.hold.as_ref().map(|h| holds.iter().position(|x| x.id == *h));
        log.push(format!(
            "entry {:?} {} {:?} {:?} {} {:?}",
            e.kind,
            e.amount,
            hold,
            e.meta.as_ref().map(|m| (m.job_id.as_str().to_owned(), m.attempt)),
            e.at,
            e.caller
        ));
    }
    log
}

/// Decimal scale is not part of a value (PostgreSQL returns `0` for a stored `0.00`): compare normalised.
fn normalise(line: &str) -> String {
    line.split(' ')
        .map(|tok| {
            let core = tok.trim_end_matches([',', ')', '}']);
            match Decimal::from_str(core) {
                Ok(d) if core.contains('.') => format!("{}{}", d.normalize(), &tok[core.len()..]),
                _ => tok.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn clock_now(clock: &ManualClock) -> chrono::DateTime<Utc> {
    genroute_ledger::Clock::now(clock)
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

async fn backend(kind: &str, clock: Arc<ManualClock>) -> Option<Arc<dyn Ledger>> {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let pid = std::process::id();
    Some(match kind {
        "memory" => Arc::new(MemoryLedger::with_clock(clock)),
        "sqlite" => {
            let p =
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("ledger-diff-{pid}-{n}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
            }
            Arc::new(SqliteLedger::open_with(&p, SqliteOptions::default(), clock).unwrap())
        }
        _ => {
            let url = match std::env::var("GENROUTE_TEST_POSTGRES_URL") {
                Ok(u) if !u.is_empty() => u,
                _ if std::env::var_os("CI").is_some() => panic!("GENROUTE_TEST_POSTGRES_URL is unset in CI"),
                _ => {
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "notice: GENROUTE_TEST_POSTGRES_URL unset; skipping"
                    );
                    return None;
                }
            };
            let options = PostgresOptions {
                schema: Some(format!("t_diff_{pid}_{n}")),
                ..PostgresOptions::default()
            };
            Arc::new(PostgresLedger::connect_with(&url, options, clock).await.unwrap())
        }
    })
}

async fn same_answers(kind: &str) {
    for seed in [0x9e37_79b9_7f4a_7c15u64, 42, 7_777_777] {
        let start = Utc.with_ymd_and_hms(2026, 1, 31, 10, 0, 0).unwrap();
        let mc = Arc::new(ManualClock::new(start));
        let oc = Arc::new(ManualClock::new(start));
        let Some(other) = backend(kind, oc.clone()).await else {
            return;
        };
        let expected = run(backend("memory", mc.clone()).await.unwrap(), mc, seed).await;
        let got = run(other, oc, seed).await;
        assert!(expected.len() > 160, "a full log");
        assert!(
            expected.iter().any(|l| l.contains("denied")),
            "the sequence exercises denials"
        );
        assert!(
            expected.iter().any(|l| l.contains("Expire")),
            "the sequence exercises expiry"
        );
        for (i, (e, g)) in expected.iter().zip(&got).enumerate() {
            assert_eq!(
                normalise(e),
                normalise(g),
                "seed {seed}, line {i}: memory vs {kind}"
            );
        }
        assert_eq!(expected.len(), got.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_matches_memory() {
    same_answers("sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_matches_memory() {
    same_answers("postgres").await;
}
