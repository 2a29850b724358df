#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! End to end: spans and metrics for a job that failed over reach an in-process OTLP/HTTP receiver, and
//! decode to the right attributes and sums.

mod common;

use std::collections::BTreeMap;

use common::*;
use genroute_core::{ModelRef, Money};
use genroute_telemetry::{
    CostSink, TelemetryConfig, TelemetryGuard, attempt_span, job_span, names, record_attempt, record_job_end,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{Span, span, status};
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

fn spans(receiver: &Receiver) -> Vec<Span> {
    receiver
        .bodies("/v1/traces")
        .iter()
        .flat_map(|body| {
            ExportTraceServiceRequest::decode(body.as_slice())
                .unwrap()
                .resource_spans
        })
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

/// The metrics of the last export (cumulative temporality: the last export holds the totals).
fn last_metrics(receiver: &Receiver) -> (ExportMetricsServiceRequest, BTreeMap<String, Metric>) {
    let body = receiver
        .bodies("/v1/metrics")
        .pop()
        .expect("no metrics export arrived");
    let request = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap();
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|rm| rm.scope_metrics.iter())
        .flat_map(|sm| sm.metrics.iter())
        .map(|m| (m.name.clone(), m.clone()))
        .collect();
    (request, metrics)
}

fn number(point: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint) -> f64 {
    match point.value.unwrap() {
        number_data_point::Value::AsDouble(v) => v,
        number_data_point::Value::AsInt(v) => v as f64,
    }
}

/// Sum of a counter's points, optionally only those with `label == value`.
fn counter_total(metric: &Metric, filter: Option<(&str, &str)>) -> f64 {
    let Some(metric::Data::Sum(sum)) = &metric.data else {
        panic!("{} is not a sum", metric.name)
    };
    assert!(sum.is_monotonic, "{} should be a counter", metric.name);
    sum.data_points
        .iter()
        .filter(|p| filter.is_none_or(|(k, v)| attr_str(&p.attributes, k) == Some(v)))
        .map(number)
        .sum()
}

#[test]
fn failover_job_round_trips_through_otlp_http() {
    let receiver = Receiver::start(200);
    let config = TelemetryConfig {
        service_name: Some("genroute-test".into()),
        ..TelemetryConfig::otlp(receiver.base_url())
    };
    let guard = TelemetryGuard::init_with_env(&config, |_| None).unwrap();
    assert!(guard.traces_enabled() && guard.metrics_enabled());
    let metrics = guard.cost_metrics();
    let (first, second) = failover_pair();

    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let job = job_span(
            &first.job_id,
            first.operation,
            first.modality,
            first.route.as_deref(),
            &first.caller,
        );
        for event in [&first, &second] {
            let span = attempt_span(
                &job,
                &event.job_id,
                event.attempt,
                &ModelRef::new(event.provider.clone(), event.model.clone()),
                event.operation,
                event.modality,
                event.route.as_deref(),
            );
            span.in_scope(|| tracing::info!("calling the provider"));
            record_attempt(&span, event);
            metrics.record(event);
        }
        record_job_end(&job, Some(&second));
    });
    metrics.record_budget_remaining("team:acme", &Money::cu(d("996.875")));
    guard.shutdown().unwrap();

    // ---- traces ----
    let spans = spans(&receiver);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let job = spans.iter().find(|s| s.name == names::JOB_SPAN).unwrap();
    let attempts: Vec<&Span> = {
        let mut a: Vec<&Span> = spans.iter().filter(|s| s.name != names::JOB_SPAN).collect();
        a.sort_by_key(|s| attr_i64(&s.attributes, names::GENROUTE_ATTEMPT));
        a
    };
    assert_eq!(attempts.len(), 2);
    for attempt in &attempts {
        assert_eq!(
            attempt.parent_span_id, job.span_id,
            "attempt spans are children of the job span"
        );
        assert_eq!(attempt.trace_id, job.trace_id);
        assert_eq!(attempt.kind, span::SpanKind::Client as i32);
    }
    assert!(job.parent_span_id.is_empty());

    let (a1, a2) = (&attempts[0].attributes, &attempts[1].attributes);
    assert_eq!(attempts[0].name, "image_generation fal-ai/flux/schnell");
    assert_eq!(attr_i64(a1, names::GENROUTE_ATTEMPT), Some(1));
    assert_eq!(
        attr_str(a1, names::GEN_AI_OPERATION_NAME),
        Some("image_generation")
    );
    assert_eq!(attr_str(a1, names::GEN_AI_PROVIDER_NAME), Some("fal"));
    assert_eq!(
        attr_str(a1, names::GEN_AI_REQUEST_MODEL),
        Some("fal-ai/flux/schnell")
    );
    assert_eq!(attr_str(a1, names::GENROUTE_OUTCOME), Some("failed"));
    assert_eq!(attr_str(a1, names::ERROR_TYPE), Some("unavailable"));
    assert_eq!(attr_f64(a1, names::GEN_AI_USAGE_COST_AMOUNT), Some(0.0));
    assert_eq!(attr_str(a1, names::GEN_AI_USAGE_COST_CURRENCY), Some("USD"));
    assert_eq!(
        attr_str(a1, names::GEN_AI_USAGE_COST_SOURCE),
        None,
        "nothing billed, no source"
    );
    assert_eq!(attr_str(a1, names::GENROUTE_COST_CHARGED), Some("0 USD"));
    assert_eq!(attr_str(a1, names::GENROUTE_COST_QUOTED), Some("0.003 USD"));
    assert_eq!(attr_str(a1, names::GENROUTE_CU), Some("0"));
    assert_eq!(attr_str(a1, names::GENROUTE_FALLBACK_REASON), Some("unavailable"));
    assert_eq!(attr_str(a1, names::GENROUTE_BUDGET_DECISION), Some("reserved"));
    assert_eq!(attr_str(a1, names::GENROUTE_ROUTE), Some("posters"));
    assert_eq!(attr_i64(a1, names::GENROUTE_LATENCY_MS), Some(250));
    assert_eq!(
        attempts[0].status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    assert_eq!(attempts[1].name, "image_generation black-forest-labs/flux-dev");
    assert_eq!(attr_i64(a2, names::GENROUTE_ATTEMPT), Some(2));
    assert_eq!(attr_str(a2, names::GEN_AI_PROVIDER_NAME), Some("replicate"));
    assert_eq!(
        attr_str(a2, names::GEN_AI_RESPONSE_MODEL),
        Some("black-forest-labs/flux-dev:6e4a")
    );
    assert_eq!(attr_str(a2, names::GENROUTE_OUTCOME), Some("success"));
    assert_eq!(attr_str(a2, names::ERROR_TYPE), None);
    assert_eq!(attr_f64(a2, names::GEN_AI_USAGE_COST_AMOUNT), Some(0.025));
    assert_eq!(attr_str(a2, names::GEN_AI_USAGE_COST_CURRENCY), Some("USD"));
    assert_eq!(attr_str(a2, names::GEN_AI_USAGE_COST_SOURCE), Some("local"));
    assert_eq!(attr_str(a2, names::GENROUTE_COST_SOURCE), Some("price_table"));
    assert_eq!(attr_str(a2, names::GENROUTE_COST_CHARGED), Some("0.025 USD"));
    assert_eq!(attr_str(a2, names::GENROUTE_CU), Some("3.125"));
    assert_eq!(attr_str(a2, names::GENROUTE_JOB_SPEND_CU), Some("3.125"));
    assert_eq!(attr_str(a2, names::GENROUTE_JOB_RETRY_SPEND_CU), Some("0"));
    assert_eq!(attr_str(a2, names::GENROUTE_FALLBACK_REASON), None);
    assert_ne!(
        attempts[1].status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    let j = &job.attributes;
    assert_eq!(attr_str(j, names::GENROUTE_JOB_ID), Some("job-7"));
    assert_eq!(attr_str(j, names::GENROUTE_JOB_OUTCOME), Some("success"));
    assert_eq!(attr_i64(j, names::GENROUTE_JOB_ATTEMPTS), Some(2));
    assert_eq!(attr_str(j, names::GENROUTE_JOB_SPEND_CU), Some("3.125"));
    assert_eq!(attr_str(j, names::GEN_AI_PROVIDER_NAME), Some("replicate"));
    assert_eq!(attr_str(j, names::GENROUTE_CALLER_MEMBER), Some("alice"));
    assert_eq!(attr_str(j, names::GENROUTE_CALLER_PROJECT), Some("posters"));

    let trace_request =
        ExportTraceServiceRequest::decode(receiver.bodies("/v1/traces")[0].as_slice()).unwrap();
    let resource = trace_request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(
        attr_str(&resource.attributes, "service.name"),
        Some("genroute-test")
    );

    // ---- metrics ----
    let (_, m) = last_metrics(&receiver);
    for name in names::METRICS {
        assert!(m.contains_key(*name), "metric {name} missing; got {:?}", m.keys());
    }
    assert_eq!(counter_total(&m[names::METRIC_COST_CU], None), 3.125);
    assert_eq!(
        counter_total(
            &m[names::METRIC_COST],
            Some((names::GEN_AI_USAGE_COST_CURRENCY, "USD"))
        ),
        0.025
    );
    let attempts_metric = &m[names::METRIC_ATTEMPTS];
    assert_eq!(counter_total(attempts_metric, None), 2.0);
    assert_eq!(
        counter_total(attempts_metric, Some((names::GENROUTE_OUTCOME, "failed"))),
        1.0
    );
    assert_eq!(
        counter_total(attempts_metric, Some((names::GENROUTE_OUTCOME, "success"))),
        1.0
    );
    assert_eq!(
        counter_total(attempts_metric, Some((names::GEN_AI_PROVIDER_NAME, "replicate"))),
        1.0
    );
    let failovers = &m[names::METRIC_FAILOVERS];
    assert_eq!(counter_total(failovers, None), 1.0);
    assert_eq!(
        counter_total(failovers, Some((names::GEN_AI_PROVIDER_NAME, "fal"))),
        1.0
    );
    assert_eq!(
        counter_total(failovers, Some((names::ERROR_TYPE, "unavailable"))),
        1.0
    );

    let Some(metric::Data::Histogram(duration)) = &m[names::METRIC_DURATION].data else {
        panic!("duration is not a histogram")
    };
    assert_eq!(m[names::METRIC_DURATION].unit, "s");
    assert_eq!(duration.data_points.iter().map(|p| p.count).sum::<u64>(), 2);
    let total: f64 = duration.data_points.iter().filter_map(|p| p.sum).sum();
    assert!((total - 3.0).abs() < 1e-9, "duration sum {total}");

    let Some(metric::Data::Histogram(per_gen)) = &m[names::METRIC_COST_PER_GENERATION].data else {
        panic!("cost per generation is not a histogram")
    };
    assert_eq!(per_gen.data_points.len(), 1);
    assert_eq!(per_gen.data_points[0].count, 1);
    assert_eq!(per_gen.data_points[0].sum, Some(3.125));
    assert_eq!(
        attr_str(&per_gen.data_points[0].attributes, names::GEN_AI_PROVIDER_NAME),
        Some("replicate")
    );

    let Some(metric::Data::Gauge(gauge)) = &m[names::METRIC_BUDGET_REMAINING].data else {
        panic!("budget remaining is not a gauge")
    };
    assert_eq!(number(&gauge.data_points[0]), 996.875);
    assert_eq!(
        attr_str(&gauge.data_points[0].attributes, names::GENROUTE_BUDGET_SCOPE),
        Some("team:acme")
    );
}

#[test]
fn disabled_config_exports_nothing_and_costs_nothing() {
    let receiver = Receiver::start(200);
    let config = TelemetryConfig {
        enabled: Some(false),
        ..TelemetryConfig::otlp(receiver.base_url())
    };
    let guard = TelemetryGuard::init_with_env(&config, |_| None).unwrap();
    assert!(!guard.traces_enabled() && !guard.metrics_enabled());
    assert!(guard.tracing_layer::<tracing_subscriber::Registry>().is_none());
    let (first, _) = failover_pair();
    guard.cost_metrics().record(&first);
    guard.shutdown().unwrap();
    assert!(receiver.requests.lock().unwrap().is_empty());
}

/// The router runs inside tokio. Setting up, exporting and shutting down from a runtime thread must work:
/// with the async reqwest client this combination silently dropped every span (DEPENDENCIES.md, trap 1).
#[tokio::test(flavor = "current_thread")]
async fn export_works_from_inside_a_tokio_runtime() {
    let receiver = Receiver::start(200);
    let guard = TelemetryGuard::init_with_env(&TelemetryConfig::otlp(receiver.base_url()), |_| None).unwrap();
    let (first, second) = failover_pair();
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let job = job_span(
        &first.job_id,
        first.operation,
        first.modality,
        None,
        &first.caller,
    );
    let span = attempt_span(
        &job,
        &second.job_id,
        2,
        &ModelRef::new(second.provider.clone(), second.model.clone()),
        second.operation,
        second.modality,
        None,
    );
    async { tokio::task::yield_now().await }.await;
    record_attempt(&span, &second);
    guard.cost_metrics().record(&second);
    drop(span);
    drop(job);
    guard.shutdown().unwrap();
    assert_eq!(spans(&receiver).len(), 2);
    let (_, m) = last_metrics(&receiver);
    assert_eq!(counter_total(&m[names::METRIC_COST_CU], None), 3.125);
}

#[test]
fn delta_temporality_is_honoured() {
    let receiver = Receiver::start(200);
    let config = TelemetryConfig {
        metrics_temporality: Some(genroute_telemetry::MetricsTemporality::Delta),
        traces: false,
        ..TelemetryConfig::otlp(receiver.base_url())
    };
    let guard = TelemetryGuard::init_with_env(&config, |_| None).unwrap();
    assert!(!guard.traces_enabled());
    let (first, second) = failover_pair();
    let metrics = guard.cost_metrics();
    metrics.record(&first);
    metrics.record(&second);
    guard.shutdown().unwrap();
    assert!(receiver.bodies("/v1/traces").is_empty());
    let (_, m) = last_metrics(&receiver);
    let Some(metric::Data::Sum(sum)) = &m[names::METRIC_COST_CU].data else {
        panic!("not a sum")
    };
    assert_eq!(
        sum.aggregation_temporality,
        opentelemetry_proto::tonic::metrics::v1::AggregationTemporality::Delta as i32
    );
    assert_eq!(counter_total(&m[names::METRIC_ATTEMPTS], None), 2.0);
}

#[test]
fn budget_denial_and_jobs_without_attempts_are_visible() {
    let receiver = Receiver::start(200);
    let config = TelemetryConfig {
        metrics: false,
        ..TelemetryConfig::otlp(receiver.base_url())
    };
    let guard = TelemetryGuard::init_with_env(&config, |_| None).unwrap();
    let (first, _) = failover_pair();
    let denied = genroute_telemetry::AttemptEvent {
        outcome: genroute_telemetry::AttemptOutcome::BudgetDenied,
        budget_decision: genroute_telemetry::BudgetDecision::Denied {
            scope: "member:alice".into(),
        },
        quoted: Some(Money::usd(d("0.003"))),
        fallback_reason: None,
        ..first.clone()
    };
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    tracing::subscriber::with_default(subscriber, || {
        let job = job_span(
            &denied.job_id,
            denied.operation,
            denied.modality,
            None,
            &denied.caller,
        );
        let span = attempt_span(
            &job,
            &denied.job_id,
            1,
            &ModelRef::new(denied.provider.clone(), denied.model.clone()),
            denied.operation,
            denied.modality,
            None,
        );
        record_attempt(&span, &denied);
        drop(span);
        record_job_end(&job, Some(&denied));
        drop(job);
        let empty = job_span(
            &first.job_id,
            first.operation,
            first.modality,
            None,
            &first.caller,
        );
        record_job_end(&empty, None);
    });
    guard.shutdown().unwrap();

    let spans = spans(&receiver);
    assert_eq!(spans.len(), 3);
    let attempt = spans.iter().find(|s| s.name != names::JOB_SPAN).unwrap();
    let a = &attempt.attributes;
    assert_eq!(attr_str(a, names::GENROUTE_OUTCOME), Some("budget_denied"));
    assert_eq!(attr_str(a, names::ERROR_TYPE), Some("budget_denied"));
    assert_eq!(attr_str(a, names::GENROUTE_BUDGET_DECISION), Some("denied"));
    assert_eq!(attr_str(a, names::GENROUTE_BUDGET_SCOPE), Some("member:alice"));
    assert_eq!(attr_str(a, names::GENROUTE_COST_CHARGED), Some("0 USD"));
    let outcomes: Vec<Option<&str>> = spans
        .iter()
        .filter(|s| s.name == names::JOB_SPAN)
        .map(|s| attr_str(&s.attributes, names::GENROUTE_JOB_OUTCOME))
        .collect();
    assert!(outcomes.contains(&Some("budget_denied")), "{outcomes:?}");
    assert!(outcomes.contains(&Some("no_attempt")), "{outcomes:?}");
    for job in spans.iter().filter(|s| s.name == names::JOB_SPAN) {
        assert_eq!(
            job.status.as_ref().map(|s| s.code),
            Some(status::StatusCode::Error as i32)
        );
    }
}
