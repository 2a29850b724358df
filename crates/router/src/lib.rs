#![doc = include_str!("../README.md")]

pub mod breaker;
pub mod error;
pub mod gate;
pub mod plan;
pub mod request;
pub mod retry;
pub mod route;
mod router;
pub mod service;
pub mod testing;

pub use error::RouterError;
pub use gate::{GateVerdict, QualityGate};
pub use request::{AttemptRecord, GenerateRequest, Limits, Outcome};
pub use router::{Router, RouterBuilder, RouterSettings};
