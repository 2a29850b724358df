#![doc = include_str!("../README.md")]
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod demo;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: unexpected failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: invalid configuration.
pub const EXIT_CONFIG: u8 = 3;
/// Exit code: the budget refused the job.
pub const EXIT_BUDGET: u8 = 4;
/// Exit code: every candidate failed, or the deadline passed.
pub const EXIT_JOB_FAILED: u8 = 5;
/// Exit code: no candidate can run the job.
pub const EXIT_NO_CANDIDATE: u8 = 6;
/// Exit code: interrupted (Ctrl-C), as shells report SIGINT.
pub const EXIT_CANCELLED: u8 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "genroute",
    version,
    about = "Route generative-media jobs across providers with cost ceilings, CU budgets and cost telemetry.",
    after_help = "Exit codes: 0 ok, 1 unexpected failure, 2 bad usage, 3 invalid configuration, \
                  4 budget refused the job, 5 the job failed on every candidate or hit its deadline, \
                  6 no candidate can run the job (or unknown route), 130 interrupted."
)]
struct Cli {
    /// The configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "GENROUTE_CONFIG",
        default_value = "genroute.toml"
    )]
    config: PathBuf,
    /// Machine-readable JSON on stdout (demo, quote, budget status/history, report, config check).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Offline demo: six provider emulators, a SQLite ledger in a temp dir, a mixed batch with faults.
    Demo(DemoArgs),
    /// Dry run: every candidate of the route, its cost in provider currency and CU, and why it is in or out.
    Quote {
        #[command(subcommand)]
        job: JobCmd,
    },
    /// Run a job and save its outputs.
    Generate {
        #[command(subcommand)]
        job: JobCmd,
    },
    /// Budgets: status, top-ups, caps, history.
    Budget {
        #[command(subcommand)]
        cmd: BudgetCmd,
    },
    /// Spend by provider, model, member and project.
    Report(ReportArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
}

/// `demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Keep the temp dir (ledger, cost log, outputs) and print its path.
    #[arg(long)]
    pub keep: bool,
}

/// Who pays and how a job is limited.
#[derive(Args, Debug, Clone)]
pub struct JobOpts {
    /// Route or alias (default: `[defaults] <kind>_route`, else `image`/`video`/`audio`).
    #[arg(long)]
    pub route: Option<String>,
    /// Team paying (default: `[defaults] team`, or the only team).
    #[arg(long)]
    pub team: Option<String>,
    /// Member.
    #[arg(long)]
    pub member: Option<String>,
    /// Project.
    #[arg(long)]
    pub project: Option<String>,
    /// API key id.
    #[arg(long)]
    pub api_key: Option<String>,
    /// Per-attempt cost ceiling, e.g. "0.05 USD" or "10 CU".
    #[arg(long)]
    pub ceiling: Option<String>,
    /// Most the whole job may spend, retries included, e.g. "20 CU".
    #[arg(long)]
    pub max_spend: Option<String>,
    /// Deadline for the whole job, e.g. 90s, 5m.
    #[arg(long)]
    pub deadline: Option<String>,
    /// Request metadata for alias rules, e.g. --meta plan=free.
    #[arg(long = "meta", value_parser = parse_kv)]
    pub meta: Vec<(String, String)>,
    /// Where outputs are saved (generate).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

/// The job to quote or run.
#[derive(Subcommand, Debug, Clone)]
pub enum JobCmd {
    /// An image.
    Image {
        /// The prompt.
        prompt: String,
        /// Width in pixels.
        #[arg(long, default_value_t = 1024)]
        width: u32,
        /// Height in pixels.
        #[arg(long, default_value_t = 1024)]
        height: u32,
        /// Images.
        #[arg(long, default_value_t = 1)]
        count: u32,
        /// Diffusion steps.
        #[arg(long)]
        steps: Option<u32>,
        /// Route, caller and limits.
        #[command(flatten)]
        opts: JobOpts,
    },
    /// A video clip.
    Video {
        /// The prompt.
        prompt: String,
        /// Seconds.
        #[arg(long, default_value = "5")]
        duration: String,
        /// Route, caller and limits.
        #[command(flatten)]
        opts: JobOpts,
    },
    /// Speech (text to speech).
    Audio {
        /// The text to speak.
        text: String,
        /// Voice id.
        #[arg(long)]
        voice: Option<String>,
        /// Route, caller and limits.
        #[command(flatten)]
        opts: JobOpts,
    },
}

#[derive(Subcommand, Debug)]
enum BudgetCmd {
    /// Pool, batches, and a usage bar per scope (amber at 80 %, red at 100 %).
    Status(TeamArg),
    /// Add purchased CU.
    TopUp {
        /// Amount, e.g. 1000 or "1000 CU".
        amount: String,
        /// Expiry, as a date (2027-02-01) or a duration from now (90d).
        #[arg(long, default_value = "90d")]
        expires: String,
        #[command(flatten)]
        team: TeamArg,
    },
    /// Set or remove caps.
    Cap {
        #[command(subcommand)]
        cmd: CapCmd,
    },
    /// Ledger history, oldest first.
    History {
        /// Only the last N entries.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        team: TeamArg,
    },
}

/// `--team`.
#[derive(Args, Debug, Clone)]
pub struct TeamArg {
    /// Team (default: `[defaults] team`, or the only team).
    #[arg(long)]
    pub team: Option<String>,
}

/// Which scope a cap applies to.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
pub struct ScopeArg {
    /// A member.
    #[arg(long)]
    pub member: Option<String>,
    /// A project.
    #[arg(long)]
    pub project: Option<String>,
    /// An API key id.
    #[arg(long)]
    pub api_key: Option<String>,
    /// The team pool itself.
    #[arg(long)]
    pub whole_team: bool,
}

#[derive(Subcommand, Debug)]
enum CapCmd {
    /// Cap a scope.
    Set {
        /// The cap, e.g. 500 or "500 CU".
        amount: String,
        #[command(flatten)]
        scope: ScopeArg,
        #[command(flatten)]
        team: TeamArg,
    },
    /// Remove a scope's own cap (members and keys fall back to the default cap).
    Remove {
        #[command(flatten)]
        scope: ScopeArg,
        #[command(flatten)]
        team: TeamArg,
    },
}

/// `report` options.
#[derive(Args, Debug)]
pub struct ReportArgs {
    /// Where to read spend from.
    #[arg(long, value_enum, default_value = "ledger")]
    pub source: Source,
    /// Team.
    #[command(flatten)]
    pub team: TeamArg,
}

/// A spend source.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Settled charges in the ledger.
    Ledger,
    /// The JSON-lines cost log.
    CostLog,
    /// Both, side by side (they should agree).
    Both,
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Validate the file: unknown keys, dangling references, alias cycles, negative prices.
    Check,
}

/// A failure with its exit code and a message for people.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// What happened and what to do.
    pub message: String,
}

impl Failure {
    /// A failure.
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<genroute::Error> for Failure {
    fn from(e: genroute::Error) -> Self {
        use genroute::Error as E;
        match e {
            E::Config(c) => Failure::new(EXIT_CONFIG, format!("invalid configuration: {c}")),
            E::Router(r) => commands::router_failure(&r),
            E::Provider { .. } => Failure::new(EXIT_CONFIG, e.to_string()),
            other => Failure::new(EXIT_FAILURE, other.to_string()),
        }
    }
}

/// The CLI's result type.
pub type CliResult = Result<(), Failure>;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args, json).await,
        Command::Quote { job } => commands::quote(&cli.config, job, json).await,
        Command::Generate { job } => commands::generate(&cli.config, job, json).await,
        Command::Budget { cmd } => match cmd {
            BudgetCmd::Status(t) => commands::budget_status(&cli.config, &t, json).await,
            BudgetCmd::TopUp {
                amount,
                expires,
                team,
            } => commands::top_up(&cli.config, &amount, &expires, &team, json).await,
            BudgetCmd::Cap { cmd } => match cmd {
                CapCmd::Set { amount, scope, team } => {
                    commands::cap(&cli.config, Some(&amount), &scope, &team, json).await
                }
                CapCmd::Remove { scope, team } => commands::cap(&cli.config, None, &scope, &team, json).await,
            },
            BudgetCmd::History { limit, team } => commands::history(&cli.config, limit, &team, json).await,
        },
        Command::Report(args) => commands::report(&cli.config, &args, json).await,
        Command::Config { cmd } => match cmd {
            ConfigCmd::Check => commands::config_check(&cli.config, json),
        },
    };
    // Jobs dropped on the way (a deadline, an interrupted wait) may have started an upstream cancel or a
    // budget release: let them finish before the runtime goes.
    commands::wait_for_cleanups(std::time::Duration::from_secs(5)).await;
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
