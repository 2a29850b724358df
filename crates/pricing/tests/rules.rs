#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every rule kind, rounding, multipliers, minimums, discounts, BYOK fees, conversion and explanations.

use genroute_core::{
    AudioJobSpec, Charge, Control, CostSource, Currency, Decimal, EditJobSpec, EditOp, ExchangeRate,
    Generation, ImageJobSpec, Job, MediaInput, Modality, ModelId, ModelRef, Money, ProviderId, Rounding,
    RoundingMode, VideoJobSpec,
};
use genroute_pricing::{Catalog, Plan, PriceBook, PricingError};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn t(p: &str, m: &str) -> ModelRef {
    ModelRef::new(ProviderId::new(p).unwrap(), ModelId::new(m).unwrap())
}

fn pid(p: &str) -> ProviderId {
    ProviderId::new(p).unwrap()
}

fn img(w: u32, h: u32, count: u32) -> Job {
    ImageJobSpec::new("a red fox in the snow")
        .size(w, h)
        .count(count)
        .build()
        .unwrap()
        .into()
}

fn video(secs: &str, audio: bool) -> Job {
    VideoJobSpec::new("waves", d(secs))
        .audio(audio)
        .build()
        .unwrap()
        .into()
}

fn speech(chars: usize) -> Job {
    AudioJobSpec::speech("a".repeat(chars)).build().unwrap().into()
}

fn url() -> MediaInput {
    MediaInput::Url {
        url: "https://example.com/a.png".into(),
    }
}

fn builtin() -> PriceBook {
    PriceBook::with_builtin().unwrap()
}

/// A book with one inline catalog for provider `test`, in USD, without CU conversion.
fn book_with(models: &str) -> PriceBook {
    let text = format!("provider = \"test\"\ncurrency = \"USD\"\nverified = 2026-11-21\n{models}");
    PriceBook::builder()
        .catalog(Catalog::from_toml(&text, "test.toml").unwrap())
        .build()
        .unwrap()
}

fn cost(book: &PriceBook, model: &str, job: &Job) -> Decimal {
    book.quote(&t("test", model), job).unwrap().cost.amount()
}

#[test]
fn per_output_scales_with_count_and_picks_variants() {
    let book = builtin();
    let q = book
        .quote(
            &t("replicate", "black-forest-labs/flux-1.1-pro"),
            &img(1024, 1024, 3),
        )
        .unwrap();
    assert_eq!(q.cost, Money::usd(d("0.12")));
    assert_eq!(q.cost_cu, Some(Money::cu(d("18.75"))));

    let dalle = t("openai", "dall-e-3");
    assert_eq!(
        book.quote(&dalle, &img(1024, 1024, 1)).unwrap().cost.amount(),
        d("0.04")
    );
    assert_eq!(
        book.quote(&dalle, &img(1792, 1024, 1)).unwrap().cost.amount(),
        d("0.08")
    );
    let hd: Job = ImageJobSpec::new("x")
        .size(1024, 1792)
        .extra("quality", "hd".into())
        .build()
        .unwrap()
        .into();
    let q = book.quote(&dalle, &hd).unwrap();
    assert_eq!(q.cost.amount(), d("0.12"));
    assert!(
        q.explain().contains("variant: quality hd, size 1024x1792"),
        "{}",
        q.explain()
    );
    let err = book.quote(&dalle, &img(512, 512, 1)).unwrap_err();
    assert!(
        matches!(
            &err,
            PricingError::RuleDoesNotApply {
                rule: "per_output",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("size 512x512"), "{err}");

    // Runway gen4_image: 5 credits at 720p, 8 at 1080p.
    let g = t("runway", "gen4_image");
    let c = book.quote(&g, &img(1280, 720, 1)).unwrap().cost;
    assert_eq!(c, Money::new(d("5"), "credits:runway".parse().unwrap()));
    assert_eq!(book.quote(&g, &img(1920, 1080, 1)).unwrap().cost.amount(), d("8"));
    assert_eq!(book.quote(&g, &img(1808, 768, 1)).unwrap().cost.amount(), d("8"));
    assert_eq!(book.quote(&g, &img(1584, 672, 1)).unwrap().cost.amount(), d("5"));
}

#[test]
fn fixed_price_ignores_count() {
    let book = book_with("[models.op]\nkind = \"fixed\"\nprice = \"1.25\"\n");
    assert_eq!(cost(&book, "op", &img(512, 512, 1)), d("1.25"));
    assert_eq!(cost(&book, "op", &img(512, 512, 7)), d("1.25"));
}

#[test]
fn per_megapixel_rounds_up_to_whole_megapixels() {
    let book = builtin();
    let dev = t("fal", "fal-ai/flux/dev");
    // fal's megapixel is 1024² px: 1024x1024 is exactly 1 MP ($0.025, fal's headline price), and
    // 1024x1025 is just over, so it rounds up to 2 MP.
    assert_eq!(
        book.quote(&dev, &img(1024, 1024, 1)).unwrap().cost.amount(),
        d("0.025")
    );
    assert_eq!(
        book.quote(&dev, &img(1024, 1025, 1)).unwrap().cost.amount(),
        d("0.05")
    );
    assert_eq!(
        book.quote(&dev, &img(1000, 1000, 1)).unwrap().cost.amount(),
        d("0.025")
    );
    assert_eq!(
        book.quote(&dev, &img(1024, 1408, 2)).unwrap().cost.amount(),
        d("0.1")
    );
    let schnell = t("fal", "fal-ai/flux/schnell");
    assert_eq!(
        book.quote(&schnell, &img(512, 512, 4)).unwrap().cost.amount(),
        d("0.012")
    );
    // Without quantity rounding: exact megapixels.
    let exact = book_with("[models.m]\nkind = \"per_megapixel\"\nprice = \"0.01\"\n");
    assert_eq!(cost(&exact, "m", &img(1024, 1024, 1)), d("0.01048576"));
}

#[test]
fn per_megapixel_prices_upscales_by_output_size() {
    let book = book_with("[models.up]\nkind = \"per_megapixel\"\nprice = \"0.01\"\n");
    let job: Job = EditJobSpec::new(EditOp::Upscale { factor: d("2") }, url())
        .input_size(genroute_core::Dimensions::new(500, 500).unwrap())
        .build()
        .unwrap()
        .into();
    // 1000x1000 output = 1 MP
    assert_eq!(cost(&book, "up", &job), d("0.01"));
    let unknown_size: Job = EditJobSpec::new(EditOp::Upscale { factor: d("2") }, url())
        .build()
        .unwrap()
        .into();
    let err = book.quote(&t("test", "up"), &unknown_size).unwrap_err();
    assert!(err.to_string().contains("input_size"), "{err}");
}

#[test]
fn per_second_with_optional_rounding() {
    let book = builtin();
    let kling = t("fal", "fal-ai/kling-video/v1.6/standard/text-to-video");
    assert_eq!(
        book.quote(&kling, &video("5", false)).unwrap().cost.amount(),
        d("0.225")
    );
    assert_eq!(
        book.quote(&kling, &video("10", false)).unwrap().cost.amount(),
        d("0.45")
    );
    let music: Job = AudioJobSpec::music("lofi", d("60")).build().unwrap().into();
    assert_eq!(
        book.quote(&t("elevenlabs", "music_v1"), &music)
            .unwrap()
            .cost
            .amount(),
        d("0.3")
    );
    let rounded = book_with(
        "[models.v]\nkind = \"per_second\"\nprice = \"0.1\"\nquantity_rounding = { decimal_places = 0, mode = \"up\" }\n",
    );
    assert_eq!(cost(&rounded, "v", &video("5.2", false)), d("0.6"));
    let err = rounded.quote(&t("test", "v"), &speech(10)).unwrap_err();
    assert!(err.to_string().contains("characters"), "{err}");
}

#[test]
fn per_1k_characters() {
    let book = builtin();
    assert_eq!(
        book.quote(&t("openai", "tts-1"), &speech(1000))
            .unwrap()
            .cost
            .amount(),
        d("0.015")
    );
    assert_eq!(
        book.quote(&t("openai", "tts-1-hd"), &speech(2500))
            .unwrap()
            .cost
            .amount(),
        d("0.075")
    );
    assert_eq!(
        book.quote(&t("elevenlabs", "eleven_flash_v2_5"), &speech(1000))
            .unwrap()
            .cost
            .amount(),
        d("0.05")
    );
    let whole_k = book_with(
        "[models.s]\nkind = \"per_1k_characters\"\nprice = \"0.1\"\nquantity_rounding = { decimal_places = 0, mode = \"up\" }\n",
    );
    assert_eq!(cost(&whole_k, "s", &speech(1001)), d("0.2"));
}

#[test]
fn per_token_quotes_from_the_output_token_table() {
    let book = builtin();
    let gpt = t("openai", "gpt-image-1");
    // Prompt "a red fox in the snow" = 21 chars → ceil(21/4) = 6 text tokens × $5/1M = 0.00003;
    // medium 1024² = 1056 tokens × $40/1M = 0.04224.
    let medium: Job = ImageJobSpec::new("a red fox in the snow")
        .extra("quality", "medium".into())
        .build()
        .unwrap()
        .into();
    let q = book.quote(&gpt, &medium).unwrap();
    assert_eq!(q.cost.amount(), d("0.04227"));
    assert!(
        q.explain()
            .contains("1056 output tokens (medium quality, 1024x1024)"),
        "{}",
        q.explain()
    );
    // Default quality is high (4160 tokens): 0.1664 + 0.00003
    assert_eq!(
        book.quote(&gpt, &img(1024, 1024, 1)).unwrap().cost.amount(),
        d("0.16643")
    );
    // `auto` is priced as the default quality.
    let auto: Job = ImageJobSpec::new("a red fox in the snow")
        .extra("quality", "auto".into())
        .build()
        .unwrap()
        .into();
    assert_eq!(book.quote(&gpt, &auto).unwrap().cost.amount(), d("0.16643"));
    // A size the token table does not list is refused, not guessed.
    let err = book.quote(&gpt, &img(512, 512, 1)).unwrap_err();
    assert!(
        err.to_string()
            .contains("no output-token entry for quality \"high\" at 512x512"),
        "{err}"
    );
    // Two low-quality images: 2 × 272 × 40/1M + text.
    let low: Job = ImageJobSpec::new("a red fox in the snow")
        .count(2)
        .extra("quality", "low".into())
        .build()
        .unwrap()
        .into();
    assert_eq!(book.quote(&gpt, &low).unwrap().cost.amount(), d("0.02179"));
}

#[test]
fn first_unit_plus_extra_flux2_style() {
    let book = book_with(
        r#"[models."flux-2-pro"]
kind = "first_unit_plus_extra"
unit = "megapixel"
first_price = "0.03"
extra_price = "0.015"
quantity_rounding = { decimal_places = 0, mode = "up" }
"#,
    );
    // 1 MP: 3¢; 1920x1080 = 2.0736 MP → 3 MP: 3¢ + 2 × 1.5¢ = 6¢; two images: 12¢.
    assert_eq!(cost(&book, "flux-2-pro", &img(1000, 1000, 1)), d("0.03"));
    assert_eq!(cost(&book, "flux-2-pro", &img(1920, 1080, 1)), d("0.06"));
    assert_eq!(cost(&book, "flux-2-pro", &img(1920, 1080, 2)), d("0.12"));
    let q = book.quote(&t("test", "flux-2-pro"), &img(1920, 1080, 1)).unwrap();
    assert!(
        q.explain().contains("first MP 0.03 USD + 2 extra MP × 0.015 USD"),
        "{}",
        q.explain()
    );
}

#[test]
fn per_compute_second_estimates_then_charges_reported_time() {
    let book =
        book_with("[models.gpu]\nkind = \"per_compute_second\"\nprice = \"0.001\"\nestimated_seconds = 4\n");
    let job = img(512, 512, 1);
    assert_eq!(cost(&book, "gpu", &job), d("0.004"));
    let mut g = Generation::new(vec![]);
    g.usage.compute_seconds = Some(d("1.78"));
    let c = book.charge(&t("test", "gpu"), &job, &g).unwrap();
    assert_eq!(
        c,
        Charge {
            amount: Money::usd(d("0.00178")),
            source: CostSource::ProviderReported
        }
    );
}

#[test]
fn rounding_modes_are_declared_per_rule() {
    // 0.0125 is a midpoint at 3 decimal places.
    let cases = [
        ("half_up", "0.013"),
        ("half_down", "0.012"),
        ("half_even", "0.012"),
        ("up", "0.013"),
        ("down", "0.012"),
        ("ceiling", "0.013"),
        ("floor", "0.012"),
    ];
    for (mode, want) in cases {
        let book = book_with(&format!(
            "[models.r]\nkind = \"per_output\"\nprice = \"0.0125\"\nrounding = {{ decimal_places = 3, mode = \"{mode}\" }}\n"
        ));
        assert_eq!(cost(&book, "r", &img(64, 64, 1)), d(want), "{mode}");
    }
    // No rounding declared: exact.
    let exact = book_with("[models.r]\nkind = \"per_output\"\nprice = \"0.0125\"\n");
    assert_eq!(cost(&exact, "r", &img(64, 64, 1)), d("0.0125"));
}

#[test]
fn multipliers_control_references_and_audio() {
    let book = book_with(
        r#"[models.i]
kind = "per_output"
price = "1"
multipliers = { control = "1.2", per_reference = "0.1" }
[models.v]
kind = "per_second"
price = "0.1"
multipliers = { audio = "1.5" }
"#,
    );
    let control = Control {
        kind: "depth".into(),
        input: url(),
        strength: None,
    };
    let job: Job = ImageJobSpec::new("x")
        .control(control)
        .reference(url())
        .reference(url())
        .build()
        .unwrap()
        .into();
    // 1 × 1.2 (control) × 1.2 (two references at +10 % each)
    let q = book.quote(&t("test", "i"), &job).unwrap();
    assert_eq!(q.cost.amount(), d("1.44"));
    let text = q.explain();
    assert!(text.contains("composition control × 1.2 → 1.2 USD"), "{text}");
    assert!(
        text.contains("2 reference input(s) × +0.1 each → × 1.2 → 1.44 USD"),
        "{text}"
    );
    assert_eq!(cost(&book, "i", &img(64, 64, 1)), d("1"));
    assert_eq!(cost(&book, "v", &video("4", true)), d("0.6"));
    assert_eq!(cost(&book, "v", &video("4", false)), d("0.4"));
}

#[test]
fn minimum_charge() {
    let book = book_with("[models.s]\nkind = \"per_1k_characters\"\nprice = \"0.1\"\nminimum = \"0.01\"\n");
    let q = book.quote(&t("test", "s"), &speech(20)).unwrap();
    assert_eq!(q.cost.amount(), d("0.01"));
    assert!(
        q.explain().contains("minimum charge 0.01 USD applies"),
        "{}",
        q.explain()
    );
    assert_eq!(cost(&book, "s", &speech(500)), d("0.05"));
}

#[test]
fn plan_discounts_apply_to_scenario_cu_only() {
    let sdxl = t("scenario", "sdxl");
    let job = img(1024, 1024, 1);
    for (plan, want) in [
        (Plan::Free, "5"),
        (Plan::Starter, "5"),
        (Plan::Pro, "4.5"),
        (Plan::Max, "4"),
        (Plan::Enterprise, "3.5"),
    ] {
        let book = PriceBook::builtin_builder().unwrap().plan(plan).build().unwrap();
        let q = book.quote(&sdxl, &job).unwrap();
        assert_eq!(q.cost, Money::cu(d(want)), "{plan:?}");
        assert_eq!(q.cost_cu, Some(Money::cu(d(want))));
    }
    let pro = PriceBook::builtin_builder()
        .unwrap()
        .plan(Plan::Pro)
        .build()
        .unwrap();
    assert!(
        pro.quote(&sdxl, &job)
            .unwrap()
            .explain()
            .contains("Pro plan discount −10% (× 0.9) → 4.5 CU")
    );
    // Not a CU price list: no discount.
    let fal = pro.quote(&t("fal", "fal-ai/flux/dev"), &job).unwrap();
    assert_eq!(fal.cost.amount(), d("0.025"));
    let legacy = pro.quote(&t("scenario", "sd-1.5"), &img(512, 512, 1)).unwrap();
    assert_eq!(legacy.cost.amount(), d("0.004"));
}

#[test]
fn byok_fee_per_asset() {
    let book = PriceBook::builtin_builder()
        .unwrap()
        .byok_fee(pid("scenario"), Money::cu(d("0.5")))
        .build()
        .unwrap();
    let q = book.quote(&t("scenario", "sdxl"), &img(1024, 1024, 2)).unwrap();
    assert_eq!(q.cost, Money::cu(d("11")));
    assert!(
        q.explain()
            .contains("BYOK post-processing fee 0.5 CU × 2 asset(s) → 11 CU"),
        "{}",
        q.explain()
    );
    // A fee in another currency than the list is refused, not silently mixed.
    let err = book
        .quote(&t("scenario", "sd-1.5"), &img(512, 512, 1))
        .unwrap_err();
    assert!(matches!(err, PricingError::Config(_)), "{err}");
    // Other providers are unaffected.
    assert_eq!(
        book.quote(&t("fal", "fal-ai/flux/dev"), &img(1000, 1000, 1))
            .unwrap()
            .cost
            .amount(),
        d("0.025")
    );
}

#[test]
fn conversion_missing_leaves_cost_cu_empty_and_to_cu_errors() {
    let book = book_with("[models.o]\nkind = \"per_output\"\nprice = \"1\"\n");
    let q = book.quote(&t("test", "o"), &img(64, 64, 1)).unwrap();
    assert_eq!(q.cost_cu, None);
    assert!(
        q.explain().contains("no conversion from USD to CU"),
        "{}",
        q.explain()
    );
    let err = book.to_cu(&Money::usd(d("1"))).unwrap_err();
    assert_eq!(
        err,
        PricingError::ConversionMissing {
            from: Currency::Usd,
            to: Currency::Cu
        }
    );
    // CU needs no conversion.
    assert_eq!(book.to_cu(&Money::cu(d("3"))).unwrap(), Money::cu(d("3")));
}

#[test]
fn conversions_chain_credits_through_usd_and_round_cu_as_configured() {
    let book = builtin();
    let credits = Money::new(d("200"), "credits:runway".parse().unwrap());
    // 200 credits = $2.00 = 312.5 CU
    assert_eq!(book.to_cu(&credits).unwrap(), Money::cu(d("312.5")));
    let q = book.quote(&t("runway", "veo3"), &video("5", true)).unwrap();
    assert_eq!(q.cost_cu, Some(Money::cu(d("312.5"))));
    // CU rounding: default up to 4 places; configurable.
    assert_eq!(
        book.to_cu(&Money::usd(d("0.0000001"))).unwrap(),
        Money::cu(d("0.0001"))
    );
    let whole = PriceBook::builtin_builder()
        .unwrap()
        .cu_rounding(Rounding {
            decimal_places: 0,
            mode: RoundingMode::HalfUp,
        })
        .build()
        .unwrap();
    assert_eq!(whole.to_cu(&Money::usd(d("0.303"))).unwrap(), Money::cu(d("47")));
    // An explicit rate replaces the catalog's.
    let custom = PriceBook::builtin_builder()
        .unwrap()
        .conversion(ExchangeRate {
            from: "credits:runway".parse().unwrap(),
            to: Currency::Cu,
            per_unit: d("2"),
        })
        .build()
        .unwrap();
    assert_eq!(custom.to_cu(&credits).unwrap(), Money::cu(d("400")));
    let bad = PriceBook::builder()
        .conversion(ExchangeRate {
            from: Currency::Cu,
            to: Currency::Usd,
            per_unit: d("0.0064"),
        })
        .build()
        .unwrap_err();
    assert!(matches!(bad, PricingError::Config(_)), "{bad}");
}

#[test]
fn high_cost_thresholds_per_modality_in_cu_or_list_currency() {
    let book = PriceBook::builtin_builder()
        .unwrap()
        .high_cost_threshold(Modality::Image, Money::cu(d("50")))
        .high_cost_threshold(Modality::Video, Money::usd(d("1")))
        .build()
        .unwrap();
    let sdxl = t("scenario", "sdxl");
    assert!(!book.quote(&sdxl, &img(1024, 1024, 9)).unwrap().high_cost); // 45 CU
    let q = book.quote(&sdxl, &img(1024, 1024, 10)).unwrap(); // 50 CU
    assert!(q.high_cost);
    assert!(
        q.explain()
            .contains("high cost: 50 CU ≥ the image threshold of 50 CU"),
        "{}",
        q.explain()
    );
    assert!(book.quote_amount(&sdxl, &img(1024, 1024, 10)).unwrap().high_cost);
    // A USD threshold against a credits price: compared in CU (1 USD = 156.25 CU; 5 s of veo3 = 312.5 CU).
    assert!(
        book.quote(&t("runway", "veo3"), &video("5", true))
            .unwrap()
            .high_cost
    );
    assert!(
        !book
            .quote(&t("runway", "gen4_turbo"), &video("1", false))
            .unwrap()
            .high_cost
    );
    // USD threshold, USD price.
    let kling = t("fal", "fal-ai/kling-video/v1.6/standard/text-to-video");
    assert!(!book.quote(&kling, &video("10", false)).unwrap().high_cost);
    assert!(book.quote(&kling, &video("30", false)).unwrap().high_cost);
}

#[test]
fn unknown_models_and_rules_that_do_not_apply_are_named() {
    let book = builtin();
    let missing = t("fal", "fal-ai/not-a-model");
    assert!(!book.has_model(&missing));
    assert!(book.has_model(&t("fal", "fal-ai/flux/dev")));
    let err = book.quote(&missing, &img(64, 64, 1)).unwrap_err();
    assert_eq!(err, PricingError::UnknownModel { target: missing });
    assert!(err.to_string().contains("fal/fal-ai/not-a-model"));

    let err = book.quote(&t("openai", "tts-1"), &img(64, 64, 1)).unwrap_err();
    match &err {
        PricingError::RuleDoesNotApply {
            target,
            rule,
            operation,
            reason,
        } => {
            assert_eq!(target.model.as_str(), "tts-1");
            assert_eq!(*rule, "per_1k_characters");
            assert_eq!(*operation, genroute_core::Operation::ImageGeneration);
            assert!(reason.contains("speech"), "{reason}");
        }
        other => panic!("{other}"),
    }
    // A rule without an operations list still refuses a job it cannot meter.
    let chars = book_with("[models.c]\nkind = \"per_1k_characters\"\nprice = \"0.1\"\n");
    let sfx: Job = AudioJobSpec::sound_effect("boom").build().unwrap().into();
    assert!(matches!(
        chars.quote(&t("test", "c"), &sfx).unwrap_err(),
        PricingError::RuleDoesNotApply { .. }
    ));
}

#[test]
fn explanation_reads_line_by_line() {
    let book = builtin();
    let q = book
        .quote(&t("fal", "fal-ai/flux/dev"), &img(1024, 1408, 2))
        .unwrap();
    let lines: Vec<&str> = q
        .explain()
        .lines()
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .leak()
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(
        lines,
        [
            "fal/fal-ai/flux/dev: per_megapixel rule, price list \"default\" (USD), verified 2026-11-21 (providers/fal/prices.toml:6)",
            "price 0.025 USD per MP",
            "1024x1408 = 1441792 px = 1.375 MP of 1048576 px per output",
            "1.375 MP rounded up to whole units → 2 MP",
            "2 MP × 0.025 USD/MP per output → 0.05 USD",
            "× 2 outputs → 0.1 USD",
            "converted at 1 USD = 156.25 CU → 15.625 CU",
        ]
    );
    assert_eq!(q.price_verified.as_deref(), Some("2026-11-21"));
    // Every line with an amount ends at the final figures.
    let last_usd = q
        .lines
        .iter()
        .filter_map(|l| l.amount.as_ref())
        .rfind(|m| *m.currency() == Currency::Usd);
    assert_eq!(last_usd, Some(&q.cost));
}

#[test]
fn charge_source_selection() {
    let book = builtin();
    let job = img(1024, 1024, 1);
    // 1. The provider reported money: returned as is, source preserved.
    let mut g = Generation::new(vec![]);
    g.charged = Some(Charge {
        amount: Money::cu(d("20")),
        source: CostSource::ProviderReported,
    });
    let c = book.charge(&t("scenario", "sdxl"), &job, &g).unwrap();
    assert_eq!(
        c,
        Charge {
            amount: Money::cu(d("20")),
            source: CostSource::ProviderReported
        }
    );
    g.charged = Some(Charge {
        amount: Money::cu(d("7")),
        source: CostSource::ConservativeEstimate,
    });
    assert_eq!(
        book.charge(&t("scenario", "sdxl"), &job, &g).unwrap().source,
        CostSource::ConservativeEstimate
    );

    // 2. A reported quantity: fal billable units (1.5 MP billed → 0.0375).
    let mut g = Generation::new(vec![]);
    g.usage.billable_units = Some(d("1.5"));
    let c = book.charge(&t("fal", "fal-ai/flux/dev"), &job, &g).unwrap();
    assert_eq!(
        c,
        Charge {
            amount: Money::usd(d("0.0375")),
            source: CostSource::ProviderReported
        }
    );
    // fal video: 3.008 s billed.
    g.usage.billable_units = Some(d("3.008"));
    let kling = t("fal", "fal-ai/kling-video/v1.6/standard/text-to-video");
    let c = book.charge(&kling, &video("5", false), &g).unwrap();
    assert_eq!(c.amount.amount(), d("0.13536"));
    assert_eq!(c.source, CostSource::ProviderReported);
    // ElevenLabs character-cost header.
    let mut g = Generation::new(vec![]);
    g.usage.characters = Some(2000);
    let c = book
        .charge(&t("elevenlabs", "eleven_v3"), &speech(1500), &g)
        .unwrap();
    assert_eq!(
        c,
        Charge {
            amount: Money::usd(d("0.2")),
            source: CostSource::ProviderReported
        }
    );
    // OpenAI tokens: 50 input (10 of them image) and 1056 output.
    let mut g = Generation::new(vec![]);
    g.usage.input_tokens = Some(50);
    g.usage.input_image_tokens = Some(10);
    g.usage.output_tokens = Some(1056);
    let c = book.charge(&t("openai", "gpt-image-1"), &job, &g).unwrap();
    // 40 × 5 + 10 × 10 + 1056 × 40 = 42,540 / 1M
    assert_eq!(
        c,
        Charge {
            amount: Money::usd(d("0.04254")),
            source: CostSource::ProviderReported
        }
    );

    // 3. Nothing reported: the price table.
    let g = Generation::new(vec![]);
    let c = book
        .charge(&t("runway", "gen4_turbo"), &video("10", false), &g)
        .unwrap();
    assert_eq!(c.source, CostSource::PriceTable);
    assert_eq!(c.amount.amount(), d("50"));
    // A rule with no metered quantity ignores unrelated usage.
    let mut g = Generation::new(vec![]);
    g.usage.characters = Some(10);
    let c = book.charge(&t("scenario", "sdxl"), &job, &g).unwrap();
    assert_eq!(
        c,
        Charge {
            amount: Money::cu(d("5")),
            source: CostSource::PriceTable
        }
    );
    // With an explanation.
    let (c, lines) = book
        .charge_explained(
            &t("elevenlabs", "eleven_v3"),
            &speech(1),
            &genroute_core::Usage {
                characters: Some(1000),
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(c.amount.amount(), d("0.1"));
    assert!(
        lines
            .iter()
            .any(|l| l.text.contains("provider reported 1000 billed characters"))
    );
}

#[test]
fn price_book_is_clone_send_sync() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<PriceBook>();
    let a = builtin();
    let b = a.clone();
    let job = img(64, 64, 1);
    let h = std::thread::spawn(move || b.quote_amount(&t("fal", "fal-ai/flux/dev"), &job).unwrap());
    assert_eq!(h.join().unwrap().cost.amount(), d("0.025"));
    assert_eq!(a.catalogs().len(), 6);
    let scenario = a
        .catalogs()
        .iter()
        .find(|(p, _)| p.as_str() == "scenario")
        .unwrap();
    assert_eq!(scenario.1, ["cu", "legacy_usd"]);
}

#[test]
fn charge_cu_is_charge_then_to_cu() {
    // With the built-in USD → CU rate, and with no conversion at all (CU left empty).
    let no_rate = PriceBook::builder()
        .catalogs(genroute_pricing::builtin::catalogs().unwrap())
        .build()
        .unwrap();
    let openai = |input: u64, output: u64| {
        let mut g = Generation::new(vec![]);
        g.usage.input_tokens = Some(input);
        g.usage.output_tokens = Some(output);
        g
    };
    let fal = {
        let mut g = Generation::new(vec![]);
        g.usage.billable_units = Some(d("1.5"));
        g
    };
    let reported = {
        let mut g = Generation::new(vec![]);
        g.charged = Some(Charge {
            amount: Money::usd(d("0.123456789")),
            source: CostSource::ProviderReported,
        });
        g
    };
    let cases = [
        (t("openai", "gpt-image-1"), img(1024, 1024, 1), openai(50, 1056)),
        (
            t("openai", "gpt-image-1"),
            img(1024, 1024, 1),
            Generation::new(vec![]),
        ),
        (t("fal", "fal-ai/flux/dev"), img(1024, 1024, 1), fal),
        (t("scenario", "sdxl"), img(1024, 1024, 1), Generation::new(vec![])),
        (
            t("runway", "gen4_turbo"),
            video("10", false),
            Generation::new(vec![]),
        ),
        (t("fal", "fal-ai/flux/dev"), img(1024, 1024, 1), reported),
    ];
    let mut converted = 0;
    for book in [builtin(), no_rate] {
        for (target, job, g) in &cases {
            let (charge, cu) = book.charge_cu(target, job, g).unwrap();
            let expected = book.charge(target, job, g).unwrap();
            assert_eq!(charge, expected, "{target}");
            assert_eq!(cu, book.to_cu(&expected.amount).ok(), "{target}");
            converted += usize::from(cu.is_some());
        }
        // An unpriced model fails the same way.
        let unknown = t("openai", "no-such-model");
        assert!(book.charge_cu(&unknown, &cases[0].1, &cases[0].2).is_err());
        assert!(book.charge(&unknown, &cases[0].1, &cases[0].2).is_err());
    }
    // The CU-priced catalogs convert without a rate; the USD ones only with it.
    assert!(
        converted > cases.len() && converted < 2 * cases.len(),
        "{converted}"
    );
}
