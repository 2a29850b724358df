//! OTLP export of traces and metrics: configuration (struct and `OTEL_*` variables) and setup.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider as _};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::error::TelemetryError;
use crate::metrics::{CostMetrics, SCOPE};

/// `OTEL_SDK_DISABLED`: `true` turns export off whatever the config says (a kill switch).
pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_EXPORTER_OTLP_ENDPOINT`: base URL; `/v1/traces` and `/v1/metrics` are appended.
pub const ENV_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`: full traces URL, used as is.
pub const ENV_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`: full metrics URL, used as is.
pub const ENV_METRICS_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT";
/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value,key2=value2`, values percent-encoded.
pub const ENV_HEADERS: &str = "OTEL_EXPORTER_OTLP_HEADERS";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: only `http/protobuf` is supported.
pub const ENV_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TIMEOUT`: export timeout in milliseconds.
pub const ENV_TIMEOUT: &str = "OTEL_EXPORTER_OTLP_TIMEOUT";
/// `OTEL_SERVICE_NAME`.
pub const ENV_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// `OTEL_TRACES_EXPORTER`: `none` turns trace export off.
pub const ENV_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_METRICS_EXPORTER`: `none` turns metric export off.
pub const ENV_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `OTEL_METRIC_EXPORT_INTERVAL`: milliseconds between metric exports.
pub const ENV_METRIC_EXPORT_INTERVAL: &str = "OTEL_METRIC_EXPORT_INTERVAL";

const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
const DEFAULT_SERVICE_NAME: &str = "genroute";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_METRIC_INTERVAL: Duration = Duration::from_secs(60);

/// The OTLP transport.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over HTTP with protobuf bodies.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

/// Telemetry settings as written in the config file's `[telemetry]` table. Every field is optional; unset
/// fields fall back to the standard `OTEL_*` variables, then to defaults. Programmatic values win over the
/// environment, except `OTEL_SDK_DISABLED=true`, which always turns export off.
///
/// `Debug` shows header names but never their values, and endpoints without credentials or query strings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Export or not. Unset: export when an endpoint is configured here or in the environment.
    pub enabled: Option<bool>,
    /// Base URL of the collector (`http://collector:4318`); signal paths are appended.
    pub endpoint: Option<String>,
    /// Full traces URL, overriding `endpoint` for traces.
    pub traces_endpoint: Option<String>,
    /// Full metrics URL, overriding `endpoint` for metrics.
    pub metrics_endpoint: Option<String>,
    /// Transport; only `http/protobuf`.
    pub protocol: Option<Protocol>,
    /// Headers sent with every export (API keys go here). A same-named header in
    /// `OTEL_EXPORTER_OTLP_HEADERS` takes precedence (opentelemetry-otlp applies the environment last).
    pub headers: BTreeMap<String, SecretString>,
    /// `service.name` of the exported resource.
    pub service_name: Option<String>,
    /// Export traces (default true; `OTEL_TRACES_EXPORTER=none` also turns them off).
    pub traces: bool,
    /// Export metrics (default true; `OTEL_METRICS_EXPORTER=none` also turns them off).
    pub metrics: bool,
    /// Export timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Interval between metric exports.
    #[serde(with = "humantime_serde")]
    pub metric_interval: Option<Duration>,
    /// Metric temporality. Unset: `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, else cumulative.
    pub metrics_temporality: Option<MetricsTemporality>,
}

/// How metric points accumulate between exports.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MetricsTemporality {
    /// Totals since start (Prometheus-style backends).
    Cumulative,
    /// Changes since the last export (Datadog, some SaaS backends).
    Delta,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            endpoint: None,
            traces_endpoint: None,
            metrics_endpoint: None,
            protocol: None,
            headers: BTreeMap::new(),
            service_name: None,
            traces: true,
            metrics: true,
            timeout: None,
            metric_interval: None,
            metrics_temporality: None,
        }
    }
}

impl fmt::Debug for TelemetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryConfig")
            .field("enabled", &self.enabled)
            .field("endpoint", &self.endpoint.as_deref().map(redact_endpoint))
            .field(
                "traces_endpoint",
                &self.traces_endpoint.as_deref().map(redact_endpoint),
            )
            .field(
                "metrics_endpoint",
                &self.metrics_endpoint.as_deref().map(redact_endpoint),
            )
            .field("protocol", &self.protocol)
            .field("headers", &RedactedHeaders(self.headers.keys()))
            .field("service_name", &self.service_name)
            .field("traces", &self.traces)
            .field("metrics", &self.metrics)
            .field("timeout", &self.timeout)
            .field("metric_interval", &self.metric_interval)
            .field("metrics_temporality", &self.metrics_temporality)
            .finish()
    }
}

struct RedactedHeaders<'a, I: Iterator<Item = &'a String> + Clone>(I);

impl<'a, I: Iterator<Item = &'a String> + Clone> fmt::Debug for RedactedHeaders<'a, I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.clone().map(|name| (name, "[REDACTED]")))
            .finish()
    }
}

impl TelemetryConfig {
    /// A config that exports to `endpoint` (a base URL such as `http://localhost:4318`).
    pub fn otlp(endpoint: impl Into<String>) -> Self {
        Self {
            enabled: Some(true),
            endpoint: Some(endpoint.into()),
            ..Self::default()
        }
    }

    /// A config that exports nothing.
    pub fn disabled() -> Self {
        Self {
            enabled: Some(false),
            ..Self::default()
        }
    }

    /// Adds a header (e.g. an API key for a hosted collector).
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), SecretString::from(value.into()));
        self
    }

    /// Resolves against the process environment.
    pub fn resolve(&self) -> Result<ResolvedTelemetry, TelemetryError> {
        self.resolve_with(|name| std::env::var(name).ok())
    }

    /// Resolves against an environment given as a lookup function (for tests and embedding).
    pub fn resolve_with(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<ResolvedTelemetry, TelemetryError> {
        let env = |name: &str| env(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());

        let killed = env(ENV_SDK_DISABLED).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let env_endpoint = env(ENV_ENDPOINT);
        let env_traces_endpoint = env(ENV_TRACES_ENDPOINT);
        let env_metrics_endpoint = env(ENV_METRICS_ENDPOINT);
        let any_endpoint = self.endpoint.is_some()
            || self.traces_endpoint.is_some()
            || self.metrics_endpoint.is_some()
            || env_endpoint.is_some()
            || env_traces_endpoint.is_some()
            || env_metrics_endpoint.is_some();
        let enabled = !killed && self.enabled.unwrap_or(any_endpoint);

        let signal_endpoint = |explicit: &Option<String>,
                               explicit_setting: &str,
                               env_full: &Option<String>,
                               env_full_name: &str,
                               path: &str|
         -> (String, String) {
            // Programmatic values first (signal-specific, then base), then the environment (the same).
            if let Some(url) = explicit {
                (url.clone(), explicit_setting.to_owned())
            } else if let Some(base) = &self.endpoint {
                (join_path(base, path), "endpoint".to_owned())
            } else if let Some(url) = env_full {
                (url.clone(), env_full_name.to_owned())
            } else if let Some(base) = &env_endpoint {
                (join_path(base, path), ENV_ENDPOINT.to_owned())
            } else {
                (join_path(DEFAULT_ENDPOINT, path), "default endpoint".to_owned())
            }
        };
        let (traces_endpoint, traces_setting) = signal_endpoint(
            &self.traces_endpoint,
            "traces_endpoint",
            &env_traces_endpoint,
            ENV_TRACES_ENDPOINT,
            "v1/traces",
        );
        let (metrics_endpoint, metrics_setting) = signal_endpoint(
            &self.metrics_endpoint,
            "metrics_endpoint",
            &env_metrics_endpoint,
            ENV_METRICS_ENDPOINT,
            "v1/metrics",
        );
        let traces = self.traces && env(ENV_TRACES_EXPORTER).is_none_or(|v| !v.eq_ignore_ascii_case("none"));
        let metrics =
            self.metrics && env(ENV_METRICS_EXPORTER).is_none_or(|v| !v.eq_ignore_ascii_case("none"));
        let service_name = self
            .service_name
            .clone()
            .or_else(|| env(ENV_SERVICE_NAME))
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());

        if !enabled {
            // Nothing will be exported: do not fail on settings meant for something else.
            return Ok(ResolvedTelemetry {
                enabled,
                traces,
                metrics,
                traces_endpoint,
                metrics_endpoint,
                headers: BTreeMap::new(),
                service_name,
                timeout: self.timeout.unwrap_or(DEFAULT_TIMEOUT),
                metric_interval: self.metric_interval.unwrap_or(DEFAULT_METRIC_INTERVAL),
                metrics_temporality: self.metrics_temporality,
            });
        }

        if self.protocol.is_none()
            && let Some(protocol) = env(ENV_PROTOCOL)
            && protocol != "http/protobuf"
        {
            return Err(TelemetryError::Config {
                setting: ENV_PROTOCOL.into(),
                reason: format!(
                    "protocol {protocol:?} is not supported; genroute exports OTLP over http/protobuf"
                ),
            });
        }
        validate_endpoint(&traces_endpoint, &traces_setting)?;
        validate_endpoint(&metrics_endpoint, &metrics_setting)?;

        // Environment headers override same-named config headers: opentelemetry-otlp itself re-reads
        // OTEL_EXPORTER_OTLP_HEADERS and lets it win, so the resolved view says what is actually sent.
        let mut headers = BTreeMap::new();
        for (name, value) in &self.headers {
            validate_header(name, value.expose_secret(), "headers")?;
            headers.insert(name.to_ascii_lowercase(), value.clone());
        }
        if let Some(raw) = env(ENV_HEADERS) {
            headers.extend(parse_env_headers(&raw, ENV_HEADERS)?);
        }

        let millis = |name: &str| -> Result<Option<Duration>, TelemetryError> {
            env(name)
                .map(|v| {
                    v.parse::<u64>()
                        .map(Duration::from_millis)
                        .map_err(|_| TelemetryError::Config {
                            setting: name.into(),
                            reason: format!("expected milliseconds, got {v:?}"),
                        })
                })
                .transpose()
        };

        Ok(ResolvedTelemetry {
            enabled,
            traces,
            metrics,
            traces_endpoint,
            metrics_endpoint,
            headers,
            service_name,
            timeout: match self.timeout {
                Some(t) => t,
                None => millis(ENV_TIMEOUT)?.unwrap_or(DEFAULT_TIMEOUT),
            },
            metric_interval: match self.metric_interval {
                Some(t) => t,
                None => millis(ENV_METRIC_EXPORT_INTERVAL)?.unwrap_or(DEFAULT_METRIC_INTERVAL),
            },
            metrics_temporality: self.metrics_temporality,
        })
    }
}

/// Telemetry settings after merging the config, the environment and defaults.
#[derive(Clone)]
pub struct ResolvedTelemetry {
    /// Whether anything is exported.
    pub enabled: bool,
    /// Whether traces are exported (when enabled).
    pub traces: bool,
    /// Whether metrics are exported (when enabled).
    pub metrics: bool,
    /// Full URL for traces.
    pub traces_endpoint: String,
    /// Full URL for metrics.
    pub metrics_endpoint: String,
    /// Headers sent with every export, names lower-cased.
    pub headers: BTreeMap<String, SecretString>,
    /// `service.name`.
    pub service_name: String,
    /// Export timeout.
    pub timeout: Duration,
    /// Interval between metric exports.
    pub metric_interval: Duration,
    /// Metric temporality, when configured (otherwise the exporter's environment default).
    pub metrics_temporality: Option<MetricsTemporality>,
}

impl fmt::Debug for ResolvedTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedTelemetry")
            .field("enabled", &self.enabled)
            .field("traces", &self.traces)
            .field("metrics", &self.metrics)
            .field("traces_endpoint", &redact_endpoint(&self.traces_endpoint))
            .field("metrics_endpoint", &redact_endpoint(&self.metrics_endpoint))
            .field("headers", &RedactedHeaders(self.headers.keys()))
            .field("service_name", &self.service_name)
            .field("timeout", &self.timeout)
            .field("metric_interval", &self.metric_interval)
            .field("metrics_temporality", &self.metrics_temporality)
            .finish()
    }
}

fn join_path(base: &str, path: &str) -> String {
    format!("{}/{path}", base.trim_end_matches('/'))
}

/// An endpoint without user info or query string, for messages and `Debug`.
pub fn redact_endpoint(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let authority = match authority.rsplit_once('@') {
        Some((_, host)) => format!("[REDACTED]@{host}"),
        None => authority.to_owned(),
    };
    let path = match path.split_once(['?', '#']) {
        Some((path, _)) => format!("{path}?[REDACTED]"),
        None => path.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{authority}{path}"),
        None => format!("{authority}{path}"),
    }
}

fn validate_endpoint(url: &str, setting: &str) -> Result<(), TelemetryError> {
    let bad = |reason: &str| TelemetryError::Config {
        setting: setting.to_owned(),
        reason: format!("{reason} (endpoint {})", redact_endpoint(url)),
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("expected an http:// or https:// URL"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(bad("expected an http:// or https:// URL"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad(
            "credentials in the URL are not supported; send them as a header",
        ));
    }
    if url.contains(['?', '#']) {
        return Err(bad(
            "query strings are not supported in endpoints (they end up in logs); send credentials as a header",
        ));
    }
    if authority.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("malformed URL"));
    }
    Ok(())
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn validate_header(name: &str, value: &str, setting: &str) -> Result<(), TelemetryError> {
    if name.is_empty() || !name.chars().all(is_token_char) {
        return Err(TelemetryError::Config {
            setting: setting.to_owned(),
            reason: "a header name is not a valid HTTP token".into(),
        });
    }
    if !value.chars().all(|c| c == '\t' || (' '..='~').contains(&c)) {
        return Err(TelemetryError::Config {
            setting: setting.to_owned(),
            reason: format!(
                "the value of header `{name}` contains characters not allowed in HTTP headers (value not shown)"
            ),
        });
    }
    Ok(())
}

/// Parses `key=value,key2=value2` (values percent-encoded), as in `OTEL_EXPORTER_OTLP_HEADERS`.
/// Errors name the header, never its value.
pub fn parse_env_headers(raw: &str, setting: &str) -> Result<BTreeMap<String, SecretString>, TelemetryError> {
    let mut headers = BTreeMap::new();
    for (index, pair) in raw.split(',').enumerate() {
        if pair.trim().is_empty() {
            continue;
        }
        let Some((name, value)) = pair.split_once('=') else {
            return Err(TelemetryError::Config {
                setting: setting.to_owned(),
                reason: format!("entry {} is not `name=value` (value not shown)", index + 1),
            });
        };
        let name = name.trim().to_ascii_lowercase();
        let value = percent_decode(value.trim()).ok_or_else(|| TelemetryError::Config {
            setting: setting.to_owned(),
            reason: format!(
                "the value of header `{name}` is not valid percent-encoded UTF-8 (value not shown)"
            ),
        })?;
        validate_header(&name, &value, setting)?;
        headers.insert(name, SecretString::from(value));
    }
    Ok(headers)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Owns the OpenTelemetry providers; flushes and shuts them down on [`shutdown`](Self::shutdown) or drop.
///
/// Export runs on the SDK's own threads with a blocking HTTP client, so it needs no async runtime and the
/// spans are not silently dropped (see DEPENDENCIES.md, trap 1). `force_flush`, `shutdown` and drop block
/// the calling thread until the export finishes or times out: in async code call them from
/// `spawn_blocking`, or at the end of `main`.
pub struct TelemetryGuard {
    settings: ResolvedTelemetry,
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    meter: Meter,
    shut_down: bool,
}

impl fmt::Debug for TelemetryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TelemetryGuard")
            .field("settings", &self.settings)
            .field("traces", &self.tracer_provider.is_some())
            .field("metrics", &self.meter_provider.is_some())
            .finish()
    }
}

impl TelemetryGuard {
    /// Sets up export from a config and the process environment.
    pub fn init(config: &TelemetryConfig) -> Result<Self, TelemetryError> {
        Self::from_resolved(config.resolve()?)
    }

    /// Sets up export from a config and an environment lookup.
    pub fn init_with_env(
        config: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, TelemetryError> {
        Self::from_resolved(config.resolve_with(env)?)
    }

    /// Sets up export from resolved settings.
    pub fn from_resolved(settings: ResolvedTelemetry) -> Result<Self, TelemetryError> {
        if !settings.enabled {
            return Ok(Self {
                settings,
                tracer_provider: None,
                meter_provider: None,
                meter: opentelemetry::metrics::noop::NoopMeterProvider::new().meter(SCOPE),
                shut_down: false,
            });
        }
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let headers: HashMap<String, String> = settings
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose_secret().to_owned()))
            .collect();
        let client = blocking_client(settings.timeout)?;
        let scrub = |signal: &'static str, endpoint: &str, error: String| {
            let mut reason = error.replace(endpoint, &redact_endpoint(endpoint));
            for value in headers.values().filter(|v| !v.is_empty()) {
                reason = reason.replace(value.as_str(), "[REDACTED]");
            }
            TelemetryError::Exporter {
                signal,
                endpoint: redact_endpoint(endpoint),
                reason,
            }
        };

        let tracer_provider = if settings.traces {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client.clone())
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.traces_endpoint.clone())
                .with_timeout(settings.timeout)
                .with_headers(headers.clone())
                .build()
                .map_err(|e| scrub("traces", &settings.traces_endpoint, e.to_string()))?;
            Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource.clone())
                    .build(),
            )
        } else {
            None
        };

        let meter_provider = if settings.metrics {
            let mut builder = opentelemetry_otlp::MetricExporter::builder();
            if let Some(temporality) = settings.metrics_temporality {
                builder = builder.with_temporality(match temporality {
                    MetricsTemporality::Cumulative => Temporality::Cumulative,
                    MetricsTemporality::Delta => Temporality::Delta,
                });
            }
            let exporter = builder
                .with_http()
                .with_http_client(client)
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(settings.metrics_endpoint.clone())
                .with_timeout(settings.timeout)
                .with_headers(headers.clone())
                .build()
                .map_err(|e| scrub("metrics", &settings.metrics_endpoint, e.to_string()))?;
            let reader = PeriodicReader::builder(exporter)
                .with_interval(settings.metric_interval)
                .build();
            Some(
                SdkMeterProvider::builder()
                    .with_reader(reader)
                    .with_resource(resource)
                    .build(),
            )
        } else {
            None
        };
        let meter = match &meter_provider {
            Some(provider) => provider.meter(SCOPE),
            None => opentelemetry::metrics::noop::NoopMeterProvider::new().meter(SCOPE),
        };
        Ok(Self {
            settings,
            tracer_provider,
            meter_provider,
            meter,
            shut_down: false,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &ResolvedTelemetry {
        &self.settings
    }

    /// Whether traces are exported.
    pub fn traces_enabled(&self) -> bool {
        self.tracer_provider.is_some()
    }

    /// Whether metrics are exported.
    pub fn metrics_enabled(&self) -> bool {
        self.meter_provider.is_some()
    }

    /// genroute's tracer, when traces are exported.
    pub fn tracer(&self) -> Option<SdkTracer> {
        self.tracer_provider.as_ref().map(|p| p.tracer(SCOPE))
    }

    /// A `tracing` layer exporting spans (`None` when traces are off; `Option<Layer>` is itself a layer, so
    /// `registry().with(guard.tracing_layer())` works either way).
    pub fn tracing_layer<S>(&self) -> Option<tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        self.tracer()
            .map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer))
    }

    /// genroute's meter (a no-op meter when metrics are off).
    pub fn meter(&self) -> Meter {
        self.meter.clone()
    }

    /// Cost metrics on this guard's meter.
    pub fn cost_metrics(&self) -> CostMetrics {
        CostMetrics::new(&self.meter)
    }

    /// Installs the providers as OpenTelemetry's globals (for code using `opentelemetry::global`).
    pub fn install_global(&self) {
        if let Some(provider) = &self.tracer_provider {
            opentelemetry::global::set_tracer_provider(provider.clone());
        }
        if let Some(provider) = &self.meter_provider {
            opentelemetry::global::set_meter_provider(provider.clone());
        }
    }

    /// Exports everything recorded so far and waits for it.
    pub fn force_flush(&self) -> Result<(), TelemetryError> {
        let mut first_error = None;
        if let Some(provider) = &self.tracer_provider
            && let Err(e) = provider.force_flush()
        {
            first_error.get_or_insert(e.to_string());
        }
        if let Some(provider) = &self.meter_provider
            && let Err(e) = provider.force_flush()
        {
            first_error.get_or_insert(e.to_string());
        }
        match first_error {
            None => Ok(()),
            Some(reason) => Err(TelemetryError::Sdk {
                operation: "flush",
                reason,
            }),
        }
    }

    /// Flushes and shuts the providers down.
    pub fn shutdown(mut self) -> Result<(), TelemetryError> {
        self.shutdown_inner()
    }

    fn shutdown_inner(&mut self) -> Result<(), TelemetryError> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        let mut first_error = None;
        if let Some(provider) = &self.tracer_provider
            && let Err(e) = provider.shutdown()
        {
            first_error.get_or_insert(e.to_string());
        }
        if let Some(provider) = &self.meter_provider
            && let Err(e) = provider.shutdown()
        {
            first_error.get_or_insert(e.to_string());
        }
        match first_error {
            None => Ok(()),
            Some(reason) => Err(TelemetryError::Sdk {
                operation: "shutdown",
                reason,
            }),
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.shutdown_inner() {
            tracing::warn!(target: crate::spans::TARGET, %error, "telemetry shutdown failed");
        }
    }
}

/// The blocking reqwest client, passed to the exporters explicitly so that no feature elsewhere in the
/// build (`reqwest-client`, `hyper-client`) can swap in an async client that needs a runtime the SDK's
/// export threads do not have. Built on a fresh thread: reqwest's blocking client must not be created
/// inside an async runtime.
fn blocking_client(timeout: Duration) -> Result<reqwest::blocking::Client, TelemetryError> {
    let build = move || reqwest::blocking::Client::builder().timeout(timeout).build();
    let failed = |reason: String| TelemetryError::Exporter {
        signal: "http client",
        endpoint: String::new(),
        reason,
    };
    std::thread::Builder::new()
        .name("genroute-otlp-client".into())
        .spawn(build)
        .map_err(|e| failed(e.to_string()))?
        .join()
        .map_err(|_| failed("the thread building the HTTP client panicked".into()))?
        .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_without_endpoint_export_nothing() {
        let r = TelemetryConfig::default().resolve_with(env(&[])).unwrap();
        assert!(!r.enabled);
        assert_eq!(r.traces_endpoint, "http://localhost:4318/v1/traces");
        assert_eq!(r.service_name, "genroute");
    }

    #[test]
    fn env_endpoint_enables_and_config_wins() {
        let e = env(&[
            (ENV_ENDPOINT, "http://collector:4318/"),
            (ENV_METRICS_ENDPOINT, "http://m:9/custom"),
            (ENV_SERVICE_NAME, "from-env"),
            (ENV_TIMEOUT, "2500"),
            (ENV_METRIC_EXPORT_INTERVAL, "100"),
        ]);
        let r = TelemetryConfig::default().resolve_with(&e).unwrap();
        assert!(r.enabled);
        assert_eq!(r.traces_endpoint, "http://collector:4318/v1/traces");
        assert_eq!(r.metrics_endpoint, "http://m:9/custom");
        assert_eq!(r.service_name, "from-env");
        assert_eq!(r.timeout, Duration::from_millis(2500));
        assert_eq!(r.metric_interval, Duration::from_millis(100));

        let config = TelemetryConfig {
            service_name: Some("cfg".into()),
            ..TelemetryConfig::otlp("http://cfg:1")
        };
        let r = config.resolve_with(&e).unwrap();
        assert_eq!(r.traces_endpoint, "http://cfg:1/v1/traces");
        assert_eq!(r.metrics_endpoint, "http://cfg:1/v1/metrics", "programmatic wins");
        assert_eq!(r.service_name, "cfg");
    }

    #[test]
    fn kill_switch_and_exporter_none() {
        let r = TelemetryConfig::otlp("http://x:1")
            .resolve_with(env(&[(ENV_SDK_DISABLED, "TRUE")]))
            .unwrap();
        assert!(!r.enabled);
        let r = TelemetryConfig::otlp("http://x:1")
            .resolve_with(env(&[(ENV_TRACES_EXPORTER, "none")]))
            .unwrap();
        assert!(r.enabled && !r.traces && r.metrics);
    }

    #[test]
    fn unsupported_protocol_and_bad_values_are_errors() {
        let err = TelemetryConfig::otlp("http://c:4318")
            .resolve_with(env(&[(ENV_PROTOCOL, "grpc")]))
            .unwrap_err();
        assert!(err.to_string().contains("http/protobuf"), "{err}");
        // With export off, settings meant for another exporter are not our business.
        let off = TelemetryConfig::default()
            .resolve_with(env(&[(ENV_PROTOCOL, "grpc"), (ENV_HEADERS, "broken")]))
            .unwrap();
        assert!(!off.enabled);
        assert!(TelemetryConfig::otlp("ftp://x").resolve_with(env(&[])).is_err());
        assert!(
            TelemetryConfig::otlp("http://c:4318")
                .resolve_with(env(&[(ENV_TIMEOUT, "soon")]))
                .is_err()
        );
    }

    #[test]
    fn env_headers_parse_percent_decode_and_config_overrides() {
        let r = TelemetryConfig::otlp("http://c:4318")
            .with_header("X-Team", "cfg")
            .resolve_with(env(&[(ENV_HEADERS, "api-key=a%20b%3Dc, x-team=env")]))
            .unwrap();
        assert_eq!(r.headers["api-key"].expose_secret(), "a b=c");
        assert_eq!(r.headers["x-team"].expose_secret(), "env");
        assert!(parse_env_headers("novalue", ENV_HEADERS).is_err());
        assert!(parse_env_headers("bad name=v", ENV_HEADERS).is_err());
    }

    #[test]
    fn endpoints_are_redacted() {
        assert_eq!(
            redact_endpoint("https://user:pw@host:4318/v1/traces?key=s3cret"),
            "https://[REDACTED]@host:4318/v1/traces?[REDACTED]"
        );
        assert_eq!(redact_endpoint("http://host:4318"), "http://host:4318");
        let err = TelemetryConfig::otlp("https://user:pw@host")
            .resolve_with(env(&[]))
            .unwrap_err();
        assert!(!err.to_string().contains("pw"), "{err}");
        let err = TelemetryConfig::otlp("https://host/v1?api_key=s3cret")
            .resolve_with(env(&[]))
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[test]
    fn config_deserialises_strictly() {
        let config: TelemetryConfig = serde_json::from_value(serde_json::json!({
            "endpoint": "http://c:4318",
            "protocol": "http/protobuf",
            "headers": {"authorization": "Bearer x"},
            "timeout": "3s",
            "metrics": false
        }))
        .unwrap();
        assert_eq!(config.timeout, Some(Duration::from_secs(3)));
        assert!(!config.metrics && config.traces);
        assert!(!format!("{config:?}").contains("Bearer"));
        assert!(serde_json::from_value::<TelemetryConfig>(serde_json::json!({"endpont": "x"})).is_err());
    }
}
