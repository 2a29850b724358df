//! Test helpers: an in-process OTLP/HTTP receiver and a failover pair of attempt events.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeZone;
use genroute_core::{
    Caller, CostSource, Decimal, ErrorKind, JobId, MemberId, Modality, ModelId, Money, Operation, ProjectId,
    ProviderId, TeamId,
};
use genroute_telemetry::{AttemptEvent, AttemptOutcome, BudgetDecision};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};

/// One HTTP request the receiver got.
#[derive(Clone, Debug)]
pub struct Captured {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// A minimal OTLP/HTTP receiver: HTTP/1.1 with keep-alive and Content-Length bodies (what the blocking
/// reqwest client sends), answering every POST with `status` and an empty protobuf body.
pub struct Receiver {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Captured>>>,
}

impl Receiver {
    pub fn start(status: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&requests);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let sink = Arc::clone(&sink);
                std::thread::spawn(move || serve(stream, status, &sink));
            }
        });
        Self { addr, requests }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn bodies(&self, path: &str) -> Vec<Vec<u8>> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.body.clone())
            .collect()
    }
}

fn serve(stream: TcpStream, status: u16, sink: &Mutex<Vec<Captured>>) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut headers = Vec::new();
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
                if name == "content-length" {
                    length = value.parse().unwrap();
                }
                assert_ne!(
                    name, "transfer-encoding",
                    "the receiver only speaks Content-Length"
                );
                headers.push((name, value));
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        sink.lock().unwrap().push(Captured { path, headers, body });
        let response = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n"
        );
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

pub fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

pub fn caller() -> Caller {
    Caller::team(TeamId::new("acme").unwrap())
        .member(MemberId::new("alice").unwrap())
        .project(ProjectId::new("posters").unwrap())
}

/// A job that failed over: attempt 1 on fal (unavailable, not billed), attempt 2 on replicate (success).
pub fn failover_pair() -> (AttemptEvent, AttemptEvent) {
    let job_id = JobId::new("job-7").unwrap();
    let first = AttemptEvent {
        time: chrono::Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap(),
        job_id: job_id.clone(),
        attempt: 1,
        provider: ProviderId::new("fal").unwrap(),
        model: ModelId::new("fal-ai/flux/schnell").unwrap(),
        response_model: None,
        operation: Operation::ImageGeneration,
        modality: Modality::Image,
        route: Some("posters".into()),
        outcome: AttemptOutcome::Failed {
            error_type: ErrorKind::Unavailable,
        },
        quoted: Some(Money::usd(d("0.003"))),
        charged: Money::usd(d("0")),
        cost_source: None,
        cu: Money::cu(d("0")),
        job_spend_cu: Money::cu(d("0")),
        retry_spend_cu: Money::cu(d("0")),
        latency: Duration::from_millis(250),
        outputs: 0,
        fallback_reason: Some("unavailable".into()),
        budget_decision: BudgetDecision::Reserved,
        caller: caller(),
    };
    let second = AttemptEvent {
        time: chrono::Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 3).unwrap(),
        attempt: 2,
        provider: ProviderId::new("replicate").unwrap(),
        model: ModelId::new("black-forest-labs/flux-dev").unwrap(),
        response_model: Some("black-forest-labs/flux-dev:6e4a".into()),
        outcome: AttemptOutcome::Success,
        quoted: Some(Money::usd(d("0.025"))),
        charged: Money::usd(d("0.025")),
        cost_source: Some(CostSource::PriceTable),
        cu: Money::cu(d("3.125")),
        job_spend_cu: Money::cu(d("3.125")),
        retry_spend_cu: Money::cu(d("0")),
        latency: Duration::from_millis(2750),
        outputs: 1,
        fallback_reason: None,
        ..first.clone()
    };
    (first, second)
}

pub fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

pub fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

pub fn attr_i64(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        other => panic!("{key} is not an int: {other:?}"),
    }
}

pub fn attr_f64(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attributes, key)? {
        any_value::Value::DoubleValue(f) => Some(*f),
        other => panic!("{key} is not a double: {other:?}"),
    }
}
