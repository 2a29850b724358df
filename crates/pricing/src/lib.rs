#![doc = include_str!("../README.md")]

mod book;
pub mod builtin;
mod catalog;
mod error;
mod rule;

pub use book::{BUILTIN_CU_PER_USD, DEFAULT_CU_ROUNDING, Plan, PriceBook, PriceBookBuilder, QuoteAmount};
pub use catalog::{Catalog, DEFAULT_LIST};
pub use error::{CatalogError, CatalogProblem, PricingError};
