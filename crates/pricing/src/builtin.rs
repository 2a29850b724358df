//! The catalogs shipped with genroute, one per provider, compiled in from `providers/<name>/prices.toml`.

use crate::catalog::Catalog;
use crate::error::PricingError;

/// `(origin, text)` of every built-in catalog.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "providers/fal/prices.toml",
        include_str!("../../../providers/fal/prices.toml"),
    ),
    (
        "providers/replicate/prices.toml",
        include_str!("../../../providers/replicate/prices.toml"),
    ),
    (
        "providers/openai/prices.toml",
        include_str!("../../../providers/openai/prices.toml"),
    ),
    (
        "providers/scenario/prices.toml",
        include_str!("../../../providers/scenario/prices.toml"),
    ),
    (
        "providers/elevenlabs/prices.toml",
        include_str!("../../../providers/elevenlabs/prices.toml"),
    ),
    (
        "providers/runway/prices.toml",
        include_str!("../../../providers/runway/prices.toml"),
    ),
];

/// Parses every built-in catalog (fal, replicate, openai, scenario, elevenlabs, runway).
pub fn catalogs() -> Result<Vec<Catalog>, PricingError> {
    SOURCES
        .iter()
        .map(|(origin, text)| Catalog::from_toml(text, origin).map_err(PricingError::from))
        .collect()
}

/// The built-in catalog of one provider, if genroute ships one.
pub fn catalog(provider: &str) -> Option<Result<Catalog, PricingError>> {
    SOURCES
        .iter()
        .find(|(origin, _)| origin.split('/').nth(1) == Some(provider))
        .map(|(origin, text)| Catalog::from_toml(text, origin).map_err(PricingError::from))
}
