//! Scenario: job created by `POST /generate/txt2img`, polled at `/jobs/{id}`, outputs read from
//! `/assets/{id}`, cost reported as Creative Units.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{Billed, Decimal, EditOp, ImageJobSpec, MediaInput, Money, Provider, ProviderRequest};
use genroute_provider_scenario::models::{PIXELATE, REMOVE_BACKGROUND, SD15, SDXL, UPSCALE, VECTORIZE};
use genroute_provider_scenario::{ScenarioConfig, ScenarioProvider};

use super::{BuildError, edit, image, image_spec, png_input, video};

pub struct ScenarioFixture;

fn sdxl() -> ProviderRequest {
    image(SDXL, 1024, 1024)
}

/// An image already stored at Scenario.
fn asset() -> MediaInput {
    MediaInput::Asset {
        id: "asset_stored-input".into(),
    }
}

impl Fixture for ScenarioFixture {
    fn kind(&self) -> Kind {
        Kind::Scenario
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = ScenarioConfig::new(emu.api_key(), emu.api_secret()).base_url(emu.base_url());
        c.http = t.http.clone();
        c.poll = t.poll.clone();
        Ok(Arc::new(ScenarioProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(
                SDXL,
                ImageJobSpec::new("three cats")
                    .size(1024, 768)
                    .count(3)
                    .seed(u64::MAX - 7),
            ),
            image_spec(SD15, ImageJobSpec::new("a cat").size(512, 512).steps(20)),
            edit(
                SDXL,
                EditOp::Img2Img {
                    prompt: "make it night".into(),
                    strength: Some(Decimal::new(6, 1)),
                },
                asset(),
            ),
            edit(
                UPSCALE,
                EditOp::Upscale {
                    factor: Decimal::from(2),
                },
                asset(),
            ),
            edit(REMOVE_BACKGROUND, EditOp::RemoveBackground, png_input()),
            edit(PIXELATE, EditOp::Pixelate { grid_size: Some(32) }, asset()),
            edit(VECTORIZE, EditOp::Vectorize, asset()),
        ])
    }
    fn async_poll(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn cancel_explicit(&self) -> Scenario<ProviderRequest> {
        // Only a queued job can be cancelled (a running one answers 400); the suite's job is queued.
        Scenario::Run(sdxl())
    }
    fn resume(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn server_error(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        // The job ends in `failure`; Scenario reimburses failed jobs (PROVIDERS.md §6).
        Scenario::Run(Rejection {
            request: sdxl(),
            billed: Billed::No,
        })
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            request: image_spec(SDXL, ImageJobSpec::new("two cats").count(2)),
            emulator: |s| s.scenario_units_per_sample = Some(7),
            expect: vec![Metered::Charged(Money::cu(Decimal::from(14)))],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: image_spec(SDXL, ImageJobSpec::new("two cats").count(2)),
            expect: Some(Money::cu(Decimal::from(10))),
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image(SDXL, 1020, 1024),
            image(SDXL, 4096, 1024),
            image_spec(SDXL, ImageJobSpec::new("cats").count(129)),
            image_spec(SDXL, ImageJobSpec::new("cats").steps(151)),
            image("detection", 1024, 1024),
            video(SDXL, 4),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(sdxl())
    }
}

genroute_conformance::conformance_tests!(suite, ScenarioFixture);
