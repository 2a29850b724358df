//! Cost metrics through the OpenTelemetry metrics API.

use genroute_core::Money;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

use crate::event::{AttemptEvent, CostSink, to_f64};
use crate::names;

/// Instrumentation scope name of genroute's meter and tracer.
pub const SCOPE: &str = "genroute";

/// Bucket bounds (CU) of the cost-per-generation histogram: from a fraction of an image (5 CU for an SDXL
/// image, seed 002) to long video.
pub const COST_PER_GENERATION_BOUNDS: &[f64] = &[
    0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0,
];

/// Bucket bounds (seconds) of the duration histogram: the GenAI convention's advice, extended to ~11 min
/// because video jobs run for minutes.
pub const DURATION_BOUNDS: &[f64] = &[
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68,
    655.36,
];

/// Records every attempt event as metrics (see the table in the crate docs). Cheap and non-blocking: the
/// OpenTelemetry SDK aggregates in memory and exports from its own thread.
///
/// Labels on every instrument: `gen_ai.operation.name`, `gen_ai.provider.name`, `gen_ai.request.model`,
/// `genroute.modality`, `genroute.outcome` and, when the job has one, `genroute.route`. The provider-currency
/// counter adds `gen_ai.usage.cost.currency`; duration and failovers add `error.type` when there is one.
#[derive(Clone, Debug)]
pub struct CostMetrics {
    cost_cu: Counter<f64>,
    cost: Counter<f64>,
    per_generation: Histogram<f64>,
    attempts: Counter<u64>,
    failovers: Counter<u64>,
    duration: Histogram<f64>,
    budget_remaining: Gauge<f64>,
}

impl CostMetrics {
    /// Creates the instruments on a meter.
    pub fn new(meter: &Meter) -> Self {
        Self {
            cost_cu: meter
                .f64_counter(names::METRIC_COST_CU)
                .with_unit("{CU}")
                .with_description("Compute units charged per attempt")
                .build(),
            cost: meter
                .f64_counter(names::METRIC_COST)
                .with_description(
                    "Amount charged per attempt in the provider's currency (see the currency label)",
                )
                .build(),
            per_generation: meter
                .f64_histogram(names::METRIC_COST_PER_GENERATION)
                .with_unit("{CU}")
                .with_description("Effective cost of one accepted output, retries and fallbacks included")
                .with_boundaries(COST_PER_GENERATION_BOUNDS.to_vec())
                .build(),
            attempts: meter
                .u64_counter(names::METRIC_ATTEMPTS)
                .with_unit("{attempt}")
                .with_description("Provider attempts, by outcome")
                .build(),
            failovers: meter
                .u64_counter(names::METRIC_FAILOVERS)
                .with_unit("{attempt}")
                .with_description("Attempts after which the router moved on to a retry or another candidate")
                .build(),
            duration: meter
                .f64_histogram(names::METRIC_DURATION)
                .with_unit("s")
                .with_description("Duration of one provider attempt")
                .with_boundaries(DURATION_BOUNDS.to_vec())
                .build(),
            budget_remaining: meter
                .f64_gauge(names::METRIC_BUDGET_REMAINING)
                .with_description("Budget remaining in a scope")
                .build(),
        }
    }

    /// Instruments on the global meter provider (a no-op until one is installed).
    pub fn global() -> Self {
        Self::new(&opentelemetry::global::meter(SCOPE))
    }

    /// Reports the budget left in a scope (e.g. `team:acme`, `member:alice`): a gauge the router or the
    /// ledger feeds after each reservation or settlement.
    pub fn record_budget_remaining(&self, scope: &str, remaining: &Money) {
        self.budget_remaining.record(
            to_f64(remaining.amount()),
            &[
                KeyValue::new(names::GENROUTE_BUDGET_SCOPE, scope.to_owned()),
                KeyValue::new(names::GENROUTE_CURRENCY, remaining.currency().code()),
            ],
        );
    }
}

fn labels(event: &AttemptEvent) -> Vec<KeyValue> {
    let mut labels = Vec::with_capacity(8);
    labels.push(KeyValue::new(
        names::GEN_AI_OPERATION_NAME,
        event.operation.as_str(),
    ));
    labels.push(KeyValue::new(
        names::GEN_AI_PROVIDER_NAME,
        event.provider.as_str().to_owned(),
    ));
    labels.push(KeyValue::new(
        names::GEN_AI_REQUEST_MODEL,
        event.model.as_str().to_owned(),
    ));
    labels.push(KeyValue::new(names::GENROUTE_MODALITY, event.modality.as_str()));
    labels.push(KeyValue::new(names::GENROUTE_OUTCOME, event.outcome.as_str()));
    if let Some(route) = &event.route {
        labels.push(KeyValue::new(names::GENROUTE_ROUTE, route.clone()));
    }
    labels
}

impl CostSink for CostMetrics {
    fn record(&self, event: &AttemptEvent) {
        let mut labels = labels(event);
        self.attempts.add(1, &labels);
        self.cost_cu.add(to_f64(event.cu.amount()), &labels);
        if let Some(per_output) = event.cost_per_generation_cu() {
            self.per_generation.record(to_f64(per_output), &labels);
        }
        labels.push(KeyValue::new(
            names::GEN_AI_USAGE_COST_CURRENCY,
            event.charged.currency().code(),
        ));
        self.cost.add(to_f64(event.charged.amount()), &labels);
        labels.pop();
        if let Some(error_type) = event.outcome.error_type() {
            labels.push(KeyValue::new(names::ERROR_TYPE, error_type));
        }
        self.duration.record(event.latency.as_secs_f64(), &labels);
        if event.fallback_reason.is_some() {
            self.failovers.add(1, &labels);
        }
    }
}
