//! An image job whose primary (fal) answers with its credit-lock 403: the router fails over to Replicate,
//! and both attempts are in the ledger and the cost log. Offline: `cargo run -p genroute-examples --example
//! image_failover`.
#![allow(clippy::print_stdout)]

use genroute::{Caller, GenerateRequest, ImageJobSpec};
use genroute_emulators::{Fault, Kind};
use genroute_examples::{BoxError, offline};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let env = offline(
        r#"
[routes.posters]
candidates = [
  { provider = "fal", model = "fal-ai/flux/dev" },
  { provider = "replicate", model = "black-forest-labs/flux-dev" },
]

[budgets.teams.acme]
allowance = "1000 CU"
"#,
    )
    .await?;
    // fal's account is locked (exhausted balance): 403 "User is locked".
    env.emulator(Kind::Fal)?.faults().push(Fault::credit_exhausted());

    let job = ImageJobSpec::new("a lighthouse at dusk")
        .size(1024, 1024)
        .build()?;
    let request = GenerateRequest::new(job, "posters", Caller::team("acme".parse()?));
    let outcome = env.client.generate(request).await?;
    for a in &outcome.attempts {
        println!(
            "attempt {} on {}: {} — charged {} ({} CU){}",
            a.attempt,
            a.target,
            a.outcome.as_str(),
            a.charged,
            a.charged_cu.amount(),
            a.moved_on
                .as_ref()
                .map(|m| format!(", moved on: {m}"))
                .unwrap_or_default()
        );
    }
    println!(
        "accepted from {}; job cost {}",
        outcome.target, outcome.total_spend_cu
    );
    let report = env.client.report_from_cost_log(None)?;
    println!(
        "cost log: {} CU over {} billed attempt(s)",
        report.total_cu, report.attempts
    );
    Ok(())
}
