//! quote, generate, budget, report, config check.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use genroute::{
    AssetContent, AudioJobSpec, Caller, Client, Decimal, Error, GenerateRequest, HistoryFilter, ImageJobSpec,
    Job, Limits, Money, ProgressEvent, RouterError, Scope, SpendReport, TeamId, VideoJobSpec,
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::demo::scope_name;
use crate::output::{bold, dim, green, num, red, table, usage_bar};
use crate::{
    CliResult, EXIT_BUDGET, EXIT_CANCELLED, EXIT_CONFIG, EXIT_FAILURE, EXIT_JOB_FAILED, EXIT_NO_CANDIDATE,
    Failure, JobCmd, JobOpts, ReportArgs, ScopeArg, Source, TeamArg,
};

fn usage(msg: impl Into<String>) -> Failure {
    Failure::new(2, msg)
}

/// Maps a router error to an exit code and a message for people.
pub fn router_failure(e: &RouterError) -> Failure {
    match e {
        RouterError::BudgetExceeded { .. } | RouterError::MaxSpend { .. } => Failure::new(
            EXIT_BUDGET,
            format!(
                "{e}\n  (see `genroute budget status`; an admin can raise the cap with `genroute budget cap set` or add CU with `genroute budget top-up`)"
            ),
        ),
        RouterError::NoCandidate { .. } | RouterError::Route(_) => Failure::new(
            EXIT_NO_CANDIDATE,
            format!("{e}\n  (`genroute quote ...` shows every candidate and why it is out)"),
        ),
        RouterError::Exhausted { .. } | RouterError::Stopped { .. } | RouterError::Deadline { .. } => {
            Failure::new(EXIT_JOB_FAILED, e.to_string())
        }
        _ => Failure::new(EXIT_FAILURE, e.to_string()),
    }
}

async fn client(config: &Path, lenient: bool) -> Result<Client, Failure> {
    if !config.exists() {
        return Err(Failure::new(
            EXIT_CONFIG,
            format!(
                "no configuration file at {} (pass --config FILE or set GENROUTE_CONFIG; `genroute demo` needs none)",
                config.display()
            ),
        ));
    }
    let builder = if lenient {
        Client::builder().config_file_lenient(config)?
    } else {
        Client::builder().config_file(config)?
    };
    Ok(builder.telemetry(!lenient).build().await?)
}

fn team_of(client: &Client, arg: &TeamArg) -> Result<TeamId, Failure> {
    match &arg.team {
        Some(t) => TeamId::new(t).map_err(|e| usage(format!("--team: {e}"))),
        None => Ok(client.default_caller()?.team),
    }
}

fn amount(s: &str, what: &str) -> Result<Money, Failure> {
    let s = s.trim();
    let m = if s.contains(' ') {
        Money::from_str(s).map_err(|e| usage(format!("{what}: {e}")))?
    } else {
        Money::cu(Decimal::from_str_exact(s).map_err(|_| usage(format!("{what}: not an amount: {s:?}")))?)
    };
    if m.is_negative() {
        return Err(usage(format!("{what}: must not be negative")));
    }
    Ok(m)
}

fn duration(s: &str, what: &str) -> Result<Duration, Failure> {
    humantime_serde::re::humantime::parse_duration(s).map_err(|e| usage(format!("{what}: {e}")))
}

fn request(client: &Client, job: JobCmd) -> Result<(GenerateRequest, JobOpts), Failure> {
    let cfg = client.config();
    let (job, opts, default_route, fallback): (Job, JobOpts, Option<String>, &str) = match job {
        JobCmd::Image {
            prompt,
            width,
            height,
            count,
            steps,
            opts,
        } => {
            let mut spec = ImageJobSpec::new(prompt).size(width, height).count(count);
            if let Some(s) = steps {
                spec = spec.steps(s);
            }
            let job = spec.build().map_err(|e| usage(e.to_string()))?.into();
            (job, opts, cfg.defaults.image_route.clone(), "image")
        }
        JobCmd::Video {
            prompt,
            duration,
            opts,
        } => {
            let d = Decimal::from_str_exact(&duration).map_err(|_| usage("--duration: not a number"))?;
            let job = VideoJobSpec::new(prompt, d)
                .build()
                .map_err(|e| usage(e.to_string()))?
                .into();
            (job, opts, cfg.defaults.video_route.clone(), "video")
        }
        JobCmd::Audio { text, voice, opts } => {
            let mut spec = AudioJobSpec::speech(text);
            if let Some(v) = voice {
                spec = spec.voice(v);
            }
            let job = spec.build().map_err(|e| usage(e.to_string()))?.into();
            (job, opts, cfg.defaults.audio_route.clone(), "audio")
        }
    };
    let route = opts
        .route
        .clone()
        .or(default_route)
        .unwrap_or_else(|| fallback.to_owned());
    let mut caller = match &opts.team {
        Some(t) => Caller::team(TeamId::new(t).map_err(|e| usage(format!("--team: {e}")))?),
        None => client.default_caller()?,
    };
    if let Some(m) = &opts.member {
        caller.member = Some(m.parse().map_err(|e| usage(format!("--member: {e}")))?);
    }
    if let Some(p) = &opts.project {
        caller.project = Some(p.parse().map_err(|e| usage(format!("--project: {e}")))?);
    }
    if let Some(k) = &opts.api_key {
        caller.api_key = Some(k.parse().map_err(|e| usage(format!("--api-key: {e}")))?);
    }
    let limits = Limits {
        cost_ceiling: opts
            .ceiling
            .as_deref()
            .map(|s| amount(s, "--ceiling"))
            .transpose()?,
        max_spend: opts
            .max_spend
            .as_deref()
            .map(|s| amount(s, "--max-spend"))
            .transpose()?,
        deadline: opts
            .deadline
            .as_deref()
            .map(|s| duration(s, "--deadline"))
            .transpose()?,
    };
    let mut req = GenerateRequest::new(job, route, caller).limits(limits);
    for (k, v) in &opts.meta {
        req = req.meta(k, v);
    }
    Ok((req, opts))
}

/// `genroute quote`.
pub async fn quote(config: &Path, job: JobCmd, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let (req, _) = request(&client, job)?;
    let report = client.quote(&req)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
        );
        return Ok(());
    }
    println!(
        "{} route {} ({} policy)",
        bold("quote"),
        report.route,
        report.policy
    );
    let rows: Vec<Vec<String>> = report
        .candidates
        .iter()
        .map(|c| {
            vec![
                c.rank.map_or("-".into(), |r| r.to_string()),
                format!("{}/{}", c.provider, c.model),
                c.tier.clone(),
                c.cost.clone().unwrap_or_else(|| "-".into()),
                c.cost_cu.clone().unwrap_or_else(|| "-".into()),
                if c.included {
                    green(&c.reason)
                } else {
                    red(&c.reason)
                },
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["#", "candidate", "tier", "cost", "CU", "verdict"], &rows)
    );
    if let Some(first) = report.first()
        && let Some(x) = &first.explanation
    {
        println!();
        println!("{}", dim(x.trim_end()));
    }
    if report.first().is_none() {
        return Err(Failure::new(EXIT_NO_CANDIDATE, "no candidate can run this job"));
    }
    Ok(())
}

/// `genroute generate`.
pub async fn generate(config: &Path, job: JobCmd, json: bool) -> CliResult {
    let client = client(config, false).await?;
    let (mut req, opts) = request(&client, job)?;
    // A spinner until the provider reports a fraction, then a bar (long video jobs report progress).
    let bar = if json {
        ProgressBar::hidden()
    } else {
        let b = ProgressBar::new(100);
        b.set_style(
            ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.enable_steady_tick(Duration::from_millis(120));
        b.set_message(format!("route {}", req.route));
        b
    };
    let pb = bar.clone();
    let with_bar = ProgressStyle::with_template("{spinner} {elapsed:>4} [{bar:30}] {percent:>3} % {msg}")
        .map(|s| s.progress_chars("=> "))
        .ok();
    req = req.progress(Arc::new(move |e: ProgressEvent| {
        let mut msg = format!("{:?}", e.stage).to_lowercase();
        if let Some(q) = e.queue_position {
            msg.push_str(&format!(" (queue position {q})"));
        }
        if let Some(status) = &e.provider_status {
            msg.push_str(&format!(" [{status}]"));
        }
        if let (Some(f), Some(style)) = (e.fraction, &with_bar) {
            pb.set_style(style.clone());
            pb.set_position((f.clamp(0.0, 1.0) * 100.0) as u64);
        }
        pb.set_message(msg);
    }));
    // Ctrl-C drops the job: the adapter cancels it upstream; its budget hold frees itself by its TTL.
    let result = tokio::select! {
        r = client.generate(req) => r,
        _ = tokio::signal::ctrl_c() => {
            bar.finish_and_clear();
            // The job's future is gone: wait (bounded) for the upstream cancel and the hold release it
            // started, so exiting does not kill them mid-flight.
            wait_for_cleanups(std::time::Duration::from_secs(5)).await;
            let _ = client.flush();
            return Err(Failure::new(
                EXIT_CANCELLED,
                "cancelled: the provider job was cancelled upstream and its budget hold released",
            ));
        }
    };
    bar.finish_and_clear();
    client.flush()?;
    let outcome = result.map_err(|e| router_failure(&e))?;
    std::fs::create_dir_all(&opts.out)
        .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot create {}: {e}", opts.out.display())))?;
    let http = reqwest::Client::new();
    let mut saved = Vec::new();
    for (i, asset) in outcome.generation.outputs.iter().enumerate() {
        let ext = ext_of(asset.media_type.as_deref());
        let path = opts.out.join(format!("{}-{}.{ext}", outcome.job_id, i + 1));
        let bytes = match &asset.content {
            AssetContent::Bytes(b) => b.clone(),
            AssetContent::Url(u) => http
                .get(u)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| Failure::new(EXIT_FAILURE, format!("download {u}: {e}")))?
                .bytes()
                .await
                .map_err(|e| Failure::new(EXIT_FAILURE, format!("download {u}: {e}")))?
                .to_vec(),
            #[allow(unreachable_patterns)]
            _ => continue,
        };
        std::fs::write(&path, bytes)
            .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot write {}: {e}", path.display())))?;
        saved.push(path.display().to_string());
    }
    if json {
        let v = serde_json::json!({
            "job_id": outcome.job_id.to_string(),
            "route": outcome.route,
            "target": outcome.target.to_string(),
            "outputs": saved,
            "attempts": outcome.attempts,
            "total_spend_cu": outcome.total_spend_cu.amount().to_string(),
            "retry_spend_cu": outcome.retry_spend_cu.amount().to_string(),
        });
        println!("{v:#}");
    } else {
        for a in &outcome.attempts {
            println!(
                "  #{} {:<44} {:<12} {} ({} CU){}",
                a.attempt,
                a.target.to_string(),
                a.outcome.as_str(),
                a.charged,
                num(a.charged_cu.amount()),
                a.moved_on
                    .as_ref()
                    .map(|m| format!("  → {m}"))
                    .unwrap_or_default()
            );
        }
        for s in &saved {
            println!("saved {s}");
        }
        println!(
            "{} on {} — cost {} CU (retries and fallbacks {} CU)",
            green("done"),
            outcome.target,
            num(outcome.total_spend_cu.amount()),
            num(outcome.retry_spend_cu.amount())
        );
    }
    Ok(())
}

fn ext_of(media_type: Option<&str>) -> &'static str {
    match media_type.unwrap_or("") {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        "audio/mpeg" => "mp3",
        "audio/wav" | "audio/x-wav" => "wav",
        "audio/ogg" => "ogg",
        _ => "bin",
    }
}

/// `genroute budget status`.
pub async fn budget_status(config: &Path, t: &TeamArg, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let team = team_of(&client, t)?;
    let status = client.budget_status(&team).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
        );
        return Ok(());
    }
    let b = &status.balance;
    println!(
        "{} team {}: {} CU available ({} CU funds, {} held{}), resets {}",
        bold("budget"),
        team,
        num(b.available.amount()),
        num(b.funds.amount()),
        num(b.held.amount()),
        if b.overdraft.is_zero() {
            String::new()
        } else {
            format!(", {} overdrawn", num(b.overdraft.amount()))
        },
        b.resets_at.format("%Y-%m-%d")
    );
    for batch in &b.batches {
        println!(
            "  {:<8} {} of {} CU left, expires {}",
            format!("{:?}", batch.kind).to_lowercase(),
            num(batch.remaining.amount()),
            num(batch.granted.amount()),
            batch.expires_at.format("%Y-%m-%d")
        );
    }
    for u in &status.scopes {
        println!("  {:<22} {}", scope_name(&u.scope), usage_bar(u));
    }
    Ok(())
}

fn expiry(s: &str) -> Result<DateTime<Utc>, Failure> {
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        && let Some(t) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(t.and_utc());
    }
    let d = duration(s, "--expires")?;
    let d = chrono::Duration::from_std(d).map_err(|e| usage(format!("--expires: {e}")))?;
    Ok(Utc::now() + d)
}

/// `genroute budget top-up`.
pub async fn top_up(config: &Path, amount_s: &str, expires: &str, t: &TeamArg, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let team = team_of(&client, t)?;
    let amount = amount(amount_s, "amount")?;
    let batch = client.top_up(&team, &amount, expiry(expires)?).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&batch).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
        );
    } else {
        println!(
            "{} {} CU to team {team}, expires {}",
            green("added"),
            num(batch.granted.amount()),
            batch.expires_at.format("%Y-%m-%d")
        );
    }
    Ok(())
}

/// `genroute budget cap set|remove`.
pub async fn cap(config: &Path, amount_s: Option<&str>, s: &ScopeArg, t: &TeamArg, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let team = team_of(&client, t)?;
    let scope = if let Some(m) = &s.member {
        Scope::Member(team, m.parse().map_err(|e| usage(format!("--member: {e}")))?)
    } else if let Some(p) = &s.project {
        Scope::Project(team, p.parse().map_err(|e| usage(format!("--project: {e}")))?)
    } else if let Some(k) = &s.api_key {
        Scope::ApiKey(team, k.parse().map_err(|e| usage(format!("--api-key: {e}")))?)
    } else {
        Scope::Team(team)
    };
    match amount_s {
        Some(a) => {
            let cap = amount(a, "amount")?;
            client.set_cap(&scope, &cap).await?;
            if !json {
                println!(
                    "{} {} capped at {} CU",
                    green("ok"),
                    scope_name(&scope),
                    num(cap.amount())
                );
            }
        }
        None => {
            client.remove_cap(&scope).await?;
            if !json {
                println!("{} {} has no cap of its own now", green("ok"), scope_name(&scope));
            }
        }
    }
    let usage = client.ledger().usage(&scope).await.map_err(Error::from)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&usage).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
        );
    }
    Ok(())
}

/// `genroute budget history`.
pub async fn history(config: &Path, limit: usize, t: &TeamArg, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let team = team_of(&client, t)?;
    let entries = client.history(&HistoryFilter::scope(Scope::Team(team))).await?;
    let start = entries.len().saturating_sub(limit);
    let entries = &entries[start..];
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(entries).map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
                format!("{:?}", e.kind).to_lowercase(),
                num(e.amount.amount()),
                e.caller.member.as_ref().map_or("-".into(), ToString::to_string),
                e.caller.project.as_ref().map_or("-".into(), ToString::to_string),
                e.meta.as_ref().map_or(String::new(), |m| {
                    format!("{}/{} job {} #{}", m.provider, m.model, m.job_id, m.attempt)
                }),
            ]
        })
        .collect();
    println!(
        "{}",
        table(&["at", "kind", "CU", "member", "project", "attempt"], &rows)
    );
    Ok(())
}

fn print_report(r: &SpendReport) {
    println!(
        "{} from the {}: {} CU over {} charged attempts",
        bold("spend"),
        r.source.replace('_', " "),
        num(r.total_cu),
        r.attempts
    );
    for (title, map) in [
        ("provider", &r.by_provider),
        ("model", &r.by_model),
        ("member", &r.by_member),
        ("project", &r.by_project),
    ] {
        if map.is_empty() {
            continue;
        }
        let rows: Vec<Vec<String>> = map.iter().map(|(k, v)| vec![k.clone(), num(*v)]).collect();
        println!("{}", table(&[title, "CU"], &rows));
    }
    if !r.by_currency.is_empty() {
        let parts: Vec<String> = r
            .by_currency
            .iter()
            .map(|(c, d)| format!("{} {c}", num(*d)))
            .collect();
        println!("in provider currencies: {}", parts.join(" + "));
    }
}

/// `genroute report`.
pub async fn report(config: &Path, args: &ReportArgs, json: bool) -> CliResult {
    let client = client(config, true).await?;
    let team = team_of(&client, &args.team)?;
    let mut reports = Vec::new();
    if matches!(args.source, Source::Ledger | Source::Both) {
        reports.push(client.report_from_ledger(&team).await?);
    }
    if matches!(args.source, Source::CostLog | Source::Both) {
        reports.push(client.report_from_cost_log(Some(&team))?);
    }
    if json {
        let v = if reports.len() == 1 {
            serde_json::to_value(&reports[0])
        } else {
            serde_json::to_value(&reports)
        }
        .map_err(|e| Failure::new(EXIT_FAILURE, e.to_string()))?;
        println!("{v:#}");
    } else {
        for r in &reports {
            print_report(r);
            println!();
        }
        if reports.len() == 2 {
            if reports[0].total_cu == reports[1].total_cu {
                println!("{} the ledger and the cost log agree", green("✓"));
            } else {
                println!("{} the ledger and the cost log disagree", red("✗"));
            }
        }
    }
    Ok(())
}

/// `genroute config check`.
pub fn config_check(config: &Path, json: bool) -> CliResult {
    match genroute::check_config(config) {
        Ok(c) => {
            if json {
                let v = serde_json::json!({
                    "ok": true,
                    "file": c.origin,
                    "providers": c.providers.keys().collect::<Vec<_>>(),
                    "routes": c.routes.keys().collect::<Vec<_>>(),
                    "aliases": c.aliases.keys().collect::<Vec<_>>(),
                    "teams": c.teams.keys().collect::<Vec<_>>(),
                    "warnings": c.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
                });
                println!("{v:#}");
            } else {
                println!(
                    "{} {}: {} providers, {} routes, {} aliases, {} teams",
                    green("ok"),
                    c.origin,
                    c.providers.len(),
                    c.routes.len(),
                    c.aliases.len(),
                    c.teams.len()
                );
                for w in &c.warnings {
                    println!("warning: {w}");
                }
            }
            Ok(())
        }
        Err(e) => {
            if json {
                let v = serde_json::json!({
                    "ok": false,
                    "problems": e.problems.iter().map(|p| serde_json::json!({
                        "file": p.file, "line": p.line, "key": p.key, "message": p.message,
                    })).collect::<Vec<_>>(),
                });
                println!("{v:#}");
            }
            Err(Failure::new(EXIT_CONFIG, e.to_string()))
        }
    }
}

/// Waits until the cleanup work dropped jobs started (upstream cancels, hold releases) has finished, or
/// `limit` has passed.
pub(crate) async fn wait_for_cleanups(limit: std::time::Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    // Let the dropped futures' guards spawn their work before counting.
    tokio::task::yield_now().await;
    while genroute::core::cleanup::pending() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
