//! `genroute demo`: six emulators on loopback, a SQLite ledger in a temp dir, a mixed batch with faults.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use genroute::router::retry::Jitter;
use genroute::{
    AudioJobSpec, Caller, Client, Config, Decimal, EnvMode, GenerateRequest, HistoryFilter, ImageJobSpec,
    Job, Limits, RouterError, Scope, SpendReport, TeamId, VideoJobSpec,
};
use genroute_emulators::{Emulator, EmulatorHandle, Endpoint, Fault, Kind, Progression};
use serde::Serialize;

use crate::output::{bold, dim, green, num, red, table, usage_bar};
use crate::{CliResult, DemoArgs, EXIT_FAILURE, Failure};

const TEMPLATE: &str = include_str!("demo.toml");

/// One attempt in the summary.
#[derive(Serialize)]
struct AttemptSummary {
    attempt: u32,
    target: String,
    outcome: String,
    charged: String,
    charged_cu: String,
    moved_on: Option<String>,
}

/// One job in the summary.
#[derive(Serialize)]
struct JobSummary {
    n: usize,
    label: String,
    route: String,
    caller: String,
    ok: bool,
    target: Option<String>,
    error: Option<String>,
    error_kind: Option<String>,
    spend_cu: String,
    provider_requests: u64,
    attempts: Vec<AttemptSummary>,
}

/// What `demo --json` prints.
#[derive(Serialize)]
struct DemoSummary {
    jobs: Vec<JobSummary>,
    retries: u32,
    failovers: u32,
    budget_denials: u32,
    deadlines: u32,
    holds: BTreeMap<String, u64>,
    breakers_open: Vec<String>,
    upstream_cancels: usize,
    budget: Vec<genroute::Usage>,
    ledger: SpendReport,
    cost_log: SpendReport,
    totals_agree: bool,
    elapsed_ms: u128,
    dir: Option<String>,
}

struct Emus {
    handles: Vec<EmulatorHandle>,
}

impl Emus {
    fn get(&self, kind: Kind) -> Option<&EmulatorHandle> {
        self.handles.iter().find(|h| h.kind() == kind)
    }

    fn requests(&self) -> u64 {
        self.handles.iter().map(EmulatorHandle::total_requests).sum()
    }

    fn push(&self, kind: Kind, fault: Fault) {
        if let Some(h) = self.get(kind) {
            h.faults().push(fault);
        }
    }
}

struct DemoJob {
    label: &'static str,
    job: Job,
    route: &'static str,
    member: &'static str,
    project: Option<&'static str>,
    deadline: Option<Duration>,
    meta: Option<(&'static str, &'static str)>,
    fault: Option<(Kind, Fault)>,
}

fn fail(e: impl std::fmt::Display) -> Failure {
    Failure::new(EXIT_FAILURE, format!("demo: {e}"))
}

/// Builds the demo's config from the template and the running emulators.
fn demo_config(emus: &Emus, dir: &Path) -> Result<Config, Failure> {
    let mut text = TEMPLATE.to_owned();
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    for h in &emus.handles {
        let (placeholder, vars): (&str, &[&str]) = match h.kind() {
            Kind::Fal => ("{fal}", &["FAL_KEY"]),
            Kind::Replicate => ("{replicate}", &["REPLICATE_API_TOKEN"]),
            Kind::OpenAi => ("{openai}", &["OPENAI_API_KEY"]),
            Kind::Scenario => ("{scenario}", &["SCENARIO_API_KEY"]),
            Kind::ElevenLabs => ("{elevenlabs}", &["ELEVENLABS_API_KEY"]),
            Kind::Runway => ("{runway}", &["RUNWAYML_API_SECRET"]),
            _ => continue,
        };
        text = text.replace(placeholder, &h.base_url());
        for v in vars {
            env.insert(v, h.api_key());
        }
        if h.kind() == Kind::Scenario {
            env.insert("SCENARIO_API_SECRET", h.api_secret());
        }
    }
    Config::parse(&text, "demo.toml (embedded)", dir, EnvMode::Require, &|name| {
        env.get(name).cloned()
    })
    .map_err(|e| fail(format!("the embedded config is invalid: {e}")))
}

fn jobs() -> Result<Vec<DemoJob>, Failure> {
    let image = |prompt: &str| -> Result<Job, Failure> {
        Ok(ImageJobSpec::new(prompt)
            .size(1024, 1024)
            .build()
            .map_err(fail)?
            .into())
    };
    let speech =
        |text: &str| -> Result<Job, Failure> { Ok(AudioJobSpec::speech(text).build().map_err(fail)?.into()) };
    let video = |prompt: &str| -> Result<Job, Failure> {
        Ok(VideoJobSpec::new(prompt, Decimal::from(5))
            .build()
            .map_err(fail)?
            .into())
    };
    Ok(vec![
        DemoJob {
            label: "poster — fal rate-limits once (Retry-After 1 s), retried",
            job: image("a lighthouse at dusk, poster")?,
            route: "image",
            member: "alice",
            project: Some("posters"),
            deadline: None,
            meta: None,
            fault: Some((
                Kind::Fal,
                Fault::rate_limited(Duration::from_secs(1)).on(Endpoint::Create),
            )),
        },
        DemoJob {
            label: "poster — fal account locked (403), fails over to Replicate",
            job: image("a harbour at night, poster")?,
            route: "image",
            member: "alice",
            project: Some("posters"),
            deadline: None,
            meta: None,
            fault: Some((Kind::Fal, Fault::credit_exhausted())),
        },
        DemoJob {
            label: "narration — ElevenLabs 503 outage trips its breaker, fails over to OpenAI",
            job: speech("Welcome aboard. The tide turns at six.")?,
            route: "speech",
            member: "alice",
            project: Some("trailer"),
            deadline: None,
            meta: None,
            fault: Some((
                Kind::ElevenLabs,
                Fault::server_error(503).times(2).on(Endpoint::Create),
            )),
        },
        DemoJob {
            label: "narration — ElevenLabs breaker open: planned straight onto OpenAI",
            job: speech("Lights out at ten.")?,
            route: "speech",
            member: "alice",
            project: Some("trailer"),
            deadline: None,
            meta: None,
            fault: None,
        },
        DemoJob {
            label: "sound effect — gulls over waves",
            job: AudioJobSpec::sound_effect("gulls over crashing waves")
                .duration_seconds(Decimal::from(4))
                .build()
                .map_err(fail)?
                .into(),
            route: "sfx",
            member: "alice",
            project: Some("trailer"),
            deadline: None,
            meta: None,
            fault: None,
        },
        DemoJob {
            label: "trailer shot — Runway",
            job: video("a drone shot over the lighthouse")?,
            route: "video",
            member: "alice",
            project: Some("trailer"),
            deadline: None,
            meta: None,
            fault: None,
        },
        DemoJob {
            label: "trailer shot — Runway job stuck, hits its 1 s deadline",
            job: video("a storm rolling in")?,
            route: "video",
            member: "alice",
            project: Some("trailer"),
            deadline: Some(Duration::from_secs(1)),
            meta: None,
            fault: Some((Kind::Runway, Fault::stuck())),
        },
        DemoJob {
            label: "draft — free plan routed to the cheapest budget model",
            job: image("rough sketch of a boat")?,
            route: "image",
            member: "alice",
            project: None,
            deadline: None,
            meta: Some(("plan", "free")),
            fault: None,
        },
        DemoJob {
            label: "poster by bob — his 2 CU member cap denies it before any provider call",
            job: image("a lighthouse, bob's version")?,
            route: "image",
            member: "bob",
            project: Some("posters"),
            deadline: None,
            meta: None,
            fault: None,
        },
    ])
}

/// Runs the demo.
pub async fn run(args: &DemoArgs, json: bool) -> CliResult {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("genroute-demo-")
        .tempdir()
        .map_err(fail)?;
    let mut handles = Vec::new();
    for kind in [
        Kind::Fal,
        Kind::Replicate,
        Kind::OpenAi,
        Kind::Scenario,
        Kind::ElevenLabs,
        Kind::Runway,
    ] {
        handles.push(
            Emulator::builder(kind)
                .progression(Progression::polls(1, 1))
                .start()
                .await
                .map_err(fail)?,
        );
    }
    let emus = Emus { handles };
    let config = demo_config(&emus, dir.path())?;
    let client = Client::builder()
        .config(config)
        .telemetry(false)
        .jitter(Jitter::with_seed(7))
        .build()
        .await
        .map_err(fail)?;
    let team = TeamId::new("acme").map_err(fail)?;

    if !json {
        println!(
            "{}",
            bold("genroute demo — offline: six provider emulators on 127.0.0.1, a SQLite ledger, no keys")
        );
        println!(
            "{}",
            dim(&format!("ledger and cost log in {}", dir.path().display()))
        );
        println!();
    }

    let mut summaries = Vec::new();
    let (mut retries, mut failovers, mut denials, mut deadlines) = (0u32, 0u32, 0u32, 0u32);
    for (i, dj) in jobs()?.into_iter().enumerate() {
        let n = i + 1;
        if let Some((kind, fault)) = dj.fault.clone() {
            emus.push(kind, fault);
        }
        let mut caller = Caller::team(team.clone()).member(dj.member.parse().map_err(fail)?);
        if let Some(p) = dj.project {
            caller = caller.project(p.parse().map_err(fail)?);
        }
        let caller_text = format!(
            "{}{}",
            dj.member,
            dj.project.map(|p| format!("/{p}")).unwrap_or_default()
        );
        let mut req = GenerateRequest::new(dj.job, dj.route, caller).limits(Limits {
            deadline: dj.deadline,
            ..Limits::default()
        });
        if let Some((k, v)) = dj.meta {
            req = req.meta(k, v);
        }
        let before = emus.requests();
        let result = client.generate(req).await;
        let provider_requests = emus.requests() - before;
        let (attempts, ok, target, error, error_kind, spend, route) = match &result {
            Ok(o) => (
                o.attempts.clone(),
                true,
                Some(o.target.to_string()),
                None,
                None,
                o.total_spend_cu.amount(),
                o.route.clone(),
            ),
            Err(e) => {
                let kind = match e {
                    RouterError::BudgetExceeded { .. } => {
                        denials += 1;
                        "budget_exceeded"
                    }
                    RouterError::Deadline { .. } => {
                        deadlines += 1;
                        "deadline"
                    }
                    RouterError::Exhausted { attempts, .. }
                        if attempts
                            .last()
                            .and_then(|a| a.error.as_ref())
                            .is_some_and(|er| er.kind() == genroute::core::ErrorKind::Timeout) =>
                    {
                        deadlines += 1;
                        "deadline"
                    }
                    RouterError::Exhausted { .. } => "exhausted",
                    RouterError::NoCandidate { .. } => "no_candidate",
                    _ => "other",
                };
                let spend = e.attempts().iter().map(|a| a.charged_cu.amount()).sum();
                (
                    e.attempts().to_vec(),
                    false,
                    None,
                    Some(e.to_string()),
                    Some(kind.to_owned()),
                    spend,
                    dj.route.to_owned(),
                )
            }
        };
        for w in attempts.windows(2) {
            if w[0].target == w[1].target {
                retries += 1;
            } else {
                failovers += 1;
            }
        }
        let summary = JobSummary {
            n,
            label: dj.label.to_owned(),
            route,
            caller: caller_text,
            ok,
            target,
            error,
            error_kind,
            spend_cu: num(spend),
            provider_requests,
            attempts: attempts
                .iter()
                .map(|a| AttemptSummary {
                    attempt: a.attempt,
                    target: a.target.to_string(),
                    outcome: a.outcome.as_str().to_owned(),
                    charged: a.charged.to_string(),
                    charged_cu: num(a.charged_cu.amount()),
                    moved_on: a.moved_on.clone(),
                })
                .collect(),
        };
        if !json {
            print_job(&summary);
        }
        summaries.push(summary);
    }

    client.flush().map_err(fail)?;
    let ledger = client.report_from_ledger(&team).await.map_err(fail)?;
    let cost_log = client.report_from_cost_log(Some(&team)).map_err(fail)?;
    let totals_agree = ledger.total_cu == cost_log.total_cu && ledger.by_model == cost_log.by_model;
    let history = client
        .history(&HistoryFilter::scope(Scope::Team(team.clone())))
        .await
        .map_err(fail)?;
    let mut holds: BTreeMap<String, u64> = BTreeMap::new();
    for e in &history {
        *holds.entry(format!("{:?}", e.kind).to_lowercase()).or_default() += 1;
    }
    let mut breakers_open = Vec::new();
    for (_, route) in client.config().routes.iter() {
        for c in &route.candidates {
            let t = c.target();
            if !client.router().breaker(&t).is_available() && !breakers_open.contains(&t.to_string()) {
                breakers_open.push(t.to_string());
            }
        }
    }
    let status = client.budget_status(&team).await.map_err(fail)?;
    let keep = if args.keep {
        Some(dir.keep().display().to_string())
    } else {
        None
    };
    let summary = DemoSummary {
        jobs: summaries,
        retries,
        failovers,
        budget_denials: denials,
        deadlines,
        holds,
        breakers_open,
        upstream_cancels: emus.handles.iter().map(|h| h.cancels().len()).sum(),
        budget: status.scopes.clone(),
        ledger,
        cost_log,
        totals_agree,
        elapsed_ms: started.elapsed().as_millis(),
        dir: keep,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&summary).map_err(fail)?);
    } else {
        println!("{}", bold("Budget holds"));
        let h = &summary.holds;
        let get = |k: &str| h.get(k).copied().unwrap_or(0);
        println!(
            "  {} reserved, {} settled, {} released, {} expired; {} denied before any provider call",
            get("reserve"),
            get("settle"),
            get("release"),
            get("expire"),
            summary.budget_denials
        );
        println!(
            "  {} retries, {} failovers, {} deadline ({} upstream cancel); breakers open: {}",
            summary.retries,
            summary.failovers,
            summary.deadlines,
            summary.upstream_cancels,
            if summary.breakers_open.is_empty() {
                "none".to_owned()
            } else {
                summary.breakers_open.join(", ")
            }
        );
        println!();
        println!("{}", bold("Budget usage (team acme)"));
        for u in &status.scopes {
            println!("  {:<22} {}", scope_name(&u.scope), usage_bar(u));
        }
        println!();
        println!("{}", bold("Cost by provider and model (CU)"));
        let mut rows = Vec::new();
        let models: std::collections::BTreeSet<&String> = summary
            .ledger
            .by_model
            .keys()
            .chain(summary.cost_log.by_model.keys())
            .collect();
        for m in models {
            rows.push(vec![
                m.clone(),
                summary.ledger.by_model.get(m).map_or("-".into(), |d| num(*d)),
                summary.cost_log.by_model.get(m).map_or("-".into(), |d| num(*d)),
            ]);
        }
        rows.push(vec![
            "total".into(),
            num(summary.ledger.total_cu),
            num(summary.cost_log.total_cu),
        ]);
        for line in table(&["provider/model", "ledger", "cost log"], &rows).lines() {
            println!("  {line}");
        }
        let currencies: Vec<String> = summary
            .cost_log
            .by_currency
            .iter()
            .map(|(c, d)| format!("{} {c}", num(*d)))
            .collect();
        println!("  in provider currencies: {}", currencies.join(" + "));
        println!();
        if summary.totals_agree {
            println!(
                "{} ledger total {} CU = cost log total {} CU",
                green("✓"),
                num(summary.ledger.total_cu),
                num(summary.cost_log.total_cu)
            );
        } else {
            println!(
                "{} ledger total {} CU ≠ cost log total {} CU",
                red("✗"),
                num(summary.ledger.total_cu),
                num(summary.cost_log.total_cu)
            );
        }
        println!(
            "{}",
            dim(&format!(
                "finished in {:.1} s",
                summary.elapsed_ms as f64 / 1000.0
            ))
        );
        if let Some(d) = &summary.dir {
            println!("kept {d}");
        }
    }
    drop(client);
    if summary.totals_agree {
        Ok(())
    } else {
        Err(Failure::new(EXIT_FAILURE, "the ledger and the cost log disagree"))
    }
}

/// `member alice`, `project posters`, `team`.
pub fn scope_name(s: &Scope) -> String {
    match s {
        Scope::Team(t) => format!("team {t}"),
        Scope::Member(_, m) => format!("member {m}"),
        Scope::Project(_, p) => format!("project {p}"),
        Scope::ApiKey(_, k) => format!("api key {k}"),
    }
}

fn print_job(j: &JobSummary) {
    let mark = if j.ok { green("✓") } else { red("✗") };
    println!("{mark} {} {}", bold(&format!("job {}", j.n)), j.label);
    println!("    {}", dim(&format!("route {} · caller {}", j.route, j.caller)));
    for a in &j.attempts {
        let moved = a
            .moved_on
            .as_ref()
            .map(|m| format!("  → {m}"))
            .unwrap_or_default();
        println!(
            "    #{} {:<44} {:<14} {:>14} = {:>8} CU{moved}",
            a.attempt, a.target, a.outcome, a.charged, a.charged_cu
        );
    }
    match (&j.target, &j.error) {
        (Some(t), _) => println!("    done on {t}, job spend {} CU", j.spend_cu),
        (None, Some(e)) => println!(
            "    {} {e} (job spend {} CU, {} provider requests)",
            red("failed:"),
            j.spend_cu,
            j.provider_requests
        ),
        _ => {}
    }
    println!();
}
