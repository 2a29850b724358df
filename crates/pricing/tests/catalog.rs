#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Catalog validation (each error names its key, file and line) and user overrides.

use genroute_core::{Decimal, ImageJobSpec, Job, ModelId, ModelRef, Money, ProviderId};
use genroute_pricing::{Catalog, CatalogError, CatalogProblem, PriceBook, PricingError};

fn d(s: &str) -> Decimal {
    Decimal::from_str_exact(s).unwrap()
}

fn t(p: &str, m: &str) -> ModelRef {
    ModelRef::new(ProviderId::new(p).unwrap(), ModelId::new(m).unwrap())
}

fn img(w: u32, h: u32) -> Job {
    ImageJobSpec::new("x").size(w, h).build().unwrap().into()
}

fn parse_err(text: &str) -> CatalogError {
    Catalog::from_toml(text, "prices.toml").unwrap_err()
}

const HEAD: &str = "provider = \"p\"\ncurrency = \"USD\"\nverified = 2026-11-21\n";

#[test]
fn negative_price_names_key_and_line() {
    let e = parse_err(&format!(
        "{HEAD}\n[models.\"a/b\"]\nkind = \"per_output\"\nprice = \"-0.01\"\n"
    ));
    assert_eq!(e.problem, CatalogProblem::NegativePrice);
    assert_eq!(e.key, "models.\"a/b\".price");
    assert_eq!(e.line, Some(7));
    assert_eq!(e.origin, "prices.toml");
    assert_eq!(
        e.to_string(),
        "prices.toml:7: `models.\"a/b\".price`: must not be negative, got -0.01"
    );
    // Also inside variants, multipliers and minimums.
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"per_output\"\nvariants = [{{ size = \"1x1\", price = -1 }}]\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::NegativePrice, "models.m.variants[0].price")
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"per_output\"\nprice = 1\nmultipliers = {{ control = \"-1.2\" }}\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::NegativePrice, "models.m.multipliers.control")
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"per_output\"\nprice = 1\nminimum = -0.5\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::NegativePrice, "models.m.minimum", Some(7))
    );
}

#[test]
fn unknown_rule_kind() {
    let e = parse_err(&format!("{HEAD}[models.m]\nkind = \"per_pixel\"\nprice = 1\n"));
    assert_eq!(e.problem, CatalogProblem::UnknownRuleKind);
    assert_eq!(e.key, "models.m.kind");
    assert_eq!(e.line, Some(5));
    assert!(
        e.message.contains("per_pixel") && e.message.contains("per_megapixel"),
        "{}",
        e.message
    );
}

#[test]
fn unknown_unit_operation_and_currency() {
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"first_unit_plus_extra\"\nunit = \"frame\"\nfirst_price = 1\nextra_price = 1\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::UnknownValue, "models.m.unit", Some(6))
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"fixed\"\nprice = 1\noperations = [\"dance\"]\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::UnknownValue, "models.m.operations")
    );
    let e = parse_err("provider = \"p\"\ncurrency = \"EUR\"\n");
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::UnknownValue, "currency", Some(2))
    );
}

#[test]
fn missing_fields() {
    let e = parse_err(&format!("{HEAD}[models.m]\nprice = 1\n"));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::MissingField, "models.m.kind")
    );
    let e = parse_err(&format!("{HEAD}[models.m]\nkind = \"per_output\"\n"));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::MissingField, "models.m.price")
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"steps_resolution\"\nbase_price = 1\nbase_width = 512\nbase_height = 512\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::MissingField, "models.m.base_steps")
    );
    let e = parse_err("provider = \"p\"\ncurrency = \"USD\"\n[models.m]\nkind = \"fixed\"\nprice = 1\n");
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::MissingField, "models.m.verified", Some(3))
    );
    let e = parse_err("provider = \"p\"\n[models.m]\nkind = \"fixed\"\nprice = 1\nverified = 2026-01-01\n");
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::MissingField, "currency")
    );
    let e = parse_err("currency = \"USD\"\n");
    assert_eq!(e.problem, CatalogProblem::MissingField);
    assert!(e.message.contains("provider"), "{}", e.message);
}

#[test]
fn unknown_fields_are_denied_everywhere() {
    let e = parse_err(&format!("{HEAD}[models.m]\nkind = \"fixed\"\npricee = 1\n"));
    assert_eq!(e.problem, CatalogProblem::UnknownField);
    assert_eq!(e.key, "models.m.pricee");
    assert_eq!(e.line, Some(6));
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"fixed\"\nprice = 1\nrounding = {{ decimal_places = 3, mood = \"up\" }}\n"
    ));
    assert_eq!(e.problem, CatalogProblem::UnknownField);
    assert_eq!(e.key, "models.m.rounding.mood");
    let e = parse_err(&format!("{HEAD}colour = \"blue\"\n"));
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::UnknownField, "colour", Some(4))
    );
    // A key the format knows, on the wrong kind.
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"per_output\"\nprice = 1\nbase_steps = 30\n"
    ));
    assert_eq!(e.problem, CatalogProblem::FieldNotApplicable);
    assert_eq!((e.key.as_str(), e.line), ("models.m.base_steps", Some(7)));
}

#[test]
fn model_priced_twice() {
    // Twice in one file: TOML itself refuses the duplicate table.
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"fixed\"\nprice = 1\n[models.m]\nkind = \"fixed\"\nprice = 2\n"
    ));
    assert_eq!(e.problem, CatalogProblem::PricedTwice, "{e}");
    assert_eq!(e.line, Some(7));
    // Twice across two catalogs of the same provider and list.
    let a = Catalog::from_toml(
        &format!("{HEAD}[models.m]\nkind = \"fixed\"\nprice = 1\n"),
        "a.toml",
    )
    .unwrap();
    let b = Catalog::from_toml(
        &format!("{HEAD}\n[models.m]\nkind = \"fixed\"\nprice = 2\n"),
        "b.toml",
    )
    .unwrap();
    let err = PriceBook::builder().catalog(a).catalog(b).build().unwrap_err();
    let e = err.catalog().unwrap();
    assert_eq!(
        (e.problem, e.key.as_str(), e.origin.as_str(), e.line),
        (CatalogProblem::PricedTwice, "models.m", "b.toml", Some(5))
    );
}

#[test]
fn other_invalid_values() {
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"steps_resolution\"\nbase_price = 1\nbase_steps = 0\nbase_width = 1\nbase_height = 1\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::Invalid, "models.m.base_steps")
    );
    let e = parse_err(&format!("{HEAD}[models.m]\nkind = \"fixed\"\nprice = \"abc\"\n"));
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::Syntax, "models.m.price", Some(6))
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"fixed\"\nprice = 1\nverified = 2026-11-21T10:00:00Z\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::Invalid, "models.m.verified")
    );
    let e = parse_err(&format!(
        "{HEAD}[models.m]\nkind = \"per_output\"\nvariants = [{{ size = \"big\", price = 1 }}]\n"
    ));
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::UnknownValue, "models.m.variants[0].size")
    );
    let e = parse_err("provider = \"p\"\nusd_per_unit = \"0.01\"\ncurrency = \"USD\"\n");
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::FieldNotApplicable, "usd_per_unit")
    );
    let e =
        parse_err("provider = \"p\"\n[catalogs.a]\ncurrency = \"USD\"\n[catalogs.b]\ncurrency = \"CU\"\n");
    assert_eq!(
        (e.problem, e.key.as_str()),
        (CatalogProblem::MissingField, "lookup_order")
    );
    let e = parse_err(
        "provider = \"p\"\nlookup_order = [\"a\"]\n[catalogs.a]\ncurrency = \"USD\"\n[catalogs.b]\ncurrency = \"CU\"\n",
    );
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (CatalogProblem::Invalid, "lookup_order", Some(2))
    );
    let e = parse_err(
        "provider = \"p\"\n[catalogs.a]\ncurrency = \"USD\"\n[catalogs.a.models.m]\nkind = \"fixed\"\nprice = -1\nverified = 2026-01-01\n",
    );
    assert_eq!(
        (e.problem, e.key.as_str(), e.line),
        (
            CatalogProblem::NegativePrice,
            "catalogs.a.models.m.price",
            Some(6)
        )
    );
    let e = parse_err("this is not toml");
    assert_eq!(e.problem, CatalogProblem::Syntax);
    assert_eq!(e.line, Some(1));
}

#[test]
fn overrides_replace_and_add_prices() {
    let fragment = r#"
provider = "fal"
[models."fal-ai/flux/dev"]
kind = "per_output"
price = "0.02"
verified = 2026-12-01

[models."fal-ai/my-finetune"]
kind = "per_megapixel"
price = "0.05"
verified = 2026-12-01
"#;
    let book = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(fragment, "genroute.toml")
        .build()
        .unwrap();
    let q = book
        .quote(&t("fal", "fal-ai/flux/dev"), &img(1024, 1024))
        .unwrap();
    assert_eq!(q.cost, Money::usd(d("0.02")));
    assert_eq!(q.price_verified.as_deref(), Some("2026-12-01"));
    assert!(q.explain().contains("(genroute.toml:3)"), "{}", q.explain());
    assert_eq!(
        book.quote(&t("fal", "fal-ai/my-finetune"), &img(1000, 1000))
            .unwrap()
            .cost
            .amount(),
        d("0.05")
    );
    // Untouched models keep their catalog price.
    assert_eq!(
        book.quote(&t("fal", "fal-ai/flux/schnell"), &img(1000, 1000))
            .unwrap()
            .cost
            .amount(),
        d("0.003")
    );
}

#[test]
fn overrides_for_scenario_patch_the_cu_list_unless_named() {
    let unnamed = "provider = \"scenario\"\n[models.upscale]\nkind = \"per_output\"\nprice = 8\nverified = 2026-12-01\n";
    let book = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(unnamed, "o.toml")
        .build()
        .unwrap();
    let up = genroute_core::EditJobSpec::new(
        genroute_core::EditOp::Upscale { factor: d("2") },
        genroute_core::MediaInput::Url {
            url: "https://x".into(),
        },
    )
    .build()
    .unwrap()
    .into();
    assert_eq!(
        book.quote(&t("scenario", "upscale"), &up).unwrap().cost,
        Money::cu(d("8"))
    );

    let named = "provider = \"scenario\"\nname = \"legacy_usd\"\n[models.upscale]\nkind = \"per_output\"\nprice = \"0.02\"\nverified = 2026-12-01\n";
    let book = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(named, "o.toml")
        .select_catalog(ProviderId::new("scenario").unwrap(), "legacy_usd")
        .build()
        .unwrap();
    assert_eq!(
        book.quote(&t("scenario", "upscale"), &up).unwrap().cost,
        Money::usd(d("0.02"))
    );
}

#[test]
fn overrides_can_add_a_provider_and_are_validated() {
    let new = "provider = \"mine\"\ncurrency = \"USD\"\n[models.m]\nkind = \"fixed\"\nprice = 1\nverified = 2026-12-01\n";
    let book = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(new, "o.toml")
        .build()
        .unwrap();
    assert!(book.has_model(&t("mine", "m")));

    // A new provider's list needs a currency.
    let no_currency = "provider = \"mine\"\n[models.m]\nkind = \"fixed\"\nprice = 1\nverified = 2026-12-01\n";
    let err = PriceBook::builder()
        .overrides_toml(no_currency, "o.toml")
        .build()
        .unwrap_err();
    assert_eq!(err.catalog().unwrap().problem, CatalogProblem::MissingField);
    // A currency different from the list it patches.
    let wrong = "provider = \"fal\"\ncurrency = \"CU\"\n[models.m]\nkind = \"fixed\"\nprice = 1\nverified = 2026-12-01\n";
    let err = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(wrong, "o.toml")
        .build()
        .unwrap_err();
    let e = err.catalog().unwrap();
    assert_eq!(
        (e.problem, e.key.as_str(), e.origin.as_str()),
        (CatalogProblem::Invalid, "currency", "o.toml")
    );
    // Same validation as catalogs, naming the override's origin and line.
    let negative = "provider = \"fal\"\n\n[models.\"fal-ai/flux/dev\"]\nkind = \"per_output\"\nprice = -1\nverified = 2026-12-01\n";
    let err = PriceBook::builtin_builder()
        .unwrap()
        .overrides_toml(negative, "genroute.toml")
        .build()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid price catalog: genroute.toml:5: `models.\"fal-ai/flux/dev\".price`: must not be negative, got -1"
    );
    // Selecting an unknown list is an error.
    let err = PriceBook::builtin_builder()
        .unwrap()
        .select_catalog(ProviderId::new("scenario").unwrap(), "nope")
        .build()
        .unwrap_err();
    assert!(matches!(err, PricingError::Config(_)));
}

#[test]
fn builtin_catalogs_parse_and_every_price_is_dated() {
    for (origin, text) in genroute_pricing::builtin::SOURCES {
        let cat = Catalog::from_toml(text, origin).unwrap();
        assert_eq!(cat.origin(), *origin);
        assert!(!cat.model_ids().is_empty());
    }
    let scenario = genroute_pricing::builtin::catalog("scenario").unwrap().unwrap();
    assert_eq!(scenario.list_names(), ["cu", "legacy_usd"]);
    assert!(genroute_pricing::builtin::catalog("nope").is_none());
}

#[test]
fn prices_may_be_strings_integers_or_floats_and_stay_exact() {
    let text = format!(
        "{HEAD}[models.s]\nkind = \"fixed\"\nprice = \"0.025\"\n[models.i]\nkind = \"fixed\"\nprice = 3\n[models.f]\nkind = \"fixed\"\nprice = 0.1\n"
    );
    let book = PriceBook::builder()
        .catalog(Catalog::from_toml(&text, "p.toml").unwrap())
        .build()
        .unwrap();
    for (m, want) in [("s", "0.025"), ("i", "3"), ("f", "0.1")] {
        assert_eq!(
            book.quote(&t("p", m), &img(8, 8)).unwrap().cost,
            Money::usd(d(want)),
            "{m}"
        );
    }
}

#[test]
fn key_paths_survive_non_ascii_text() {
    let e = parse_err(&format!(
        "{HEAD}# prix × sortie — «tarif»\n[models.\"modèle/é\"]\nkind = \"fixed\" # ×\nprïce = 1\n"
    ));
    assert_eq!(e.problem, CatalogProblem::Syntax, "{e}");
    assert_eq!(e.line, Some(7));
    let e = parse_err(&format!(
        "{HEAD}# prix × sortie\n[models.\"modèle/é\"]\nkind = \"fixed\" # ×\ncoût = 1\n"
    ));
    assert!(
        matches!(e.problem, CatalogProblem::UnknownField | CatalogProblem::Syntax),
        "{e}"
    );
    assert_eq!(e.line, Some(7));
    let e = parse_err(&format!(
        "{HEAD}[models.\"modèle/é\"]\nkind = \"fixed\"\nprice = -2\n"
    ));
    assert_eq!(e.key, "models.\"modèle/é\".price");
}
