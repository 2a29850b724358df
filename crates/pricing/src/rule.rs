//! Price rules and how each turns a job (or reported usage) into an amount.

use genroute_core::{AudioKind, Decimal, EditOp, Job, Operation, Rounding, RoundingMode, Usage};

/// Where explanation lines go. The fast path ([`NoLines`]) never runs the closures, so it formats nothing.
pub(crate) trait Sink {
    /// Whether the sink keeps lines: work done only to word a line (such as comparing an amount with its
    /// rounding) is skipped when it does not.
    const EXPLAINS: bool = true;
    /// A line without an amount.
    fn note(&mut self, text: impl FnOnce() -> String);
    /// A line with the running amount, in the sink's current currency.
    fn step(&mut self, text: impl FnOnce() -> String, amount: Decimal);
}

/// The sink that keeps nothing.
pub(crate) struct NoLines;

impl Sink for NoLines {
    const EXPLAINS: bool = false;
    #[inline(always)]
    fn note(&mut self, _: impl FnOnce() -> String) {}
    #[inline(always)]
    fn step(&mut self, _: impl FnOnce() -> String, _: Decimal) {}
}

/// Why a rule could not price a job.
pub(crate) enum Fail {
    /// The job lacks what the rule meters, or no variant matches.
    NotApply(String),
    /// Decimal overflow.
    Overflow,
}

pub(crate) type R<T> = Result<T, Fail>;

fn na<T>(reason: impl Into<String>) -> R<T> {
    Err(Fail::NotApply(reason.into()))
}

pub(crate) fn mul(a: Decimal, b: Decimal) -> R<Decimal> {
    a.checked_mul(b).ok_or(Fail::Overflow)
}

fn div(a: Decimal, b: Decimal) -> R<Decimal> {
    a.checked_div(b).ok_or(Fail::Overflow)
}

/// `x / 1 000 000` exactly as `div(x, 1_000_000)` computes it (the same `Decimal`, scale included), without
/// a general 96-bit division for the amounts token prices produce (a mantissa within 64 bits, scale ≤ 19);
/// anything else takes the division itself.
///
/// This follows `rust_decimal`'s division for a 32-bit divisor: an exact quotient keeps the dividend's
/// scale; otherwise the quotient is scaled up by 10⁹ (the remainder, below 10⁶, then divides exactly) and
/// trailing zeros are stripped the way its `unscale` does (10⁸ only while the low 32 bits are zero, then
/// 10⁴, 10², 10 at most once each). A test compares the two bit for bit.
fn per_million(x: Decimal) -> R<Decimal> {
    const MILLION: u64 = 1_000_000;
    let scale = x.scale();
    let magnitude = u64::try_from(x.mantissa().unsigned_abs());
    let Ok(m) = magnitude else {
        return div(x, Decimal::from(MILLION));
    };
    if scale > 19 {
        return div(x, Decimal::from(MILLION));
    }
    if m == 0 {
        return Ok(Decimal::ZERO);
    }
    let negative = x.is_sign_negative();
    let (q, r) = (m / MILLION, m % MILLION);
    if r == 0 {
        return Ok(from_u96(u128::from(q), negative, scale));
    }
    // Scaled by 10⁹ the quotient is q·10⁹ + r·10³ = m·10³: kept as `base · 10^zeros` so every step below
    // is 64-bit arithmetic.
    let (mut base, mut zeros, mut s) = (m, 3usize, scale + 9);
    // 10⁸ only while the value's low 32 bits are zero (what `unscale` checks first).
    while base.wrapping_mul(POW10[zeros]) & 0xFFFF_FFFF == 0 && s >= 8 && strip(&mut base, &mut zeros, 8) {
        s -= 8;
    }
    for digits in [4, 2, 1] {
        if s >= digits as u32 && strip(&mut base, &mut zeros, digits) {
            s -= digits as u32;
        }
    }
    Ok(from_u96(u128::from(base) * u128::from(POW10[zeros]), negative, s))
}

/// Divides `base · 10^zeros` by `10^digits` (`digits` ≤ 8) if it is a multiple of it.
fn strip(base: &mut u64, zeros: &mut usize, digits: usize) -> bool {
    if *zeros >= digits {
        *zeros -= digits;
        return true;
    }
    let pow = POW10[digits - *zeros];
    if base.is_multiple_of(pow) {
        *base /= pow;
        *zeros = 0;
        return true;
    }
    false
}

/// A `Decimal` from a magnitude below 2⁹⁶, a sign and a scale ≤ 28.
fn from_u96(v: u128, negative: bool, scale: u32) -> Decimal {
    let word = |shift: u32| u32::try_from((v >> shift) & 0xFFFF_FFFF).unwrap_or(0);
    Decimal::from_parts(word(0), word(32), word(64), negative, scale)
}

/// `r.apply(value)` (rust_decimal's `round_dp_with_strategy`), the same `Decimal`, in 64-bit integer
/// arithmetic when the mantissa fits 64 bits and at most 19 digits are dropped: the kept digits are the
/// truncated quotient, bumped by one as the mode decides from the dropped part against half a unit; the
/// result has exactly `decimal_places`. Zero and anything wider take `apply` itself. A test compares the two
/// bit for bit for every mode.
pub(crate) fn round(value: Decimal, r: Rounding) -> Decimal {
    let scale = value.scale();
    let dp = r.decimal_places;
    if scale <= dp {
        return value;
    }
    let dropped = (scale - dp) as usize;
    let magnitude = u64::try_from(value.mantissa().unsigned_abs());
    let (Ok(m), Some(&pow)) = (magnitude, POW10.get(dropped)) else {
        return r.apply(value);
    };
    if m == 0 {
        return r.apply(value);
    }
    let negative = value.is_sign_negative();
    let (kept, rest) = (m / pow, m % pow);
    let half = pow / 2;
    let up = match r.mode {
        RoundingMode::HalfUp => rest >= half,
        RoundingMode::HalfDown => rest > half,
        RoundingMode::HalfEven => rest > half || (rest == half && kept & 1 == 1),
        RoundingMode::Up => rest != 0,
        RoundingMode::Down => false,
        RoundingMode::Ceiling => !negative && rest != 0,
        RoundingMode::Floor => negative && rest != 0,
    };
    from_u96(u128::from(kept) + u128::from(up), negative, dp)
}

/// 10⁰ … 10¹⁹, every power of ten a `u64` holds.
const POW10: [u64; 20] = {
    let mut t = [1u64; 20];
    let mut i = 1;
    while i < t.len() {
        t[i] = t[i - 1] * 10;
        i += 1;
    }
    t
};

/// `⌈chars / per_token⌉`, as `div(chars, per_token)?.ceil()` computes it. A whole positive divisor (the
/// catalogs' case) takes integer arithmetic: the ceiling of a quotient is a whole number at scale 0 either
/// way, so the result is the same `Decimal`, without a 96-bit division.
fn text_tokens(chars: u64, per_token: Decimal) -> R<Decimal> {
    if per_token.scale() == 0
        && per_token.is_sign_positive()
        && let Ok(k) = u64::try_from(per_token.mantissa())
        && k > 0
    {
        return Ok(Decimal::from(chars.div_ceil(k)));
    }
    Ok(div(Decimal::from(chars), per_token)?.ceil())
}

/// A number for people: trailing zeros dropped.
pub(crate) fn num(d: Decimal) -> String {
    d.normalize().to_string()
}

/// A rounding rule for people.
pub(crate) fn rounding_text(r: Rounding) -> String {
    let mode = match r.mode {
        RoundingMode::HalfUp => "half-up",
        RoundingMode::HalfDown => "half-down",
        RoundingMode::HalfEven => "half-even (banker's)",
        RoundingMode::Up => "up",
        RoundingMode::Down => "down",
        RoundingMode::Ceiling => "towards +∞",
        RoundingMode::Floor => "towards −∞",
    };
    match r.decimal_places {
        0 => format!("{mode} to whole units"),
        1 => format!("{mode} to 1 decimal place"),
        n => format!("{mode} to {n} decimal places"),
    }
}

/// A price that may depend on the job's quality and size.
#[derive(Clone, Debug)]
pub(crate) struct Priced {
    pub(crate) base: Option<Decimal>,
    pub(crate) variants: Vec<Variant>,
}

/// A conditional price: the first variant whose every condition holds wins; else the base price.
#[derive(Clone, Debug)]
pub(crate) struct Variant {
    pub(crate) quality: Option<String>,
    pub(crate) size: Option<(u32, u32)>,
    pub(crate) min_megapixels: Option<Decimal>,
    pub(crate) price: Decimal,
}

impl Variant {
    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(q) = &self.quality {
            parts.push(format!("quality {q}"));
        }
        if let Some((w, h)) = self.size {
            parts.push(format!("size {w}x{h}"));
        }
        if let Some(mp) = self.min_megapixels {
            parts.push(format!("≥ {} MP", num(mp)));
        }
        parts.join(", ")
    }
}

impl Priced {
    fn select<S: Sink>(&self, facts: &Facts<'_>, cur: &str, unit: &str, sink: &mut S) -> R<Decimal> {
        for v in &self.variants {
            if let Some(q) = &v.quality
                && facts.quality != Some(q.as_str())
            {
                continue;
            }
            if let Some(s) = v.size
                && facts.size != Some(s)
            {
                continue;
            }
            if let Some(min) = v.min_megapixels {
                match facts.size {
                    Some((w, h)) if megapixels(w, h) >= min => {}
                    _ => continue,
                }
            }
            sink.note(|| {
                format!(
                    "price {} {cur} per {unit} (variant: {})",
                    num(v.price),
                    v.describe()
                )
            });
            return Ok(v.price);
        }
        match self.base {
            Some(p) => {
                sink.note(|| format!("price {} {cur} per {unit}", num(p)));
                Ok(p)
            }
            None => na(format!(
                "no price for {}{}",
                facts
                    .quality
                    .map(|q| format!("quality {q:?}, "))
                    .unwrap_or_default(),
                facts
                    .size
                    .map(|(w, h)| format!("size {w}x{h}"))
                    .unwrap_or_else(|| "a job without a size".into())
            )),
        }
    }
}

/// One row of an output-token table: images of this quality and size cost this many output tokens.
#[derive(Clone, Debug)]
pub(crate) struct TokenRow {
    pub(crate) quality: String,
    pub(crate) size: (u32, u32),
    pub(crate) tokens: Decimal,
}

/// The metered unit of a first-unit-plus-extra rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    Megapixel,
    Second,
    Output,
    KCharacters,
}

impl Unit {
    pub(crate) fn from_str(s: &str) -> Option<Unit> {
        Some(match s {
            "megapixel" => Unit::Megapixel,
            "second" => Unit::Second,
            "output" => Unit::Output,
            "1k_characters" => Unit::KCharacters,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Megapixel => "MP",
            Unit::Second => "s",
            Unit::Output => "output",
            Unit::KCharacters => "1K characters",
        }
    }
}

/// A price rule.
#[derive(Clone, Debug)]
pub(crate) enum Rule {
    /// Price × number of outputs.
    PerOutput(Priced),
    /// One price per call, whatever the count.
    Fixed(Priced),
    /// Price × megapixels per output (optionally rounded) × outputs.
    PerMegapixel {
        price: Priced,
        quantity_rounding: Option<Rounding>,
        /// Pixels in one billed megapixel: 1,000,000 by default; fal bills 1024² = 1,048,576.
        pixels_per_megapixel: Decimal,
    },
    /// Price × seconds of output (optionally rounded).
    PerSecond {
        price: Priced,
        quantity_rounding: Option<Rounding>,
    },
    /// Price × thousands of characters (optionally rounded).
    PerKCharacters {
        price: Priced,
        quantity_rounding: Option<Rounding>,
    },
    /// Price × compute seconds (reported after the run; estimated before it).
    PerComputeSecond {
        price: Priced,
        estimated_seconds: Decimal,
    },
    /// Token prices per million; outputs quoted from a quality × size token table.
    PerToken {
        text_in: Option<Decimal>,
        image_in: Option<Decimal>,
        image_out: Decimal,
        output_tokens: Vec<TokenRow>,
        chars_per_text_token: Decimal,
        image_tokens_per_reference: Decimal,
    },
    /// base × steps/base_steps × (pixels/base_pixels)^exponent per output, rounded like the table.
    StepsResolution {
        base_price: Decimal,
        base_steps: u32,
        base_pixels: u64,
        pixel_exponent: u32,
        table_rounding: Option<Rounding>,
        default_steps: u32,
    },
    /// first + (units − 1) × extra, per output.
    FirstUnitPlusExtra {
        first: Decimal,
        extra: Decimal,
        unit: Unit,
        quantity_rounding: Option<Rounding>,
    },
}

impl Rule {
    /// The kind's name as written in TOML.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Rule::PerOutput(_) => "per_output",
            Rule::Fixed(_) => "fixed",
            Rule::PerMegapixel { .. } => "per_megapixel",
            Rule::PerSecond { .. } => "per_second",
            Rule::PerKCharacters { .. } => "per_1k_characters",
            Rule::PerComputeSecond { .. } => "per_compute_second",
            Rule::PerToken { .. } => "per_token",
            Rule::StepsResolution { .. } => "steps_resolution",
            Rule::FirstUnitPlusExtra { .. } => "first_unit_plus_extra",
        }
    }
}

/// Modifiers every rule kind may carry.
#[derive(Clone, Debug, Default)]
pub(crate) struct Modifiers {
    pub(crate) control: Option<Decimal>,
    pub(crate) audio: Option<Decimal>,
    pub(crate) per_reference: Option<Decimal>,
    pub(crate) rounding: Option<Rounding>,
    pub(crate) minimum: Option<Decimal>,
    pub(crate) default_quality: Option<String>,
    pub(crate) operations: Option<Vec<Operation>>,
}

/// What a job says about the quantities rules meter.
pub(crate) struct Facts<'a> {
    pub(crate) job: &'a Job,
    pub(crate) quality: Option<&'a str>,
    /// Output size per image (edits: the input size, × the factor for upscales; video: the resolution).
    pub(crate) size: Option<(u32, u32)>,
    pub(crate) count: u32,
}

impl<'a> Facts<'a> {
    pub(crate) fn of(job: &'a Job, default_quality: Option<&'a str>) -> Self {
        let size = match job {
            Job::Image(j) => Some((j.size().width(), j.size().height())),
            Job::Edit(e) => e.input_size().map(|d| match e.op() {
                EditOp::Upscale { factor } => (scale(d.width(), *factor), scale(d.height(), *factor)),
                _ => (d.width(), d.height()),
            }),
            Job::Video(v) => v.resolution().map(|d| (d.width(), d.height())),
            Job::Audio(_) => None,
        };
        // `auto` (OpenAI's default) leaves the choice to the provider: price the catalog's default.
        let quality = job
            .extras()
            .get("quality")
            .and_then(|v| v.as_str())
            .filter(|q| !q.eq_ignore_ascii_case("auto"))
            .or(default_quality);
        Facts {
            job,
            quality,
            size,
            count: job.output_count(),
        }
    }
}

fn scale(side: u32, factor: Decimal) -> u32 {
    let v = (Decimal::from(side) * factor).ceil();
    u32::try_from(v.mantissa() / 10i128.pow(v.scale())).unwrap_or(u32::MAX)
}

pub(crate) fn megapixels(w: u32, h: u32) -> Decimal {
    Decimal::from(u64::from(w) * u64::from(h)) / Decimal::from(1_000_000u32)
}

fn round_q<S: Sink>(q: Decimal, r: Option<Rounding>, what: &str, sink: &mut S) -> Decimal {
    match r {
        Some(r) => {
            let out = r.apply(q);
            if S::EXPLAINS && out != q {
                sink.note(|| {
                    format!(
                        "{} {what} rounded {} → {} {what}",
                        num(q),
                        rounding_text(r),
                        num(out)
                    )
                });
            }
            out
        }
        None => q,
    }
}

fn seconds_of(job: &Job) -> R<Decimal> {
    match job {
        Job::Video(v) => Ok(v.duration_seconds()),
        Job::Audio(a) => match a.duration_seconds() {
            Some(s) => Ok(s),
            None => na("the job fixes no duration (speech is priced by characters)"),
        },
        _ => na("the job has no duration"),
    }
}

fn need_size(f: &Facts<'_>) -> R<(u32, u32)> {
    match f.size {
        Some(s) => Ok(s),
        None => match f.job {
            Job::Edit(_) => na("the edit does not declare its input size (`input_size`)"),
            Job::Video(_) => na("the video job has no resolution"),
            _ => na("the job has no pixel size"),
        },
    }
}

fn plural(n: u32, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

impl Rule {
    /// The rule's amount before multipliers, rounding and minimums. With `usage`, a metered quantity the
    /// provider reported replaces the one derived from the job; returns `(amount, used_reported)`.
    pub(crate) fn base<S: Sink>(
        &self,
        f: &Facts<'_>,
        usage: Option<&Usage>,
        cur: &str,
        sink: &mut S,
    ) -> R<(Decimal, bool)> {
        let count = Decimal::from(f.count);
        match self {
            Rule::PerOutput(p) => {
                let price = p.select(f, cur, "output", sink)?;
                if let Some(units) = usage.and_then(|u| u.billable_units) {
                    let a = mul(price, units)?;
                    sink.step(
                        || {
                            format!(
                                "provider reported {} billable outputs × {} {cur}",
                                num(units),
                                num(price)
                            )
                        },
                        a,
                    );
                    return Ok((a, true));
                }
                let a = mul(price, count)?;
                sink.step(
                    || format!("{} × {} {cur}", plural(f.count, "output"), num(price)),
                    a,
                );
                Ok((a, false))
            }
            Rule::Fixed(p) => {
                let price = p.select(f, cur, "call", sink)?;
                sink.step(
                    || "fixed price per call (independent of count)".to_string(),
                    price,
                );
                Ok((price, false))
            }
            Rule::PerMegapixel {
                price,
                quantity_rounding,
                pixels_per_megapixel,
            } => {
                let p = price.select(f, cur, "MP", sink)?;
                if let Some(units) = usage.and_then(|u| u.billable_units) {
                    let a = mul(p, units)?;
                    sink.step(
                        || {
                            format!(
                                "provider reported {} billable MP × {} {cur}/MP",
                                num(units),
                                num(p)
                            )
                        },
                        a,
                    );
                    return Ok((a, true));
                }
                let (w, h) = need_size(f)?;
                let px = u64::from(w) * u64::from(h);
                let mp = Decimal::from(px) / *pixels_per_megapixel;
                sink.note(|| {
                    format!(
                        "{w}x{h} = {px} px = {} MP of {} px per output",
                        num(mp),
                        num(*pixels_per_megapixel)
                    )
                });
                let mp = round_q(mp, *quantity_rounding, "MP", sink);
                let per = mul(mp, p)?;
                sink.step(|| format!("{} MP × {} {cur}/MP per output", num(mp), num(p)), per);
                let a = mul(per, count)?;
                if f.count != 1 {
                    sink.step(|| format!("× {}", plural(f.count, "output")), a);
                }
                Ok((a, false))
            }
            Rule::PerSecond {
                price,
                quantity_rounding,
            } => {
                let p = price.select(f, cur, "second", sink)?;
                let reported = usage.and_then(|u| u.output_seconds.or(u.billable_units));
                let (secs, rep) = match reported {
                    Some(s) => {
                        sink.note(|| format!("provider reported {} s of output", num(s)));
                        (s, true)
                    }
                    None => {
                        let s = seconds_of(f.job)?;
                        sink.note(|| format!("duration {} s", num(s)));
                        (round_q(s, *quantity_rounding, "s", sink), false)
                    }
                };
                let a = mul(secs, p)?;
                sink.step(|| format!("{} s × {} {cur}/s", num(secs), num(p)), a);
                Ok((a, rep))
            }
            Rule::PerKCharacters {
                price,
                quantity_rounding,
            } => {
                let p = price.select(f, cur, "1K characters", sink)?;
                let reported = usage.and_then(|u| u.characters.map(Decimal::from).or(u.billable_units));
                let (chars, rep) = match (reported, f.job) {
                    (Some(c), _) => {
                        sink.note(|| format!("provider reported {} billed characters", num(c)));
                        (c, true)
                    }
                    (None, Job::Audio(a)) if matches!(a.kind(), AudioKind::Speech { .. }) => {
                        let c = Decimal::from(a.characters());
                        sink.note(|| format!("{} characters of text", num(c)));
                        (c, false)
                    }
                    _ => return na("the job has no text to speak"),
                };
                let k = div(chars, Decimal::from(1000))?;
                let k = if rep {
                    k
                } else {
                    round_q(k, *quantity_rounding, "K characters", sink)
                };
                let a = mul(k, p)?;
                sink.step(|| format!("{} K characters × {} {cur}/1K", num(k), num(p)), a);
                Ok((a, rep))
            }
            Rule::PerComputeSecond {
                price,
                estimated_seconds,
            } => {
                let p = price.select(f, cur, "compute second", sink)?;
                let (secs, rep) = match usage.and_then(|u| u.compute_seconds.or(u.billable_units)) {
                    Some(s) => (s, true),
                    None => (*estimated_seconds, false),
                };
                let a = mul(secs, p)?;
                sink.step(
                    || {
                        format!(
                            "{} compute s ({}) × {} {cur}/s",
                            num(secs),
                            if rep { "reported" } else { "estimated" },
                            num(p)
                        )
                    },
                    a,
                );
                Ok((a, rep))
            }
            Rule::PerToken {
                text_in,
                image_in,
                image_out,
                output_tokens,
                chars_per_text_token,
                image_tokens_per_reference,
            } => {
                let reported = usage.and_then(|u| u.output_tokens.map(|o| (u, o)));
                let (t_in, i_in, out, rep) = match reported {
                    Some((u, out)) => {
                        let image = u.input_image_tokens.unwrap_or(0);
                        let text = u.input_tokens.unwrap_or(0).saturating_sub(image);
                        sink.note(|| {
                            format!(
                                "provider reported {text} text-in, {image} image-in, {out} image-out tokens"
                            )
                        });
                        (
                            Decimal::from(text),
                            Decimal::from(image),
                            Decimal::from(out),
                            true,
                        )
                    }
                    None => {
                        if !matches!(f.job, Job::Image(_) | Job::Edit(_)) {
                            return na("token tables price images only");
                        }
                        let (w, h) = need_size(f)?;
                        let q = f.quality.unwrap_or("");
                        let row = output_tokens
                            .iter()
                            .find(|r| r.quality == q && r.size == (w, h))
                            .ok_or_else(|| {
                                Fail::NotApply(format!("no output-token entry for quality {q:?} at {w}x{h}"))
                            })?;
                        let out = mul(row.tokens, count)?;
                        sink.note(|| {
                            format!(
                                "{} × {} output tokens ({q} quality, {w}x{h})",
                                plural(f.count, "image"),
                                num(row.tokens)
                            )
                        });
                        let chars = f.job.prompt().map(|p| p.chars().count()).unwrap_or(0);
                        let text = text_tokens(chars as u64, *chars_per_text_token)?;
                        sink.note(|| {
                            format!(
                                "prompt of {chars} characters ≈ {} text tokens (1 per {} characters, rounded up)",
                                num(text),
                                num(*chars_per_text_token)
                            )
                        });
                        let refs = match f.job {
                            Job::Image(i) => i.references().len() as u64,
                            Job::Edit(_) => 1,
                            _ => 0,
                        };
                        let image = mul(Decimal::from(refs), *image_tokens_per_reference)?;
                        (text, image, out, false)
                    }
                };
                let mut total = Decimal::ZERO;
                for (tokens, price, what) in [
                    (t_in, *text_in, "text-in"),
                    (i_in, *image_in, "image-in"),
                    (out, Some(*image_out), "image-out"),
                ] {
                    let Some(price) = price else { continue };
                    if tokens.is_zero() {
                        continue;
                    }
                    let part = per_million(mul(tokens, price)?)?;
                    total = total.checked_add(part).ok_or(Fail::Overflow)?;
                    sink.step(
                        || {
                            format!(
                                "+ {} {what} tokens × {} {cur}/1M = {}",
                                num(tokens),
                                num(price),
                                num(part)
                            )
                        },
                        total,
                    );
                }
                Ok((total, rep))
            }
            Rule::StepsResolution {
                base_price,
                base_steps,
                base_pixels,
                pixel_exponent,
                table_rounding,
                default_steps,
            } => {
                let (steps, size) = match f.job {
                    Job::Image(i) => (i.steps(), need_size(f)?),
                    Job::Edit(e) if matches!(e.op(), EditOp::Img2Img { .. } | EditOp::Inpaint { .. }) => {
                        (None, need_size(f)?)
                    }
                    _ => {
                        return na("steps × resolution tables price image generations (and img2img/inpaint)");
                    }
                };
                let steps = steps.unwrap_or(*default_steps);
                let (w, h) = size;
                let px = Decimal::from(u64::from(w) * u64::from(h));
                let bpx = Decimal::from(*base_pixels);
                let mut num_ = mul(*base_price, Decimal::from(steps))?;
                let mut den = Decimal::from(*base_steps);
                for _ in 0..*pixel_exponent {
                    num_ = mul(num_, px)?;
                    den = mul(den, bpx)?;
                }
                let unit = div(num_, den)?;
                sink.step(
                    || {
                        format!(
                            "{} {cur} × {steps}/{base_steps} steps × ({w}x{h} = {} px / {} px)^{pixel_exponent}",
                            num(*base_price),
                            u64::from(w) * u64::from(h),
                            base_pixels
                        )
                    },
                    unit,
                );
                let unit = match table_rounding {
                    Some(r) => {
                        let out = r.apply(unit);
                        sink.step(
                            || format!("table price per output, rounded {}", rounding_text(*r)),
                            out,
                        );
                        out
                    }
                    None => unit,
                };
                let a = mul(unit, count)?;
                if f.count != 1 {
                    sink.step(|| format!("× {}", plural(f.count, "output")), a);
                }
                Ok((a, false))
            }
            Rule::FirstUnitPlusExtra {
                first,
                extra,
                unit,
                quantity_rounding,
            } => {
                let uname = unit.name();
                let reported = usage.and_then(|u| u.billable_units);
                let (q, per_output, rep) = match (reported, unit) {
                    (Some(q), _) => {
                        sink.note(|| format!("provider reported {} billable {uname}", num(q)));
                        (q, false, true)
                    }
                    (None, Unit::Megapixel) => {
                        let (w, h) = need_size(f)?;
                        let mp = megapixels(w, h);
                        sink.note(|| format!("{w}x{h} = {} MP per output", num(mp)));
                        (round_q(mp, *quantity_rounding, "MP", sink), true, false)
                    }
                    (None, Unit::Second) => {
                        let s = seconds_of(f.job)?;
                        (round_q(s, *quantity_rounding, "s", sink), false, false)
                    }
                    (None, Unit::Output) => (count, false, false),
                    (None, Unit::KCharacters) => match f.job {
                        Job::Audio(a) if matches!(a.kind(), AudioKind::Speech { .. }) => {
                            let k = div(Decimal::from(a.characters()), Decimal::from(1000))?;
                            (round_q(k, *quantity_rounding, "K characters", sink), false, false)
                        }
                        _ => return na("the job has no text to speak"),
                    },
                };
                let extra_units = if q > Decimal::ONE {
                    q - Decimal::ONE
                } else {
                    Decimal::ZERO
                };
                let one = mul(extra_units, *extra)?
                    .checked_add(*first)
                    .ok_or(Fail::Overflow)?;
                sink.step(
                    || {
                        format!(
                            "first {uname} {} {cur} + {} extra {uname} × {} {cur}",
                            num(*first),
                            num(extra_units),
                            num(*extra)
                        )
                    },
                    one,
                );
                if per_output && f.count != 1 {
                    let a = mul(one, count)?;
                    sink.step(|| format!("× {}", plural(f.count, "output")), a);
                    return Ok((a, rep));
                }
                Ok((one, rep))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// splitmix64 from `seed`: deterministic random numbers without a dependency.
    fn splitmix64(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn text_tokens_is_the_ceiling_of_the_division_bit_for_bit() {
        let divisors = [
            "4",
            "1",
            "3",
            "7",
            "1000",
            "4.0",
            "3.5",
            "0.25",
            "18446744073709551616",
            "-4",
        ];
        for d in divisors {
            let per: Decimal = d.parse().unwrap();
            for chars in (0..300).chain([1_000_003, u64::from(u32::MAX), u64::MAX - 1, u64::MAX]) {
                let fast = text_tokens(chars, per).ok().map(|v| v.serialize());
                let slow = div(Decimal::from(chars), per).ok().map(|q| q.ceil().serialize());
                assert_eq!(fast, slow, "{chars} / {d}");
            }
        }
        // A zero divisor fails as the division does.
        assert!(matches!(text_tokens(5, Decimal::ZERO), Err(Fail::Overflow)));
    }

    #[test]
    fn round_is_apply_bit_for_bit() {
        let modes = [
            RoundingMode::HalfUp,
            RoundingMode::HalfDown,
            RoundingMode::HalfEven,
            RoundingMode::Up,
            RoundingMode::Down,
            RoundingMode::Ceiling,
            RoundingMode::Floor,
        ];
        let mut next = splitmix64(11);
        let mut values: Vec<Decimal> = [
            "0",
            "-0.00000",
            "0.00005",
            "-0.00005",
            "0.00015",
            "0.00025",
            "1.23455",
            "-1.23445",
            "6.646875",
            "18446744073709551615",
            "0.18446744073709551615",
            "-1844674407370955161.5",
            "79228162514264337593543950335",
            "0.0000000000000000000000000001",
            "99999.99995",
            "-99999.99995",
        ]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
        for i in 0..30_000u64 {
            let (a, b) = (next(), next());
            let mantissa: i128 = match i % 4 {
                0 => i128::from(a % 100_000) * if b & 1 == 0 { 1 } else { -1 },
                1 => i128::from(a as i64),
                2 => i128::from(a >> (b % 64)),
                _ => (i128::from(a) << 30) * if b & 1 == 0 { 1 } else { -1 },
            };
            if let Ok(v) = Decimal::try_from_i128_with_scale(mantissa, (b >> 8) as u32 % 29) {
                values.push(v);
            }
        }
        for v in values {
            for mode in modes {
                for decimal_places in [0, 1, 2, 4, 6, 9, 20, 28] {
                    let r = Rounding { decimal_places, mode };
                    assert_eq!(round(v, r).serialize(), r.apply(v).serialize(), "{v} {r:?}");
                }
            }
        }
    }

    #[test]
    fn per_million_is_the_division_bit_for_bit() {
        let million = Decimal::from(1_000_000u32);
        let check = |x: Decimal| {
            let fast = per_million(x).ok().map(|d| d.serialize());
            let slow = div(x, million).ok().map(|d| d.serialize());
            assert_eq!(fast, slow, "{x} (scale {})", x.scale());
        };
        // Token counts times catalog-like prices (the path's real inputs).
        for price in ["0", "5", "10", "40", "2.5", "0.01", "32.00", "1.25", "0.000001"] {
            let price: Decimal = price.parse().unwrap();
            for tokens in (0..20_000u64).chain([999_999, 1_000_000, 1_000_001, 123_456_789_012]) {
                check(Decimal::from(tokens) * price);
            }
        }
        // Random mantissas and scales, inside and outside the fast path's range, both signs.
        let mut next = splitmix64(7);
        for i in 0..200_000u32 {
            let a = next();
            let b = next();
            let small = |n: u64, below: u64| n % below;
            let mantissa: i128 = match i % 5 {
                0 => i128::from(a as i64),
                1 => i128::from(a >> small(b, 64)),
                2 => i128::from(small(a, 100_000)) * 10i128.pow(small(b, 14) as u32),
                3 => (i128::from(a) << 32 | i128::from(b >> 32)) * if b & 1 == 0 { 1 } else { -1 },
                _ => i128::from(small(a, 2_000_000)) * 10i128.pow(small(b, 8) as u32),
            };
            let c = next();
            let scale = if i % 3 == 0 { small(c, 5) } else { small(c, 29) } as u32;
            if let Ok(x) = Decimal::try_from_i128_with_scale(mantissa, scale) {
                check(x);
            }
        }
        // Where the 10⁸ step applies (low 32 bits zero) and where it does not.
        for x in [
            "4294967296",
            "429496729600000000",
            "1.00000000",
            "0.5",
            "-7.25",
            "18446744073709551615",
        ] {
            check(x.parse().unwrap());
        }
    }
}
