//! The PostgreSQL backend: one database shared by processes on many hosts.
//!
//! Worker tasks per [`PostgresLedger`] (one by default), each with its own connection, take queued
//! operations in batches. A batch is one transaction: it locks the row of every team it touches (a fixed
//! order, byte order of the team id, so two batches never deadlock), applies the operations one by one in
//! Rust (each all-or-nothing across all of its scopes), writes what changed and commits. The team row is
//! the lock for all of the team's scopes, holds and funds: every writer takes it first, and increments
//! the row's `version`. Statements are prepared once per connection and pipelined.
//!
//! A batch runs in one of two ways:
//! - **Read** (two round trips): `BEGIN`, lock with `SELECT … FOR UPDATE`, read the funds, the holds the
//!   operations name or that are due, and the scope rows they need; then every write and `COMMIT`.
//! - **Cached** (one round trip): after committing, a connection keeps the books it wrote (open holds
//!   only). When the next batch needs nothing those books lack, it sends `BEGIN`, then per team an
//!   `UPDATE` that takes the same row lock and fails the transaction unless the version is still the one
//!   the connection committed (no other writer since), and a check that no hold carries an idempotency
//!   key the book does not know, then every write and `COMMIT`. If a check fails, the transaction rolls
//!   back and the batch runs again the read way. Nothing is trusted across transactions unchecked, so
//!   any number of hosts may share a team; a team found stale is not cached for a while.
//!
//! Amounts are `NUMERIC`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures_util::future::{join_all, try_join_all};
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

use crate::clock::{Clock, SystemClock};
use crate::engine::{Backend, Engine, RefillHook, forward_ledger};
use crate::error::{HoldState, LedgerError};
use crate::logic::{
    Batch, Book, HashMap, HashSet, HoldRow, Op, Outcome, ScopeRow, TeamRow, apply, from_ms, ms, trunc_ms,
};
use crate::types::{
    AutoRefill, Entry, EntryKind, EntryMeta, FundsKind, HistoryFilter, HoldId, ScopeKey, ScopeKind,
    TeamConfig,
};

const BACKEND: &str = "postgres";

fn err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::storage(BACKEND, e)
}

/// Options of the PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// The schema holding the ledger's tables (created if missing); `None` uses the connection's default
    /// `search_path`. Only ASCII letters, digits and `_`.
    pub schema: Option<String>,
    /// Worker connections per ledger instance, each running one batch transaction at a time. One (the
    /// default) makes the largest batches, the fastest for a busy team: a second connection would mostly
    /// wait for the first one's team lock. More help when many teams are busy at once.
    pub connections: usize,
    /// At most this many queued operations share one transaction.
    pub max_batch: usize,
    /// `true` (the default): a commit is acknowledged once PostgreSQL has flushed it to disk. `false` sets
    /// `synchronous_commit = off` on the ledger's connections: much faster on slow disks, and the database
    /// stays consistent after a crash, but the last few hundred milliseconds of acknowledged operations
    /// can be lost on a server crash.
    pub synchronous_commit: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            schema: None,
            connections: 1,
            max_batch: 256,
            synchronous_commit: true,
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, LedgerError>>;

enum Job {
    Create(Box<TeamConfig>, DateTime<Utc>, Reply<()>),
    Run(Box<Op>, DateTime<Utc>, Reply<Outcome>),
    History(Box<HistoryFilter>, Reply<Vec<Entry>>),
}

#[derive(Debug)]
pub(crate) struct PgBackend {
    tx: mpsc::UnboundedSender<Job>,
}

impl PgBackend {
    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| err("the worker tasks have stopped"))?;
        rx.await.map_err(|_| err("a worker dropped the request"))?
    }
}

#[async_trait]
impl Backend for PgBackend {
    async fn create(&self, cfg: &TeamConfig, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let cfg = Box::new(cfg.clone());
        self.send(|r| Job::Create(cfg, now, r)).await
    }

    async fn run(&self, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError> {
        self.send(|r| Job::Run(Box::new(op), now, r)).await
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        let f = Box::new(filter.clone());
        self.send(|r| Job::History(f, r)).await
    }
}

/// The PostgreSQL ledger. Any number of instances, in any number of processes, may share one database.
///
/// All of them must run this version of the ledger or a later one: each connection reuses the rows it
/// committed while the team row's `version` shows that nobody wrote since, and a process of an earlier
/// version writes without incrementing it. Upgrade by stopping every process on the old version first.
#[derive(Debug)]
pub struct PostgresLedger {
    engine: Engine<PgBackend>,
}

impl PostgresLedger {
    /// Connects with default options on the system clock (`url` as libpq: `postgres://user@host/db`).
    pub async fn connect(url: &str) -> Result<Self, LedgerError> {
        Self::connect_with(url, PostgresOptions::default(), Arc::new(SystemClock)).await
    }

    /// Connects with options and a clock, creating the schema and tables if missing. Must be called
    /// inside a tokio runtime, which then runs the worker tasks.
    pub async fn connect_with(
        url: &str,
        options: PostgresOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LedgerError> {
        if let Some(s) = &options.schema
            && (s.is_empty() || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(LedgerError::Invalid(format!("schema name {s:?}")));
        }
        let config: tokio_postgres::Config = url.parse().map_err(err)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..options.connections.max(1) {
            let client = open(&config, options.schema.as_deref(), i == 0).await?;
            if !options.synchronous_commit {
                client
                    .batch_execute("SET synchronous_commit TO off")
                    .await
                    .map_err(err)?;
            }
            let worker = Worker::new(client).await?;
            let rx = rx.clone();
            let max_batch = options.max_batch.max(1);
            tokio::spawn(worker.run(rx, max_batch));
        }
        Ok(Self {
            engine: Engine {
                backend: PgBackend { tx },
                clock,
                hook: None,
            },
        })
    }

    /// Installs the payment step of automatic refills.
    pub fn with_refill_hook(mut self, hook: Arc<dyn RefillHook>) -> Self {
        self.engine.hook = Some(hook);
        self
    }
}

forward_ledger!(PostgresLedger);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_teams (
  team TEXT PRIMARY KEY, allowance NUMERIC NOT NULL, pending_allowance NUMERIC, anchor_day INT NOT NULL,
  period_start BIGINT NOT NULL, period_end BIGINT NOT NULL, default_cap NUMERIC,
  refill_threshold NUMERIC, refill_amount NUMERIC, refill_max BIGINT, refill_valid_ms BIGINT,
  refills_used BIGINT NOT NULL, overdraft NUMERIC NOT NULL);
-- Incremented by every transaction that writes the team's rows. Added to older databases without
-- taking the table's exclusive lock when it is already there.
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = 'ledger_teams'::regclass AND attname = 'version'
                 AND NOT attisdropped) THEN
    ALTER TABLE ledger_teams ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
  END IF;
END $$;
CREATE TABLE IF NOT EXISTS ledger_scopes (
  team TEXT NOT NULL, kind INT NOT NULL, id TEXT NOT NULL, cap NUMERIC, used NUMERIC NOT NULL,
  held NUMERIC NOT NULL, period BIGINT NOT NULL, PRIMARY KEY (team, kind, id));
CREATE TABLE IF NOT EXISTS ledger_funds (
  team TEXT NOT NULL, id TEXT NOT NULL, kind INT NOT NULL, granted NUMERIC NOT NULL, remaining NUMERIC NOT NULL,
  expires_at BIGINT NOT NULL, created_at BIGINT NOT NULL, PRIMARY KEY (team, id));
CREATE TABLE IF NOT EXISTS ledger_holds (
  team TEXT NOT NULL, key TEXT NOT NULL, idem TEXT NOT NULL, member TEXT, project TEXT, api_key TEXT,
  amount NUMERIC NOT NULL, expires_at BIGINT NOT NULL, state INT NOT NULL, charged NUMERIC,
  uncovered NUMERIC NOT NULL, late BOOL NOT NULL, job TEXT NOT NULL, attempt BIGINT NOT NULL,
  provider TEXT NOT NULL, model TEXT NOT NULL, PRIMARY KEY (team, key));
CREATE UNIQUE INDEX IF NOT EXISTS ledger_holds_idem ON ledger_holds (team, idem);
CREATE INDEX IF NOT EXISTS ledger_holds_due ON ledger_holds (team, expires_at) WHERE state = 0;
CREATE TABLE IF NOT EXISTS ledger_entries (
  seq BIGSERIAL PRIMARY KEY, team TEXT NOT NULL, member TEXT, project TEXT, api_key TEXT, kind INT NOT NULL,
  amount NUMERIC NOT NULL, hold TEXT, batch TEXT, job TEXT, attempt BIGINT, provider TEXT, model TEXT,
  at BIGINT NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_entries_team ON ledger_entries (team, seq);
";

async fn open(
    config: &tokio_postgres::Config,
    schema: Option<&str>,
    migrate: bool,
) -> Result<Client, LedgerError> {
    let (client, connection) = config.connect(NoTls).await.map_err(err)?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped or the server goes away; requests then fail.
        let _ = connection.await;
    });
    if migrate {
        // One migrator at a time across processes: CREATE … IF NOT EXISTS races otherwise.
        let mut sql = String::from("BEGIN; SELECT pg_advisory_xact_lock(7365427);");
        if let Some(s) = schema {
            sql.push_str(&format!(
                "CREATE SCHEMA IF NOT EXISTS {s}; SET LOCAL search_path TO {s};"
            ));
        }
        sql.push_str(SCHEMA);
        sql.push_str("COMMIT;");
        client.batch_execute(&sql).await.map_err(err)?;
    }
    if let Some(s) = schema {
        client
            .batch_execute(&format!("SET search_path TO {s}"))
            .await
            .map_err(err)?;
    }
    Ok(client)
}

const HOLD_COLS: &str = "key, idem, member, project, api_key, amount, expires_at, state, charged, uncovered, \
                         late, job, attempt, provider, model";
/// The holds a batch reads, with parameters team ($1), hold keys ($2), idempotency keys ($3) and now
/// ($4, ms): those named, and those held and due. Written as one index lookup per key (a `LIMIT`ed
/// lateral subquery cannot be turned into a scan of the team's holds), so its cost does not grow with the
/// team's history whatever the planner's statistics say. A hold may appear twice.
const HOLDS_WANTED: &str = "SELECT x.* FROM unnest($2::text[]) k CROSS JOIN LATERAL \
     (SELECT * FROM ledger_holds WHERE team = $1 AND key = k LIMIT 1) x \
     UNION ALL SELECT x.* FROM unnest($3::text[]) i CROSS JOIN LATERAL \
     (SELECT * FROM ledger_holds WHERE team = $1 AND idem = i LIMIT 1) x \
     UNION ALL SELECT * FROM ledger_holds WHERE team = $1 AND state = 0 AND expires_at <= $4";
const TEAM_COLS: &str = "team, allowance, pending_allowance, anchor_day, period_start, period_end, default_cap, \
                         refill_threshold, refill_amount, refill_max, refill_valid_ms, refills_used, overdraft";

struct Statements {
    lock_teams: Statement,
    horizon: Statement,
    bump: Statement,
    check: Statement,
    absent: Statement,
    funds: Statement,
    holds: Statement,
    scopes: Statement,
    insert_team: Statement,
    update_team: Statement,
    upsert_scopes: Statement,
    upsert_funds: Statement,
    delete_funds: Statement,
    upsert_holds: Statement,
    insert_entries: Statement,
    history: Statement,
}

struct Worker {
    client: Client,
    st: Statements,
    /// Books of teams this connection wrote last, for the one-round-trip path.
    cache: HashMap<TeamId, Cached>,
    /// Teams whose cached book was recently found stale: not cached for a number of batches.
    cold: HashMap<TeamId, u32>,
}

/// A team's book as this connection committed it.
struct Cached {
    /// The team row's `version` after that commit. Every transaction that writes any of the team's rows
    /// increments it under the team's row lock, so an unchanged version proves the rows are unchanged.
    version: i64,
    /// No open hold missing from the book expires before this instant (ms): up to then, the book knows
    /// every hold that maintenance could expire.
    horizon: i64,
    book: Book,
}

/// Open holds kept in a cached book at most; a larger book is dropped (the next batch reads from the
/// database).
const MAX_CACHED_HOLDS: usize = 4096;
/// Teams whose books a connection keeps at most (beyond, an arbitrary one is dropped).
const MAX_CACHED_TEAMS: usize = 1024;
/// Batches for which a team is not cached after its cached book was found stale (another connection
/// wrote the team).
const COLD_BATCHES: u32 = 16;

impl Cached {
    /// Whether the book holds everything `op` at `now` (ms) may read: the scope rows it names, the hold it
    /// addresses and their scope rows, every hold due by then and their scope rows. An idempotency key
    /// missing from the book is checked in the database (the `absent` statement).
    fn covers(&self, op: &Op, now: i64) -> bool {
        let book = &self.book;
        let Some(seen) = &book.looked_up else {
            return false;
        };
        let known = |caller: &Caller| {
            crate::logic::hold_scope_keys(caller)
                .iter()
                .all(|k| seen.contains(k))
        };
        if now >= self.horizon || !op.scope_keys().iter().all(|k| seen.contains(k)) {
            return false;
        }
        if let Some(key) = op.hold_key() {
            match book.holds.get(key) {
                Some(h) if known(&h.caller) => {}
                _ => return false,
            }
        }
        book.expiry
            .iter()
            .take_while(|(t, _)| ms(*t) <= now)
            .all(|(_, k)| book.holds.get(k).is_some_and(|h| known(&h.caller)))
    }
}

type Params = Vec<Box<dyn ToSql + Sync + Send>>;

/// Per team: its id, the scope kinds and ids its operations name, hold keys, idempotency keys, and the
/// latest `now` (ms) of its operations.
type TeamQuery = (String, Vec<i32>, Vec<String>, Vec<String>, Vec<String>, i64);

fn p<T: ToSql + Sync + Send + 'static>(v: T) -> Box<dyn ToSql + Sync + Send> {
    Box::new(v)
}

impl Worker {
    async fn new(client: Client) -> Result<Self, LedgerError> {
        let prep = |sql: String| {
            let c = &client;
            async move { c.prepare(&sql).await.map_err(err) }
        };
        let st = Statements {
            lock_teams: prep(format!(
                "SELECT {TEAM_COLS}, version FROM ledger_teams WHERE team = ANY($1) ORDER BY team COLLATE \"C\" \
                 FOR UPDATE"
            ))
            .await?,
            horizon: prep(
                "SELECT min(expires_at) FROM ledger_holds WHERE team = $1 AND state = 0 AND expires_at > $2"
                    .to_owned(),
            )
            .await?,
            bump: prep("UPDATE ledger_teams SET version = version + 1 WHERE team = $1".to_owned()).await?,
            // Locks the team and fails (division by zero) unless its version is still $2.
            check: prep(
                "WITH u AS (UPDATE ledger_teams SET version = version + 1 WHERE team = $1 AND version = $2 \
                 RETURNING 1) SELECT 1 / count(*)::int FROM u"
                    .to_owned(),
            )
            .await?,
            // Fails (division by zero) if any of the idempotency keys $2 has a hold.
            absent: prep(
                "SELECT 1 / (count(*) = 0)::int FROM unnest($2::text[]) i CROSS JOIN LATERAL \
                 (SELECT 1 FROM ledger_holds WHERE team = $1 AND idem = i LIMIT 1) x"
                    .to_owned(),
            )
            .await?,
            funds: prep(
                "SELECT team, id, kind, granted, remaining, expires_at, created_at FROM ledger_funds \
                 WHERE team = ANY($1)"
                    .to_owned(),
            )
            .await?,
            holds: prep(format!("SELECT team, {HOLD_COLS} FROM ({HOLDS_WANTED}) h")).await?,
            scopes: prep(format!(
                "WITH h AS ({HOLDS_WANTED}), \
                 want (kind, id) AS (SELECT * FROM unnest($5::int[], $6::text[]) \
                 UNION SELECT 1, member FROM h WHERE member IS NOT NULL \
                 UNION SELECT 2, project FROM h WHERE project IS NOT NULL \
                 UNION SELECT 3, api_key FROM h WHERE api_key IS NOT NULL) \
                 SELECT s.* FROM want w CROSS JOIN LATERAL (SELECT kind, id, cap, used, held, period \
                 FROM ledger_scopes WHERE team = $1 AND kind = w.kind AND id = w.id LIMIT 1) s"
            ))
            .await?,
            insert_team: prep(format!(
                "INSERT INTO ledger_teams ({TEAM_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ))
            .await?,
            update_team: prep(
                "UPDATE ledger_teams SET allowance = $2, pending_allowance = $3, anchor_day = $4, period_start = $5, \
                 period_end = $6, default_cap = $7, refill_threshold = $8, refill_amount = $9, refill_max = $10, \
                 refill_valid_ms = $11, refills_used = $12, overdraft = $13 WHERE team = $1"
                    .to_owned(),
            )
            .await?,
            upsert_scopes: prep(
                "INSERT INTO ledger_scopes (team, kind, id, cap, used, held, period) SELECT $1, * FROM \
                 unnest($2::int4[], $3::text[], $4::numeric[], $5::numeric[], $6::numeric[], $7::int8[]) \
                 ON CONFLICT (team, kind, id) DO UPDATE SET cap = EXCLUDED.cap, used = EXCLUDED.used, \
                 held = EXCLUDED.held, period = EXCLUDED.period"
                    .to_owned(),
            )
            .await?,
            upsert_funds: prep(
                "INSERT INTO ledger_funds (team, id, kind, granted, remaining, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (team, id) DO UPDATE SET remaining = $5"
                    .to_owned(),
            )
            .await?,
            delete_funds: prep("DELETE FROM ledger_funds WHERE team = $1 AND id = $2".to_owned()).await?,
            upsert_holds: prep(format!(
                "INSERT INTO ledger_holds (team, {HOLD_COLS}) SELECT $1, * FROM unnest($2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::text[], $7::numeric[], $8::int8[], $9::int4[], $10::numeric[], \
                 $11::numeric[], $12::bool[], $13::text[], $14::int8[], $15::text[], $16::text[]) \
                 ON CONFLICT (team, key) DO UPDATE SET expires_at = EXCLUDED.expires_at, state = EXCLUDED.state, \
                 charged = EXCLUDED.charged, uncovered = EXCLUDED.uncovered, late = EXCLUDED.late"
            ))
            .await?,
            insert_entries: prep(
                "INSERT INTO ledger_entries (team, member, project, api_key, kind, amount, hold, batch, job, attempt, \
                 provider, model, at) SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::int4[], \
                 $6::numeric[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[], $12::text[], $13::int8[])"
                    .to_owned(),
            )
            .await?,
            history: prep(
                "SELECT member, project, api_key, kind, amount, hold, batch, job, attempt, provider, model, at \
                 FROM ledger_entries WHERE team = $1 AND at >= $2 ORDER BY seq"
                    .to_owned(),
            )
            .await?,
        };
        Ok(Self {
            client,
            st,
            cache: HashMap::default(),
            cold: HashMap::default(),
        })
    }

    async fn run(mut self, rx: Arc<Mutex<mpsc::UnboundedReceiver<Job>>>, max_batch: usize) {
        loop {
            let jobs = {
                let mut rx = rx.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut jobs = vec![first];
                while jobs.len() < max_batch {
                    match rx.try_recv() {
                        Ok(j) => jobs.push(j),
                        Err(_) => break,
                    }
                }
                jobs
            };
            let mut runs = Vec::new();
            for job in jobs {
                match job {
                    Job::Create(cfg, now, reply) => {
                        let _ = reply.send(self.create(&cfg, now).await);
                    }
                    Job::History(filter, reply) => {
                        let _ = reply.send(self.history(&filter).await);
                    }
                    Job::Run(op, now, reply) => runs.push((*op, now, reply)),
                }
            }
            if runs.is_empty() {
                continue;
            }
            let (ops, replies): (Vec<_>, Vec<_>) = runs.into_iter().map(|(o, n, r)| ((o, n), r)).unzip();
            match self.batch(ops).await {
                Ok(results) => {
                    for (r, reply) in results.into_iter().zip(replies) {
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    let _ = self.client.batch_execute("ROLLBACK").await;
                    for reply in replies {
                        let _ = reply.send(Err(err(&e)));
                    }
                }
            }
            // Let the callers just answered run before the next batch is taken: those that go on with another
            // operation at once (a settle after its reserve) then join it, rather than each new batch
            // holding only the operations that arrived while the previous one committed.
            tokio::task::yield_now().await;
        }
    }

    async fn create(&self, cfg: &TeamConfig, now: DateTime<Utc>) -> Result<(), LedgerError> {
        let mut book = Book::create(cfg, now, true)?;
        self.client.batch_execute("BEGIN").await.map_err(err)?;
        let res = self.save(&mut book, true).await;
        match res {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = self.client.batch_execute("ROLLBACK").await;
                if e.as_db_error()
                    .is_some_and(|d| d.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
                {
                    Err(LedgerError::TeamExists(cfg.team.clone()))
                } else {
                    Err(err(e))
                }
            }
        }
    }

    /// One transaction for a batch of operations: from the cached books when they cover the batch and
    /// are still current, else (or when they turn out stale, then nothing was written) from rows read
    /// under the team locks. `Err` = nothing was committed, or the commit's outcome is unknown.
    async fn batch(
        &mut self,
        ops: Vec<(Op, DateTime<Utc>)>,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError> {
        if let Some(results) = self.batch_cached(&ops).await? {
            return Ok(results);
        }
        self.batch_read(ops).await
    }

    /// The batch in one round trip, on this connection's books of its teams: begin; for each team, in a
    /// fixed order, lock its row and check (failing the transaction otherwise) that its version is the
    /// cached one, so that nothing was written since this connection's last commit, and that no hold
    /// carries an idempotency key the book does not know; then every write and the commit. `Ok(None)`:
    /// the books do not cover the batch, or were stale (the transaction then failed and rolled back).
    async fn batch_cached(
        &mut self,
        ops: &[(Op, DateTime<Utc>)],
    ) -> Result<Option<Vec<Result<Outcome, LedgerError>>>, LedgerError> {
        let Worker {
            client: c,
            st,
            cache,
            cold,
        } = self;
        let covered = ops.iter().all(|(op, now)| {
            cache
                .get(op.team())
                .is_some_and(|e| e.covers(op, ms(trunc_ms(*now))))
        });
        if !covered {
            return Ok(None);
        }
        // Sorted by team (byte order, as the lock statement's `COLLATE "C"`): the fixed lock order.
        let teams: BTreeSet<TeamId> = ops.iter().map(|(op, _)| op.team().clone()).collect();
        let mut books: Vec<(TeamId, Cached)> = teams
            .into_iter()
            .filter_map(|t| cache.remove(&t).map(|e| (t, e)))
            .collect();
        let mut unknown_idems: Vec<Vec<String>> = vec![Vec::new(); books.len()];
        let mut results = Vec::with_capacity(ops.len());
        for (op, now) in ops {
            let Some(i) = books.iter().position(|(t, _)| t == op.team()) else {
                return Ok(None);
            };
            if let Some(idem) = op.idem()
                && !books[i].1.book.idem.contains_key(idem)
            {
                unknown_idems[i].push(idem.as_str().to_owned());
            }
            results.push(apply(&mut books[i].1.book, op.clone(), *now));
        }
        let checks: Vec<(String, i64)> = books
            .iter()
            .map(|(t, e)| (t.as_str().to_owned(), e.version))
            .collect();
        let mut calls: Vec<(&Statement, Params)> = Vec::new();
        for ((t, v), idems) in checks.iter().zip(unknown_idems) {
            calls.push((&st.check, vec![p(t.clone()), p(*v)]));
            if !idems.is_empty() {
                calls.push((&st.absent, vec![p(t.clone()), p(idems)]));
            }
        }
        for (_, e) in &mut books {
            writes(st, &mut e.book, false, &mut calls);
        }
        let futs = calls
            .iter()
            .map(|(s, ps)| c.execute_raw(*s, ps.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync))));
        let (begun, written, committed) = tokio::join!(
            c.batch_execute("BEGIN"),
            join_all(futs),
            c.batch_execute("COMMIT")
        );
        begun.map_err(err)?;
        // A failed statement aborts the transaction: the statements after it fail too, and `COMMIT` rolls
        // back. The checks fail with a division by zero; a hold inserted under an idempotency key that
        // another one took meanwhile fails on the unique index.
        let mut stale = false;
        for w in written {
            if let Err(e) = w {
                match e.code() {
                    Some(&SqlState::DIVISION_BY_ZERO) | Some(&SqlState::UNIQUE_VIOLATION) => stale = true,
                    Some(&SqlState::IN_FAILED_SQL_TRANSACTION) => {}
                    _ => return Err(err(e)),
                }
            }
        }
        committed.map_err(err)?;
        if stale {
            if cold.len() >= MAX_CACHED_TEAMS {
                cold.clear();
            }
            for (t, _) in books {
                cold.insert(t, COLD_BATCHES);
            }
            return Ok(None);
        }
        for (t, mut e) in books {
            e.version += 1;
            keep(cache, t, e);
        }
        Ok(Some(results))
    }

    /// The batch in two round trips, reading what it needs under the team locks.
    async fn batch_read(
        &mut self,
        ops: Vec<(Op, DateTime<Utc>)>,
    ) -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError> {
        let Worker {
            client: c,
            st,
            cache,
            cold,
        } = self;
        let (c, st) = (&*c, &*st);
        let teams: Vec<String> = ops
            .iter()
            .map(|(op, _)| op.team().as_str().to_owned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        // What each team's operations name: holds (by key), replays (by idempotency key), scope rows.
        let mut q: Vec<TeamQuery> = Vec::new();
        for team in &teams {
            let mut scope_keys: HashSet<ScopeKey> = HashSet::default();
            let (mut keys, mut idems, mut max_now) = (Vec::new(), Vec::new(), i64::MIN);
            for (op, now) in ops.iter().filter(|(op, _)| op.team().as_str() == team) {
                if let Some(k) = op.hold_key() {
                    keys.push(k.to_string());
                }
                if let Some(i) = op.idem() {
                    idems.push(i.as_str().to_owned());
                }
                scope_keys.extend(op.scope_keys());
                max_now = max_now.max(ms(trunc_ms(*now)));
            }
            let (kinds, ids) = scope_keys
                .into_iter()
                .map(|k| (k.kind.code() as i32, k.id.to_string()))
                .unzip();
            q.push((team.clone(), kinds, ids, keys, idems, max_now));
        }
        // One round trip: begin; lock the teams in a fixed order; then, each statement starting after the
        // lock is granted (READ COMMITTED takes a snapshot per statement, and a connection runs its
        // pipelined statements in order), read their funds, the holds named, replayed or due, and the
        // scope rows of the operations and of those holds.
        for t in &teams {
            if let Ok(t) = TeamId::new(t.as_str()) {
                cache.remove(&t);
            }
        }
        let tp: [&(dyn ToSql + Sync); 1] = [&teams];
        let (_, team_rows, horizons, fund_rows, hold_rows, scope_rows) = tokio::try_join!(
            c.batch_execute("BEGIN"),
            c.query(&st.lock_teams, &tp),
            try_join_all(
                q.iter()
                    .map(|(t, _, _, _, _, n)| async move { c.query_one(&st.horizon, &[t, n]).await })
            ),
            c.query(&st.funds, &tp),
            try_join_all(
                q.iter()
                    .map(|(t, _, _, k, i, n)| async move { c.query(&st.holds, &[t, k, i, n]).await })
            ),
            try_join_all(q.iter().map(|(t, kinds, ids, k, i, n)| async move {
                c.query(&st.scopes, &[t, k, i, n, kinds, ids]).await
            })),
        )
        .map_err(err)?;
        let mut books: HashMap<TeamId, Book> = HashMap::default();
        let mut versions: HashMap<TeamId, i64> = HashMap::default();
        for r in &team_rows {
            let row = team_row(r).map_err(err)?;
            versions.insert(row.team.clone(), r.try_get(13).map_err(err)?);
            books.insert(row.team.clone(), Book::loaded(row));
        }
        for r in &fund_rows {
            let team: String = r.try_get(0).map_err(err)?;
            let b = Batch {
                id: r.try_get(1).map_err(err)?,
                kind: FundsKind::from_code(i64::from(r.try_get::<_, i32>(2).map_err(err)?))
                    .ok_or_else(|| err("invalid funds kind"))?,
                granted: r.try_get(3).map_err(err)?,
                remaining: r.try_get(4).map_err(err)?,
                expires_at: from_ms(r.try_get(5).map_err(err)?),
                created_at: from_ms(r.try_get(6).map_err(err)?),
            };
            if let Some(book) = books.get_mut(&TeamId::new(team).map_err(err)?) {
                book.funds.push(b);
            }
        }
        for rows in &hold_rows {
            for r in rows {
                let team = TeamId::new(r.try_get::<_, String>(0).map_err(err)?).map_err(err)?;
                let h = hold_row(&team, r).map_err(err)?;
                if let Some(book) = books.get_mut(&team) {
                    book.insert_loaded_hold(h);
                }
            }
        }
        for (qt, rows) in q.iter().zip(&scope_rows) {
            let Some(book) = books.get_mut(&TeamId::new(&qt.0).map_err(err)?) else {
                continue;
            };
            // What the scope query looked up: the operations' keys and every loaded hold's scopes.
            let mut seen: HashSet<ScopeKey> =
                qt.1.iter()
                    .zip(&qt.2)
                    .filter_map(|(k, id)| {
                        ScopeKind::from_code(i64::from(*k)).map(|kind| ScopeKey {
                            kind,
                            id: Arc::from(id.as_str()),
                        })
                    })
                    .collect();
            for h in book.holds.values() {
                // The query adds the member, project and key rows of holds (not the team's: see `want`).
                let keys = crate::logic::hold_scope_keys(&h.caller);
                seen.extend(keys.into_iter().filter(|k| k.kind != ScopeKind::Team));
            }
            book.looked_up = Some(seen);
            for r in rows {
                let kind = ScopeKind::from_code(i64::from(r.try_get::<_, i32>(0).map_err(err)?))
                    .ok_or_else(|| err("invalid scope kind"))?;
                let id: String = r.try_get(1).map_err(err)?;
                book.scopes.insert(
                    ScopeKey {
                        kind,
                        id: Arc::from(id),
                    },
                    ScopeRow {
                        cap: r.try_get(2).map_err(err)?,
                        used: r.try_get(3).map_err(err)?,
                        held: r.try_get(4).map_err(err)?,
                        period: r.try_get(5).map_err(err)?,
                    },
                );
            }
        }
        // Apply, in arrival order.
        let mut results = Vec::with_capacity(ops.len());
        for (op, now) in ops {
            let team = op.team().clone();
            results.push(match books.get_mut(&team) {
                Some(book) => apply(book, op, now),
                None => Err(LedgerError::UnknownTeam(team)),
            });
        }
        // Second round trip: every write, the version increments and the commit, pipelined.
        let mut calls: Vec<(&Statement, Params)> = Vec::new();
        for (team, book) in &mut books {
            calls.push((&st.bump, vec![p(team.as_str().to_owned())]));
            writes(st, book, false, &mut calls);
        }
        let futs = calls
            .iter()
            .map(|(s, ps)| c.execute_raw(*s, ps.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync))));
        let (written, committed) = tokio::join!(join_all(futs), c.batch_execute("COMMIT"));
        for w in written {
            w.map_err(err)?;
        }
        committed.map_err(err)?;
        // Keep the books for the next batch: they are what was just committed.
        for (qt, row) in q.iter().zip(&horizons) {
            let Ok(team) = TeamId::new(qt.0.as_str()) else {
                continue;
            };
            let (Some(book), Some(&version)) = (books.remove(&team), versions.get(&team)) else {
                continue;
            };
            if let Some(n) = cold.get_mut(&team) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    cold.remove(&team);
                }
                continue;
            }
            let Ok(horizon) = row.try_get::<_, Option<i64>>(0) else {
                continue;
            };
            let horizon = horizon.unwrap_or(i64::MAX);
            keep(
                cache,
                team,
                Cached {
                    version: version + 1,
                    horizon,
                    book,
                },
            );
        }
        Ok(results)
    }

    async fn save(&self, book: &mut Book, create: bool) -> Result<(), tokio_postgres::Error> {
        let mut calls: Vec<(&Statement, Params)> = Vec::new();
        writes(&self.st, book, create, &mut calls);
        let futs = calls.iter().map(|(s, ps)| {
            self.client
                .execute_raw(*s, ps.iter().map(|b| b.as_ref() as &(dyn ToSql + Sync)))
        });
        let written = join_all(futs).await;
        for w in written {
            w?;
        }
        self.client.batch_execute("COMMIT").await
    }

    async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
        let team = filter.scope.team().clone();
        let since = filter.since.map(ms).unwrap_or(i64::MIN);
        let rows = self
            .client
            .query(&self.st.history, &[&team.as_str(), &since])
            .await
            .map_err(err)?;
        let mut out = Vec::new();
        for r in &rows {
            let e = entry_row(&team, r).map_err(err)?;
            if filter.matches(&e) {
                out.push(e);
                if filter.limit.is_some_and(|n| out.len() >= n) {
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Queues the statements that persist what `book` marked dirty.
fn writes<'s>(st: &'s Statements, book: &mut Book, create: bool, calls: &mut Vec<(&'s Statement, Params)>) {
    let team = book.team.team.as_str().to_owned();
    let Some(dirty) = book.dirty.take() else { return };
    if dirty.team || create {
        let t = &book.team;
        let r = t.refill.as_ref();
        let ps: Params = vec![
            p(team.clone()),
            p(t.allowance),
            p(t.pending_allowance),
            p(t.anchor_day as i32),
            p(ms(t.period_start)),
            p(ms(t.period_end)),
            p(t.default_cap),
            p(r.map(|r| r.threshold.amount())),
            p(r.map(|r| r.amount.amount())),
            p(r.map(|r| i64::from(r.max_per_period))),
            p(r.map(|r| i64::try_from(r.valid_for.as_millis()).unwrap_or(i64::MAX))),
            p(i64::from(t.refills_used)),
            p(t.overdraft),
        ];
        calls.push((if create { &st.insert_team } else { &st.update_team }, ps));
    }
    let scopes: Vec<(&ScopeKey, &ScopeRow)> = dirty
        .scopes
        .iter()
        .filter_map(|k| book.scopes.get(k).map(|r| (k, r)))
        .collect();
    if !scopes.is_empty() {
        calls.push((
            &st.upsert_scopes,
            vec![
                p(team.clone()),
                p(scopes
                    .iter()
                    .map(|(k, _)| k.kind.code() as i32)
                    .collect::<Vec<_>>()),
                p(scopes.iter().map(|(k, _)| k.id.to_string()).collect::<Vec<_>>()),
                p(scopes.iter().map(|(_, r)| r.cap).collect::<Vec<_>>()),
                p(scopes.iter().map(|(_, r)| r.used).collect::<Vec<_>>()),
                p(scopes.iter().map(|(_, r)| r.held).collect::<Vec<_>>()),
                p(scopes.iter().map(|(_, r)| r.period).collect::<Vec<_>>()),
            ],
        ));
    }
    for id in &dirty.funds_deleted {
        calls.push((&st.delete_funds, vec![p(team.clone()), p(id.clone())]));
    }
    for b in book.funds.iter().filter(|b| dirty.funds.contains(&b.id)) {
        calls.push((
            &st.upsert_funds,
            vec![
                p(team.clone()),
                p(b.id.clone()),
                p(b.kind.code() as i32),
                p(b.granted),
                p(b.remaining),
                p(ms(b.expires_at)),
                p(ms(b.created_at)),
            ],
        ));
    }
    if !dirty.holds.is_empty() {
        let hs: Vec<&HoldRow> = dirty
            .holds
            .iter()
            .filter_map(|k| book.holds.get(k).map(|h| &**h))
            .collect();
        let col = |f: &dyn Fn(&HoldRow) -> Option<String>| hs.iter().map(|h| f(h)).collect::<Vec<_>>();
        calls.push((
            &st.upsert_holds,
            vec![
                p(team.clone()),
                p(hs.iter().map(|h| h.key.to_string()).collect::<Vec<_>>()),
                p(hs.iter().map(|h| h.idem.as_str().to_owned()).collect::<Vec<_>>()),
                p(col(&|h| h.caller.member.as_ref().map(|m| m.as_str().to_owned()))),
                p(col(&|h| h.caller.project.as_ref().map(|m| m.as_str().to_owned()))),
                p(col(&|h| h.caller.api_key.as_ref().map(|m| m.as_str().to_owned()))),
                p(hs.iter().map(|h| h.amount).collect::<Vec<_>>()),
                p(hs.iter().map(|h| ms(h.expires_at)).collect::<Vec<_>>()),
                p(hs.iter().map(|h| h.state.code() as i32).collect::<Vec<_>>()),
                p(hs.iter().map(|h| h.charged).collect::<Vec<_>>()),
                p(hs.iter().map(|h| h.uncovered).collect::<Vec<_>>()),
                p(hs.iter().map(|h| h.late).collect::<Vec<_>>()),
                p(hs.iter()
                    .map(|h| h.meta.job_id.as_str().to_owned())
                    .collect::<Vec<_>>()),
                p(hs.iter().map(|h| i64::from(h.meta.attempt)).collect::<Vec<_>>()),
                p(hs.iter()
                    .map(|h| h.meta.provider.as_str().to_owned())
                    .collect::<Vec<_>>()),
                p(hs.iter()
                    .map(|h| h.meta.model.as_str().to_owned())
                    .collect::<Vec<_>>()),
            ],
        ));
    }
    if !book.entries.is_empty() {
        let es: Vec<Entry> = std::mem::take(&mut book.entries);
        let s = |f: &dyn Fn(&Entry) -> Option<String>| es.iter().map(f).collect::<Vec<_>>();
        calls.push((
            &st.insert_entries,
            vec![
                p(team.clone()),
                p(s(&|e| e.caller.member.as_ref().map(|m| m.as_str().to_owned()))),
                p(s(&|e| e.caller.project.as_ref().map(|m| m.as_str().to_owned()))),
                p(s(&|e| e.caller.api_key.as_ref().map(|m| m.as_str().to_owned()))),
                p(es.iter().map(|e| e.kind.code() as i32).collect::<Vec<_>>()),
                p(es.iter().map(|e| e.amount.amount()).collect::<Vec<_>>()),
                p(s(&|e| e.hold.as_ref().map(|h| h.key.to_string()))),
                p(s(&|e| e.batch.clone())),
                p(s(&|e| e.meta.as_ref().map(|m| m.job_id.as_str().to_owned()))),
                p(es.iter()
                    .map(|e| e.meta.as_ref().map(|m| i64::from(m.attempt)))
                    .collect::<Vec<_>>()),
                p(s(&|e| e.meta.as_ref().map(|m| m.provider.as_str().to_owned()))),
                p(s(&|e| e.meta.as_ref().map(|m| m.model.as_str().to_owned()))),
                p(es.iter().map(|e| ms(e.at)).collect::<Vec<_>>()),
            ],
        ));
    }
    book.dirty = Some(crate::logic::Dirty::default());
}

/// Keeps a committed book for the next batch, without its finished holds (a later operation on one of
/// them reads it from the database); not when it still has too many open holds to be worth keeping.
fn keep(cache: &mut HashMap<TeamId, Cached>, team: TeamId, mut e: Cached) {
    e.book.holds.retain(|_, h| h.state == HoldState::Held);
    let holds = &e.book.holds;
    e.book.idem.retain(|_, k| holds.contains_key(k));
    if e.book.holds.len() > MAX_CACHED_HOLDS {
        return;
    }
    if cache.len() >= MAX_CACHED_TEAMS
        && let Some(other) = cache.keys().next().cloned()
    {
        cache.remove(&other);
    }
    cache.insert(team, e);
}

fn team_row(r: &Row) -> Result<TeamRow, Box<dyn std::error::Error + Send + Sync>> {
    let threshold: Option<Decimal> = r.try_get(7)?;
    let amount: Option<Decimal> = r.try_get(8)?;
    let max: Option<i64> = r.try_get(9)?;
    let valid: Option<i64> = r.try_get(10)?;
    let refill = match (threshold, amount, max, valid) {
        (Some(t), Some(a), Some(m), Some(v)) => Some(AutoRefill {
            threshold: Money::cu(t),
            amount: Money::cu(a),
            max_per_period: u32::try_from(m)?,
            valid_for: Duration::from_millis(u64::try_from(v)?),
        }),
        _ => None,
    };
    Ok(TeamRow {
        team: TeamId::new(r.try_get::<_, String>(0)?)?,
        allowance: r.try_get(1)?,
        pending_allowance: r.try_get(2)?,
        anchor_day: u32::try_from(r.try_get::<_, i32>(3)?)?,
        period_start: from_ms(r.try_get(4)?),
        period_end: from_ms(r.try_get(5)?),
        default_cap: r.try_get(6)?,
        refill,
        refills_used: u32::try_from(r.try_get::<_, i64>(11)?)?,
        overdraft: r.try_get(12)?,
    })
}

fn opt_id<T>(
    v: Option<String>,
    f: impl Fn(String) -> Result<T, genroute_core::IdError>,
) -> Result<Option<T>, genroute_core::IdError> {
    v.map(f).transpose()
}

fn hold_row(team: &TeamId, r: &Row) -> Result<HoldRow, Box<dyn std::error::Error + Send + Sync>> {
    Ok(HoldRow {
        key: Arc::from(r.try_get::<_, String>(1)?),
        idem: IdempotencyKey::new(r.try_get::<_, String>(2)?)?,
        caller: Caller {
            team: team.clone(),
            member: opt_id(r.try_get(3)?, MemberId::new)?,
            project: opt_id(r.try_get(4)?, ProjectId::new)?,
            api_key: opt_id(r.try_get(5)?, ApiKeyId::new)?,
        },
        amount: r.try_get(6)?,
        expires_at: from_ms(r.try_get(7)?),
        state: HoldState::from_code(i64::from(r.try_get::<_, i32>(8)?)).ok_or("invalid hold state")?,
        charged: r.try_get(9)?,
        uncovered: r.try_get(10)?,
        late: r.try_get(11)?,
        meta: EntryMeta {
            job_id: JobId::new(r.try_get::<_, String>(12)?)?,
            attempt: u32::try_from(r.try_get::<_, i64>(13)?)?,
            provider: ProviderId::new(r.try_get::<_, String>(14)?)?,
            model: ModelId::new(r.try_get::<_, String>(15)?)?,
        },
    })
}

fn entry_row(team: &TeamId, r: &Row) -> Result<Entry, Box<dyn std::error::Error + Send + Sync>> {
    let job: Option<String> = r.try_get(7)?;
    let meta = match job {
        Some(j) => Some(EntryMeta {
            job_id: JobId::new(j)?,
            attempt: u32::try_from(r.try_get::<_, i64>(8)?)?,
            provider: ProviderId::new(r.try_get::<_, String>(9)?)?,
            model: ModelId::new(r.try_get::<_, String>(10)?)?,
        }),
        None => None,
    };
    let hold: Option<String> = r.try_get(5)?;
    Ok(Entry {
        caller: Caller {
            team: team.clone(),
            member: opt_id(r.try_get(0)?, MemberId::new)?,
            project: opt_id(r.try_get(1)?, ProjectId::new)?,
            api_key: opt_id(r.try_get(2)?, ApiKeyId::new)?,
        },
        kind: EntryKind::from_code(i64::from(r.try_get::<_, i32>(3)?)).ok_or("invalid entry kind")?,
        amount: Money::cu(r.try_get(4)?),
        hold: hold.map(|k| HoldId {
            team: team.clone(),
            key: Arc::from(k),
        }),
        batch: r.try_get(6)?,
        meta,
        at: from_ms(r.try_get(11)?),
    })
}
