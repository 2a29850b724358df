//! Observability for tests: which requests arrived, per-endpoint counters.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

/// The kind of endpoint a request addressed, the same vocabulary for every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Endpoint {
    /// A create: fal queue submit or `fal.run`, Replicate create, OpenAI images/speech, Scenario generate,
    /// ElevenLabs TTS/sound/music, Runway task create.
    Create,
    /// A status poll: fal status, Replicate get prediction, Scenario get job, Runway get task.
    Status,
    /// A result fetch: fal `response_url`.
    Result,
    /// A cancel: fal PUT cancel, Replicate cancel, Scenario job action, Runway DELETE task.
    Cancel,
    /// Scenario `GET /assets/{id}`.
    Asset,
    /// A listing: Replicate `GET /v1/predictions`.
    List,
    /// Account endpoints: Runway `GET /v1/organization`.
    Account,
    /// A download of an output file served by the emulator (`/files/...`).
    File,
    /// Anything the emulator does not know (answered 404 or 405).
    Unknown,
}

impl Endpoint {
    /// Every endpoint kind.
    pub const ALL: [Endpoint; 9] = [
        Endpoint::Create,
        Endpoint::Status,
        Endpoint::Result,
        Endpoint::Cancel,
        Endpoint::Asset,
        Endpoint::List,
        Endpoint::Account,
        Endpoint::File,
        Endpoint::Unknown,
    ];

    pub(crate) fn index(self) -> usize {
        match self {
            Endpoint::Create => 0,
            Endpoint::Status => 1,
            Endpoint::Result => 2,
            Endpoint::Cancel => 3,
            Endpoint::Asset => 4,
            Endpoint::List => 5,
            Endpoint::Account => 6,
            Endpoint::File => 7,
            Endpoint::Unknown => 8,
        }
    }
}

/// One request as the emulator received it (recorded when the response is sent).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestRecord {
    /// Arrival order, from 0.
    pub seq: u64,
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// Request headers (lower-case names); credentials are replaced by `<redacted>`.
    pub headers: Vec<(String, String)>,
    /// Raw request body.
    pub body: Bytes,
    /// What the emulator took the request for.
    pub endpoint: Endpoint,
    /// The model the request concerned, when known.
    pub model: Option<String>,
    /// The job it created or addressed, when any.
    pub job_id: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// Whether a scripted fault shaped the answer.
    pub faulted: bool,
}

impl RequestRecord {
    /// The value of a request header (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Lock-free per-endpoint counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    by_endpoint: [AtomicU64; 9],
}

impl Counters {
    pub(crate) fn bump(&self, e: Endpoint) {
        if let Some(c) = self.by_endpoint.get(e.index()) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
    pub(crate) fn get(&self, e: Endpoint) -> u64 {
        self.by_endpoint
            .get(e.index())
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
    pub(crate) fn total(&self) -> u64 {
        self.by_endpoint.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
    pub(crate) fn reset(&self) {
        for c in &self.by_endpoint {
            c.store(0, Ordering::Relaxed);
        }
    }
}
