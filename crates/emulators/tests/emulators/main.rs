//! Every emulator driven over real HTTP with a plain client: lifecycles, auth, faults, URLs, costs.
//! One test binary (one link) for all of them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod all;
mod common;
mod elevenlabs;
mod fal;
mod openai;
mod replicate;
mod runway;
mod scenario;
