//! The models this adapter offers, what each can do, and which endpoint runs each job.

use genroute_core::{Capabilities, IdError, ModelId, ModelInfo, Operation, SizeSupport};

/// Stable Diffusion 1.5 (txt2img, img2img, inpaint).
pub const SD15: &str = "sd-1.5";
/// Stable Diffusion XL (txt2img, img2img, inpaint).
pub const SDXL: &str = "sdxl";
/// Upscale an image (`/generate/upscale`).
pub const UPSCALE: &str = "upscale";
/// Remove an image's background (`/generate/remove-background`).
pub const REMOVE_BACKGROUND: &str = "remove-background";
/// Detection (declared for the price catalog; no genroute job runs it).
pub const DETECTION: &str = "detection";
/// Captioning (declared for the price catalog; no genroute job runs it).
pub const CAPTIONING: &str = "captioning";
/// Magic prompt (declared for the price catalog; no genroute job runs it).
pub const MAGIC_PROMPT: &str = "magic-prompt";
/// Pixel-art conversion (`/generate/pixelate`).
pub const PIXELATE: &str = "pixelate";
/// Raster to SVG (`/generate/vectorize`).
pub const VECTORIZE: &str = "vectorize";
/// Generator training (declared for the price catalog; no genroute job runs it).
pub const TRAINING: &str = "training";

/// Most images one txt2img call makes (`numSamples` 1–128).
pub const MAX_SAMPLES: u32 = 128;
/// Most inference steps (`numInferenceSteps` 1–150).
pub const MAX_STEPS: u32 = 150;

fn generator() -> Capabilities {
    let mut c = Capabilities::new([Operation::ImageGeneration, Operation::Img2Img, Operation::Inpaint]);
    c.max_outputs = MAX_SAMPLES;
    c.sizes = Some(SizeSupport::Range {
        min: 64,
        max: 2048,
        multiple_of: 8,
    });
    c.max_steps = Some(MAX_STEPS);
    c.seed = true;
    c.async_jobs = true;
    c.cancel = true;
    c.dry_run = true;
    c
}

fn tool(op: Operation) -> Capabilities {
    let mut c = Capabilities::new([op]);
    c.async_jobs = true;
    c.cancel = true;
    c.dry_run = true;
    c
}

/// Every model, with its capabilities. `detection`, `captioning`, `magic-prompt` and `training` do no
/// genroute operation: they are declared so the catalog's ids and the adapter's agree, and every job sent
/// to them is refused as `Unsupported` before anything is sent.
pub fn all() -> Result<Vec<ModelInfo>, IdError> {
    let none = || Capabilities::new([]);
    let list = [
        (SD15, generator()),
        (SDXL, generator()),
        (UPSCALE, tool(Operation::Upscale)),
        (REMOVE_BACKGROUND, tool(Operation::RemoveBackground)),
        (DETECTION, none()),
        (CAPTIONING, none()),
        (MAGIC_PROMPT, none()),
        (PIXELATE, tool(Operation::Pixelate)),
        (VECTORIZE, tool(Operation::Vectorize)),
        (TRAINING, none()),
    ];
    list.into_iter()
        .map(|(id, capabilities)| {
            Ok(ModelInfo {
                id: ModelId::new(id)?,
                capabilities,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declares_exactly_the_shared_model_ids() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                SD15,
                SDXL,
                UPSCALE,
                REMOVE_BACKGROUND,
                DETECTION,
                CAPTIONING,
                MAGIC_PROMPT,
                PIXELATE,
                VECTORIZE,
                TRAINING
            ]
        );
    }
}
