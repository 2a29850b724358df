//! Runway: task created by `POST /v1/{text_to_video,image_to_video,text_to_image}`, polled at
//! `/v1/tasks/{id}`, cancelled by `DELETE /v1/tasks/{id}`.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{Billed, Decimal, ImageJobSpec, MediaInput, Provider, ProviderRequest, VideoJobSpec};
use genroute_provider_runway::models::{GEN4_5, GEN4_IMAGE, GEN4_TURBO, VEO3, VEO3_1_FAST};
use genroute_provider_runway::{RunwayConfig, RunwayProvider};

use super::{BuildError, image, image_spec, speech, video, video_spec};

pub struct RunwayFixture;

fn gen45() -> ProviderRequest {
    video(GEN4_5, 5)
}

fn frame() -> MediaInput {
    MediaInput::Url {
        url: "https://example.com/first-frame.png".into(),
    }
}

impl Fixture for RunwayFixture {
    fn kind(&self) -> Kind {
        Kind::Runway
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = RunwayConfig::new(emu.api_key()).base_url(emu.base_url());
        c.http = t.http.clone();
        c.poll = t.poll.clone();
        Ok(Arc::new(RunwayProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            video_spec(
                GEN4_5,
                VideoJobSpec::new("waves", Decimal::from(5)).seed(4_000_000_000),
            ),
            video_spec(
                GEN4_TURBO,
                VideoJobSpec::from_image(frame(), Decimal::from(10)).prompt("the sea moves"),
            ),
            image(GEN4_IMAGE, 1920, 1080),
            video_spec(VEO3, VideoJobSpec::new("surf", Decimal::from(8)).audio(true)),
            video_spec(
                VEO3_1_FAST,
                VideoJobSpec::from_image(frame(), Decimal::from(6)).last_frame(frame()),
            ),
        ])
    }
    fn async_poll(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn cancel_explicit(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn resume(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn server_error(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        // "You do not have enough credits to run this task." (status unconfirmed; recognised by message).
        Scenario::Run(gen45())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        // The task fails with `SAFETY.INPUT.*`: the input was refused, nothing ran.
        Scenario::Run(Rejection {
            request: gen45(),
            billed: Billed::No,
        })
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            // Runway reports nothing; video is billed per second of output: the job's duration.
            request: video(GEN4_5, 7),
            emulator: |_| {},
            expect: vec![Metered::OutputSeconds(Decimal::from(7))],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: gen45(),
            expect: None,
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            video(GEN4_5, 11),
            video(GEN4_TURBO, 5),
            video(VEO3, 5),
            video_spec(GEN4_5, VideoJobSpec::new("waves", Decimal::from(5)).seed(1 << 40)),
            image(GEN4_IMAGE, 1000, 1000),
            image_spec(GEN4_IMAGE, ImageJobSpec::new(&*"a".repeat(1001)).size(1920, 1080)),
            speech(GEN4_5, "hello"),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(gen45())
    }
}

genroute_conformance::conformance_tests!(suite, RunwayFixture);
