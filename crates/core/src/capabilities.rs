//! What a model can do, as plain data.
//!
//! The router filters candidates on it, the conformance suite selects scenarios by it, and
//! [`Capabilities::check`] turns an out-of-range job into an `Unsupported` error before any spend.
//!
//! Inputs that only tune a model (steps, seed) are ignored by models that do not take them; inputs that
//! change what is produced (references, controls, frames, audio, sizes, durations, counts) are refused.

use std::collections::BTreeSet;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, ProviderError};
use crate::job::{Dimensions, Job, Operation};

/// Which output sizes a model accepts.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SizeSupport {
    /// Any width and height within bounds, each a multiple of `multiple_of`.
    Range {
        /// Smallest side.
        min: u32,
        /// Largest side.
        max: u32,
        /// Required divisor of each side (1 = any).
        multiple_of: u32,
    },
    /// Only these exact sizes (OpenAI images).
    Fixed {
        /// The sizes accepted.
        sizes: Vec<Dimensions>,
    },
    /// The adapter maps any size onto the nearest supported aspect ratio (Stability); output size may differ.
    AspectRatio,
}

/// Which durations a model accepts, in seconds.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum DurationSupport {
    /// Anything within bounds.
    Range {
        /// Shortest.
        #[serde(with = "rust_decimal::serde::str")]
        min: Decimal,
        /// Longest.
        #[serde(with = "rust_decimal::serde::str")]
        max: Decimal,
    },
    /// Only these values (e.g. Sora's 4, 8 and 12 seconds).
    Fixed {
        /// The values accepted.
        values: Vec<Decimal>,
    },
}

impl DurationSupport {
    fn accepts(&self, seconds: Decimal) -> bool {
        match self {
            DurationSupport::Range { min, max } => seconds >= *min && seconds <= *max,
            DurationSupport::Fixed { values } => values.contains(&seconds),
        }
    }

    fn describe(&self) -> String {
        match self {
            DurationSupport::Range { min, max } => format!("{min}–{max} s"),
            DurationSupport::Fixed { values } => {
                let v: Vec<String> = values.iter().map(|v| format!("{v} s")).collect();
                v.join(", ")
            }
        }
    }
}

/// What one model can do.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// The operations it performs.
    pub operations: BTreeSet<Operation>,
    /// Most outputs in one call.
    pub max_outputs: u32,
    /// Sizes accepted, for image and video output (`None`: the model takes no size).
    #[serde(default)]
    pub sizes: Option<SizeSupport>,
    /// Largest step count; `None` means the model takes no steps (a job's steps are ignored).
    #[serde(default)]
    pub max_steps: Option<u32>,
    /// Durations accepted for video, music and sound effects.
    #[serde(default)]
    pub durations: Option<DurationSupport>,
    /// Longest text (speech) or prompt, in characters.
    #[serde(default)]
    pub max_text_chars: Option<u32>,
    /// Most reference images.
    #[serde(default)]
    pub max_references: u32,
    /// Whether control inputs are accepted.
    #[serde(default)]
    pub controls: bool,
    /// Whether a seed is honoured (otherwise ignored).
    #[serde(default)]
    pub seed: bool,
    /// Whether video can start from an image.
    #[serde(default)]
    pub image_to_video: bool,
    /// Whether video can end on a given frame.
    #[serde(default)]
    pub last_frame: bool,
    /// Whether video can only be made from a first frame (image to video, no text to video).
    #[serde(default)]
    pub requires_first_frame: bool,
    /// Whether video can carry native audio.
    #[serde(default)]
    pub video_audio: bool,
    /// Whether jobs run asynchronously (queued and polled).
    #[serde(default)]
    pub async_jobs: bool,
    /// Whether a running job can be cancelled.
    #[serde(default)]
    pub cancel: bool,
    /// Whether completion can be pushed by webhook.
    #[serde(default)]
    pub webhooks: bool,
    /// Whether the provider quotes a job without running it.
    #[serde(default)]
    pub dry_run: bool,
}

impl Capabilities {
    /// Capabilities for these operations, with everything else off.
    pub fn new(operations: impl IntoIterator<Item = Operation>) -> Self {
        Self {
            operations: operations.into_iter().collect(),
            max_outputs: 1,
            sizes: None,
            max_steps: None,
            durations: None,
            max_text_chars: None,
            max_references: 0,
            controls: false,
            seed: false,
            image_to_video: false,
            last_frame: false,
            requires_first_frame: false,
            video_audio: false,
            async_jobs: false,
            cancel: false,
            webhooks: false,
            dry_run: false,
        }
    }

    /// Whether the model performs this operation at all.
    pub fn supports(&self, operation: Operation) -> bool {
        self.operations.contains(&operation)
    }

    /// Checks a job against these capabilities.
    pub fn check(&self, job: &Job) -> Result<(), Unsupported> {
        let op = job.operation();
        if !self.supports(op) {
            return Err(Unsupported::new("kind", format!("the model does not do {op}")));
        }
        let count = job.output_count();
        if count > self.max_outputs {
            return Err(Unsupported::new(
                "count",
                format!("{count} outputs asked, at most {}", self.max_outputs),
            ));
        }
        if let Some(prompt) = job.prompt() {
            self.check_text(prompt)?;
        }
        match job {
            Job::Image(j) => {
                self.check_size(j.size())?;
                if let (Some(steps), Some(max)) = (j.steps(), self.max_steps)
                    && steps > max
                {
                    return Err(Unsupported::new(
                        "steps",
                        format!("{steps} steps asked, at most {max}"),
                    ));
                }
                let refs = j.references().len();
                if refs > self.max_references as usize {
                    return Err(Unsupported::new(
                        "references",
                        format!("{refs} references given, at most {}", self.max_references),
                    ));
                }
                if !j.controls().is_empty() && !self.controls {
                    return Err(Unsupported::new("controls", "the model takes no control inputs"));
                }
            }
            Job::Video(j) => {
                if let Some(size) = j.resolution() {
                    self.check_size(size)?;
                }
                self.check_duration("duration_seconds", j.duration_seconds())?;
                if j.first_frame().is_none() && self.requires_first_frame {
                    return Err(Unsupported::new(
                        "first_frame",
                        "the model only animates a first frame",
                    ));
                }
                if j.first_frame().is_some() && !self.image_to_video {
                    return Err(Unsupported::new(
                        "first_frame",
                        "the model does not start from an image",
                    ));
                }
                if j.last_frame().is_some() && !self.last_frame {
                    return Err(Unsupported::new(
                        "last_frame",
                        "the model does not take a last frame",
                    ));
                }
                if j.audio() && !self.video_audio {
                    return Err(Unsupported::new("audio", "the model makes no native audio"));
                }
            }
            Job::Audio(j) => {
                if let Some(seconds) = j.duration_seconds() {
                    self.check_duration("duration_seconds", seconds)?;
                }
            }
            Job::Edit(_) => {}
        }
        Ok(())
    }

    fn check_text(&self, text: &str) -> Result<(), Unsupported> {
        if let Some(max) = self.max_text_chars {
            let chars = text.chars().count();
            if chars > max as usize {
                return Err(Unsupported::new(
                    "text",
                    format!("{chars} characters, at most {max}"),
                ));
            }
        }
        Ok(())
    }

    fn check_size(&self, size: Dimensions) -> Result<(), Unsupported> {
        match &self.sizes {
            None | Some(SizeSupport::AspectRatio) => Ok(()),
            Some(SizeSupport::Range {
                min,
                max,
                multiple_of,
            }) => {
                for (field, side) in [("width", size.width()), ("height", size.height())] {
                    if side < *min || side > *max {
                        return Err(Unsupported::new(
                            field,
                            format!("{side} px is outside {min}–{max} px"),
                        ));
                    }
                    if *multiple_of > 1 && side % multiple_of != 0 {
                        return Err(Unsupported::new(
                            field,
                            format!("{side} px is not a multiple of {multiple_of}"),
                        ));
                    }
                }
                Ok(())
            }
            Some(SizeSupport::Fixed { sizes }) => {
                if sizes.contains(&size) {
                    Ok(())
                } else {
                    let list: Vec<String> = sizes.iter().map(ToString::to_string).collect();
                    Err(Unsupported::new(
                        "size",
                        format!("{size} is not one of {}", list.join(", ")),
                    ))
                }
            }
        }
    }

    fn check_duration(&self, field: &'static str, seconds: Decimal) -> Result<(), Unsupported> {
        match &self.durations {
            Some(d) if !d.accepts(seconds) => Err(Unsupported::new(
                field,
                format!("{seconds} s is not within {}", d.describe()),
            )),
            _ => Ok(()),
        }
    }
}

/// A job asks for something the model cannot do.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Unsupported {
    /// The job field at fault.
    pub field: &'static str,
    /// Why.
    pub reason: String,
}

impl Unsupported {
    /// A refusal about a field.
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl From<Unsupported> for ProviderError {
    fn from(u: Unsupported) -> Self {
        ProviderError::local(ErrorKind::Unsupported, u.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::{AudioJobSpec, Control, EditJobSpec, EditOp, ImageJobSpec, MediaInput, VideoJobSpec};

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn image_caps() -> Capabilities {
        let mut c = Capabilities::new([Operation::ImageGeneration]);
        c.max_outputs = 4;
        c.sizes = Some(SizeSupport::Range {
            min: 256,
            max: 2048,
            multiple_of: 16,
        });
        c.max_steps = Some(50);
        c.max_references = 1;
        c.max_text_chars = Some(20);
        c
    }

    fn field(caps: &Capabilities, job: impl Into<Job>) -> &'static str {
        caps.check(&job.into()).unwrap_err().field
    }

    #[test]
    fn image_limits() {
        let caps = image_caps();
        assert!(
            caps.check(&ImageJobSpec::new("cat").build().unwrap().into())
                .is_ok()
        );
        assert_eq!(
            field(&caps, ImageJobSpec::new("cat").count(5).build().unwrap()),
            "count"
        );
        assert_eq!(
            field(&caps, ImageJobSpec::new("cat").size(4096, 1024).build().unwrap()),
            "width"
        );
        assert_eq!(
            field(&caps, ImageJobSpec::new("cat").size(1024, 1000).build().unwrap()),
            "height"
        );
        assert_eq!(
            field(&caps, ImageJobSpec::new("cat").steps(51).build().unwrap()),
            "steps"
        );
        assert_eq!(
            field(
                &caps,
                ImageJobSpec::new("a very very long cat prompt").build().unwrap()
            ),
            "text"
        );
        let url = MediaInput::Url { url: "u".into() };
        let two_refs = ImageJobSpec::new("cat")
            .reference(url.clone())
            .reference(url.clone());
        assert_eq!(field(&caps, two_refs.build().unwrap()), "references");
        let ctl = ImageJobSpec::new("cat").control(Control {
            kind: "depth".into(),
            input: url,
            strength: None,
        });
        assert_eq!(field(&caps, ctl.build().unwrap()), "controls");
        let video = VideoJobSpec::new("x", d("5")).build().unwrap();
        assert_eq!(field(&caps, video), "kind");
    }

    #[test]
    fn steps_are_ignored_by_models_without_steps() {
        let mut caps = image_caps();
        caps.max_steps = None;
        assert!(
            caps.check(&ImageJobSpec::new("cat").steps(150).build().unwrap().into())
                .is_ok()
        );
    }

    #[test]
    fn fixed_sizes_and_durations() {
        let mut caps = Capabilities::new([Operation::ImageGeneration, Operation::VideoGeneration]);
        caps.sizes = Some(SizeSupport::Fixed {
            sizes: vec![
                Dimensions::new(1024, 1024).unwrap(),
                Dimensions::new(1536, 1024).unwrap(),
            ],
        });
        caps.durations = Some(DurationSupport::Fixed {
            values: vec![d("4"), d("8"), d("12")],
        });
        assert!(
            caps.check(&ImageJobSpec::new("cat").size(1536, 1024).build().unwrap().into())
                .is_ok()
        );
        let err = caps
            .check(&ImageJobSpec::new("cat").size(1024, 1536).build().unwrap().into())
            .unwrap_err();
        assert_eq!(err.field, "size");
        assert!(err.reason.contains("1024x1024, 1536x1024"), "{err}");
        assert!(
            caps.check(&VideoJobSpec::new("x", d("8")).build().unwrap().into())
                .is_ok()
        );
        assert_eq!(
            field(&caps, VideoJobSpec::new("x", d("5")).build().unwrap()),
            "duration_seconds"
        );
        assert_eq!(
            field(&caps, VideoJobSpec::new("x", d("4")).audio(true).build().unwrap()),
            "audio"
        );
        let i2v = VideoJobSpec::from_image(MediaInput::Url { url: "u".into() }, d("4"))
            .build()
            .unwrap();
        assert_eq!(field(&caps, i2v), "first_frame");
        caps.sizes = Some(SizeSupport::AspectRatio);
        assert!(
            caps.check(&ImageJobSpec::new("cat").size(1000, 700).build().unwrap().into())
                .is_ok()
        );
    }

    #[test]
    fn audio_and_edit() {
        let mut caps = Capabilities::new([Operation::SoundEffect, Operation::Upscale]);
        caps.durations = Some(DurationSupport::Range {
            min: d("0.5"),
            max: d("30"),
        });
        assert!(
            caps.check(&AudioJobSpec::sound_effect("door").build().unwrap().into())
                .is_ok()
        );
        let long = AudioJobSpec::sound_effect("door")
            .duration_seconds(d("31"))
            .build()
            .unwrap();
        assert_eq!(field(&caps, long), "duration_seconds");
        assert_eq!(field(&caps, AudioJobSpec::speech("hi").build().unwrap()), "kind");
        let up = EditJobSpec::new(
            EditOp::Upscale { factor: d("2") },
            MediaInput::Url { url: "u".into() },
        );
        assert!(caps.check(&up.build().unwrap().into()).is_ok());
    }

    #[test]
    fn unsupported_becomes_a_local_unbilled_provider_error() {
        let e: ProviderError = Unsupported::new("steps", "too many").into();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(e.billing(), &crate::error::Billed::No);
        assert!(!e.is_temporary());
        assert_eq!(e.message(), "steps: too many");
    }

    #[test]
    fn capabilities_are_serialisable_data() {
        let caps = image_caps();
        let json = serde_json::to_string(&caps).unwrap();
        assert_eq!(serde_json::from_str::<Capabilities>(&json).unwrap(), caps);
    }
}
