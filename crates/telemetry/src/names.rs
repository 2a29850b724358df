//! Every span, attribute and metric name genroute emits, as constants.
//!
//! The crate README has the same list as a table, with types and meanings; a test checks the two agree and
//! that the spans declare every attribute listed here. Standard OpenTelemetry names are used where they
//! exist (`gen_ai.*`, `error.type`), the draft GenAI cost convention for `gen_ai.usage.cost.*`, and
//! `genroute.*` for the rest.

// ---- spans ---------------------------------------------------------------------------------------------

/// Span covering one job, from routing to the last attempt.
pub const JOB_SPAN: &str = "genroute.job";
/// Span covering one attempt of one job on one provider and model (a child of the job span).
pub const ATTEMPT_SPAN: &str = "genroute.attempt";

// ---- standard attributes -------------------------------------------------------------------------------

/// What the job asks for (`image_generation`, `speech`, `upscale`, ...).
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
/// The provider an attempt ran on (`fal`, `replicate`, ...).
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
/// The model requested.
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
/// The model the provider says answered, when it says.
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
/// The class of error an attempt or job ended with; absent on success.
pub const ERROR_TYPE: &str = "error.type";

// ---- draft GenAI cost convention -----------------------------------------------------------------------

/// What an attempt cost in the provider's currency, as a double (the convention's type).
pub const GEN_AI_USAGE_COST_AMOUNT: &str = "gen_ai.usage.cost.amount";
/// The currency of [`GEN_AI_USAGE_COST_AMOUNT`] (`USD`, `CU`, `credits:<provider>`).
pub const GEN_AI_USAGE_COST_CURRENCY: &str = "gen_ai.usage.cost.currency";
/// `provider` when the provider reported the amount, `local` when genroute computed it.
pub const GEN_AI_USAGE_COST_SOURCE: &str = "gen_ai.usage.cost.source";

// ---- genroute attributes -------------------------------------------------------------------------------

/// The job's id (job and attempt spans).
pub const GENROUTE_JOB_ID: &str = "genroute.job.id";
/// Broad kind of output: `image`, `video`, `audio`, `edit`.
pub const GENROUTE_MODALITY: &str = "genroute.modality";
/// The route or model alias the job was submitted to, when it has one.
pub const GENROUTE_ROUTE: &str = "genroute.route";
/// The team paying for the job.
pub const GENROUTE_CALLER_TEAM: &str = "genroute.caller.team";
/// The member, when known.
pub const GENROUTE_CALLER_MEMBER: &str = "genroute.caller.member";
/// The project, when known.
pub const GENROUTE_CALLER_PROJECT: &str = "genroute.caller.project";
/// The API key's *id* (never the key).
pub const GENROUTE_CALLER_API_KEY_ID: &str = "genroute.caller.api_key_id";
/// Attempt number, 1-based across the whole job (retries and fallbacks).
pub const GENROUTE_ATTEMPT: &str = "genroute.attempt";
/// How the attempt ended: `success`, `failed`, `gate_rejected`, `budget_denied`, `cancelled`,
/// `outcome_unknown`.
pub const GENROUTE_OUTCOME: &str = "genroute.outcome";
/// The charged amount in CU, exact decimal string.
pub const GENROUTE_CU: &str = "genroute.cu";
/// The quoted amount with its currency, exact (`"0.050 USD"`).
pub const GENROUTE_COST_QUOTED: &str = "genroute.cost.quoted";
/// The charged amount with its currency, exact (`"0.050 USD"`); zero when not billed.
pub const GENROUTE_COST_CHARGED: &str = "genroute.cost.charged";
/// Where the charged figure came from: `provider_reported`, `price_table`, `conservative_estimate`.
pub const GENROUTE_COST_SOURCE: &str = "genroute.cost.source";
/// The job's total spend in CU after this attempt, exact decimal string.
pub const GENROUTE_JOB_SPEND_CU: &str = "genroute.job.spend_cu";
/// The part of the job's spend that went to attempts other than the accepted one, in CU, exact.
pub const GENROUTE_JOB_RETRY_SPEND_CU: &str = "genroute.job.retry_spend_cu";
/// Attempts the job made (job span, at its end).
pub const GENROUTE_JOB_ATTEMPTS: &str = "genroute.job.attempts";
/// How the job ended (job span): an attempt outcome, or `no_attempt`.
pub const GENROUTE_JOB_OUTCOME: &str = "genroute.job.outcome";
/// Why the router moved on after this attempt (retry or failover), when it did.
pub const GENROUTE_FALLBACK_REASON: &str = "genroute.fallback.reason";
/// The budget check before the attempt: `reserved`, `denied`, `not_checked`.
pub const GENROUTE_BUDGET_DECISION: &str = "genroute.budget.decision";
/// The budget scope that denied the attempt (span), or the scope a remaining-budget gauge is for (metric).
pub const GENROUTE_BUDGET_SCOPE: &str = "genroute.budget.scope";
/// The attempt's latency as the router measured it, in whole milliseconds.
pub const GENROUTE_LATENCY_MS: &str = "genroute.latency_ms";
/// Accepted outputs of a successful attempt.
pub const GENROUTE_OUTPUTS: &str = "genroute.outputs";
/// The currency of a budget gauge.
pub const GENROUTE_CURRENCY: &str = "genroute.currency";

// ---- tracing-opentelemetry control fields --------------------------------------------------------------

/// Overrides the exported span name (`"{operation} {model}"` on attempt spans, per the GenAI convention).
pub const OTEL_NAME: &str = "otel.name";
/// The exported span kind (`client` on attempt spans).
pub const OTEL_KIND: &str = "otel.kind";
/// The exported span status (`error` on attempts that did not succeed).
pub const OTEL_STATUS_CODE: &str = "otel.status_code";
/// The exported status description (the error type).
pub const OTEL_STATUS_DESCRIPTION: &str = "otel.status_description";

// ---- metrics -------------------------------------------------------------------------------------------

/// Counter (f64, `{CU}`): CU charged, per attempt.
pub const METRIC_COST_CU: &str = "genroute.cost.cu";
/// Counter (f64): amount charged in the provider's currency, labelled by [`GEN_AI_USAGE_COST_CURRENCY`].
pub const METRIC_COST: &str = "genroute.cost";
/// Histogram (f64, `{CU}`): effective cost of one accepted output, retries and fallbacks included.
pub const METRIC_COST_PER_GENERATION: &str = "genroute.cost.per_generation";
/// Counter (u64): attempts, by outcome.
pub const METRIC_ATTEMPTS: &str = "genroute.attempts";
/// Counter (u64): attempts after which the router moved on (had a fallback reason).
pub const METRIC_FAILOVERS: &str = "genroute.failovers";
/// Histogram (f64, `s`): attempt duration (the standard GenAI client metric).
pub const METRIC_DURATION: &str = "gen_ai.client.operation.duration";
/// Gauge (f64): budget remaining in a scope, fed by the router or the ledger.
pub const METRIC_BUDGET_REMAINING: &str = "genroute.budget.remaining";

/// Every attribute an attempt span declares, in declaration order.
pub const ATTEMPT_SPAN_FIELDS: &[&str] = &[
    OTEL_NAME,
    OTEL_KIND,
    OTEL_STATUS_CODE,
    OTEL_STATUS_DESCRIPTION,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    ERROR_TYPE,
    GEN_AI_USAGE_COST_AMOUNT,
    GEN_AI_USAGE_COST_CURRENCY,
    GEN_AI_USAGE_COST_SOURCE,
    GENROUTE_JOB_ID,
    GENROUTE_ATTEMPT,
    GENROUTE_MODALITY,
    GENROUTE_ROUTE,
    GENROUTE_OUTCOME,
    GENROUTE_CU,
    GENROUTE_COST_QUOTED,
    GENROUTE_COST_CHARGED,
    GENROUTE_COST_SOURCE,
    GENROUTE_JOB_SPEND_CU,
    GENROUTE_JOB_RETRY_SPEND_CU,
    GENROUTE_FALLBACK_REASON,
    GENROUTE_BUDGET_DECISION,
    GENROUTE_BUDGET_SCOPE,
    GENROUTE_LATENCY_MS,
    GENROUTE_OUTPUTS,
];

/// Every attribute a job span declares, in declaration order.
pub const JOB_SPAN_FIELDS: &[&str] = &[
    OTEL_STATUS_CODE,
    OTEL_STATUS_DESCRIPTION,
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    ERROR_TYPE,
    GENROUTE_JOB_ID,
    GENROUTE_MODALITY,
    GENROUTE_ROUTE,
    GENROUTE_CALLER_TEAM,
    GENROUTE_CALLER_MEMBER,
    GENROUTE_CALLER_PROJECT,
    GENROUTE_CALLER_API_KEY_ID,
    GENROUTE_JOB_OUTCOME,
    GENROUTE_JOB_ATTEMPTS,
    GENROUTE_JOB_SPEND_CU,
    GENROUTE_JOB_RETRY_SPEND_CU,
];

/// Every metric name.
pub const METRICS: &[&str] = &[
    METRIC_COST_CU,
    METRIC_COST,
    METRIC_COST_PER_GENERATION,
    METRIC_ATTEMPTS,
    METRIC_FAILOVERS,
    METRIC_DURATION,
    METRIC_BUDGET_REMAINING,
];

#[cfg(test)]
mod tests {
    /// Every `&str` constant above, read from this file's source.
    fn constants() -> Vec<&'static str> {
        include_str!("names.rs")
            .lines()
            .filter(|l| l.starts_with("pub const ") && l.contains(": &str = \""))
            .filter_map(|l| l.split('"').nth(1))
            .collect()
    }

    #[test]
    fn every_name_is_in_the_readme_table() {
        let readme = include_str!("../README.md");
        let names = constants();
        assert!(names.len() >= 40, "found only {} constants", names.len());
        for name in names {
            assert!(
                readme.lines().any(|l| l.starts_with(&format!("| `{name}`"))),
                "{name} is missing from the README's tables"
            );
        }
    }

    #[test]
    fn names_are_unique_per_kind_and_metrics_are_valid_instrument_names() {
        let mut fields: Vec<&str> = super::ATTEMPT_SPAN_FIELDS.to_vec();
        fields.sort_unstable();
        fields.dedup();
        assert_eq!(fields.len(), super::ATTEMPT_SPAN_FIELDS.len());
        for metric in super::METRICS {
            assert!(metric.len() <= 255 && metric.starts_with(|c: char| c.is_ascii_alphabetic()));
            assert!(
                metric
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c))
            );
        }
    }
}
