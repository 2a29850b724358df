//! OpenTelemetry export of job and attempt spans and cost metrics over OTLP/HTTP, to a receiver running
//! in this process (so nothing leaves the machine). Prints what the collector received. Offline: `cargo
//! run -p genroute-examples --example otel_export`.
#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::routing::post;
use genroute::{Caller, Client, Config, EnvMode, GenerateRequest, ImageJobSpec};
use genroute_emulators::{Emulator, Fault, Kind};
use genroute_examples::BoxError;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use tracing_subscriber::layer::SubscriberExt;

type Bodies = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // A minimal OTLP/HTTP receiver: keeps every body posted to /v1/traces and /v1/metrics.
    let bodies: Bodies = Arc::default();
    let (t, m) = (Arc::clone(&bodies), Arc::clone(&bodies));
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |b: Bytes| async move { push(&t, "traces", b) }),
        )
        .route(
            "/v1/metrics",
            post(move |b: Bytes| async move { push(&m, "metrics", b) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let collector = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let fal = Emulator::start(Kind::Fal).await?;
    fal.faults()
        .push(Fault::server_error(503).on(genroute_emulators::Endpoint::Create));
    let text = format!(
        r#"
[providers.fal]
api_key = {{ env = "FAL_KEY" }}
base_url = "{}"
poll = {{ initial_interval = "20ms" }}

[routes.posters]
candidates = [{{ provider = "fal", model = "fal-ai/flux/dev" }}]
retry = {{ base_delay = "10ms" }}

[ledger]
backend = "memory"

[cost_log]
enabled = false

[budgets.teams.acme]
allowance = "100 CU"

[telemetry]
endpoint = "{collector}"
service_name = "otel-example"
"#,
        fal.base_url()
    );
    let key = fal.api_key();
    let config = Config::parse(
        &text,
        "example.toml",
        std::path::Path::new("."),
        EnvMode::Require,
        &|n| (n == "FAL_KEY").then(|| key.clone()),
    )?;
    // Our own guard so its tracing layer can be installed; the client then gets telemetry(false) and the
    // guard's cost metrics as a sink.
    let guard = genroute::telemetry::TelemetryGuard::init(&config.telemetry)?;
    let subscriber = tracing_subscriber::registry().with(guard.tracing_layer());
    let _default = tracing::subscriber::set_default(subscriber);
    let client = Client::builder()
        .config(config)
        .telemetry(false)
        .cost_sink(Arc::new(guard.cost_metrics()))
        .build()
        .await?;

    let job = ImageJobSpec::new("a lighthouse").size(1024, 1024).build()?;
    let outcome = client
        .generate(GenerateRequest::new(
            job,
            "posters",
            Caller::team("acme".parse()?),
        ))
        .await?;
    println!(
        "job done in {} attempt(s), cost {}",
        outcome.attempts.len(),
        outcome.total_spend_cu
    );

    // Export happens on the SDK's threads with a blocking client: flush off the async workers.
    tokio::task::spawn_blocking(move || guard.shutdown()).await??;

    for (kind, body) in bodies.lock().map_err(|_| "poisoned")?.iter() {
        if kind == "traces" {
            let req = ExportTraceServiceRequest::decode(body.as_slice())?;
            for span in req
                .resource_spans
                .iter()
                .flat_map(|r| &r.scope_spans)
                .flat_map(|s| &s.spans)
            {
                let attrs: Vec<String> = span
                    .attributes
                    .iter()
                    .filter(|a| {
                        a.key.starts_with("gen_ai.") || a.key == "genroute.outcome" || a.key == "genroute.cu"
                    })
                    .map(|a| {
                        format!(
                            "{}={}",
                            a.key,
                            a.value
                                .as_ref()
                                .and_then(|v| v.value.as_ref())
                                .map(show)
                                .unwrap_or_default()
                        )
                    })
                    .collect();
                println!("span {:<40} {}", span.name, attrs.join(" "));
            }
        } else {
            let req = ExportMetricsServiceRequest::decode(body.as_slice())?;
            for metric in req
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
            {
                println!("metric {}", metric.name);
            }
        }
    }
    Ok(())
}

fn push(bodies: &Bodies, kind: &str, body: Bytes) -> &'static str {
    if let Ok(mut b) = bodies.lock() {
        b.push((kind.to_owned(), body.to_vec()));
    }
    ""
}

fn show(v: &opentelemetry_proto::tonic::common::v1::any_value::Value) -> String {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    match v {
        Value::StringValue(s) => s.clone(),
        Value::DoubleValue(d) => d.to_string(),
        Value::IntValue(i) => i.to_string(),
        Value::BoolValue(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
