//! Budget caps per member and per project: jobs are reserved against every scope at once, a cap denies
//! before any provider is called, a top-up or a raised cap lets work continue. Offline: `cargo run -p
//! genroute-examples --example budget_caps`.
#![allow(clippy::print_stdout)]

use genroute::{Caller, GenerateRequest, ImageJobSpec, Money, RouterError, Scope};
use genroute_emulators::Kind;
use genroute_examples::{BoxError, offline};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let env = offline(
        r#"
[routes.image]
candidates = [{ provider = "fal", model = "fal-ai/flux/dev" }]

[budgets.teams.acme]
allowance = "100 CU"
default_cap = "50 CU"
members = { bob = "5 CU" }
projects = { posters = "10 CU" }
"#,
    )
    .await?;
    let team: genroute::TeamId = "acme".parse()?;
    let job = || ImageJobSpec::new("a poster").size(1024, 1024).build(); // 0.025 USD = 3.9063 CU
    let fal = env.emulator(Kind::Fal)?;

    let run = |member: &str, project: &str| -> Result<GenerateRequest, BoxError> {
        let caller = Caller::team(team.clone())
            .member(member.parse()?)
            .project(project.parse()?);
        Ok(GenerateRequest::new(job()?, "image", caller))
    };
    for (member, project) in [
        ("alice", "posters"),
        ("alice", "posters"),
        ("alice", "posters"),
        ("bob", "ads"),
        ("bob", "ads"),
    ] {
        let before = fal.total_requests();
        match env.client.generate(run(member, project)?).await {
            Ok(o) => println!("{member}/{project}: ok, {}", o.total_spend_cu),
            Err(RouterError::BudgetExceeded { denial, .. }) => println!(
                "{member}/{project}: denied by {} ({} left, {} needed); provider requests made: {}",
                denial.scope,
                denial.remaining,
                denial.requested,
                fal.total_requests() - before
            ),
            Err(e) => return Err(e.into()),
        }
    }

    // An admin raises the project cap; alice can continue.
    env.client
        .set_cap(
            &Scope::Project(team.clone(), "posters".parse()?),
            &Money::cu(30.into()),
        )
        .await?;
    let o = env.client.generate(run("alice", "posters")?).await?;
    println!("after raising the posters cap: ok, {}", o.total_spend_cu);

    let status = env.client.budget_status(&team).await?;
    for u in &status.scopes {
        println!(
            "{:<36} used {:>8} held {:>3} cap {:>14} left {:>8} {:?}",
            u.scope.to_string(),
            u.used.amount(),
            u.held.amount(),
            u.cap
                .as_ref()
                .map(|c| format!("{}{}", c, if u.cap_is_default { " (default)" } else { "" }))
                .unwrap_or_else(|| "-".into()),
            u.remaining.amount(),
            u.status
        );
    }
    Ok(())
}
