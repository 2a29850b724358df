#![doc = include_str!("../README.md")]

pub mod capabilities;
pub mod cleanup;
pub mod context;
pub mod error;
pub mod generation;
pub mod hash;
pub mod ids;
pub mod job;
pub mod money;
pub mod provider;
pub mod quote;

pub use capabilities::{Capabilities, DurationSupport, SizeSupport, Unsupported};
pub use context::{CallContext, Caller, ProgressEvent, ProgressSink, Stage};
pub use error::{Billed, ErrorKind, ProviderError};
pub use generation::{Asset, AssetContent, Generation, Timings, Usage};
pub use ids::{ApiKeyId, IdError, IdempotencyKey, JobId, MemberId, ModelId, ProjectId, ProviderId, TeamId};
pub use job::{
    AudioJob, AudioJobSpec, AudioKind, Control, Dimensions, EditJob, EditJobSpec, EditOp, Extras, ImageJob,
    ImageJobSpec, Job, JobError, MediaInput, Modality, Operation, VideoJob, VideoJobSpec,
};
pub use money::{Currency, ExchangeRate, Money, MoneyError, Rounding, RoundingMode};
pub use provider::{Health, HealthStatus, ModelInfo, Provider, ProviderRequest, validate_request};
pub use quote::{Charge, CostSource, ModelRef, Quote, QuoteLine, QuoteSource};

/// Re-exported so users need not depend on `rust_decimal` directly to build amounts.
pub use rust_decimal::Decimal;
