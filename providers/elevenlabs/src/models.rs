//! The models this adapter offers and what each can do.

use genroute_core::{Capabilities, Decimal, DurationSupport, IdError, ModelId, ModelInfo, Operation};

/// Multilingual v2 text to speech (≤ 10,000 characters per request).
pub const MULTILINGUAL_V2: &str = "eleven_multilingual_v2";
/// Eleven v3 text to speech (≤ 5,000 characters per request).
pub const V3: &str = "eleven_v3";
/// Flash v2.5 text to speech (≤ 40,000 characters per request).
pub const FLASH_V2_5: &str = "eleven_flash_v2_5";
/// Turbo v2.5 text to speech (≤ 40,000 characters per request).
pub const TURBO_V2_5: &str = "eleven_turbo_v2_5";
/// Sound effects, 0.5–30 s.
pub const SOUND_V2: &str = "eleven_text_to_sound_v2";
/// Music, 3 s – 10 min.
pub const MUSIC_V1: &str = "music_v1";

/// Shortest sound effect, in seconds.
pub const SOUND_MIN_SECONDS: Decimal = Decimal::from_parts(5, 0, 0, false, 1);
/// Longest sound effect, in seconds.
pub const SOUND_MAX_SECONDS: u32 = 30;
/// Shortest music, in seconds (`music_length_ms` 3,000).
pub const MUSIC_MIN_SECONDS: u32 = 3;
/// Longest music, in seconds (`music_length_ms` 600,000).
pub const MUSIC_MAX_SECONDS: u32 = 600;

fn tts(max_chars: u32) -> Capabilities {
    let mut c = Capabilities::new([Operation::Speech]);
    c.max_text_chars = Some(max_chars);
    c.seed = true;
    c
}

/// Every model, with its capabilities.
pub fn all() -> Result<Vec<ModelInfo>, IdError> {
    let mut sound = Capabilities::new([Operation::SoundEffect]);
    sound.durations = Some(DurationSupport::Range {
        min: SOUND_MIN_SECONDS,
        max: Decimal::from(SOUND_MAX_SECONDS),
    });
    let mut music = Capabilities::new([Operation::Music]);
    music.durations = Some(DurationSupport::Range {
        min: Decimal::from(MUSIC_MIN_SECONDS),
        max: Decimal::from(MUSIC_MAX_SECONDS),
    });
    let info = |id: &str, capabilities: Capabilities| -> Result<ModelInfo, IdError> {
        Ok(ModelInfo {
            id: ModelId::new(id)?,
            capabilities,
        })
    };
    Ok(vec![
        info(MULTILINGUAL_V2, tts(10_000))?,
        info(V3, tts(5_000))?,
        info(FLASH_V2_5, tts(40_000))?,
        info(TURBO_V2_5, tts(40_000))?,
        info(SOUND_V2, sound)?,
        info(MUSIC_V1, music)?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_exactly_the_shared_model_ids() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(
            ids,
            [MULTILINGUAL_V2, V3, FLASH_V2_5, TURBO_V2_5, SOUND_V2, MUSIC_V1]
        );
        assert_eq!(SOUND_MIN_SECONDS.to_string(), "0.5");
    }
}
