//! The README's matrix is the one the fixtures declare.

use genroute_conformance::{Fixture, matrix_markdown};

use super::elevenlabs::ElevenLabsFixture;
use super::fal::FalFixture;
use super::openai::OpenAiFixture;
use super::replicate::ReplicateFixture;
use super::runway::RunwayFixture;
use super::scenario::ScenarioFixture;

fn fixtures() -> [&'static dyn Fixture; 6] {
    [
        &FalFixture,
        &ReplicateFixture,
        &OpenAiFixture,
        &ScenarioFixture,
        &ElevenLabsFixture,
        &RunwayFixture,
    ]
}

#[test]
fn readme_matrix_is_current() {
    let table = matrix_markdown(&fixtures());
    let readme = include_str!("../../README.md");
    assert!(
        readme.contains(&table),
        "crates/conformance/README.md is out of date; its matrix must read:\n\n{table}"
    );
}

#[test]
fn every_fixture_has_its_own_emulator() {
    let kinds: Vec<_> = fixtures().iter().map(|f| f.kind()).collect();
    for k in genroute_conformance::emulators::Kind::ALL {
        assert_eq!(kinds.iter().filter(|x| **x == k).count(), 1, "{k:?}");
    }
}
