#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Properties: quotes are never negative, and never decrease when a job asks for more.

use std::sync::LazyLock;

use genroute_core::{AudioJobSpec, Decimal, ImageJobSpec, Job, ModelId, ModelRef, ProviderId, VideoJobSpec};
use genroute_pricing::{Catalog, PriceBook};
use proptest::prelude::*;

fn flux2() -> Catalog {
    Catalog::from_toml(
        r#"provider = "bfl"
currency = "USD"
verified = 2026-11-21
[models."flux-2-pro"]
kind = "first_unit_plus_extra"
unit = "megapixel"
first_price = "0.03"
extra_price = "0.015"
quantity_rounding = { decimal_places = 0, mode = "up" }
"#,
        "bfl.toml",
    )
    .unwrap()
}

static BOOK: LazyLock<PriceBook> = LazyLock::new(|| {
    PriceBook::builtin_builder()
        .unwrap()
        .catalog(flux2())
        .build()
        .unwrap()
});

static LEGACY: LazyLock<PriceBook> = LazyLock::new(|| {
    PriceBook::builtin_builder()
        .unwrap()
        .catalog(flux2())
        .select_catalog(ProviderId::new("scenario").unwrap(), "legacy_usd")
        .build()
        .unwrap()
});

fn t(p: &str, m: &str) -> ModelRef {
    ModelRef::new(ProviderId::new(p).unwrap(), ModelId::new(m).unwrap())
}

fn image(w: u32, h: u32, steps: u32, count: u32) -> Job {
    ImageJobSpec::new("a tree")
        .size(w, h)
        .steps(steps)
        .count(count)
        .build()
        .unwrap()
        .into()
}

fn cost(book: &PriceBook, target: &ModelRef, job: &Job) -> Decimal {
    let a = book.quote_amount(target, job).unwrap();
    if let Some(cu) = &a.cost_cu {
        assert!(!cu.is_negative());
    }
    assert!(!a.cost.is_negative());
    a.cost.amount()
}

const IMAGE_MODELS: &[(&str, &str)] = &[
    ("scenario", "sdxl"),
    ("scenario", "sd-1.5"),
    ("fal", "fal-ai/flux/dev"),
    ("fal", "fal-ai/flux/schnell"),
    ("replicate", "black-forest-labs/flux-dev"),
    ("runway", "gen4_image"),
    ("bfl", "flux-2-pro"),
];

fn side() -> impl Strategy<Value = u32> {
    (8u32..=256).prop_map(|x| x * 8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_model_quotes_non_negative(w in side(), h in side(), steps in 1u32..200, count in 1u32..8,
                                       secs in 1u32..60, chars in 1usize..3000) {
        let jobs: Vec<Job> = vec![
            image(w, h, steps, count),
            VideoJobSpec::new("v", Decimal::from(secs)).audio(count % 2 == 0).build().unwrap().into(),
            AudioJobSpec::speech("x".repeat(chars)).build().unwrap().into(),
            AudioJobSpec::music("m", Decimal::from(secs)).build().unwrap().into(),
            AudioJobSpec::sound_effect("s").build().unwrap().into(),
        ];
        let mut priced = 0;
        for book in [&*BOOK, &*LEGACY] {
            for target in book.models() {
                for job in &jobs {
                    if let Ok(q) = book.quote(target, job) {
                        priced += 1;
                        prop_assert!(!q.cost.is_negative(), "{target}: {}", q.explain());
                        prop_assert!(q.cost_cu.as_ref().is_none_or(|c| !c.is_negative()));
                        prop_assert!(!q.lines.is_empty());
                        // The fast path computes the very same figures.
                        let fast = book.quote_amount(target, job).unwrap();
                        prop_assert_eq!(&fast.cost, &q.cost);
                        prop_assert_eq!(&fast.cost_cu, &q.cost_cu);
                        prop_assert_eq!(fast.high_cost, q.high_cost);
                    }
                }
            }
        }
        prop_assert!(priced > 20, "priced {priced}");
    }

    #[test]
    fn monotone_in_steps(w in side(), h in side(), a in 1u32..300, b in 1u32..300) {
        let (lo, hi) = (a.min(b), a.max(b));
        for model in ["sdxl", "sd-1.5"] {
            for book in [&*BOOK, &*LEGACY] {
                let target = t("scenario", model);
                prop_assert!(cost(book, &target, &image(w, h, lo, 1)) <= cost(book, &target, &image(w, h, hi, 1)));
            }
        }
    }

    #[test]
    fn monotone_in_size(w1 in side(), h1 in side(), dw in 0u32..512, dh in 0u32..512, steps in 1u32..150) {
        let small = image(w1, h1, steps, 1);
        let big = image(w1 + dw, h1 + dh, steps, 1);
        for (p, m) in IMAGE_MODELS {
            for book in [&*BOOK, &*LEGACY] {
                let target = t(p, m);
                prop_assert!(cost(book, &target, &small) <= cost(book, &target, &big), "{target}");
            }
        }
    }

    #[test]
    fn monotone_in_count(w in side(), h in side(), a in 1u32..50, b in 1u32..50) {
        let (lo, hi) = (a.min(b), a.max(b));
        for (p, m) in IMAGE_MODELS {
            let target = t(p, m);
            prop_assert!(cost(&BOOK, &target, &image(w, h, 30, lo)) <= cost(&BOOK, &target, &image(w, h, 30, hi)));
        }
        let gpt = t("openai", "gpt-image-1");
        prop_assert!(cost(&BOOK, &gpt, &image(1024, 1024, 30, lo)) <= cost(&BOOK, &gpt, &image(1024, 1024, 30, hi)));
    }

    #[test]
    fn monotone_in_duration(a in 1u32..100_000, b in 1u32..100_000) {
        // milliseconds, so fractional seconds are covered
        let (lo, hi) = (Decimal::new(i64::from(a.min(b)), 3), Decimal::new(i64::from(a.max(b)), 3));
        let video = |s: Decimal| -> Job { VideoJobSpec::new("v", s).build().unwrap().into() };
        for (p, m) in [
            ("fal", "fal-ai/kling-video/v1.6/standard/text-to-video"),
            ("runway", "gen4_turbo"),
            ("runway", "veo3"),
            ("replicate", "minimax/video-01"),
        ] {
            let target = t(p, m);
            prop_assert!(cost(&BOOK, &target, &video(lo)) <= cost(&BOOK, &target, &video(hi)));
        }
        let music = |s: Decimal| -> Job { AudioJobSpec::music("m", s).build().unwrap().into() };
        let target = t("elevenlabs", "music_v1");
        prop_assert!(cost(&BOOK, &target, &music(lo)) <= cost(&BOOK, &target, &music(hi)));
    }

    #[test]
    fn monotone_in_characters(a in 1usize..5000, b in 1usize..5000) {
        let (lo, hi) = (a.min(b), a.max(b));
        let speech = |n: usize| -> Job { AudioJobSpec::speech("é".repeat(n)).build().unwrap().into() };
        for (p, m) in [("openai", "tts-1"), ("openai", "tts-1-hd"), ("elevenlabs", "eleven_v3"), ("elevenlabs", "eleven_flash_v2_5")] {
            let target = t(p, m);
            prop_assert!(cost(&BOOK, &target, &speech(lo)) <= cost(&BOOK, &target, &speech(hi)));
        }
    }
}
