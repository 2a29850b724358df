#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The seed documents' tables, reproduced through the shipped catalogs.

use genroute_core::{
    Control, Currency, Decimal, EditJobSpec, EditOp, ImageJobSpec, Job, MediaInput, ModelId, ModelRef, Money,
    ProviderId,
};
use genroute_pricing::{PriceBook, builtin};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn target(p: &str, m: &str) -> ModelRef {
    ModelRef::new(ProviderId::new(p).unwrap(), ModelId::new(m).unwrap())
}

fn legacy() -> PriceBook {
    PriceBook::builtin_builder()
        .unwrap()
        .select_catalog(ProviderId::new("scenario").unwrap(), "legacy_usd")
        .build()
        .unwrap()
}

fn image(w: u32, h: u32, steps: u32) -> Job {
    ImageJobSpec::new("a castle")
        .size(w, h)
        .steps(steps)
        .build()
        .unwrap()
        .into()
}

const STEPS: [u32; 4] = [30, 50, 100, 150];

/// Seed 001, "SD 1.5 Generated Images", cost per image in thousandths of a dollar.
const SD15_WIDTH: u32 = 512;
const SD15_HEIGHTS: [u32; 8] = [512, 576, 640, 688, 704, 768, 912, 1024];
const SD15: [[i64; 8]; 4] = [
    [4, 5, 6, 7, 8, 9, 13, 16],
    [7, 8, 10, 12, 13, 15, 21, 27],
    [13, 17, 21, 24, 25, 30, 42, 53],
    [20, 25, 31, 36, 38, 45, 63, 80],
];

/// Seed 001, "SDXL Generated Images".
const SDXL_WIDTH: u32 = 1024;
const SDXL_HEIGHTS: [u32; 8] = [1024, 1152, 1280, 1376, 1408, 1536, 1824, 2048];
const SDXL: [[i64; 8]; 4] = [
    [32, 41, 50, 58, 61, 72, 102, 128],
    [53, 68, 83, 96, 101, 120, 169, 213],
    [107, 135, 167, 193, 202, 240, 338, 427],
    [160, 203, 250, 289, 303, 360, 508, 640],
];

fn check_table(book: &PriceBook, model: &str, width: u32, heights: [u32; 8], table: [[i64; 8]; 4]) -> usize {
    let t = target("scenario", model);
    let mut checked = 0;
    for (si, steps) in STEPS.iter().enumerate() {
        for (hi, h) in heights.iter().enumerate() {
            let q = book.quote(&t, &image(width, *h, *steps)).unwrap();
            let want = Money::usd(Decimal::new(table[si][hi], 3));
            assert_eq!(q.cost, want, "{model} {steps} steps {width}x{h}\n{}", q.explain());
            // The fast path agrees with the explained one.
            assert_eq!(
                book.quote_amount(&t, &image(width, *h, *steps)).unwrap().cost,
                want
            );
            checked += 1;
        }
    }
    checked
}

#[test]
fn every_cell_of_the_sd15_and_sdxl_tables() {
    let book = legacy();
    let n = check_table(&book, "sd-1.5", SD15_WIDTH, SD15_HEIGHTS, SD15)
        + check_table(&book, "sdxl", SDXL_WIDTH, SDXL_HEIGHTS, SDXL);
    assert_eq!(n, 64);
}

#[test]
fn the_midpoint_cell_rounds_half_up() {
    // 0.032 × 150/30 × (1024·1408 / 1024²)² = 0.3025 exactly: half-up gives 0.303 (banker's would give 0.302).
    let q = legacy()
        .quote(&target("scenario", "sdxl"), &image(1024, 1408, 150))
        .unwrap();
    assert_eq!(q.cost.amount(), d("0.303"));
    let text = q.explain();
    assert!(
        text.contains("(1024x1408 = 1441792 px / 1048576 px)^2 → 0.3025 USD"),
        "{text}"
    );
    assert!(text.contains("half-up to 3 decimal places → 0.303 USD"), "{text}");
}

#[test]
fn sizes_are_orientation_free_and_steps_default_to_30() {
    let book = legacy();
    let t = target("scenario", "sdxl");
    let landscape = book.quote(&t, &image(1408, 1024, 150)).unwrap();
    assert_eq!(landscape.cost.amount(), d("0.303"));
    let no_steps: Job = ImageJobSpec::new("x").size(1024, 1024).build().unwrap().into();
    assert_eq!(book.quote(&t, &no_steps).unwrap().cost.amount(), d("0.032"));
}

#[test]
fn composition_control_multiplies_by_1_2() {
    let book = legacy();
    let job: Job = ImageJobSpec::new("x")
        .size(1024, 1024)
        .steps(30)
        .control(Control {
            kind: "composition".into(),
            input: MediaInput::Url {
                url: "https://x/c.png".into(),
            },
            strength: None,
        })
        .build()
        .unwrap()
        .into();
    let q = book.quote(&target("scenario", "sdxl"), &job).unwrap();
    // 0.032 × 1.2 = 0.0384 → 0.038 (half-up at $0.001)
    assert_eq!(q.cost.amount(), d("0.038"));
    assert!(
        q.explain().contains("composition control × 1.2"),
        "{}",
        q.explain()
    );
}

fn edit(op: EditOp) -> Job {
    EditJobSpec::new(
        op,
        MediaInput::Url {
            url: "https://x/a.png".into(),
        },
    )
    .build()
    .unwrap()
    .into()
}

#[test]
fn every_fixed_price_of_seed_001() {
    let book = legacy();
    let upscale = edit(EditOp::Upscale { factor: d("2") });
    let any = image(512, 512, 30);
    let cases: [(&str, &Job, &str); 7] = [
        ("remove-background", &edit(EditOp::RemoveBackground), "0.100"),
        ("detection", &any, "0.030"),
        ("upscale", &upscale, "0.030"),
        ("captioning", &any, "0.015"),
        ("magic-prompt", &any, "0.015"),
        ("pixelate", &edit(EditOp::Pixelate { grid_size: None }), "0.015"),
        ("training", &any, "5.00"),
    ];
    for (model, job, price) in cases {
        let q = book.quote(&target("scenario", model), job).unwrap();
        assert_eq!(q.cost, Money::usd(d(price)), "{model}");
        assert_eq!(q.price_verified.as_deref(), Some("2026-11-21"));
    }
}

#[test]
fn seed_002_equivalences_5000_cu() {
    let book = PriceBook::with_builtin().unwrap();
    let budget = d("5000");
    // 1,000 SDXL images (defaults: 30 steps, 1024x1024)
    let sdxl = book
        .quote(&target("scenario", "sdxl"), &image(1024, 1024, 30))
        .unwrap();
    assert_eq!(sdxl.cost.currency(), &Currency::Cu);
    assert_eq!(budget / sdxl.cost.amount(), d("1000"));
    // 500 upscales
    let up = book
        .quote(
            &target("scenario", "upscale"),
            &edit(EditOp::Upscale { factor: d("2") }),
        )
        .unwrap();
    assert_eq!(budget / up.cost.amount(), d("500"));
    // 1,000 vectors
    let vec = book
        .quote(&target("scenario", "vectorize"), &edit(EditOp::Vectorize))
        .unwrap();
    assert_eq!(budget / vec.cost.amount(), d("1000"));
    // A batch of 1,000 SDXL images costs exactly the 5,000 CU.
    let batch: Job = ImageJobSpec::new("x")
        .size(1024, 1024)
        .count(1000)
        .build()
        .unwrap()
        .into();
    assert_eq!(
        book.quote(&target("scenario", "sdxl"), &batch).unwrap().cost,
        Money::cu(budget)
    );
}

#[test]
fn default_conversion_is_derived_from_seeds_001_and_002() {
    // $0.032 (seed 001) = 5 CU (seed 002)
    let book = PriceBook::with_builtin().unwrap();
    assert_eq!(book.to_cu(&Money::usd(d("0.032"))).unwrap(), Money::cu(d("5")));
    let legacy_q = legacy()
        .quote(&target("scenario", "sdxl"), &image(1024, 1024, 30))
        .unwrap();
    assert_eq!(legacy_q.cost_cu, Some(Money::cu(d("5"))));
}

#[test]
fn builtin_catalogs_price_exactly_the_shared_model_ids() {
    let expected: &[(&str, &[&str])] = &[
        (
            "fal",
            &[
                "fal-ai/flux/dev",
                "fal-ai/flux/schnell",
                "fal-ai/flux-pro/kontext",
                "fal-ai/kling-video/v1.6/standard/text-to-video",
            ],
        ),
        (
            "replicate",
            &[
                "black-forest-labs/flux-schnell",
                "black-forest-labs/flux-dev",
                "black-forest-labs/flux-1.1-pro",
                "black-forest-labs/flux-1.1-pro-ultra",
                "minimax/video-01",
            ],
        ),
        ("openai", &["gpt-image-1", "dall-e-3", "tts-1", "tts-1-hd"]),
        (
            "scenario",
            &[
                "sd-1.5",
                "sdxl",
                "upscale",
                "remove-background",
                "detection",
                "captioning",
                "magic-prompt",
                "pixelate",
                "vectorize",
                "training",
            ],
        ),
        (
            "elevenlabs",
            &[
                "eleven_multilingual_v2",
                "eleven_v3",
                "eleven_flash_v2_5",
                "eleven_turbo_v2_5",
                "eleven_text_to_sound_v2",
                "music_v1",
            ],
        ),
        (
            "runway",
            &["gen4_turbo", "gen4.5", "veo3", "veo3.1_fast", "gen4_image"],
        ),
    ];
    let catalogs = builtin::catalogs().unwrap();
    assert_eq!(catalogs.len(), 6);
    for (provider, models) in expected {
        let cat = catalogs
            .iter()
            .find(|c| c.provider().as_str() == *provider)
            .unwrap();
        let mut got: Vec<&str> = cat.model_ids().iter().map(|m| m.as_str()).collect();
        let mut want: Vec<&str> = models.to_vec();
        got.sort_unstable();
        want.sort_unstable();
        assert_eq!(got, want, "{provider}");
    }
    let book = PriceBook::with_builtin().unwrap();
    assert_eq!(book.models().len(), 4 + 5 + 4 + 10 + 6 + 5);
}
