#![doc = include_str!("../README.md")]
// Handlers return provider error responses through `Result<_, Response>`: the cold path, not worth boxing.
#![allow(clippy::result_large_err)]

mod elevenlabs;
mod fal;
mod fault;
mod jobs;
mod log;
mod openai;
mod replicate;
mod runway;
mod scenario;
mod server;
mod validate;
mod webhook;

use std::sync::Arc;

use axum::Router;

pub use fault::{Fault, FaultKind, FaultScript};
pub use jobs::{JobRecord, JobState, Progression};
pub use log::{Endpoint, RequestRecord};
pub use server::{Emulator, EmulatorBuilder, EmulatorError, EmulatorHandle, Kind, Settings};
pub use webhook::WebhookDelivery;

use server::Shared;

/// The main router of an emulator, and for fal the `fal.run` router.
fn routers(shared: &Arc<Shared>) -> (Router<Arc<Shared>>, Option<Router<Arc<Shared>>>) {
    match shared.kind {
        Kind::Fal => {
            let (q, s) = fal::routers();
            (q, Some(s))
        }
        Kind::Replicate => (replicate::router(), None),
        Kind::OpenAi => (openai::router(), None),
        Kind::Scenario => (scenario::router(), None),
        Kind::ElevenLabs => (elevenlabs::router(), None),
        Kind::Runway => (runway::router(), None),
    }
}
