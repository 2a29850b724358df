//! The models this adapter offers, what each can do, and how a job's size maps onto Runway's `ratio`.

use genroute_core::{
    Capabilities, Decimal, Dimensions, DurationSupport, IdError, ModelId, ModelInfo, Operation, SizeSupport,
};

/// Gen-4 Turbo: image to video only (5 credits/s).
pub const GEN4_TURBO: &str = "gen4_turbo";
/// Gen-4.5: text or image to video (12 credits/s).
pub const GEN4_5: &str = "gen4.5";
/// Google Veo 3: text or image to video with audio, 8 s (40 credits/s).
pub const VEO3: &str = "veo3";
/// Google Veo 3.1 Fast: text or image to video, first and last frame, optional audio.
pub const VEO3_1_FAST: &str = "veo3.1_fast";
/// Gen-4 Image: text (and up to 3 references) to image.
pub const GEN4_IMAGE: &str = "gen4_image";

/// The longest `promptText` Runway takes, in characters.
pub const MAX_PROMPT_CHARS: u32 = 1000;

/// What kind of task a model runs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// `text_to_video` / `image_to_video`.
    Video,
    /// `text_to_image`.
    Image,
}

/// One model's wire facts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Spec {
    /// The model id, as sent in `model`.
    pub id: &'static str,
    /// Video or image.
    pub kind: Kind,
    /// Whether `POST /v1/text_to_video` takes it (otherwise a first frame is required).
    pub text_to_video: bool,
    /// Whether `promptImage` may hold a `"last"` frame.
    pub last_frame: bool,
    /// Whether the body takes `audio` (Veo).
    pub audio: bool,
    /// Whole-second durations accepted (video).
    pub durations: &'static [u32],
    /// Output sizes as `ratio` values (`width:height` in pixels); the first is the default.
    pub ratios: &'static [(u32, u32)],
}

const GEN4_VIDEO_RATIOS: &[(u32, u32)] = &[
    (1280, 720),
    (720, 1280),
    (1104, 832),
    (832, 1104),
    (960, 960),
    (1584, 672),
];
const VEO_RATIOS: &[(u32, u32)] = &[(1280, 720), (720, 1280)];
const VEO31_RATIOS: &[(u32, u32)] = &[(1280, 720), (720, 1280), (1920, 1080), (1080, 1920)];
const GEN4_IMAGE_RATIOS: &[(u32, u32)] = &[
    (1920, 1080),
    (1080, 1920),
    (1024, 1024),
    (1360, 768),
    (1080, 1080),
    (1168, 880),
    (1440, 1080),
    (1080, 1440),
    (1808, 768),
    (2112, 912),
    (1280, 720),
    (720, 1280),
    (720, 720),
    (960, 720),
    (720, 960),
    (1680, 720),
];
const TWO_TO_TEN: &[u32] = &[2, 3, 4, 5, 6, 7, 8, 9, 10];

/// Every model's wire facts, in declaration order.
pub const SPECS: &[Spec] = &[
    Spec {
        id: GEN4_TURBO,
        kind: Kind::Video,
        text_to_video: false,
        last_frame: false,
        audio: false,
        durations: TWO_TO_TEN,
        ratios: GEN4_VIDEO_RATIOS,
    },
    Spec {
        id: GEN4_5,
        kind: Kind::Video,
        text_to_video: true,
        last_frame: false,
        audio: false,
        durations: TWO_TO_TEN,
        ratios: GEN4_VIDEO_RATIOS,
    },
    Spec {
        id: VEO3,
        kind: Kind::Video,
        text_to_video: true,
        last_frame: false,
        audio: true,
        durations: &[8],
        ratios: VEO_RATIOS,
    },
    Spec {
        id: VEO3_1_FAST,
        kind: Kind::Video,
        text_to_video: true,
        last_frame: true,
        audio: true,
        durations: &[4, 6, 8],
        ratios: VEO31_RATIOS,
    },
    Spec {
        id: GEN4_IMAGE,
        kind: Kind::Image,
        text_to_video: false,
        last_frame: false,
        audio: false,
        durations: &[],
        ratios: GEN4_IMAGE_RATIOS,
    },
];

/// The wire facts of a model, if offered.
pub fn spec(model: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.id == model)
}

fn capabilities(spec: &Spec) -> Capabilities {
    let mut c = match spec.kind {
        Kind::Video => {
            let mut c = Capabilities::new([Operation::VideoGeneration]);
            c.durations = Some(DurationSupport::Fixed {
                values: spec.durations.iter().map(|d| Decimal::from(*d)).collect(),
            });
            // Any size is mapped onto the nearest of the model's ratios (video is priced per second,
            // whatever the ratio).
            c.sizes = Some(SizeSupport::AspectRatio);
            c.image_to_video = true;
            c.requires_first_frame = !spec.text_to_video;
            c.last_frame = spec.last_frame;
            c.video_audio = spec.audio;
            c
        }
        Kind::Image => {
            let mut c = Capabilities::new([Operation::ImageGeneration]);
            // Exact sizes only: gen4_image's price depends on the output size (720p vs 1080p).
            c.sizes = Some(SizeSupport::Fixed {
                sizes: spec
                    .ratios
                    .iter()
                    .filter_map(|(w, h)| Dimensions::new(*w, *h).ok())
                    .collect(),
            });
            c.max_references = 3;
            c
        }
    };
    c.max_text_chars = Some(MAX_PROMPT_CHARS);
    c.seed = true;
    c.async_jobs = true;
    c.cancel = true;
    c
}

/// Every model, with its capabilities.
pub fn all() -> Result<Vec<ModelInfo>, IdError> {
    SPECS
        .iter()
        .map(|s| {
            Ok(ModelInfo {
                id: ModelId::new(s.id)?,
                capabilities: capabilities(s),
            })
        })
        .collect()
}

/// The `ratio` for a size: the exact size when the model offers it, else the one whose aspect is
/// nearest (ties: the closest pixel count); the model's default without a size.
pub fn ratio_for(spec: &Spec, size: Option<Dimensions>) -> (u32, u32) {
    let default = spec.ratios.first().copied().unwrap_or((1280, 720));
    let Some(size) = size else { return default };
    let (w, h) = (size.width(), size.height());
    if let Some(exact) = spec.ratios.iter().find(|r| **r == (w, h)) {
        return *exact;
    }
    let aspect = |w: u32, h: u32| (f64::from(w) / f64::from(h)).ln();
    let pixels = |w: u32, h: u32| f64::from(w) * f64::from(h);
    let target = aspect(w, h);
    spec.ratios
        .iter()
        .copied()
        .min_by(|a, b| {
            let da = (aspect(a.0, a.1) - target).abs();
            let db = (aspect(b.0, b.1) - target).abs();
            da.total_cmp(&db).then_with(|| {
                let pa = (pixels(a.0, a.1) - pixels(w, h)).abs();
                let pb = (pixels(b.0, b.1) - pixels(w, h)).abs();
                pa.total_cmp(&pb)
            })
        })
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(w: u32, h: u32) -> Option<Dimensions> {
        Some(Dimensions::new(w, h).unwrap())
    }

    #[test]
    fn declares_exactly_the_shared_model_ids() {
        let ids: Vec<String> = all().unwrap().into_iter().map(|m| m.id.to_string()).collect();
        assert_eq!(ids, [GEN4_TURBO, GEN4_5, VEO3, VEO3_1_FAST, GEN4_IMAGE]);
    }

    #[test]
    fn ratios_map_exactly_then_by_nearest_aspect() {
        let gen4 = spec(GEN4_TURBO).unwrap();
        assert_eq!(ratio_for(gen4, None), (1280, 720));
        assert_eq!(ratio_for(gen4, d(832, 1104)), (832, 1104));
        assert_eq!(ratio_for(gen4, d(1920, 1080)), (1280, 720));
        assert_eq!(ratio_for(gen4, d(1080, 1920)), (720, 1280));
        assert_eq!(ratio_for(gen4, d(1024, 1024)), (960, 960));
        assert_eq!(ratio_for(gen4, d(2560, 1080)), (1584, 672));
        assert_eq!(ratio_for(gen4, d(1024, 768)), (1104, 832));
        let veo31 = spec(VEO3_1_FAST).unwrap();
        // Same aspect, two sizes: the closest pixel count wins.
        assert_eq!(ratio_for(veo31, d(1920, 1080)), (1920, 1080));
        assert_eq!(ratio_for(veo31, d(1760, 990)), (1920, 1080));
        assert_eq!(ratio_for(veo31, d(1600, 900)), (1280, 720));
        assert_eq!(ratio_for(veo31, d(1024, 576)), (1280, 720));
        assert_eq!(ratio_for(veo31, d(1000, 1000)), (1280, 720));
    }
}
