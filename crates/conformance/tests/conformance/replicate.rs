//! Replicate: official-model predictions, `Prefer: wait` (off when the suite asks to poll), cancel and
//! resume by prediction id.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{AudioJobSpec, Billed, Decimal, ImageJobSpec, Provider, ProviderRequest};
use genroute_provider_replicate::models::{FLUX_11_PRO, FLUX_SCHNELL, MINIMAX_VIDEO_01};
use genroute_provider_replicate::{ReplicateConfig, ReplicateProvider};

use super::{BuildError, audio_spec, image, image_spec, video_spec};

pub struct ReplicateFixture;

fn schnell() -> ProviderRequest {
    image(FLUX_SCHNELL, 1024, 1024)
}

impl Fixture for ReplicateFixture {
    fn kind(&self) -> Kind {
        Kind::Replicate
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = ReplicateConfig::new(emu.api_key()).base_url(emu.base_url());
        c.http = t.http.clone();
        c.poll = t.poll.clone();
        if t.poll_only {
            c.prefer_wait_seconds = None;
        }
        Ok(Arc::new(ReplicateProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(
                FLUX_SCHNELL,
                ImageJobSpec::new("two cats")
                    .size(1344, 768)
                    .count(2)
                    .seed(u64::MAX - 7),
            ),
            image(FLUX_11_PRO, 1024, 768),
            video_spec(
                MINIMAX_VIDEO_01,
                genroute_core::VideoJobSpec::new("waves", Decimal::from(6)),
            ),
        ])
    }
    fn async_poll(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn cancel_explicit(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn resume(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn server_error(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        // The prediction ran, then failed on NSFW output: its predict_time may be billed.
        Scenario::Run(Rejection {
            request: schnell(),
            billed: Billed::Unknown,
        })
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            request: schnell(),
            emulator: |s| s.replicate_predict_time = Some(4.25),
            expect: vec![Metered::ComputeSeconds(Decimal::new(425, 2))],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: schnell(),
            expect: None,
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(FLUX_SCHNELL, ImageJobSpec::new("cats").count(5)),
            image_spec(FLUX_SCHNELL, ImageJobSpec::new("cats").steps(5)),
            image(FLUX_11_PRO, 1000, 1000),
            image("owner/not-a-model", 1024, 1024),
            audio_spec(FLUX_SCHNELL, AudioJobSpec::speech("hello")),
            video_spec(
                MINIMAX_VIDEO_01,
                genroute_core::VideoJobSpec::new("waves", Decimal::from(10)),
            ),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(schnell())
    }
}

genroute_conformance::conformance_tests!(suite, ReplicateFixture);
