//! Quotes (what a job will cost before it runs) and charges (what it cost).

use serde::{Deserialize, Serialize};

use crate::ids::{ModelId, ProviderId};
use crate::money::Money;

/// A provider and one of its models: the thing a job is quoted against and run on.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct ModelRef {
    /// The provider.
    pub provider: ProviderId,
    /// The model, as the provider names it.
    pub model: ModelId,
}

impl ModelRef {
    /// A provider and model.
    pub fn new(provider: ProviderId, model: ModelId) -> Self {
        Self { provider, model }
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.model)
    }
}

/// Where a quote's figure came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuoteSource {
    /// Computed locally from a price catalog.
    PriceTable,
    /// Asked of the provider (e.g. Scenario's `?dryRun=true`).
    ProviderDryRun,
}

/// One line of a quote's explanation: a sentence a person can read, and the running amount if it has one.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct QuoteLine {
    /// What this step of the computation did, e.g. `"1,441,792 px = 1.441792 MP, rounded up to 2 MP"`.
    pub text: String,
    /// The amount after this step, where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Money>,
}

impl QuoteLine {
    /// A line without an amount.
    pub fn note(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            amount: None,
        }
    }

    /// A line with the running amount.
    pub fn with_amount(text: impl Into<String>, amount: Money) -> Self {
        Self {
            text: text.into(),
            amount: Some(amount),
        }
    }
}

/// What a job will cost on one candidate, before anything is spent.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Quote {
    /// The candidate quoted.
    pub target: ModelRef,
    /// Cost in the provider's currency (never negative).
    pub cost: Money,
    /// The same cost in compute units, when a conversion is configured: what the ledger reserves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_cu: Option<Money>,
    /// How the figure was reached, line by line.
    pub lines: Vec<QuoteLine>,
    /// Whether the cost crosses the configured "high cost" threshold for the job's modality.
    pub high_cost: bool,
    /// Where the figure came from.
    pub source: QuoteSource,
    /// When the price used was last verified against the provider (ISO date), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_verified: Option<String>,
}

impl Quote {
    /// The explanation as text, one line per step.
    pub fn explain(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            out.push_str(&line.text);
            if let Some(amount) = &line.amount {
                out.push_str(" → ");
                out.push_str(&amount.to_string());
            }
            out.push('\n');
        }
        out
    }
}

/// Where a charged amount came from.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CostSource {
    /// The provider reported it (a cost field, billable units, tokens or characters it counted).
    ProviderReported,
    /// Computed from the price catalog.
    PriceTable,
    /// Not known exactly: the conservative (upper) estimate was charged, pending reconciliation.
    ConservativeEstimate,
}

impl CostSource {
    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::ProviderReported => "provider_reported",
            CostSource::PriceTable => "price_table",
            CostSource::ConservativeEstimate => "conservative_estimate",
        }
    }
}

/// An amount charged, with its source.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Charge {
    /// The amount.
    pub amount: Money,
    /// Where it came from.
    pub source: CostSource,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    #[test]
    fn quote_explains_itself_and_round_trips() {
        let target = ModelRef::new(
            ProviderId::new("fal").unwrap(),
            ModelId::new("fal-ai/flux/dev").unwrap(),
        );
        let quote = Quote {
            target: target.clone(),
            cost: Money::usd(Decimal::new(50, 3)),
            cost_cu: Some(Money::cu(Decimal::new(78125, 4))),
            lines: vec![
                QuoteLine::note("1024x1408 = 1.441792 MP, rounded up to 2 MP"),
                QuoteLine::with_amount("2 MP × 0.025 USD/MP", Money::usd(Decimal::new(50, 3))),
            ],
            high_cost: false,
            source: QuoteSource::PriceTable,
            price_verified: Some("2026-11-01".into()),
        };
        assert_eq!(target.to_string(), "fal/fal-ai/flux/dev");
        assert_eq!(
            quote.explain(),
            "1024x1408 = 1.441792 MP, rounded up to 2 MP\n2 MP × 0.025 USD/MP → 0.050 USD\n"
        );
        let json = serde_json::to_string(&quote).unwrap();
        assert_eq!(serde_json::from_str::<Quote>(&json).unwrap(), quote);
    }

    #[test]
    fn charge_serialises_its_source() {
        let c = Charge {
            amount: Money::cu(Decimal::from(20)),
            source: CostSource::ProviderReported,
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["source"], "provider_reported");
        assert_eq!(CostSource::ConservativeEstimate.as_str(), "conservative_estimate");
    }
}
