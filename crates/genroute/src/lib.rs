#![doc = include_str!("../README.md")]

pub mod client;
pub mod config;
pub mod error;
pub mod registry;

pub use client::{
    BudgetStatus, CandidateQuote, Client, ClientBuilder, QuoteReport, ReloadStatus, SpendReport, Watcher,
    check_config, check_config_with, ensure_teams, open_ledger, report_from_cost_log_file,
};
pub use config::{
    Config, ConfigError, ConfigProblem, EnvMode, LedgerSpec, MemoryRetention, ProviderSpec, TeamSpec,
};
pub use error::Error;
pub use registry::{ProviderFactory, Registry, from_table};

/// The core contract: jobs, money, quotes, generations, errors, the `Provider` trait.
pub use genroute_core as core;
pub use genroute_core::{
    ApiKeyId, Asset, AssetContent, AudioJobSpec, Caller, Currency, Decimal, EditJobSpec, EditOp, Generation,
    ImageJobSpec, Job, JobId, MemberId, ModelId, ModelRef, Money, ProgressEvent, ProgressSink, ProjectId,
    Provider, ProviderError, ProviderId, Quote, Stage, TeamId, VideoJobSpec,
};
/// The CU budget ledger and its backends.
pub use genroute_ledger as ledger;
pub use genroute_ledger::{
    Balance, Entry, EntryKind, HistoryFilter, Ledger, Scope, ScopeKind, Usage, UsageStatus,
};
/// Price rules, catalogs and quotes.
pub use genroute_pricing as pricing;
pub use genroute_pricing::PriceBook;
/// The routing engine.
pub use genroute_router as router;
pub use genroute_router::{GenerateRequest, Limits, Outcome, RouterError};
/// Cost telemetry: events, cost log, OpenTelemetry export, sinks.
pub use genroute_telemetry as telemetry;
pub use genroute_telemetry::{AttemptEvent, CallbackSink, CostSink, TelemetryConfig};
