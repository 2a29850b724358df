//! The models this adapter offers and what each can do.

use genroute_core::{
    Capabilities, Decimal, DurationSupport, IdError, ModelId, ModelInfo, Operation, SizeSupport,
};

/// FLUX.1 [dev], text to image.
pub const FLUX_DEV: &str = "fal-ai/flux/dev";
/// FLUX.1 [schnell], text to image in 1–12 steps.
pub const FLUX_SCHNELL: &str = "fal-ai/flux/schnell";
/// FLUX.1 Kontext [pro]: edits an image from a prompt.
pub const FLUX_PRO_KONTEXT: &str = "fal-ai/flux-pro/kontext";
/// Kling 1.6 standard, text to video (5 or 10 s).
pub const KLING_V16_T2V: &str = "fal-ai/kling-video/v1.6/standard/text-to-video";

fn flux(max_steps: u32) -> Capabilities {
    let mut c = Capabilities::new([Operation::ImageGeneration]);
    c.max_outputs = 4;
    // fal takes `image_size: {width, height}`; this range is conservative (FLUX works in multiples of 16).
    c.sizes = Some(SizeSupport::Range {
        min: 256,
        max: 2048,
        multiple_of: 16,
    });
    c.max_steps = Some(max_steps);
    c.seed = true;
    c.async_jobs = true;
    c.cancel = true;
    c.webhooks = true;
    c
}

/// Every model, with its capabilities.
pub fn all() -> Result<Vec<ModelInfo>, IdError> {
    let mut kontext = Capabilities::new([Operation::Img2Img]);
    kontext.max_outputs = 4;
    kontext.seed = true;
    kontext.async_jobs = true;
    kontext.cancel = true;
    kontext.webhooks = true;

    let mut kling = Capabilities::new([Operation::VideoGeneration]);
    kling.durations = Some(DurationSupport::Fixed {
        values: vec![Decimal::from(5), Decimal::from(10)],
    });
    kling.sizes = Some(SizeSupport::AspectRatio);
    kling.max_text_chars = Some(2500);
    kling.async_jobs = true;
    kling.cancel = true;
    kling.webhooks = true;

    Ok(vec![
        ModelInfo {
            id: ModelId::new(FLUX_DEV)?,
            capabilities: flux(50),
        },
        ModelInfo {
            id: ModelId::new(FLUX_SCHNELL)?,
            capabilities: flux(12),
        },
        ModelInfo {
            id: ModelId::new(FLUX_PRO_KONTEXT)?,
            capabilities: kontext,
        },
        ModelInfo {
            id: ModelId::new(KLING_V16_T2V)?,
            capabilities: kling,
        },
    ])
}

/// The app a model belongs to: its first two path segments (`fal-ai/flux/dev` → `fal-ai/flux`). Status,
/// result and cancel URLs live under the app, without the sub-path.
pub fn app_of(model: &str) -> &str {
    match model.match_indices('/').nth(1) {
        Some((i, _)) => &model[..i],
        None => model,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_drops_the_sub_path() {
        assert_eq!(app_of("fal-ai/flux/dev"), "fal-ai/flux");
        assert_eq!(app_of("fal-ai/flux-pro/kontext"), "fal-ai/flux-pro");
        assert_eq!(
            app_of("fal-ai/kling-video/v1.6/standard/text-to-video"),
            "fal-ai/kling-video"
        );
        assert_eq!(app_of("fal-ai/fast-sdxl"), "fal-ai/fast-sdxl");
    }

    #[test]
    fn declares_exactly_the_shared_model_ids() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(ids, [FLUX_DEV, FLUX_SCHNELL, FLUX_PRO_KONTEXT, KLING_V16_T2V]);
    }
}
