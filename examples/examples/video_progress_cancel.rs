//! A video job with progress events, then a second one cancelled by the caller (dropping the future
//! cancels the job upstream and releases its budget hold). Offline: `cargo run -p genroute-examples
//! --example video_progress_cancel`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use genroute::{
    Caller, Decimal, EntryKind, GenerateRequest, HistoryFilter, ProgressEvent, Scope, VideoJobSpec,
};
use genroute_emulators::{Fault, Kind};
use genroute_examples::{BoxError, offline};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let env = offline(
        r#"
[routes.video]
candidates = [{ provider = "runway", model = "gen4.5" }]

[budgets.teams.acme]
allowance = "1000 CU"
"#,
    )
    .await?;
    let team: genroute::TeamId = "acme".parse()?;
    let job = || VideoJobSpec::new("a drone shot over a lighthouse", Decimal::from(5)).build();

    // 1. Progress: the adapter reports each poll (queued, running with a fraction, finalizing).
    let progress = Arc::new(|e: ProgressEvent| {
        println!(
            "  progress: {:?}{}",
            e.stage,
            e.fraction
                .map(|f| format!(" {:.0} %", f * 100.0))
                .unwrap_or_default()
        );
    });
    let request = GenerateRequest::new(job()?, "video", Caller::team(team.clone())).progress(progress);
    let outcome = env.client.generate(request).await?;
    println!(
        "done on {}: {} ({})",
        outcome.target, outcome.total_spend_cu, outcome.attempts[0].charged
    );

    // 2. Cancel: the next job never finishes upstream; we give up after 300 ms by dropping the future.
    let runway = env.emulator(Kind::Runway)?;
    runway.faults().push(Fault::stuck());
    let request = GenerateRequest::new(job()?, "video", Caller::team(team.clone()));
    let cancelled = tokio::time::timeout(Duration::from_millis(300), env.client.generate(request)).await;
    println!("second job finished in time: {}", cancelled.is_ok());
    // The adapter's cancel guard sends DELETE /v1/tasks/{id} in the background.
    for _ in 0..50 {
        if !runway.cancels().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("cancels received by Runway: {:?}", runway.cancels());
    let mut filter = HistoryFilter::scope(Scope::Team(team.clone()));
    filter.kinds = vec![EntryKind::Reserve, EntryKind::Settle, EntryKind::Release];
    for e in env.client.history(&filter).await? {
        println!("  ledger: {:?} {}", e.kind, e.amount);
    }
    let balance = env.client.ledger().balance(&team).await?;
    println!(
        "held after the cancel: {} (an abandoned hold expires after its TTL at the latest)",
        balance.held
    );
    Ok(())
}
