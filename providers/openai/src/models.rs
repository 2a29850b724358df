//! The models this adapter offers and what each can do.

use genroute_core::{
    Capabilities, Dimensions, IdError, JobError, ModelId, ModelInfo, Operation, SizeSupport,
};

/// GPT Image 1: generations, edits (img2img, inpaint) and reference images; returns base64.
pub const GPT_IMAGE_1: &str = "gpt-image-1";
/// DALL·E 3: generations only, one image per call; returns a URL.
pub const DALL_E_3: &str = "dall-e-3";
/// TTS 1.
pub const TTS_1: &str = "tts-1";
/// TTS 1 HD.
pub const TTS_1_HD: &str = "tts-1-hd";

/// Speech output formats and their media types.
pub const SPEECH_FORMATS: &[(&str, &str)] = &[
    ("mp3", "audio/mpeg"),
    ("opus", "audio/opus"),
    ("aac", "audio/aac"),
    ("flac", "audio/flac"),
    ("wav", "audio/wav"),
    ("pcm", "audio/pcm"),
];

fn sizes(list: &[(u32, u32)]) -> Result<SizeSupport, JobError> {
    Ok(SizeSupport::Fixed {
        sizes: list
            .iter()
            .map(|(w, h)| Dimensions::new(*w, *h))
            .collect::<Result<_, _>>()?,
    })
}

/// Every model, with its capabilities.
pub fn all() -> Result<Vec<ModelInfo>, String> {
    let mut gpt = Capabilities::new([Operation::ImageGeneration, Operation::Img2Img, Operation::Inpaint]);
    gpt.max_outputs = 10;
    gpt.sizes = Some(sizes(&[(1024, 1024), (1536, 1024), (1024, 1536)]).map_err(|e| e.to_string())?);
    gpt.max_text_chars = Some(32_000);
    gpt.max_references = 16;

    let mut dalle = Capabilities::new([Operation::ImageGeneration]);
    dalle.max_outputs = 1;
    dalle.sizes = Some(sizes(&[(1024, 1024), (1792, 1024), (1024, 1792)]).map_err(|e| e.to_string())?);
    dalle.max_text_chars = Some(4_000);

    let mut tts = Capabilities::new([Operation::Speech]);
    tts.max_text_chars = Some(4_096);

    let id = |s: &str| ModelId::new(s).map_err(|e: IdError| e.to_string());
    Ok(vec![
        ModelInfo {
            id: id(GPT_IMAGE_1)?,
            capabilities: gpt,
        },
        ModelInfo {
            id: id(DALL_E_3)?,
            capabilities: dalle,
        },
        ModelInfo {
            id: id(TTS_1)?,
            capabilities: tts.clone(),
        },
        ModelInfo {
            id: id(TTS_1_HD)?,
            capabilities: tts,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(ids, [GPT_IMAGE_1, DALL_E_3, TTS_1, TTS_1_HD]);
    }
}
