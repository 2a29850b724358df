//! Helpers shared by the examples: start the six provider emulators and build a [`Client`] whose
//! providers point at them, with a SQLite ledger and a cost log in a temp dir. No keys, no network.
//!
//! Run an example with `cargo run -p genroute-examples --example image_failover`.

use std::collections::BTreeMap;

use genroute::{Client, Config, EnvMode};
use genroute_emulators::{Emulator, EmulatorHandle, Kind, Progression};

/// A client wired to running emulators. Dropping it stops the emulators and removes the temp dir.
pub struct Offline {
    /// The client.
    pub client: Client,
    /// The running emulators.
    pub emulators: Vec<EmulatorHandle>,
    /// Ledger and cost log live here.
    pub dir: tempfile::TempDir,
}

impl Offline {
    /// The emulator of one provider.
    pub fn emulator(&self, kind: Kind) -> Result<&EmulatorHandle, BoxError> {
        self.emulators
            .iter()
            .find(|e| e.kind() == kind)
            .ok_or_else(|| format!("no {kind:?} emulator").into())
    }
}

/// The error type of the examples.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Starts the six emulators and builds a client from `genroute.toml` text: the `[providers.*]` tables are
/// written here (pointing at the emulators, keys from environment references this function answers);
/// `rest` adds routes, aliases, budgets, `[router]` and so on.
pub async fn offline(rest: &str) -> Result<Offline, BoxError> {
    let mut emulators = Vec::new();
    for kind in [
        Kind::Fal,
        Kind::Replicate,
        Kind::OpenAi,
        Kind::Scenario,
        Kind::ElevenLabs,
        Kind::Runway,
    ] {
        emulators.push(
            Emulator::builder(kind)
                .progression(Progression::polls(1, 2))
                .start()
                .await?,
        );
    }
    let mut text = String::new();
    let mut env = BTreeMap::new();
    for e in &emulators {
        let id = e.kind().provider_id();
        let var = format!("{}_KEY", id.to_uppercase());
        text.push_str(&format!(
            "[providers.{id}]\napi_key = {{ env = \"{var}\" }}\nbase_url = \"{}\"\n",
            e.base_url()
        ));
        if matches!(
            e.kind(),
            Kind::Fal | Kind::Replicate | Kind::Scenario | Kind::Runway
        ) {
            text.push_str("poll = { initial_interval = \"20ms\", max_interval = \"50ms\" }\n");
        }
        if e.kind() == Kind::Scenario {
            text.push_str("api_secret = { env = \"SCENARIO_SECRET\" }\n");
            env.insert("SCENARIO_SECRET".to_owned(), e.api_secret());
        }
        text.push('\n');
        env.insert(var, e.api_key());
    }
    text.push_str(rest);
    text.push_str("\n[ledger]\npath = \"ledger.db\"\n\n[cost_log]\npath = \"cost.jsonl\"\n");
    let dir = tempfile::tempdir()?;
    let config = Config::parse(&text, "example.toml", dir.path(), EnvMode::Require, &|name| {
        env.get(name).cloned()
    })?;
    let client = Client::builder().config(config).telemetry(false).build().await?;
    Ok(Offline {
        client,
        emulators,
        dir,
    })
}
