//! The one trait every provider adapter implements.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::capabilities::Capabilities;
use crate::context::CallContext;
use crate::error::{ErrorKind, ProviderError};
use crate::generation::Generation;
use crate::ids::{ModelId, ProviderId};
use crate::job::Job;
use crate::money::Money;

/// A model a provider offers, with what it can do.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The model's id as the provider names it.
    pub id: ModelId,
    /// What it can do.
    pub capabilities: Capabilities,
}

/// What to run: a model and a job.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct ProviderRequest {
    /// The model.
    pub model: ModelId,
    /// The job.
    pub job: Job,
}

impl ProviderRequest {
    /// A request.
    pub fn new(model: ModelId, job: impl Into<Job>) -> Self {
        Self {
            model,
            job: job.into(),
        }
    }
}

/// How a provider looks from here.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Answering normally.
    Healthy,
    /// Answering, slowly or with some errors.
    Degraded,
    /// Not answering.
    Down,
    /// Not checked.
    Unknown,
}

/// A health check's result.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Health {
    /// The verdict.
    pub status: HealthStatus,
    /// Why, if there is more to say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Health {
    /// Not checked.
    pub const UNKNOWN: Health = Health {
        status: HealthStatus::Unknown,
        detail: None,
    };
}

/// A generative media provider. Held as `Arc<dyn Provider>`.
///
/// Contract for implementors:
/// - **One attempt, one upstream create.** Never retry inside an adapter: the router retries, so every
///   call is reserved, charged and visible.
/// - Check the job against the model's [`Capabilities`] (see [`validate_request`]) and return
///   `Unsupported`/`InvalidRequest` *before* sending anything.
/// - Classify every failure in one function, including whether it was billed.
/// - Report the provider's own cost figure when it gives one ([`Generation::charged`]) and always the
///   metered [`Generation::usage`].
#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The provider's name.
    fn id(&self) -> &ProviderId;

    /// The models it offers.
    fn models(&self) -> &[ModelInfo];

    /// One model's description, if offered.
    fn model(&self, id: &ModelId) -> Option<&ModelInfo> {
        self.models().iter().find(|m| &m.id == id)
    }

    /// Asks the provider what the job would cost without running it, where it offers that (Scenario's
    /// `dryRun`). `Ok(None)`: no dry run; price it from the catalog.
    async fn dry_run(&self, request: &ProviderRequest) -> Result<Option<Money>, ProviderError> {
        let _ = request;
        Ok(None)
    }

    /// Runs the whole lifecycle of one attempt: submit, wait or poll, fetch the result. Dropping the
    /// future stops it (and cancels upstream where possible).
    async fn generate(
        &self,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError>;

    /// Follows a job created earlier (e.g. after a timeout whose outcome was unknown) to its end,
    /// without creating a new one.
    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        let _ = (provider_job_id, request, ctx);
        Err(ProviderError::local(
            ErrorKind::Unsupported,
            format!("{} cannot resume jobs", self.id()),
        ))
    }

    /// Cancels a job upstream.
    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        let _ = provider_job_id;
        Err(ProviderError::local(
            ErrorKind::Unsupported,
            format!("{} cannot cancel jobs", self.id()),
        ))
    }

    /// Checks whether the provider is answering.
    async fn health(&self) -> Health {
        Health::UNKNOWN
    }
}

/// Checks that a provider offers the requested model and that the model can do the job. Adapters call
/// this first; the router calls it while planning.
pub fn validate_request<'a>(
    provider: &'a dyn Provider,
    request: &ProviderRequest,
) -> Result<&'a ModelInfo, ProviderError> {
    let info = provider.model(&request.model).ok_or_else(|| {
        ProviderError::local(
            ErrorKind::Unsupported,
            format!("{} does not offer model {}", provider.id(), request.model),
        )
    })?;
    info.capabilities.check(&request.job)?;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Caller;
    use crate::error::Billed;
    use crate::generation::Asset;
    use crate::ids::{JobId, TeamId};
    use crate::job::{ImageJobSpec, Operation};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct Fake {
        id: ProviderId,
        models: Vec<ModelInfo>,
        calls: AtomicUsize,
    }

    #[async_trait]
    impl Provider for Fake {
        fn id(&self) -> &ProviderId {
            &self.id
        }
        fn models(&self) -> &[ModelInfo] {
            &self.models
        }
        async fn generate(
            &self,
            request: &ProviderRequest,
            _ctx: &CallContext,
        ) -> Result<Generation, ProviderError> {
            validate_request(self, request)?;
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Generation::new(vec![Asset::url("https://x/1.png", None)]))
        }
    }

    fn fake() -> Arc<dyn Provider> {
        let mut caps = Capabilities::new([Operation::ImageGeneration]);
        caps.max_outputs = 1;
        Arc::new(Fake {
            id: ProviderId::new("fake").unwrap(),
            models: vec![ModelInfo {
                id: ModelId::new("m1").unwrap(),
                capabilities: caps,
            }],
            calls: AtomicUsize::new(0),
        })
    }

    fn run<F: std::future::Future>(f: F) -> F::Output {
        // A minimal executor: the fake never pends, so one poll suffices.
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn object_safe_and_validates_before_calling() {
        let p = fake();
        let ctx = CallContext::new(JobId::new("j").unwrap(), Caller::team(TeamId::new("t").unwrap()));
        let ok = ProviderRequest::new(
            ModelId::new("m1").unwrap(),
            ImageJobSpec::new("cat").build().unwrap(),
        );
        assert_eq!(run(p.generate(&ok, &ctx)).unwrap().outputs.len(), 1);

        let too_many = ProviderRequest::new(
            ModelId::new("m1").unwrap(),
            ImageJobSpec::new("cat").count(2).build().unwrap(),
        );
        let err = run(p.generate(&too_many, &ctx)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert_eq!(err.billing(), &Billed::No);

        let unknown = ProviderRequest::new(
            ModelId::new("nope").unwrap(),
            ImageJobSpec::new("cat").build().unwrap(),
        );
        let err = run(p.generate(&unknown, &ctx)).unwrap_err();
        assert!(err.message().contains("does not offer model nope"), "{err}");

        // Defaults: no dry run, no resume, no cancel, health unknown.
        assert_eq!(run(p.dry_run(&ok)).unwrap(), None);
        assert_eq!(
            run(p.resume("x", &ok, &ctx)).unwrap_err().kind(),
            ErrorKind::Unsupported
        );
        assert_eq!(run(p.cancel("x")).unwrap_err().kind(), ErrorKind::Unsupported);
        assert_eq!(run(p.health()).status, HealthStatus::Unknown);
    }
}
