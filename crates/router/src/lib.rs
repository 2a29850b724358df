#![doc = "genroute router (work in progress)"]

pub mod breaker;
pub mod plan;
pub mod retry;
pub mod route;
pub mod service;
