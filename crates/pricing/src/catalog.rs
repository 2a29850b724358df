//! Catalogs: parsing and validating `prices.toml` files and override fragments.
//!
//! Parsing is two-phase: serde reads raw tables (every table denies unknown fields, every value keeps its
//! span), then [`validate`] turns them into typed rules, checking what serde cannot (rule kinds, fields that
//! do not apply to a kind, negative prices, missing fields) and naming the key path and line of each
//! problem.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::str::FromStr;
use std::sync::Arc;

use genroute_core::{Currency, Decimal, ModelId, Operation, ProviderId, Rounding};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use toml::Spanned;
use toml::value::Datetime;

use crate::error::{CatalogError, CatalogProblem};
use crate::rule::{Modifiers, Priced, Rule, TokenRow, Unit, Variant};

/// The name a single-list file's list gets when it does not say `name = "..."`.
pub const DEFAULT_LIST: &str = "default";

/// One provider's prices, as loaded from one `prices.toml` (or one override fragment).
///
/// A catalog holds one or more named *price lists*, each in one currency, searched in order: Scenario ships
/// `cu` (compute units, seed 002) before `legacy_usd` (the dollar tables of seed 001), so a model priced in
/// both is quoted in CU and a model only in the legacy tables still has a price.
#[derive(Clone, Debug)]
pub struct Catalog {
    pub(crate) provider: ProviderId,
    pub(crate) origin: Arc<str>,
    pub(crate) lists: Vec<PriceList>,
}

/// One named list of a catalog: a currency and the models it prices.
#[derive(Clone, Debug)]
pub(crate) struct PriceList {
    pub(crate) name: String,
    /// `None` only in an override that inherits the currency of the list it patches.
    pub(crate) currency: Option<Currency>,
    pub(crate) usd_per_unit: Option<Decimal>,
    pub(crate) plan_discounts: Option<bool>,
    pub(crate) models: Vec<(ModelId, Arc<ModelPrice>)>,
}

/// One model's price: its rule, modifiers and provenance.
#[derive(Clone, Debug)]
pub(crate) struct ModelPrice {
    pub(crate) rule: Rule,
    pub(crate) mods: Modifiers,
    pub(crate) verified: String,
    /// `file:line` where the price was declared.
    pub(crate) declared_at: String,
}

impl Catalog {
    /// Parses and validates a catalog. `origin` (a file name) is used in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        parse(text, origin, false)
    }

    /// Parses an override fragment: the same format, but `currency` may be left out (the overridden list's
    /// currency is kept) and `verified` is still required for every price.
    pub(crate) fn override_from_toml(text: &str, origin: &str) -> Result<Catalog, CatalogError> {
        parse(text, origin, true)
    }

    /// The provider this catalog prices.
    pub fn provider(&self) -> &ProviderId {
        &self.provider
    }

    /// Where it was loaded from.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The names of its price lists, in lookup order.
    pub fn list_names(&self) -> Vec<&str> {
        self.lists.iter().map(|l| l.name.as_str()).collect()
    }

    /// The ids of the models priced, in every list, sorted and deduplicated.
    pub fn model_ids(&self) -> Vec<&ModelId> {
        let set: BTreeSet<&ModelId> = self
            .lists
            .iter()
            .flat_map(|l| l.models.iter().map(|(id, _)| id))
            .collect();
        set.into_iter().collect()
    }
}

// ---------------------------------------------------------------------------------------------------------
// Raw (phase one)

/// A number as written in TOML: a string (`"0.025"`, recommended: exact), an integer, or a float (read
/// through its shortest round-trip text, so `0.025` is exactly 0.025).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Num(pub(crate) Decimal);

impl<'de> Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a decimal number, preferably as a string such as \"0.025\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Num, E> {
                Decimal::from_str_exact(v.trim())
                    .map(Num)
                    .map_err(|_| E::custom(format!("{v:?} is not a decimal number")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(Decimal::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                if !v.is_finite() {
                    return Err(E::custom("a price must be a finite number"));
                }
                Decimal::from_str(&v.to_string())
                    .map(Num)
                    .map_err(|_| E::custom(format!("{v} does not fit a decimal")))
            }
        }
        d.deserialize_any(V)
    }
}

type S<T> = Spanned<T>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    provider: S<String>,
    name: Option<S<String>>,
    currency: Option<S<String>>,
    usd_per_unit: Option<S<Num>>,
    plan_discounts: Option<bool>,
    verified: Option<S<Datetime>>,
    models: Option<BTreeMap<String, S<RawModel>>>,
    catalogs: Option<BTreeMap<String, S<RawList>>>,
    lookup_order: Option<S<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawList {
    currency: Option<S<String>>,
    usd_per_unit: Option<S<Num>>,
    plan_discounts: Option<bool>,
    verified: Option<S<Datetime>>,
    #[serde(default)]
    models: BTreeMap<String, S<RawModel>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawModel {
    kind: Option<S<String>>,
    verified: Option<S<Datetime>>,
    note: Option<String>,
    operations: Option<S<Vec<String>>>,
    default_quality: Option<S<String>>,
    // price-based kinds
    price: Option<S<Num>>,
    variants: Option<S<Vec<S<RawVariant>>>>,
    quantity_rounding: Option<S<Rounding>>,
    // per_megapixel
    pixels_per_megapixel: Option<S<Num>>,
    // every kind
    rounding: Option<S<Rounding>>,
    minimum: Option<S<Num>>,
    multipliers: Option<S<RawMultipliers>>,
    // per_token
    text_in_per_million: Option<S<Num>>,
    image_in_per_million: Option<S<Num>>,
    image_out_per_million: Option<S<Num>>,
    output_tokens: Option<S<Vec<S<RawTokenRow>>>>,
    chars_per_text_token: Option<S<Num>>,
    image_tokens_per_reference: Option<S<Num>>,
    // steps_resolution
    base_price: Option<S<Num>>,
    base_steps: Option<S<Num>>,
    base_width: Option<S<Num>>,
    base_height: Option<S<Num>>,
    pixel_exponent: Option<S<Num>>,
    table_rounding: Option<S<Rounding>>,
    default_steps: Option<S<Num>>,
    // first_unit_plus_extra
    first_price: Option<S<Num>>,
    extra_price: Option<S<Num>>,
    unit: Option<S<String>>,
    // per_compute_second
    estimated_seconds: Option<S<Num>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVariant {
    quality: Option<String>,
    size: Option<S<String>>,
    min_megapixels: Option<S<Num>>,
    price: S<Num>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenRow {
    quality: String,
    size: S<String>,
    tokens: S<Num>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMultipliers {
    control: Option<S<Num>>,
    audio: Option<S<Num>>,
    per_reference: Option<S<Num>>,
}

// ---------------------------------------------------------------------------------------------------------
// Errors with places

struct Ctx<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Ctx<'_> {
    fn line(&self, span: Option<Range<usize>>) -> Option<usize> {
        let start = span?.start.min(self.text.len());
        Some(
            self.text.as_bytes()[..start]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1,
        )
    }

    fn err(
        &self,
        span: Option<Range<usize>>,
        key: impl Into<String>,
        problem: CatalogProblem,
        message: impl Into<String>,
    ) -> CatalogError {
        CatalogError {
            origin: self.origin.to_owned(),
            line: self.line(span),
            key: key.into(),
            problem,
            message: message.into(),
        }
    }

    fn toml_error(&self, e: &toml::de::Error) -> CatalogError {
        let msg = e.message().trim().to_owned();
        let problem = if msg.contains("unknown field") {
            CatalogProblem::UnknownField
        } else if msg.contains("missing field") {
            CatalogProblem::MissingField
        } else if msg.contains("duplicate key") {
            CatalogProblem::PricedTwice
        } else {
            CatalogProblem::Syntax
        };
        let key = e
            .span()
            .map(|s| key_path_at(self.text, s.start))
            .unwrap_or_default();
        self.err(e.span(), key, problem, msg)
    }
}

/// Quotes a key segment when it is not a bare TOML key.
pub(crate) fn key_segment(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// Best-effort dotted key path of the value at `offset`: the table header in force there, the key of the
/// line, and the key under the offset when it sits inside an inline table.
fn key_path_at(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let mut header = String::new();
    let mut line_start = 0;
    for line in text[..offset].split_inclusive('\n') {
        if line.ends_with('\n') {
            let t = line.trim();
            if t.starts_with('[') {
                header = t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
            }
            line_start += line.len();
        }
    }
    let line = text[line_start..].lines().next().unwrap_or("");
    let t = line.trim();
    if t.starts_with('[') {
        return t.trim_matches(|c| c == '[' || c == ']').trim().to_owned();
    }
    let mut path = header;
    if let Some((key, _)) = t.split_once('=') {
        let key = key.trim();
        if !key.is_empty() && !key.starts_with('#') {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(key);
        }
        // A key inside an inline table on this line.
        let at = &text[offset..];
        let word: String = at
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect();
        if !word.is_empty() && word != key && at[word.len()..].trim_start().starts_with('=') {
            path.push('.');
            path.push_str(&word);
        }
    }
    path
}

// ---------------------------------------------------------------------------------------------------------
// Phase two

fn parse(text: &str, origin: &str, is_override: bool) -> Result<Catalog, CatalogError> {
    let ctx = Ctx { text, origin };
    let raw: RawFile = toml::from_str(text).map_err(|e| ctx.toml_error(&e))?;
    let provider = ProviderId::new(raw.provider.get_ref()).map_err(|e| {
        ctx.err(
            Some(raw.provider.span()),
            "provider",
            CatalogProblem::Invalid,
            e.to_string(),
        )
    })?;
    let file_verified = raw
        .verified
        .as_ref()
        .map(|d| date(&ctx, d, "verified"))
        .transpose()?;

    let mut lists = Vec::new();
    match (raw.catalogs, raw.models) {
        (Some(_), Some(_)) => {
            return Err(ctx.err(
                None,
                "models",
                CatalogProblem::Invalid,
                "a file has either top-level `models` (one list) or `catalogs` (named lists), not both",
            ));
        }
        (Some(catalogs), None) => {
            for (top_key, value) in [
                ("name", raw.name.is_some()),
                ("currency", raw.currency.is_some()),
                ("usd_per_unit", raw.usd_per_unit.is_some()),
                ("plan_discounts", raw.plan_discounts.is_some()),
            ] {
                if value {
                    return Err(ctx.err(
                        None,
                        top_key,
                        CatalogProblem::FieldNotApplicable,
                        format!("with named `catalogs`, `{top_key}` belongs inside each catalog"),
                    ));
                }
            }
            let order: Vec<String> = match &raw.lookup_order {
                Some(o) => o.get_ref().clone(),
                None if catalogs.len() == 1 => catalogs.keys().cloned().collect(),
                None => {
                    return Err(ctx.err(
                        None,
                        "lookup_order",
                        CatalogProblem::MissingField,
                        "a file with several catalogs must say in which order they are searched",
                    ));
                }
            };
            let order_span = raw.lookup_order.as_ref().map(|o| o.span());
            let listed: BTreeSet<&String> = order.iter().collect();
            let declared: BTreeSet<&String> = catalogs.keys().collect();
            if listed != declared || listed.len() != order.len() {
                return Err(ctx.err(
                    order_span,
                    "lookup_order",
                    CatalogProblem::Invalid,
                    format!(
                        "must name every catalog exactly once: declared {:?}, listed {:?}",
                        declared, order
                    ),
                ));
            }
            let mut catalogs = catalogs;
            for name in order {
                let Some(list) = catalogs.remove(&name) else {
                    continue;
                };
                let span = list.span();
                let list = list.into_inner();
                let path = format!("catalogs.{}", key_segment(&name));
                lists.push(build_list(
                    &ctx,
                    &path,
                    name,
                    Some(span),
                    list.currency,
                    list.usd_per_unit,
                    list.plan_discounts,
                    list.verified
                        .as_ref()
                        .map(|d| date(&ctx, d, "verified"))
                        .transpose()?
                        .or(file_verified.clone()),
                    list.models,
                    is_override,
                )?);
            }
        }
        (None, models) => {
            if raw.lookup_order.is_some() {
                return Err(ctx.err(
                    raw.lookup_order.as_ref().map(|o| o.span()),
                    "lookup_order",
                    CatalogProblem::FieldNotApplicable,
                    "`lookup_order` only applies to files with named `catalogs`",
                ));
            }
            let name = raw
                .name
                .map(|n| n.into_inner())
                .unwrap_or_else(|| DEFAULT_LIST.to_owned());
            lists.push(build_list(
                &ctx,
                "",
                name,
                None,
                raw.currency,
                raw.usd_per_unit,
                raw.plan_discounts,
                file_verified,
                models.unwrap_or_default(),
                is_override,
            )?);
        }
    }
    Ok(Catalog {
        provider,
        origin: Arc::from(origin),
        lists,
    })
}

fn date(ctx: &Ctx<'_>, d: &S<Datetime>, key: &str) -> Result<String, CatalogError> {
    let v = d.get_ref();
    match (&v.date, &v.time) {
        (Some(date), None) => Ok(date.to_string()),
        _ => Err(ctx.err(
            Some(d.span()),
            key,
            CatalogProblem::Invalid,
            format!("`verified` must be a plain date such as 2026-11-21, got {v}"),
        )),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

#[allow(clippy::too_many_arguments)]
fn build_list(
    ctx: &Ctx<'_>,
    prefix: &str,
    name: String,
    span: Option<Range<usize>>,
    currency: Option<S<String>>,
    usd_per_unit: Option<S<Num>>,
    plan_discounts: Option<bool>,
    verified: Option<String>,
    models: BTreeMap<String, S<RawModel>>,
    is_override: bool,
) -> Result<PriceList, CatalogError> {
    let currency = match currency {
        Some(c) => Some(Currency::from_str(c.get_ref()).map_err(|e| {
            ctx.err(
                Some(c.span()),
                join(prefix, "currency"),
                CatalogProblem::UnknownValue,
                e.to_string(),
            )
        })?),
        None if is_override => None,
        None => {
            return Err(ctx.err(
                span,
                join(prefix, "currency"),
                CatalogProblem::MissingField,
                "every price list declares its currency: USD, CU or credits:<provider>",
            ));
        }
    };
    let usd_per_unit = match usd_per_unit {
        Some(n) => {
            if !matches!(currency, Some(Currency::Credits(_))) {
                return Err(ctx.err(
                    Some(n.span()),
                    join(prefix, "usd_per_unit"),
                    CatalogProblem::FieldNotApplicable,
                    "`usd_per_unit` declares what one provider credit is worth; only credits lists have it",
                ));
            }
            Some(non_negative(ctx, &n, &join(prefix, "usd_per_unit"))?)
        }
        None => None,
    };
    let mut out = Vec::with_capacity(models.len());
    for (id, raw) in models {
        let path = join(prefix, &format!("models.{}", key_segment(&id)));
        let model_id = ModelId::new(&id)
            .map_err(|e| ctx.err(Some(raw.span()), &path, CatalogProblem::Invalid, e.to_string()))?;
        let span = raw.span();
        let price = build_model(ctx, &path, span, raw.into_inner(), verified.as_deref())?;
        out.push((model_id, Arc::new(price)));
    }
    Ok(PriceList {
        name,
        currency,
        usd_per_unit,
        plan_discounts,
        models: out,
    })
}

fn non_negative(ctx: &Ctx<'_>, n: &S<Num>, key: &str) -> Result<Decimal, CatalogError> {
    let v = n.get_ref().0;
    if v.is_sign_negative() && !v.is_zero() {
        return Err(ctx.err(
            Some(n.span()),
            key,
            CatalogProblem::NegativePrice,
            format!("must not be negative, got {v}"),
        ));
    }
    Ok(v)
}

fn positive_int(ctx: &Ctx<'_>, n: &S<Num>, key: &str) -> Result<u32, CatalogError> {
    let v = non_negative(ctx, n, key)?;
    if v.is_zero() || !v.fract().is_zero() || v > Decimal::from(u32::MAX) {
        return Err(ctx.err(
            Some(n.span()),
            key,
            CatalogProblem::Invalid,
            format!("must be a whole number above zero, got {v}"),
        ));
    }
    Ok(u32::try_from(v.mantissa() / 10i128.pow(v.scale())).unwrap_or(u32::MAX))
}

fn parse_size(ctx: &Ctx<'_>, s: &S<String>, key: &str) -> Result<(u32, u32), CatalogError> {
    let bad = || {
        ctx.err(
            Some(s.span()),
            key,
            CatalogProblem::UnknownValue,
            format!("size must look like \"1024x1024\", got {:?}", s.get_ref()),
        )
    };
    let (w, h) = s.get_ref().split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if w == 0 || h == 0 {
        return Err(bad());
    }
    Ok((w, h))
}

const KINDS: &[&str] = &[
    "per_output",
    "fixed",
    "per_megapixel",
    "per_second",
    "per_1k_characters",
    "per_compute_second",
    "per_token",
    "steps_resolution",
    "first_unit_plus_extra",
];

fn operation_from_str(s: &str) -> Option<Operation> {
    Some(match s {
        "image_generation" => Operation::ImageGeneration,
        "video_generation" => Operation::VideoGeneration,
        "speech" => Operation::Speech,
        "sound_effect" => Operation::SoundEffect,
        "music" => Operation::Music,
        "upscale" => Operation::Upscale,
        "remove_background" => Operation::RemoveBackground,
        "img2img" => Operation::Img2Img,
        "inpaint" => Operation::Inpaint,
        "vectorize" => Operation::Vectorize,
        "pixelate" => Operation::Pixelate,
        _ => return None,
    })
}

fn build_model(
    ctx: &Ctx<'_>,
    path: &str,
    span: Range<usize>,
    raw: RawModel,
    inherited_verified: Option<&str>,
) -> Result<ModelPrice, CatalogError> {
    let key = |k: &str| format!("{path}.{k}");
    let Some(kind_s) = raw.kind.as_ref() else {
        return Err(ctx.err(
            Some(span),
            key("kind"),
            CatalogProblem::MissingField,
            format!("every price needs a rule `kind`, one of {}", KINDS.join(", ")),
        ));
    };
    let kind = kind_s.get_ref().as_str();
    if !KINDS.contains(&kind) {
        return Err(ctx.err(
            Some(kind_s.span()),
            key("kind"),
            CatalogProblem::UnknownRuleKind,
            format!("unknown rule kind {kind:?}; expected one of {}", KINDS.join(", ")),
        ));
    }

    // Which optional keys each kind takes (beyond the common ones).
    let present: [(&str, Option<Range<usize>>); 22] = [
        (
            "pixels_per_megapixel",
            raw.pixels_per_megapixel.as_ref().map(|v| v.span()),
        ),
        ("price", raw.price.as_ref().map(|v| v.span())),
        ("variants", raw.variants.as_ref().map(|v| v.span())),
        (
            "quantity_rounding",
            raw.quantity_rounding.as_ref().map(|v| v.span()),
        ),
        ("default_quality", raw.default_quality.as_ref().map(|v| v.span())),
        (
            "text_in_per_million",
            raw.text_in_per_million.as_ref().map(|v| v.span()),
        ),
        (
            "image_in_per_million",
            raw.image_in_per_million.as_ref().map(|v| v.span()),
        ),
        (
            "image_out_per_million",
            raw.image_out_per_million.as_ref().map(|v| v.span()),
        ),
        ("output_tokens", raw.output_tokens.as_ref().map(|v| v.span())),
        (
            "chars_per_text_token",
            raw.chars_per_text_token.as_ref().map(|v| v.span()),
        ),
        (
            "image_tokens_per_reference",
            raw.image_tokens_per_reference.as_ref().map(|v| v.span()),
        ),
        ("base_price", raw.base_price.as_ref().map(|v| v.span())),
        ("base_steps", raw.base_steps.as_ref().map(|v| v.span())),
        ("base_width", raw.base_width.as_ref().map(|v| v.span())),
        ("base_height", raw.base_height.as_ref().map(|v| v.span())),
        ("pixel_exponent", raw.pixel_exponent.as_ref().map(|v| v.span())),
        ("table_rounding", raw.table_rounding.as_ref().map(|v| v.span())),
        ("default_steps", raw.default_steps.as_ref().map(|v| v.span())),
        ("first_price", raw.first_price.as_ref().map(|v| v.span())),
        ("extra_price", raw.extra_price.as_ref().map(|v| v.span())),
        ("unit", raw.unit.as_ref().map(|v| v.span())),
        (
            "estimated_seconds",
            raw.estimated_seconds.as_ref().map(|v| v.span()),
        ),
    ];
    let allowed: &[&str] = match kind {
        "per_output" | "fixed" => &["price", "variants", "default_quality"],
        "per_megapixel" => &[
            "price",
            "variants",
            "default_quality",
            "quantity_rounding",
            "pixels_per_megapixel",
        ],
        "per_second" | "per_1k_characters" => &["price", "variants", "default_quality", "quantity_rounding"],
        "per_compute_second" => &["price", "variants", "default_quality", "estimated_seconds"],
        "per_token" => &[
            "default_quality",
            "text_in_per_million",
            "image_in_per_million",
            "image_out_per_million",
            "output_tokens",
            "chars_per_text_token",
            "image_tokens_per_reference",
        ],
        "steps_resolution" => &[
            "base_price",
            "base_steps",
            "base_width",
            "base_height",
            "pixel_exponent",
            "table_rounding",
            "default_steps",
        ],
        _ => &["first_price", "extra_price", "unit", "quantity_rounding"],
    };
    for (name, sp) in &present {
        if sp.is_some() && !allowed.contains(name) {
            return Err(ctx.err(
                sp.clone(),
                key(name),
                CatalogProblem::FieldNotApplicable,
                format!("`{name}` does not apply to rule kind {kind:?}"),
            ));
        }
    }
    let need = |v: &Option<S<Num>>, name: &str| -> Result<Decimal, CatalogError> {
        match v {
            Some(n) => non_negative(ctx, n, &key(name)),
            None => Err(ctx.err(
                Some(span.clone()),
                key(name),
                CatalogProblem::MissingField,
                format!("rule kind {kind:?} needs `{name}`"),
            )),
        }
    };
    let opt = |v: &Option<S<Num>>, name: &str| -> Result<Option<Decimal>, CatalogError> {
        v.as_ref().map(|n| non_negative(ctx, n, &key(name))).transpose()
    };

    let priced = |raw: &RawModel| -> Result<Priced, CatalogError> {
        let base = opt(&raw.price, "price")?;
        let mut variants = Vec::new();
        if let Some(vs) = &raw.variants {
            for (i, v) in vs.get_ref().iter().enumerate() {
                let vkey = |k: &str| format!("{path}.variants[{i}].{k}");
                let inner = v.get_ref();
                let size = inner
                    .size
                    .as_ref()
                    .map(|s| parse_size(ctx, s, &vkey("size")))
                    .transpose()?;
                let min_megapixels = inner
                    .min_megapixels
                    .as_ref()
                    .map(|n| non_negative(ctx, n, &vkey("min_megapixels")))
                    .transpose()?;
                variants.push(Variant {
                    quality: inner.quality.clone(),
                    size,
                    min_megapixels,
                    price: non_negative(ctx, &inner.price, &vkey("price"))?,
                });
            }
        }
        if base.is_none() && variants.is_empty() {
            return Err(ctx.err(
                Some(span.clone()),
                key("price"),
                CatalogProblem::MissingField,
                format!("rule kind {kind:?} needs `price` (or `variants`)"),
            ));
        }
        Ok(Priced { base, variants })
    };
    let quantity_rounding = raw.quantity_rounding.as_ref().map(|r| *r.get_ref());

    let rule = match kind {
        "per_output" => Rule::PerOutput(priced(&raw)?),
        "fixed" => Rule::Fixed(priced(&raw)?),
        "per_megapixel" => Rule::PerMegapixel {
            price: priced(&raw)?,
            quantity_rounding,
            pixels_per_megapixel: match &raw.pixels_per_megapixel {
                Some(n) => Decimal::from(positive_int(ctx, n, &key("pixels_per_megapixel"))?),
                None => Decimal::from(1_000_000u32),
            },
        },
        "per_second" => Rule::PerSecond {
            price: priced(&raw)?,
            quantity_rounding,
        },
        "per_1k_characters" => Rule::PerKCharacters {
            price: priced(&raw)?,
            quantity_rounding,
        },
        "per_compute_second" => Rule::PerComputeSecond {
            price: priced(&raw)?,
            estimated_seconds: need(&raw.estimated_seconds, "estimated_seconds")?,
        },
        "per_token" => {
            let mut rows = Vec::new();
            if let Some(t) = &raw.output_tokens {
                for (i, row) in t.get_ref().iter().enumerate() {
                    let r = row.get_ref();
                    let k = |f: &str| format!("{path}.output_tokens[{i}].{f}");
                    let tokens = non_negative(ctx, &r.tokens, &k("tokens"))?;
                    rows.push(TokenRow {
                        quality: r.quality.clone(),
                        size: parse_size(ctx, &r.size, &k("size"))?,
                        tokens,
                    });
                }
            }
            let out_price = need(&raw.image_out_per_million, "image_out_per_million")?;
            if rows.is_empty() {
                return Err(ctx.err(
                    Some(span.clone()),
                    key("output_tokens"),
                    CatalogProblem::MissingField,
                    "a per_token rule needs an `output_tokens` table (quality × size → tokens) to quote",
                ));
            }
            let chars = opt(&raw.chars_per_text_token, "chars_per_text_token")?;
            if chars.is_some_and(|c| c.is_zero()) {
                return Err(ctx.err(
                    raw.chars_per_text_token.as_ref().map(|v| v.span()),
                    key("chars_per_text_token"),
                    CatalogProblem::Invalid,
                    "must be above zero",
                ));
            }
            Rule::PerToken {
                text_in: opt(&raw.text_in_per_million, "text_in_per_million")?,
                image_in: opt(&raw.image_in_per_million, "image_in_per_million")?,
                image_out: out_price,
                output_tokens: rows,
                chars_per_text_token: chars.unwrap_or(Decimal::from(4)),
                image_tokens_per_reference: opt(
                    &raw.image_tokens_per_reference,
                    "image_tokens_per_reference",
                )?
                .unwrap_or(Decimal::ZERO),
            }
        }
        "steps_resolution" => {
            let int = |v: &Option<S<Num>>, name: &str| -> Result<u32, CatalogError> {
                match v {
                    Some(n) => positive_int(ctx, n, &key(name)),
                    None => Err(ctx.err(
                        Some(span.clone()),
                        key(name),
                        CatalogProblem::MissingField,
                        format!("rule kind \"steps_resolution\" needs `{name}`"),
                    )),
                }
            };
            let base_steps = int(&raw.base_steps, "base_steps")?;
            Rule::StepsResolution {
                base_price: need(&raw.base_price, "base_price")?,
                base_steps,
                base_pixels: u64::from(int(&raw.base_width, "base_width")?)
                    * u64::from(int(&raw.base_height, "base_height")?),
                pixel_exponent: match &raw.pixel_exponent {
                    Some(n) => {
                        let e = positive_int(ctx, n, &key("pixel_exponent"))?;
                        if e > 4 {
                            return Err(ctx.err(
                                Some(n.span()),
                                key("pixel_exponent"),
                                CatalogProblem::Invalid,
                                "pixel_exponent above 4 is not supported",
                            ));
                        }
                        e
                    }
                    None => 1,
                },
                table_rounding: raw.table_rounding.as_ref().map(|r| *r.get_ref()),
                default_steps: match &raw.default_steps {
                    Some(n) => positive_int(ctx, n, &key("default_steps"))?,
                    None => base_steps,
                },
            }
        }
        _ => {
            let unit = match &raw.unit {
                Some(u) => Unit::from_str(u.get_ref()).ok_or_else(|| {
                    ctx.err(
                        Some(u.span()),
                        key("unit"),
                        CatalogProblem::UnknownValue,
                        format!(
                            "unknown unit {:?}; expected megapixel, second, output or 1k_characters",
                            u.get_ref()
                        ),
                    )
                })?,
                None => {
                    return Err(ctx.err(
                        Some(span.clone()),
                        key("unit"),
                        CatalogProblem::MissingField,
                        "rule kind \"first_unit_plus_extra\" needs `unit`",
                    ));
                }
            };
            Rule::FirstUnitPlusExtra {
                first: need(&raw.first_price, "first_price")?,
                extra: need(&raw.extra_price, "extra_price")?,
                unit,
                quantity_rounding,
            }
        }
    };

    let mut mods = Modifiers {
        rounding: raw.rounding.as_ref().map(|r| *r.get_ref()),
        minimum: opt(&raw.minimum, "minimum")?,
        default_quality: raw.default_quality.as_ref().map(|q| q.get_ref().clone()),
        ..Modifiers::default()
    };
    if let Some(m) = &raw.multipliers {
        let m = m.get_ref();
        let mk = |k: &str| format!("{path}.multipliers.{k}");
        mods.control = m
            .control
            .as_ref()
            .map(|n| non_negative(ctx, n, &mk("control")))
            .transpose()?;
        mods.audio = m
            .audio
            .as_ref()
            .map(|n| non_negative(ctx, n, &mk("audio")))
            .transpose()?;
        mods.per_reference = m
            .per_reference
            .as_ref()
            .map(|n| non_negative(ctx, n, &mk("per_reference")))
            .transpose()?;
    }
    if let Some(ops) = &raw.operations {
        let mut set = Vec::new();
        for o in ops.get_ref() {
            let op = operation_from_str(o).ok_or_else(|| {
                ctx.err(
                    Some(ops.span()),
                    key("operations"),
                    CatalogProblem::UnknownValue,
                    format!("unknown operation {o:?}"),
                )
            })?;
            set.push(op);
        }
        if set.is_empty() {
            return Err(ctx.err(
                Some(ops.span()),
                key("operations"),
                CatalogProblem::Invalid,
                "an empty `operations` list would price nothing; leave it out to accept every operation the rule can price",
            ));
        }
        mods.operations = Some(set);
    }
    let _ = &raw.note;
    let verified = match raw.verified.as_ref() {
        Some(d) => date(ctx, d, &key("verified"))?,
        None => inherited_verified.map(str::to_owned).ok_or_else(|| {
            ctx.err(
                Some(span.clone()),
                key("verified"),
                CatalogProblem::MissingField,
                "every price carries the date it was verified (`verified = 2026-11-21`)",
            )
        })?,
    };
    Ok(ModelPrice {
        rule,
        mods,
        verified,
        declared_at: match ctx.line(Some(span)) {
            Some(l) => format!("{}:{l}", ctx.origin),
            None => ctx.origin.to_owned(),
        },
    })
}
