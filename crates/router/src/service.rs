//! Deployments as tower services, and the layers the router wraps them in.
//!
//! A deployment (one provider + model) is a `Service<AttemptRequest>` answering `Generation` or
//! `ProviderError`. The router stacks, outermost first: tracing (the attempt span), the circuit breaker,
//! and the timeout (per-attempt and the job's deadline). Each layer is one concern; users can wrap the
//! router itself (also a `Service`) in their own layers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use genroute_core::{Billed, CallContext, ErrorKind, Generation, Provider, ProviderError, ProviderRequest};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::breaker::{CallResult, CircuitBreaker};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// One attempt's input.
#[derive(Clone, Debug)]
pub struct AttemptRequest {
    /// What to run.
    pub request: Arc<ProviderRequest>,
    /// The attempt's context.
    pub ctx: CallContext,
    /// Follow this existing upstream job instead of creating one.
    pub resume: Option<String>,
    /// The span the attempt runs in.
    pub span: tracing::Span,
}

/// The innermost service: calls the provider.
#[derive(Clone, Debug)]
pub struct ProviderService {
    provider: Arc<dyn Provider>,
}

impl ProviderService {
    /// Wraps a provider.
    pub fn new(provider: Arc<dyn Provider>) -> Self {
        Self { provider }
    }
}

impl Service<AttemptRequest> for ProviderService {
    type Response = Generation;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Generation, ProviderError>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AttemptRequest) -> Self::Future {
        Box::pin(provider_call(Arc::clone(&self.provider), req))
    }
}

/// The provider call of an attempt: a resume of the upstream job it names, or a new generation.
async fn provider_call(
    provider: Arc<dyn Provider>,
    req: AttemptRequest,
) -> Result<Generation, ProviderError> {
    match &req.resume {
        Some(id) => provider.resume(id, &req.request, &req.ctx).await,
        None => provider.generate(&req.request, &req.ctx).await,
    }
}

/// The bound on an attempt, if any: the per-attempt timeout or the job's remaining time, whichever is
/// sooner, and whether it is the deadline.
fn limit(deadline: Option<Duration>, attempt: Option<Duration>) -> Option<(Duration, bool)> {
    match (deadline, attempt) {
        (Some(d), Some(a)) if a < d => Some((a, false)),
        (Some(d), _) => Some((d, true)),
        (None, a) => a.map(|a| (a, false)),
    }
}

/// Runs `fut` within `limit`; out of time, the future is dropped and the error says which limit passed.
async fn bounded<F>(limit: Duration, by_deadline: bool, fut: F) -> Result<Generation, ProviderError>
where
    F: Future<Output = Result<Generation, ProviderError>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(result) => result,
        Err(_) if by_deadline => Err(ProviderError::new(
            ErrorKind::Cancelled,
            format!("the job's deadline passed after {limit:?}; the call was cancelled"),
        )
        .billed(Billed::Unknown)),
        Err(_) => Err(
            ProviderError::new(ErrorKind::Timeout, format!("no answer within {limit:?}"))
                .billed(Billed::Unknown),
        ),
    }
}

/// The refusal of a call while the breaker is open.
fn breaker_open() -> ProviderError {
    ProviderError::local(ErrorKind::Unavailable, "circuit breaker open: call not sent")
}

/// What an attempt's result tells the breaker.
fn breaker_result(result: &Result<Generation, ProviderError>) -> CallResult {
    match result {
        Ok(_) => CallResult::Success,
        // A deadline we imposed says nothing about the deployment.
        Err(e) if e.kind() == ErrorKind::Cancelled => CallResult::Neutral,
        Err(e) => CallResult::from_error(e.kind()),
    }
}

/// `Box::pin(fut)`, except that a future which already is a [`BoxFuture`] (the usual inner service's) is
/// returned as it is, instead of being boxed a second time (one allocation and one indirect poll less).
fn boxed<F>(fut: F) -> BoxFuture<F::Output>
where
    F: Future + Send + 'static,
    F::Output: 'static,
{
    let mut slot = Some(fut);
    if let Some(already) = (&mut slot as &mut dyn std::any::Any)
        .downcast_mut::<Option<BoxFuture<F::Output>>>()
        .and_then(Option::take)
    {
        return already;
    }
    match slot {
        Some(fut) => Box::pin(fut),
        // Only taken above, where it was returned.
        None => Box::pin(std::future::pending()),
    }
}

/// Bounds an attempt by a per-attempt timeout and the job's deadline, whichever is sooner. When time runs
/// out the inner future is dropped — adapters cancel upstream on drop — and the error is
/// `ErrorKind::Cancelled` for a deadline, `ErrorKind::Timeout` for the per-attempt timeout.
#[derive(Clone, Debug)]
pub struct TimeoutLayer {
    attempt_timeout: Option<Duration>,
}

impl TimeoutLayer {
    /// A layer with an optional per-attempt timeout (the deadline always applies).
    pub fn new(attempt_timeout: Option<Duration>) -> Self {
        Self { attempt_timeout }
    }
}

impl<S> Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Timeout {
            inner,
            attempt_timeout: self.attempt_timeout,
        }
    }
}

/// See [`TimeoutLayer`].
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    attempt_timeout: Option<Duration>,
}

impl<S> Service<AttemptRequest> for Timeout<S>
where
    S: Service<AttemptRequest, Response = Generation, Error = ProviderError>,
    S::Future: Send + 'static,
{
    type Response = Generation;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Generation, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: AttemptRequest) -> Self::Future {
        let deadline = req.ctx.remaining();
        let fut = self.inner.call(req);
        // No limit: no timer and no wrapping state machine (and no second box around a boxed future).
        match limit(deadline, self.attempt_timeout) {
            None => boxed(fut),
            Some((limit, by_deadline)) => Box::pin(bounded(limit, by_deadline, fut)),
        }
    }
}

/// Refuses calls while the deployment's breaker is open and feeds it every outcome.
#[derive(Clone, Debug)]
pub struct BreakerLayer {
    breaker: Arc<CircuitBreaker>,
}

impl BreakerLayer {
    /// A layer over a shared breaker.
    pub fn new(breaker: Arc<CircuitBreaker>) -> Self {
        Self { breaker }
    }
}

impl<S> Layer<S> for BreakerLayer {
    type Service = Breaker<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Breaker {
            inner,
            breaker: Arc::clone(&self.breaker),
        }
    }
}

/// See [`BreakerLayer`].
#[derive(Clone, Debug)]
pub struct Breaker<S> {
    inner: S,
    breaker: Arc<CircuitBreaker>,
}

impl<S> Service<AttemptRequest> for Breaker<S>
where
    S: Service<AttemptRequest, Response = Generation, Error = ProviderError>,
    S::Future: Send + 'static,
{
    type Response = Generation;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Generation, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: AttemptRequest) -> Self::Future {
        let Some(permit) = self.breaker.try_acquire() else {
            return Box::pin(async { Err(breaker_open()) });
        };
        let breaker = Arc::clone(&self.breaker);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            breaker.record(permit, breaker_result(&result));
            result
        })
    }
}

/// Runs the attempt inside its span.
#[derive(Clone, Debug, Default)]
pub struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

/// See [`TraceLayer`].
#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
}

impl<S> Service<AttemptRequest> for Trace<S>
where
    S: Service<AttemptRequest, Response = Generation, Error = ProviderError>,
    S::Future: Send + 'static,
{
    type Response = Generation;
    type Error = ProviderError;
    type Future = BoxFuture<Result<Generation, ProviderError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: AttemptRequest) -> Self::Future {
        let span = req.span.clone();
        let fut = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        Box::pin(fut.instrument(span))
    }
}

/// A deployment with the standard layers: trace → breaker → timeout → provider.
pub type DeploymentService = tower::util::BoxCloneSyncService<AttemptRequest, Generation, ProviderError>;

/// Builds the standard stack for one deployment: the same steps, in the same order, as
/// `ServiceBuilder::new().layer(TraceLayer).layer(BreakerLayer::new(breaker)).layer(TimeoutLayer::new(attempt_timeout)).service(ProviderService::new(provider))`,
/// run as one service, so an attempt's future is one state machine (one allocation, and a result that is
/// not moved up through four layers) instead of four boxed ones.
pub fn deployment_service(
    provider: Arc<dyn Provider>,
    breaker: Arc<CircuitBreaker>,
    attempt_timeout: Option<Duration>,
) -> DeploymentService {
    tower::util::BoxCloneSyncService::new(Deployment::new(provider, breaker, attempt_timeout))
}

/// The standard stack as one service (see [`deployment_service`]); the router keeps these unboxed.
#[derive(Clone)]
pub(crate) struct Deployment {
    provider: Arc<dyn Provider>,
    breaker: Arc<CircuitBreaker>,
    attempt_timeout: Option<Duration>,
}

impl Deployment {
    pub(crate) fn new(
        provider: Arc<dyn Provider>,
        breaker: Arc<CircuitBreaker>,
        attempt_timeout: Option<Duration>,
    ) -> Self {
        Self {
            provider,
            breaker,
            attempt_timeout,
        }
    }

    /// Breaker, then timeout, then provider: what the layers under [`Trace`] do in their `call`s.
    fn attempt(&self, req: AttemptRequest) -> BoxFuture<Result<Generation, ProviderError>> {
        let Some(permit) = self.breaker.try_acquire() else {
            return Box::pin(async { Err(breaker_open()) });
        };
        let breaker = Arc::clone(&self.breaker);
        let bound = limit(req.ctx.remaining(), self.attempt_timeout);
        let call = provider_call(Arc::clone(&self.provider), req);
        // Two state machines: the unbounded one carries no timer.
        match bound {
            None => Box::pin(async move {
                let result = call.await;
                breaker.record(permit, breaker_result(&result));
                result
            }),
            Some((limit, by_deadline)) => Box::pin(async move {
                let result = bounded(limit, by_deadline, call).await;
                breaker.record(permit, breaker_result(&result));
                result
            }),
        }
    }
}

impl Service<AttemptRequest> for Deployment {
    type Response = Generation;
    type Error = ProviderError;
    type Future = tracing::instrument::Instrumented<BoxFuture<Result<Generation, ProviderError>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: AttemptRequest) -> Self::Future {
        // As `Trace`: the inner call runs inside the attempt span, and so does every poll of its future.
        let span = req.span.clone();
        let fut = {
            let _entered = span.enter();
            self.attempt(req)
        };
        fut.instrument(span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address<T: ?Sized>(f: &Pin<Box<T>>) -> *const () {
        std::ptr::from_ref::<T>(&**f).cast()
    }

    #[tokio::test]
    async fn a_boxed_future_is_not_boxed_again() {
        let inner: BoxFuture<u32> = Box::pin(async { 7 });
        let at = address(&inner);
        let same = boxed(inner);
        assert_eq!(address(&same), at);
        assert_eq!(same.await, 7);
        // Any other future is boxed.
        assert_eq!(boxed(async { 8 }).await, 8);
        assert_eq!(boxed(std::future::ready(9u8)).await, 9);
    }

    /// The fused deployment service answers exactly as the layered stack it stands for: same results and
    /// errors, same breaker states, same provider calls, for every combination of attempt timeout and
    /// deadline, through breaker trips.
    #[tokio::test(start_paused = true)]
    async fn the_fused_deployment_answers_as_the_layered_stack() {
        use genroute_core::{Caller, ImageJobSpec, JobId, ModelId, ProviderRequest, TeamId};
        use tower::ServiceExt as _;

        use crate::breaker::BreakerConfig;
        use crate::testing::{ScriptedProvider, Step};

        let ms = Duration::from_millis;
        let script = || {
            vec![
                Step::Succeed,
                Step::Fail(ProviderError::new(ErrorKind::Unavailable, "down")),
                Step::After(ms(50), Box::new(Step::Succeed)),
                Step::Hang,
                Step::Fail(ProviderError::new(ErrorKind::Cancelled, "cancelled upstream")),
                Step::Fail(ProviderError::new(ErrorKind::RateLimited, "slow down").billed(Billed::No)),
                Step::Fail(ProviderError::new(ErrorKind::Failed, "broke")),
                Step::Fail(ProviderError::new(ErrorKind::Failed, "broke again")),
                Step::Succeed,
            ]
        };
        let config = BreakerConfig {
            consecutive_failures: 2,
            failure_ratio: None,
            cooldown: Duration::from_secs(3600),
            ..BreakerConfig::default()
        };
        let job: genroute_core::Job = ImageJobSpec::new("a cat").build().unwrap().into();
        let request = Arc::new(ProviderRequest {
            model: ModelId::new("m").unwrap(),
            job,
        });
        let caller = Caller::team(TeamId::new("t").unwrap());
        let mut checked = 0;
        for attempt_timeout in [None, Some(ms(20)), Some(ms(100))] {
            for deadline in [None, Some(ms(30)), Some(Duration::from_secs(60))] {
                let fused_provider = ScriptedProvider::new("p", &["m"], script()).unwrap();
                let layered_provider = ScriptedProvider::new("p", &["m"], script()).unwrap();
                let fused_breaker = Arc::new(CircuitBreaker::new(config.clone()));
                let layered_breaker = Arc::new(CircuitBreaker::new(config.clone()));
                let mut fused = deployment_service(
                    fused_provider.clone(),
                    Arc::clone(&fused_breaker),
                    attempt_timeout,
                );
                let mut layered = tower::ServiceBuilder::new()
                    .layer(TraceLayer)
                    .layer(BreakerLayer::new(Arc::clone(&layered_breaker)))
                    .layer(TimeoutLayer::new(attempt_timeout))
                    .service(ProviderService::new(layered_provider.clone()));
                for n in 1..=12u32 {
                    let attempt = || {
                        let mut ctx =
                            CallContext::new(JobId::new(format!("job-{n}")).unwrap(), caller.clone());
                        if let Some(d) = deadline {
                            ctx = ctx.with_deadline(std::time::Instant::now() + d);
                        }
                        AttemptRequest {
                            request: Arc::clone(&request),
                            ctx,
                            resume: None,
                            span: tracing::Span::none(),
                        }
                    };
                    // Without any limit a hanging provider hangs both: the test gives up after an hour.
                    let hour = Duration::from_secs(3600);
                    let a = tokio::time::timeout(hour, fused.ready().await.unwrap().call(attempt())).await;
                    let b = tokio::time::timeout(hour, layered.ready().await.unwrap().call(attempt())).await;
                    let show = |r: &Result<Result<Generation, ProviderError>, _>| match r {
                        Ok(Ok(g)) => format!("ok {:?}", g.outputs),
                        // A deadline's remaining time is read off the real clock in each stack: its
                        // digits (in the message) may differ by microseconds.
                        Ok(Err(e)) => {
                            format!("err {e:?}").replace(|c: char| c.is_ascii_digit() || c == '.', "")
                        }
                        Err(_) => "hung".to_owned(),
                    };
                    let case = format!("{attempt_timeout:?} {deadline:?} call {n}");
                    assert_eq!(show(&a), show(&b), "{case}");
                    assert_eq!(fused_breaker.state(), layered_breaker.state(), "{case}");
                    assert_eq!(fused_provider.calls(), layered_provider.calls(), "{case}");
                    checked += usize::from(!matches!(a, Ok(Ok(_))));
                }
                // The script trips the breaker: later calls are refused without reaching the provider.
                assert_eq!(fused_breaker.state(), crate::breaker::BreakerState::Open);
                assert!(fused_provider.calls() < 12);
            }
        }
        assert!(checked > 9 * 4);
    }
}
