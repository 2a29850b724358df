//! A scriptable in-process provider for tests of routing logic (yours and ours).
//!
//! Each call to `generate` takes the next [`Step`] from the script (the last one repeats once the script
//! runs out), optionally waits, and answers. Calls are counted, so a test can assert that a budget denial
//! called nothing, or that a failover called the primary exactly once.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use genroute_core::{
    Asset, CallContext, Capabilities, Generation, ModelId, ModelInfo, Operation, Provider, ProviderError,
    ProviderId, ProviderRequest, SizeSupport, validate_request,
};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    /// Succeed with one image per requested output.
    Succeed,
    /// Fail with this error.
    Fail(ProviderError),
    /// Wait, then take the inner step.
    After(Duration, Box<Step>),
    /// Never answer (until dropped).
    Hang,
}

/// A fake provider following a script.
#[derive(Debug)]
pub struct ScriptedProvider {
    id: ProviderId,
    models: Vec<ModelInfo>,
    script: Mutex<VecDeque<Step>>,
    last: Mutex<Step>,
    calls: AtomicUsize,
    resumes: AtomicUsize,
}

impl ScriptedProvider {
    /// A provider offering image models that can do up to 4 outputs per call, following `script`.
    pub fn new(id: &str, models: &[&str], script: Vec<Step>) -> Result<Arc<Self>, genroute_core::IdError> {
        let mut caps = Capabilities::new([Operation::ImageGeneration, Operation::VideoGeneration]);
        caps.max_outputs = 4;
        caps.sizes = Some(SizeSupport::Range {
            min: 64,
            max: 4096,
            multiple_of: 1,
        });
        caps.max_steps = Some(150);
        let models = models
            .iter()
            .map(|m| {
                Ok(ModelInfo {
                    id: ModelId::new(m)?,
                    capabilities: caps.clone(),
                })
            })
            .collect::<Result<Vec<_>, genroute_core::IdError>>()?;
        let last = script.last().cloned().unwrap_or(Step::Succeed);
        Ok(Arc::new(Self {
            id: ProviderId::new(id)?,
            models,
            script: Mutex::new(script.into()),
            last: Mutex::new(last),
            calls: AtomicUsize::new(0),
            resumes: AtomicUsize::new(0),
        }))
    }

    /// Creates (`generate` calls) received.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// `resume` calls received.
    pub fn resumes(&self) -> usize {
        self.resumes.load(Ordering::SeqCst)
    }

    fn next(&self) -> Step {
        let mut script = self
            .script
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match script.pop_front() {
            Some(step) => step,
            None => self
                .last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone(),
        }
    }

    async fn play(&self, step: Step, request: &ProviderRequest) -> Result<Generation, ProviderError> {
        let mut step = step;
        loop {
            match step {
                Step::Succeed => {
                    let n = request.job.output_count();
                    let outputs = (0..n)
                        .map(|i| {
                            Asset::url(
                                format!("https://fake.invalid/{}/{i}.png", self.id),
                                Some("image/png".into()),
                            )
                        })
                        .collect();
                    let mut g = Generation::new(outputs);
                    g.provider_job_id = Some(format!("{}-{}", self.id, self.calls()));
                    return Ok(g);
                }
                Step::Fail(e) => return Err(e),
                Step::After(d, inner) => {
                    tokio::time::sleep(d).await;
                    step = *inner;
                }
                Step::Hang => std::future::pending::<()>().await,
            }
        }
    }
}

#[async_trait]
impl Provider for ScriptedProvider {
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
        let step = self.next();
        self.play(step, request).await
    }

    async fn resume(
        &self,
        _provider_job_id: &str,
        request: &ProviderRequest,
        _ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        self.resumes.fetch_add(1, Ordering::SeqCst);
        let step = self.next();
        self.play(step, request).await
    }
}
