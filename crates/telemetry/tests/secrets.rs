#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Secrets set in the telemetry config and in the environment-derived OTLP headers reach the collector as
//! headers, and nowhere else: not in span or metric payloads, log lines (ours or the OpenTelemetry SDK's),
//! the cost log, error messages or `Debug` output.
//!
//! One test in its own binary: it installs a global `tracing` subscriber so the SDK's export threads log
//! into the capture too.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use genroute_core::ModelRef;
use genroute_telemetry::{
    CostLogOptions, CostSink, FlushPolicy, JsonlCostLog, TelemetryConfig, TelemetryGuard, attempt_span,
    job_span, record_attempt, record_job_end,
};
use tracing_subscriber::layer::SubscriberExt;

const CONFIG_SECRET: &str = "sk-cfg-5f3a9e1c7b2d";
const ENV_SECRET: &str = "sk-env-8d2b4f6a0e9c";
const URL_SECRET: &str = "sk-url-3c1d9f7e5a";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

fn assert_clean(what: &str, haystack: &[u8]) {
    for secret in [CONFIG_SECRET, ENV_SECRET, URL_SECRET] {
        assert!(
            !haystack.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{what} contains a secret: {}",
            String::from_utf8_lossy(haystack)
        );
    }
}

fn env_with_headers(name: &str) -> Option<String> {
    (name == "OTEL_EXPORTER_OTLP_HEADERS").then(|| format!("x-api-key={ENV_SECRET},x-tenant=acme"))
}

#[test]
fn secrets_reach_the_collector_as_headers_and_nowhere_else() {
    let logs = Capture::default();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE);

    let receiver = Receiver::start(200);
    let failing = Receiver::start(500);
    let config = TelemetryConfig::otlp(receiver.base_url())
        .with_header("authorization", format!("Bearer {CONFIG_SECRET}"));
    let guard = TelemetryGuard::init_with_env(&config, env_with_headers).unwrap();
    let failing_guard = TelemetryGuard::init_with_env(
        &TelemetryConfig::otlp(failing.base_url()).with_header("authorization", CONFIG_SECRET),
        env_with_headers,
    )
    .unwrap();

    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::TRACE)
        .with(fmt)
        .with(guard.tracing_layer());
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cost_log_path = dir.path().join("cost.jsonl");
    let cost_log = JsonlCostLog::open(
        &cost_log_path,
        CostLogOptions {
            flush: FlushPolicy::EveryLine,
            ..CostLogOptions::default()
        },
    )
    .unwrap();
    let metrics = guard.cost_metrics();
    let failing_metrics = failing_guard.cost_metrics();

    let (first, second) = failover_pair();
    let job = job_span(
        &first.job_id,
        first.operation,
        first.modality,
        None,
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
            None,
        );
        span.in_scope(|| tracing::info!(attempt = event.attempt, "calling the provider"));
        record_attempt(&span, event);
        metrics.record(event);
        failing_metrics.record(event);
        cost_log.record(event);
    }
    record_job_end(&job, Some(&second));
    drop(job);
    // A span for the failing collector too (one OpenTelemetry layer per subscriber, so through the API).
    {
        use opentelemetry::trace::{Span as _, Tracer as _};
        failing_guard.tracer().unwrap().start("doomed").end();
    }

    // Debug output of everything that holds the secrets.
    let resolved = config.resolve_with(env_with_headers).unwrap();
    let debug = format!("{config:?}\n{resolved:?}\n{guard:?}\n{failing_guard:?}");
    assert!(
        debug.contains("authorization") && debug.contains("x-api-key"),
        "{debug}"
    );
    assert_clean("Debug output", debug.as_bytes());

    // Error messages from malformed secrets, in the config and in the environment.
    let mut errors = Vec::new();
    errors.push(
        TelemetryConfig::otlp("http://127.0.0.1:1")
            .with_header("authorization", format!("Bearer {CONFIG_SECRET}\n"))
            .resolve_with(|_| None)
            .unwrap_err(),
    );
    errors.push(
        TelemetryConfig::otlp("http://127.0.0.1:1")
            .resolve_with(|name| {
                (name == "OTEL_EXPORTER_OTLP_HEADERS").then(|| format!("x-api-key={ENV_SECRET}%ZZ"))
            })
            .unwrap_err(),
    );
    errors.push(
        TelemetryConfig::otlp("http://127.0.0.1:1")
            .resolve_with(|name| (name == "OTEL_EXPORTER_OTLP_HEADERS").then(|| ENV_SECRET.to_owned()))
            .unwrap_err(),
    );
    errors.push(
        TelemetryConfig::otlp(format!("https://user:{URL_SECRET}@collector.example"))
            .resolve_with(|_| None)
            .unwrap_err(),
    );
    errors.push(
        TelemetryConfig {
            traces_endpoint: Some(format!("https://collector.example/v1/traces?key={URL_SECRET}")),
            ..TelemetryConfig::otlp("http://127.0.0.1:1")
        }
        .resolve_with(|_| None)
        .unwrap_err(),
    );
    for error in &errors {
        assert_clean("error message", format!("{error}\n{error:?}").as_bytes());
    }

    guard.shutdown().unwrap();
    // The failing collector answers 500: the flush reports an error, which must not quote the headers.
    if let Err(error) = failing_guard.shutdown() {
        assert_clean("shutdown error", format!("{error}\n{error:?}").as_bytes());
    }
    cost_log.close().unwrap();

    // The collector got both secrets as headers: they were used, not lost.
    let requests = receiver.requests.lock().unwrap().clone();
    assert!(requests.iter().any(|r| r.path == "/v1/traces"));
    assert!(requests.iter().any(|r| r.path == "/v1/metrics"));
    for request in &requests {
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header("authorization"),
            Some(format!("Bearer {CONFIG_SECRET}").as_str())
        );
        assert_eq!(header("x-api-key"), Some(ENV_SECRET));
        assert_eq!(header("x-tenant"), Some("acme"));
        // ...and nowhere in the span or metric payloads.
        assert_clean(&format!("{} payload", request.path), &request.body);
    }
    for request in failing.requests.lock().unwrap().iter() {
        assert_clean(&format!("{} payload", request.path), &request.body);
    }

    // No log line, ours or the SDK's (including its reports of the failed exports), holds a secret.
    let log_text = logs.0.lock().unwrap().clone();
    assert!(
        String::from_utf8_lossy(&log_text).contains("calling the provider"),
        "the capture works"
    );
    // The SDK's own report of the failed export (pinned versions spell it this way) was captured and checked.
    assert!(
        String::from_utf8_lossy(&log_text).contains("ExportError"),
        "the failing collector's export errors were logged"
    );
    assert_clean("log output", &log_text);

    let cost_log_text = std::fs::read(&cost_log_path).unwrap();
    assert_eq!(cost_log_text.iter().filter(|b| **b == b'\n').count(), 2);
    assert_clean("cost log", &cost_log_text);
}
