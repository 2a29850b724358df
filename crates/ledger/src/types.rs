//! The ledger's public data types: scopes, holds, settlements, usage, balances, history entries and team
//! configuration.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use genroute_core::{
    ApiKeyId, Caller, Decimal, IdempotencyKey, JobId, MemberId, ModelId, Money, ProjectId, ProviderId, TeamId,
};
use serde::{Deserialize, Serialize};

/// A place a limit can apply: the team pool, or a cap on a member, a project or an API key of a team.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The team's pooled balance.
    Team(TeamId),
    /// One member of a team.
    Member(TeamId, MemberId),
    /// One project of a team.
    Project(TeamId, ProjectId),
    /// One API key of a team.
    ApiKey(TeamId, ApiKeyId),
}

impl Scope {
    /// The team the scope belongs to.
    pub fn team(&self) -> &TeamId {
        match self {
            Scope::Team(t) | Scope::Member(t, _) | Scope::Project(t, _) | Scope::ApiKey(t, _) => t,
        }
    }

    /// Which level of the hierarchy this is.
    pub fn kind(&self) -> ScopeKind {
        match self {
            Scope::Team(_) => ScopeKind::Team,
            Scope::Member(..) => ScopeKind::Member,
            Scope::Project(..) => ScopeKind::Project,
            Scope::ApiKey(..) => ScopeKind::ApiKey,
        }
    }

    /// The scope's own identifier inside its team (empty for the team itself).
    pub fn local_id(&self) -> &str {
        match self {
            Scope::Team(_) => "",
            Scope::Member(_, m) => m.as_str(),
            Scope::Project(_, p) => p.as_str(),
            Scope::ApiKey(_, k) => k.as_str(),
        }
    }

    /// Every scope a caller draws on, broadest first: team, then member, project and API key when present.
    pub fn of_caller(caller: &Caller) -> Vec<Scope> {
        let team = caller.team.clone();
        let mut scopes = vec![Scope::Team(team.clone())];
        if let Some(m) = &caller.member {
            scopes.push(Scope::Member(team.clone(), m.clone()));
        }
        if let Some(p) = &caller.project {
            scopes.push(Scope::Project(team.clone(), p.clone()));
        }
        if let Some(k) = &caller.api_key {
            scopes.push(Scope::ApiKey(team, k.clone()));
        }
        scopes
    }

    pub(crate) fn key(&self) -> ScopeKey {
        ScopeKey {
            kind: self.kind(),
            id: Arc::from(self.local_id()),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Team(t) => write!(f, "team {t}"),
            Scope::Member(t, m) => write!(f, "member {m} of team {t}"),
            Scope::Project(t, p) => write!(f, "project {p} of team {t}"),
            Scope::ApiKey(t, k) => write!(f, "api key {k} of team {t}"),
        }
    }
}

/// The level of a [`Scope`]; also the fixed order in which scopes are checked and stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScopeKind {
    /// The team pool.
    Team,
    /// A member.
    Member,
    /// A project.
    Project,
    /// An API key.
    ApiKey,
}

impl ScopeKind {
    pub(crate) fn code(self) -> i64 {
        match self {
            ScopeKind::Team => 0,
            ScopeKind::Member => 1,
            ScopeKind::Project => 2,
            ScopeKind::ApiKey => 3,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => ScopeKind::Team,
            1 => ScopeKind::Member,
            2 => ScopeKind::Project,
            3 => ScopeKind::ApiKey,
            _ => return None,
        })
    }
}

/// A scope inside a known team.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) struct ScopeKey {
    pub(crate) kind: ScopeKind,
    pub(crate) id: Arc<str>,
}

impl From<(ScopeKind, &str)> for ScopeKey {
    fn from((kind, id): (ScopeKind, &str)) -> Self {
        ScopeKey {
            kind,
            id: Arc::from(id),
        }
    }
}

/// A scope key seen by reference, so maps keyed by [`ScopeKey`] can be searched with a `(kind, id)` pair
/// borrowed from a caller, without allocating a key.
pub(crate) trait KeyView {
    fn view(&self) -> (ScopeKind, &str);
}

impl KeyView for ScopeKey {
    fn view(&self) -> (ScopeKind, &str) {
        (self.kind, &self.id)
    }
}

impl KeyView for (ScopeKind, &str) {
    fn view(&self) -> (ScopeKind, &str) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn KeyView + 'a> for ScopeKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

// `Borrow` requires a key and its view to hash alike: both hash the kind, then the id as a `str`.
impl std::hash::Hash for ScopeKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.kind.hash(state);
        (*self.id).hash(state);
    }
}

impl std::hash::Hash for dyn KeyView + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let (kind, id) = self.view();
        kind.hash(state);
        id.hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.view() == other.view()
    }
}

impl Eq for dyn KeyView + '_ {}

/// Identifies a hold: the team it belongs to and a unique key within the ledger.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct HoldId {
    /// The team whose budget the hold reserves.
    pub team: TeamId,
    /// Unique key of the hold (a per-process random prefix and a counter).
    #[serde(with = "arc_str")]
    pub key: Arc<str>,
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.team, self.key)
    }
}

/// What an attempt is, recorded on every history entry it causes.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct EntryMeta {
    /// The job.
    pub job_id: JobId,
    /// The attempt number (1-based).
    pub attempt: u32,
    /// The provider called.
    pub provider: ProviderId,
    /// The model called.
    pub model: ModelId,
}

/// A request to hold budget for one attempt, on every scope of the caller at once.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ReserveRequest {
    /// Who pays: the team and, when known, the member, project and API key.
    pub caller: Caller,
    /// How much to hold; must be in CU and not negative.
    pub amount: Money,
    /// Replaying the same key returns the same hold and charges nothing more.
    pub idempotency_key: IdempotencyKey,
    /// After this long without settle, release or extend, the hold frees itself.
    pub ttl: Duration,
    /// What the attempt is.
    pub meta: EntryMeta,
}

/// Budget held for one attempt.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Hold {
    /// The hold's identity; pass it to settle, release or extend.
    pub id: HoldId,
    /// Who it was reserved for.
    pub caller: Caller,
    /// The amount held (CU).
    pub amount: Money,
    /// When it frees itself unless settled, released or extended.
    pub expires_at: DateTime<Utc>,
    /// The key it was reserved under.
    pub idempotency_key: IdempotencyKey,
    /// True when this answer is a replay of an earlier reservation with the same key.
    pub replayed: bool,
}

/// The result of settling a hold.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Settlement {
    /// The hold settled.
    pub hold: HoldId,
    /// What was held.
    pub held: Money,
    /// What was charged (the actual amount).
    pub charged: Money,
    /// The part of the charge beyond what was held, when there is one. Recorded, never refused.
    pub overrun: Option<Money>,
    /// True when the hold had already expired; the whole charge then counts as overrun.
    pub hold_expired: bool,
    /// The part of the charge the team's funds could not cover (the team is overdrawn by it).
    pub uncovered: Money,
    /// True when this answer is a replay of an earlier identical settle.
    pub replayed: bool,
}

/// How close a scope is to its limit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// Under 80 % of the limit.
    Ok,
    /// At least 80 %.
    Amber,
    /// At least 100 %: nothing more can be reserved.
    Red,
}

impl UsageStatus {
    /// The status of `committed` against `limit` (amber at 80 %, red at 100 %).
    pub fn of(committed: Decimal, limit: Decimal) -> Self {
        if limit <= Decimal::ZERO || committed >= limit {
            UsageStatus::Red
        } else if committed * Decimal::from(5) >= limit * Decimal::from(4) {
            UsageStatus::Amber
        } else {
            UsageStatus::Ok
        }
    }
}

/// A scope's usage in the current billing period.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Usage {
    /// The scope.
    pub scope: Scope,
    /// Settled spend this period.
    pub used: Money,
    /// Held by open reservations.
    pub held: Money,
    /// The scope's cap: its own, else the team default (members and keys), else none.
    pub cap: Option<Money>,
    /// True when `cap` is the team's default cap rather than the scope's own.
    pub cap_is_default: bool,
    /// What can still be reserved through this scope (its cap and the team pool both apply).
    pub remaining: Money,
    /// `(used + held)` against the cap (or, for the team and uncapped scopes, against the pool): ok, amber
    /// from 80 %, red from 100 %. An uncapped scope shows at least the team's status.
    pub status: UsageStatus,
}

/// Where a batch of funds came from.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FundsKind {
    /// The plan allowance of the current period (expires at the period's end).
    Plan,
    /// A purchased top-up.
    TopUp,
    /// An automatic refill.
    Refill,
}

impl FundsKind {
    pub(crate) fn code(self) -> i64 {
        match self {
            FundsKind::Plan => 0,
            FundsKind::TopUp => 1,
            FundsKind::Refill => 2,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => FundsKind::Plan,
            1 => FundsKind::TopUp,
            2 => FundsKind::Refill,
            _ => return None,
        })
    }
}

/// One batch of funds in a team's pool.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct FundsBatch {
    /// Identifier of the batch.
    pub id: String,
    /// Where it came from.
    pub kind: FundsKind,
    /// The amount granted.
    pub granted: Money,
    /// What is left of it.
    pub remaining: Money,
    /// When what is left vanishes.
    pub expires_at: DateTime<Utc>,
}

/// A team's pool: funds by batch, what is held, and the billing period.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Balance {
    /// The team.
    pub team: TeamId,
    /// What can be reserved now: live funds − held − overdraft (never below zero).
    pub available: Money,
    /// Sum of the live batches.
    pub funds: Money,
    /// Held by open reservations.
    pub held: Money,
    /// Charges the funds could not cover (settled overruns beyond the pool), repaid from the next funds.
    pub overdraft: Money,
    /// Live batches, earliest-expiring (= spent) first.
    pub batches: Vec<FundsBatch>,
    /// The plan allowance of the current period.
    pub plan_allowance: Money,
    /// A downgrade waiting for the next reset.
    pub pending_allowance: Option<Money>,
    /// Start of the current billing period.
    pub period_start: DateTime<Utc>,
    /// When the current period ends and the allowance resets.
    pub resets_at: DateTime<Utc>,
    /// Automatic refills used in this period.
    pub refills_this_period: u32,
}

/// What a history entry records.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// Budget held for an attempt.
    Reserve,
    /// A hold charged (amount = actual charge).
    Settle,
    /// A hold released unused.
    Release,
    /// A hold that expired (amount = what was held), or funds that expired (amount = what was left).
    Expire,
    /// Funds purchased.
    TopUp,
    /// Funds added by auto-refill.
    Refill,
    /// The part of a charge beyond its hold (or a charge on an expired hold).
    Overrun,
    /// The plan allowance granted at the start of a period.
    Allowance,
}

impl EntryKind {
    pub(crate) fn code(self) -> i64 {
        match self {
            EntryKind::Reserve => 0,
            EntryKind::Settle => 1,
            EntryKind::Release => 2,
            EntryKind::Expire => 3,
            EntryKind::TopUp => 4,
            EntryKind::Refill => 5,
            EntryKind::Overrun => 6,
            EntryKind::Allowance => 7,
        }
    }

    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            0 => EntryKind::Reserve,
            1 => EntryKind::Settle,
            2 => EntryKind::Release,
            3 => EntryKind::Expire,
            4 => EntryKind::TopUp,
            5 => EntryKind::Refill,
            6 => EntryKind::Overrun,
            7 => EntryKind::Allowance,
            _ => return None,
        })
    }
}

/// One append-only history entry. Hold entries carry every scope of the caller (one entry per operation,
/// not per scope); funds entries carry the team only.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Entry {
    /// The scopes the entry applies to (the team first).
    pub caller: Caller,
    /// What happened.
    pub kind: EntryKind,
    /// The amount (CU).
    pub amount: Money,
    /// The hold concerned, if any.
    pub hold: Option<HoldId>,
    /// The funds batch concerned, if any.
    pub batch: Option<String>,
    /// The attempt concerned, for hold entries.
    pub meta: Option<EntryMeta>,
    /// When it happened (the ledger clock).
    pub at: DateTime<Utc>,
}

/// Which history entries to return.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HistoryFilter {
    /// Entries of this scope (a team scope matches all of its team's entries).
    pub scope: Scope,
    /// Only this job's entries.
    pub job_id: Option<JobId>,
    /// Only these kinds (empty = all).
    pub kinds: Vec<EntryKind>,
    /// Only entries at or after this instant.
    pub since: Option<DateTime<Utc>>,
    /// At most this many entries (oldest first).
    pub limit: Option<usize>,
}

impl HistoryFilter {
    /// Every entry of a scope.
    pub fn scope(scope: Scope) -> Self {
        Self {
            scope,
            job_id: None,
            kinds: Vec::new(),
            since: None,
            limit: None,
        }
    }

    /// Only one job's entries.
    pub fn job(mut self, job_id: JobId) -> Self {
        self.job_id = Some(job_id);
        self
    }

    pub(crate) fn matches(&self, e: &Entry) -> bool {
        let scope_ok = match &self.scope {
            Scope::Team(t) => &e.caller.team == t,
            Scope::Member(t, m) => &e.caller.team == t && e.caller.member.as_ref() == Some(m),
            Scope::Project(t, p) => &e.caller.team == t && e.caller.project.as_ref() == Some(p),
            Scope::ApiKey(t, k) => &e.caller.team == t && e.caller.api_key.as_ref() == Some(k),
        };
        scope_ok
            && self
                .job_id
                .as_ref()
                .is_none_or(|j| e.meta.as_ref().is_some_and(|m| &m.job_id == j))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.since.is_none_or(|s| e.at >= s)
    }
}

/// Automatic refill: when the available balance drops below `threshold`, add `amount` (through the
/// [`RefillHook`](crate::RefillHook)), at most `max_per_period` times per billing period.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct AutoRefill {
    /// Refill when the available balance is below this (CU).
    pub threshold: Money,
    /// How much each refill adds (CU).
    pub amount: Money,
    /// At most this many refills per billing period.
    pub max_per_period: u32,
    /// How long refilled funds last before they expire.
    pub valid_for: Duration,
}

/// A team's subscription, given when the team is created.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct TeamConfig {
    /// The team.
    pub team: TeamId,
    /// The plan's allowance per billing period (CU); renews each period, no rollover.
    pub allowance: Money,
    /// When the subscription started: its day of month anchors the billing periods (day 31 → the last
    /// day of shorter months); periods turn over at 00:00 UTC on that day.
    pub subscribed_at: DateTime<Utc>,
    /// Cap applied to every member and API key without a cap of its own.
    pub default_cap: Option<Money>,
    /// Automatic refill, if enabled.
    pub auto_refill: Option<AutoRefill>,
}

impl TeamConfig {
    /// A team with an allowance, subscribed at `subscribed_at`, no default cap and no auto-refill.
    pub fn new(team: TeamId, allowance: Money, subscribed_at: DateTime<Utc>) -> Self {
        Self {
            team,
            allowance,
            subscribed_at,
            default_cap: None,
            auto_refill: None,
        }
    }
}

/// When a plan change takes effect.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanChange {
    /// An upgrade: the period restarts now (the reset day moves to today) with the new allowance in full.
    Upgrade,
    /// A downgrade: the current period runs to its end; the new allowance applies from the next reset.
    Downgrade,
}

mod arc_str {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Arc<str>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<str>, D::Error> {
        Ok(Arc::from(String::deserialize(d)?))
    }
}
