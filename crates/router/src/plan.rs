//! Planning: which candidates may run this job, and in which order.

use std::fmt;

use genroute_core::{ModelRef, Quote};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::retry::Jitter;
use crate::route::{LatencyTracker, Policy, RouteConfig, Tier};

/// Why a candidate was left out of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum DropReason {
    /// No provider with this name is registered.
    UnknownProvider,
    /// The model cannot do the job.
    Unsupported {
        /// Why.
        detail: String,
    },
    /// The job could not be priced on it.
    NotPriced {
        /// Why.
        detail: String,
    },
    /// Its circuit breaker is open.
    BreakerOpen,
    /// Its quote is above the cost ceiling.
    OverCeiling {
        /// The quote, in CU.
        quote_cu: Decimal,
        /// The ceiling, in CU.
        ceiling_cu: Decimal,
    },
    /// It would cost more than `max_escalation` × the primary's quote.
    Escalation {
        /// The quote, in CU.
        quote_cu: Decimal,
        /// The most a fallback may cost, in CU.
        limit_cu: Decimal,
    },
    /// It is in a higher tier than the primary.
    HigherTier {
        /// Its tier.
        tier: Tier,
        /// The primary's tier.
        primary: Tier,
    },
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::UnknownProvider => f.write_str("provider not registered"),
            DropReason::Unsupported { detail } => write!(f, "cannot do this job: {detail}"),
            DropReason::NotPriced { detail } => write!(f, "cannot be priced: {detail}"),
            DropReason::BreakerOpen => f.write_str("circuit breaker open"),
            DropReason::OverCeiling { quote_cu, ceiling_cu } => {
                write!(f, "quote {quote_cu} CU is above the ceiling of {ceiling_cu} CU")
            }
            DropReason::Escalation { quote_cu, limit_cu } => {
                write!(
                    f,
                    "quote {quote_cu} CU exceeds the escalation limit of {limit_cu} CU"
                )
            }
            DropReason::HigherTier { tier, primary } => {
                write!(
                    f,
                    "tier {} is above the primary's tier {}",
                    tier.as_str(),
                    primary.as_str()
                )
            }
        }
    }
}

/// What the router knows about one candidate before planning.
#[derive(Clone, Debug)]
pub struct Assessment {
    /// The candidate.
    pub target: ModelRef,
    /// Its tier.
    pub tier: Tier,
    /// Its weight.
    pub weight: u32,
    /// Its quote, or why it could not be quoted (unknown provider, unsupported, not priced).
    pub quote: Result<Quote, DropReason>,
    /// Whether its breaker lets calls through.
    pub available: bool,
}

/// A candidate kept in the plan.
#[derive(Clone, Debug)]
pub struct Step {
    /// The candidate.
    pub target: ModelRef,
    /// Its tier.
    pub tier: Tier,
    /// Its quote.
    pub quote: Quote,
    /// Its quote in CU (what the ledger reserves).
    pub quote_cu: Decimal,
}

/// The ordered plan, and every candidate dropped with its reason.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// What to try, in order.
    pub steps: Vec<Step>,
    /// What was left out, and why.
    pub dropped: Vec<(ModelRef, DropReason)>,
}

/// The primary's tier and CU quote: the first candidate (in configured order) that can do the job at all,
/// whatever its breaker says. It anchors the escalation guard, so an outage of the primary cannot make a
/// pricier fallback the reference.
pub fn primary_of(a: &Assessment) -> Option<(Tier, Decimal)> {
    let q = a.quote.as_ref().ok()?;
    Some((a.tier, q.cost_cu.as_ref()?.amount()))
}

/// Decides one candidate: a step to try, or the reason it is dropped. `primary` is the route's primary as
/// known so far ([`primary_of`] of the first capable candidate).
pub fn admit(
    route: &RouteConfig,
    a: Assessment,
    primary: Option<(Tier, Decimal)>,
    ceiling_cu: Option<Decimal>,
) -> Result<Step, (ModelRef, DropReason)> {
    let quote = match a.quote {
        Ok(q) => q,
        Err(reason) => return Err((a.target, reason)),
    };
    let Some(quote_cu) = quote.cost_cu.as_ref().map(genroute_core::Money::amount) else {
        let reason = DropReason::NotPriced {
            detail: "no conversion to CU".into(),
        };
        return Err((a.target, reason));
    };
    if let Some(ceiling_cu) = ceiling_cu
        && quote_cu > ceiling_cu
    {
        return Err((a.target, DropReason::OverCeiling { quote_cu, ceiling_cu }));
    }
    if !route.allow_escalation
        && let Some((primary_tier, primary_cu)) = primary
    {
        if a.tier > primary_tier {
            return Err((
                a.target,
                DropReason::HigherTier {
                    tier: a.tier,
                    primary: primary_tier,
                },
            ));
        }
        let limit_cu = primary_cu * route.max_escalation;
        if quote_cu > limit_cu {
            return Err((a.target, DropReason::Escalation { quote_cu, limit_cu }));
        }
    }
    if !a.available {
        return Err((a.target, DropReason::BreakerOpen));
    }
    Ok(Step {
        target: a.target,
        tier: a.tier,
        quote,
        quote_cu,
    })
}

/// Builds the whole plan for one job up front (every policy but a run of `priority`, which the router plans
/// lazily with [`primary_of`] and [`admit`] so a long route costs nothing until it fails over).
/// `ceiling_cu` is the stricter of the route's and the job's ceilings.
pub fn plan(
    route: &RouteConfig,
    assessments: Vec<Assessment>,
    ceiling_cu: Option<Decimal>,
    latency: &LatencyTracker,
    jitter: &Jitter,
) -> Plan {
    let mut out = Plan::default();
    let primary = assessments.iter().find_map(primary_of);
    let mut kept: Vec<(usize, Step, u32)> = Vec::new();
    for (index, a) in assessments.into_iter().enumerate() {
        let weight = a.weight;
        match admit(route, a, primary, ceiling_cu) {
            Ok(step) => kept.push((index, step, weight)),
            Err(dropped) => out.dropped.push(dropped),
        }
    }
    order(route.policy, &mut kept, latency, jitter);
    out.steps = kept.into_iter().map(|(_, s, _)| s).collect();
    out
}

fn order(policy: Policy, kept: &mut Vec<(usize, Step, u32)>, latency: &LatencyTracker, jitter: &Jitter) {
    match policy {
        Policy::Priority => kept.sort_by_key(|(i, _, _)| *i),
        Policy::Cheapest => kept.sort_by(|a, b| a.1.quote_cu.cmp(&b.1.quote_cu).then(a.0.cmp(&b.0))),
        Policy::LatencyAware => kept.sort_by(|a, b| {
            let la = latency.get(&a.1.target);
            let lb = latency.get(&b.1.target);
            // Unmeasured first (None < Some), then fastest; ties keep configured order.
            la.cmp(&lb).then(a.0.cmp(&b.0))
        }),
        Policy::Weighted => {
            // Weighted sampling without replacement: repeatedly draw one in proportion to its weight.
            let mut pool = std::mem::take(kept);
            while !pool.is_empty() {
                let total: u64 = pool.iter().map(|(_, _, w)| u64::from((*w).max(1))).sum();
                let mut pick = jitter.below(total);
                let mut chosen = pool.len() - 1;
                for (i, (_, _, w)) in pool.iter().enumerate() {
                    let w = u64::from((*w).max(1));
                    if pick < w {
                        chosen = i;
                        break;
                    }
                    pick -= w;
                }
                kept.push(pool.remove(chosen));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::CandidateConfig;
    use genroute_core::{ModelId, Money, ProviderId, QuoteSource};
    use std::time::Duration;

    fn target(p: &str) -> ModelRef {
        ModelRef::new(ProviderId::new(p).unwrap(), ModelId::new("m").unwrap())
    }

    fn quote(p: &str, cu: i64) -> Quote {
        Quote {
            target: target(p),
            cost: Money::usd(Decimal::new(cu, 3)),
            cost_cu: Some(Money::cu(Decimal::from(cu))),
            lines: vec![],
            high_cost: false,
            source: QuoteSource::PriceTable,
            price_verified: None,
        }
    }

    fn assess(p: &str, cu: i64, tier: Tier) -> Assessment {
        Assessment {
            target: target(p),
            tier,
            weight: 1,
            quote: Ok(quote(p, cu)),
            available: true,
        }
    }

    fn route(policy: Policy) -> RouteConfig {
        let mut r = RouteConfig::new(vec![CandidateConfig::new(
            ProviderId::new("x").unwrap(),
            ModelId::new("m").unwrap(),
        )]);
        r.policy = policy;
        r
    }

    fn names(p: &Plan) -> Vec<String> {
        p.steps.iter().map(|s| s.target.provider.to_string()).collect()
    }

    #[test]
    fn priority_and_cheapest_orders() {
        let l = LatencyTracker::default();
        let j = Jitter::with_seed(1);
        let mut r = route(Policy::Priority);
        r.allow_escalation = true;
        let a = || {
            vec![
                assess("a", 30, Tier::Standard),
                assess("b", 10, Tier::Standard),
                assess("c", 20, Tier::Standard),
            ]
        };
        assert_eq!(names(&plan(&r, a(), None, &l, &j)), ["a", "b", "c"]);
        r.policy = Policy::Cheapest;
        assert_eq!(names(&plan(&r, a(), None, &l, &j)), ["b", "c", "a"]);
    }

    #[test]
    fn latency_aware_prefers_unmeasured_then_fastest() {
        let l = LatencyTracker::default();
        l.observe(&target("a"), Duration::from_millis(500));
        l.observe(&target("b"), Duration::from_millis(100));
        let r = route(Policy::LatencyAware);
        let a = vec![
            assess("a", 10, Tier::Standard),
            assess("b", 10, Tier::Standard),
            assess("c", 10, Tier::Standard),
        ];
        assert_eq!(
            names(&plan(&r, a, None, &l, &Jitter::with_seed(1))),
            ["c", "b", "a"]
        );
    }

    #[test]
    fn weighted_order_follows_weights() {
        let l = LatencyTracker::default();
        let j = Jitter::with_seed(42);
        let r = route(Policy::Weighted);
        let mut first_heavy = 0;
        for _ in 0..1000 {
            let mut heavy = assess("heavy", 10, Tier::Standard);
            heavy.weight = 9;
            let p = plan(&r, vec![assess("light", 10, Tier::Standard), heavy], None, &l, &j);
            assert_eq!(p.steps.len(), 2, "weighted keeps every candidate");
            if p.steps[0].target.provider.as_str() == "heavy" {
                first_heavy += 1;
            }
        }
        assert!(
            (850..=950).contains(&first_heavy),
            "expected ≈900 of 1000, got {first_heavy}"
        );
    }

    #[test]
    fn ceiling_escalation_tier_and_breaker_drop_with_reasons() {
        let l = LatencyTracker::default();
        let j = Jitter::with_seed(1);
        let mut r = route(Policy::Priority);
        r.max_escalation = Decimal::new(15, 1);
        let mut down = assess("down", 10, Tier::Standard);
        down.available = false;
        let unpriced = Assessment {
            target: target("nop"),
            tier: Tier::Standard,
            weight: 1,
            quote: Err(DropReason::Unsupported {
                detail: "kind".into(),
            }),
            available: true,
        };
        let p = plan(
            &r,
            vec![
                unpriced,
                down,
                assess("ok", 14, Tier::Standard),
                assess("pricey", 16, Tier::Standard),
                assess("premium", 5, Tier::Premium),
                assess("huge", 100, Tier::Budget),
            ],
            Some(Decimal::from(50)),
            &l,
            &j,
        );
        assert_eq!(names(&p), ["ok"]);
        let reasons: Vec<(String, DropReason)> = p
            .dropped
            .iter()
            .map(|(t, r)| (t.provider.to_string(), r.clone()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (
                    "nop".into(),
                    DropReason::Unsupported {
                        detail: "kind".into()
                    }
                ),
                ("down".into(), DropReason::BreakerOpen),
                (
                    "pricey".into(),
                    DropReason::Escalation {
                        quote_cu: Decimal::from(16),
                        limit_cu: Decimal::from(15)
                    }
                ),
                (
                    "premium".into(),
                    DropReason::HigherTier {
                        tier: Tier::Premium,
                        primary: Tier::Standard
                    }
                ),
                (
                    "huge".into(),
                    DropReason::OverCeiling {
                        quote_cu: Decimal::from(100),
                        ceiling_cu: Decimal::from(50)
                    }
                ),
            ]
        );
        // The primary ("down", breaker open) still anchors escalation: its outage does not let a pricier
        // fallback through.
        assert!(
            p.dropped
                .iter()
                .any(|(_, r)| matches!(r, DropReason::Escalation { .. }))
        );
    }

    #[test]
    fn allow_escalation_lifts_tier_and_price_limits() {
        let mut r = route(Policy::Priority);
        r.allow_escalation = true;
        let p = plan(
            &r,
            vec![assess("a", 10, Tier::Budget), assess("b", 100, Tier::Premium)],
            None,
            &LatencyTracker::default(),
            &Jitter::with_seed(1),
        );
        assert_eq!(names(&p), ["a", "b"]);
    }
}
