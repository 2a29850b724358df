//! The SQLite backend: one file, safe for several processes on one host.
//!
//! One writer thread per [`SqliteLedger`] owns the connection. Operations queue to it; it takes every
//! queued operation (up to `max_batch`) into one `BEGIN IMMEDIATE` transaction (group commit), loads the
//! rows each needs, applies them one by one (each all-or-nothing), writes what changed and commits once.
//! `BEGIN IMMEDIATE` takes SQLite's write lock up front, so processes sharing the file serialise on it
//! (waiting up to the busy timeout) and every read inside the transaction is current.
//!
//! The writer keeps each team's rows (team, funds, scopes, open holds) from one transaction to the next,
//! but uses them only while `PRAGMA data_version`, read inside the new transaction, shows that no other
//! connection has committed since; otherwise it reads them again. Replies leave from acknowledging
//! threads: with [`SqliteSync::Full`] only after an fsync of the WAL that began after the batch committed,
//! so the writer never waits for the disk and several commits can be made durable at once. Unless the writer
//! is saturated, an idle acknowledging thread (one at a time) polls for about one commit-and-fsync cycle
//! before it sleeps, so a committed batch starts its fsync without a thread wake-up; without fsync the
//! writer polls for its next operation the same way.
//!
//! Amounts are stored as TEXT holding the exact decimal: arithmetic happens in Rust under the write lock,
//! never in SQL, so TEXT keeps any scale exactly without a fixed-point convention to maintain.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};
use crate::engine::{Backend, Engine, RefillHook, forward_ledger};
use crate::error::{HoldState, LedgerError};
use crate::logic::{
    Batch, Book, HashMap, HashSet, HoldRow, Op, Outcome, ScopeRow, TeamRow, apply, from_ms, hold_scope_keys,
    ms,
};
use crate::types::{
    AutoRefill, Entry, EntryKind, EntryMeta, FundsKind, HistoryFilter, HoldId, ScopeKey, TeamConfig,
};

const BACKEND: &str = "sqlite";

fn err(e: impl std::fmt::Display) -> LedgerError {
    LedgerError::storage(BACKEND, e)
}

/// How durable a commit is (SQLite's `synchronous` setting, in WAL mode).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum SqliteSync {
    /// Every commit is fsynced before it is acknowledged (the WAL is synced by an acknowledging thread, not
    /// inside SQLite's commit, with the same guarantee as `synchronous=FULL`). Survives power loss.
    #[default]
    Full,
    /// `synchronous=NORMAL`: commits survive a crash of the process, but the last ones may be lost on
    /// power loss or an OS crash (the WAL is fsynced at checkpoints only).
    Normal,
}

/// Options of the SQLite backend.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// Durability of commits.
    pub sync: SqliteSync,
    /// How long to wait for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// At most this many queued operations share one transaction.
    pub max_batch: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            sync: SqliteSync::Full,
            busy_timeout: Duration::from_secs(10),
            max_batch: 256,
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
pub(crate) struct SqliteBackend {
    tx: mpsc::Sender<Job>,
    path: PathBuf,
}

impl SqliteBackend {
    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Job) -> Result<T, LedgerError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| err("the writer thread has stopped"))?;
        rx.await
            .map_err(|_| err("the writer thread dropped the request"))?
    }
}

#[async_trait]
impl Backend for SqliteBackend {
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

/// The SQLite ledger. Open as many as you like on one file, in one process or several.
#[derive(Debug)]
pub struct SqliteLedger {
    engine: Engine<SqliteBackend>,
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger file with default options on the system clock.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        Self::open_with(path, SqliteOptions::default(), Arc::new(SystemClock))
    }

    /// Opens the ledger file with options and a clock.
    pub fn open_with(
        path: impl AsRef<Path>,
        options: SqliteOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LedgerError> {
        let path = path.as_ref().to_path_buf();
        let conn = connect(&path, &options)?;
        let (tx, rx) = mpsc::channel();
        let max_batch = options.max_batch.max(1);
        let (sync, wal) = (options.sync, PathBuf::from(format!("{}-wal", path.display())));
        std::thread::Builder::new()
            .name("genroute-ledger-sqlite".to_owned())
            .spawn(move || writer(conn, rx, max_batch, sync, wal))
            .map_err(err)?;
        Ok(Self {
            engine: Engine {
                backend: SqliteBackend { tx, path },
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

    /// The file.
    pub fn path(&self) -> &Path {
        &self.engine.backend.path
    }
}

forward_ledger!(SqliteLedger);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ledger_teams (
  team TEXT PRIMARY KEY, allowance TEXT NOT NULL, pending_allowance TEXT, anchor_day INTEGER NOT NULL,
  period_start INTEGER NOT NULL, period_end INTEGER NOT NULL, default_cap TEXT,
  refill_threshold TEXT, refill_amount TEXT, refill_max INTEGER, refill_valid_ms INTEGER,
  refills_used INTEGER NOT NULL, overdraft TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ledger_scopes (
  team TEXT NOT NULL, kind INTEGER NOT NULL, id TEXT NOT NULL, cap TEXT, used TEXT NOT NULL,
  held TEXT NOT NULL, period INTEGER NOT NULL, PRIMARY KEY (team, kind, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_funds (
  team TEXT NOT NULL, id TEXT NOT NULL, kind INTEGER NOT NULL, granted TEXT NOT NULL, remaining TEXT NOT NULL,
  expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL, PRIMARY KEY (team, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger_holds (
  team TEXT NOT NULL, key TEXT NOT NULL, idem TEXT NOT NULL, member TEXT, project TEXT, api_key TEXT,
  amount TEXT NOT NULL, expires_at INTEGER NOT NULL, state INTEGER NOT NULL, charged TEXT,
  uncovered TEXT NOT NULL, late INTEGER NOT NULL, job TEXT NOT NULL, attempt INTEGER NOT NULL,
  provider TEXT NOT NULL, model TEXT NOT NULL, PRIMARY KEY (team, key)) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS ledger_holds_idem ON ledger_holds (team, idem);
CREATE INDEX IF NOT EXISTS ledger_holds_due ON ledger_holds (team, expires_at) WHERE state = 0;
CREATE TABLE IF NOT EXISTS ledger_entries (
  seq INTEGER PRIMARY KEY, team TEXT NOT NULL, member TEXT, project TEXT, api_key TEXT, kind INTEGER NOT NULL,
  amount TEXT NOT NULL, hold TEXT, batch TEXT, job TEXT, attempt INTEGER, provider TEXT, model TEXT,
  at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS ledger_entries_team ON ledger_entries (team, seq);
";

fn connect(path: &Path, options: &SqliteOptions) -> Result<Connection, LedgerError> {
    let conn = Connection::open(path).map_err(err)?;
    conn.busy_timeout(options.busy_timeout).map_err(err)?;
    // Switching to WAL needs a moment without other writers; retry while another process holds the lock.
    let mut tries = 0;
    loop {
        match conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0)) {
            Ok(_) => break,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(err(e)),
        }
    }
    // Commits themselves are not fsynced: with `SqliteSync::Full` the acknowledging threads fsync the WAL
    // before any reply of a committed batch leaves (see `Acks`), which lets the writer start the next
    // transaction while the previous one is being made durable. Checkpoints and WAL restarts still sync
    // (SQLite does so in NORMAL mode too).
    // A checkpoint every 8000 WAL pages (32 MiB) rather than SQLite's 1000: the writer pays for each
    // (two fsyncs) and pages written again and again (scope rows, the tails of the tables) are copied once.
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=8000;")
        .map_err(err)?;
    conn.set_prepared_statement_cache_capacity(64);
    let mut conn = conn;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    tx.execute_batch(SCHEMA).map_err(err)?;
    tx.commit().map_err(err)?;
    Ok(conn)
}

/// Replies of committed batches, waiting for the fsync that makes them durable.
///
/// A reply (success, refusal or read alike) leaves only after an fsync of the WAL that started after its
/// batch committed: the WAL is written in commit order and a checkpoint syncs the WAL before it copies
/// frames out of it (and the database file before the WAL is reused), so that fsync makes the batch and
/// everything it read durable — what `synchronous=FULL` guarantees, without the writer waiting for it.
/// Several threads acknowledge, so a batch committed while an fsync runs gets its own fsync at once.
struct Acks {
    state: Mutex<AckState>,
    ready: Condvar,
    /// Set once an fsync failed: from then on nothing more is acknowledged (the kernel may have dropped
    /// the pages that failed to write) and the writer refuses new work.
    failed: AtomicBool,
    /// Batches handed over and not yet answered.
    in_flight: AtomicUsize,
    /// Batches pushed and not yet taken by an acknowledging thread (read without the lock while spinning).
    queued: AtomicUsize,
    /// Set while one acknowledging thread polls `queued` instead of sleeping (at most one at a time).
    spinning: AtomicBool,
    /// Set while the writer recently found work already queued when it finished a batch: it is then the
    /// bottleneck, and a polling thread would only take processor time from it (measured: 5 % fewer pairs/s
    /// at 64 clients), so nobody polls.
    saturated: AtomicBool,
}

struct AckState {
    pending: Vec<Vec<Done>>,
    closed: bool,
    /// Acknowledging threads waiting on the condition variable (a push wakes one only if some sleep).
    sleepers: usize,
}

impl Acks {
    /// Nothing pending, nobody sleeping, polling or failed.
    fn new() -> Self {
        Self {
            state: Mutex::new(AckState {
                pending: Vec::new(),
                closed: false,
                sleepers: 0,
            }),
            ready: Condvar::new(),
            failed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            queued: AtomicUsize::new(0),
            spinning: AtomicBool::new(false),
            saturated: AtomicBool::new(false),
        }
    }

    fn push(&self, batch: Vec<Done>) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        match self.state.lock() {
            Ok(mut st) => {
                st.pending.push(batch);
                self.queued.fetch_add(1, Ordering::SeqCst);
                let wake = st.sleepers > 0 && !self.spinning.load(Ordering::SeqCst);
                drop(st);
                if wake {
                    self.ready.notify_one();
                }
            }
            // Only a panicking acknowledger poisons the lock; fail the batch rather than lose it.
            Err(_) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                deliver(batch, Some(&err("the acknowledging thread failed")));
            }
        }
    }

    fn close(&self) {
        if let Ok(mut st) = self.state.lock() {
            st.closed = true;
        }
        self.ready.notify_all();
    }
}

/// One acknowledging thread: takes every batch waiting, fsyncs the WAL (durable mode), replies.
fn acknowledger(acks: Arc<Acks>, wal: Option<PathBuf>) {
    // Each thread has its own descriptor: a write error is reported to every descriptor's next fsync.
    let mut file: Option<std::fs::File> = None;
    loop {
        // One thread at a time polls briefly before sleeping: the next batch usually commits within a
        // fraction of a millisecond, and taking it without a wake-up saves the writer a futex wake and
        // the batch the scheduler's wake-up delay before its fsync starts.
        if !acks.saturated.load(Ordering::SeqCst)
            && acks
                .spinning
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            let start = std::time::Instant::now();
            while acks.queued.load(Ordering::SeqCst) == 0
                && !acks.saturated.load(Ordering::SeqCst)
                && start.elapsed() < SPIN
            {
                std::thread::yield_now();
            }
            acks.spinning.store(false, Ordering::SeqCst);
        }
        let batches = {
            let Ok(mut st) = acks.state.lock() else { return };
            loop {
                if !st.pending.is_empty() {
                    acks.queued.fetch_sub(st.pending.len(), Ordering::SeqCst);
                    break std::mem::take(&mut st.pending);
                }
                if st.closed {
                    return;
                }
                st.sleepers += 1;
                st = match acks.ready.wait(st) {
                    Ok(st) => st,
                    Err(_) => return,
                };
                st.sleepers -= 1;
            }
        };
        let n = batches.len();
        sync_and_deliver(&acks, &mut file, wal.as_deref(), batches);
        acks.in_flight.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Fsyncs the WAL (durable mode) and sends the replies of batches committed before — or, when the fsync
/// fails now or failed before, an error in their place.
fn sync_and_deliver(
    acks: &Acks,
    file: &mut Option<std::fs::File>,
    wal: Option<&Path>,
    batches: Vec<Vec<Done>>,
) {
    let synced = match wal {
        None => Ok(()),
        Some(path) => sync_wal(file, path),
    };
    if synced.is_err() {
        acks.failed.store(true, Ordering::SeqCst);
    }
    let failure = match synced {
        Err(e) => Some(e),
        Ok(()) if acks.failed.load(Ordering::SeqCst) => Some(err("an earlier WAL fsync failed")),
        Ok(()) => None,
    };
    for batch in batches {
        deliver(batch, failure.as_ref());
    }
}

/// How long an idle thread polls for work before it sleeps: about one commit-and-fsync cycle, so that
/// under steady load work is taken without a wake-up (and the thread handing it over needs no futex wake).
const SPIN: Duration = Duration::from_micros(250);

/// The next job: polled for a moment before sleeping (see `acknowledger`), `None` once every sender is gone.
/// `recent` remembers, one bit per call, whether work was already waiting; `saturated` is set while it was
/// in any of the last four.
fn next_job(rx: &mpsc::Receiver<Job>, spin: bool, recent: &mut u8, saturated: &AtomicBool) -> Option<Job> {
    let first = rx.try_recv();
    *recent = (*recent << 1) | u8::from(first.is_ok());
    saturated.store(*recent & 0xF != 0, Ordering::SeqCst);
    match first {
        Ok(j) => return Some(j),
        Err(mpsc::TryRecvError::Disconnected) => return None,
        Err(mpsc::TryRecvError::Empty) => {}
    }
    if !spin {
        return rx.recv().ok();
    }
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(j) => return Some(j),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if start.elapsed() < SPIN => std::thread::yield_now(),
            Err(mpsc::TryRecvError::Empty) => return rx.recv().ok(),
        }
    }
}

fn sync_wal(file: &mut Option<std::fs::File>, path: &Path) -> Result<(), LedgerError> {
    if file.is_none() {
        *file = Some(
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| err(format!("opening {} to sync it: {e}", path.display())))?,
        );
    }
    match file {
        Some(f) => f
            .sync_data()
            .map_err(|e| err(format!("fsync of {}: {e}", path.display()))),
        None => Err(err("no WAL descriptor")),
    }
}

/// Sends each reply (or `failure` to all of them).
fn deliver(batch: Vec<Done>, failure: Option<&LedgerError>) {
    for d in batch {
        match (d, failure) {
            (Done::Create(r, reply), None) => drop(reply.send(r)),
            (Done::Run(r, reply), None) => drop(reply.send(r)),
            (Done::History(r, reply), None) => drop(reply.send(r)),
            (Done::Create(_, reply), Some(e)) => drop(reply.send(Err(err(e)))),
            (Done::Run(_, reply), Some(e)) => drop(reply.send(Err(err(e)))),
            (Done::History(_, reply), Some(e)) => drop(reply.send(Err(err(e)))),
        }
    }
}

/// Threads acknowledging durable commits: enough that a commit rarely waits for another's fsync.
const DURABLE_ACKNOWLEDGERS: usize = 4;

fn writer(conn: Connection, rx: mpsc::Receiver<Job>, max_batch: usize, sync: SqliteSync, wal: PathBuf) {
    let acks = Arc::new(Acks::new());
    let (threads, wal) = match sync {
        SqliteSync::Full => (DURABLE_ACKNOWLEDGERS, Some(wal)),
        SqliteSync::Normal => (1, None),
    };
    let mut handles = Vec::new();
    for _ in 0..threads {
        let (acks, wal) = (acks.clone(), wal.clone());
        if let Ok(h) = std::thread::Builder::new()
            .name("ledger-sqlite-ack".to_owned())
            .spawn(move || acknowledger(acks, wal))
        {
            handles.push(h);
        }
    }
    let mut w = Writer {
        conn,
        books: HashMap::default(),
        data_version: None,
    };
    let mut recent = 0;
    while let Some(first) = next_job(&rx, sync == SqliteSync::Normal, &mut recent, &acks.saturated) {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        if handles.is_empty() || acks.failed.load(Ordering::SeqCst) {
            let e = err("the ledger stopped after a failed WAL fsync (or could not start its threads)");
            deliver(jobs.into_iter().map(|j| fail(j, err(&e))).collect(), None);
            continue;
        }
        match w.run_batch(jobs) {
            // Without fsync, a lone reply (nothing else in flight: one client at a time) is sent here:
            // a hand-over would only add a thread wake-up. (Durable replies always go through the
            // acknowledging threads: measured, fsyncing here made one client slower, not faster.)
            Ok(done) if wal.is_none() && done.len() == 1 && acks.in_flight.load(Ordering::SeqCst) == 0 => {
                deliver(done, None);
            }
            Ok(done) => acks.push(done),
            Err(done) => deliver(done, None),
        }
    }
    acks.close();
    for h in handles {
        let _ = h.join();
    }
}

enum Done {
    Create(Result<(), LedgerError>, Reply<()>),
    Run(Result<Outcome, LedgerError>, Reply<Outcome>),
    History(Result<Vec<Entry>, LedgerError>, Reply<Vec<Entry>>),
}

/// The writer thread's connection and the team books it keeps between transactions.
struct Writer {
    conn: Connection,
    /// Books as of the last commit; valid only while no other connection has written since
    /// (`data_version` unchanged), otherwise dropped before the next batch reads anything.
    books: HashMap<TeamId, Loaded>,
    /// `PRAGMA data_version` read inside the last committed transaction, `None` when `books` may not match
    /// the file (nothing committed yet, or the last batch failed).
    data_version: Option<i64>,
}

/// Above this many teams the books kept between batches are dropped (they are only a cache).
const MAX_CACHED_TEAMS: usize = 1024;

impl Writer {
    /// Runs a batch in one transaction: `Ok` with the replies when it committed, `Err` with error replies
    /// when it did not (nothing of it is stored then).
    fn run_batch(&mut self, jobs: Vec<Job>) -> Result<Vec<Done>, Vec<Done>> {
        let mut done = Vec::with_capacity(jobs.len());
        let Self {
            conn,
            books,
            data_version,
        } = self;
        let result = (|| -> Result<i64, LedgerError> {
            // BEGIN and COMMIT come from the statement cache (a `rusqlite::Transaction` parses them each
            // time); a transaction left open by a failure is rolled back below.
            let tx: &Connection = conn;
            tx.prepare_cached("BEGIN IMMEDIATE")
                .and_then(|mut st| st.execute([]))
                .map_err(err)?;
            // Another connection (process) wrote since our last commit: what we kept may be stale.
            let version: i64 = tx
                .prepare_cached("PRAGMA data_version")
                .map_err(err)?
                .query_row([], |r| r.get(0))
                .map_err(err)?;
            if *data_version != Some(version) {
                books.clear();
            }
            *data_version = None;
            let mut jobs = jobs.into_iter();
            // A storage failure aborts the whole batch (every request gets the error); logic errors belong
            // to their own request only.
            let abort = |e: LedgerError, done: &mut Vec<Done>, rest: &mut dyn Iterator<Item = Job>| {
                for j in rest {
                    done.push(fail(j, err(&e)));
                }
                e
            };
            while let Some(job) = jobs.next() {
                match job {
                    Job::Create(cfg, now, reply) => match create(tx, books, &cfg, now) {
                        Ok(r) => done.push(Done::Create(r, reply)),
                        Err(e) => {
                            done.push(Done::Create(Err(err(&e)), reply));
                            return Err(abort(e, &mut done, &mut jobs));
                        }
                    },
                    Job::Run(op, now, reply) => match run(tx, books, *op, now) {
                        Ok(r) => done.push(Done::Run(r, reply)),
                        Err(e) => {
                            done.push(Done::Run(Err(err(&e)), reply));
                            return Err(abort(e, &mut done, &mut jobs));
                        }
                    },
                    Job::History(filter, reply) => {
                        let r = history(tx, &filter);
                        done.push(Done::History(r, reply));
                    }
                }
            }
            for loaded in books.values_mut() {
                save(tx, loaded)?;
            }
            tx.prepare_cached("COMMIT")
                .and_then(|mut st| st.execute([]))
                .map_err(err)?;
            Ok(version)
        })();
        if result.is_err() && !conn.is_autocommit() {
            // Nothing of a failed batch may stay. Should ROLLBACK fail as well, the next batch's BEGIN fails
            // and reports it (as a dropped `rusqlite::Transaction` would).
            let _ = conn.execute_batch("ROLLBACK");
        }
        match result {
            Ok(version) => {
                *data_version = Some(version);
                if books.len() > MAX_CACHED_TEAMS {
                    books.clear();
                }
                for l in books.values_mut() {
                    l.forget_closed_holds();
                }
                Ok(done)
            }
            Err(e) => {
                books.clear();
                Err(done
                    .into_iter()
                    .map(|d| match d {
                        Done::Create(_, r) => Done::Create(Err(err(&e)), r),
                        Done::Run(_, r) => Done::Run(Err(err(&e)), r),
                        Done::History(_, r) => Done::History(Err(err(&e)), r),
                    })
                    .collect())
            }
        }
    }
}

fn fail(job: Job, e: LedgerError) -> Done {
    match job {
        Job::Create(_, _, r) => Done::Create(Err(e), r),
        Job::Run(_, _, r) => Done::Run(Err(e), r),
        Job::History(_, r) => Done::History(Err(e), r),
    }
}

/// A team's book with what has been read into it (in this transaction, or in earlier ones while no other
/// connection wrote).
struct Loaded {
    book: Book,
    /// Holds due up to this instant (ms) have been read.
    due_read_until: i64,
    /// Scope rows looked up (found or not).
    scopes: HashSet<ScopeKey>,
    /// Hold keys looked up (found or not); after a commit, exactly the stored holds in `book`.
    holds: HashSet<Arc<str>>,
    /// Idempotency keys looked up (found or not).
    idems: HashSet<IdempotencyKey>,
}

impl Loaded {
    /// After a commit: drops settled, released and expired holds (open holds are what later operations
    /// need; a closed one is read again if an operation names it) and every negative lookup. Every hold
    /// left is stored now, so `holds` lists exactly them.
    fn forget_closed_holds(&mut self) {
        let book = &mut self.book;
        if !book.holds.values().all(|h| h.state == HoldState::Held) {
            book.holds.retain(|_, h| h.state == HoldState::Held);
            book.idem.retain(|_, k| book.holds.contains_key(k));
        }
        self.holds.clear();
        self.holds.extend(book.holds.keys().cloned());
        self.idems.clear();
        self.idems.extend(book.idem.keys().cloned());
    }
}

/// The writer's connection inside its open transaction.
type Tx = Connection;

/// Inner result: the outer `Err` is a storage failure (aborts the batch), the inner one the operation's.
type Step<T> = Result<Result<T, LedgerError>, LedgerError>;

fn create(tx: &Tx, books: &mut HashMap<TeamId, Loaded>, cfg: &TeamConfig, now: DateTime<Utc>) -> Step<()> {
    if books.contains_key(&cfg.team) || load_team(tx, &cfg.team)?.is_some() {
        return Ok(Err(LedgerError::TeamExists(cfg.team.clone())));
    }
    let book = match Book::create(cfg, now, true) {
        Ok(b) => b,
        Err(e) => return Ok(Err(e)),
    };
    books.insert(
        cfg.team.clone(),
        Loaded {
            book,
            due_read_until: i64::MIN,
            scopes: HashSet::default(),
            holds: HashSet::default(),
            idems: HashSet::default(),
        },
    );
    Ok(Ok(()))
}

fn run(tx: &Tx, books: &mut HashMap<TeamId, Loaded>, op: Op, now: DateTime<Utc>) -> Step<Outcome> {
    let team = op.team().clone();
    if !books.contains_key(&team) {
        let Some(row) = load_team(tx, &team)? else {
            return Ok(Err(LedgerError::UnknownTeam(team)));
        };
        let mut book = Book::loaded(row);
        book.funds = load_funds(tx, &team)?;
        books.insert(
            team.clone(),
            Loaded {
                book,
                due_read_until: i64::MIN,
                scopes: HashSet::default(),
                holds: HashSet::default(),
                idems: HashSet::default(),
            },
        );
    }
    let Some(l) = books.get_mut(&team) else {
        return Err(err("book vanished"));
    };
    // Holds that time has made due (read once per batch unless time moved on: with a batch's operations
    // a few microseconds apart, reading ahead by a second is cheaper than a query per operation, and
    // loading a hold does not expire it early), the hold the operation names, the key it replays.
    let now_ms = ms(crate::logic::trunc_ms(now));
    if now_ms > l.due_read_until {
        l.due_read_until = now_ms + 1000;
        for h in load_due_holds(tx, &team, from_ms(l.due_read_until))? {
            if l.holds.insert(h.key.clone()) {
                l.idems.insert(h.idem.clone());
                l.book.insert_loaded_hold(h);
            }
        }
    }
    if let Some(key) = op.hold_key()
        && l.holds.insert(key.clone())
        && let Some(h) = load_hold(tx, &team, key)?
        && !l.book.holds.contains_key(&h.key)
    {
        l.idems.insert(h.idem.clone());
        l.book.insert_loaded_hold(h);
    }
    if let Some(idem) = op.idem()
        && l.idems.insert(idem.clone())
        && let Some(h) = load_hold_by_idem(tx, &team, idem)?
        && !l.book.holds.contains_key(&h.key)
    {
        l.holds.insert(h.key.clone());
        l.book.insert_loaded_hold(h);
    }
    // Scope rows: the operation's, and those of every open hold it may touch.
    let mut keys = op.scope_keys();
    let now_t = crate::logic::trunc_ms(now);
    for (t, k) in &l.book.expiry {
        if *t > now_t {
            break;
        }
        if let Some(h) = l.book.holds.get(k) {
            keys.extend(hold_scope_keys(&h.caller));
        }
    }
    if let Some(key) = op.hold_key()
        && let Some(h) = l.book.holds.get(key)
    {
        keys.extend(hold_scope_keys(&h.caller));
    }
    for k in keys {
        if let Some(seen) = &mut l.book.looked_up {
            seen.insert(k.clone());
        }
        if l.scopes.insert(k.clone())
            && let Some(row) = load_scope(tx, &team, &k)?
        {
            l.book.scopes.entry(k).or_insert(row);
        }
    }
    Ok(apply(&mut l.book, op, now))
}

fn dec(s: &str) -> rusqlite::Result<Decimal> {
    Decimal::from_str(s)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn opt_dec(s: Option<String>) -> rusqlite::Result<Option<Decimal>> {
    s.as_deref().map(dec).transpose()
}

fn conv<E: std::error::Error + Send + Sync + 'static>(e: E) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn bad(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        0,
        rusqlite::types::Type::Integer,
        format!("invalid {what}").into(),
    )
}

fn load_team(tx: &Tx, team: &TeamId) -> Result<Option<TeamRow>, LedgerError> {
    let mut st = tx
        .prepare_cached(
            "SELECT allowance, pending_allowance, anchor_day, period_start, period_end, default_cap,
                    refill_threshold, refill_amount, refill_max, refill_valid_ms, refills_used, overdraft
             FROM ledger_teams WHERE team = ?1",
        )
        .map_err(err)?;
    st.query_row(params![team.as_str()], |r| {
        let threshold = opt_dec(r.get(6)?)?;
        let amount = opt_dec(r.get(7)?)?;
        let max: Option<i64> = r.get(8)?;
        let valid: Option<i64> = r.get(9)?;
        let refill = match (threshold, amount, max, valid) {
            (Some(t), Some(a), Some(m), Some(v)) => Some(AutoRefill {
                threshold: Money::cu(t),
                amount: Money::cu(a),
                max_per_period: u32::try_from(m).map_err(conv)?,
                valid_for: Duration::from_millis(u64::try_from(v).map_err(conv)?),
            }),
            _ => None,
        };
        Ok(TeamRow {
            team: team.clone(),
            allowance: dec(&r.get::<_, String>(0)?)?,
            pending_allowance: opt_dec(r.get(1)?)?,
            anchor_day: r.get(2)?,
            period_start: from_ms(r.get(3)?),
            period_end: from_ms(r.get(4)?),
            default_cap: opt_dec(r.get(5)?)?,
            refill,
            refills_used: r.get(10)?,
            overdraft: dec(&r.get::<_, String>(11)?)?,
        })
    })
    .optional()
    .map_err(err)
}

fn load_funds(tx: &Tx, team: &TeamId) -> Result<Vec<Batch>, LedgerError> {
    let mut st = tx
        .prepare_cached(
            "SELECT id, kind, granted, remaining, expires_at, created_at FROM ledger_funds WHERE team = ?1",
        )
        .map_err(err)?;
    let rows = st
        .query_map(params![team.as_str()], |r| {
            Ok(Batch {
                id: r.get(0)?,
                kind: FundsKind::from_code(r.get(1)?).ok_or_else(|| bad("funds kind"))?,
                granted: dec(&r.get::<_, String>(2)?)?,
                remaining: dec(&r.get::<_, String>(3)?)?,
                expires_at: from_ms(r.get(4)?),
                created_at: from_ms(r.get(5)?),
            })
        })
        .map_err(err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
}

/// The hold columns every hold query reads, in [`hold_row`]'s order (a macro so statements stay
/// `&'static str` and the statement cache never formats).
macro_rules! hold_cols {
    () => {
        "key, idem, member, project, api_key, amount, expires_at, state, charged, uncovered, late, job, attempt, \
         provider, model"
    };
}

fn hold_row(team: &TeamId, r: &Row<'_>) -> rusqlite::Result<HoldRow> {
    let member: Option<String> = r.get(2)?;
    let project: Option<String> = r.get(3)?;
    let api_key: Option<String> = r.get(4)?;
    let caller = Caller {
        team: team.clone(),
        member: member.map(MemberId::new).transpose().map_err(conv)?,
        project: project.map(ProjectId::new).transpose().map_err(conv)?,
        api_key: api_key.map(ApiKeyId::new).transpose().map_err(conv)?,
    };
    Ok(HoldRow {
        key: Arc::from(r.get::<_, String>(0)?),
        idem: IdempotencyKey::new(r.get::<_, String>(1)?).map_err(conv)?,
        caller,
        amount: dec(&r.get::<_, String>(5)?)?,
        expires_at: from_ms(r.get(6)?),
        state: HoldState::from_code(r.get(7)?).ok_or_else(|| bad("hold state"))?,
        charged: opt_dec(r.get(8)?)?,
        uncovered: dec(&r.get::<_, String>(9)?)?,
        late: r.get::<_, i64>(10)? != 0,
        meta: EntryMeta {
            job_id: JobId::new(r.get::<_, String>(11)?).map_err(conv)?,
            attempt: r.get(12)?,
            provider: ProviderId::new(r.get::<_, String>(13)?).map_err(conv)?,
            model: ModelId::new(r.get::<_, String>(14)?).map_err(conv)?,
        },
    })
}

fn load_due_holds(tx: &Tx, team: &TeamId, now: DateTime<Utc>) -> Result<Vec<HoldRow>, LedgerError> {
    let mut st = tx
        .prepare_cached(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM ledger_holds WHERE team = ?1 AND state = 0 AND expires_at <= ?2"
        ))
        .map_err(err)?;
    let rows = st
        .query_map(params![team.as_str(), ms(now)], |r| hold_row(team, r))
        .map_err(err)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
}

fn load_hold(tx: &Tx, team: &TeamId, key: &str) -> Result<Option<HoldRow>, LedgerError> {
    let mut st = tx
        .prepare_cached(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM ledger_holds WHERE team = ?1 AND key = ?2"
        ))
        .map_err(err)?;
    st.query_row(params![team.as_str(), key], |r| hold_row(team, r))
        .optional()
        .map_err(err)
}

fn load_hold_by_idem(tx: &Tx, team: &TeamId, idem: &IdempotencyKey) -> Result<Option<HoldRow>, LedgerError> {
    let mut st = tx
        .prepare_cached(concat!(
            "SELECT ",
            hold_cols!(),
            " FROM ledger_holds WHERE team = ?1 AND idem = ?2"
        ))
        .map_err(err)?;
    st.query_row(params![team.as_str(), idem.as_str()], |r| hold_row(team, r))
        .optional()
        .map_err(err)
}

fn load_scope(tx: &Tx, team: &TeamId, k: &ScopeKey) -> Result<Option<ScopeRow>, LedgerError> {
    let mut st = tx
        .prepare_cached(
            "SELECT cap, used, held, period FROM ledger_scopes WHERE team = ?1 AND kind = ?2 AND id = ?3",
        )
        .map_err(err)?;
    st.query_row(params![team.as_str(), k.kind.code(), &*k.id], |r| {
        Ok(ScopeRow {
            cap: opt_dec(r.get(0)?)?,
            used: dec(&r.get::<_, String>(1)?)?,
            held: dec(&r.get::<_, String>(2)?)?,
            period: r.get(3)?,
        })
    })
    .optional()
    .map_err(err)
}

/// `d` as text, exactly as `Decimal`'s `Display` writes it (sign, every digit of its scale), without going
/// through the formatting machinery and a division of the 96-bit mantissa per digit: amounts are bound
/// as text several times per operation.
fn s(d: Decimal) -> String {
    let Ok(mut m) = u64::try_from(d.mantissa().unsigned_abs()) else {
        return d.to_string();
    };
    let scale = d.scale() as usize;
    // u64::MAX has 20 digits and the scale is at most 28: 29 digits at most once padded with zeros.
    let mut digits = [b'0'; 32];
    let mut start = digits.len();
    while m != 0 {
        start -= 1;
        digits[start] = b'0' + (m % 10) as u8;
        m /= 10;
    }
    start = start.min(digits.len() - scale - 1);
    let (whole, frac) = digits[start..].split_at(digits.len() - start - scale);
    let mut out = String::with_capacity(digits.len() - start + 2);
    if d.is_sign_negative() {
        out.push('-');
    }
    out.extend(whole.iter().map(|&b| char::from(b)));
    if scale > 0 {
        out.push('.');
        out.extend(frac.iter().map(|&b| char::from(b)));
    }
    out
}

/// Rows per multi-row INSERT (entries and new holds).
const MULTI_ROWS: usize = 16;
/// Columns each entry binds after the team (`?1`, shared by every row).
const ENTRY_COLS: usize = 12;
/// Columns each new hold binds after the team.
const HOLD_COLS: usize = 15;

/// `<head> VALUES (?1, ...), (?1, ...)` for `rows` rows (1..=MULTI_ROWS) of `cols` parameters after the team,
/// which every row shares as `?1` (bound once per statement). Row `r`'s column `c` (1-based) is parameter
/// `1 + r * cols + c`.
fn values_sql(head: &str, cols: usize, rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=cols).map(|c| format!("?{}", 1 + r * cols + c)).collect();
            format!("(?1, {})", cols.join(", "))
        })
        .collect();
    format!("{head} VALUES {}", values.join(", "))
}

/// The statement for `rows` rows of `head`'s `cols` parameters after the team; the statements for every
/// count up to `MULTI_ROWS` are built once, into `cell`.
fn multi_row_sql(cell: &'static OnceLock<Vec<String>>, head: &str, cols: usize, rows: usize) -> &'static str {
    cell.get_or_init(|| (0..=MULTI_ROWS).map(|n| values_sql(head, cols, n)).collect())
        .get(rows)
        .map_or("", String::as_str)
}

/// The multi-row INSERT of `rows` entries.
fn entries_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    multi_row_sql(
        &SQL,
        "INSERT INTO ledger_entries (team, member, project, api_key, kind, amount, hold, batch, job, attempt, \
         provider, model, at)",
        ENTRY_COLS,
        rows,
    )
}

/// The multi-row INSERT of `rows` new holds.
fn holds_sql(rows: usize) -> &'static str {
    static SQL: OnceLock<Vec<String>> = OnceLock::new();
    multi_row_sql(
        &SQL,
        concat!("INSERT INTO ledger_holds (team, ", hold_cols!(), ")"),
        HOLD_COLS,
        rows,
    )
}

/// The statement in `slot`, taken from the connection's cache on first use.
fn cached<'s, 'c>(
    tx: &'c Tx,
    slot: &'s mut Option<rusqlite::CachedStatement<'c>>,
    sql: &str,
) -> Result<&'s mut rusqlite::CachedStatement<'c>, LedgerError> {
    match slot {
        Some(st) => Ok(st),
        None => Ok(slot.insert(tx.prepare_cached(sql).map_err(err)?)),
    }
}

/// One row's parameters in a multi-row statement: column `c` (1-based, after the shared team) of the row
/// whose first parameter follows `at`.
struct RowBinder<'a, 'c> {
    st: &'a mut rusqlite::CachedStatement<'c>,
    at: usize,
}

impl RowBinder<'_, '_> {
    fn col(&mut self, c: usize, v: &dyn rusqlite::ToSql) -> Result<(), LedgerError> {
        self.st.raw_bind_parameter(self.at + c, v).map_err(err)
    }
}

/// Inserts `rows` with one multi-row statement per `MULTI_ROWS` (`sql(n)` is the statement for `n` rows of
/// `cols` parameters after the team, which every row shares as `?1`): one statement step instead of one
/// per row.
fn insert_rows<T>(
    tx: &Tx,
    team: &str,
    rows: &[T],
    sql: fn(usize) -> &'static str,
    cols: usize,
    bind_row: impl Fn(&mut RowBinder<'_, '_>, &T) -> Result<(), LedgerError>,
) -> Result<(), LedgerError> {
    let mut full = None;
    for chunk in rows.chunks(MULTI_ROWS) {
        let mut tail = None;
        let st = if chunk.len() == MULTI_ROWS {
            cached(tx, &mut full, sql(MULTI_ROWS))?
        } else {
            cached(tx, &mut tail, sql(chunk.len()))?
        };
        st.raw_bind_parameter(1, team).map_err(err)?;
        for (i, row) in chunk.iter().enumerate() {
            bind_row(&mut RowBinder { st, at: 1 + i * cols }, row)?;
        }
        st.raw_execute().map_err(err)?;
    }
    Ok(())
}

fn save(tx: &Tx, loaded: &mut Loaded) -> Result<(), LedgerError> {
    // Holds read from the file (or saved by an earlier batch) are updated; the others are new.
    let (book, stored_holds) = (&mut loaded.book, &loaded.holds);
    let team = book.team.team.clone();
    let Some(dirty) = book.dirty.take() else {
        return Ok(());
    };
    if dirty.team {
        let t = &book.team;
        let r = t.refill.as_ref();
        tx.prepare_cached(
            "INSERT INTO ledger_teams (team, allowance, pending_allowance, anchor_day, period_start, period_end,
               default_cap, refill_threshold, refill_amount, refill_max, refill_valid_ms, refills_used, overdraft)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (team) DO UPDATE SET allowance = ?2, pending_allowance = ?3, anchor_day = ?4,
               period_start = ?5, period_end = ?6, default_cap = ?7, refill_threshold = ?8, refill_amount = ?9,
               refill_max = ?10, refill_valid_ms = ?11, refills_used = ?12, overdraft = ?13",
        )
        .map_err(err)?
        .execute(params![
            team.as_str(),
            s(t.allowance),
            t.pending_allowance.map(s),
            t.anchor_day,
            ms(t.period_start),
            ms(t.period_end),
            t.default_cap.map(s),
            r.map(|r| s(r.threshold.amount())),
            r.map(|r| s(r.amount.amount())),
            r.map(|r| r.max_per_period),
            r.map(|r| i64::try_from(r.valid_for.as_millis()).unwrap_or(i64::MAX)),
            t.refills_used,
            s(t.overdraft),
        ])
        .map_err(err)?;
    }
    // Each statement is taken from the cache once per team and batch, not once per row. A scope row is
    // almost always stored already: a plain UPDATE of it, and the upsert only when that changed nothing.
    let (mut update, mut upsert) = (None, None);
    for k in &dirty.scopes {
        let Some(row) = book.scopes.get(k) else { continue };
        let (cap, used, held) = (row.cap.map(s), s(row.used), s(row.held));
        let values = params![team.as_str(), k.kind.code(), &*k.id, cap, used, held, row.period];
        let changed = cached(
            tx,
            &mut update,
            "UPDATE ledger_scopes SET cap = ?4, used = ?5, held = ?6, period = ?7
             WHERE team = ?1 AND kind = ?2 AND id = ?3",
        )?
        .execute(values)
        .map_err(err)?;
        if changed == 1 {
            continue;
        }
        cached(
            tx,
            &mut upsert,
            "INSERT INTO ledger_scopes (team, kind, id, cap, used, held, period) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (team, kind, id) DO UPDATE SET cap = ?4, used = ?5, held = ?6, period = ?7",
        )?
        .execute(values)
        .map_err(err)?;
    }
    let mut st = None;
    for id in &dirty.funds_deleted {
        cached(
            tx,
            &mut st,
            "DELETE FROM ledger_funds WHERE team = ?1 AND id = ?2",
        )?
        .execute(params![team.as_str(), id])
        .map_err(err)?;
    }
    let mut st = None;
    for b in book.funds.iter().filter(|b| dirty.funds.contains(&b.id)) {
        cached(
            tx,
            &mut st,
            "INSERT INTO ledger_funds (team, id, kind, granted, remaining, expires_at, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (team, id) DO UPDATE SET remaining = ?5",
        )?
        .execute(params![
            team.as_str(),
            &b.id,
            b.kind.code(),
            s(b.granted),
            s(b.remaining),
            ms(b.expires_at),
            ms(b.created_at)
        ])
        .map_err(err)?;
    }
    // Stored holds get an UPDATE of the columns a hold changes (7 parameters instead of 16); new ones, and
    // any stored one found missing after all, go in with one multi-row INSERT per `MULTI_ROWS` holds.
    let mut update: Option<rusqlite::CachedStatement<'_>> = None;
    let mut new_holds: Vec<&HoldRow> = Vec::new();
    for k in &dirty.holds {
        let Some(h) = book.holds.get(k) else { continue };
        if stored_holds.contains(k) {
            let changed = cached(
                tx,
                &mut update,
                "UPDATE ledger_holds SET expires_at = ?3, state = ?4, charged = ?5, uncovered = ?6, late = ?7
                 WHERE team = ?1 AND key = ?2",
            )?
            .execute(params![
                team.as_str(),
                &*h.key,
                ms(h.expires_at),
                h.state.code(),
                h.charged.map(s),
                s(h.uncovered),
                i64::from(h.late),
            ])
            .map_err(err)?;
            if changed == 1 {
                continue;
            }
        }
        new_holds.push(h);
    }
    insert_rows(tx, team.as_str(), &new_holds, holds_sql, HOLD_COLS, |b, h| {
        b.col(1, &&*h.key)?;
        b.col(2, &h.idem.as_str())?;
        b.col(3, &h.caller.member.as_ref().map(MemberId::as_str))?;
        b.col(4, &h.caller.project.as_ref().map(ProjectId::as_str))?;
        b.col(5, &h.caller.api_key.as_ref().map(ApiKeyId::as_str))?;
        b.col(6, &s(h.amount))?;
        b.col(7, &ms(h.expires_at))?;
        b.col(8, &h.state.code())?;
        b.col(9, &h.charged.map(s))?;
        b.col(10, &s(h.uncovered))?;
        b.col(11, &i64::from(h.late))?;
        b.col(12, &h.meta.job_id.as_str())?;
        b.col(13, &h.meta.attempt)?;
        b.col(14, &h.meta.provider.as_str())?;
        b.col(15, &h.meta.model.as_str())
    })?;
    // Entries go in in the order they were made (rows are numbered in VALUES order, so `seq` keeps it).
    insert_rows(
        tx,
        team.as_str(),
        &book.entries,
        entries_sql,
        ENTRY_COLS,
        |b, e| {
            let m = e.meta.as_ref();
            b.col(1, &e.caller.member.as_ref().map(MemberId::as_str))?;
            b.col(2, &e.caller.project.as_ref().map(ProjectId::as_str))?;
            b.col(3, &e.caller.api_key.as_ref().map(ApiKeyId::as_str))?;
            b.col(4, &e.kind.code())?;
            b.col(5, &s(e.amount.amount()))?;
            b.col(6, &e.hold.as_ref().map(|h| &*h.key))?;
            b.col(7, &e.batch)?;
            b.col(8, &m.map(|m| m.job_id.as_str()))?;
            b.col(9, &m.map(|m| m.attempt))?;
            b.col(10, &m.map(|m| m.provider.as_str()))?;
            b.col(11, &m.map(|m| m.model.as_str()))?;
            b.col(12, &ms(e.at))
        },
    )?;
    book.entries.clear();
    book.dirty = Some(crate::logic::Dirty::default());
    Ok(())
}

fn history(tx: &Tx, filter: &HistoryFilter) -> Result<Vec<Entry>, LedgerError> {
    let team = filter.scope.team().clone();
    let mut st = tx
        .prepare_cached(
            "SELECT member, project, api_key, kind, amount, hold, batch, job, attempt, provider, model, at
             FROM ledger_entries WHERE team = ?1 AND at >= ?2 ORDER BY seq",
        )
        .map_err(err)?;
    let since = filter.since.map(ms).unwrap_or(i64::MIN);
    let rows = st
        .query_map(params![team.as_str(), since], |r| {
            let member: Option<String> = r.get(0)?;
            let project: Option<String> = r.get(1)?;
            let api_key: Option<String> = r.get(2)?;
            let hold: Option<String> = r.get(5)?;
            let job: Option<String> = r.get(7)?;
            let meta = match job {
                Some(j) => Some(EntryMeta {
                    job_id: JobId::new(j).map_err(conv)?,
                    attempt: r.get(8)?,
                    provider: ProviderId::new(r.get::<_, String>(9)?).map_err(conv)?,
                    model: ModelId::new(r.get::<_, String>(10)?).map_err(conv)?,
                }),
                None => None,
            };
            Ok(Entry {
                caller: Caller {
                    team: team.clone(),
                    member: member.map(MemberId::new).transpose().map_err(conv)?,
                    project: project.map(ProjectId::new).transpose().map_err(conv)?,
                    api_key: api_key.map(ApiKeyId::new).transpose().map_err(conv)?,
                },
                kind: EntryKind::from_code(r.get(3)?).ok_or_else(|| bad("entry kind"))?,
                amount: Money::cu(dec(&r.get::<_, String>(4)?)?),
                hold: hold.map(|k| HoldId {
                    team: team.clone(),
                    key: Arc::from(k),
                }),
                batch: r.get(6)?,
                meta,
                at: from_ms(r.get(11)?),
            })
        })
        .map_err(err)?;
    let mut out = Vec::new();
    for e in rows {
        let e = e.map_err(err)?;
        if filter.matches(&e) {
            out.push(e);
            if filter.limit.is_some_and(|n| out.len() >= n) {
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use genroute_core::{JobId, MemberId, ModelId, ProviderId};

    use super::*;
    use crate::types::{ReserveRequest, Scope};
    use crate::{EntryKind, Ledger};

    fn cu(s: &str) -> Money {
        Money::cu(Decimal::from_str(s).unwrap())
    }

    fn temp_file(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("genroute-sqlite-unit-{}-{name}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", p.display()));
        }
        p
    }

    fn team() -> TeamId {
        TeamId::new("t").unwrap()
    }

    fn alice() -> Caller {
        Caller::team(team()).member(MemberId::new("alice").unwrap())
    }

    fn req(amount: &str, key: &str) -> ReserveRequest {
        ReserveRequest {
            caller: alice(),
            amount: cu(amount),
            idempotency_key: IdempotencyKey::new(key).unwrap(),
            ttl: Duration::from_secs(300),
            meta: EntryMeta {
                job_id: JobId::new(format!("job-{key}")).unwrap(),
                attempt: 1,
                provider: ProviderId::new("fal").unwrap(),
                model: ModelId::new("flux").unwrap(),
            },
        }
    }

    /// A reply leaves only after a successful fsync: when the WAL cannot be synced the caller gets an
    /// error, not the operation's result, and nothing is acknowledged after that.
    #[test]
    fn a_failed_wal_sync_acknowledges_nothing() {
        let acks = Arc::new(Acks::new());
        let (tx, mut rx) = oneshot::channel();
        let outcome = Outcome {
            out: crate::logic::Out::Unit,
            refill_due: false,
        };
        acks.push(vec![Done::Run(Ok(outcome), tx)]);
        acks.close();
        let missing = temp_file("no-such-wal").with_extension("db-wal");
        acknowledger(acks.clone(), Some(missing));
        assert!(matches!(rx.try_recv(), Ok(Err(LedgerError::Storage { .. }))));
        assert!(acks.failed.load(Ordering::SeqCst));
        assert_eq!(acks.in_flight.load(Ordering::SeqCst), 0);
    }

    /// Amounts are stored as `Decimal`'s own text, digit for digit.
    #[test]
    fn amounts_are_written_as_decimal_displays_them() {
        let mut values: Vec<Decimal> = [
            "0",
            "-0",
            "0.00",
            "-0.00",
            "4.5",
            "4.50",
            "-4.5",
            "100",
            "1e3",
            "0.0001",
            "-0.0001",
            "123456789.123456789",
            "18446744073709551615",
            "18446744073709551616",
            "-79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "7922816251426433759354395033.5",
        ]
        .iter()
        .map(|v| {
            Decimal::from_scientific(v)
                .or_else(|_| Decimal::from_str(v))
                .unwrap()
        })
        .collect();
        values.push(Decimal::new(-5, 28));
        values.push(Decimal::new(i64::MAX, 28));
        values.push(Decimal::new(i64::MIN, 3));
        for scale in 0..=28 {
            values.push(Decimal::new(1234567, scale));
            values.push(Decimal::new(-7, scale));
            values.push(Decimal::new(0, scale));
        }
        for v in values {
            assert_eq!(s(v), v.to_string(), "{v:?}");
            assert_eq!(Decimal::from_str(&s(v)).unwrap().scale(), v.scale());
        }
    }

    /// One batch writing more entries than one multi-row INSERT takes (two full statements and a shorter
    /// one): every entry is stored once, in the order the batch made them.
    #[test]
    fn a_large_batch_stores_its_entries_in_order() {
        let path = temp_file("large-batch");
        let conn = connect(&path, &SqliteOptions::default()).unwrap();
        let mut w = Writer {
            conn,
            books: HashMap::default(),
            data_version: None,
        };
        let now = Utc::now();
        let (ctx, mut crx) = oneshot::channel();
        let mut jobs = vec![Job::Create(
            Box::new(TeamConfig::new(team(), cu("1000"), now)),
            now,
            ctx,
        )];
        let n = 2 * MULTI_ROWS + 5;
        let mut replies = Vec::new();
        for i in 0..n {
            let (tx, rx) = oneshot::channel();
            let r = req("1", &format!("k{i:03}"));
            jobs.push(Job::Run(Box::new(Op::Reserve(r)), now, tx));
            replies.push(rx);
        }
        let done = w.run_batch(jobs).map_err(|_| "batch failed").unwrap();
        deliver(done, None);
        crx.try_recv().unwrap().unwrap();
        let mut keys = Vec::new();
        for mut rx in replies {
            let out = rx.try_recv().unwrap().unwrap();
            let crate::logic::Out::Hold(h) = out.out else {
                panic!("not a reservation")
            };
            keys.push(h.id.key.to_string());
        }
        // Every hold is in the file, open, with its own idempotency key (new holds go in by multi-row
        // INSERTs of at most `MULTI_ROWS`).
        let (stored, open, idems): (i64, i64, i64) = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*), sum(state = 0), count(DISTINCT idem) FROM ledger_holds",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((stored, open, idems), (n as i64, n as i64, n as i64));
        let (etx, mut erx) = oneshot::channel();
        let done = w
            .run_batch(vec![Job::History(
                Box::new(HistoryFilter::scope(Scope::Team(team()))),
                etx,
            )])
            .map_err(|_| "history failed")
            .unwrap();
        deliver(done, None);
        let entries = erx.try_recv().unwrap().unwrap();
        assert_eq!(entries.len(), n + 1);
        assert_eq!(entries[0].kind, EntryKind::Allowance);
        let stored: Vec<String> = entries[1..]
            .iter()
            .map(|e| {
                assert_eq!(e.kind, EntryKind::Reserve);
                assert_eq!(e.amount, cu("1"));
                assert_eq!(e.caller, alice());
                e.hold.as_ref().unwrap().key.to_string()
            })
            .collect();
        assert_eq!(stored, keys);
        let jobs: Vec<String> = entries[1..]
            .iter()
            .map(|e| e.meta.as_ref().unwrap().job_id.as_str().to_owned())
            .collect();
        let expected: Vec<String> = (0..n).map(|i| format!("job-k{i:03}")).collect();
        assert_eq!(jobs, expected);
    }

    /// Two ledgers on one file in one process: each must see what the other committed, although each
    /// keeps its team's rows between its own batches.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_writer_invalidates_kept_rows() {
        let path = temp_file("two-writers");
        let a = SqliteLedger::open(&path).unwrap();
        let b = SqliteLedger::open(&path).unwrap();
        a.create_team(&TeamConfig::new(team(), cu("1000"), Utc::now()))
            .await
            .unwrap();
        let member = Scope::Member(team(), MemberId::new("alice").unwrap());
        a.set_cap(&member, &cu("100")).await.unwrap();
        let first = a.reserve(&req("60", "k1")).await.unwrap();
        // `b` has read nothing yet; `a` keeps alice's row with 60 held.
        assert!(matches!(
            b.reserve(&req("60", "k2")).await,
            Err(LedgerError::Denied(_))
        ));
        // `b` settles `a`'s hold: `a` must not act on its kept copy (60 held, 0 used).
        b.settle(&first.id, &cu("50")).await.unwrap();
        let u = a.usage(&member).await.unwrap();
        assert_eq!((u.used, u.held), (cu("50"), cu("0")));
        assert!(matches!(
            a.reserve(&req("60", "k3")).await,
            Err(LedgerError::Denied(_))
        ));
        // A replay through `a` of the settle `b` made is recognised as one (the hold was read again).
        let again = a.settle(&first.id, &cu("50")).await.unwrap();
        assert!(again.replayed);
        // And `b` sees `a`'s reservation made after its own writes.
        a.reserve(&req("40", "k4")).await.unwrap();
        let u = b.usage(&member).await.unwrap();
        assert_eq!((u.used, u.held), (cu("50"), cu("40")));
    }

    /// Files created before holds were stored without a rowid keep their layout and keep working.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn files_with_the_earlier_hold_layout_keep_working() {
        let path = temp_file("old-layout");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE ledger_holds (
                   team TEXT NOT NULL, key TEXT NOT NULL, idem TEXT NOT NULL, member TEXT, project TEXT,
                   api_key TEXT, amount TEXT NOT NULL, expires_at INTEGER NOT NULL, state INTEGER NOT NULL,
                   charged TEXT, uncovered TEXT NOT NULL, late INTEGER NOT NULL, job TEXT NOT NULL,
                   attempt INTEGER NOT NULL, provider TEXT NOT NULL, model TEXT NOT NULL,
                   PRIMARY KEY (team, key));",
            )
            .unwrap();
        }
        let l = SqliteLedger::open(&path).unwrap();
        l.create_team(&TeamConfig::new(team(), cu("100"), Utc::now()))
            .await
            .unwrap();
        let h = l.reserve(&req("30", "k1")).await.unwrap();
        assert!(l.reserve(&req("30", "k1")).await.unwrap().replayed);
        let s = l.settle(&h.id, &cu("45")).await.unwrap();
        assert_eq!(s.overrun, Some(cu("15")));
        let second = l.reserve(&req("10", "k2")).await.unwrap();
        l.release(&second.id).await.unwrap();
        let kinds: Vec<EntryKind> = l
            .history(&HistoryFilter::scope(Scope::Team(team())))
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            [
                EntryKind::Allowance,
                EntryKind::Reserve,
                EntryKind::Settle,
                EntryKind::Overrun,
                EntryKind::Reserve,
                EntryKind::Release
            ]
        );
        drop(l);
        let conn = Connection::open(&path).unwrap();
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'ledger_holds'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(!sql.contains("WITHOUT ROWID"), "the layout was kept");
        let states: Vec<i64> = conn
            .prepare("SELECT state FROM ledger_holds ORDER BY idem")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        assert_eq!(states, [HoldState::Settled.code(), HoldState::Released.code()]);
    }
}
