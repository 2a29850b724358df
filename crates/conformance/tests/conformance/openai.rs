//! OpenAI images and speech: synchronous calls, nothing queued, nothing to cancel or resume.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{Billed, EditOp, ImageJobSpec, Provider, ProviderRequest};
use genroute_provider_openai::models::{DALL_E_3, GPT_IMAGE_1, TTS_1};
use genroute_provider_openai::{OpenAiConfig, OpenAiProvider};

use super::{BuildError, edit, image, image_spec, png_input, speech, video};

pub struct OpenAiFixture;

const SYNC: &str = "images and speech are synchronous: no queue, no job id to poll, cancel or resume";

fn gpt_image() -> ProviderRequest {
    image(GPT_IMAGE_1, 1024, 1024)
}

impl Fixture for OpenAiFixture {
    fn kind(&self) -> Kind {
        Kind::OpenAi
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = OpenAiConfig::new(emu.api_key()).base_url(emu.base_url());
        c.http = t.http.clone();
        Ok(Arc::new(OpenAiProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(
                GPT_IMAGE_1,
                ImageJobSpec::new("two cats").size(1536, 1024).count(2),
            ),
            image(DALL_E_3, 1024, 1792),
            speech(TTS_1, "Hello from the conformance suite."),
            edit(
                GPT_IMAGE_1,
                EditOp::Img2Img {
                    prompt: "make it night".into(),
                    strength: None,
                },
                png_input(),
            ),
            edit(
                GPT_IMAGE_1,
                EditOp::Inpaint {
                    prompt: "a boat".into(),
                    mask: png_input(),
                },
                png_input(),
            ),
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
        Scenario::Run(gpt_image())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gpt_image())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(speech(TTS_1, "slow"))
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(speech(TTS_1, "hello"))
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gpt_image())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gpt_image())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::OptOut(SYNC)
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        // 429 `insufficient_quota`: the same status as a rate limit, told apart by its code.
        Scenario::Run(gpt_image())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        // 400 `moderation_blocked`: refused before generating, not billed.
        Scenario::Run(Rejection {
            request: gpt_image(),
            billed: Billed::No,
        })
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            // "a lighthouse at dusk": 20 characters ≈ 5 text tokens; 1024² at the default (medium)
            // quality is 1056 output tokens (PROVIDERS.md §3).
            request: gpt_image(),
            emulator: |_| {},
            expect: vec![Metered::InputTokens(5), Metered::OutputTokens(1056)],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: gpt_image(),
            expect: None,
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image(GPT_IMAGE_1, 512, 512),
            image_spec(DALL_E_3, ImageJobSpec::new("cats").count(2)),
            image_spec(GPT_IMAGE_1, ImageJobSpec::new("cats").count(11)),
            speech(TTS_1, &"a".repeat(4097)),
            video(GPT_IMAGE_1, 4),
            image("gpt-image-9", 1024, 1024),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gpt_image())
    }
}

genroute_conformance::conformance_tests!(suite, OpenAiFixture);
