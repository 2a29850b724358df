//! ElevenLabs: one synchronous POST per job, answered with audio bytes.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{AudioJobSpec, Decimal, Provider, ProviderRequest};
use genroute_provider_elevenlabs::models::{MULTILINGUAL_V2, MUSIC_V1, SOUND_V2};
use genroute_provider_elevenlabs::{ElevenLabsConfig, ElevenLabsProvider};

use super::{BuildError, audio_spec, image, speech};

pub struct ElevenLabsFixture;

const SYNC: &str =
    "speech, sound effects and music are one synchronous call: no job to poll, cancel or resume";

fn tts() -> ProviderRequest {
    speech(MULTILINGUAL_V2, "Hello from the conformance suite.")
}

impl Fixture for ElevenLabsFixture {
    fn kind(&self) -> Kind {
        Kind::ElevenLabs
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = ElevenLabsConfig::new(emu.api_key()).base_url(emu.base_url());
        c.http = t.http.clone();
        Ok(Arc::new(ElevenLabsProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            tts(),
            audio_spec(
                SOUND_V2,
                AudioJobSpec::sound_effect("a door creaks").duration_seconds(Decimal::new(25, 1)),
            ),
            audio_spec(MUSIC_V1, AudioJobSpec::music("calm piano", Decimal::from(5))),
        ])
    }
    fn async_poll(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn cancel_explicit(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn resume(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn server_error(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        // 401 `quota_exceeded` (ElevenLabs has no 402).
        Scenario::Run(tts())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        Scenario::OptOut(
            "PROVIDERS.md §5 documents no moderation error for ElevenLabs (the emulator's 400 `content_against_policy` is its own guess)",
        )
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            // The billed characters come from the `character-cost` header, not the text length (33).
            request: tts(),
            emulator: |s| s.elevenlabs_character_cost = Some(137),
            expect: vec![Metered::Characters(137)],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: tts(),
            expect: None,
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            speech(MULTILINGUAL_V2, &"a".repeat(10_001)),
            audio_spec(MULTILINGUAL_V2, AudioJobSpec::speech("hi").voice("a/b")),
            audio_spec(
                SOUND_V2,
                AudioJobSpec::sound_effect("door").duration_seconds(Decimal::from(31)),
            ),
            audio_spec(MUSIC_V1, AudioJobSpec::music("piano", Decimal::from(601))),
            image(MULTILINGUAL_V2, 1024, 1024),
            speech("eleven_not_a_model", "hi"),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(tts())
    }
}

genroute_conformance::conformance_tests!(suite, ElevenLabsFixture);
