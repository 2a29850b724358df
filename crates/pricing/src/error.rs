//! The one error type of this crate.

use genroute_core::{Currency, ModelRef, MoneyError, Operation};

/// What is wrong with a catalog or an override fragment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum CatalogProblem {
    /// Not valid TOML, or a value of the wrong type.
    Syntax,
    /// A key this format does not know (every table denies unknown fields).
    UnknownField,
    /// A key the format knows, but not for this rule kind.
    FieldNotApplicable,
    /// A required key is absent.
    MissingField,
    /// `kind` names no rule kind.
    UnknownRuleKind,
    /// A unit, operation, currency, quality or size this format does not know.
    UnknownValue,
    /// A price, multiplier or quantity below zero.
    NegativePrice,
    /// The same model priced twice in one price list.
    PricedTwice,
    /// Any other invalid value (zero base steps, an empty list, a conflict between keys...).
    Invalid,
}

impl CatalogProblem {
    /// snake_case name, for logs and tests.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogProblem::Syntax => "syntax",
            CatalogProblem::UnknownField => "unknown_field",
            CatalogProblem::FieldNotApplicable => "field_not_applicable",
            CatalogProblem::MissingField => "missing_field",
            CatalogProblem::UnknownRuleKind => "unknown_rule_kind",
            CatalogProblem::UnknownValue => "unknown_value",
            CatalogProblem::NegativePrice => "negative_price",
            CatalogProblem::PricedTwice => "priced_twice",
            CatalogProblem::Invalid => "invalid",
        }
    }
}

/// A catalog validation error: where (origin file and line, key path) and what.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{origin}{}: `{key}`: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct CatalogError {
    /// The file name or other origin given when the text was loaded.
    pub origin: String,
    /// 1-based line, when the TOML parser gave a span.
    pub line: Option<usize>,
    /// The dotted key path, e.g. `models."fal-ai/flux/dev".price`.
    pub key: String,
    /// The kind of problem.
    pub problem: CatalogProblem,
    /// A sentence saying what is wrong.
    pub message: String,
}

/// Why a price could not be computed, or a price book could not be built.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PricingError {
    /// No catalog prices this model.
    #[error("no price for model {target}: it is in no loaded catalog")]
    UnknownModel {
        /// The model asked for.
        target: ModelRef,
    },
    /// The model's rule cannot price this kind of job (or lacks what the job needs).
    #[error("the {rule} rule of {target} does not apply to this {operation} job: {reason}")]
    RuleDoesNotApply {
        /// The model.
        target: ModelRef,
        /// The rule kind, e.g. `per_1k_characters`.
        rule: &'static str,
        /// The job's operation.
        operation: Operation,
        /// What is missing or mismatched.
        reason: String,
    },
    /// No configured conversion leads from a currency to another.
    #[error("no conversion configured from {from} to {to}")]
    ConversionMissing {
        /// The currency held.
        from: Currency,
        /// The currency wanted.
        to: Currency,
    },
    /// A catalog or override did not validate.
    #[error("invalid price catalog: {0}")]
    Catalog(Box<CatalogError>),
    /// A builder setting is inconsistent (e.g. a conversion into a currency other than CU).
    #[error("invalid price book setting: {0}")]
    Config(String),
    /// Money arithmetic failed (overflow, or two currencies combined).
    #[error("money arithmetic failed for {context}: {source}")]
    Money {
        /// What was being computed.
        context: String,
        /// The failure.
        source: MoneyError,
    },
}

impl PricingError {
    /// The catalog error, when this is one.
    pub fn catalog(&self) -> Option<&CatalogError> {
        match self {
            PricingError::Catalog(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn overflow(context: impl Into<String>) -> Self {
        PricingError::Money {
            context: context.into(),
            source: MoneyError::Overflow,
        }
    }
}

impl From<CatalogError> for PricingError {
    fn from(e: CatalogError) -> Self {
        PricingError::Catalog(Box::new(e))
    }
}
