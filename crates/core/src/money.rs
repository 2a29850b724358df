//! Money: an exact decimal amount tagged with its currency.
//!
//! Amounts are [`rust_decimal::Decimal`], never floating point. Arithmetic is only defined between amounts
//! of the same currency (`checked_add` and friends return [`MoneyError::CurrencyMismatch`] otherwise);
//! changing currency takes an explicit [`ExchangeRate`]. Rounding is always explicit, through [`Rounding`].
//! Serialised as `{"amount":"0.025","currency":"USD"}`: the amount is a string, so the scale (trailing
//! zeros included) survives a round trip exactly.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::ids::{IdError, ProviderId};

/// A unit of account.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
#[non_exhaustive]
pub enum Currency {
    /// US dollars.
    Usd,
    /// Compute units: the budget currency of the ledger.
    Cu,
    /// A provider's own prepaid credits (e.g. Runway or Stability credits). Never equal to USD without a
    /// configured conversion, even where a provider documents one credit as one cent.
    Credits(ProviderId),
}

impl Currency {
    /// The canonical spelling: `USD`, `CU`, or `credits:<provider>`.
    pub fn code(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Currency::Usd => f.write_str("USD"),
            Currency::Cu => f.write_str("CU"),
            Currency::Credits(provider) => write!(f, "credits:{provider}"),
        }
    }
}

/// A string that names no currency.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown currency {0:?}: expected USD, CU or credits:<provider>")]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if trimmed.eq_ignore_ascii_case("USD") {
            return Ok(Currency::Usd);
        }
        if trimmed.eq_ignore_ascii_case("CU") {
            return Ok(Currency::Cu);
        }
        if let Some(provider) = trimmed.strip_prefix("credits:") {
            return ProviderId::new(provider)
                .map(Currency::Credits)
                .map_err(|_: IdError| UnknownCurrency(s.to_owned()));
        }
        Err(UnknownCurrency(s.to_owned()))
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a value is rounded to a number of decimal places.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingMode {
    /// Midpoints away from zero (0.0005 → 0.001). The default for money.
    HalfUp,
    /// Midpoints towards zero (0.0005 → 0.000).
    HalfDown,
    /// Midpoints to the even neighbour (banker's rounding). Only where a rule asks for it.
    HalfEven,
    /// Always away from zero (0.0001 → 0.001).
    Up,
    /// Always towards zero (truncation).
    Down,
    /// Towards positive infinity.
    Ceiling,
    /// Towards negative infinity.
    Floor,
}

impl RoundingMode {
    fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
            RoundingMode::HalfDown => RoundingStrategy::MidpointTowardZero,
            RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
            RoundingMode::Up => RoundingStrategy::AwayFromZero,
            RoundingMode::Down => RoundingStrategy::ToZero,
            RoundingMode::Ceiling => RoundingStrategy::ToPositiveInfinity,
            RoundingMode::Floor => RoundingStrategy::ToNegativeInfinity,
        }
    }
}

/// A rounding rule: decimal places and a mode.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rounding {
    /// Decimal places kept (0 = whole units).
    pub decimal_places: u32,
    /// What happens to the discarded digits.
    pub mode: RoundingMode,
}

impl Rounding {
    /// Half-up to `decimal_places`.
    pub const fn half_up(decimal_places: u32) -> Self {
        Self {
            decimal_places,
            mode: RoundingMode::HalfUp,
        }
    }

    /// Applies the rule to a bare decimal.
    pub fn apply(self, value: Decimal) -> Decimal {
        value.round_dp_with_strategy(self.decimal_places, self.mode.strategy())
    }
}

/// What went wrong in money arithmetic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// An operation mixed two currencies.
    #[error("cannot combine {left} with {right} without an explicit conversion")]
    CurrencyMismatch {
        /// The left operand's currency.
        left: Currency,
        /// The right operand's currency.
        right: Currency,
    },
    /// The result does not fit a decimal.
    #[error("money arithmetic overflowed")]
    Overflow,
    /// A conversion was asked for with a rate for other currencies.
    #[error("rate converts {rate_from} to {rate_to}, but the amount is in {actual}")]
    WrongRate {
        /// The currency the rate converts from.
        rate_from: Currency,
        /// The currency the rate converts to.
        rate_to: Currency,
        /// The amount's currency.
        actual: Currency,
    },
    /// A text form could not be parsed.
    #[error("cannot parse money from {0:?}: expected \"<amount> <currency>\"")]
    Parse(String),
}

/// An exact amount of a currency.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    amount: Decimal,
    currency: Currency,
}

impl Money {
    /// An amount in a currency.
    pub const fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    /// Zero of a currency.
    pub const fn zero(currency: Currency) -> Self {
        Self {
            amount: Decimal::ZERO,
            currency,
        }
    }

    /// An amount of US dollars.
    pub const fn usd(amount: Decimal) -> Self {
        Self::new(amount, Currency::Usd)
    }

    /// An amount of compute units.
    pub const fn cu(amount: Decimal) -> Self {
        Self::new(amount, Currency::Cu)
    }

    /// The amount.
    pub const fn amount(&self) -> Decimal {
        self.amount
    }

    /// The currency.
    pub const fn currency(&self) -> &Currency {
        &self.currency
    }

    /// True when the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    /// True when the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.clone(),
                right: other.currency.clone(),
            })
        }
    }

    /// `self + other`, same currency only.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    /// `self - other`, same currency only.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    /// `self × factor` (a dimensionless quantity such as a count or a multiplier). Not rounded.
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self.amount.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency.clone()))
    }

    /// Compares two amounts of the same currency.
    pub fn checked_cmp(&self, other: &Money) -> Result<Ordering, MoneyError> {
        self.same_currency(other)?;
        Ok(self.amount.cmp(&other.amount))
    }

    /// The amount rounded by an explicit rule.
    pub fn round(&self, rounding: Rounding) -> Money {
        Money::new(rounding.apply(self.amount), self.currency.clone())
    }

    /// The sum of amounts that must all be in `currency` (zero for none).
    pub fn sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Converts with an explicit rate; the result is not rounded.
    pub fn convert(&self, rate: &ExchangeRate) -> Result<Money, MoneyError> {
        if rate.from != self.currency {
            return Err(MoneyError::WrongRate {
                rate_from: rate.from.clone(),
                rate_to: rate.to.clone(),
                actual: self.currency.clone(),
            });
        }
        let amount = self
            .amount
            .checked_mul(rate.per_unit)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, rate.to.clone()))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    /// Parses `"0.025 USD"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split_whitespace();
        let (Some(amount), Some(currency), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(MoneyError::Parse(s.to_owned()));
        };
        let amount = Decimal::from_str_exact(amount).map_err(|_| MoneyError::Parse(s.to_owned()))?;
        let currency = currency.parse().map_err(|_| MoneyError::Parse(s.to_owned()))?;
        Ok(Money::new(amount, currency))
    }
}

/// An explicit conversion: one unit of `from` is worth `per_unit` units of `to`.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRate {
    /// The currency converted from.
    pub from: Currency,
    /// The currency converted to.
    pub to: Currency,
    /// Units of `to` for one unit of `from`.
    #[serde(with = "rust_decimal::serde::str")]
    pub per_unit: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::prelude::FromPrimitive;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    #[test]
    fn no_arithmetic_across_currencies() {
        let usd = Money::usd(d("1.00"));
        let cu = Money::cu(d("5"));
        let err = usd.checked_add(&cu).unwrap_err();
        assert_eq!(
            err,
            MoneyError::CurrencyMismatch {
                left: Currency::Usd,
                right: Currency::Cu
            }
        );
        assert!(usd.checked_sub(&cu).is_err());
        assert!(usd.checked_cmp(&cu).is_err());
        let runway = Currency::Credits(ProviderId::new("runway").unwrap());
        assert!(Money::new(d("1"), runway).checked_add(&usd).is_err());
        assert!(Money::sum(Currency::Usd, [&usd, &cu]).is_err());
    }

    #[test]
    fn same_currency_arithmetic_is_exact() {
        let a = Money::usd(d("0.1"));
        let b = Money::usd(d("0.2"));
        assert_eq!(a.checked_add(&b).unwrap(), Money::usd(d("0.3")));
        assert_eq!(b.checked_sub(&a).unwrap().amount(), d("0.1"));
        assert_eq!(a.checked_mul(d("3")).unwrap().amount(), d("0.3"));
        assert_eq!(a.checked_cmp(&b).unwrap(), Ordering::Less);
        assert_eq!(
            Money::sum(Currency::Usd, [&a, &b, &a]).unwrap().amount(),
            d("0.4")
        );
        assert!(Money::usd(d("-0.01")).is_negative());
        assert!(!Money::usd(d("-0")).is_negative());
        assert!(Money::cu(Decimal::ZERO).is_zero());
    }

    #[test]
    fn overflow_is_an_error() {
        let big = Money::usd(Decimal::MAX);
        assert_eq!(
            big.checked_add(&Money::usd(Decimal::ONE)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(big.checked_mul(d("2")), Err(MoneyError::Overflow));
    }

    #[test]
    fn rounding_is_explicit_and_half_up_by_default_rule() {
        // 0.3025 is a midpoint: half-up gives 0.303, banker's would give 0.302.
        let m = Money::usd(d("0.3025"));
        assert_eq!(m.round(Rounding::half_up(3)).amount(), d("0.303"));
        let even = Rounding {
            decimal_places: 3,
            mode: RoundingMode::HalfEven,
        };
        assert_eq!(m.round(even).amount(), d("0.302"));
        let cases = [
            (RoundingMode::HalfDown, "0.0025", "0.002"),
            (RoundingMode::Up, "0.0021", "0.003"),
            (RoundingMode::Down, "0.0029", "0.002"),
            (RoundingMode::Ceiling, "-0.0029", "-0.002"),
            (RoundingMode::Floor, "-0.0021", "-0.003"),
        ];
        for (mode, input, expected) in cases {
            let rule = Rounding {
                decimal_places: 3,
                mode,
            };
            assert_eq!(rule.apply(d(input)), d(expected), "{mode:?} {input}");
        }
        // Whole units: round a megapixel count up.
        let whole_up = Rounding {
            decimal_places: 0,
            mode: RoundingMode::Up,
        };
        assert_eq!(whole_up.apply(d("1.05")), d("2"));
    }

    #[test]
    fn serialises_amount_as_string_and_round_trips_scale() {
        let m = Money::usd(d("0.0250"));
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"amount":"0.0250","currency":"USD"}"#);
        let back: Money = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.amount().scale(), 4);
        let credits = Money::new(d("12.5"), Currency::Credits(ProviderId::new("runway").unwrap()));
        let json = serde_json::to_string(&credits).unwrap();
        assert_eq!(json, r#"{"amount":"12.5","currency":"credits:runway"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), credits);
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"EUR"}"#).is_err());
        assert!(serde_json::from_str::<Money>(r#"{"amount":"1","currency":"USD","x":1}"#).is_err());
    }

    #[test]
    fn display_and_parse() {
        let m: Money = "0.303 USD".parse().unwrap();
        assert_eq!(m, Money::usd(d("0.303")));
        assert_eq!(m.to_string(), "0.303 USD");
        assert_eq!("5000 CU".parse::<Money>().unwrap(), Money::cu(d("5000")));
        assert!("0.3".parse::<Money>().is_err());
        assert!("abc USD".parse::<Money>().is_err());
        assert!("1 USD extra".parse::<Money>().is_err());
        assert!("1e3 USD".parse::<Money>().is_err());
    }

    #[test]
    fn conversion_needs_the_right_rate() {
        // seed 002: 5,000 CU buys 1,000 SDXL images.
        let rate = ExchangeRate {
            from: Currency::Usd,
            to: Currency::Cu,
            per_unit: d("156.25"),
        };
        let usd = Money::usd(d("0.032"));
        assert_eq!(usd.convert(&rate).unwrap(), Money::cu(d("5.00000")));
        let err = Money::cu(d("1")).convert(&rate).unwrap_err();
        assert!(matches!(err, MoneyError::WrongRate { .. }));
    }

    proptest! {
        #[test]
        fn text_and_json_round_trip_exactly(mantissa in any::<i64>(), scale in 0u32..=12) {
            let amount = Decimal::new(mantissa, scale);
            let m = Money::usd(amount);
            let json = serde_json::to_string(&m).unwrap();
            let back: Money = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back.amount().scale(), amount.scale());
            prop_assert_eq!(&back, &m);
            let text: Money = m.to_string().parse().unwrap();
            prop_assert_eq!(text, m);
        }

        #[test]
        fn half_up_never_moves_more_than_half_a_unit(x in -1.0e6f64..1.0e6) {
            let v = Decimal::from_f64(x).unwrap();
            let r = Rounding::half_up(3).apply(v);
            prop_assert!((r - v).abs() <= d("0.0005"));
        }
    }
}
