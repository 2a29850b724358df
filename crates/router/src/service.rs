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
        let provider = Arc::clone(&self.provider);
        Box::pin(async move {
            match &req.resume {
                Some(id) => provider.resume(id, &req.request, &req.ctx).await,
                None => provider.generate(&req.request, &req.ctx).await,
            }
        })
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
        let attempt = self.attempt_timeout;
        let fut = self.inner.call(req);
        let (limit, by_deadline) = match (deadline, attempt) {
            (Some(d), Some(a)) if a < d => (Some(a), false),
            (Some(d), _) => (Some(d), true),
            (None, a) => (a, false),
        };
        // No limit: no timer and no wrapping state machine (and no second box around a boxed future).
        let Some(limit) = limit else {
            return boxed(fut);
        };
        Box::pin(async move {
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
        })
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
            return Box::pin(async {
                Err(ProviderError::local(
                    ErrorKind::Unavailable,
                    "circuit breaker open: call not sent",
                ))
            });
        };
        let breaker = Arc::clone(&self.breaker);
        let fut = self.inner.call(req);
        Box::pin(async move {
            let result = fut.await;
            let outcome = match &result {
                Ok(_) => CallResult::Success,
                // A deadline we imposed says nothing about the deployment.
                Err(e) if e.kind() == ErrorKind::Cancelled => CallResult::Neutral,
                Err(e) => CallResult::from_error(e.kind()),
            };
            breaker.record(permit, outcome);
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

/// Builds the standard stack for one deployment.
pub fn deployment_service(
    provider: Arc<dyn Provider>,
    breaker: Arc<CircuitBreaker>,
    attempt_timeout: Option<Duration>,
) -> DeploymentService {
    let svc = tower::ServiceBuilder::new()
        .layer(TraceLayer)
        .layer(BreakerLayer::new(breaker))
        .layer(TimeoutLayer::new(attempt_timeout))
        .service(ProviderService::new(provider));
    tower::util::BoxCloneSyncService::new(svc)
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
}
