//! The attempt loop: resolve → quote → plan → (reserve → call → gate → settle/release → record) × N.

use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use genroute_core::hash::FxHashMap as HashMap;
use genroute_core::{
    Billed, CallContext, Charge, CostSource, ErrorKind, IdempotencyKey, JobId, ModelRef, Money, Provider,
    ProviderError, ProviderId, ProviderRequest, Quote, QuoteSource,
};
use genroute_ledger::{EntryMeta, Hold, Ledger, LedgerError, ReserveRequest};
use genroute_pricing::PriceBook;
use genroute_telemetry::{AttemptEvent, AttemptOutcome, BudgetDecision, CostSink};
use rust_decimal::Decimal;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

use crate::breaker::{BreakerConfig, CircuitBreaker};
use crate::error::RouterError;
use crate::gate::{GateVerdict, QualityGate};
use crate::plan::{Assessment, DropReason, Step, admit, plan, primary_of};
use crate::request::{AttemptRecord, GenerateRequest, Outcome};
use crate::retry::{Jitter, RetryBudget, RetryBudgetConfig};
use crate::route::{CandidateConfig, LatencyTracker, OnContentRejection, Policy, RouteConfig, RouteTable};
use crate::service::{AttemptRequest, BoxFuture, Deployment};

/// Router-wide settings.
#[derive(Clone, Debug)]
pub struct RouterSettings {
    /// Breaker thresholds for every deployment.
    pub breaker: BreakerConfig,
    /// Shared retry budget.
    pub retry_budget: RetryBudgetConfig,
    /// How long a hold lives unless the job's deadline asks for longer (a crashed process frees its
    /// holds after this).
    pub hold_ttl: Duration,
}

impl Default for RouterSettings {
    fn default() -> Self {
        Self {
            breaker: BreakerConfig::default(),
            retry_budget: RetryBudgetConfig::default(),
            hold_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Builds a [`Router`].
pub struct RouterBuilder {
    providers: HashMap<ProviderId, Arc<dyn Provider>>,
    routes: RouteTable,
    prices: PriceBook,
    ledger: Arc<dyn Ledger>,
    sink: Option<Arc<dyn CostSink>>,
    gate: Option<Arc<dyn QualityGate>>,
    settings: RouterSettings,
    jitter: Jitter,
}

impl RouterBuilder {
    /// Registers a provider under its own id.
    pub fn provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(provider.id().clone(), provider);
        self
    }

    /// Where cost events go (metrics, cost log, callbacks).
    pub fn cost_sink(mut self, sink: Arc<dyn CostSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// A quality gate for every job.
    pub fn quality_gate(mut self, gate: Arc<dyn QualityGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    /// Router-wide settings.
    pub fn settings(mut self, settings: RouterSettings) -> Self {
        self.settings = settings;
        self
    }

    /// A seeded jitter source (for reproducible tests).
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Finishes the router.
    pub fn build(self) -> Router {
        Router {
            inner: Arc::new(Inner {
                providers: RwLock::new(Arc::new(self.providers)),
                routes: RwLock::new(Arc::new(self.routes)),
                prices: RwLock::new(self.prices),
                ledger: self.ledger,
                sink: self.sink,
                gate: self.gate,
                retry_budget: RetryBudget::new(&self.settings.retry_budget),
                settings: self.settings,
                breakers: Mutex::new(HashMap::default()),
                services: Mutex::new(HashMap::default()),
                latency: LatencyTracker::default(),
                jitter: self.jitter,
            }),
        }
    }
}

/// A deployment's services, one per attempt timeout.
type ByTimeout = Vec<(Option<Duration>, Deployment)>;

struct Inner {
    providers: RwLock<Arc<HashMap<ProviderId, Arc<dyn Provider>>>>,
    routes: RwLock<Arc<RouteTable>>,
    prices: RwLock<PriceBook>,
    ledger: Arc<dyn Ledger>,
    sink: Option<Arc<dyn CostSink>>,
    gate: Option<Arc<dyn QualityGate>>,
    settings: RouterSettings,
    retry_budget: RetryBudget,
    breakers: Mutex<HashMap<ModelRef, Arc<CircuitBreaker>>>,
    services: Mutex<HashMap<ModelRef, ByTimeout>>,
    latency: LatencyTracker,
    jitter: Jitter,
}

/// The router. Cheap to clone; also a `tower::Service<GenerateRequest>`.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router").finish_non_exhaustive()
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// The running state of one job.
struct JobState {
    job_id: JobId,
    route_name: String,
    attempts: Vec<AttemptRecord>,
    spend_cu: Decimal,
    retry_spend_cu: Decimal,
    attempt_no: u32,
    last_event: Option<AttemptEvent>,
}

impl Router {
    /// Starts a router over routes, prices and a ledger.
    pub fn builder(routes: RouteTable, prices: PriceBook, ledger: Arc<dyn Ledger>) -> RouterBuilder {
        RouterBuilder {
            providers: HashMap::default(),
            routes,
            prices,
            ledger,
            sink: None,
            gate: None,
            settings: RouterSettings::default(),
            jitter: Jitter::new(),
        }
    }

    /// Swaps in new routes and prices; jobs in flight finish on what they started with.
    pub fn reload(&self, routes: RouteTable, prices: PriceBook) {
        *self
            .inner
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(routes);
        *self
            .inner
            .prices
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = prices;
    }

    /// The breaker of a deployment (created on first use).
    pub fn breaker(&self, target: &ModelRef) -> Arc<CircuitBreaker> {
        let mut map = self
            .inner
            .breakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(b) = map.get(target) {
            return Arc::clone(b);
        }
        Arc::clone(
            map.entry(target.clone())
                .or_insert_with(|| Arc::new(CircuitBreaker::new(self.inner.settings.breaker.clone()))),
        )
    }

    /// Smoothed latency of a deployment, if measured.
    pub fn latency(&self, target: &ModelRef) -> Option<Duration> {
        self.inner.latency.get(target)
    }

    fn service(
        &self,
        target: &ModelRef,
        provider: &Arc<dyn Provider>,
        timeout: Option<Duration>,
    ) -> Deployment {
        let mut map = self
            .inner
            .services
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Looked up by reference: the key (two strings) is cloned only when a deployment is first used. A
        // deployment has one service per attempt timeout (almost always just one).
        if let Some(service) = map
            .get(target)
            .and_then(|by_timeout| by_timeout.iter().find(|(t, _)| *t == timeout))
        {
            return service.1.clone();
        }
        let service = Deployment::new(Arc::clone(provider), self.breaker(target), timeout);
        map.entry(target.clone())
            .or_default()
            .push((timeout, service.clone()));
        service
    }

    /// Quotes every candidate of a route and plans the job, without spending anything (the dry run). Each
    /// kept and dropped candidate's quote carries its line-by-line explanation.
    pub fn plan(
        &self,
        request: &GenerateRequest,
    ) -> Result<(String, Arc<RouteConfig>, crate::plan::Plan), RouterError> {
        self.plan_with(request, true)
    }

    /// Plans for a run: the same decisions as [`Router::plan`], priced with the catalog's fast path (no
    /// explanation lines are formatted on the hot path; the amounts are identical).
    fn plan_with(
        &self,
        request: &GenerateRequest,
        explain: bool,
    ) -> Result<(String, Arc<RouteConfig>, crate::plan::Plan), RouterError> {
        let routes = read(&self.inner.routes);
        let (route_name, route) = routes.resolve(&request.route, &request.metadata)?;
        let prices = read(&self.inner.prices);
        let providers = read(&self.inner.providers);
        let assessments = route
            .candidates
            .iter()
            .map(|c| self.assess(c, &request.job, &prices, &providers, explain))
            .collect();
        let ceiling = ceiling_cu(&route, request, &prices)?;
        let plan = plan(
            &route,
            assessments,
            ceiling,
            &self.inner.latency,
            &self.inner.jitter,
        );
        Ok((route_name, route, plan))
    }

    /// What the router knows about one candidate: can it do the job, what it costs, is its breaker closed.
    fn assess(
        &self,
        c: &CandidateConfig,
        job: &genroute_core::Job,
        prices: &PriceBook,
        providers: &HashMap<ProviderId, Arc<dyn Provider>>,
        explain: bool,
    ) -> Assessment {
        let target = c.target();
        // Capabilities are checked in place (no copy of the job per candidate).
        let quote = match providers.get(&c.provider) {
            None => Err(DropReason::UnknownProvider),
            Some(p) => match p.model(&c.model) {
                None => Err(DropReason::Unsupported {
                    detail: format!("{} does not offer this model", c.provider),
                }),
                Some(info) => match info.capabilities.check(job) {
                    Err(e) => Err(DropReason::Unsupported {
                        detail: e.to_string(),
                    }),
                    Ok(()) => quote(prices, &target, job, explain).map_err(|e| DropReason::NotPriced {
                        detail: e.to_string(),
                    }),
                },
            },
        };
        let available = self.breaker(&target).is_available();
        Assessment {
            target,
            tier: c.tier,
            weight: c.weight,
            quote,
            available,
        }
    }

    /// The next candidate to try. Priority routes are planned lazily, one candidate at a time, so a long
    /// route costs nothing until it fails over; the decisions are the same as the eager plan's (in priority
    /// order the primary is the first capable candidate seen). Dropped candidates are collected on the way.
    #[allow(clippy::too_many_arguments)]
    fn next_step(
        &self,
        source: &mut StepSource,
        route: &RouteConfig,
        job: &genroute_core::Job,
        prices: &PriceBook,
        providers: &HashMap<ProviderId, Arc<dyn Provider>>,
        ceiling: Option<Decimal>,
        dropped: &mut Vec<(ModelRef, DropReason)>,
    ) -> Option<Step> {
        match source {
            StepSource::Planned(steps) => steps.next(),
            StepSource::Lazy { next, primary } => {
                while let Some(c) = route.candidates.get(*next) {
                    *next += 1;
                    let a = self.assess(c, job, prices, providers, false);
                    if primary.is_none() {
                        *primary = primary_of(&a);
                    }
                    match admit(route, a, *primary, ceiling) {
                        Ok(step) => return Some(step),
                        Err(d) => dropped.push(d),
                    }
                }
                None
            }
        }
    }

    /// Runs a job to an accepted output, or to a typed error that lists every attempt.
    pub async fn generate(&self, request: GenerateRequest) -> Result<Outcome, RouterError> {
        let job_id = match &request.job_id {
            Some(id) => id.clone(),
            None => new_job_id().map_err(|e| RouterError::Stopped {
                error: ProviderError::local(ErrorKind::InvalidRequest, e.to_string()),
                attempts: vec![],
            })?,
        };
        let job_span = genroute_telemetry::job_span(
            &job_id,
            request.job.operation(),
            request.job.modality(),
            Some(&request.route),
            &request.caller,
        );
        let mut state = JobState {
            job_id,
            // Set by `run` once the name is resolved (nothing reads it before).
            route_name: String::new(),
            attempts: Vec::new(),
            spend_cu: Decimal::ZERO,
            retry_spend_cu: Decimal::ZERO,
            attempt_no: 0,
            last_event: None,
        };
        let result = self.run(request, &mut state, &job_span).await;
        genroute_telemetry::record_job_end(&job_span, state.last_event.as_ref());
        result
    }

    async fn run(
        &self,
        request: GenerateRequest,
        state: &mut JobState,
        job_span: &tracing::Span,
    ) -> Result<Outcome, RouterError> {
        let started = Instant::now();
        let deadline = request.limits.deadline.map(|d| started + d);
        let routes = read(&self.inner.routes);
        let (route_name, route) = routes.resolve(&request.route, &request.metadata)?;
        drop(routes);
        state.route_name = route_name;
        let prices = read(&self.inner.prices);
        let providers = read(&self.inner.providers);
        let ceiling = ceiling_cu(&route, &request, &prices)?;
        let mut dropped = Vec::new();
        let mut source = if route.policy == Policy::Priority {
            StepSource::Lazy {
                next: 0,
                primary: None,
            }
        } else {
            let assessments = route
                .candidates
                .iter()
                .map(|c| self.assess(c, &request.job, &prices, &providers, false))
                .collect();
            let planned = plan(
                &route,
                assessments,
                ceiling,
                &self.inner.latency,
                &self.inner.jitter,
            );
            dropped = planned.dropped;
            StepSource::Planned(planned.steps.into_iter())
        };
        let max_spend_cu = match &request.limits.max_spend {
            Some(m) => Some(prices.to_cu(m)?.amount()),
            None => None,
        };
        // The job moves into the provider request once; each candidate re-targets it in place (a copy is made
        // only if an earlier attempt's future still holds it), so a job is never cloned per candidate.
        let GenerateRequest {
            job,
            caller,
            progress,
            ..
        } = request;
        let Some(first) = route.candidates.first() else {
            return Err(RouterError::NoCandidate {
                route: state.route_name.clone(),
                dropped,
            });
        };
        let mut provider_request = Arc::new(ProviderRequest {
            model: first.model.clone(),
            job,
        });
        let mut last_error: Option<ProviderError> = None;
        let mut tried_any = false;

        'candidates: while let Some(step) = self.next_step(
            &mut source,
            &route,
            &provider_request.job,
            &prices,
            &providers,
            ceiling,
            &mut dropped,
        ) {
            let step = &step;
            let Some(provider) = providers.get(&step.target.provider) else {
                continue;
            };
            if !tried_any {
                tried_any = true;
                self.inner.retry_budget.deposit();
            }
            let mut service = self.service(&step.target, provider, route.attempt_timeout);
            if provider_request.model != step.target.model {
                match Arc::get_mut(&mut provider_request) {
                    Some(r) => r.model = step.target.model.clone(),
                    None => {
                        provider_request = Arc::new(ProviderRequest {
                            model: step.target.model.clone(),
                            job: provider_request.job.clone(),
                        });
                    }
                }
            }
            let who = Who {
                job: &provider_request.job,
                caller: &caller,
            };
            let mut retries = 0u32;
            // A hold kept open while an earlier create of unknown outcome is resumed (never re-created).
            let mut resume: Option<(String, Hold)> = None;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    if let Some((_, hold)) = resume.take() {
                        self.settle_conservatively(state, step, &hold, who, "deadline")
                            .await?;
                    }
                    return Err(RouterError::Deadline {
                        attempts: std::mem::take(&mut state.attempts),
                    });
                }
                // The attempt's context comes first: its idempotency key (`<job>:<attempt>`) is also the
                // reservation's. `CallContext::new` is already attempt 1; later attempts re-key it.
                let attempt_no = state.attempt_no + u32::from(resume.is_none());
                let mut ctx = CallContext::new(state.job_id.clone(), who.caller.clone());
                if attempt_no != 1 {
                    ctx = ctx.for_attempt(attempt_no);
                }
                let (hold, resume_id) = match resume.take() {
                    Some((id, hold)) => (hold, Some(id)),
                    None => {
                        if let Some(max) = max_spend_cu
                            && state.spend_cu + step.quote_cu > max
                        {
                            return Err(RouterError::MaxSpend {
                                limit: max,
                                spent: state.spend_cu,
                                next: step.quote_cu,
                                attempts: std::mem::take(&mut state.attempts),
                            });
                        }
                        state.attempt_no += 1;
                        match self
                            .reserve(state, step, who, ctx.idempotency_key(), deadline)
                            .await
                        {
                            Ok(hold) => (hold, None),
                            Err(LedgerError::Denied(denial)) => {
                                self.record_denied(state, step, who, &denial.scope.to_string());
                                return Err(RouterError::BudgetExceeded {
                                    denial: Box::new(denial),
                                    attempts: std::mem::take(&mut state.attempts),
                                });
                            }
                            Err(e) => return Err(RouterError::from(e)),
                        }
                    }
                };
                // Until this attempt settles or releases its hold, dropping the job (caller cancel, Ctrl-C)
                // releases it rather than leaving budget held until the TTL.
                let mut guard = HoldGuard::arm(&self.inner.ledger, &hold);
                if let Some(d) = deadline {
                    ctx = ctx.with_deadline(d.into_std());
                }
                if let Some(p) = &progress {
                    ctx = ctx.with_progress(Arc::clone(p));
                }
                let span = genroute_telemetry::attempt_span(
                    job_span,
                    &state.job_id,
                    state.attempt_no,
                    &step.target,
                    who.job.operation(),
                    who.job.modality(),
                    Some(&state.route_name),
                );
                let t0 = Instant::now();
                // Called in place (this job's own handle on the deployment), not through a per-attempt clone.
                let result = match service.ready().await {
                    Ok(ready) => {
                        ready
                            .call(AttemptRequest {
                                request: Arc::clone(&provider_request),
                                ctx,
                                resume: resume_id,
                                span: span.clone(),
                            })
                            .await
                    }
                    Err(e) => Err(e),
                };
                let latency = t0.elapsed();
                match result {
                    Ok(mut generation) => {
                        self.inner.latency.observe(&step.target, latency);
                        // The charge and its CU in one pricing pass (the same figures as `charge` then
                        // `to_cu` of its amount).
                        let (charge, cu) = match prices.charge_cu(&step.target, who.job, &generation) {
                            Ok((charge, cu)) => (charge, cu.map_or(step.quote_cu, |m| m.amount())),
                            Err(_) => {
                                let charge = Charge {
                                    amount: step.quote.cost.clone(),
                                    source: CostSource::ConservativeEstimate,
                                };
                                let cu = prices.to_cu(&charge.amount).map_or(step.quote_cu, |m| m.amount());
                                (charge, cu)
                            }
                        };
                        self.settle(&hold, cu).await?;
                        guard.disarm();
                        state.spend_cu += cu;
                        generation.charged = Some(charge.clone());
                        let verdict = match &self.inner.gate {
                            Some(gate) => gate.check(who.job, &generation).await,
                            None => GateVerdict::Accept,
                        };
                        match verdict {
                            GateVerdict::Accept => {
                                let outputs =
                                    u32::try_from(generation.outputs.len()).unwrap_or(u32::MAX).max(1);
                                self.record(
                                    state,
                                    step,
                                    who,
                                    AttemptOutcome::Success,
                                    Some(charge),
                                    cu,
                                    latency,
                                    None,
                                    None,
                                    outputs,
                                    &span,
                                );
                                let total = state.spend_cu;
                                let per_output = total / Decimal::from(outputs);
                                return Ok(Outcome {
                                    job_id: state.job_id.clone(),
                                    route: std::mem::take(&mut state.route_name),
                                    target: step.target.clone(),
                                    generation,
                                    attempts: std::mem::take(&mut state.attempts),
                                    total_spend_cu: Money::cu(total),
                                    retry_spend_cu: Money::cu(state.retry_spend_cu),
                                    cost_per_output_cu: Money::cu(per_output),
                                });
                            }
                            GateVerdict::Reject { reason } => {
                                state.retry_spend_cu += cu;
                                let retry = retries < route.retry.max_retries
                                    && started.elapsed() < route.retry.max_elapsed
                                    && self.inner.retry_budget.withdraw();
                                let moved = if retry {
                                    "gate_rejected_retry"
                                } else {
                                    "gate_rejected"
                                };
                                self.record(
                                    state,
                                    step,
                                    who,
                                    AttemptOutcome::GateRejected,
                                    Some(charge),
                                    cu,
                                    latency,
                                    Some(moved.into()),
                                    None,
                                    0,
                                    &span,
                                );
                                last_error = Some(ProviderError::local(
                                    ErrorKind::Failed,
                                    format!("quality gate rejected the output: {reason}"),
                                ));
                                if retry {
                                    retries += 1;
                                    continue;
                                }
                                continue 'candidates;
                            }
                        }
                    }
                    Err(error) => {
                        let kind = error.kind();
                        let unknown = matches!(error.billing(), Billed::Unknown);
                        // A create whose outcome is unknown, with the upstream job id known: follow that job
                        // instead of creating another (never blindly resent).
                        let can_resume = unknown
                            && matches!(
                                kind,
                                ErrorKind::Timeout | ErrorKind::Unavailable | ErrorKind::MalformedResponse
                            )
                            && error.provider_job_id().is_some()
                            && deadline.is_none_or(|d| Instant::now() < d);
                        if can_resume && retries < route.retry.max_retries {
                            let id = error.provider_job_id().unwrap_or_default().to_owned();
                            retries += 1;
                            note_resume(&span, kind, latency, &error);
                            // The hold carries over to the resumed attempt, which arms its own guard.
                            guard.disarm();
                            resume = Some((id, hold));
                            continue;
                        }
                        // Settle what the provider billed; release what it did not; a deadline releases.
                        let (charge, cu) = match error.billing() {
                            Billed::No => {
                                self.release(&hold).await?;
                                guard.disarm();
                                (None, Decimal::ZERO)
                            }
                            _ if kind == ErrorKind::Cancelled => {
                                self.release(&hold).await?;
                                guard.disarm();
                                (None, Decimal::ZERO)
                            }
                            Billed::Yes(m) => {
                                let cu = prices.to_cu(m).map_or(step.quote_cu, |c| c.amount());
                                self.settle(&hold, cu).await?;
                                guard.disarm();
                                (
                                    Some(Charge {
                                        amount: m.clone(),
                                        source: CostSource::ProviderReported,
                                    }),
                                    cu,
                                )
                            }
                            Billed::Unknown => {
                                self.settle(&hold, step.quote_cu).await?;
                                guard.disarm();
                                let c = Charge {
                                    amount: step.quote.cost.clone(),
                                    source: CostSource::ConservativeEstimate,
                                };
                                (Some(c), step.quote_cu)
                            }
                        };
                        state.spend_cu += cu;
                        state.retry_spend_cu += cu;
                        let outcome = if kind == ErrorKind::Cancelled {
                            AttemptOutcome::Cancelled
                        } else if unknown && kind == ErrorKind::Timeout {
                            AttemptOutcome::OutcomeUnknown
                        } else {
                            AttemptOutcome::Failed { error_type: kind }
                        };
                        if kind == ErrorKind::Cancelled {
                            self.record(
                                state,
                                step,
                                who,
                                outcome,
                                charge,
                                cu,
                                latency,
                                None,
                                Some(error),
                                0,
                                &span,
                            );
                            return Err(RouterError::Deadline {
                                attempts: std::mem::take(&mut state.attempts),
                            });
                        }
                        // Retry the same candidate?
                        let wait = if error.is_temporary()
                            && retries < route.retry.max_retries
                            && started.elapsed() < route.retry.max_elapsed
                        {
                            route
                                .retry
                                .delay(retries + 1, error.retry_after_hint(), &self.inner.jitter)
                                .filter(|delay| deadline.is_none_or(|d| Instant::now() + *delay < d))
                                .filter(|_| self.inner.retry_budget.withdraw())
                        } else {
                            None
                        };
                        let decision = match (wait, kind) {
                            (Some(_), _) => Decision::Retry,
                            (None, ErrorKind::InvalidRequest) => Decision::Stop,
                            (None, ErrorKind::ContentRejected)
                                if route.on_content_rejection == OnContentRejection::Stop =>
                            {
                                Decision::Stop
                            }
                            _ => Decision::Failover,
                        };
                        let moved = match decision {
                            Decision::Retry => Some(format!("{kind}_retry")),
                            Decision::Failover => Some(kind.as_str().to_owned()),
                            Decision::Stop => None,
                        };
                        self.record(
                            state,
                            step,
                            who,
                            outcome,
                            charge,
                            cu,
                            latency,
                            moved,
                            Some(error.clone()),
                            0,
                            &span,
                        );
                        match decision {
                            Decision::Retry => {
                                retries += 1;
                                if let Some(delay) = wait {
                                    tokio::time::sleep(delay).await;
                                }
                            }
                            Decision::Stop => {
                                return Err(RouterError::Stopped {
                                    error,
                                    attempts: std::mem::take(&mut state.attempts),
                                });
                            }
                            Decision::Failover => {
                                last_error = Some(error);
                                continue 'candidates;
                            }
                        }
                    }
                }
            }
        }
        if !tried_any {
            return Err(RouterError::NoCandidate {
                route: state.route_name.clone(),
                dropped,
            });
        }
        Err(RouterError::Exhausted {
            last: last_error.map_or_else(|| "no attempt made".to_owned(), |e| e.to_string()),
            attempts: std::mem::take(&mut state.attempts),
        })
    }

    async fn reserve(
        &self,
        state: &JobState,
        step: &Step,
        request: Who<'_>,
        key: &IdempotencyKey,
        deadline: Option<Instant>,
    ) -> Result<Hold, LedgerError> {
        let mut ttl = self.inner.settings.hold_ttl;
        if let Some(d) = deadline {
            ttl = ttl.max(d.saturating_duration_since(Instant::now()) + Duration::from_secs(30));
        }
        debug_assert_eq!(key.as_str(), format!("{}:{}", state.job_id, state.attempt_no));
        // The context derives its key without re-validating it; a key only an over-long job id could push past
        // the limit is refused here, as a validated key would be.
        let key = if key.as_str().len() > genroute_core::ids::MAX_ID_LEN {
            IdempotencyKey::new(key.as_str()).map_err(|e| LedgerError::Invalid(e.to_string()))?
        } else {
            key.clone()
        };
        let req = ReserveRequest {
            caller: request.caller.clone(),
            amount: Money::cu(step.quote_cu),
            idempotency_key: key,
            ttl,
            meta: EntryMeta {
                job_id: state.job_id.clone(),
                attempt: state.attempt_no,
                provider: step.target.provider.clone(),
                model: step.target.model.clone(),
            },
        };
        self.inner.ledger.reserve(&req).await
    }

    async fn settle(&self, hold: &Hold, cu: Decimal) -> Result<(), RouterError> {
        self.inner
            .ledger
            .settle(&hold.id, &Money::cu(cu))
            .await
            .map(|_| ())
            .map_err(RouterError::from)
    }

    async fn release(&self, hold: &Hold) -> Result<(), RouterError> {
        self.inner
            .ledger
            .release(&hold.id)
            .await
            .map_err(RouterError::from)
    }

    async fn settle_conservatively(
        &self,
        state: &mut JobState,
        step: &Step,
        hold: &Hold,
        request: Who<'_>,
        why: &str,
    ) -> Result<(), RouterError> {
        self.settle(hold, step.quote_cu).await?;
        state.spend_cu += step.quote_cu;
        state.retry_spend_cu += step.quote_cu;
        let charge = Charge {
            amount: step.quote.cost.clone(),
            source: CostSource::ConservativeEstimate,
        };
        let span = tracing::Span::current();
        self.record(
            state,
            step,
            request,
            AttemptOutcome::OutcomeUnknown,
            Some(charge),
            step.quote_cu,
            Duration::ZERO,
            Some(why.to_owned()),
            None,
            0,
            &span,
        );
        Ok(())
    }

    fn record_denied(&self, state: &mut JobState, step: &Step, request: Who<'_>, scope: &str) {
        let span = tracing::Span::current();
        let mut event = self.event(
            state,
            step,
            request,
            AttemptOutcome::BudgetDenied,
            None,
            Decimal::ZERO,
            Duration::ZERO,
            None,
            0,
        );
        event.budget_decision = BudgetDecision::Denied {
            scope: scope.to_owned(),
        };
        self.emit(state, step, event, None, &span);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        state: &mut JobState,
        step: &Step,
        request: Who<'_>,
        outcome: AttemptOutcome,
        charge: Option<Charge>,
        cu: Decimal,
        latency: Duration,
        moved_on: Option<String>,
        error: Option<ProviderError>,
        outputs: u32,
        span: &tracing::Span,
    ) {
        let event = self.event(
            state, step, request, outcome, charge, cu, latency, moved_on, outputs,
        );
        self.emit(state, step, event, error, span);
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        state: &JobState,
        step: &Step,
        request: Who<'_>,
        outcome: AttemptOutcome,
        charge: Option<Charge>,
        cu: Decimal,
        latency: Duration,
        moved_on: Option<String>,
        outputs: u32,
    ) -> AttemptEvent {
        let (charged, cost_source) = match charge {
            Some(c) => (c.amount, Some(c.source)),
            None => (Money::zero(step.quote.cost.currency().clone()), None),
        };
        AttemptEvent {
            time: chrono::Utc::now(),
            job_id: state.job_id.clone(),
            attempt: state.attempt_no,
            provider: step.target.provider.clone(),
            model: step.target.model.clone(),
            response_model: None,
            operation: request.job.operation(),
            modality: request.job.modality(),
            route: Some(state.route_name.clone()),
            outcome,
            quoted: Some(step.quote.cost.clone()),
            charged,
            cost_source,
            cu: Money::cu(cu),
            job_spend_cu: Money::cu(state.spend_cu),
            retry_spend_cu: Money::cu(state.retry_spend_cu),
            latency,
            outputs,
            fallback_reason: moved_on,
            budget_decision: BudgetDecision::Reserved,
            caller: request.caller.clone(),
        }
    }

    fn emit(
        &self,
        state: &mut JobState,
        step: &Step,
        event: AttemptEvent,
        error: Option<ProviderError>,
        span: &tracing::Span,
    ) {
        genroute_telemetry::record_attempt(span, &event);
        if let Some(sink) = &self.inner.sink {
            sink.record(&event);
        }
        state.attempts.push(AttemptRecord {
            attempt: event.attempt,
            target: step.target.clone(),
            outcome: event.outcome,
            quoted: step.quote.cost.clone(),
            quoted_cu: Money::cu(step.quote_cu),
            charged: event.charged.clone(),
            charged_cu: event.cu.clone(),
            cost_source: event.cost_source,
            latency: event.latency,
            moved_on: event.fallback_reason.clone(),
            error,
        });
        state.last_event = Some(event);
    }
}

/// What the attempt helpers read of a request once its job has moved into the provider request.
#[derive(Clone, Copy)]
struct Who<'a> {
    job: &'a genroute_core::Job,
    caller: &'a genroute_core::Caller,
}

/// Releases a hold if the job future is dropped between reserve and settle/release.
struct HoldGuard {
    ledger: Arc<dyn Ledger>,
    hold: Option<genroute_ledger::HoldId>,
}

impl HoldGuard {
    fn arm(ledger: &Arc<dyn Ledger>, hold: &Hold) -> Self {
        Self {
            ledger: Arc::clone(ledger),
            hold: Some(hold.id.clone()),
        }
    }

    fn disarm(&mut self) {
        self.hold = None;
    }
}

impl Drop for HoldGuard {
    fn drop(&mut self) {
        let Some(id) = self.hold.take() else { return };
        // The release runs on the runtime the router was driven by; without one (the runtime itself is
        // shutting down) the hold's TTL frees it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let ledger = Arc::clone(&self.ledger);
            let token = genroute_core::cleanup::begin();
            runtime.spawn(async move {
                let _token = token;
                if let Err(error) = ledger.release(&id).await {
                    tracing::warn!(hold = %id, %error, "could not release the hold of a dropped job; its TTL will");
                }
            });
        }
    }
}

/// Where the attempt loop's candidates come from.
enum StepSource {
    /// Planned up front (every policy but priority).
    Planned(std::vec::IntoIter<Step>),
    /// Priority order, assessed one candidate at a time.
    Lazy {
        /// The next configured candidate to assess.
        next: usize,
        /// The route's primary, once seen.
        primary: Option<(crate::route::Tier, Decimal)>,
    },
}

/// The stricter of the route's and the job's cost ceilings, in CU.
fn ceiling_cu(
    route: &RouteConfig,
    request: &GenerateRequest,
    prices: &PriceBook,
) -> Result<Option<Decimal>, RouterError> {
    let mut ceiling: Option<Decimal> = None;
    for m in [route.cost_ceiling.as_ref(), request.limits.cost_ceiling.as_ref()]
        .into_iter()
        .flatten()
    {
        let cu = prices.to_cu(m)?.amount();
        // Of equal ceilings the first is kept (`Ord::min` returns its receiver on a tie).
        ceiling = Some(ceiling.map_or(cu, |c| c.min(cu)));
    }
    Ok(ceiling)
}

/// Prices a candidate: explained for the dry run, the catalog's fast path (same amounts, no lines) for a run.
fn quote(
    prices: &PriceBook,
    target: &ModelRef,
    job: &genroute_core::Job,
    explain: bool,
) -> Result<Quote, genroute_pricing::PricingError> {
    if explain {
        return prices.quote(target, job);
    }
    let q = prices.quote_amount(target, job)?;
    Ok(Quote {
        target: target.clone(),
        cost: q.cost,
        cost_cu: q.cost_cu,
        lines: Vec::new(),
        high_cost: q.high_cost,
        source: QuoteSource::PriceTable,
        price_verified: None,
    })
}

/// A fresh job id: a UUIDv7 (48-bit Unix-millisecond timestamp, then 74 random bits). The random bits come
/// from the thread's cryptographically secure generator (`rand`'s ChaCha-based `ThreadRng`, seeded and
/// periodically reseeded from the OS), instead of a read of the OS random source per id as
/// `Uuid::now_v7` does (a system call per job). Ids stay unguessable: they prefix every attempt's
/// idempotency key, which providers scope per API key.
fn new_job_id() -> Result<JobId, genroute_core::IdError> {
    use rand::Rng as _;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let mut random = [0u8; 10];
    rand::rng().fill(&mut random);
    let id = uuid::Builder::from_unix_timestamp_millis(millis, &random).into_uuid();
    let mut buf = uuid::Uuid::encode_buffer();
    JobId::new(id.hyphenated().encode_lower(&mut buf))
}

enum Decision {
    Retry,
    Failover,
    Stop,
}

impl Service<GenerateRequest> for Router {
    type Response = Outcome;
    type Error = RouterError;
    type Future = BoxFuture<Result<Outcome, RouterError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: GenerateRequest) -> Self::Future {
        let router = self.clone();
        Box::pin(async move { router.generate(request).await })
    }
}

/// The attempt is not over: its hold stays open and its upstream job is resumed. Only the span hears about
/// the interruption; the cost event comes when the attempt settles.
fn note_resume(span: &tracing::Span, kind: ErrorKind, latency: Duration, error: &ProviderError) {
    span.in_scope(|| {
        tracing::warn!(
            error.type = kind.as_str(),
            latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            provider_job_id = error.provider_job_id(),
            "outcome unknown; resuming the upstream job instead of creating another"
        );
    });
}
