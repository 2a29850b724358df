//! The [`Client`]: a router, a ledger and cost telemetry, built from a [`Config`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use genroute_core::{Caller, Decimal, Money, Provider, TeamId};
use genroute_ledger::{
    Balance, Entry, EntryKind, FundsBatch, HistoryFilter, Ledger, LedgerError, MemoryLedger, Scope, Usage,
};
use genroute_router::retry::Jitter;
use genroute_router::{GenerateRequest, Outcome, QualityGate, Router, RouterError, RouterSettings};
use genroute_telemetry::{CostLogOptions, CostSink, JsonlCostLog, Sinks, TelemetryGuard};
use serde::Serialize;

use crate::config::{Config, ConfigError, EnvMode, LedgerSpec, TeamSpec};
use crate::error::Error;
use crate::registry::Registry;

/// A ready client: routes jobs, keeps budgets, logs cost. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    router: Router,
    ledger: Arc<dyn Ledger>,
    config: RwLock<Arc<Config>>,
    path: Option<PathBuf>,
    env_mode: EnvMode,
    cost_log: Option<Arc<JsonlCostLog>>,
    cost_log_path: Option<PathBuf>,
    telemetry: Mutex<Option<TelemetryGuard>>,
    reload: Mutex<ReloadStatus>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("config", &self.inner.path)
            .field("cost_log", &self.inner.cost_log_path)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`] from a [`Config`], with optional extra providers, ledger, sinks and gate.
pub struct ClientBuilder {
    config: Option<Config>,
    path: Option<PathBuf>,
    env_mode: EnvMode,
    registry: Registry,
    providers: Vec<Arc<dyn Provider>>,
    ledger: Option<Arc<dyn Ledger>>,
    sinks: Vec<Arc<dyn CostSink>>,
    gate: Option<Arc<dyn QualityGate>>,
    telemetry: bool,
    jitter: Option<Jitter>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("path", &self.path)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// Uses this validated configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Reads the configuration from a file (environment references required) and remembers the path
    /// for [`Client::reload`] and [`Client::watch`].
    pub fn config_file(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        self.config = Some(Config::load(&path, EnvMode::Require)?);
        self.path = Some(path);
        Ok(self)
    }

    /// Like [`ClientBuilder::config_file`], but unset environment variables become warnings: for dry
    /// runs and budget commands that call no provider.
    pub fn config_file_lenient(mut self, path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref().to_path_buf();
        self.config = Some(Config::load(&path, EnvMode::Lenient)?);
        self.path = Some(path);
        self.env_mode = EnvMode::Lenient;
        Ok(self)
    }

    /// Replaces the adapter registry (to add your own `type`s).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds a provider built in code (in addition to the config's).
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.push(provider);
        self
    }

    /// Uses this ledger instead of the config's `[ledger]`.
    pub fn ledger(mut self, ledger: Arc<dyn Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// Adds a cost sink (every attempt's event goes to it).
    pub fn cost_sink(mut self, sink: Arc<dyn CostSink>) -> Self {
        self.sinks.push(sink);
        self
    }

    /// A quality gate for every job.
    pub fn quality_gate(mut self, gate: Arc<dyn QualityGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Whether to set up OpenTelemetry from `[telemetry]` (default true). Off, the client only feeds the
    /// cost log and the sinks given.
    pub fn telemetry(mut self, on: bool) -> Self {
        self.telemetry = on;
        self
    }

    /// A seeded jitter source for retry backoff (reproducible tests).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = Some(jitter);
        self
    }

    /// Builds providers, opens the ledger (creating configured teams that do not exist yet), opens the
    /// cost log and starts telemetry.
    pub async fn build(self) -> Result<Client, Error> {
        let config = self
            .config
            .ok_or_else(|| Error::Invalid("no configuration given".into()))?;
        let ledger: Arc<dyn Ledger> = match self.ledger {
            Some(l) => l,
            None => open_ledger(&config.ledger).await?,
        };
        ensure_teams(ledger.as_ref(), config.teams.values()).await?;

        let mut sinks = Sinks::new();
        let mut cost_log = None;
        let mut cost_log_path = None;
        if let Some(p) = &config.cost_log {
            let path = config.resolve_path(p);
            create_parent(&path)?;
            let options = CostLogOptions {
                fsync: config.cost_log_fsync,
                ..CostLogOptions::default()
            };
            let log = Arc::new(JsonlCostLog::open(&path, options)?);
            sinks.push(Arc::clone(&log) as Arc<dyn CostSink>);
            cost_log = Some(log);
            cost_log_path = Some(path);
        }
        let telemetry = if self.telemetry {
            let guard = TelemetryGuard::init(&config.telemetry)?;
            if guard.metrics_enabled() {
                sinks.push(Arc::new(guard.cost_metrics()));
            }
            Some(guard)
        } else {
            None
        };
        for s in self.sinks {
            sinks.push(s);
        }

        let mut settings = RouterSettings {
            breaker: config.router.breaker.clone(),
            retry_budget: config.router.retry_budget.clone(),
            ..RouterSettings::default()
        };
        if let Some(ttl) = config.router.hold_ttl {
            settings.hold_ttl = ttl;
        }
        let mut builder = Router::builder(config.route_table(), config.prices.clone(), Arc::clone(&ledger))
            .settings(settings)
            .cost_sink(Arc::new(sinks));
        if let Some(gate) = self.gate {
            builder = builder.quality_gate(gate);
        }
        if let Some(jitter) = self.jitter {
            builder = builder.jitter(jitter);
        }
        for (id, spec) in &config.providers {
            let provider = self
                .registry
                .build(id, &spec.kind, spec.settings.clone())
                .map_err(|message| Error::Provider {
                    id: id.clone(),
                    kind: spec.kind.clone(),
                    message,
                })?;
            builder = builder.provider(provider);
        }
        for p in self.providers {
            builder = builder.provider(p);
        }
        Ok(Client {
            inner: Arc::new(Inner {
                router: builder.build(),
                ledger,
                config: RwLock::new(Arc::new(config)),
                path: self.path,
                env_mode: self.env_mode,
                cost_log,
                cost_log_path,
                telemetry: Mutex::new(telemetry),
                reload: Mutex::new(ReloadStatus::default()),
            }),
        })
    }
}

fn create_parent(path: &Path) -> Result<(), Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: "cannot create directory",
            path: dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Opens the ledger a config names.
pub async fn open_ledger(spec: &LedgerSpec) -> Result<Arc<dyn Ledger>, Error> {
    match spec {
        LedgerSpec::Memory { retention: None } => Ok(Arc::new(MemoryLedger::new())),
        LedgerSpec::Memory { retention: Some(r) } => {
            Ok(Arc::new(MemoryLedger::new().with_retention(r.history, r.window)))
        }
        LedgerSpec::Sqlite { path } => {
            create_parent(path)?;
            Ok(Arc::new(genroute_ledger::SqliteLedger::open(path)?))
        }
        LedgerSpec::Postgres { url } => {
            use secrecy::ExposeSecret;
            Ok(Arc::new(
                genroute_ledger::PostgresLedger::connect(url.expose_secret()).await?,
            ))
        }
    }
}

/// Creates the configured teams that the ledger does not have yet, with their caps, top-ups and
/// auto-refill. Teams that exist are left as the ledger has them (the ledger is authoritative once a team
/// exists). Returns the teams created.
pub async fn ensure_teams<'a>(
    ledger: &dyn Ledger,
    teams: impl IntoIterator<Item = &'a TeamSpec>,
) -> Result<Vec<TeamId>, Error> {
    let mut created = Vec::new();
    for spec in teams {
        let mut tc =
            genroute_ledger::TeamConfig::new(spec.team.clone(), spec.allowance.clone(), spec.subscribed_at);
        tc.default_cap = spec.default_cap.clone();
        tc.auto_refill = spec.auto_refill.clone();
        match ledger.create_team(&tc).await {
            Ok(()) => {}
            Err(LedgerError::TeamExists(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        let team = &spec.team;
        for (id, cap) in &spec.members {
            let scope = Scope::Member(team.clone(), id_of(id)?);
            ledger.set_cap(&scope, cap).await?;
        }
        for (id, cap) in &spec.projects {
            let scope = Scope::Project(team.clone(), id_of(id)?);
            ledger.set_cap(&scope, cap).await?;
        }
        for (id, cap) in &spec.api_keys {
            let scope = Scope::ApiKey(team.clone(), id_of(id)?);
            ledger.set_cap(&scope, cap).await?;
        }
        for (amount, expires) in &spec.top_ups {
            ledger.top_up(team, amount, *expires).await?;
        }
        created.push(team.clone());
    }
    Ok(created)
}

fn id_of<T: std::str::FromStr<Err = genroute_core::IdError>>(s: &str) -> Result<T, Error> {
    s.parse()
        .map_err(|e: genroute_core::IdError| Error::Invalid(e.to_string()))
}

/// One candidate of a dry run.
#[derive(Clone, Debug, Serialize)]
pub struct CandidateQuote {
    /// Provider id.
    pub provider: String,
    /// Model id.
    pub model: String,
    /// Price tier.
    pub tier: String,
    /// Whether the router would try it.
    pub included: bool,
    /// Its place in the plan (1 = tried first), when included.
    pub rank: Option<usize>,
    /// The quote in the provider's currency (`"0.025 USD"`), when it could be priced.
    pub cost: Option<String>,
    /// The same in CU.
    pub cost_cu: Option<String>,
    /// Flagged as high cost by a `[pricing.high_cost]` threshold.
    pub high_cost: bool,
    /// Why it is in or out.
    pub reason: String,
    /// The quote's line-by-line explanation.
    pub explanation: Option<String>,
}

/// A dry run: the route a request resolves to and every candidate with its quote and verdict.
#[derive(Clone, Debug, Serialize)]
pub struct QuoteReport {
    /// The route after alias resolution.
    pub route: String,
    /// Ordering policy of the route.
    pub policy: String,
    /// Included candidates in plan order, then the excluded ones.
    pub candidates: Vec<CandidateQuote>,
}

impl QuoteReport {
    /// The candidate the router would try first.
    pub fn first(&self) -> Option<&CandidateQuote> {
        self.candidates.iter().find(|c| c.rank == Some(1))
    }
}

/// A team's budget: its pool and the usage of every scope known (configured or seen in history).
#[derive(Clone, Debug, Serialize)]
pub struct BudgetStatus {
    /// The pool.
    pub balance: Balance,
    /// The team first, then members, projects and API keys.
    pub scopes: Vec<Usage>,
}

/// Spend summed by provider, model, member and project, in CU.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpendReport {
    /// `ledger` or `cost_log`.
    pub source: String,
    /// Charged attempts counted.
    pub attempts: u64,
    /// Total CU charged.
    pub total_cu: Decimal,
    /// By provider id.
    pub by_provider: BTreeMap<String, Decimal>,
    /// By `provider/model`.
    pub by_model: BTreeMap<String, Decimal>,
    /// By member (`-` = none).
    pub by_member: BTreeMap<String, Decimal>,
    /// By project (`-` = none).
    pub by_project: BTreeMap<String, Decimal>,
    /// Provider-currency totals (`USD`, `CU`, `credits:runway`), cost log only.
    pub by_currency: BTreeMap<String, Decimal>,
}

impl SpendReport {
    fn add(&mut self, provider: &str, model: &str, member: Option<&str>, project: Option<&str>, cu: Decimal) {
        self.attempts += 1;
        self.total_cu += cu;
        *self.by_provider.entry(provider.to_owned()).or_default() += cu;
        *self.by_model.entry(format!("{provider}/{model}")).or_default() += cu;
        *self
            .by_member
            .entry(member.unwrap_or("-").to_owned())
            .or_default() += cu;
        *self
            .by_project
            .entry(project.unwrap_or("-").to_owned())
            .or_default() += cu;
    }
}

/// What the last reload did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReloadStatus {
    /// Successful reloads.
    pub reloads: u64,
    /// Refused reloads (the running configuration was kept).
    pub failures: u64,
    /// When the file was last seen to change.
    pub last_attempt: Option<DateTime<Utc>>,
    /// Why the last reload was refused, if it was (cleared by a successful one).
    pub last_error: Option<String>,
    /// Sections that changed but only apply after a restart (providers, ledger, budgets, telemetry).
    pub needs_restart: Vec<String>,
}

impl Client {
    /// Reads `genroute.toml` (or another file) and builds a client. Environment references must be set.
    pub async fn from_config(path: impl AsRef<Path>) -> Result<Client, Error> {
        Client::builder().config_file(path)?.build().await
    }

    /// A builder, for extra providers, sinks, a ledger or a gate.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            config: None,
            path: None,
            env_mode: EnvMode::Require,
            registry: Registry::builtin(),
            providers: Vec::new(),
            ledger: None,
            sinks: Vec::new(),
            gate: None,
            telemetry: true,
            jitter: None,
        }
    }

    /// Runs a job: resolve, quote, plan, then reserve → call → settle for each attempt.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Outcome, RouterError> {
        self.inner.router.generate(request).await
    }

    /// The dry run: every candidate of the request's route with its quote and why it is in or out.
    /// Nothing is reserved or called.
    pub fn quote(&self, request: &GenerateRequest) -> Result<QuoteReport, Error> {
        let (route_name, route, plan) = self.inner.router.plan(request)?;
        let prices = self.config().prices.clone();
        let tier_of = |target: &genroute_core::ModelRef| {
            route
                .candidates
                .iter()
                .find(|c| &c.target() == target)
                .map_or("standard", |c| c.tier.as_str())
                .to_owned()
        };
        let mut candidates = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            candidates.push(CandidateQuote {
                provider: step.target.provider.to_string(),
                model: step.target.model.to_string(),
                tier: step.tier.as_str().to_owned(),
                included: true,
                rank: Some(i + 1),
                cost: Some(step.quote.cost.to_string()),
                cost_cu: Some(format!("{} CU", step.quote_cu)),
                high_cost: step.quote.high_cost,
                reason: if i == 0 {
                    format!("in: tried first ({:?} policy)", route.policy).to_lowercase()
                } else {
                    format!("in: fallback #{i}")
                },
                explanation: Some(step.quote.explain()),
            });
        }
        for (target, reason) in &plan.dropped {
            let quote = prices.quote(target, &request.job).ok();
            candidates.push(CandidateQuote {
                provider: target.provider.to_string(),
                model: target.model.to_string(),
                tier: tier_of(target),
                included: false,
                rank: None,
                cost: quote.as_ref().map(|q| q.cost.to_string()),
                cost_cu: quote
                    .as_ref()
                    .and_then(|q| q.cost_cu.as_ref().map(ToString::to_string)),
                high_cost: quote.as_ref().is_some_and(|q| q.high_cost),
                reason: format!("out: {reason}"),
                explanation: quote.as_ref().map(genroute_core::Quote::explain),
            });
        }
        Ok(QuoteReport {
            route: route_name,
            policy: format!("{:?}", route.policy).to_lowercase(),
            candidates,
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .inner
                .config
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// The router (for its breakers, latency, or to stack tower layers).
    pub fn router(&self) -> &Router {
        &self.inner.router
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.inner.ledger
    }

    /// The cost log file, when enabled.
    pub fn cost_log_path(&self) -> Option<&Path> {
        self.inner.cost_log_path.as_deref()
    }

    /// Writes pending cost log lines.
    pub fn flush(&self) -> Result<(), Error> {
        if let Some(log) = &self.inner.cost_log {
            log.flush()?;
        }
        Ok(())
    }

    /// Flushes the cost log and shuts telemetry down (blocking until export ends or times out).
    pub fn shutdown(&self) -> Result<(), Error> {
        self.flush()?;
        let guard = self
            .inner
            .telemetry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(g) = guard {
            g.shutdown()?;
        }
        Ok(())
    }

    /// The caller the config's `[defaults]` describe, with `team` required.
    pub fn default_caller(&self) -> Result<Caller, Error> {
        let c = self.config();
        let team = match (&c.defaults.team, c.teams.len()) {
            (Some(t), _) => t.clone(),
            (None, 1) => c.teams.keys().next().cloned().unwrap_or_default(),
            _ => {
                return Err(Error::Invalid(
                    "no team given and no [defaults] team in the config".into(),
                ));
            }
        };
        let mut caller = Caller::team(id_of(&team)?);
        if let Some(m) = &c.defaults.member {
            caller = caller.member(id_of(m)?);
        }
        if let Some(p) = &c.defaults.project {
            caller = caller.project(id_of(p)?);
        }
        if let Some(k) = &c.defaults.api_key {
            caller = caller.api_key(id_of(k)?);
        }
        Ok(caller)
    }

    // -- budget helpers ------------------------------------------------------------------------------

    /// A team's pool and the usage of its team, member, project and API-key scopes (those configured and
    /// those seen in the ledger's history).
    pub async fn budget_status(&self, team: &TeamId) -> Result<BudgetStatus, Error> {
        let ledger = &self.inner.ledger;
        let balance = ledger.balance(team).await?;
        let mut scopes: BTreeSet<ScopeKey> = BTreeSet::new();
        scopes.insert(ScopeKey(Scope::Team(team.clone())));
        if let Some(spec) = self.config().teams.get(team.as_str()) {
            for m in spec.members.keys() {
                scopes.insert(ScopeKey(Scope::Member(team.clone(), id_of(m)?)));
            }
            for p in spec.projects.keys() {
                scopes.insert(ScopeKey(Scope::Project(team.clone(), id_of(p)?)));
            }
            for k in spec.api_keys.keys() {
                scopes.insert(ScopeKey(Scope::ApiKey(team.clone(), id_of(k)?)));
            }
        }
        let history = ledger
            .history(&HistoryFilter::scope(Scope::Team(team.clone())))
            .await?;
        for e in &history {
            for s in Scope::of_caller(&e.caller).into_iter().skip(1) {
                scopes.insert(ScopeKey(s));
            }
        }
        let mut usages = Vec::new();
        for s in scopes {
            usages.push(ledger.usage(&s.0).await?);
        }
        Ok(BudgetStatus {
            balance,
            scopes: usages,
        })
    }

    /// Adds purchased CU that expire at `expires_at`.
    pub async fn top_up(
        &self,
        team: &TeamId,
        amount: &Money,
        expires_at: DateTime<Utc>,
    ) -> Result<FundsBatch, Error> {
        Ok(self.inner.ledger.top_up(team, amount, expires_at).await?)
    }

    /// Caps a scope.
    pub async fn set_cap(&self, scope: &Scope, cap: &Money) -> Result<(), Error> {
        Ok(self.inner.ledger.set_cap(scope, cap).await?)
    }

    /// Removes a scope's own cap.
    pub async fn remove_cap(&self, scope: &Scope) -> Result<(), Error> {
        Ok(self.inner.ledger.remove_cap(scope).await?)
    }

    /// Ledger history of a scope, oldest first.
    pub async fn history(&self, filter: &HistoryFilter) -> Result<Vec<Entry>, Error> {
        Ok(self.inner.ledger.history(filter).await?)
    }

    /// Spend of a team from the ledger: every settled attempt.
    pub async fn report_from_ledger(&self, team: &TeamId) -> Result<SpendReport, Error> {
        let mut filter = HistoryFilter::scope(Scope::Team(team.clone()));
        filter.kinds = vec![EntryKind::Settle];
        let entries = self.inner.ledger.history(&filter).await?;
        let mut report = SpendReport {
            source: "ledger".into(),
            ..SpendReport::default()
        };
        for e in entries {
            let (provider, model) = match &e.meta {
                Some(m) => (m.provider.to_string(), m.model.to_string()),
                None => ("-".to_owned(), "-".to_owned()),
            };
            report.add(
                &provider,
                &model,
                e.caller.member.as_ref().map(|m| m.as_str()),
                e.caller.project.as_ref().map(|p| p.as_str()),
                e.amount.amount(),
            );
        }
        Ok(report)
    }

    /// Spend from the cost log (flushed first): every billed attempt, optionally of one team.
    pub fn report_from_cost_log(&self, team: Option<&TeamId>) -> Result<SpendReport, Error> {
        self.flush()?;
        let Some(path) = self.cost_log_path() else {
            return Err(Error::Invalid(
                "the cost log is disabled ([cost_log] enabled = false)".into(),
            ));
        };
        report_from_cost_log_file(path, team)
    }

    // -- reload --------------------------------------------------------------------------------------

    /// Re-reads the config file and swaps in its routes and prices; jobs in flight finish on what they
    /// started with. A file that does not validate is refused: the running configuration stays, and
    /// [`Client::reload_status`] says why. Changes to providers, ledger, budgets or telemetry are noted
    /// in `needs_restart` and not applied.
    pub fn reload(&self) -> Result<(), Error> {
        let Some(path) = &self.inner.path else {
            return Err(Error::Invalid("this client was not built from a file".into()));
        };
        let result = Config::load(path, self.inner.env_mode);
        let mut status = self
            .inner
            .reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        status.last_attempt = Some(Utc::now());
        match result {
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.to_string());
                tracing::error!(file = %path.display(), error = %e, "config reload refused; keeping the running configuration");
                Err(Error::Config(e))
            }
            Ok(new) => {
                let old = self.config();
                let mut needs_restart = Vec::new();
                if format!("{:?}", old.providers) != format!("{:?}", new.providers)
                    || provider_settings_differ(&old, &new)
                {
                    needs_restart.push("providers".to_owned());
                }
                if format!("{:?}", old.ledger) != format!("{:?}", new.ledger) {
                    needs_restart.push("ledger".to_owned());
                }
                if old.teams != new.teams {
                    needs_restart.push("budgets".to_owned());
                }
                if format!("{:?}", old.telemetry) != format!("{:?}", new.telemetry)
                    || old.cost_log != new.cost_log
                {
                    needs_restart.push("telemetry".to_owned());
                }
                self.inner.router.reload(new.route_table(), new.prices.clone());
                *self
                    .inner
                    .config
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(new);
                status.reloads += 1;
                status.last_error = None;
                if !needs_restart.is_empty() {
                    tracing::warn!(sections = ?needs_restart, "config reloaded (routes, prices); these sections apply after a restart");
                } else {
                    tracing::info!(file = %path.display(), "config reloaded");
                }
                status.needs_restart = needs_restart;
                Ok(())
            }
        }
    }

    /// What reloads did so far.
    pub fn reload_status(&self) -> ReloadStatus {
        self.inner
            .reload
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Polls the config file's modification time every `interval` on a background thread and reloads on
    /// change. Stops when the returned [`Watcher`] is dropped.
    pub fn watch(&self, interval: Duration) -> Result<Watcher, Error> {
        let Some(path) = self.inner.path.clone() else {
            return Err(Error::Invalid("this client was not built from a file".into()));
        };
        let stop = Arc::new(AtomicBool::new(false));
        let client = self.clone();
        let flag = Arc::clone(&stop);
        let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        let mut last: Option<SystemTime> = mtime(&path);
        let handle = std::thread::Builder::new()
            .name("genroute-config-watch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::park_timeout(interval);
                    if flag.load(Ordering::Relaxed) {
                        break;
                    }
                    let now = mtime(&path);
                    if now != last {
                        last = now;
                        // Errors are kept in the reload status.
                        let _ = client.reload();
                    }
                }
            })
            .map_err(|source| Error::Io {
                what: "cannot start the config watcher for",
                path: self
                    .inner
                    .path
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            })?;
        Ok(Watcher {
            stop,
            handle: Some(handle),
        })
    }
}

fn provider_settings_differ(old: &Config, new: &Config) -> bool {
    old.providers.len() != new.providers.len()
        || old
            .providers
            .iter()
            .zip(new.providers.iter())
            .any(|((a, x), (b, y))| a != b || x.kind != y.kind || x.settings != y.settings)
}

/// Sums a cost log file into a [`SpendReport`] (billed attempts only), optionally for one team.
pub fn report_from_cost_log_file(path: &Path, team: Option<&TeamId>) -> Result<SpendReport, Error> {
    let contents = genroute_telemetry::read_cost_log(path)?;
    let mut report = SpendReport {
        source: "cost_log".into(),
        ..SpendReport::default()
    };
    for r in contents
        .records
        .iter()
        .filter(|r| team.is_none_or(|t| &r.team == t))
    {
        if r.charged.is_zero() && r.cu.is_zero() {
            continue;
        }
        report.add(
            r.provider.as_str(),
            r.model.as_str(),
            r.member.as_ref().map(|m| m.as_str()),
            r.project.as_ref().map(|p| p.as_str()),
            r.cu,
        );
        *report.by_currency.entry(r.currency.to_string()).or_default() += r.charged;
    }
    Ok(report)
}

/// Orders scopes for display: team, members, projects, keys.
#[derive(PartialEq, Eq)]
struct ScopeKey(Scope);

impl PartialOrd for ScopeKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ScopeKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.kind(), self.0.team(), self.0.local_id()).cmp(&(
            other.0.kind(),
            other.0.team(),
            other.0.local_id(),
        ))
    }
}

/// A running config watcher; dropping it stops the thread.
#[derive(Debug)]
pub struct Watcher {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}

/// Reads and validates a config file, and builds each provider with the built-in registry (no network:
/// this checks each adapter's own keys and the `type`); opens no ledger. Unset environment variables are
/// warnings. What `genroute config check` runs.
pub fn check_config(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
    check_config_with(path, &Registry::builtin())
}

/// [`check_config`] with another registry.
pub fn check_config_with(path: impl AsRef<Path>, registry: &Registry) -> Result<Config, ConfigError> {
    let config = Config::load(path, EnvMode::Lenient)?;
    let mut problems = Vec::new();
    for (id, spec) in &config.providers {
        if let Err(message) = registry.build(id, &spec.kind, spec.settings.clone()) {
            problems.push(config.provider_problem(id, &message));
        }
    }
    if problems.is_empty() {
        Ok(config)
    } else {
        problems.sort_by_key(|p| p.line.unwrap_or(usize::MAX));
        Err(ConfigError { problems })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::Utc;
    use genroute_core::{Caller, Decimal, IdempotencyKey, JobId, ModelId, Money, ProviderId, TeamId};
    use genroute_ledger::{EntryMeta, HistoryFilter, ReserveRequest, Scope, TeamConfig};

    use super::*;
    use crate::config::MemoryRetention;

    /// Three reserve + settle pairs; returns how many history entries the team keeps.
    async fn entries_kept(spec: &LedgerSpec) -> usize {
        let ledger = open_ledger(spec).await.unwrap();
        let team = TeamId::new("t").unwrap();
        let cfg = TeamConfig::new(team.clone(), Money::cu(Decimal::from(1000)), Utc::now());
        ledger.create_team(&cfg).await.unwrap();
        for i in 0..3 {
            let job = JobId::new(format!("job-{i}")).unwrap();
            let hold = ledger
                .reserve(&ReserveRequest {
                    caller: Caller::team(team.clone()),
                    amount: Money::cu(Decimal::from(5)),
                    idempotency_key: IdempotencyKey::new(format!("job-{i}:1")).unwrap(),
                    ttl: Duration::from_secs(60),
                    meta: EntryMeta {
                        job_id: job,
                        attempt: 1,
                        provider: ProviderId::new("fal").unwrap(),
                        model: ModelId::new("m").unwrap(),
                    },
                })
                .await
                .unwrap();
            ledger
                .settle(&hold.id, &Money::cu(Decimal::from(4)))
                .await
                .unwrap();
        }
        ledger
            .history(&HistoryFilter::scope(Scope::Team(team)))
            .await
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn a_memory_ledger_from_config_honours_its_retention() {
        let unbounded = entries_kept(&LedgerSpec::Memory { retention: None }).await;
        let bounded = entries_kept(&LedgerSpec::Memory {
            retention: Some(MemoryRetention {
                history: 2,
                window: Duration::from_secs(3600),
            }),
        })
        .await;
        assert!(unbounded >= 6, "every reserve and settle recorded: {unbounded}");
        assert_eq!(bounded, 2);
    }
}
