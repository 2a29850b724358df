//! Routes: which candidates may run a job, in which order, under which rules.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use genroute_core::hash::FxHashMap as HashMap;
use genroute_core::{ModelId, ModelRef, Money, ProviderId};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// A price tier. Failover never climbs to a higher tier than the route's primary unless the route allows
/// escalation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// Drafts and free users.
    Budget,
    /// The default.
    #[default]
    Standard,
    /// Flagship models.
    Premium,
}

impl Tier {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Budget => "budget",
            Tier::Standard => "standard",
            Tier::Premium => "premium",
        }
    }
}

/// One deployment a route may use.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CandidateConfig {
    /// The provider, as registered with the router.
    pub provider: ProviderId,
    /// The model.
    pub model: ModelId,
    /// Its price tier.
    #[serde(default)]
    pub tier: Tier,
    /// Relative weight for the weighted policy.
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

impl CandidateConfig {
    /// A standard-tier candidate of weight 1.
    pub fn new(provider: ProviderId, model: ModelId) -> Self {
        Self {
            provider,
            model,
            tier: Tier::Standard,
            weight: 1,
        }
    }

    /// Sets the tier.
    pub fn tier(mut self, tier: Tier) -> Self {
        self.tier = tier;
        self
    }

    /// Sets the weight.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// The provider and model.
    pub fn target(&self) -> ModelRef {
        ModelRef::new(self.provider.clone(), self.model.clone())
    }
}

/// How candidates are ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// In the order configured.
    #[default]
    Priority,
    /// Cheapest quote first (ties keep configured order).
    Cheapest,
    /// Random order drawn by weight.
    Weighted,
    /// Lowest observed latency (EWMA) first; unmeasured candidates first, so they get measured.
    LatencyAware,
}

/// What a content rejection does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnContentRejection {
    /// Stop: another provider would most likely refuse the same prompt.
    #[default]
    Stop,
    /// Try the next candidate (moderation differs between providers).
    Failover,
}

/// A route: candidates and the rules for using them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Candidates, in priority order.
    pub candidates: Vec<CandidateConfig>,
    /// Ordering policy.
    #[serde(default)]
    pub policy: Policy,
    /// A fallback may cost at most this multiple of the primary's quote (1 = never pricier).
    #[serde(default = "default_escalation", with = "rust_decimal::serde::str")]
    pub max_escalation: Decimal,
    /// Lifts both the escalation limit and the tier rule.
    #[serde(default)]
    pub allow_escalation: bool,
    /// Per-attempt cost ceiling for every job on this route (a job may set a lower one).
    #[serde(default)]
    pub cost_ceiling: Option<Money>,
    /// Retries per candidate.
    #[serde(default)]
    pub retry: RetryPolicy,
    /// What a content rejection does.
    #[serde(default)]
    pub on_content_rejection: OnContentRejection,
    /// Per-attempt timeout (the job's deadline still applies).
    #[serde(default, with = "humantime_serde::option")]
    pub attempt_timeout: Option<Duration>,
}

fn default_escalation() -> Decimal {
    Decimal::ONE
}

impl RouteConfig {
    /// A priority route over these candidates with default rules.
    pub fn new(candidates: Vec<CandidateConfig>) -> Self {
        Self {
            candidates,
            policy: Policy::Priority,
            max_escalation: Decimal::ONE,
            allow_escalation: false,
            cost_ceiling: None,
            retry: RetryPolicy::default(),
            on_content_rejection: OnContentRejection::Stop,
            attempt_timeout: None,
        }
    }
}

/// A rule choosing a route from request metadata: every `when` pair must match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteRule {
    /// Metadata keys and the values they must have, e.g. `{ plan = "free" }`.
    pub when: BTreeMap<String, String>,
    /// The route to use.
    pub route: String,
}

/// A name applications use; resolves to a route by metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    /// Rules, first match wins.
    #[serde(default)]
    pub rules: Vec<RouteRule>,
    /// The route when no rule matches.
    pub default: String,
}

/// Why a name could not be resolved, or a table is inconsistent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    /// No route or alias has this name.
    #[error("no route or alias named {0:?}")]
    Unknown(String),
    /// An alias points at a route that does not exist.
    #[error("alias {alias:?} refers to unknown route {route:?}")]
    Dangling {
        /// The alias.
        alias: String,
        /// The missing route.
        route: String,
    },
    /// A route has no candidates.
    #[error("route {0:?} has no candidates")]
    Empty(String),
    /// A name is both a route and an alias.
    #[error("{0:?} is both a route and an alias")]
    Ambiguous(String),
}

/// Routes and aliases, validated together.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    routes: HashMap<String, Arc<RouteConfig>>,
    aliases: HashMap<String, AliasConfig>,
}

impl RouteTable {
    /// Validates routes and aliases: no empty route, no dangling alias, no name used twice.
    pub fn new(
        routes: impl IntoIterator<Item = (String, RouteConfig)>,
        aliases: impl IntoIterator<Item = (String, AliasConfig)>,
    ) -> Result<Self, RouteError> {
        let routes: HashMap<String, Arc<RouteConfig>> =
            routes.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        let aliases: HashMap<String, AliasConfig> = aliases.into_iter().collect();
        for (name, route) in &routes {
            if route.candidates.is_empty() {
                return Err(RouteError::Empty(name.clone()));
            }
            if aliases.contains_key(name) {
                return Err(RouteError::Ambiguous(name.clone()));
            }
        }
        for (alias, cfg) in &aliases {
            for target in cfg
                .rules
                .iter()
                .map(|r| &r.route)
                .chain(std::iter::once(&cfg.default))
            {
                if !routes.contains_key(target) {
                    return Err(RouteError::Dangling {
                        alias: alias.clone(),
                        route: target.clone(),
                    });
                }
            }
        }
        Ok(Self { routes, aliases })
    }

    /// Resolves a route or alias name for a request's metadata to `(route name, route)`.
    pub fn resolve(
        &self,
        name: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<(String, Arc<RouteConfig>), RouteError> {
        let route_name = match self.aliases.get(name) {
            Some(alias) => alias
                .rules
                .iter()
                .find(|r| r.when.iter().all(|(k, v)| metadata.get(k) == Some(v)))
                .map_or(&alias.default, |r| &r.route),
            None => name,
        };
        let route = self
            .routes
            .get(route_name)
            .ok_or_else(|| RouteError::Unknown(name.to_owned()))?;
        Ok((route_name.to_owned(), Arc::clone(route)))
    }

    /// Every route, by name.
    pub fn routes(&self) -> impl Iterator<Item = (&str, &RouteConfig)> {
        self.routes.iter().map(|(k, v)| (k.as_str(), v.as_ref()))
    }
}

/// Exponentially weighted moving average of latency per deployment (passive health).
#[derive(Debug, Default)]
pub struct LatencyTracker {
    ewma: Mutex<HashMap<ModelRef, f64>>,
}

/// Weight of the newest sample.
const EWMA_ALPHA: f64 = 0.3;

impl LatencyTracker {
    /// Records a completed call's latency.
    pub fn observe(&self, target: &ModelRef, latency: Duration) {
        let sample = latency.as_secs_f64();
        let mut map = self
            .ewma
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Updated in place by reference; the key is cloned only on a deployment's first sample.
        match map.get_mut(target) {
            Some(v) => *v = EWMA_ALPHA * sample + (1.0 - EWMA_ALPHA) * *v,
            None => {
                map.insert(target.clone(), sample);
            }
        }
    }

    /// The smoothed latency, if measured.
    pub fn get(&self, target: &ModelRef) -> Option<Duration> {
        let map = self
            .ewma
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(target).map(|s| Duration::from_secs_f64(*s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(p: &str, m: &str) -> CandidateConfig {
        CandidateConfig::new(ProviderId::new(p).unwrap(), ModelId::new(m).unwrap())
    }

    fn table() -> RouteTable {
        RouteTable::new(
            [
                (
                    "premium".to_owned(),
                    RouteConfig::new(vec![cand("a", "big").tier(Tier::Premium)]),
                ),
                (
                    "budget".to_owned(),
                    RouteConfig::new(vec![cand("b", "small").tier(Tier::Budget)]),
                ),
            ],
            [(
                "image".to_owned(),
                AliasConfig {
                    rules: vec![RouteRule {
                        when: BTreeMap::from([("plan".to_owned(), "free".to_owned())]),
                        route: "budget".into(),
                    }],
                    default: "premium".into(),
                },
            )],
        )
        .unwrap()
    }

    #[test]
    fn conditions_on_metadata_choose_the_route() {
        let t = table();
        let free = BTreeMap::from([("plan".to_owned(), "free".to_owned())]);
        let pro = BTreeMap::from([("plan".to_owned(), "pro".to_owned())]);
        assert_eq!(t.resolve("image", &free).unwrap().0, "budget");
        assert_eq!(t.resolve("image", &pro).unwrap().0, "premium");
        assert_eq!(t.resolve("image", &BTreeMap::new()).unwrap().0, "premium");
        assert_eq!(
            t.resolve("budget", &pro).unwrap().0,
            "budget",
            "a route name resolves to itself"
        );
        assert_eq!(
            t.resolve("nope", &pro).unwrap_err(),
            RouteError::Unknown("nope".into())
        );
    }

    #[test]
    fn table_validation() {
        let dangling = RouteTable::new(
            [("r".to_owned(), RouteConfig::new(vec![cand("a", "m")]))],
            [(
                "x".to_owned(),
                AliasConfig {
                    rules: vec![],
                    default: "missing".into(),
                },
            )],
        );
        assert_eq!(
            dangling.unwrap_err(),
            RouteError::Dangling {
                alias: "x".into(),
                route: "missing".into()
            }
        );
        let empty = RouteTable::new([("r".to_owned(), RouteConfig::new(vec![]))], []);
        assert_eq!(empty.unwrap_err(), RouteError::Empty("r".into()));
        let both = RouteTable::new(
            [("r".to_owned(), RouteConfig::new(vec![cand("a", "m")]))],
            [(
                "r".to_owned(),
                AliasConfig {
                    rules: vec![],
                    default: "r".into(),
                },
            )],
        );
        assert_eq!(both.unwrap_err(), RouteError::Ambiguous("r".into()));
    }

    #[test]
    fn ewma_smooths_latency() {
        let t = LatencyTracker::default();
        let target = cand("a", "m").target();
        assert_eq!(t.get(&target), None);
        t.observe(&target, Duration::from_millis(1000));
        t.observe(&target, Duration::from_millis(0));
        let got = t.get(&target).unwrap().as_millis();
        assert!((699..=701).contains(&got), "0.3·0 + 0.7·1000 ≈ 700, got {got}");
    }

    #[test]
    fn route_config_parses_from_toml_with_defaults() {
        let cfg: RouteConfig = toml::from_str(
            r#"
            policy = "cheapest"
            max_escalation = "1.5"
            candidates = [
              { provider = "fal", model = "fal-ai/flux/dev" },
              { provider = "replicate", model = "black-forest-labs/flux-dev", tier = "premium", weight = 3 },
            ]
            [retry]
            max_retries = 1
            base_delay = "100ms"
            "#,
        )
        .unwrap();
        assert_eq!(cfg.policy, Policy::Cheapest);
        assert_eq!(cfg.max_escalation, Decimal::new(15, 1));
        assert_eq!(cfg.candidates[1].tier, Tier::Premium);
        assert_eq!(cfg.candidates[1].weight, 3);
        assert_eq!(cfg.candidates[0].weight, 1);
        assert_eq!(cfg.retry.max_retries, 1);
        assert_eq!(cfg.retry.base_delay, Duration::from_millis(100));
        assert!(toml::from_str::<RouteConfig>("candidates = []\npolicyy = 'x'").is_err());
    }
}
