//! `genroute.toml`: raw serde types (strict, `deny_unknown_fields`) → a validated [`Config`].
//!
//! Every problem is a [`ConfigProblem`] naming the file, the line (when the key is in the file) and the
//! dotted key path. Validation collects every problem it can find rather than stopping at the first.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use genroute_core::{Decimal, Modality, Money, ProviderId, TeamId};
use genroute_ledger::AutoRefill;
use genroute_pricing::{Plan, PriceBook};
use genroute_router::breaker::BreakerConfig;
use genroute_router::retry::{RetryBudgetConfig, RetryPolicy};
use genroute_router::route::{
    AliasConfig, CandidateConfig, OnContentRejection, Policy, RouteConfig, RouteRule, RouteTable,
};
use genroute_telemetry::TelemetryConfig;
use secrecy::SecretString;
use serde::Deserialize;
use toml::Value;

/// The default config file name.
pub const DEFAULT_CONFIG_FILE: &str = "genroute.toml";
/// The default SQLite ledger file, relative to the config file's directory.
pub const DEFAULT_LEDGER_PATH: &str = ".genroute/ledger.db";
/// The default cost log, relative to the config file's directory.
pub const DEFAULT_COST_LOG_PATH: &str = ".genroute/cost.jsonl";

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The file (or other origin) read.
    pub file: String,
    /// 1-based line of the key, when it is in the file.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `routes.posters.candidates[1].provider`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: ", self.file)?,
            None => write!(f, "{}: ", self.file)?,
        }
        if !self.key.is_empty() {
            write!(f, "`{}`: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why a config file was refused: every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", display_problems(.problems))]
pub struct ConfigError {
    /// The problems, in file order where known.
    pub problems: Vec<ConfigProblem>,
}

fn display_problems(problems: &[ConfigProblem]) -> String {
    let n = problems.len();
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    if n == 1 {
        lines.join("")
    } else {
        format!("{n} problems:\n  {}", lines.join("\n  "))
    }
}

/// How `{ env = "NAME" }` references are treated when the variable is unset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvMode {
    /// An unset variable is an error (building a client that will call providers).
    Require,
    /// An unset variable becomes a placeholder and a warning (dry runs, budget commands, `config check`).
    Lenient,
}

/// One provider as configured: its adapter kind and its settings table (environment references resolved).
#[derive(Clone)]
pub struct ProviderSpec {
    /// The adapter, e.g. `fal` (the `type` key; the table's name when absent).
    pub kind: String,
    /// The adapter's own settings (everything but `type`), handed to the registered constructor.
    pub settings: toml::Table,
    /// Line of the provider's table, for messages.
    pub line: Option<usize>,
}

impl fmt::Debug for ProviderSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Settings may hold resolved secrets: show key names only.
        f.debug_struct("ProviderSpec")
            .field("kind", &self.kind)
            .field("settings", &self.settings.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where budgets are kept.
#[derive(Clone, Debug)]
pub enum LedgerSpec {
    /// An embedded SQLite file (the default: `.genroute/ledger.db` next to the config file).
    Sqlite {
        /// The database file.
        path: PathBuf,
    },
    /// A PostgreSQL database shared by several hosts.
    Postgres {
        /// Connection URL (may hold a password, so it is secret).
        url: SecretString,
    },
    /// In memory, lost on exit (tests, demos, single short-lived processes).
    Memory {
        /// What a long-lived process keeps; `None` keeps every hold and history entry.
        retention: Option<MemoryRetention>,
    },
}

/// Bounds on what an in-memory ledger keeps (see `MemoryLedger::with_retention`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRetention {
    /// The newest history entries kept per team.
    pub history: usize,
    /// How long a closed hold (and its idempotency key) is kept after it closed: replays inside the
    /// window return the first result; it must outlast every retry and late settle.
    pub window: Duration,
}

/// A team's budget as configured. Applied when the team is first created in the ledger; afterwards the
/// ledger is authoritative (change it with the CLI's `budget` commands or [`crate::Client`]'s helpers).
#[derive(Clone, Debug, PartialEq)]
pub struct TeamSpec {
    /// The team.
    pub team: TeamId,
    /// Plan allowance per billing period (CU).
    pub allowance: Money,
    /// Subscription date: its day of month anchors the billing periods.
    pub subscribed_at: DateTime<Utc>,
    /// Cap for members and API keys without their own (CU).
    pub default_cap: Option<Money>,
    /// Caps per member (CU).
    pub members: BTreeMap<String, Money>,
    /// Caps per project (CU).
    pub projects: BTreeMap<String, Money>,
    /// Caps per API key id (CU).
    pub api_keys: BTreeMap<String, Money>,
    /// Purchased top-ups granted when the team is created: amount and expiry.
    pub top_ups: Vec<(Money, DateTime<Utc>)>,
    /// Automatic refill.
    pub auto_refill: Option<AutoRefill>,
}

/// Who pays and which route, when a command or request does not say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defaults {
    /// Team.
    pub team: Option<String>,
    /// Member.
    pub member: Option<String>,
    /// Project.
    pub project: Option<String>,
    /// API key id.
    pub api_key: Option<String>,
    /// Route or alias for images.
    pub image_route: Option<String>,
    /// Route or alias for videos.
    pub video_route: Option<String>,
    /// Route or alias for audio.
    pub audio_route: Option<String>,
}

/// Router-wide settings from `[router]`.
#[derive(Clone, Debug, Default)]
pub struct RouterSection {
    /// Breaker thresholds.
    pub breaker: BreakerConfig,
    /// Retry budget.
    pub retry_budget: RetryBudgetConfig,
    /// Hold time-to-live.
    pub hold_ttl: Option<Duration>,
}

/// A validated `genroute.toml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (as given).
    pub origin: String,
    /// Directory relative paths are resolved against.
    pub base_dir: PathBuf,
    /// Providers by id.
    pub providers: BTreeMap<String, ProviderSpec>,
    /// Prices: the built-in catalogs with the file's overrides, plan and thresholds applied.
    pub prices: PriceBook,
    /// Routes by name.
    pub routes: BTreeMap<String, RouteConfig>,
    /// Aliases by name, resolved to routes (aliases naming aliases are flattened).
    pub aliases: BTreeMap<String, AliasConfig>,
    /// Router settings.
    pub router: RouterSection,
    /// The ledger backend.
    pub ledger: LedgerSpec,
    /// Teams by id.
    pub teams: BTreeMap<String, TeamSpec>,
    /// OpenTelemetry export settings.
    pub telemetry: TelemetryConfig,
    /// The JSON-lines cost log, if enabled.
    pub cost_log: Option<PathBuf>,
    /// `fsync` every cost log write.
    pub cost_log_fsync: bool,
    /// Defaults for callers and routes.
    pub defaults: Defaults,
    /// Things allowed but worth a look (unset environment variables in lenient mode, literal secrets).
    pub warnings: Vec<ConfigProblem>,
}

impl Config {
    /// Reads and validates a file, reading `{ env = "NAME" }` references from the process environment.
    pub fn load(path: impl AsRef<Path>, mode: EnvMode) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![ConfigProblem {
                file: origin.clone(),
                line: None,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
            }],
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Config::parse(&text, &origin, &base, mode, &|name| std::env::var(name).ok())
    }

    /// Validates config text. `env` answers environment references (pass a map in tests and demos).
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: &Path,
        mode: EnvMode,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![serde_problem(text, origin, &e, &[])],
        })?;
        let mut v = Validator {
            text,
            origin,
            env,
            mode,
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let config = v.validate(raw, base_dir);
        if v.problems.is_empty() {
            match config {
                Some(mut c) => {
                    c.warnings = v.warnings;
                    Ok(c)
                }
                None => Err(ConfigError {
                    problems: vec![v.problem(&[], "invalid configuration".into())],
                }),
            }
        } else {
            v.problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
            Err(ConfigError { problems: v.problems })
        }
    }

    /// The validated route table.
    pub fn route_table(&self) -> RouteTable {
        // Validation already built this table once; it cannot fail now.
        RouteTable::new(
            self.routes.iter().map(|(k, v)| (k.clone(), v.clone())),
            self.aliases.iter().map(|(k, v)| (k.clone(), v.clone())),
        )
        .unwrap_or_default()
    }

    /// A problem in `[providers.<id>]` reported by its adapter (an unknown key names its line).
    pub fn provider_problem(&self, id: &str, message: &str) -> ConfigProblem {
        let mut path = vec![k("providers"), k(id)];
        if let Some(field) = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
        {
            path.push(k(field));
        }
        let line = std::fs::read_to_string(&self.origin)
            .ok()
            .and_then(|text| locate(&text, &path))
            .or(self.providers.get(id).and_then(|p| p.line));
        ConfigProblem {
            file: self.origin.clone(),
            line,
            key: path_string(&path),
            message: message.to_owned(),
        }
    }

    /// Resolves a path from the file against its directory.
    pub fn resolve_path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Raw types: what the file may contain, nothing more.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    providers: BTreeMap<String, toml::Table>,
    #[serde(default)]
    pricing: RawPricing,
    #[serde(default)]
    routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    aliases: BTreeMap<String, AliasConfig>,
    #[serde(default)]
    router: RawRouter,
    #[serde(default)]
    ledger: RawLedger,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    telemetry: Option<toml::Table>,
    #[serde(default)]
    cost_log: RawCostLog,
    #[serde(default)]
    defaults: RawDefaults,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPricing {
    plan: Option<String>,
    #[serde(default)]
    builtin: Option<bool>,
    #[serde(default)]
    high_cost: BTreeMap<String, Value>,
    #[serde(default)]
    overrides: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    candidates: Vec<CandidateConfig>,
    #[serde(default)]
    policy: Policy,
    max_escalation: Option<Value>,
    #[serde(default)]
    allow_escalation: bool,
    cost_ceiling: Option<Value>,
    #[serde(default)]
    retry: RetryPolicy,
    #[serde(default)]
    on_content_rejection: OnContentRejection,
    #[serde(default, with = "humantime_serde::option")]
    attempt_timeout: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRouter {
    breaker: Option<BreakerConfig>,
    retry_budget: Option<RetryBudgetConfig>,
    #[serde(default, with = "humantime_serde::option")]
    hold_ttl: Option<Duration>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLedger {
    backend: Option<String>,
    path: Option<PathBuf>,
    url: Option<Value>,
    retention: Option<RawRetention>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    history: usize,
    #[serde(with = "humantime_serde")]
    window: Duration,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    #[serde(default)]
    teams: BTreeMap<String, RawTeam>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    allowance: Value,
    subscribed: Option<toml::value::Datetime>,
    default_cap: Option<Value>,
    #[serde(default)]
    members: BTreeMap<String, Value>,
    #[serde(default)]
    projects: BTreeMap<String, Value>,
    #[serde(default)]
    api_keys: BTreeMap<String, Value>,
    #[serde(default)]
    top_ups: Vec<RawTopUp>,
    auto_refill: Option<RawRefill>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopUp {
    amount: Value,
    expires: toml::value::Datetime,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefill {
    threshold: Value,
    amount: Value,
    #[serde(default = "three")]
    max_per_period: u32,
    #[serde(default = "ninety_days", with = "humantime_serde")]
    valid_for: Duration,
}

fn three() -> u32 {
    3
}

fn ninety_days() -> Duration {
    Duration::from_secs(90 * 24 * 3600)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCostLog {
    enabled: Option<bool>,
    path: Option<PathBuf>,
    #[serde(default)]
    fsync: bool,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    team: Option<String>,
    member: Option<String>,
    project: Option<String>,
    api_key: Option<String>,
    image_route: Option<String>,
    video_route: Option<String>,
    audio_route: Option<String>,
}

// ---------------------------------------------------------------------------------------------------
// Key paths and line lookup.

/// One step of a key path.
#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_owned())
}

fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                let bare = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if bare {
                    out.push_str(key);
                } else {
                    out.push_str(&format!("{key:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The 1-based line of a key path in TOML text (the deepest part of the path that exists).
fn locate(text: &str, path: &[Seg]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(text).ok()?;
    let mut best: Option<usize> = None;
    let mut table: Option<&DeTable<'_>> = Some(doc.get_ref());
    let mut current: Option<&toml::Spanned<DeValue<'_>>> = None;
    for seg in path {
        match seg {
            Seg::Key(key) => {
                let t = match (table, current) {
                    (Some(t), None) => t,
                    (_, Some(v)) => match v.get_ref() {
                        DeValue::Table(t) => t,
                        _ => break,
                    },
                    _ => break,
                };
                let Some((name, value)) = t.iter().find(|(name, _)| name.get_ref().as_ref() == key) else {
                    break;
                };
                best = Some(name.span().start);
                current = Some(value);
                table = None;
            }
            Seg::Index(i) => {
                let Some(v) = current else { break };
                let DeValue::Array(items) = v.get_ref() else { break };
                let Some(item) = items.get(*i) else { break };
                best = Some(item.span().start);
                current = Some(item);
            }
        }
    }
    best.map(|offset| line_of(text, offset))
}

/// The key path of the deepest key or value whose span contains `offset`.
fn path_at(text: &str, offset: usize) -> Vec<Seg> {
    use toml::de::{DeTable, DeValue};
    fn table(t: &DeTable<'_>, offset: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        for (key, value) in t.iter() {
            path.push(Seg::Key(key.get_ref().to_string()));
            if (key.span().contains(&offset) || value.span().contains(&offset)) && path.len() > best.len() {
                *best = path.clone();
            }
            walk_value(value.get_ref(), offset, path, best);
            path.pop();
        }
    }
    fn walk_value(v: &DeValue<'_>, offset: usize, path: &mut Vec<Seg>, best: &mut Vec<Seg>) {
        match v {
            DeValue::Table(t) => table(t, offset, path, best),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    if item.span().contains(&offset) && path.len() > best.len() {
                        *best = path.clone();
                    }
                    walk_value(item.get_ref(), offset, path, best);
                    path.pop();
                }
            }
            _ => {}
        }
    }
    let Ok(doc) = DeTable::parse(text) else {
        return Vec::new();
    };
    let mut best = Vec::new();
    table(doc.get_ref(), offset, &mut Vec::new(), &mut best);
    best
}

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()
        .iter()
        .take(offset.min(text.len()))
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Turns a serde error (toml's, with a span; or a sub-table's, without) into a problem.
fn serde_problem(text: &str, origin: &str, e: &dyn SerdeErr, base: &[Seg]) -> ConfigProblem {
    let message = e.message();
    let mut path = base.to_vec();
    if path.is_empty() {
        // A whole-file error with a span: name the key path at that place.
        if let Some(span) = e.span() {
            path = path_at(text, span.start);
        }
    }
    // "unknown field `x`": point at the key itself.
    if path
        .last()
        .is_some_and(|s| matches!(s, Seg::Key(k) if message.contains(&format!("`{k}`"))))
    {
        // the path already ends at the key
    } else if let Some(field) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    {
        path.push(k(field));
    }
    let line = e
        .span()
        .map(|s| line_of(text, s.start))
        .or_else(|| locate(text, &path));
    ConfigProblem {
        file: origin.to_owned(),
        line,
        key: path_string(&path),
        message: message.trim().to_owned(),
    }
}

trait SerdeErr {
    fn message(&self) -> String;
    fn span(&self) -> Option<std::ops::Range<usize>>;
}

impl SerdeErr for toml::de::Error {
    fn message(&self) -> String {
        toml::de::Error::message(self).to_owned()
    }
    fn span(&self) -> Option<std::ops::Range<usize>> {
        toml::de::Error::span(self)
    }
}

struct Unspanned(String);

impl SerdeErr for Unspanned {
    fn message(&self) -> String {
        self.0.clone()
    }
    fn span(&self) -> Option<std::ops::Range<usize>> {
        None
    }
}

/// Splits a pricing key path like `models."fal-ai/flux/dev".price` into segments.
fn split_dotted(key: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = key.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => {
                out.push(Seg::Key(std::mem::take(&mut cur)));
            }
            '[' if !quoted => {
                if !cur.is_empty() {
                    out.push(Seg::Key(std::mem::take(&mut cur)));
                }
                let mut digits = String::new();
                for d in chars.by_ref() {
                    if d == ']' {
                        break;
                    }
                    digits.push(d);
                }
                if let Ok(i) = digits.parse() {
                    out.push(Seg::Index(i));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(Seg::Key(cur));
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// Validation.

struct Validator<'a> {
    text: &'a str,
    origin: &'a str,
    env: &'a dyn Fn(&str) -> Option<String>,
    mode: EnvMode,
    problems: Vec<ConfigProblem>,
    warnings: Vec<ConfigProblem>,
}

const SECRET_KEYS: &[&str] = &["api_key", "api_secret", "token", "password", "secret", "url"];

impl Validator<'_> {
    fn problem(&self, path: &[Seg], message: String) -> ConfigProblem {
        ConfigProblem {
            file: self.origin.to_owned(),
            line: locate(self.text, path),
            key: path_string(path),
            message,
        }
    }

    fn err(&mut self, path: &[Seg], message: impl Into<String>) {
        let p = self.problem(path, message.into());
        self.problems.push(p);
    }

    fn warn(&mut self, path: &[Seg], message: impl Into<String>) {
        let p = self.problem(path, message.into());
        self.warnings.push(p);
    }

    fn decimal(&mut self, path: &[Seg], v: &Value) -> Option<Decimal> {
        let d = match v {
            Value::String(s) => Decimal::from_str_exact(s.trim()).ok(),
            Value::Integer(i) => Some(Decimal::from(*i)),
            Value::Float(f) => Decimal::from_str(&f.to_string()).ok(),
            _ => None,
        };
        if d.is_none() {
            self.err(path, format!("expected a decimal number, got {v}"));
        }
        d
    }

    /// An amount: `"500 CU"`, `"0.10 USD"`, or a bare number in `default` currency.
    fn money(&mut self, path: &[Seg], v: &Value, default_cu: bool) -> Option<Money> {
        let m = match v {
            Value::String(s) if s.split_whitespace().count() == 2 => Money::from_str(s).ok(),
            Value::String(_) | Value::Integer(_) | Value::Float(_) if default_cu => {
                let d = match v {
                    Value::String(s) => Decimal::from_str_exact(s.trim()).ok(),
                    Value::Integer(i) => Some(Decimal::from(*i)),
                    Value::Float(f) => Decimal::from_str(&f.to_string()).ok(),
                    _ => None,
                };
                d.map(Money::cu)
            }
            _ => None,
        };
        match m {
            None => {
                self.err(
                    path,
                    format!("expected an amount like \"500 CU\" or \"0.10 USD\", got {v}"),
                );
                None
            }
            Some(m) if m.is_negative() => {
                self.err(path, format!("must not be negative, got {m}"));
                None
            }
            Some(m) => Some(m),
        }
    }

    fn cu(&mut self, path: &[Seg], v: &Value) -> Option<Money> {
        let m = self.money(path, v, true)?;
        if m.currency() != &genroute_core::Currency::Cu {
            self.err(path, format!("budgets are in CU, got {m}"));
            return None;
        }
        Some(m)
    }

    fn date(&mut self, path: &[Seg], d: &toml::value::Datetime) -> Option<DateTime<Utc>> {
        let s = d.to_string();
        if let Ok(t) = DateTime::parse_from_rfc3339(&s) {
            return Some(t.with_timezone(&Utc));
        }
        if let Ok(day) = NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            && let Some(t) = day.and_hms_opt(0, 0, 0)
        {
            return Some(Utc.from_utc_datetime(&t));
        }
        self.err(
            path,
            format!("expected a date (2026-11-15) or an RFC 3339 date-time, got {s}"),
        );
        None
    }

    /// Replaces `{ env = "NAME" }` tables by the variable's value, recursively.
    fn resolve_env(&mut self, path: &mut Vec<Seg>, v: &mut Value) {
        match v {
            Value::Table(t) if t.len() == 1 && t.contains_key("env") => {
                let name = match t.get("env") {
                    Some(Value::String(name)) => name.clone(),
                    _ => {
                        self.err(path, "`env` must name an environment variable");
                        return;
                    }
                };
                match (self.env)(&name) {
                    Some(value) => *v = Value::String(value),
                    None => match self.mode {
                        EnvMode::Require => self.err(path, format!("environment variable {name} is not set")),
                        EnvMode::Lenient => {
                            self.warn(path, format!("environment variable {name} is not set"));
                            *v = Value::String(format!("unset-{name}"));
                        }
                    },
                }
            }
            Value::Table(t) => {
                for (key, value) in t.iter_mut() {
                    path.push(k(key));
                    self.resolve_env(path, value);
                    path.pop();
                }
            }
            Value::Array(items) => {
                for (i, value) in items.iter_mut().enumerate() {
                    path.push(Seg::Index(i));
                    self.resolve_env(path, value);
                    path.pop();
                }
            }
            Value::String(_) => {
                if let Some(Seg::Key(key)) = path.last()
                    && SECRET_KEYS.contains(&key.as_str())
                    && key != "url"
                {
                    let key = key.clone();
                    self.warn(
                            path,
                            format!(
                                "a literal secret; prefer `{key} = {{ env = \"NAME\" }}` so the file holds no secret"
                            ),
                        );
                }
            }
            _ => {}
        }
    }

    fn validate(&mut self, raw: RawConfig, base_dir: &Path) -> Option<Config> {
        // Providers.
        let mut providers = BTreeMap::new();
        for (id, table) in raw.providers {
            let mut path = vec![k("providers"), k(&id)];
            if ProviderId::new(&id).is_err() {
                self.err(&path, "not a valid provider id");
                continue;
            }
            let mut value = Value::Table(table);
            self.resolve_env(&mut path, &mut value);
            let Value::Table(mut settings) = value else {
                continue;
            };
            let kind = match settings.remove("type") {
                None => id.clone(),
                Some(Value::String(s)) => s,
                Some(other) => {
                    path.push(k("type"));
                    self.err(&path, format!("expected a provider type name, got {other}"));
                    continue;
                }
            };
            providers.insert(
                id,
                ProviderSpec {
                    kind,
                    settings,
                    line: locate(self.text, &path),
                },
            );
        }

        // Prices.
        let prices = self.prices(&raw.pricing);

        // Routes.
        let mut routes = BTreeMap::new();
        for (name, r) in raw.routes {
            let base = vec![k("routes"), k(&name)];
            if r.candidates.is_empty() {
                self.err(&base, "a route needs at least one candidate");
            }
            for (i, c) in r.candidates.iter().enumerate() {
                if !providers.contains_key(c.provider.as_str()) {
                    let mut p = base.clone();
                    p.extend([k("candidates"), Seg::Index(i), k("provider")]);
                    self.err(
                        &p,
                        format!(
                            "unknown provider {:?}: no [providers.{}] table",
                            c.provider.as_str(),
                            c.provider
                        ),
                    );
                } else if let Some(book) = &prices
                    && !book.has_model(&c.target())
                {
                    let mut p = base.clone();
                    p.extend([k("candidates"), Seg::Index(i), k("model")]);
                    self.warn(
                        &p,
                        format!(
                            "no price for {}: the router will skip it (add a [[pricing.overrides]] entry)",
                            c.target()
                        ),
                    );
                }
            }
            let max_escalation = match &r.max_escalation {
                None => Decimal::ONE,
                Some(v) => {
                    let mut p = base.clone();
                    p.push(k("max_escalation"));
                    match self.decimal(&p, v) {
                        Some(d) if d < Decimal::ONE => {
                            self.err(&p, format!("must be at least 1, got {d}"));
                            Decimal::ONE
                        }
                        Some(d) => d,
                        None => Decimal::ONE,
                    }
                }
            };
            let cost_ceiling = r.cost_ceiling.as_ref().and_then(|v| {
                let mut p = base.clone();
                p.push(k("cost_ceiling"));
                self.money(&p, v, false)
            });
            let mut route = RouteConfig::new(r.candidates);
            route.policy = r.policy;
            route.max_escalation = max_escalation;
            route.allow_escalation = r.allow_escalation;
            route.cost_ceiling = cost_ceiling;
            route.retry = r.retry;
            route.on_content_rejection = r.on_content_rejection;
            route.attempt_timeout = r.attempt_timeout;
            routes.insert(name, route);
        }

        // Aliases: may name routes or other aliases; flattened, cycles refused.
        let aliases = self.aliases(&raw.aliases, &routes);

        // Ledger.
        let ledger = self.ledger(raw.ledger, base_dir);

        // Budgets.
        let mut teams = BTreeMap::new();
        for (id, t) in raw.budgets.teams {
            let base = vec![k("budgets"), k("teams"), k(&id)];
            if let Some(spec) = self.team(&base, &id, t) {
                teams.insert(id, spec);
            }
        }

        // Telemetry.
        let telemetry = match raw.telemetry {
            None => TelemetryConfig::default(),
            Some(table) => {
                let mut path = vec![k("telemetry")];
                let mut value = Value::Table(table);
                self.resolve_env(&mut path, &mut value);
                match value.try_into::<TelemetryConfig>() {
                    Ok(t) => t,
                    Err(e) => {
                        let p =
                            serde_problem(self.text, self.origin, &Unspanned(e.message().to_owned()), &path);
                        self.problems.push(p);
                        TelemetryConfig::default()
                    }
                }
            }
        };

        // Cost log.
        let cost_log = if raw.cost_log.enabled.unwrap_or(true) {
            Some(
                raw.cost_log
                    .path
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_COST_LOG_PATH)),
            )
        } else {
            None
        };

        // Defaults.
        let d = raw.defaults;
        if let Some(team) = &d.team
            && !teams.contains_key(team)
        {
            self.err(
                &[k("defaults"), k("team")],
                format!("unknown team {team:?}: no [budgets.teams.{team}] table"),
            );
        }
        for (key, route) in [
            ("image_route", &d.image_route),
            ("video_route", &d.video_route),
            ("audio_route", &d.audio_route),
        ] {
            if let Some(route) = route
                && !routes.contains_key(route)
                && !aliases.contains_key(route)
            {
                self.err(
                    &[k("defaults"), k(key)],
                    format!("unknown route or alias {route:?}"),
                );
            }
        }

        // The router's own consistency check (empty routes, names used twice).
        if self.problems.is_empty()
            && let Err(e) = RouteTable::new(
                routes.iter().map(|(k, v)| (k.clone(), v.clone())),
                aliases.iter().map(|(k, v)| (k.clone(), v.clone())),
            )
        {
            self.err(&[k("routes")], e.to_string());
        }

        let prices = prices?;
        let router = RouterSection {
            breaker: raw.router.breaker.unwrap_or_default(),
            retry_budget: raw.router.retry_budget.unwrap_or_default(),
            hold_ttl: raw.router.hold_ttl,
        };
        Some(Config {
            origin: self.origin.to_owned(),
            base_dir: base_dir.to_path_buf(),
            providers,
            prices,
            routes,
            aliases,
            router,
            ledger: ledger?,
            teams,
            telemetry,
            cost_log,
            cost_log_fsync: raw.cost_log.fsync,
            defaults: Defaults {
                team: d.team,
                member: d.member,
                project: d.project,
                api_key: d.api_key,
                image_route: d.image_route,
                video_route: d.video_route,
                audio_route: d.audio_route,
            },
            warnings: Vec::new(),
        })
    }

    fn prices(&mut self, raw: &RawPricing) -> Option<PriceBook> {
        let mut builder = if raw.builtin.unwrap_or(true) {
            match PriceBook::builtin_builder() {
                Ok(b) => b,
                Err(e) => {
                    self.err(&[k("pricing")], e.to_string());
                    return None;
                }
            }
        } else {
            PriceBook::builder()
        };
        if let Some(plan) = &raw.plan {
            let p = match plan.as_str() {
                "free" => Some(Plan::Free),
                "starter" => Some(Plan::Starter),
                "pro" => Some(Plan::Pro),
                "max" => Some(Plan::Max),
                "enterprise" => Some(Plan::Enterprise),
                _ => None,
            };
            match p {
                Some(p) => builder = builder.plan(p),
                None => self.err(
                    &[k("pricing"), k("plan")],
                    format!("unknown plan {plan:?}: free, starter, pro, max or enterprise"),
                ),
            }
        }
        for (modality, v) in &raw.high_cost {
            let path = [k("pricing"), k("high_cost"), k(modality)];
            let m = match modality.as_str() {
                "image" => Some(Modality::Image),
                "video" => Some(Modality::Video),
                "audio" => Some(Modality::Audio),
                "edit" => Some(Modality::Edit),
                _ => None,
            };
            let Some(m) = m else {
                self.err(&path, "unknown modality: image, video, audio or edit");
                continue;
            };
            if let Some(amount) = self.money(&path, v, false) {
                builder = builder.high_cost_threshold(m, amount);
            }
        }
        let mut fragments = Vec::new();
        for (i, table) in raw.overrides.iter().enumerate() {
            let path = vec![k("pricing"), k("overrides"), Seg::Index(i)];
            match toml::to_string(table) {
                Ok(text) => {
                    let origin = format!("{}#pricing.overrides[{i}]", self.origin);
                    // Check each fragment alone first, so an error can be mapped back to its key.
                    let base = if raw.builtin.unwrap_or(true) {
                        PriceBook::builtin_builder().unwrap_or_else(|_| PriceBook::builder())
                    } else {
                        PriceBook::builder()
                    };
                    if let Err(e) = base.overrides_toml(text.clone(), origin.clone()).build()
                        && let Some(ce) = e.catalog()
                    {
                        let mut p = path.clone();
                        p.extend(split_dotted(&ce.key));
                        self.err(&p, ce.message.clone());
                        continue;
                    }
                    fragments.push((text, origin));
                }
                Err(e) => self.err(&path, e.to_string()),
            }
        }
        for (text, origin) in fragments {
            builder = builder.overrides_toml(text, origin);
        }
        match builder.build() {
            Ok(book) => Some(book),
            Err(e) => {
                let path = match e.catalog() {
                    Some(ce) => {
                        let mut p = vec![k("pricing"), k("overrides")];
                        p.extend(split_dotted(&ce.key));
                        p
                    }
                    None => vec![k("pricing")],
                };
                self.err(&path, e.to_string());
                None
            }
        }
    }

    fn aliases(
        &mut self,
        raw: &BTreeMap<String, AliasConfig>,
        routes: &BTreeMap<String, RouteConfig>,
    ) -> BTreeMap<String, AliasConfig> {
        // Every target must be a route or an alias.
        let mut ok = true;
        for (name, a) in raw {
            if routes.contains_key(name) {
                self.err(
                    &[k("aliases"), k(name)],
                    format!("{name:?} is both a route and an alias"),
                );
                ok = false;
            }
            let targets = a
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    (
                        vec![k("aliases"), k(name), k("rules"), Seg::Index(i), k("route")],
                        &r.route,
                    )
                })
                .chain(std::iter::once((
                    vec![k("aliases"), k(name), k("default")],
                    &a.default,
                )));
            for (path, target) in targets {
                if !routes.contains_key(target) && !raw.contains_key(target) {
                    self.err(
                        &path,
                        format!("unknown route {target:?}: no [routes.{target}] or [aliases.{target}] table"),
                    );
                    ok = false;
                }
            }
        }
        if !ok {
            return BTreeMap::new();
        }
        let mut out = BTreeMap::new();
        for name in raw.keys() {
            let mut stack = Vec::new();
            match flatten(name, raw, &mut stack) {
                Ok(a) => {
                    out.insert(name.clone(), a);
                }
                Err(cycle) => self.err(
                    &[k("aliases"), k(name)],
                    format!("alias cycle: {}", cycle.join(" → ")),
                ),
            }
        }
        out
    }

    fn ledger(&mut self, raw: RawLedger, base_dir: &Path) -> Option<LedgerSpec> {
        let backend = raw
            .backend
            .as_deref()
            .unwrap_or(if raw.url.is_some() { "postgres" } else { "sqlite" });
        if raw.retention.is_some() && backend != "memory" {
            self.err(
                &[k("ledger"), k("retention")],
                "`retention` is for the memory backend (SQLite and PostgreSQL keep their history)",
            );
        }
        match backend {
            "sqlite" => {
                if raw.url.is_some() {
                    self.err(
                        &[k("ledger"), k("url")],
                        "`url` is for the postgres backend; use `path`",
                    );
                }
                let path = raw.path.unwrap_or_else(|| PathBuf::from(DEFAULT_LEDGER_PATH));
                let path = if path.is_absolute() {
                    path
                } else {
                    base_dir.join(path)
                };
                Some(LedgerSpec::Sqlite { path })
            }
            "memory" => {
                for (key, given) in [("path", raw.path.is_some()), ("url", raw.url.is_some())] {
                    if given {
                        self.err(
                            &[k("ledger"), k(key)],
                            format!("`{key}` has no meaning for the memory backend"),
                        );
                    }
                }
                let retention = match raw.retention {
                    Some(r) if r.history == 0 || r.window.is_zero() => {
                        self.err(
                            &[k("ledger"), k("retention")],
                            "`history` and `window` must both be above zero (omit `retention` to keep everything)",
                        );
                        None
                    }
                    Some(r) => Some(MemoryRetention {
                        history: r.history,
                        window: r.window,
                    }),
                    None => None,
                };
                Some(LedgerSpec::Memory { retention })
            }
            "postgres" => {
                if raw.path.is_some() {
                    self.err(
                        &[k("ledger"), k("path")],
                        "`path` is for the sqlite backend; use `url`",
                    );
                }
                let Some(mut url) = raw.url else {
                    self.err(
                        &[k("ledger")],
                        "the postgres backend needs `url` (e.g. url = { env = \"DATABASE_URL\" })",
                    );
                    return None;
                };
                let mut path = vec![k("ledger"), k("url")];
                self.resolve_env(&mut path, &mut url);
                match url {
                    Value::String(s) => Some(LedgerSpec::Postgres {
                        url: SecretString::from(s),
                    }),
                    other => {
                        self.err(
                            &path,
                            format!("expected a URL string or {{ env = \"NAME\" }}, got {other}"),
                        );
                        None
                    }
                }
            }
            other => {
                self.err(
                    &[k("ledger"), k("backend")],
                    format!("unknown ledger backend {other:?}: sqlite, postgres or memory"),
                );
                None
            }
        }
    }

    fn team(&mut self, base: &[Seg], id: &str, t: RawTeam) -> Option<TeamSpec> {
        let at = |key: &str| {
            let mut p = base.to_vec();
            p.push(k(key));
            p
        };
        let team = match TeamId::new(id) {
            Ok(t) => t,
            Err(e) => {
                self.err(base, e.to_string());
                return None;
            }
        };
        let allowance = self.cu(&at("allowance"), &t.allowance);
        let subscribed_at = match &t.subscribed {
            Some(d) => self.date(&at("subscribed"), d),
            // Unset: periods start on the 1st of the month (deterministic, so reloads compare equal).
            None => {
                let now = Utc::now();
                NaiveDate::from_ymd_opt(chrono::Datelike::year(&now), chrono::Datelike::month(&now), 1)
                    .and_then(|d| d.and_hms_opt(0, 0, 0))
                    .map(|t| Utc.from_utc_datetime(&t))
            }
        };
        let default_cap = t
            .default_cap
            .as_ref()
            .and_then(|v| self.cu(&at("default_cap"), v));
        let caps = |key: &str, map: &BTreeMap<String, Value>, this: &mut Self| {
            let mut out = BTreeMap::new();
            for (name, v) in map {
                let mut p = at(key);
                p.push(k(name));
                if let Some(m) = this.cu(&p, v) {
                    out.insert(name.clone(), m);
                }
            }
            out
        };
        let members = caps("members", &t.members, self);
        let projects = caps("projects", &t.projects, self);
        let api_keys = caps("api_keys", &t.api_keys, self);
        let mut top_ups = Vec::new();
        for (i, tu) in t.top_ups.iter().enumerate() {
            let mut p = at("top_ups");
            p.push(Seg::Index(i));
            let mut pa = p.clone();
            pa.push(k("amount"));
            let mut pe = p.clone();
            pe.push(k("expires"));
            if let (Some(a), Some(e)) = (self.cu(&pa, &tu.amount), self.date(&pe, &tu.expires)) {
                top_ups.push((a, e));
            }
        }
        let auto_refill = match &t.auto_refill {
            None => None,
            Some(r) => {
                let mut pt = at("auto_refill");
                pt.push(k("threshold"));
                let mut pa = at("auto_refill");
                pa.push(k("amount"));
                match (self.cu(&pt, &r.threshold), self.cu(&pa, &r.amount)) {
                    (Some(threshold), Some(amount)) => Some(AutoRefill {
                        threshold,
                        amount,
                        max_per_period: r.max_per_period,
                        valid_for: r.valid_for,
                    }),
                    _ => None,
                }
            }
        };
        Some(TeamSpec {
            team,
            allowance: allowance?,
            subscribed_at: subscribed_at?,
            default_cap,
            members,
            projects,
            api_keys,
            top_ups,
            auto_refill,
        })
    }
}

/// Flattens an alias whose targets may be aliases into one whose targets are routes.
fn flatten(
    name: &str,
    raw: &BTreeMap<String, AliasConfig>,
    stack: &mut Vec<String>,
) -> Result<AliasConfig, Vec<String>> {
    if stack.iter().any(|s| s == name) {
        let mut cycle = stack.clone();
        cycle.push(name.to_owned());
        return Err(cycle);
    }
    let Some(alias) = raw.get(name) else {
        // A route: the trivial alias.
        return Ok(AliasConfig {
            rules: Vec::new(),
            default: name.to_owned(),
        });
    };
    stack.push(name.to_owned());
    let mut rules = Vec::new();
    for rule in &alias.rules {
        let inner = flatten(&rule.route, raw, stack)?;
        for r in inner.rules {
            // Both conditions must hold; a key required with two different values never matches.
            let mut when = rule.when.clone();
            let mut consistent = true;
            for (key, value) in r.when {
                match when.get(&key) {
                    Some(existing) if existing != &value => consistent = false,
                    _ => {
                        when.insert(key, value);
                    }
                }
            }
            if consistent {
                rules.push(RouteRule { when, route: r.route });
            }
        }
        rules.push(RouteRule {
            when: rule.when.clone(),
            route: inner.default,
        });
    }
    let inner = flatten(&alias.default, raw, stack)?;
    rules.extend(inner.rules);
    stack.pop();
    Ok(AliasConfig {
        rules,
        default: inner.default,
    })
}

/// Names every route and alias of a config, for messages.
pub fn route_names(config: &Config) -> BTreeSet<String> {
    config
        .routes
        .keys()
        .chain(config.aliases.keys())
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| (name == "FAL_KEY").then(|| "id:secret".to_owned());
        Config::parse(text, "genroute.toml", Path::new("/tmp/x"), EnvMode::Require, &env)
    }

    const GOOD: &str = r#"
[providers.fal]
api_key = { env = "FAL_KEY" }

[routes.posters]
candidates = [{ provider = "fal", model = "fal-ai/flux/dev" }]
cost_ceiling = "0.10 USD"

[aliases.image]
default = "posters"

[budgets.teams.acme]
allowance = "5000 CU"
subscribed = 2026-11-15
members = { alice = "100 CU" }
"#;

    #[test]
    fn a_good_file_validates() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.providers["fal"].kind, "fal");
        assert_eq!(
            c.providers["fal"].settings.get("api_key"),
            Some(&Value::String("id:secret".into()))
        );
        assert_eq!(
            c.routes["posters"].cost_ceiling,
            Some(Money::usd(Decimal::new(10, 2)))
        );
        assert_eq!(c.teams["acme"].members["alice"], Money::cu(Decimal::from(100)));
        assert!(matches!(c.ledger, LedgerSpec::Sqlite { ref path } if path.ends_with(".genroute/ledger.db")));
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn a_memory_ledger_may_bound_what_it_keeps() {
        let c = parse(&format!(
            "{GOOD}\n[ledger]\nbackend = \"memory\"\nretention = {{ history = 5000, window = \"1h\" }}\n"
        ))
        .unwrap();
        assert!(matches!(
            c.ledger,
            LedgerSpec::Memory {
                retention: Some(MemoryRetention { history: 5000, window })
            } if window == Duration::from_secs(3600)
        ));
        let c = parse(&format!("{GOOD}\n[ledger]\nbackend = \"memory\"\n")).unwrap();
        assert!(matches!(c.ledger, LedgerSpec::Memory { retention: None }));
    }

    #[test]
    fn retention_is_refused_where_it_means_nothing_and_when_it_keeps_nothing() {
        let keys = |text: String| -> Vec<(String, String)> {
            parse(&text)
                .unwrap_err()
                .problems
                .into_iter()
                .map(|p| (p.key, p.message))
                .collect()
        };
        let sqlite = keys(format!(
            "{GOOD}\n[ledger]\nretention = {{ history = 10, window = \"1h\" }}\n"
        ));
        assert_eq!(sqlite.len(), 1, "{sqlite:?}");
        assert_eq!(sqlite[0].0, "ledger.retention");
        assert!(sqlite[0].1.contains("memory backend"), "{sqlite:?}");

        let zero = keys(format!(
            "{GOOD}\n[ledger]\nbackend = \"memory\"\nretention = {{ history = 0, window = \"1h\" }}\n"
        ));
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert_eq!(zero[0].0, "ledger.retention");
        assert!(zero[0].1.contains("above zero"), "{zero:?}");

        let path = keys(format!(
            "{GOOD}\n[ledger]\nbackend = \"memory\"\npath = \"x.db\"\n"
        ));
        assert_eq!(path.len(), 1, "{path:?}");
        assert_eq!(path[0].0, "ledger.path");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = GOOD.replace("cost_ceiling", "cost_cieling");
        let e = parse(&text).unwrap_err();
        let p = &e.problems[0];
        assert_eq!(p.line, Some(7), "{e}");
        assert!(p.message.contains("unknown field `cost_cieling`"), "{e}");
        assert_eq!(p.key, "routes.posters.cost_cieling");
        let e = parse(&GOOD.replace("subscribed = 2026-11-15", "subscribed = \"soon\"")).unwrap_err();
        assert_eq!(e.problems[0].key, "budgets.teams.acme.subscribed", "{e}");
        assert_eq!(e.problems[0].line, Some(14), "{e}");
    }

    #[test]
    fn dangling_provider_and_route_are_errors_with_lines() {
        let text = GOOD
            .replace("provider = \"fal\"", "provider = \"fall\"")
            .replace("default = \"posters\"", "default = \"poster\"");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        assert_eq!(e.problems[0].key, "routes.posters.candidates[0].provider");
        assert_eq!(e.problems[0].line, Some(6));
        assert!(e.problems[0].message.contains("unknown provider \"fall\""));
        assert_eq!(e.problems[1].key, "aliases.image.default");
        assert_eq!(e.problems[1].line, Some(10));
        assert!(
            e.to_string()
                .contains("genroute.toml:10: `aliases.image.default`"),
            "{e}"
        );
    }

    #[test]
    fn alias_cycles_are_refused() {
        let text = format!("{GOOD}\n[aliases.a]\ndefault = \"b\"\n[aliases.b]\ndefault = \"a\"\n");
        let e = parse(&text).unwrap_err();
        assert!(e.to_string().contains("alias cycle: a → b → a"), "{e}");
    }

    #[test]
    fn aliases_of_aliases_are_flattened() {
        let text = format!(
            "{GOOD}\n[routes.drafts]\ncandidates = [{{ provider = \"fal\", model = \"fal-ai/flux/schnell\" }}]\n\
             [aliases.pic]\nrules = [{{ when = {{ plan = \"free\" }}, route = \"drafts\" }}]\ndefault = \"image\"\n\
             [aliases.top]\nrules = [{{ when = {{ tier = \"x\" }}, route = \"pic\" }}]\ndefault = \"posters\"\n"
        );
        let c = parse(&text).unwrap();
        let table = c.route_table();
        let meta = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect()
        };
        assert_eq!(
            table
                .resolve("top", &meta(&[("tier", "x"), ("plan", "free")]))
                .unwrap()
                .0,
            "drafts"
        );
        assert_eq!(
            table.resolve("top", &meta(&[("tier", "x")])).unwrap().0,
            "posters"
        );
        assert_eq!(
            table.resolve("top", &meta(&[("plan", "free")])).unwrap().0,
            "posters"
        );
        assert_eq!(table.resolve("pic", &meta(&[])).unwrap().0, "posters");
    }

    #[test]
    fn negative_prices_and_amounts_are_refused_with_lines() {
        let text = format!(
            "{GOOD}\n[[pricing.overrides]]\nprovider = \"fal\"\n[pricing.overrides.models.\"fal-ai/flux/dev\"]\n\
             kind = \"per_output\"\nprice = \"-0.01\"\nverified = 2026-12-01\n"
        );
        let e = parse(&text).unwrap_err();
        let p = &e.problems[0];
        assert_eq!(
            p.key, "pricing.overrides[0].models.\"fal-ai/flux/dev\".price",
            "{e}"
        );
        assert_eq!(p.line, Some(21), "{e}");
        assert!(p.message.contains("negative"), "{e}");

        let e = parse(&GOOD.replace("\"100 CU\"", "\"-5 CU\"")).unwrap_err();
        assert_eq!(e.problems[0].key, "budgets.teams.acme.members.alice");
        assert_eq!(e.problems[0].line, Some(15));
    }

    #[test]
    fn overrides_apply() {
        let text = format!(
            "{GOOD}\n[[pricing.overrides]]\nprovider = \"fal\"\n[pricing.overrides.models.\"fal-ai/flux/dev\"]\n\
             kind = \"per_output\"\nprice = \"0.02\"\nverified = 2026-12-01\n"
        );
        let c = parse(&text).unwrap();
        let target = genroute_core::ModelRef::new(
            ProviderId::new("fal").unwrap(),
            genroute_core::ModelId::new("fal-ai/flux/dev").unwrap(),
        );
        let job: genroute_core::Job = genroute_core::ImageJobSpec::new("x").build().unwrap().into();
        assert_eq!(
            c.prices.quote(&target, &job).unwrap().cost,
            Money::usd(Decimal::new(2, 2))
        );
    }

    #[test]
    fn missing_env_is_an_error_or_a_warning() {
        let text = GOOD.replace("FAL_KEY", "NOPE_KEY");
        let e = parse(&text).unwrap_err();
        assert!(
            e.to_string().contains("environment variable NOPE_KEY is not set"),
            "{e}"
        );
        assert_eq!(e.problems[0].key, "providers.fal.api_key");
        let c = Config::parse(&text, "g.toml", Path::new("."), EnvMode::Lenient, &|_| None).unwrap();
        assert_eq!(c.warnings.len(), 1);
    }

    #[test]
    fn literal_secrets_warn() {
        let text = GOOD.replace("{ env = \"FAL_KEY\" }", "\"id:literal\"");
        let c = parse(&text).unwrap();
        assert!(c.warnings[0].message.contains("literal secret"));
        assert!(!format!("{:?}", c.providers["fal"]).contains("literal"));
    }

    #[test]
    fn the_reference_example_is_valid() {
        let doc = include_str!("../../../docs/configuration.md");
        let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let c = Config::parse(
            &doc[start..end],
            "configuration.md",
            Path::new("."),
            EnvMode::Lenient,
            &|_| None,
        )
        .unwrap();
        assert_eq!(c.providers.len(), 4);
        assert_eq!(c.routes.len(), 3);
        assert_eq!(c.teams["acme"].top_ups.len(), 1);
        assert!(c.teams["acme"].auto_refill.is_some());
        assert_eq!(c.telemetry.service_name.as_deref(), Some("poster-service"));
        // Unset variables are warnings in lenient mode; nothing else is.
        assert!(
            c.warnings.iter().all(|w| w.message.contains("is not set")),
            "{:?}",
            c.warnings
        );
    }
}
