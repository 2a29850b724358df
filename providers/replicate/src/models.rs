//! The models this adapter offers (official models, run by name) and what each can do.

use genroute_core::{
    Capabilities, Decimal, Dimensions, DurationSupport, IdError, ModelId, ModelInfo, Operation, SizeSupport,
};

/// FLUX.1 [schnell].
pub const FLUX_SCHNELL: &str = "black-forest-labs/flux-schnell";
/// FLUX.1 [dev].
pub const FLUX_DEV: &str = "black-forest-labs/flux-dev";
/// FLUX1.1 [pro].
pub const FLUX_11_PRO: &str = "black-forest-labs/flux-1.1-pro";
/// FLUX1.1 [pro] ultra.
pub const FLUX_11_PRO_ULTRA: &str = "black-forest-labs/flux-1.1-pro-ultra";
/// MiniMax video-01 (6 s, 720p; text or first frame to video).
pub const MINIMAX_VIDEO_01: &str = "minimax/video-01";

/// How a model takes its output size.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SizeInput {
    /// `aspect_ratio` from this list (the nearest to the job's size is sent).
    AspectRatio(&'static [&'static str]),
    /// `aspect_ratio: "custom"` with `width` and `height`.
    Custom,
    /// No size input.
    None,
}

/// Aspect ratios of FLUX schnell/dev on Replicate.
pub const FLUX_RATIOS: &[&str] = &[
    "1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21",
];

/// How each model's input is shaped.
pub fn size_input(model: &str) -> SizeInput {
    match model {
        FLUX_SCHNELL | FLUX_DEV | FLUX_11_PRO_ULTRA => SizeInput::AspectRatio(FLUX_RATIOS),
        FLUX_11_PRO => SizeInput::Custom,
        _ => SizeInput::None,
    }
}

/// Whether the model takes `num_inference_steps` and `num_outputs`.
pub fn takes_steps_and_outputs(model: &str) -> bool {
    matches!(model, FLUX_SCHNELL | FLUX_DEV)
}

fn image(max_outputs: u32, max_steps: Option<u32>, sizes: SizeSupport) -> Capabilities {
    let mut c = Capabilities::new([Operation::ImageGeneration]);
    c.max_outputs = max_outputs;
    c.max_steps = max_steps;
    c.sizes = Some(sizes);
    c.seed = true;
    c.async_jobs = true;
    c.cancel = true;
    c.webhooks = true;
    c
}

/// Every model, with its capabilities.
pub fn all() -> Result<Vec<ModelInfo>, IdError> {
    let mut video = Capabilities::new([Operation::VideoGeneration]);
    video.durations = Some(DurationSupport::Fixed {
        values: vec![Decimal::from(6)],
    });
    video.sizes = Some(SizeSupport::Fixed {
        sizes: Dimensions::new(1280, 720).into_iter().collect(),
    });
    video.image_to_video = true;
    video.async_jobs = true;
    video.cancel = true;
    video.webhooks = true;
    let pro_range = SizeSupport::Range {
        min: 256,
        max: 1440,
        multiple_of: 32,
    };
    Ok(vec![
        ModelInfo {
            id: ModelId::new(FLUX_SCHNELL)?,
            capabilities: image(4, Some(4), SizeSupport::AspectRatio),
        },
        ModelInfo {
            id: ModelId::new(FLUX_DEV)?,
            capabilities: image(4, Some(50), SizeSupport::AspectRatio),
        },
        ModelInfo {
            id: ModelId::new(FLUX_11_PRO)?,
            capabilities: image(1, None, pro_range),
        },
        ModelInfo {
            id: ModelId::new(FLUX_11_PRO_ULTRA)?,
            capabilities: image(1, None, SizeSupport::AspectRatio),
        },
        ModelInfo {
            id: ModelId::new(MINIMAX_VIDEO_01)?,
            capabilities: video,
        },
    ])
}

/// The listed aspect ratio nearest to `size` (compared on the logarithm of width/height).
pub fn nearest_ratio(size: Dimensions, ratios: &[&'static str]) -> &'static str {
    let target = (f64::from(size.width()) / f64::from(size.height())).ln();
    ratios
        .iter()
        .filter_map(|r| {
            let (w, h) = r.split_once(':')?;
            let v = (w.parse::<f64>().ok()? / h.parse::<f64>().ok()?).ln();
            Some((*r, (v - target).abs()))
        })
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map_or("1:1", |(r, _)| r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_ids_and_ratios() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(
            ids,
            [
                FLUX_SCHNELL,
                FLUX_DEV,
                FLUX_11_PRO,
                FLUX_11_PRO_ULTRA,
                MINIMAX_VIDEO_01
            ]
        );
        let d = |w, h| Dimensions::new(w, h).unwrap();
        assert_eq!(nearest_ratio(d(1024, 1024), FLUX_RATIOS), "1:1");
        assert_eq!(nearest_ratio(d(1920, 1080), FLUX_RATIOS), "16:9");
        assert_eq!(nearest_ratio(d(1080, 1920), FLUX_RATIOS), "9:16");
        assert_eq!(nearest_ratio(d(1536, 1024), FLUX_RATIOS), "3:2");
        assert_eq!(nearest_ratio(d(2520, 1080), FLUX_RATIOS), "21:9");
    }
}
