//! Text to speech on ElevenLabs with OpenAI as the fallback; the audio bytes are written to a file.
//! Offline: `cargo run -p genroute-examples --example text_to_speech`.
#![allow(clippy::print_stdout)]

use genroute::{AssetContent, AudioJobSpec, Caller, GenerateRequest};
use genroute_examples::{BoxError, offline};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let env = offline(
        r#"
[routes.speech]
candidates = [
  { provider = "elevenlabs", model = "eleven_multilingual_v2" },
  { provider = "openai", model = "tts-1" },
]

[budgets.teams.acme]
allowance = "100 CU"
"#,
    )
    .await?;
    let text = "Welcome aboard. The tide turns at six, and the lighthouse keeps its watch.";
    let job = AudioJobSpec::speech(text).build()?;
    let request = GenerateRequest::new(job, "speech", Caller::team("acme".parse()?));

    let quote = env.client.quote(&request)?;
    for c in &quote.candidates {
        println!(
            "{}/{}: {} = {} — {}",
            c.provider,
            c.model,
            c.cost.as_deref().unwrap_or("-"),
            c.cost_cu.as_deref().unwrap_or("-"),
            c.reason
        );
    }

    let outcome = env.client.generate(request).await?;
    let path = env.dir.path().join("speech.mp3");
    for asset in &outcome.generation.outputs {
        if let AssetContent::Bytes(bytes) = &asset.content {
            std::fs::write(&path, bytes)?;
            println!(
                "wrote {} bytes of {} to {}",
                bytes.len(),
                asset.media_type.as_deref().unwrap_or("audio"),
                path.display()
            );
        }
    }
    println!(
        "{} characters on {} cost {}",
        text.chars().count(),
        outcome.target,
        outcome.total_spend_cu
    );
    Ok(())
}
