//! fal.ai: queue API (submit → status → result), cancel by `PUT cancel_url`, resume by request id.

use std::sync::Arc;

use genroute_conformance::emulators::{EmulatorHandle, Kind};
use genroute_conformance::{CostCheck, DryRun, Fixture, Metered, Rejection, Scenario, Transport};
use genroute_core::{AudioJobSpec, Billed, Decimal, EditOp, ImageJobSpec, Provider, ProviderRequest};
use genroute_provider_fal::models::{FLUX_DEV, FLUX_PRO_KONTEXT, KLING_V16_T2V};
use genroute_provider_fal::{FalConfig, FalProvider};

use super::{BuildError, audio_spec, edit, image, image_spec, url_input, video};

pub struct FalFixture;

fn flux() -> ProviderRequest {
    image(FLUX_DEV, 1024, 1024)
}

impl Fixture for FalFixture {
    fn kind(&self) -> Kind {
        Kind::Fal
    }

    fn provider(&self, emu: &EmulatorHandle, t: &Transport) -> Result<Arc<dyn Provider>, BuildError> {
        let mut c = FalConfig::new(emu.api_key()).base_url(emu.base_url());
        c.http = t.http.clone();
        c.poll = t.poll.clone();
        Ok(Arc::new(FalProvider::new(c)?))
    }

    fn success(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(
                FLUX_DEV,
                ImageJobSpec::new("two cats")
                    .size(1024, 768)
                    .count(2)
                    .seed(u64::MAX - 7),
            ),
            video(KLING_V16_T2V, 5),
            edit(
                FLUX_PRO_KONTEXT,
                EditOp::Img2Img {
                    prompt: "make it night".into(),
                    strength: None,
                },
                url_input(),
            ),
        ])
    }
    fn async_poll(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn cancel_on_drop(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn cancel_on_deadline(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn cancel_explicit(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn resume(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn server_error(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn rate_limited(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn slow(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn malformed_json(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn oversized(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn stuck(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn unknown_status(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn credit_exhausted(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
    fn content_rejected(&self) -> Scenario<Rejection> {
        // The queue accepts the job; the refusal comes at the result GET, after the runner took it
        // (PROVIDERS.md §1: "422 may be charged if GPU time was spent").
        Scenario::Run(Rejection {
            request: flux(),
            billed: Billed::Unknown,
        })
    }
    fn cost(&self) -> Scenario<CostCheck> {
        Scenario::Run(CostCheck {
            request: video(KLING_V16_T2V, 5),
            // Fractional billed seconds, as fal reports for video.
            emulator: |s| s.fal_billable_units = Some("5.008".into()),
            expect: vec![Metered::BillableUnits(Decimal::new(5008, 3))],
        })
    }
    fn dry_run(&self) -> Scenario<DryRun> {
        Scenario::Run(DryRun {
            request: flux(),
            expect: None,
        })
    }
    fn invalid_input(&self) -> Scenario<Vec<ProviderRequest>> {
        Scenario::Run(vec![
            image_spec(FLUX_DEV, ImageJobSpec::new("cats").count(5)),
            image(FLUX_DEV, 1000, 1000),
            image_spec(FLUX_DEV, ImageJobSpec::new("cats").steps(51)),
            image("fal-ai/not-a-model", 1024, 1024),
            audio_spec(FLUX_DEV, AudioJobSpec::speech("hello")),
            video(KLING_V16_T2V, 7),
        ])
    }
    fn one_create(&self) -> Scenario<ProviderRequest> {
        Scenario::Run(flux())
    }
}

genroute_conformance::conformance_tests!(suite, FalFixture);
