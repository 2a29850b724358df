//! The JSON-lines cost log: one line per attempt, written off the caller's thread; and its reader.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use genroute_core::{
    ApiKeyId, Caller, CostSource, Currency, Decimal, ErrorKind, JobId, MemberId, Modality, ModelId, ModelRef,
    Money, Operation, ProjectId, ProviderId, TeamId,
};
use serde::{Deserialize, Serialize};

use crate::error::TelemetryError;
use crate::event::{AttemptEvent, AttemptOutcome, BudgetDecision, CostSink, OutcomeCode};

/// Version written in every line's `v` field.
pub const COST_LOG_VERSION: u32 = 1;

/// When buffered lines reach the file (and, with `fsync`, the disk). In a config file:
/// `flush = { mode = "batch", lines = 64, interval = "1s" }`, `{ mode = "every_line" }`, `{ mode = "on_close" }`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum FlushPolicy {
    /// After every line. Lines that arrive together are written together (group commit), so a burst costs
    /// one write (and one fsync), not one per line.
    EveryLine,
    /// When `lines` lines are pending or the oldest pending line is `interval` old, whichever comes first.
    Batch {
        /// Pending lines that trigger a write.
        lines: usize,
        /// Longest a line waits.
        #[serde(with = "humantime_serde")]
        interval: Duration,
    },
    /// Only on [`JsonlCostLog::flush`], close or drop (and whenever 1 MiB is pending, to bound memory).
    OnClose,
}

/// How a [`JsonlCostLog`] writes. Deserialisable (strict; missing fields take the defaults).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CostLogOptions {
    /// When lines are written.
    pub flush: FlushPolicy,
    /// Whether each write is followed by `fsync` (`sync_data`), so a written line survives a power loss.
    pub fsync: bool,
    /// Lines that may wait for the writer thread. When full, new lines are dropped and counted
    /// ([`JsonlCostLog::dropped`]) rather than blocking the router.
    pub capacity: usize,
}

impl Default for CostLogOptions {
    /// Batches of 64 lines or 1 s, no fsync, room for 65,536 waiting lines.
    fn default() -> Self {
        Self {
            flush: FlushPolicy::Batch {
                lines: 64,
                interval: Duration::from_secs(1),
            },
            fsync: false,
            capacity: 65_536,
        }
    }
}

/// The budget check, as stored in the cost log.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetCode {
    /// See [`BudgetDecision::Reserved`].
    Reserved,
    /// See [`BudgetDecision::Denied`].
    Denied,
    /// See [`BudgetDecision::NotChecked`].
    NotChecked,
}

/// One line of the cost log. Amounts are decimal strings, exact. Unknown fields are ignored when reading, so
/// later versions can add fields.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct CostLogRecord {
    /// Format version ([`COST_LOG_VERSION`]).
    pub v: u32,
    /// When the attempt ended.
    pub time: DateTime<Utc>,
    /// The job.
    pub job_id: JobId,
    /// Attempt number, 1-based across the job.
    pub attempt: u32,
    /// Provider.
    pub provider: ProviderId,
    /// Model requested.
    pub model: ModelId,
    /// Model that answered, if reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_model: Option<String>,
    /// Operation.
    pub operation: Operation,
    /// Modality.
    pub modality: Modality,
    /// Route or alias, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Outcome.
    pub outcome: OutcomeCode,
    /// Error kind, for failed attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_type: Option<ErrorKind>,
    /// Quoted amount, if quoted.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub quoted: Option<Decimal>,
    /// The quote's currency, only when it differs from `currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quoted_currency: Option<Currency>,
    /// Charged amount (zero when not billed).
    #[serde(with = "rust_decimal::serde::str")]
    pub charged: Decimal,
    /// Currency of `charged` (and of `quoted` unless `quoted_currency` says otherwise).
    pub currency: Currency,
    /// Charged amount in CU.
    #[serde(with = "rust_decimal::serde::str")]
    pub cu: Decimal,
    /// Where the charged figure came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_source: Option<CostSource>,
    /// The job's spend in CU after this attempt.
    #[serde(with = "rust_decimal::serde::str")]
    pub job_spend_cu: Decimal,
    /// Retry spend in CU after this attempt.
    #[serde(with = "rust_decimal::serde::str")]
    pub retry_spend_cu: Decimal,
    /// Latency in whole milliseconds (truncated).
    pub latency_ms: u64,
    /// Accepted outputs.
    #[serde(default)]
    pub outputs: u32,
    /// Why the router moved on, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_reason: Option<String>,
    /// Budget check.
    pub budget: BudgetCode,
    /// The denying scope, when denied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_scope: Option<String>,
    /// Team.
    pub team: TeamId,
    /// Member, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberId>,
    /// Project, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<ProjectId>,
    /// API key *id*, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<ApiKeyId>,
}

impl CostLogRecord {
    /// The line for an event. CU amounts are stored without their currency (they are CU by contract).
    pub fn from_event(event: &AttemptEvent) -> Self {
        let currency = event.charged.currency().clone();
        let (quoted, quoted_currency) = match &event.quoted {
            Some(q) => (
                Some(q.amount()),
                (q.currency() != &currency).then(|| q.currency().clone()),
            ),
            None => (None, None),
        };
        let error_type = match event.outcome {
            AttemptOutcome::Failed { error_type } => Some(error_type),
            _ => None,
        };
        let (budget, budget_scope) = match &event.budget_decision {
            BudgetDecision::Reserved => (BudgetCode::Reserved, None),
            BudgetDecision::Denied { scope } => (BudgetCode::Denied, Some(scope.clone())),
            BudgetDecision::NotChecked => (BudgetCode::NotChecked, None),
        };
        Self {
            v: COST_LOG_VERSION,
            time: event.time,
            job_id: event.job_id.clone(),
            attempt: event.attempt,
            provider: event.provider.clone(),
            model: event.model.clone(),
            response_model: event.response_model.clone(),
            operation: event.operation,
            modality: event.modality,
            route: event.route.clone(),
            outcome: event.outcome.code(),
            error_type,
            quoted,
            quoted_currency,
            charged: event.charged.amount(),
            currency,
            cu: event.cu.amount(),
            cost_source: event.cost_source,
            job_spend_cu: event.job_spend_cu.amount(),
            retry_spend_cu: event.retry_spend_cu.amount(),
            latency_ms: u64::try_from(event.latency.as_millis()).unwrap_or(u64::MAX),
            outputs: event.outputs,
            fallback_reason: event.fallback_reason.clone(),
            budget,
            budget_scope,
            team: event.caller.team.clone(),
            member: event.caller.member.clone(),
            project: event.caller.project.clone(),
            api_key_id: event.caller.api_key.clone(),
        }
    }

    /// The event back (latency to the millisecond). Fails only on a `failed` line without `error_type`.
    pub fn to_event(&self) -> Result<AttemptEvent, TelemetryError> {
        let outcome = AttemptOutcome::from_parts(self.outcome, self.error_type).ok_or_else(|| {
            TelemetryError::CostLogRecord {
                message: format!(
                    "job {} attempt {}: outcome `failed` without error_type",
                    self.job_id, self.attempt
                ),
            }
        })?;
        let budget_decision = match self.budget {
            BudgetCode::Reserved => BudgetDecision::Reserved,
            BudgetCode::Denied => BudgetDecision::Denied {
                scope: self.budget_scope.clone().unwrap_or_default(),
            },
            BudgetCode::NotChecked => BudgetDecision::NotChecked,
        };
        Ok(AttemptEvent {
            time: self.time,
            job_id: self.job_id.clone(),
            attempt: self.attempt,
            provider: self.provider.clone(),
            model: self.model.clone(),
            response_model: self.response_model.clone(),
            operation: self.operation,
            modality: self.modality,
            route: self.route.clone(),
            outcome,
            quoted: self.quoted.map(|q| {
                Money::new(
                    q,
                    self.quoted_currency
                        .clone()
                        .unwrap_or_else(|| self.currency.clone()),
                )
            }),
            charged: Money::new(self.charged, self.currency.clone()),
            cost_source: self.cost_source,
            cu: Money::cu(self.cu),
            job_spend_cu: Money::cu(self.job_spend_cu),
            retry_spend_cu: Money::cu(self.retry_spend_cu),
            latency: Duration::from_millis(self.latency_ms),
            outputs: self.outputs,
            fallback_reason: self.fallback_reason.clone(),
            budget_decision,
            caller: Caller {
                team: self.team.clone(),
                member: self.member.clone(),
                project: self.project.clone(),
                api_key: self.api_key_id.clone(),
            },
        })
    }
}

// ---- writer --------------------------------------------------------------------------------------------

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<Result<(), String>>),
    Close,
}

#[derive(Default)]
struct Shared {
    dropped: AtomicU64,
    written: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn set_error(&self, message: String) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(message);
        }
    }

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn count_dropped(&self, lines: u64) {
        let before = self.dropped.fetch_add(lines, Ordering::Relaxed);
        let after = before.saturating_add(lines);
        // Warn on the first drop and then at powers of two, not on every line.
        if before == 0 || (after.is_power_of_two() && lines > 0) {
            tracing::warn!(
                target: crate::spans::TARGET,
                dropped = after,
                "cost log lines dropped (writer behind or failing)"
            );
        }
    }
}

/// A [`CostSink`] appending one JSON line per attempt to a file.
///
/// [`record`](CostSink::record) serialises the line on the caller's thread (about a microsecond) and hands
/// it to a writer thread through a bounded queue; it never waits for the disk. The writer thread writes
/// and syncs per [`CostLogOptions`]. Dropping the log (or [`close`](Self::close)) writes what is pending.
///
/// Opening a file whose last line was torn by a crash first terminates that line, so new lines stay
/// readable; the reader reports the torn line.
pub struct JsonlCostLog {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    path: PathBuf,
    worker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for JsonlCostLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonlCostLog")
            .field("path", &self.path)
            .field("written", &self.written())
            .field("dropped", &self.dropped())
            .finish()
    }
}

impl JsonlCostLog {
    /// Opens (creating if needed) a cost log for appending and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, options: CostLogOptions) -> Result<Self, TelemetryError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source: std::io::Error| TelemetryError::CostLogIo {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io_err)?;
        seal_torn_tail(&mut file).map_err(io_err)?;
        let (tx, rx) = mpsc::sync_channel(options.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let writer = Writer {
            file,
            buf: Vec::with_capacity(64 * 1024),
            pending: 0,
            oldest: None,
            options,
            shared: Arc::clone(&shared),
            torn: false,
            unreported: None,
        };
        let worker = std::thread::Builder::new()
            .name("genroute-cost-log".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err)?;
        Ok(Self {
            tx,
            shared,
            path,
            worker: Some(worker),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Lines written to the file so far.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Relaxed)
    }

    /// Lines dropped so far (queue full, writer stopped, or a failed write).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// The last write error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.shared.last_error()
    }

    /// Writes (and, with `fsync`, syncs) everything recorded before this call, and waits for it; fails if
    /// any write since the previous flush failed. Blocks the calling thread: use it at checkpoints and in
    /// tests, not per event.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        let stopped = || TelemetryError::CostLogWrite {
            path: self.path.clone(),
            message: "the writer thread has stopped".into(),
        };
        self.tx.send(Msg::Flush(ack_tx)).map_err(|_| stopped())?;
        match ack_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(TelemetryError::CostLogWrite {
                path: self.path.clone(),
                message,
            }),
            Err(_) => Err(stopped()),
        }
    }

    /// Writes what is pending, stops the writer thread and reports the last write error, if any.
    pub fn close(mut self) -> Result<(), TelemetryError> {
        self.stop();
        match self.shared.last_error() {
            None => Ok(()),
            Some(message) => Err(TelemetryError::CostLogWrite {
                path: self.path.clone(),
                message,
            }),
        }
    }

    fn stop(&mut self) {
        if let Some(worker) = self.worker.take() {
            // A send error means the thread already ended; joining is still right.
            let _ = self.tx.send(Msg::Close);
            if worker.join().is_err() {
                self.shared
                    .set_error("the cost log writer thread panicked".into());
            }
        }
    }
}

impl Drop for JsonlCostLog {
    fn drop(&mut self) {
        self.stop();
    }
}

impl CostSink for JsonlCostLog {
    fn record(&self, event: &AttemptEvent) {
        let mut line = match serde_json::to_vec(&CostLogRecord::from_event(event)) {
            Ok(line) => line,
            Err(_) => {
                self.shared.count_dropped(1);
                return;
            }
        };
        line.push(b'\n');
        match self.tx.try_send(Msg::Line(line)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.shared.count_dropped(1),
        }
    }
}

/// If the file does not end with a newline (a crash tore its last line), add one so the next line starts
/// clean.
fn seal_torn_tail(file: &mut File) -> std::io::Result<()> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(());
    }
    file.seek(SeekFrom::Start(len - 1))?;
    let mut last = [0u8; 1];
    file.read_exact(&mut last)?;
    if last[0] != b'\n' {
        file.write_all(b"\n")?;
    }
    Ok(())
}

const MAX_PENDING_BYTES: usize = 1 << 20;
const MAX_GROUP: usize = 4096;

struct Writer {
    file: File,
    buf: Vec<u8>,
    pending: u64,
    oldest: Option<Instant>,
    options: CostLogOptions,
    shared: Arc<Shared>,
    torn: bool,
    unreported: Option<String>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        loop {
            let mut next = self.wait(&rx);
            let mut group = 0;
            loop {
                match next {
                    Wait::Timeout => {}
                    Wait::Msg(Msg::Line(line)) => {
                        self.buf.extend_from_slice(&line);
                        self.pending += 1;
                        self.oldest.get_or_insert_with(Instant::now);
                    }
                    Wait::Msg(Msg::Flush(ack)) => {
                        let _ = self.write_out();
                        // Report any write that failed since the last flush, not just this one.
                        let result = match self.unreported.take() {
                            Some(message) => Err(message),
                            None => Ok(()),
                        };
                        let _ = ack.send(result);
                    }
                    Wait::Msg(Msg::Close) | Wait::Closed => {
                        let _ = self.write_out();
                        return;
                    }
                }
                group += 1;
                // Group commit: take whatever else is already queued before writing.
                if matches!(self.options.flush, FlushPolicy::EveryLine) && group < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(msg) => {
                            next = Wait::Msg(msg);
                            continue;
                        }
                        Err(TryRecvError::Disconnected) => {
                            next = Wait::Closed;
                            continue;
                        }
                        Err(TryRecvError::Empty) => {}
                    }
                }
                break;
            }
            if self.due() {
                let _ = self.write_out();
            }
        }
    }

    fn wait(&self, rx: &Receiver<Msg>) -> Wait {
        let deadline = match (self.options.flush, self.oldest) {
            (FlushPolicy::Batch { interval, .. }, Some(oldest)) => Some(oldest + interval),
            _ => None,
        };
        match deadline {
            Some(deadline) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(msg) => Wait::Msg(msg),
                Err(RecvTimeoutError::Timeout) => Wait::Timeout,
                Err(RecvTimeoutError::Disconnected) => Wait::Closed,
            },
            None => match rx.recv() {
                Ok(msg) => Wait::Msg(msg),
                Err(_) => Wait::Closed,
            },
        }
    }

    fn due(&self) -> bool {
        if self.pending == 0 {
            return false;
        }
        if self.buf.len() >= MAX_PENDING_BYTES {
            return true;
        }
        match self.options.flush {
            FlushPolicy::EveryLine => true,
            FlushPolicy::Batch { lines, interval } => {
                self.pending >= lines as u64 || self.oldest.is_some_and(|t| t.elapsed() >= interval)
            }
            FlushPolicy::OnClose => false,
        }
    }

    fn write_buf(&mut self) -> std::io::Result<()> {
        if self.torn {
            self.file.write_all(b"\n")?;
            self.torn = false;
        }
        self.file.write_all(&self.buf)?;
        if self.options.fsync {
            self.file.sync_data()?;
        }
        Ok(())
    }

    fn write_out(&mut self) -> Result<(), String> {
        if self.pending == 0 {
            return Ok(());
        }
        let lines = self.pending;
        let result = self.write_buf();
        self.buf.clear();
        self.pending = 0;
        self.oldest = None;
        match result {
            Ok(()) => {
                self.shared.written.fetch_add(lines, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                // A failed write may have left part of a line: start the next write on a fresh line.
                self.torn = true;
                let message = error.to_string();
                tracing::error!(
                    target: crate::spans::TARGET,
                    error = %message,
                    lines,
                    "cost log write failed"
                );
                self.shared.count_dropped(lines);
                self.shared.set_error(message.clone());
                self.unreported = Some(message.clone());
                Err(message)
            }
        }
    }
}

enum Wait {
    Msg(Msg),
    Timeout,
    Closed,
}

// ---- reader --------------------------------------------------------------------------------------------

/// What is wrong with a line the reader skipped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ProblemKind {
    /// The line ends before its JSON does: a write cut short by a crash.
    Torn,
    /// The line is complete but not a cost record.
    Invalid,
}

/// A line the reader skipped, with why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct LineProblem {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub kind: ProblemKind,
    /// The parser's message.
    pub message: String,
}

/// A cost log as read: the records, and the lines that could not be read (reported, not fatal).
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CostLogContents {
    /// Records in file order.
    pub records: Vec<CostLogRecord>,
    /// Skipped lines.
    pub problems: Vec<LineProblem>,
}

impl CostLogContents {
    /// Sums the records.
    pub fn summary(&self) -> Result<CostSummary, TelemetryError> {
        CostSummary::from_records(&self.records)
    }
}

/// Reads a cost log file. Only I/O errors are fatal; bad lines are listed in
/// [`CostLogContents::problems`].
pub fn read_cost_log(path: impl AsRef<Path>) -> Result<CostLogContents, TelemetryError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| TelemetryError::CostLogIo {
        path: path.to_path_buf(),
        source,
    })?;
    parse_cost_log(BufReader::new(file)).map_err(|source| TelemetryError::CostLogIo {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses cost log lines from any reader.
pub fn parse_cost_log(reader: impl BufRead) -> std::io::Result<CostLogContents> {
    let mut contents = CostLogContents::default();
    for line in CostLogLines::new(reader) {
        match line? {
            Ok(record) => contents.records.push(record),
            Err(problem) => contents.problems.push(problem),
        }
    }
    Ok(contents)
}

/// The cost log line by line, for logs too large to hold in memory: each item is a record or the problem
/// with its line; blank lines are skipped; only I/O errors are `Err`.
#[derive(Debug)]
pub struct CostLogLines<R> {
    reader: R,
    number: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> CostLogLines<R> {
    /// Reads from `reader`.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            number: 0,
            buf: Vec::new(),
        }
    }
}

impl<R: BufRead> Iterator for CostLogLines<R> {
    type Item = std::io::Result<Result<CostLogRecord, LineProblem>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buf.clear();
            match self.reader.read_until(b'\n', &mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(error) => return Some(Err(error)),
            }
            self.number += 1;
            let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
            if text.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(serde_json::from_slice::<CostLogRecord>(text).map_err(
                |error| LineProblem {
                    line: self.number,
                    kind: if error.is_eof() {
                        ProblemKind::Torn
                    } else {
                        ProblemKind::Invalid
                    },
                    message: error.to_string(),
                },
            )));
        }
    }
}

/// Sums for one group of attempts.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Totals {
    /// Attempts.
    pub attempts: u64,
    /// Successful attempts.
    pub successes: u64,
    /// Accepted outputs.
    pub outputs: u64,
    /// CU charged.
    pub cu: Decimal,
    /// Amount charged, per provider currency.
    pub charged: BTreeMap<Currency, Decimal>,
}

impl Totals {
    fn add(&mut self, record: &CostLogRecord) -> Result<(), TelemetryError> {
        let overflow = || TelemetryError::CostLogRecord {
            message: "cost log sums overflowed".into(),
        };
        self.attempts += 1;
        if record.outcome == OutcomeCode::Success {
            self.successes += 1;
        }
        self.outputs += u64::from(record.outputs);
        self.cu = self.cu.checked_add(record.cu).ok_or_else(overflow)?;
        let slot = self.charged.entry(record.currency.clone()).or_default();
        *slot = slot.checked_add(record.charged).ok_or_else(overflow)?;
        Ok(())
    }

    /// The amount charged in one currency (zero if none).
    pub fn charged_in(&self, currency: &Currency) -> Decimal {
        self.charged.get(currency).copied().unwrap_or_default()
    }
}

/// Cost log sums: in total, and by provider, model, team, member and project.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CostSummary {
    /// Everything.
    pub total: Totals,
    /// By provider.
    pub by_provider: BTreeMap<ProviderId, Totals>,
    /// By provider and model.
    pub by_model: BTreeMap<ModelRef, Totals>,
    /// By team.
    pub by_team: BTreeMap<TeamId, Totals>,
    /// By member (`None`: attempts without a member).
    pub by_member: BTreeMap<Option<MemberId>, Totals>,
    /// By project (`None`: attempts without a project).
    pub by_project: BTreeMap<Option<ProjectId>, Totals>,
}

impl CostSummary {
    /// Sums records. Fails only on decimal overflow.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a CostLogRecord>,
    ) -> Result<Self, TelemetryError> {
        let mut summary = Self::default();
        for record in records {
            summary.add(record)?;
        }
        Ok(summary)
    }

    /// Adds one record (for streaming with [`CostLogLines`]). Fails only on decimal overflow.
    pub fn add(&mut self, record: &CostLogRecord) -> Result<(), TelemetryError> {
        self.total.add(record)?;
        self.by_provider
            .entry(record.provider.clone())
            .or_default()
            .add(record)?;
        self.by_model
            .entry(ModelRef::new(record.provider.clone(), record.model.clone()))
            .or_default()
            .add(record)?;
        self.by_team.entry(record.team.clone()).or_default().add(record)?;
        self.by_member
            .entry(record.member.clone())
            .or_default()
            .add(record)?;
        self.by_project
            .entry(record.project.clone())
            .or_default()
            .add(record)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_deserialise_from_config() {
        let options: CostLogOptions = serde_json::from_value(serde_json::json!({
            "flush": {"mode": "batch", "lines": 10, "interval": "250ms"},
            "fsync": true
        }))
        .unwrap();
        assert_eq!(
            options.flush,
            FlushPolicy::Batch {
                lines: 10,
                interval: Duration::from_millis(250)
            }
        );
        assert!(options.fsync);
        assert_eq!(options.capacity, CostLogOptions::default().capacity);
        let every: CostLogOptions =
            serde_json::from_value(serde_json::json!({"flush": {"mode": "every_line"}})).unwrap();
        assert_eq!(every.flush, FlushPolicy::EveryLine);
        assert!(serde_json::from_value::<CostLogOptions>(serde_json::json!({"fsynk": true})).is_err());
    }
}
