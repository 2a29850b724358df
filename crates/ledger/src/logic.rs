//! The ledger's semantics, once, for every backend.
//!
//! A [`Book`] is the state of one team that an operation needs: the team row, the scope rows it touches,
//! the team's live funds batches, and the holds it touches. Backends load a book (all of it for memory,
//! the rows an operation needs for SQL under the team's lock), call [`apply`], and persist what the book
//! marked dirty. Every operation checks everything before it changes anything, so a refused operation
//! leaves the book as it found it (all-or-nothing per reservation, across all scopes).

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Datelike, Timelike, Utc};
use genroute_core::hash::FxBuildHasher;
use genroute_core::{Caller, Currency, Decimal, IdempotencyKey, Money, TeamId};

use crate::error::{Denial, HoldState, LedgerError};
use crate::period::{last_reset, next_reset};
use crate::types::{
    AutoRefill, Balance, Entry, EntryKind, EntryMeta, FundsBatch, FundsKind, HistoryFilter, Hold, HoldId,
    KeyView, PlanChange, ReserveRequest, Scope, ScopeKey, ScopeKind, Settlement, TeamConfig, Usage,
    UsageStatus,
};

// The in-memory indexes hash with genroute-core's Fx hasher: keys are ids the ledger made or the
// application gave (the application is the ledger's caller, not an adversary); collisions cost only speed.
pub(crate) type HashMap<K, V> = genroute_core::hash::FxHashMap<K, V>;
pub(crate) type HashSet<K> = std::collections::HashSet<K, FxBuildHasher>;

/// Length of an identifier made by [`new_id`]: 32 hex digits, a dash, 12 hex digits.
const ID_LEN: usize = 45;

/// A new identifier unique across processes (`<random per-process prefix>-<counter as 12 hex digits>`).
pub(crate) fn new_id() -> String {
    new_key().to_string()
}

/// [`new_id`] as a hold key. Cheaper than a UUID per hold (no system call), and written by hand rather
/// than through `format!`.
fn new_key() -> Arc<str> {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let prefix = PREFIX.get_or_init(|| uuid::Uuid::new_v4().simple().to_string());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    if prefix.len() == 32 && n >> 48 == 0 {
        let mut buf = [0u8; ID_LEN];
        buf[..32].copy_from_slice(prefix.as_bytes());
        buf[32] = b'-';
        for (i, b) in buf[33..].iter_mut().rev().enumerate() {
            *b = HEX[((n >> (4 * i)) & 0xf) as usize];
        }
        if let Ok(s) = std::str::from_utf8(&buf) {
            return Arc::from(s);
        }
    }
    Arc::from(format!("{prefix}-{n:012x}"))
}

/// Truncates an instant to whole milliseconds (the precision every backend stores).
pub(crate) fn trunc_ms(t: DateTime<Utc>) -> DateTime<Utc> {
    let nanos = t.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        // A leap second: keep the original arithmetic.
        return DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t);
    }
    let kept = nanos - nanos % 1_000_000;
    if kept == nanos {
        return t;
    }
    // Only the time of day changes: no calendar arithmetic.
    t.naive_utc()
        .with_nanosecond(kept)
        .map(|n| n.and_utc())
        .unwrap_or(t)
}

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_ms(v: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(v).unwrap_or_default()
}

pub(crate) fn add(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    let d = chrono::Duration::from_std(d).unwrap_or(chrono::Duration::days(365 * 100));
    trunc_ms(t.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC))
}

/// Checks that an amount is CU and not negative; returns the bare decimal.
pub(crate) fn cu(m: &Money) -> Result<Decimal, LedgerError> {
    if m.currency() != &Currency::Cu {
        return Err(LedgerError::NotCu(m.currency().clone()));
    }
    if m.is_negative() {
        return Err(LedgerError::Negative(m.clone()));
    }
    Ok(m.amount())
}

/// `d > 0`, without a call to `Decimal`'s comparison (several times the cost): neither zero (of either
/// sign) nor negative.
#[inline]
fn positive(d: Decimal) -> bool {
    !d.is_zero() && d.is_sign_positive()
}

fn money(d: Decimal) -> Money {
    Money::cu(d)
}

#[derive(Clone, Debug)]
pub(crate) struct TeamRow {
    pub(crate) team: TeamId,
    pub(crate) allowance: Decimal,
    pub(crate) pending_allowance: Option<Decimal>,
    pub(crate) anchor_day: u32,
    pub(crate) period_start: DateTime<Utc>,
    pub(crate) period_end: DateTime<Utc>,
    pub(crate) default_cap: Option<Decimal>,
    pub(crate) refill: Option<AutoRefill>,
    pub(crate) refills_used: u32,
    pub(crate) overdraft: Decimal,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ScopeRow {
    pub(crate) cap: Option<Decimal>,
    pub(crate) used: Decimal,
    pub(crate) held: Decimal,
    /// The period (start, in ms) `used` belongs to; a row from an older period has used nothing yet.
    pub(crate) period: i64,
}

#[derive(Clone, Debug)]
pub(crate) struct Batch {
    pub(crate) id: String,
    pub(crate) kind: FundsKind,
    pub(crate) granted: Decimal,
    pub(crate) remaining: Decimal,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct HoldRow {
    pub(crate) key: Arc<str>,
    pub(crate) idem: IdempotencyKey,
    pub(crate) caller: Caller,
    pub(crate) amount: Decimal,
    pub(crate) expires_at: DateTime<Utc>,
    pub(crate) state: HoldState,
    pub(crate) charged: Option<Decimal>,
    pub(crate) uncovered: Decimal,
    /// Settled after it had expired.
    pub(crate) late: bool,
    pub(crate) meta: EntryMeta,
}

/// A history entry as the memory backend keeps it. A hold's entries take their caller and attempt from the
/// hold (which the memory backend keeps as long as its entries); funds entries belong to the team.
#[derive(Debug)]
pub(crate) struct EntryRec {
    kind: EntryKind,
    amount: Decimal,
    at: DateTime<Utc>,
    hold: Option<Arc<str>>,
    batch: Option<Box<str>>,
}

/// What the memory backend keeps, when limited: the newest `history` entries per team, and closed holds
/// (with their idempotency keys) for `window` after they closed, and never while one of their entries is
/// still in the history (an entry takes its caller and attempt from its hold).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Retention {
    pub(crate) history: usize,
    pub(crate) window: Duration,
}

/// A hold that closed (settled, released or expired), as retention remembers it.
#[derive(Debug)]
struct Closed {
    /// When the window after its closing ends.
    forget_at: DateTime<Utc>,
    key: Arc<str>,
    /// The state it closed in: a hold that expired and was then settled late closes twice, and only the
    /// later record may forget it.
    state: HoldState,
    /// Position in the history just after its last entry.
    next_seq: u64,
}

/// What an operation changed, for backends that persist rows.
#[derive(Default, Debug)]
pub(crate) struct Dirty {
    pub(crate) team: bool,
    pub(crate) scopes: HashSet<ScopeKey>,
    pub(crate) funds: HashSet<String>,
    pub(crate) funds_deleted: Vec<String>,
    pub(crate) holds: HashSet<Arc<str>>,
}

#[derive(Debug)]
pub(crate) struct Book {
    pub(crate) team: TeamRow,
    pub(crate) scopes: HashMap<ScopeKey, ScopeRow>,
    pub(crate) funds: Vec<Batch>,
    /// Boxed: the map grows with every hold, and rehashing then moves pointers, not rows.
    pub(crate) holds: HashMap<Arc<str>, Box<HoldRow>>,
    pub(crate) idem: HashMap<IdempotencyKey, Arc<str>>,
    pub(crate) expiry: BTreeSet<(DateTime<Utc>, Arc<str>)>,
    /// `None` for the memory backend (nothing to persist).
    pub(crate) dirty: Option<Dirty>,
    /// New entries (SQL backends drain them on save). Empty in the memory backend, which keeps `log`.
    pub(crate) entries: Vec<Entry>,
    /// The memory backend's history: compact records that name their hold instead of copying its caller
    /// and attempt, turned into [`Entry`] values only when read ([`Book::history`]).
    pub(crate) log: VecDeque<EntryRec>,
    /// Entries dropped from the front of `log` so far (by retention).
    log_base: u64,
    /// Closed holds, oldest first, for retention to forget.
    closed: VecDeque<Closed>,
    /// The memory backend's limits on what it keeps; `None` keeps everything.
    pub(crate) retention: Option<Retention>,
    /// For books read from storage: every scope key looked up (found or not). Changing a scope row that
    /// was never looked up would overwrite the stored one with a blank; debug builds assert it never
    /// happens.
    pub(crate) looked_up: Option<HashSet<ScopeKey>>,
}

/// One operation on one team.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Reserve(ReserveRequest),
    Settle(HoldId, Money),
    Release(HoldId),
    Extend(HoldId, Duration),
    TopUp(TeamId, Money, DateTime<Utc>),
    SetCap(Scope, Option<Money>),
    SetDefaultCap(TeamId, Option<Money>),
    SetAutoRefill(TeamId, Option<AutoRefill>),
    ChangePlan(TeamId, Money, PlanChange),
    Usage(Scope),
    Balance(TeamId),
    Maintain(TeamId),
    ClaimRefill(TeamId),
    ApplyRefill(TeamId, Money, Duration),
    UnclaimRefill(TeamId),
}

impl Op {
    pub(crate) fn team(&self) -> &TeamId {
        match self {
            Op::Reserve(r) => &r.caller.team,
            Op::Settle(h, _) | Op::Release(h) | Op::Extend(h, _) => &h.team,
            Op::SetCap(s, _) | Op::Usage(s) => s.team(),
            Op::TopUp(t, ..)
            | Op::SetDefaultCap(t, _)
            | Op::SetAutoRefill(t, _)
            | Op::ChangePlan(t, ..)
            | Op::Balance(t)
            | Op::Maintain(t)
            | Op::ClaimRefill(t)
            | Op::ApplyRefill(t, ..)
            | Op::UnclaimRefill(t) => t,
        }
    }

    /// The hold this operation addresses, if any.
    pub(crate) fn hold_key(&self) -> Option<&Arc<str>> {
        match self {
            Op::Settle(h, _) | Op::Release(h) | Op::Extend(h, _) => Some(&h.key),
            _ => None,
        }
    }

    /// The idempotency key this operation looks up, if any.
    pub(crate) fn idem(&self) -> Option<&IdempotencyKey> {
        match self {
            Op::Reserve(r) => Some(&r.idempotency_key),
            _ => None,
        }
    }

    /// Scope rows this operation needs besides those of the holds it touches: always the team's (every
    /// operation starts with maintenance, which may expire holds, and every hold holds on the team), plus
    /// the scope it names.
    pub(crate) fn scope_keys(&self) -> Vec<ScopeKey> {
        match self {
            Op::Reserve(r) => Scope::of_caller(&r.caller).iter().map(Scope::key).collect(),
            Op::SetCap(s, _) | Op::Usage(s) if s.kind() != ScopeKind::Team => vec![team_key(), s.key()],
            _ => vec![team_key()],
        }
    }
}

/// What an operation returned.
#[derive(Debug)]
pub(crate) enum Out {
    Hold(Hold),
    Settlement(Settlement),
    Unit,
    Batch(FundsBatch),
    // Boxed: rare, and the largest answers; every operation's future carries an `Out`.
    Usage(Box<Usage>),
    Balance(Box<Balance>),
    Claim(Option<(Money, Duration)>),
}

/// An operation's result, and whether the team now wants an automatic refill.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) out: Out,
    pub(crate) refill_due: bool,
}

fn team_key() -> ScopeKey {
    ScopeKey::from(TEAM)
}

/// The team's own scope row, by reference.
const TEAM: (ScopeKind, &str) = (ScopeKind::Team, "");

pub(crate) fn hold_scope_keys(caller: &Caller) -> Vec<ScopeKey> {
    caller_scopes(caller).map(ScopeKey::from).collect()
}

/// The scopes a caller draws on, broadest first (as [`Scope::of_caller`]), borrowed from the caller.
fn caller_scopes(c: &Caller) -> impl Iterator<Item = (ScopeKind, &str)> {
    [
        Some(TEAM),
        c.member.as_ref().map(|m| (ScopeKind::Member, m.as_str())),
        c.project.as_ref().map(|p| (ScopeKind::Project, p.as_str())),
        c.api_key.as_ref().map(|k| (ScopeKind::ApiKey, k.as_str())),
    ]
    .into_iter()
    .flatten()
}

/// The public scope of `kind` for a caller (one of [`caller_scopes`]).
fn caller_scope(c: &Caller, kind: ScopeKind) -> Scope {
    let team = c.team.clone();
    match (kind, &c.member, &c.project, &c.api_key) {
        (ScopeKind::Member, Some(m), _, _) => Scope::Member(team, m.clone()),
        (ScopeKind::Project, _, Some(p), _) => Scope::Project(team, p.clone()),
        (ScopeKind::ApiKey, _, _, Some(k)) => Scope::ApiKey(team, k.clone()),
        _ => Scope::Team(team),
    }
}

/// Takes `amount` from `funds`, earliest-expiring first; returns what could not be covered. A free function
/// over the fields it needs, so a hold can stay borrowed meanwhile.
fn draw(funds: &mut [Batch], dirty: &mut Option<Dirty>, amount: Decimal) -> Decimal {
    let mut left = amount;
    let order =
        |a: &Batch, b: &Batch| (a.expires_at, a.created_at, &a.id).cmp(&(b.expires_at, b.created_at, &b.id));
    // Usually already in order (one plan batch, top-ups in expiry order): skip the sort then.
    if !funds.is_sorted_by(|a, b| order(a, b).is_le()) {
        funds.sort_by(order);
    }
    for b in funds.iter_mut() {
        if !positive(left) {
            break;
        }
        if !positive(b.remaining) {
            continue;
        }
        let take = b.remaining.min(left);
        b.remaining -= take;
        left -= take;
        if let Some(d) = dirty {
            d.funds.insert(b.id.clone());
        }
    }
    left
}

fn settlement_of(team: &TeamId, h: &HoldRow, replayed: bool) -> Settlement {
    let charged = h.charged.unwrap_or_default();
    let overrun = if h.late { charged } else { charged - h.amount };
    Settlement {
        hold: HoldId {
            team: team.clone(),
            key: h.key.clone(),
        },
        held: money(h.amount),
        charged: money(charged),
        overrun: positive(overrun).then(|| money(overrun)),
        hold_expired: h.late,
        uncovered: money(h.uncovered),
        replayed,
    }
}

/// Marks a scope row about to change as dirty (for backends that persist rows).
fn mark_scope(dirty: &mut Option<Dirty>, looked_up: Option<&HashSet<ScopeKey>>, k: (ScopeKind, &str)) {
    let view: &dyn KeyView = &k;
    debug_assert!(
        looked_up.is_none_or(|l| l.contains(view)),
        "scope row {k:?} changed without being read from storage"
    );
    if let Some(d) = dirty
        && !d.scopes.contains(view)
    {
        d.scopes.insert(ScopeKey::from(k));
    }
}

/// A refusal: the room left, the scope that refused, and its cap.
type Refusal = (Decimal, ScopeKind, Option<Decimal>);

/// What a reservation checks each scope row against: the team's pool and the default cap.
struct Room {
    /// Live funds.
    funds: Decimal,
    overdraft: Decimal,
    default_cap: Option<Decimal>,
    /// The amount asked.
    amount: Decimal,
}

impl Room {
    /// Checks one scope row (a view in the current period) and keeps in `denial` the scope with the least
    /// room; among equals, the narrower (a cap before the pool). The team's row gives the pool as
    /// `pool_room` does, the others their cap room as `cap_room` does.
    fn note(&self, denial: &mut Option<Refusal>, kind: ScopeKind, row: &ScopeRow) {
        let (own, cap) = if kind == ScopeKind::Team {
            let pool = self.funds - row.held - self.overdraft;
            let room = match row.cap {
                Some(c) => pool.min(c - row.used - row.held),
                None => pool,
            };
            (room, row.cap)
        } else {
            let cap = match row.cap {
                Some(c) => Some(c),
                None if matches!(kind, ScopeKind::Member | ScopeKind::ApiKey) => self.default_cap,
                None => None,
            };
            match cap {
                Some(c) => (c - row.used - row.held, Some(c)),
                None => return,
            }
        };
        if own < self.amount && denial.as_ref().is_none_or(|(r, _, _)| own <= *r) {
            *denial = Some((own, kind, cap));
        }
    }
}

/// Powers of ten up to 10^28 (the largest scale of a [`Decimal`]).
const POW10: [i128; 29] = {
    let mut p = [1i128; 29];
    let mut i = 1;
    while i < 29 {
        p[i] = p[i - 1] * 10;
        i += 1;
    }
    p
};

/// Integers below 2^96 in magnitude: what a [`Decimal`] holds exactly.
const EXACT: u128 = 1 << 96;

/// `FITS[k]`: the magnitudes `m` with `m * 10^k` below 2^96 are those below `FITS[k]` (a bound checked
/// instead of a checked 128-bit multiplication, which costs far more).
const FITS: [u128; 29] = {
    let mut f = [0u128; 29];
    let mut i = 0;
    while i < 29 {
        f[i] = (EXACT - 1) / POW10[i] as u128 + 1;
        i += 1;
    }
    f
};

impl Room {
    /// Whether [`Room::note`] would refuse any of `rows` (each with its kind and read in `period`),
    /// computed in integers: every value is brought to the largest scale among them. `None` when a value
    /// or an intermediate result there reaches 2^96; otherwise every `Decimal` operation `note` does is
    /// exact (its result fits the 96-bit mantissa at that scale), so the answers agree.
    fn refuses_exact<'r>(
        &self,
        rows: impl Iterator<Item = (ScopeKind, &'r ScopeRow)> + Clone,
        period: i64,
    ) -> Option<bool> {
        let used_of = |r: &ScopeRow| if r.period == period { r.used } else { Decimal::ZERO };
        let cap_of = |kind: ScopeKind, r: &ScopeRow| match r.cap {
            Some(c) => Some(c),
            None if matches!(kind, ScopeKind::Member | ScopeKind::ApiKey) => self.default_cap,
            None => None,
        };
        let mut scale = self
            .funds
            .scale()
            .max(self.overdraft.scale())
            .max(self.amount.scale());
        for (kind, r) in rows.clone() {
            scale = scale.max(r.held.scale()).max(used_of(r).scale());
            if let Some(c) = cap_of(kind, r) {
                scale = scale.max(c.scale());
            }
        }
        let fit = |v: i128| (v.unsigned_abs() < EXACT).then_some(v);
        let at = |d: Decimal| -> Option<i128> {
            let k = scale.checked_sub(d.scale())? as usize;
            let m = d.mantissa();
            if k == 0 {
                return Some(m);
            }
            // Below the bound, the product is below 2^96: no overflow.
            (m.unsigned_abs() < *FITS.get(k)?).then(|| m * *POW10.get(k).unwrap_or(&0))
        };
        let (funds, overdraft, amount) = (at(self.funds)?, at(self.overdraft)?, at(self.amount)?);
        for (kind, r) in rows {
            let (used, held) = (at(used_of(r))?, at(r.held)?);
            let cap_room = |c: Decimal| fit(fit(at(c)? - used)? - held);
            let own = if kind == ScopeKind::Team {
                let pool = fit(fit(funds - held)? - overdraft)?;
                match r.cap {
                    Some(c) => pool.min(cap_room(c)?),
                    None => pool,
                }
            } else {
                match cap_of(kind, r) {
                    Some(c) => cap_room(c)?,
                    None => continue,
                }
            };
            if own < amount {
                return Some(true);
            }
        }
        Some(false)
    }
}

/// Checks and holds `room.amount` on a caller's `N` scope rows with one lookup each, when all exist.
/// `None` (nothing changed) when one is missing; otherwise the refusal if any (then nothing changed
/// either). The checks are [`Room::note`]'s on each row as it reads in the current period, in the order
/// of `keys`; the change is [`update_scope`]'s. The caller marks the rows dirty.
fn hold_in_place<const N: usize>(
    scopes: &mut HashMap<ScopeKey, ScopeRow>,
    keys: &[(ScopeKind, &str)],
    period: i64,
    room: &Room,
) -> Option<Option<Refusal>> {
    let keys: &[(ScopeKind, &str); N] = keys.try_into().ok()?;
    // The keys are of different kinds, so never the same row twice (which `get_disjoint_mut` refuses).
    let mut rows = scopes.get_disjoint_mut(keys.each_ref().map(|k| k as &dyn KeyView));
    if rows.iter().any(Option::is_none) {
        return None;
    }
    let mut denial = None;
    let kinds = keys.iter().map(|k| k.0);
    let refuses = room.refuses_exact(kinds.zip(rows.iter().flatten().map(|r| &**r)), period);
    // In integers when they suffice (the usual case); in decimals to name the refusal, or when they do not.
    for (k, row) in keys.iter().zip(rows.iter().flatten()) {
        if refuses == Some(false) {
            break;
        }
        if row.period == period {
            room.note(&mut denial, k.0, row);
        } else {
            let view = ScopeRow {
                cap: row.cap,
                used: Decimal::ZERO,
                held: row.held,
                period,
            };
            room.note(&mut denial, k.0, &view);
        }
    }
    if denial.is_none() {
        for row in rows.iter_mut().flatten() {
            if row.period != period {
                row.used = Decimal::ZERO;
                row.period = period;
            }
            row.held += room.amount;
        }
    }
    Some(denial)
}

/// Changes a scope row: normalised to the current period (created empty when absent) and marked dirty.
/// A free function over the fields it needs, so a hold's caller can stay borrowed from `holds` meanwhile.
fn update_scope(
    scopes: &mut HashMap<ScopeKey, ScopeRow>,
    dirty: &mut Option<Dirty>,
    looked_up: Option<&HashSet<ScopeKey>>,
    period: i64,
    k: (ScopeKind, &str),
    f: impl FnOnce(&mut ScopeRow),
) {
    mark_scope(dirty, looked_up, k);
    let view: &dyn KeyView = &k;
    if let Some(row) = scopes.get_mut(view) {
        if row.period != period {
            row.used = Decimal::ZERO;
            row.period = period;
        }
        f(row);
        return;
    }
    let mut row = ScopeRow {
        cap: None,
        used: Decimal::ZERO,
        held: Decimal::ZERO,
        period,
    };
    f(&mut row);
    scopes.insert(ScopeKey::from(k), row);
}

/// [`update_scope`] on every scope row of `caller` (the caller stays borrowed, from `holds` say).
fn update_caller_scopes(
    scopes: &mut HashMap<ScopeKey, ScopeRow>,
    dirty: &mut Option<Dirty>,
    looked_up: Option<&HashSet<ScopeKey>>,
    period: i64,
    caller: &Caller,
    f: impl Fn(&mut ScopeRow),
) {
    for k in caller_scopes(caller) {
        update_scope(scopes, dirty, looked_up, period, k, &f);
    }
}

impl Book {
    /// A new team's book: the team row and its first plan batch.
    pub(crate) fn create(cfg: &TeamConfig, now: DateTime<Utc>, track: bool) -> Result<Book, LedgerError> {
        let allowance = cu(&cfg.allowance)?;
        let default_cap = cfg.default_cap.as_ref().map(cu).transpose()?;
        if let Some(r) = &cfg.auto_refill {
            validate_refill(r)?;
        }
        let now = trunc_ms(now);
        let subscribed = trunc_ms(cfg.subscribed_at);
        let anchor_day = subscribed.day();
        let start = if now >= subscribed {
            last_reset(now, anchor_day)
        } else {
            last_reset(subscribed, anchor_day)
        };
        let mut book = Book {
            team: TeamRow {
                team: cfg.team.clone(),
                allowance,
                pending_allowance: None,
                anchor_day,
                period_start: start,
                period_end: next_reset(start, anchor_day),
                default_cap,
                refill: cfg.auto_refill.clone(),
                refills_used: 0,
                overdraft: Decimal::ZERO,
            },
            scopes: HashMap::default(),
            funds: Vec::new(),
            holds: HashMap::default(),
            idem: HashMap::default(),
            expiry: BTreeSet::new(),
            dirty: track.then(Dirty::default),
            entries: Vec::new(),
            log: VecDeque::new(),
            log_base: 0,
            closed: VecDeque::new(),
            retention: None,
            looked_up: None,
        };
        book.mark_team();
        book.grant_plan(now);
        Ok(book)
    }

    /// A book with a loaded team row and nothing else yet (SQL backends fill the rest).
    pub(crate) fn loaded(team: TeamRow) -> Book {
        Book {
            team,
            scopes: HashMap::default(),
            funds: Vec::new(),
            holds: HashMap::default(),
            idem: HashMap::default(),
            expiry: BTreeSet::new(),
            dirty: Some(Dirty::default()),
            entries: Vec::new(),
            log: VecDeque::new(),
            log_base: 0,
            closed: VecDeque::new(),
            retention: None,
            looked_up: Some(HashSet::default()),
        }
    }

    /// Adds a hold row read from storage.
    pub(crate) fn insert_loaded_hold(&mut self, h: HoldRow) {
        self.insert_hold(Box::new(h));
    }

    fn insert_hold(&mut self, h: Box<HoldRow>) {
        if h.state == HoldState::Held {
            self.expiry.insert((h.expires_at, h.key.clone()));
        }
        self.idem.insert(h.idem.clone(), h.key.clone());
        self.holds.insert(h.key.clone(), h);
    }

    fn mark_team(&mut self) {
        if let Some(d) = &mut self.dirty {
            d.team = true;
        }
    }

    fn mark_hold(&mut self, k: &Arc<str>) {
        if let Some(d) = &mut self.dirty {
            d.holds.insert(k.clone());
        }
    }

    fn mark_funds(&mut self, id: &str) {
        if let Some(d) = &mut self.dirty {
            d.funds.insert(id.to_owned());
        }
    }

    /// Changes a scope row (see [`update_scope`]).
    fn scope(&mut self, k: (ScopeKind, &str), f: impl FnOnce(&mut ScopeRow)) {
        let period = ms(self.team.period_start);
        update_scope(
            &mut self.scopes,
            &mut self.dirty,
            self.looked_up.as_ref(),
            period,
            k,
            f,
        );
    }

    /// Changes every scope row of a hold's caller (the hold stays borrowed, nothing is cloned).
    fn hold_scopes(&mut self, key: &str, f: impl Fn(&mut ScopeRow)) {
        let period = ms(self.team.period_start);
        let Some(h) = self.holds.get(key) else { return };
        update_caller_scopes(
            &mut self.scopes,
            &mut self.dirty,
            self.looked_up.as_ref(),
            period,
            &h.caller,
            f,
        );
    }

    /// Read-only view of a scope row in the current period.
    fn scope_view(&self, k: (ScopeKind, &str)) -> ScopeRow {
        self.scope_view_in(k, ms(self.team.period_start))
    }

    /// [`Book::scope_view`] for a caller that already has the current period's start in ms (converting
    /// the period's date costs more than the lookup saved by it).
    fn scope_view_in(&self, k: (ScopeKind, &str), period: i64) -> ScopeRow {
        let view: &dyn KeyView = &k;
        match self.scopes.get(view) {
            Some(r) if r.period == period => r.clone(),
            Some(r) => ScopeRow {
                cap: r.cap,
                used: Decimal::ZERO,
                held: r.held,
                period,
            },
            None => ScopeRow {
                cap: None,
                used: Decimal::ZERO,
                held: Decimal::ZERO,
                period,
            },
        }
    }

    fn effective_cap(&self, kind: ScopeKind, row: &ScopeRow) -> (Option<Decimal>, bool) {
        match row.cap {
            Some(c) => (Some(c), false),
            None if matches!(kind, ScopeKind::Member | ScopeKind::ApiKey) => {
                (self.team.default_cap, self.team.default_cap.is_some())
            }
            None => (None, false),
        }
    }

    fn funds_total(&self) -> Decimal {
        match self.funds.as_slice() {
            // The sum starts from zero, and `0 + x` is `x` bit for bit: the usual single batch needs no
            // addition.
            [b] => b.remaining,
            funds => funds.iter().map(|b| b.remaining).sum(),
        }
    }

    /// Live funds − held − overdraft (may be negative after funds expired under open holds).
    fn available_raw(&self) -> Decimal {
        let held = self.scope_view(TEAM).held;
        self.funds_total() - held - self.team.overdraft
    }

    /// What the team pool can still grant: live funds less holds and overdraft, and the team's own cap.
    fn pool_room(&self) -> Decimal {
        let pool = self.available_raw();
        let team_row = self.scope_view(TEAM);
        match team_row.cap {
            Some(c) => pool.min(c - team_row.used - team_row.held),
            None => pool,
        }
    }

    /// A non-team scope's cap room and cap, when it has a cap (its own or the default).
    fn cap_room(&self, k: (ScopeKind, &str)) -> Option<(Decimal, Decimal)> {
        let row = self.scope_view(k);
        let (cap, _) = self.effective_cap(k.0, &row);
        cap.map(|c| (c - row.used - row.held, c))
    }

    /// What a scope can still grant: its cap room and the pool's.
    fn room(&self, k: (ScopeKind, &str)) -> Decimal {
        let pool = self.pool_room();
        if k.0 == ScopeKind::Team {
            return pool;
        }
        match self.cap_room(k) {
            Some((r, _)) => r.min(pool),
            None => pool,
        }
    }

    fn refill_due(&self) -> bool {
        match &self.team.refill {
            Some(r) => {
                self.team.refills_used < r.max_per_period && self.available_raw() < r.threshold.amount()
            }
            None => false,
        }
    }

    /// Records a history entry. A hold's entry (`hold` given) takes the caller and attempt of that hold,
    /// which must be in the book; a funds entry (`batch` given) belongs to the team.
    fn entry(
        &mut self,
        kind: EntryKind,
        amount: Decimal,
        hold: Option<&Arc<str>>,
        batch: Option<&str>,
        at: DateTime<Utc>,
    ) {
        if self.dirty.is_none() {
            // The memory backend: nothing to persist, keep the compact record.
            self.log.push_back(EntryRec {
                kind,
                amount,
                at,
                hold: hold.cloned(),
                batch: batch.map(Box::from),
            });
            return;
        }
        let e = self.materialise(kind, amount, hold, batch.map(str::to_owned), at);
        self.entries.push(e);
    }

    fn materialise(
        &self,
        kind: EntryKind,
        amount: Decimal,
        hold: Option<&Arc<str>>,
        batch: Option<String>,
        at: DateTime<Utc>,
    ) -> Entry {
        let h = hold.and_then(|k| self.holds.get(k));
        Entry {
            caller: h.map_or_else(|| Caller::team(self.team.team.clone()), |h| h.caller.clone()),
            kind,
            amount: money(amount),
            hold: hold.map(|k| self.hold_id(k)),
            batch,
            meta: h.map(|h| h.meta.clone()),
            at,
        }
    }

    /// The memory backend's history, oldest first: the entries `filter` matches, at most `filter.limit`.
    pub(crate) fn history(&self, filter: &HistoryFilter) -> Vec<Entry> {
        let it = self
            .log
            .iter()
            .map(|r| {
                self.materialise(
                    r.kind,
                    r.amount,
                    r.hold.as_ref(),
                    r.batch.as_deref().map(str::to_owned),
                    r.at,
                )
            })
            .filter(|e| filter.matches(e));
        match filter.limit {
            Some(n) => it.take(n).collect(),
            None => it.collect(),
        }
    }

    fn hold_id(&self, key: &Arc<str>) -> HoldId {
        HoldId {
            team: self.team.team.clone(),
            key: key.clone(),
        }
    }

    fn grant_plan(&mut self, at: DateTime<Utc>) {
        let id = format!("plan-{}", ms(self.team.period_start));
        let amount = self.team.allowance;
        self.funds.push(Batch {
            id: id.clone(),
            kind: FundsKind::Plan,
            granted: amount,
            remaining: amount,
            expires_at: self.team.period_end,
            created_at: at,
        });
        self.mark_funds(&id);
        self.entry(EntryKind::Allowance, amount, None, Some(&id), at);
        self.repay_overdraft();
    }

    /// Takes `amount` from the funds, earliest-expiring first; returns what could not be covered.
    fn draw(&mut self, amount: Decimal) -> Decimal {
        draw(&mut self.funds, &mut self.dirty, amount)
    }

    fn repay_overdraft(&mut self) {
        if positive(self.team.overdraft) {
            let owed = self.team.overdraft;
            let uncovered = self.draw(owed);
            self.team.overdraft = uncovered;
            self.mark_team();
        }
    }

    fn remove_funds(&mut self, pred: impl Fn(&Batch) -> bool, at: Option<DateTime<Utc>>) {
        let (mut gone, keep): (Vec<Batch>, Vec<Batch>) =
            std::mem::take(&mut self.funds).into_iter().partition(pred);
        self.funds = keep;
        // Storage order differs between backends: record in spending order, so history is the same.
        gone.sort_by(|a, b| (a.expires_at, a.created_at, &a.id).cmp(&(b.expires_at, b.created_at, &b.id)));
        for b in gone {
            if positive(b.remaining) {
                self.entry(
                    EntryKind::Expire,
                    b.remaining,
                    None,
                    Some(&b.id),
                    at.unwrap_or(b.expires_at),
                );
            }
            if let Some(d) = &mut self.dirty {
                d.funds.remove(&b.id);
                d.funds_deleted.push(b.id);
            }
        }
    }

    /// Rolls the billing period, expires due holds and funds.
    pub(crate) fn maintain(&mut self, now: DateTime<Utc>) {
        if now >= self.team.period_end {
            let mut start = self.team.period_end;
            let mut end = next_reset(start, self.team.anchor_day);
            while now >= end {
                start = end;
                end = next_reset(start, self.team.anchor_day);
            }
            self.team.period_start = start;
            self.team.period_end = end;
            if let Some(p) = self.team.pending_allowance.take() {
                self.team.allowance = p;
            }
            self.team.refills_used = 0;
            self.mark_team();
            // The old plan batch expires at its own date below; the new one is granted at the boundary.
            self.remove_funds(|b| b.expires_at <= now, None);
            self.grant_plan(start);
        }
        if self.expiry.first().is_some_and(|(t, _)| *t <= now) {
            self.expire_holds(now);
        }
        if self
            .funds
            .iter()
            .any(|b| b.expires_at <= now || !positive(b.remaining))
        {
            self.remove_funds(|b| b.expires_at <= now || !positive(b.remaining), None);
        }
    }

    /// Keys of held holds due at `now`.
    pub(crate) fn due_holds(&self, now: DateTime<Utc>) -> Vec<Arc<str>> {
        self.expiry
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, k)| k.clone())
            .collect()
    }

    fn expire_holds(&mut self, now: DateTime<Utc>) {
        for key in self.due_holds(now) {
            let Some(h) = self.holds.get(&key) else { continue };
            let (amount, at) = (h.amount, h.expires_at);
            self.expiry.remove(&(at, key.clone()));
            self.hold_scopes(&key, |row| row.held -= amount);
            if let Some(h) = self.holds.get_mut(&key) {
                h.state = HoldState::Expired;
            }
            self.mark_hold(&key);
            self.entry(EntryKind::Expire, amount, Some(&key), None, at);
            self.note_closed(&key, HoldState::Expired, now);
        }
    }

    /// Remembers that a hold closed, for retention (memory backend with limits only).
    fn note_closed(&mut self, key: &Arc<str>, state: HoldState, now: DateTime<Utc>) {
        if let Some(r) = self.retention {
            self.closed.push_back(Closed {
                forget_at: add(now, r.window),
                key: key.clone(),
                state,
                next_seq: self.log_base + self.log.len() as u64,
            });
        }
    }

    /// Applies retention: trims the history to its limit, then forgets closed holds past the window whose
    /// entries have all left the history.
    fn prune(&mut self, now: DateTime<Utc>) {
        let Some(r) = self.retention else { return };
        while self.log.len() > r.history {
            self.log.pop_front();
            self.log_base += 1;
        }
        while let Some(c) = self.closed.front() {
            if c.forget_at > now || c.next_seq > self.log_base {
                break;
            }
            let Some(c) = self.closed.pop_front() else { break };
            // Remove first and put back in the rare cases it must stay: one lookup per map.
            let Some(h) = self.holds.remove(&c.key) else {
                continue;
            };
            if h.state != c.state {
                // Closed again since (a late settle after expiry): a later record forgets it.
                self.holds.insert(c.key, h);
                continue;
            }
            if let Some(k) = self.idem.remove(&h.idem)
                && k != c.key
            {
                self.idem.insert(h.idem.clone(), k);
            }
        }
    }

    fn hold_out(&self, h: &HoldRow, replayed: bool) -> Hold {
        Hold {
            id: self.hold_id(&h.key),
            caller: h.caller.clone(),
            amount: money(h.amount),
            expires_at: h.expires_at,
            idempotency_key: h.idem.clone(),
            replayed,
        }
    }

    fn reserve(&mut self, req: &ReserveRequest, now: DateTime<Utc>) -> Result<Out, LedgerError> {
        let amount = cu(&req.amount)?;
        if let Some(key) = self.idem.get(&req.idempotency_key) {
            let Some(h) = self.holds.get(key) else {
                return Err(LedgerError::storage(
                    "ledger",
                    "idempotency index points at no hold",
                ));
            };
            if h.amount != amount {
                return Err(LedgerError::IdempotencyConflict {
                    key: req.idempotency_key.clone(),
                    detail: format!("held {} CU, now asked {} CU", h.amount, amount),
                });
            }
            if h.caller != req.caller {
                return Err(LedgerError::IdempotencyConflict {
                    key: req.idempotency_key.clone(),
                    detail: "different caller".to_owned(),
                });
            }
            return Ok(Out::Hold(self.hold_out(h, true)));
        }
        let period = ms(self.team.period_start);
        let room = Room {
            funds: self.funds_total(),
            overdraft: self.team.overdraft,
            default_cap: self.team.default_cap,
            amount,
        };
        let mut keys = [TEAM; 4];
        let mut n = 0;
        for (slot, k) in keys.iter_mut().zip(caller_scopes(&req.caller)) {
            *slot = k;
            n += 1;
        }
        let keys = keys.get(..n).unwrap_or_default();
        // Usually every row exists: each is then looked up once, for the checks and the change.
        let in_place = match n {
            1 => hold_in_place::<1>(&mut self.scopes, keys, period, &room),
            2 => hold_in_place::<2>(&mut self.scopes, keys, period, &room),
            3 => hold_in_place::<3>(&mut self.scopes, keys, period, &room),
            4 => hold_in_place::<4>(&mut self.scopes, keys, period, &room),
            _ => None,
        };
        let denial = match in_place {
            Some(denial) => denial,
            None => {
                // A row is missing: read them all, then change (and create) them one by one.
                let mut denial = None;
                for &k in keys {
                    let row = self.scope_view_in(k, period);
                    room.note(&mut denial, k.0, &row);
                }
                if denial.is_none() {
                    for &k in keys {
                        update_scope(
                            &mut self.scopes,
                            &mut self.dirty,
                            self.looked_up.as_ref(),
                            period,
                            k,
                            |row| row.held += amount,
                        );
                    }
                }
                denial
            }
        };
        if let Some((remaining, kind, cap)) = denial {
            return Err(LedgerError::Denied(Denial {
                scope: caller_scope(&req.caller, kind),
                requested: req.amount.clone(),
                remaining: money(remaining.max(Decimal::ZERO)),
                cap: cap.map(money),
            }));
        }
        if in_place.is_some() {
            for &k in keys {
                mark_scope(&mut self.dirty, self.looked_up.as_ref(), k);
            }
        }
        let key = new_key();
        let expires_at = add(now, req.ttl);
        // Built in its box: the row is large, and moving it costs a copy.
        let row = Box::new(HoldRow {
            key: key.clone(),
            idem: req.idempotency_key.clone(),
            caller: req.caller.clone(),
            amount,
            expires_at,
            state: HoldState::Held,
            charged: None,
            uncovered: Decimal::ZERO,
            late: false,
            meta: req.meta.clone(),
        });
        let out = self.hold_out(&row, false);
        self.insert_hold(row);
        self.mark_hold(&key);
        self.entry(EntryKind::Reserve, amount, Some(&key), None, now);
        Ok(Out::Hold(out))
    }

    fn get_hold(&self, id: &HoldId) -> Result<&HoldRow, LedgerError> {
        self.holds
            .get(&id.key)
            .map(|h| &**h)
            .ok_or_else(|| LedgerError::UnknownHold(id.clone()))
    }

    fn settle(&mut self, id: &HoldId, actual: &Money, now: DateTime<Utc>) -> Result<Out, LedgerError> {
        let charge = cu(actual)?;
        let period = ms(self.team.period_start);
        // One lookup of the hold: it stays borrowed from `holds` while the other fields change.
        let Some(h) = self.holds.get_mut(&*id.key) else {
            return Err(LedgerError::UnknownHold(id.clone()));
        };
        let late = match h.state {
            HoldState::Settled => {
                return if h.charged == Some(charge) {
                    Ok(Out::Settlement(settlement_of(&self.team.team, h, true)))
                } else {
                    Err(LedgerError::SettleConflict {
                        hold: id.clone(),
                        settled: money(h.charged.unwrap_or_default()),
                        requested: actual.clone(),
                    })
                };
            }
            HoldState::Released => {
                return Err(LedgerError::HoldClosed {
                    hold: id.clone(),
                    state: h.state,
                    operation: "settle",
                });
            }
            HoldState::Held => false,
            HoldState::Expired => true,
        };
        let amount = h.amount;
        update_caller_scopes(
            &mut self.scopes,
            &mut self.dirty,
            self.looked_up.as_ref(),
            period,
            &h.caller,
            |row| {
                if !late {
                    row.held -= amount;
                }
                row.used += charge;
            },
        );
        let uncovered = draw(&mut self.funds, &mut self.dirty, charge);
        if positive(uncovered) {
            self.team.overdraft += uncovered;
            if let Some(d) = &mut self.dirty {
                d.team = true;
            }
        }
        let key = h.key.clone();
        self.expiry.remove(&(h.expires_at, key.clone()));
        h.state = HoldState::Settled;
        h.charged = Some(charge);
        h.uncovered = uncovered;
        h.late = late;
        let out = settlement_of(&self.team.team, h, false);
        self.mark_hold(&key);
        // The settlement computed the overrun from the row just set (`late`, `charge`, `amount`): positive
        // or absent.
        let overrun = out.overrun.as_ref().map(Money::amount);
        self.entry(EntryKind::Settle, charge, Some(&key), None, now);
        if let Some(overrun) = overrun {
            self.entry(EntryKind::Overrun, overrun, Some(&key), None, now);
        }
        self.note_closed(&key, HoldState::Settled, now);
        Ok(Out::Settlement(out))
    }

    fn release(&mut self, id: &HoldId, now: DateTime<Utc>) -> Result<Out, LedgerError> {
        let h = self.get_hold(id)?;
        match h.state {
            HoldState::Released | HoldState::Expired => return Ok(Out::Unit),
            HoldState::Settled => {
                return Err(LedgerError::HoldClosed {
                    hold: id.clone(),
                    state: h.state,
                    operation: "release",
                });
            }
            HoldState::Held => {}
        }
        let (amount, expires_at, key) = (h.amount, h.expires_at, h.key.clone());
        self.hold_scopes(&key, |row| row.held -= amount);
        self.expiry.remove(&(expires_at, key.clone()));
        if let Some(h) = self.holds.get_mut(&key) {
            h.state = HoldState::Released;
        }
        self.mark_hold(&key);
        self.entry(EntryKind::Release, amount, Some(&key), None, now);
        self.note_closed(&key, HoldState::Released, now);
        Ok(Out::Unit)
    }

    fn extend(&mut self, id: &HoldId, ttl: Duration, now: DateTime<Utc>) -> Result<Out, LedgerError> {
        let h = self.get_hold(id)?;
        if h.state != HoldState::Held {
            return Err(LedgerError::HoldClosed {
                hold: id.clone(),
                state: h.state,
                operation: "extend",
            });
        }
        let (old, key) = (h.expires_at, h.key.clone());
        let new = add(now, ttl);
        self.expiry.remove(&(old, key.clone()));
        self.expiry.insert((new, key.clone()));
        if let Some(h) = self.holds.get_mut(&key) {
            h.expires_at = new;
        }
        self.mark_hold(&key);
        let h = self.get_hold(id)?;
        Ok(Out::Hold(self.hold_out(h, false)))
    }

    fn add_funds(
        &mut self,
        amount: Decimal,
        expires_at: DateTime<Utc>,
        kind: FundsKind,
        now: DateTime<Utc>,
    ) -> Result<Out, LedgerError> {
        let expires_at = trunc_ms(expires_at);
        if expires_at <= now {
            return Err(LedgerError::Invalid(format!(
                "funds would expire at {expires_at}, not after now ({now})"
            )));
        }
        let id = new_id();
        self.funds.push(Batch {
            id: id.clone(),
            kind,
            granted: amount,
            remaining: amount,
            expires_at,
            created_at: now,
        });
        self.mark_funds(&id);
        let entry_kind = if kind == FundsKind::Refill {
            EntryKind::Refill
        } else {
            EntryKind::TopUp
        };
        self.entry(entry_kind, amount, None, Some(&id), now);
        self.repay_overdraft();
        let b = self
            .funds
            .iter()
            .find(|b| b.id == id)
            .map(batch_out)
            .unwrap_or_else(|| FundsBatch {
                id,
                kind,
                granted: money(amount),
                remaining: money(Decimal::ZERO),
                expires_at,
            });
        Ok(Out::Batch(b))
    }

    fn usage(&self, scope: &Scope) -> Usage {
        let k = (scope.kind(), scope.local_id());
        let row = self.scope_view(k);
        let (cap, is_default) = if k.0 == ScopeKind::Team {
            (row.cap, false)
        } else {
            self.effective_cap(k.0, &row)
        };
        let room = self.room(k);
        let team_row = self.scope_view(TEAM);
        let pool = self.available_raw().max(Decimal::ZERO);
        let team_committed = team_row.used + team_row.held;
        let mut team_status = UsageStatus::of(team_committed, team_committed + pool);
        if let Some(c) = team_row.cap {
            team_status = team_status.max(UsageStatus::of(team_committed, c));
        }
        let status = if k.0 == ScopeKind::Team {
            team_status
        } else {
            match cap {
                Some(c) => UsageStatus::of(row.used + row.held, c),
                None => team_status,
            }
        };
        Usage {
            scope: scope.clone(),
            used: money(row.used),
            held: money(row.held),
            cap: cap.map(money),
            cap_is_default: is_default,
            remaining: money(room.max(Decimal::ZERO)),
            status,
        }
    }

    fn balance(&self) -> Balance {
        let mut batches: Vec<&Batch> = self.funds.iter().filter(|b| positive(b.remaining)).collect();
        batches.sort_by(|a, b| (a.expires_at, a.created_at, &a.id).cmp(&(b.expires_at, b.created_at, &b.id)));
        let team_row = self.scope_view(TEAM);
        Balance {
            team: self.team.team.clone(),
            available: money(self.available_raw().max(Decimal::ZERO)),
            funds: money(self.funds_total()),
            held: money(team_row.held),
            overdraft: money(self.team.overdraft),
            batches: batches.into_iter().map(batch_out).collect(),
            plan_allowance: money(self.team.allowance),
            pending_allowance: self.team.pending_allowance.map(money),
            period_start: self.team.period_start,
            resets_at: self.team.period_end,
            refills_this_period: self.team.refills_used,
        }
    }

    fn change_plan(&mut self, allowance: Decimal, change: PlanChange, now: DateTime<Utc>) {
        match change {
            PlanChange::Downgrade => {
                self.team.pending_allowance = Some(allowance);
            }
            PlanChange::Upgrade => {
                self.remove_funds(|b| b.kind == FundsKind::Plan, Some(now));
                self.team.allowance = allowance;
                self.team.pending_allowance = None;
                self.team.anchor_day = now.day();
                self.team.period_start = now;
                self.team.period_end = next_reset(now, self.team.anchor_day);
                self.team.refills_used = 0;
                self.grant_plan(now);
            }
        }
        self.mark_team();
    }
}

fn batch_out(b: &Batch) -> FundsBatch {
    FundsBatch {
        id: b.id.clone(),
        kind: b.kind,
        granted: money(b.granted),
        remaining: money(b.remaining),
        expires_at: b.expires_at,
    }
}

fn validate_refill(r: &AutoRefill) -> Result<(), LedgerError> {
    cu(&r.threshold)?;
    cu(&r.amount)?;
    if r.amount.is_zero() {
        return Err(LedgerError::Invalid(
            "auto-refill amount must be positive".to_owned(),
        ));
    }
    Ok(())
}

/// Applies one operation to a team's book at `now` (maintenance first).
pub(crate) fn apply(book: &mut Book, op: Op, now: DateTime<Utc>) -> Result<Outcome, LedgerError> {
    run(book, now, |book, now| apply_op(book, op, now))
}

/// [`apply`] for a reservation given by reference (nothing in it is cloned unless the hold keeps it), answered
/// as the operation made it (wrapping it in an [`Outcome`] would copy it). With `refill_due`, also says
/// whether the operation made an automatic refill due.
pub(crate) fn apply_reserve(
    book: &mut Book,
    req: &ReserveRequest,
    now: DateTime<Utc>,
    refill_due: Option<&mut bool>,
) -> Result<Out, LedgerError> {
    run_in_place(book, now, refill_due, |book, now| book.reserve(req, now))
}

/// [`apply_reserve`] for a settle given by reference.
pub(crate) fn apply_settle(
    book: &mut Book,
    hold: &HoldId,
    actual: &Money,
    now: DateTime<Utc>,
    refill_due: Option<&mut bool>,
) -> Result<Out, LedgerError> {
    run_in_place(book, now, refill_due, |book, now| book.settle(hold, actual, now))
}

fn run(
    book: &mut Book,
    now: DateTime<Utc>,
    op: impl FnOnce(&mut Book, DateTime<Utc>) -> Result<Out, LedgerError>,
) -> Result<Outcome, LedgerError> {
    let mut refill_due = false;
    let out = run_in_place(book, now, Some(&mut refill_due), op)?;
    Ok(Outcome { refill_due, out })
}

/// Maintenance, the operation, then retention; with `refill_due`, whether a refill is due after a success.
fn run_in_place(
    book: &mut Book,
    now: DateTime<Utc>,
    refill_due: Option<&mut bool>,
    op: impl FnOnce(&mut Book, DateTime<Utc>) -> Result<Out, LedgerError>,
) -> Result<Out, LedgerError> {
    let now = trunc_ms(now);
    book.maintain(now);
    let out = op(book, now);
    book.prune(now);
    if let (Ok(_), Some(due)) = (&out, refill_due) {
        *due = book.refill_due();
    }
    out
}

fn apply_op(book: &mut Book, op: Op, now: DateTime<Utc>) -> Result<Out, LedgerError> {
    Ok(match op {
        Op::Reserve(req) => book.reserve(&req, now)?,
        Op::Settle(id, actual) => book.settle(&id, &actual, now)?,
        Op::Release(id) => book.release(&id, now)?,
        Op::Extend(id, ttl) => book.extend(&id, ttl, now)?,
        Op::TopUp(_, amount, expires_at) => {
            let a = cu(&amount)?;
            book.add_funds(a, expires_at, FundsKind::TopUp, now)?
        }
        Op::SetCap(scope, cap) => {
            let cap = cap.as_ref().map(cu).transpose()?;
            book.scope((scope.kind(), scope.local_id()), |row| row.cap = cap);
            Out::Unit
        }
        Op::SetDefaultCap(_, cap) => {
            book.team.default_cap = cap.as_ref().map(cu).transpose()?;
            book.mark_team();
            Out::Unit
        }
        Op::SetAutoRefill(_, refill) => {
            if let Some(r) = &refill {
                validate_refill(r)?;
            }
            book.team.refill = refill;
            book.mark_team();
            Out::Unit
        }
        Op::ChangePlan(_, allowance, change) => {
            let a = cu(&allowance)?;
            book.change_plan(a, change, now);
            Out::Unit
        }
        Op::Usage(scope) => Out::Usage(Box::new(book.usage(&scope))),
        Op::Balance(_) => Out::Balance(Box::new(book.balance())),
        Op::Maintain(_) => Out::Unit,
        Op::ClaimRefill(_) => {
            if book.refill_due() {
                book.team.refills_used += 1;
                book.mark_team();
                let r = book.team.refill.clone();
                Out::Claim(r.map(|r| (r.amount, r.valid_for)))
            } else {
                Out::Claim(None)
            }
        }
        Op::ApplyRefill(_, amount, valid_for) => {
            let a = cu(&amount)?;
            let expires = add(now, valid_for);
            book.add_funds(a, expires, FundsKind::Refill, now)?
        }
        Op::UnclaimRefill(_) => {
            book.team.refills_used = book.team.refills_used.saturating_sub(1);
            book.mark_team();
            Out::Unit
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator (xorshift64*), so a failure reproduces.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        /// A decimal of any scale, small or near the largest magnitude the checks' sums still fit in
        /// (2^94), zero or negative now and then.
        fn decimal(&mut self) -> Decimal {
            let scale = match self.below(64) {
                0 => self.below(29) as u32,
                _ => self.below(5) as u32,
            };
            let m: i128 = match self.below(64) {
                0..=7 => 0,
                8 => (1i128 << 94) - self.below(1000) as i128,
                9 => ((self.next() as i128) << 30) | self.below(1 << 30) as i128,
                _ => self.below(100_000) as i128,
            };
            let m = if self.below(8) == 0 { -m } else { m };
            Decimal::from_i128_with_scale(m, scale)
        }
    }

    /// A sum of one decimal is that decimal bit for bit (what `funds_total` relies on).
    #[test]
    fn a_sum_of_one_is_itself() {
        let mut g = Gen(0x2545_F491_4F6C_DD1D);
        for i in 0..100_000 {
            let d = g.decimal();
            let d = if i % 3 == 0 { -d } else { d };
            let sum: Decimal = [d].into_iter().sum();
            assert_eq!(sum.serialize(), d.serialize(), "{d:?}");
        }
    }

    /// `positive` is `> 0`, negative zero included.
    #[test]
    fn positive_is_greater_than_zero() {
        let mut g = Gen(0xD1B5_4A32_D192_ED03);
        for i in 0..100_000 {
            let d = g.decimal();
            let d = if i % 3 == 0 { -d } else { d };
            assert_eq!(positive(d), d > Decimal::ZERO, "{d:?}");
        }
        let negative_zero = -Decimal::new(0, 3);
        assert!(negative_zero.is_sign_negative() && !positive(negative_zero));
        assert!(positive(Decimal::new(1, 28)) && !positive(Decimal::new(-1, 28)));
    }

    /// The integer checks of a reservation agree with the decimal ones whenever they answer, and they
    /// answer in the usual cases.
    #[test]
    fn integer_checks_agree_with_decimal_checks() {
        let mut g = Gen(0x9E37_79B9_7F4A_7C15);
        let (mut answered, mut refused, mut declined) = (0, 0, 0);
        for _ in 0..200_000 {
            let room = Room {
                funds: g.decimal(),
                overdraft: if g.below(2) == 0 {
                    Decimal::ZERO
                } else {
                    g.decimal()
                },
                default_cap: (g.below(2) == 0).then(|| g.decimal()),
                amount: g.decimal(),
            };
            let period = 7;
            let kinds = [
                ScopeKind::Team,
                ScopeKind::Member,
                ScopeKind::Project,
                ScopeKind::ApiKey,
            ];
            let n = 1 + g.below(4) as usize;
            let rows: Vec<(ScopeKind, ScopeRow)> = kinds[..n]
                .iter()
                .map(|&k| {
                    let row = ScopeRow {
                        cap: (g.below(3) != 0).then(|| g.decimal()),
                        used: g.decimal(),
                        held: g.decimal(),
                        period: if g.below(5) == 0 { 6 } else { period },
                    };
                    (k, row)
                })
                .collect();
            let mut denial = None;
            for (k, row) in &rows {
                let view = ScopeRow {
                    cap: row.cap,
                    used: if row.period == period {
                        row.used
                    } else {
                        Decimal::ZERO
                    },
                    held: row.held,
                    period,
                };
                room.note(&mut denial, *k, &view);
            }
            match room.refuses_exact(rows.iter().map(|(k, r)| (*k, r)), period) {
                Some(r) => {
                    assert_eq!(
                        r,
                        denial.is_some(),
                        "{rows:?} funds {} amount {}",
                        room.funds,
                        room.amount
                    );
                    answered += 1;
                    refused += usize::from(r);
                }
                None => declined += 1,
            }
        }
        assert!(
            answered > 100_000 && refused > 5_000 && declined > 100,
            "{answered} {refused} {declined}"
        );
    }
}
