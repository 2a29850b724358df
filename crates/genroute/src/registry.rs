//! Provider registry: `type = "fal"` in `[providers.<id>]` → the adapter's constructor.
//!
//! Each adapter registers one line in [`Registry::builtin`]; adding a provider touches its own folder plus
//! that line. Applications can register their own adapters with [`Registry::register`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use genroute_core::{
    CallContext, Generation, Health, Money, Provider, ProviderError, ProviderId, ProviderRequest,
};
use serde::de::DeserializeOwned;

/// Builds a provider from its settings table (everything under `[providers.<id>]` but `type`).
pub type ProviderFactory = fn(toml::Table) -> Result<Arc<dyn Provider>, String>;

/// Adapter kinds and their constructors.
#[derive(Clone, Default)]
pub struct Registry {
    factories: BTreeMap<String, ProviderFactory>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.factories.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Deserialises an adapter's serde config from the table and calls its constructor: the body of a
/// typical [`ProviderFactory`].
pub fn from_table<C, P, E>(
    table: toml::Table,
    new: fn(C) -> Result<P, E>,
) -> Result<Arc<dyn Provider>, String>
where
    C: DeserializeOwned,
    P: Provider + 'static,
    E: fmt::Display,
{
    let config: C = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| e.message().to_owned())?;
    let provider = new(config).map_err(|e| e.to_string())?;
    Ok(Arc::new(provider))
}

impl Registry {
    /// No adapters.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Every adapter compiled in (the `provider-<name>` features).
    pub fn builtin() -> Self {
        #[allow(unused_mut)]
        let mut r = Self::empty();
        #[cfg(feature = "provider-fal")]
        r.register("fal", |t| from_table(t, genroute_provider_fal::FalProvider::new));
        #[cfg(feature = "provider-replicate")]
        r.register("replicate", |t| {
            from_table(t, genroute_provider_replicate::ReplicateProvider::new)
        });
        #[cfg(feature = "provider-openai")]
        r.register("openai", |t| {
            from_table(t, genroute_provider_openai::OpenAiProvider::new)
        });
        #[cfg(feature = "provider-scenario")]
        r.register("scenario", |t| {
            from_table(t, genroute_provider_scenario::ScenarioProvider::new)
        });
        #[cfg(feature = "provider-elevenlabs")]
        r.register("elevenlabs", |t| {
            from_table(t, genroute_provider_elevenlabs::ElevenLabsProvider::new)
        });
        #[cfg(feature = "provider-runway")]
        r.register("runway", |t| {
            from_table(t, genroute_provider_runway::RunwayProvider::new)
        });
        r
    }

    /// Registers (or replaces) an adapter kind.
    pub fn register(&mut self, kind: impl Into<String>, factory: ProviderFactory) -> &mut Self {
        self.factories.insert(kind.into(), factory);
        self
    }

    /// The registered kinds.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.factories.keys().map(String::as_str)
    }

    /// Builds provider `id` of adapter `kind`. When `id` differs from the adapter's own id, the provider
    /// is registered under `id` (prices must then be given for `id` in `[[pricing.overrides]]`).
    pub fn build(&self, id: &str, kind: &str, settings: toml::Table) -> Result<Arc<dyn Provider>, String> {
        let factory = self.factories.get(kind).ok_or_else(|| {
            let known: Vec<&str> = self.kinds().collect();
            format!(
                "unknown provider type {kind:?} (known: {}; a disabled `provider-{kind}` feature?)",
                known.join(", ")
            )
        })?;
        let provider = factory(settings)?;
        if provider.id().as_str() == id {
            Ok(provider)
        } else {
            let id = ProviderId::new(id).map_err(|e| e.to_string())?;
            Ok(Arc::new(Renamed { id, inner: provider }))
        }
    }
}

/// A provider registered under another id than its adapter's.
#[derive(Debug)]
struct Renamed {
    id: ProviderId,
    inner: Arc<dyn Provider>,
}

#[async_trait]
impl Provider for Renamed {
    fn id(&self) -> &ProviderId {
        &self.id
    }
    fn models(&self) -> &[genroute_core::ModelInfo] {
        self.inner.models()
    }
    async fn dry_run(&self, request: &ProviderRequest) -> Result<Option<Money>, ProviderError> {
        self.inner.dry_run(request).await
    }
    async fn generate(
        &self,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        self.inner.generate(request, ctx).await
    }
    async fn resume(
        &self,
        provider_job_id: &str,
        request: &ProviderRequest,
        ctx: &CallContext,
    ) -> Result<Generation, ProviderError> {
        self.inner.resume(provider_job_id, request, ctx).await
    }
    async fn cancel(&self, provider_job_id: &str) -> Result<(), ProviderError> {
        self.inner.cancel(provider_job_id).await
    }
    async fn health(&self) -> Health {
        self.inner.health().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_registered_kinds_and_renames() {
        let r = Registry::builtin();
        assert_eq!(r.kinds().count(), 6);
        let mut t = toml::Table::new();
        t.insert("api_key".into(), "id:secret".into());
        let p = r.build("fal", "fal", t.clone()).unwrap();
        assert_eq!(p.id().as_str(), "fal");
        let p = r.build("fal-eu", "fal", t.clone()).unwrap();
        assert_eq!(p.id().as_str(), "fal-eu");
        assert_eq!(p.models().len(), 4);
        let e = r.build("x", "nope", t.clone()).unwrap_err();
        assert!(e.contains("unknown provider type \"nope\""), "{e}");
        t.insert("retries".into(), 3.into());
        let e = r.build("fal", "fal", t).unwrap_err();
        assert!(e.contains("unknown field `retries`"), "{e}");
    }
}
