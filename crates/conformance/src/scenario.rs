//! The scenario vocabulary: what an adapter's fixture returns for each scenario, and the matrix.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use genroute_core::{Billed, Decimal, Money, Provider, ProviderRequest};
use genroute_emulators::{EmulatorHandle, Kind, Settings};
use genroute_http::{HttpConfig, PollConfig};

/// A fixture's answer for one scenario: the setup to run, or an explicit opt-out with its reason.
#[derive(Debug)]
pub enum Scenario<T> {
    /// Run the scenario with this setup.
    Run(T),
    /// This adapter does not take part, for this reason (shown in the matrix).
    OptOut(&'static str),
}

/// Every scenario of the suite, in matrix order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum ScenarioId {
    /// The adapter's modality succeeds end to end.
    Success,
    /// The queue/poll lifecycle, with progress events.
    AsyncPoll,
    /// Dropping the future cancels upstream.
    CancelOnDrop,
    /// A deadline that passes while polling cancels upstream.
    CancelOnDeadline,
    /// `Provider::cancel` cancels a job in flight.
    CancelExplicit,
    /// `Provider::resume` follows an existing job without a new create.
    Resume,
    /// 500, 502 and 503 on create.
    ServerError,
    /// 429 with `Retry-After`.
    RateLimited,
    /// A create slower than the deadline.
    Slow,
    /// Truncated JSON with a 200.
    MalformedJson,
    /// A body larger than the configured limit.
    Oversized,
    /// A job that never finishes.
    Stuck,
    /// A status spelling nobody knows, forever.
    UnknownStatus,
    /// The account ran out of money, as the provider really says it.
    CreditExhausted,
    /// Moderation refused the job.
    ContentRejected,
    /// The provider's cost or usage figure is recorded.
    Cost,
    /// `Provider::dry_run` quotes without creating anything (or says it cannot, without a request).
    DryRun,
    /// Jobs out of the model's capabilities are refused before any request.
    InvalidInput,
    /// One attempt is one create, whatever happens after it.
    OneCreate,
}

impl ScenarioId {
    /// Every scenario, in matrix order.
    pub const ALL: [ScenarioId; 19] = [
        ScenarioId::Success,
        ScenarioId::AsyncPoll,
        ScenarioId::CancelOnDrop,
        ScenarioId::CancelOnDeadline,
        ScenarioId::CancelExplicit,
        ScenarioId::Resume,
        ScenarioId::ServerError,
        ScenarioId::RateLimited,
        ScenarioId::Slow,
        ScenarioId::MalformedJson,
        ScenarioId::Oversized,
        ScenarioId::Stuck,
        ScenarioId::UnknownStatus,
        ScenarioId::CreditExhausted,
        ScenarioId::ContentRejected,
        ScenarioId::Cost,
        ScenarioId::DryRun,
        ScenarioId::InvalidInput,
        ScenarioId::OneCreate,
    ];

    /// snake_case name (the fixture method's name).
    pub fn name(self) -> &'static str {
        match self {
            ScenarioId::Success => "success",
            ScenarioId::AsyncPoll => "async_poll",
            ScenarioId::CancelOnDrop => "cancel_on_drop",
            ScenarioId::CancelOnDeadline => "cancel_on_deadline",
            ScenarioId::CancelExplicit => "cancel_explicit",
            ScenarioId::Resume => "resume",
            ScenarioId::ServerError => "server_error",
            ScenarioId::RateLimited => "rate_limited",
            ScenarioId::Slow => "slow",
            ScenarioId::MalformedJson => "malformed_json",
            ScenarioId::Oversized => "oversized",
            ScenarioId::Stuck => "stuck",
            ScenarioId::UnknownStatus => "unknown_status",
            ScenarioId::CreditExhausted => "credit_exhausted",
            ScenarioId::ContentRejected => "content_rejected",
            ScenarioId::Cost => "cost",
            ScenarioId::DryRun => "dry_run",
            ScenarioId::InvalidInput => "invalid_input",
            ScenarioId::OneCreate => "one_create",
        }
    }
}

impl fmt::Display for ScenarioId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Transport settings the suite chooses per scenario; the fixture passes them to its adapter's config.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Transport {
    /// HTTP settings (the suite lowers `max_body_bytes` for the oversized scenario).
    pub http: HttpConfig,
    /// Polling settings: millisecond intervals and a small cap on unknown statuses. Synchronous adapters
    /// ignore it.
    pub poll: PollConfig,
    /// `true`: the adapter must not hold the create open until the job is done (Replicate's
    /// `Prefer: wait` off), so the queue lifecycle is visible. `false` (the `success` scenario only): the
    /// adapter's own default.
    pub poll_only: bool,
}

/// What a fixture does: name its emulator, build its adapter, and answer every scenario. Every method
/// is required: a new scenario added here fails to compile until every fixture answers it.
pub trait Fixture: Send + Sync {
    /// The emulator this adapter runs against.
    fn kind(&self) -> Kind;

    /// The adapter, pointed at `emulator` (its `base_url()` and key) with these transport settings.
    fn provider(
        &self,
        emulator: &EmulatorHandle,
        transport: &Transport,
    ) -> Result<Arc<dyn Provider>, Box<dyn std::error::Error + Send + Sync>>;

    /// Requests of the adapter's modality (OpenAI: an image and a speech request) that must succeed.
    fn success(&self) -> Scenario<Vec<ProviderRequest>>;
    /// A queued request, followed through 2 queued and 2 running polls.
    fn async_poll(&self) -> Scenario<ProviderRequest>;
    /// A queued request whose future is dropped while it runs.
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest>;
    /// A queued request whose deadline passes while it runs.
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest>;
    /// A queued request cancelled through `Provider::cancel` with the job id the emulator created.
    fn cancel_explicit(&self) -> Scenario<ProviderRequest>;
    /// A queued request left unfinished upstream, then resumed by id.
    fn resume(&self) -> Scenario<ProviderRequest>;
    /// A request whose create answers 500, 502, 503.
    fn server_error(&self) -> Scenario<ProviderRequest>;
    /// A request whose create answers 429 with `Retry-After`.
    fn rate_limited(&self) -> Scenario<ProviderRequest>;
    /// A request whose create is slower than the call's deadline.
    fn slow(&self) -> Scenario<ProviderRequest>;
    /// A request whose create (and, for queued models, status) answers truncated JSON.
    fn malformed_json(&self) -> Scenario<ProviderRequest>;
    /// A request whose create answers a body above the configured limit.
    fn oversized(&self) -> Scenario<ProviderRequest>;
    /// A request whose job never finishes.
    fn stuck(&self) -> Scenario<ProviderRequest>;
    /// A queued request whose job reports an unknown status forever.
    fn unknown_status(&self) -> Scenario<ProviderRequest>;
    /// A request refused for lack of credit.
    fn credit_exhausted(&self) -> Scenario<ProviderRequest>;
    /// A request refused by moderation, and whether the adapter must report it billed.
    fn content_rejected(&self) -> Scenario<Rejection>;
    /// A request whose reported cost or usage must be recorded.
    fn cost(&self) -> Scenario<CostCheck>;
    /// A request to quote with `Provider::dry_run`, and the quote expected (`None`: no dry run).
    fn dry_run(&self) -> Scenario<DryRun>;
    /// Requests the adapter must refuse before sending anything.
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>>;
    /// A request used to check that failures never cause a second create.
    fn one_create(&self) -> Scenario<ProviderRequest>;
}

/// The `content_rejected` setup: the request, and the billing the adapter must report (providers differ:
/// a refusal at submit is free, a job that ran and was then refused may have been billed).
#[derive(Debug)]
pub struct Rejection {
    /// The request the emulator will refuse.
    pub request: ProviderRequest,
    /// The billing the error must carry.
    pub billed: Billed,
}

/// The `cost` setup.
#[derive(Debug)]
pub struct CostCheck {
    /// The request.
    pub request: ProviderRequest,
    /// Applied to the emulator before the call, to make the provider's figure distinctive (e.g. a
    /// fractional `X-Fal-Billable-Units`).
    pub emulator: fn(&mut Settings),
    /// What the generation must carry.
    pub expect: Vec<Metered>,
}

/// The `dry_run` setup.
#[derive(Debug)]
pub struct DryRun {
    /// The request to quote.
    pub request: ProviderRequest,
    /// The provider's quote (Scenario: Creative Units), or `None` for a provider without a dry run, which
    /// must answer `Ok(None)` without sending anything.
    pub expect: Option<Money>,
}

/// One metered figure a generation must carry, exactly.
#[derive(Clone, PartialEq, Debug)]
#[non_exhaustive]
pub enum Metered {
    /// `usage.billable_units` (fal's `X-Fal-Billable-Units`).
    BillableUnits(Decimal),
    /// `usage.compute_seconds` (Replicate's `metrics.predict_time`).
    ComputeSeconds(Decimal),
    /// `usage.input_tokens` (OpenAI GPT image).
    InputTokens(u64),
    /// `usage.output_tokens` (OpenAI GPT image).
    OutputTokens(u64),
    /// `usage.characters` (ElevenLabs `character-cost`).
    Characters(u64),
    /// `usage.output_seconds` (Runway: seconds of video).
    OutputSeconds(Decimal),
    /// `charged`, as reported by the provider (Scenario's `creativeUnitsCost` in CU).
    Charged(Money),
}

/// Suite timing: real time, small numbers (the emulators run on real sockets).
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Cap on consecutive unknown statuses given to adapters.
pub const MAX_CONSECUTIVE_UNKNOWN: u32 = 3;

impl Transport {
    /// The suite's default: 10 s request timeout, 1 MiB bodies, 5–20 ms polling, 3 unknown statuses.
    pub fn suite_default() -> Self {
        Self {
            http: HttpConfig {
                request_timeout: Duration::from_secs(10),
                connect_timeout: Duration::from_secs(2),
                max_body_bytes: 1024 * 1024,
                ..HttpConfig::default()
            },
            poll: PollConfig {
                initial_interval: POLL_INTERVAL,
                max_interval: POLL_INTERVAL * 4,
                backoff_factor: 2,
                max_consecutive_unknown: MAX_CONSECUTIVE_UNKNOWN,
                max_wait: Some(Duration::from_secs(20)),
                queue_time_unbilled: false,
            },
            poll_only: true,
        }
    }
}

/// A fixture's answer for a scenario without its setup: `None` when it runs, `Some(reason)` when it opts
/// out.
pub fn opt_out(fixture: &dyn Fixture, id: ScenarioId) -> Option<&'static str> {
    fn reason<T>(s: Scenario<T>) -> Option<&'static str> {
        match s {
            Scenario::Run(_) => None,
            Scenario::OptOut(r) => Some(r),
        }
    }
    match id {
        ScenarioId::Success => reason(fixture.success()),
        ScenarioId::AsyncPoll => reason(fixture.async_poll()),
        ScenarioId::CancelOnDrop => reason(fixture.cancel_on_drop()),
        ScenarioId::CancelOnDeadline => reason(fixture.cancel_on_deadline()),
        ScenarioId::CancelExplicit => reason(fixture.cancel_explicit()),
        ScenarioId::Resume => reason(fixture.resume()),
        ScenarioId::ServerError => reason(fixture.server_error()),
        ScenarioId::RateLimited => reason(fixture.rate_limited()),
        ScenarioId::Slow => reason(fixture.slow()),
        ScenarioId::MalformedJson => reason(fixture.malformed_json()),
        ScenarioId::Oversized => reason(fixture.oversized()),
        ScenarioId::Stuck => reason(fixture.stuck()),
        ScenarioId::UnknownStatus => reason(fixture.unknown_status()),
        ScenarioId::CreditExhausted => reason(fixture.credit_exhausted()),
        ScenarioId::ContentRejected => reason(fixture.content_rejected()),
        ScenarioId::Cost => reason(fixture.cost()),
        ScenarioId::DryRun => reason(fixture.dry_run()),
        ScenarioId::InvalidInput => reason(fixture.invalid_input()),
        ScenarioId::OneCreate => reason(fixture.one_create()),
    }
}

/// The matrix as a Markdown table: one row per scenario, one column per fixture; ✅ runs, `opt-out (n)`
/// opts out for reason n, listed under the table.
pub fn matrix_markdown(fixtures: &[&dyn Fixture]) -> String {
    let mut out = String::from("| scenario |");
    for f in fixtures {
        out.push_str(&format!(" {} |", f.kind().provider_id()));
    }
    out.push_str("\n|---|");
    for _ in fixtures {
        out.push_str(":---:|");
    }
    out.push('\n');
    // One footnote per distinct (adapter, reason): a reason shared by several scenarios is listed once.
    let mut notes: Vec<(&'static str, &'static str)> = Vec::new();
    for id in ScenarioId::ALL {
        out.push_str(&format!("| `{}` |", id.name()));
        for f in fixtures {
            match opt_out(*f, id) {
                None => out.push_str(" ✅ |"),
                Some(reason) => {
                    let key = (f.kind().provider_id(), reason);
                    let n = match notes.iter().position(|k| *k == key) {
                        Some(i) => i + 1,
                        None => {
                            notes.push(key);
                            notes.len()
                        }
                    };
                    out.push_str(&format!(" opt-out ({n}) |"));
                }
            }
        }
        out.push('\n');
    }
    if !notes.is_empty() {
        out.push('\n');
        for (i, (provider, reason)) in notes.iter().enumerate() {
            out.push_str(&format!("- ({}) {provider}: {reason}\n", i + 1));
        }
    }
    out
}
