//! Job and attempt spans.
//!
//! `tracing` needs field names as literals in the span macros; they are spelled here once and a test checks
//! each against the constants in [`crate::names`].

use genroute_core::{Caller, JobId, Modality, ModelRef, Operation};
use tracing::Span;
use tracing::field::Empty;

use crate::event::{AttemptEvent, convention_cost_source, to_f64};
use crate::names;

/// `tracing` target of genroute's spans.
pub const TARGET: &str = "genroute";

/// A span for one job. Create it when the router accepts the job and run the job inside it; attempt spans
/// created with [`attempt_span`] become its children. Close it with [`record_job_end`].
pub fn job_span(
    job_id: &JobId,
    operation: Operation,
    modality: Modality,
    route: Option<&str>,
    caller: &Caller,
) -> Span {
    tracing::info_span!(
        target: TARGET,
        "genroute.job",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = operation.as_str(),
        gen_ai.provider.name = Empty,
        gen_ai.request.model = Empty,
        error.type = Empty,
        genroute.job.id = job_id.as_str(),
        genroute.modality = modality.as_str(),
        genroute.route = route,
        genroute.caller.team = caller.team.as_str(),
        genroute.caller.member = caller.member.as_ref().map(|m| m.as_str()),
        genroute.caller.project = caller.project.as_ref().map(|p| p.as_str()),
        genroute.caller.api_key_id = caller.api_key.as_ref().map(|k| k.as_str()),
        genroute.job.outcome = Empty,
        genroute.job.attempts = Empty,
        genroute.job.spend_cu = Empty,
        genroute.job.retry_spend_cu = Empty,
    )
}

/// A span for one attempt, a child of `job` (pass [`Span::none`] for a root span). Cost attributes start
/// empty; fill them with [`record_attempt`] when the attempt ends.
///
/// Exported as a `client` span named `"{operation} {model}"`, as the GenAI convention asks.
pub fn attempt_span(
    job: &Span,
    job_id: &JobId,
    attempt: u32,
    target: &ModelRef,
    operation: Operation,
    modality: Modality,
    route: Option<&str>,
) -> Span {
    tracing::info_span!(
        target: TARGET,
        parent: job,
        "genroute.attempt",
        otel.name = %SpanName(operation, &target.model),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = operation.as_str(),
        gen_ai.provider.name = target.provider.as_str(),
        gen_ai.request.model = target.model.as_str(),
        gen_ai.response.model = Empty,
        error.type = Empty,
        gen_ai.usage.cost.amount = Empty,
        gen_ai.usage.cost.currency = Empty,
        gen_ai.usage.cost.source = Empty,
        genroute.job.id = job_id.as_str(),
        genroute.attempt = i64::from(attempt),
        genroute.modality = modality.as_str(),
        genroute.route = route,
        genroute.outcome = Empty,
        genroute.cu = Empty,
        genroute.cost.quoted = Empty,
        genroute.cost.charged = Empty,
        genroute.cost.source = Empty,
        genroute.job.spend_cu = Empty,
        genroute.job.retry_spend_cu = Empty,
        genroute.fallback.reason = Empty,
        genroute.budget.decision = Empty,
        genroute.budget.scope = Empty,
        genroute.latency_ms = Empty,
        genroute.outputs = Empty,
    )
}

/// `"{operation} {model}"`, formatted only if the span is enabled.
struct SpanName<'a>(Operation, &'a genroute_core::ModelId);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.0.as_str(), self.1)
    }
}

/// Fills an attempt span's outcome and cost attributes from the attempt's event.
///
/// Integers are recorded as `i64` (tracing-opentelemetry exports `u64` fields as strings).
pub fn record_attempt(span: &Span, event: &AttemptEvent) {
    if span.is_disabled() {
        return;
    }
    span.record(names::GENROUTE_ATTEMPT, i64::from(event.attempt));
    span.record(names::GEN_AI_RESPONSE_MODEL, event.response_model.as_deref());
    span.record(names::GENROUTE_OUTCOME, event.outcome.as_str());
    if let Some(error_type) = event.outcome.error_type() {
        span.record(names::ERROR_TYPE, error_type);
        span.record(names::OTEL_STATUS_CODE, "error");
        span.record(names::OTEL_STATUS_DESCRIPTION, error_type);
    }
    span.record(names::GEN_AI_USAGE_COST_AMOUNT, to_f64(event.charged.amount()));
    span.record(
        names::GEN_AI_USAGE_COST_CURRENCY,
        event.charged.currency().code().as_str(),
    );
    if let Some(source) = event.cost_source {
        span.record(names::GEN_AI_USAGE_COST_SOURCE, convention_cost_source(source));
        span.record(names::GENROUTE_COST_SOURCE, source.as_str());
    }
    span.record(names::GENROUTE_CU, event.cu.amount().to_string().as_str());
    if let Some(quoted) = &event.quoted {
        span.record(names::GENROUTE_COST_QUOTED, quoted.to_string().as_str());
    }
    span.record(names::GENROUTE_COST_CHARGED, event.charged.to_string().as_str());
    span.record(
        names::GENROUTE_JOB_SPEND_CU,
        event.job_spend_cu.amount().to_string().as_str(),
    );
    span.record(
        names::GENROUTE_JOB_RETRY_SPEND_CU,
        event.retry_spend_cu.amount().to_string().as_str(),
    );
    span.record(names::GENROUTE_FALLBACK_REASON, event.fallback_reason.as_deref());
    span.record(names::GENROUTE_BUDGET_DECISION, event.budget_decision.as_str());
    span.record(names::GENROUTE_BUDGET_SCOPE, event.budget_decision.denied_scope());
    span.record(
        names::GENROUTE_LATENCY_MS,
        i64::try_from(event.latency.as_millis()).unwrap_or(i64::MAX),
    );
    span.record(names::GENROUTE_OUTPUTS, i64::from(event.outputs));
}

/// Fills a job span's result from the job's last attempt (`None` when no attempt was made, e.g. no
/// candidate could serve the job).
pub fn record_job_end(span: &Span, last: Option<&AttemptEvent>) {
    if span.is_disabled() {
        return;
    }
    let Some(event) = last else {
        span.record(names::GENROUTE_JOB_OUTCOME, "no_attempt");
        span.record(names::GENROUTE_JOB_ATTEMPTS, 0i64);
        span.record(names::ERROR_TYPE, "no_attempt");
        span.record(names::OTEL_STATUS_CODE, "error");
        return;
    };
    span.record(names::GEN_AI_PROVIDER_NAME, event.provider.as_str());
    span.record(names::GEN_AI_REQUEST_MODEL, event.model.as_str());
    span.record(names::GENROUTE_JOB_OUTCOME, event.outcome.as_str());
    span.record(names::GENROUTE_JOB_ATTEMPTS, i64::from(event.attempt));
    span.record(
        names::GENROUTE_JOB_SPEND_CU,
        event.job_spend_cu.amount().to_string().as_str(),
    );
    span.record(
        names::GENROUTE_JOB_RETRY_SPEND_CU,
        event.retry_spend_cu.amount().to_string().as_str(),
    );
    if let Some(error_type) = event.outcome.error_type() {
        span.record(names::ERROR_TYPE, error_type);
        span.record(names::OTEL_STATUS_CODE, "error");
        span.record(names::OTEL_STATUS_DESCRIPTION, error_type);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use genroute_core::{ModelId, ProviderId, TeamId};

    fn field_names(span: &Span) -> Vec<String> {
        span.metadata()
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().to_owned())
            .collect()
    }

    #[test]
    fn spans_declare_exactly_the_documented_fields() {
        // A subscriber is needed for spans to be enabled and carry metadata.
        let subscriber = tracing_subscriber::registry();
        tracing::subscriber::with_default(subscriber, || {
            let caller = Caller::team(TeamId::new("t").unwrap());
            let job_id = JobId::new("j").unwrap();
            let job = job_span(
                &job_id,
                Operation::ImageGeneration,
                Modality::Image,
                None,
                &caller,
            );
            assert_eq!(job.metadata().unwrap().name(), names::JOB_SPAN);
            assert_eq!(field_names(&job), names::JOB_SPAN_FIELDS);
            let target = ModelRef::new(ProviderId::new("fal").unwrap(), ModelId::new("m").unwrap());
            let attempt = attempt_span(
                &job,
                &job_id,
                1,
                &target,
                Operation::ImageGeneration,
                Modality::Image,
                Some("r"),
            );
            assert_eq!(attempt.metadata().unwrap().name(), names::ATTEMPT_SPAN);
            assert_eq!(field_names(&attempt), names::ATTEMPT_SPAN_FIELDS);
        });
    }
}
