//! What every client part builds: callers with four budget scopes, ledgers, price books, renamed
//! providers (two deployments of one adapter), routes.

use std::sync::Arc;

use async_trait::async_trait;
use genroute_core::{
    ApiKeyId, CallContext, Caller, Generation, Health, MemberId, ModelInfo, Money, ProjectId, Provider,
    ProviderError, ProviderId, ProviderRequest, TeamId,
};
use genroute_ledger::{Ledger, Scope, TeamConfig};
use genroute_pricing::{Catalog, PriceBook, PriceBookBuilder};
use genroute_router::retry::RetryPolicy;
use genroute_router::route::{CandidateConfig, RouteConfig};
use rust_decimal::Decimal;

use crate::measure::Res;

/// A caller with all four scopes (team, member, project, API key), so every reservation is 4-scope.
pub fn caller() -> Res<Caller> {
    Ok(Caller::team(TeamId::new("bench-team")?)
        .member(MemberId::new("alice")?)
        .project(ProjectId::new("launch")?)
        .api_key(ApiKeyId::new("key-1")?))
}

/// Creates the team with a budget that never runs out, and caps the three sub-scopes (caps are checked on
/// every reservation).
pub async fn fund(ledger: &dyn Ledger, caller: &Caller) -> Res<()> {
    let huge = Money::cu(Decimal::from(1_000_000_000_000i64));
    ledger
        .create_team(&TeamConfig::new(
            caller.team.clone(),
            huge.clone(),
            chrono::Utc::now(),
        ))
        .await?;
    let team = caller.team.clone();
    let mut scopes = Vec::new();
    if let Some(m) = &caller.member {
        scopes.push(Scope::Member(team.clone(), m.clone()));
    }
    if let Some(p) = &caller.project {
        scopes.push(Scope::Project(team.clone(), p.clone()));
    }
    if let Some(k) = &caller.api_key {
        scopes.push(Scope::ApiKey(team.clone(), k.clone()));
    }
    for s in scopes {
        ledger.set_cap(&s, &huge).await?;
    }
    Ok(())
}

/// The built-in price book plus copies of the OpenAI catalog under other provider ids.
pub fn prices_with_openai_aliases(aliases: &[&str]) -> Res<PriceBook> {
    let mut builder: PriceBookBuilder = PriceBook::builtin_builder()?;
    let text = genroute_pricing::builtin::SOURCES
        .iter()
        .find(|(origin, _)| origin.contains("/openai/"))
        .map(|(_, text)| *text)
        .ok_or("no built-in openai catalog")?;
    for alias in aliases {
        let renamed = text.replacen("provider = \"openai\"", &format!("provider = \"{alias}\""), 1);
        builder = builder.catalog(Catalog::from_toml(&renamed, alias)?);
    }
    Ok(builder.build()?)
}

/// A route over `(provider, model)` candidates, in priority order, with no retries (a failure fails over
/// at once) and escalation allowed.
pub fn route(cands: &[(&str, &str)]) -> Res<RouteConfig> {
    let candidates = cands
        .iter()
        .map(|(p, m)| {
            Ok(CandidateConfig::new(
                ProviderId::new(*p)?,
                genroute_core::ModelId::new(*m)?,
            ))
        })
        .collect::<Res<Vec<_>>>()?;
    let mut r = RouteConfig::new(candidates);
    r.allow_escalation = true;
    r.retry = RetryPolicy {
        max_retries: 0,
        ..RetryPolicy::default()
    };
    Ok(r)
}

/// Another deployment of the same adapter under its own provider id (what LiteLLM calls a second
/// deployment of a model group): every call is delegated.
#[derive(Debug)]
pub struct Renamed {
    id: ProviderId,
    inner: Arc<dyn Provider>,
}

impl Renamed {
    /// Wraps `inner` under `id`.
    pub fn new(id: &str, inner: Arc<dyn Provider>) -> Res<Arc<Self>> {
        Ok(Arc::new(Self {
            id: ProviderId::new(id)?,
            inner,
        }))
    }
}

#[async_trait]
impl Provider for Renamed {
    fn id(&self) -> &ProviderId {
        &self.id
    }

    fn models(&self) -> &[ModelInfo] {
        self.inner.models()
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
