#![doc = include_str!("../README.md")]

mod run;
mod scenario;

pub use run::{Failure, Outcome, run};
pub use scenario::{
    CostCheck, DryRun, Fixture, MAX_CONSECUTIVE_UNKNOWN, Metered, Rejection, Scenario, ScenarioId, Transport,
    matrix_markdown, opt_out,
};

/// Re-exported for fixtures: the emulators the suite runs against.
pub use genroute_emulators as emulators;

/// Generates one `#[tokio::test]` per scenario for a fixture, in a module of that name:
/// `genroute_conformance::conformance_tests!(fal, FalFixture);`. The calling crate needs `tokio` with
/// the `macros` and `rt` features as a dev-dependency. Opted-out scenarios pass (the matrix lists them).
#[macro_export]
macro_rules! conformance_tests {
    ($module:ident, $fixture:expr) => {
        mod $module {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@each $fixture;
                success Success, async_poll AsyncPoll, cancel_on_drop CancelOnDrop,
                cancel_on_deadline CancelOnDeadline, cancel_explicit CancelExplicit, resume Resume,
                server_error ServerError, rate_limited RateLimited, slow Slow,
                malformed_json MalformedJson, oversized Oversized, stuck Stuck,
                unknown_status UnknownStatus, credit_exhausted CreditExhausted,
                content_rejected ContentRejected, cost Cost, dry_run DryRun, invalid_input InvalidInput,
                one_create OneCreate);
        }
    };
    (@each $fixture:expr; $($name:ident $id:ident),* $(,)?) => {
        // A scenario added to the suite but not to this list fails to compile.
        const _: () = assert!([$(stringify!($name)),*].len() == $crate::ScenarioId::ALL.len());
        $(
            #[::tokio::test]
            async fn $name() -> ::std::result::Result<(), $crate::Failure> {
                $crate::run(&$fixture, $crate::ScenarioId::$id).await.map(|_| ())
            }
        )*
    };
}
