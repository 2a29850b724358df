//! Generation jobs.
//!
//! Each job type has a plain-data *spec* (public fields, serde, chainable setters) and a validated job
//! built from it with `TryFrom` (or the spec's `build()`). A job that exists has passed validation: zero
//! sizes, non-positive durations, zero counts and empty prompts are [`JobError`]s naming the field, raised
//! before anything is quoted, reserved or sent. Jobs serialise as their spec, and deserialising validates.
//!
//! Provider-specific options travel in `extras` (a JSON object) and are passed through untouched.

use std::num::NonZeroU32;
use std::time::Duration;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Provider-specific request fields, passed through untouched.
pub type Extras = serde_json::Map<String, serde_json::Value>;

/// The largest width or height accepted, in pixels.
pub const MAX_DIMENSION: u32 = 16_384;
/// The most outputs one job may ask for.
pub const MAX_OUTPUTS: u32 = 1_000;
/// The most inference steps one job may ask for.
pub const MAX_STEPS: u32 = 10_000;
/// The longest media duration accepted, in seconds (one day).
pub const MAX_DURATION_SECONDS: u32 = 86_400;

/// Why a job was refused. Every variant names the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A required text was empty or only whitespace.
    #[error("{field} must not be empty")]
    Empty {
        /// The field.
        field: &'static str,
    },
    /// A size or count was zero.
    #[error("{field} must be greater than zero")]
    Zero {
        /// The field.
        field: &'static str,
    },
    /// A duration or factor was zero or negative.
    #[error("{field} must be positive, got {value}")]
    NotPositive {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
    },
    /// A value was above a limit.
    #[error("{field} is {value}, above the limit of {max}")]
    TooLarge {
        /// The field.
        field: &'static str,
        /// The value given.
        value: String,
        /// The limit.
        max: String,
    },
    /// A required input was missing.
    #[error("{field} is required: {reason}")]
    Missing {
        /// The field.
        field: &'static str,
        /// What needs it.
        reason: &'static str,
    },
    /// Any other invalid value.
    #[error("{field} is invalid: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl JobError {
    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            JobError::Empty { field }
            | JobError::Zero { field }
            | JobError::NotPositive { field, .. }
            | JobError::TooLarge { field, .. }
            | JobError::Missing { field, .. }
            | JobError::Invalid { field, .. } => field,
        }
    }
}

fn non_empty(field: &'static str, text: &str) -> Result<(), JobError> {
    if text.trim().is_empty() {
        Err(JobError::Empty { field })
    } else {
        Ok(())
    }
}

fn bounded(field: &'static str, value: u32, max: u32) -> Result<NonZeroU32, JobError> {
    let nz = NonZeroU32::new(value).ok_or(JobError::Zero { field })?;
    if value > max {
        return Err(JobError::TooLarge {
            field,
            value: value.to_string(),
            max: max.to_string(),
        });
    }
    Ok(nz)
}

fn positive_seconds(field: &'static str, value: Decimal) -> Result<Decimal, JobError> {
    if value <= Decimal::ZERO {
        return Err(JobError::NotPositive {
            field,
            value: value.to_string(),
        });
    }
    if value > Decimal::from(MAX_DURATION_SECONDS) {
        return Err(JobError::TooLarge {
            field,
            value: value.to_string(),
            max: MAX_DURATION_SECONDS.to_string(),
        });
    }
    Ok(value.normalize())
}

fn seconds_to_duration(seconds: Decimal) -> Duration {
    let millis = (seconds * Decimal::from(1000)).trunc();
    Duration::from_millis(u64::try_from(millis).unwrap_or(u64::MAX))
}

/// Width × height of an image or video frame, both non-zero and at most [`MAX_DIMENSION`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "RawDimensions", into = "RawDimensions")]
pub struct Dimensions {
    width: NonZeroU32,
    height: NonZeroU32,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDimensions {
    width: u32,
    height: u32,
}

impl TryFrom<RawDimensions> for Dimensions {
    type Error = JobError;
    fn try_from(raw: RawDimensions) -> Result<Self, Self::Error> {
        Dimensions::new(raw.width, raw.height)
    }
}

impl From<Dimensions> for RawDimensions {
    fn from(d: Dimensions) -> Self {
        RawDimensions {
            width: d.width(),
            height: d.height(),
        }
    }
}

impl Dimensions {
    /// Validates a size.
    pub fn new(width: u32, height: u32) -> Result<Self, JobError> {
        Ok(Self {
            width: bounded("width", width, MAX_DIMENSION)?,
            height: bounded("height", height, MAX_DIMENSION)?,
        })
    }

    /// Width in pixels.
    pub fn width(self) -> u32 {
        self.width.get()
    }

    /// Height in pixels.
    pub fn height(self) -> u32 {
        self.height.get()
    }

    /// Total pixels.
    pub fn pixels(self) -> u64 {
        u64::from(self.width()) * u64::from(self.height())
    }

    /// Exact megapixels (pixels / 1,000,000), unrounded.
    pub fn megapixels(self) -> Decimal {
        Decimal::from(self.pixels()) / Decimal::from(1_000_000u32)
    }
}

impl std::fmt::Display for Dimensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

/// An input image, mask, frame or audio clip.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaInput {
    /// A URL the provider can fetch (https or a data URI).
    Url {
        /// The URL.
        url: String,
    },
    /// Raw bytes, uploaded by the adapter.
    Bytes {
        /// The media type, e.g. `image/png`.
        media_type: String,
        /// The content.
        data: Vec<u8>,
    },
    /// An asset already stored at the provider.
    Asset {
        /// The provider's asset id.
        id: String,
    },
}

impl MediaInput {
    fn validate(&self, field: &'static str) -> Result<(), JobError> {
        match self {
            MediaInput::Url { url } => non_empty(field, url),
            MediaInput::Bytes { media_type, data } => {
                non_empty(field, media_type)?;
                if data.is_empty() {
                    Err(JobError::Empty { field })
                } else {
                    Ok(())
                }
            }
            MediaInput::Asset { id } => non_empty(field, id),
        }
    }
}

/// A control input (e.g. a depth map or a pose) guiding composition.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    /// The kind of control, as the provider names it: `canny`, `depth`, `pose`, `composition`, ...
    pub kind: String,
    /// The control image.
    pub input: MediaInput,
    /// How strongly it applies (provider-defined scale), if given.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub strength: Option<Decimal>,
}

// ---------------------------------------------------------------------------------------------------------
// Image

/// The plain-data description of an image generation; validate with [`ImageJobSpec::build`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageJobSpec {
    /// What to draw.
    pub prompt: String,
    /// What to avoid, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative_prompt: Option<String>,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Inference steps, where the model takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<u32>,
    /// Number of images.
    #[serde(default = "one")]
    pub count: u32,
    /// Seed, where supported (may exceed 2^53).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Reference images (style or subject references).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<MediaInput>,
    /// Control inputs (composition, depth, pose...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub controls: Vec<Control>,
    /// Provider-specific fields, passed through untouched.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub extras: Extras,
}

fn one() -> u32 {
    1
}

impl ImageJobSpec {
    /// A 1024×1024, one-image spec for a prompt.
    pub fn new(prompt: impl Into<String>) -> Self {
        Self {
            prompt: prompt.into(),
            negative_prompt: None,
            width: 1024,
            height: 1024,
            steps: None,
            count: 1,
            seed: None,
            references: Vec::new(),
            controls: Vec::new(),
            extras: Extras::new(),
        }
    }

    /// Sets the size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }

    /// Sets the step count.
    pub fn steps(mut self, steps: u32) -> Self {
        self.steps = Some(steps);
        self
    }

    /// Sets the number of images.
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets the negative prompt.
    pub fn negative_prompt(mut self, text: impl Into<String>) -> Self {
        self.negative_prompt = Some(text.into());
        self
    }

    /// Adds a reference image.
    pub fn reference(mut self, input: MediaInput) -> Self {
        self.references.push(input);
        self
    }

    /// Adds a control input.
    pub fn control(mut self, control: Control) -> Self {
        self.controls.push(control);
        self
    }

    /// Adds a provider-specific field.
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extras.insert(key.into(), value);
        self
    }

    /// Validates the spec into a job.
    pub fn build(self) -> Result<ImageJob, JobError> {
        ImageJob::try_from(self)
    }
}

/// A validated image generation.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(try_from = "ImageJobSpec", into = "ImageJobSpec")]
pub struct ImageJob {
    spec: ImageJobSpec,
    size: Dimensions,
    count: NonZeroU32,
    steps: Option<NonZeroU32>,
}

impl TryFrom<ImageJobSpec> for ImageJob {
    type Error = JobError;
    fn try_from(spec: ImageJobSpec) -> Result<Self, JobError> {
        non_empty("prompt", &spec.prompt)?;
        let size = Dimensions::new(spec.width, spec.height)?;
        let count = bounded("count", spec.count, MAX_OUTPUTS)?;
        let steps = spec.steps.map(|s| bounded("steps", s, MAX_STEPS)).transpose()?;
        for r in &spec.references {
            r.validate("references")?;
        }
        for c in &spec.controls {
            non_empty("controls.kind", &c.kind)?;
            c.input.validate("controls.input")?;
        }
        Ok(Self {
            spec,
            size,
            count,
            steps,
        })
    }
}

impl From<ImageJob> for ImageJobSpec {
    fn from(job: ImageJob) -> Self {
        job.spec
    }
}

impl ImageJob {
    /// The prompt.
    pub fn prompt(&self) -> &str {
        &self.spec.prompt
    }
    /// The negative prompt, if any.
    pub fn negative_prompt(&self) -> Option<&str> {
        self.spec.negative_prompt.as_deref()
    }
    /// Output size.
    pub fn size(&self) -> Dimensions {
        self.size
    }
    /// Steps, if given.
    pub fn steps(&self) -> Option<u32> {
        self.steps.map(NonZeroU32::get)
    }
    /// Number of images (≥ 1).
    pub fn count(&self) -> u32 {
        self.count.get()
    }
    /// Seed, if given.
    pub fn seed(&self) -> Option<u64> {
        self.spec.seed
    }
    /// Reference inputs.
    pub fn references(&self) -> &[MediaInput] {
        &self.spec.references
    }
    /// Control inputs.
    pub fn controls(&self) -> &[Control] {
        &self.spec.controls
    }
    /// Provider-specific fields.
    pub fn extras(&self) -> &Extras {
        &self.spec.extras
    }
    /// The spec this job was built from.
    pub fn spec(&self) -> &ImageJobSpec {
        &self.spec
    }
}

// ---------------------------------------------------------------------------------------------------------
// Video

/// The plain-data description of a video generation; validate with [`VideoJobSpec::build`].
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoJobSpec {
    /// What to show; required unless a first frame is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// Clip length in seconds (may be fractional).
    #[serde(with = "rust_decimal::serde::str")]
    pub duration_seconds: Decimal,
    /// Frame size, if the caller asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<Dimensions>,
    /// Frames per second, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<u32>,
    /// Whether to generate a soundtrack (priced extra by some models).
    #[serde(default)]
    pub audio: bool,
    /// Image to start from (image-to-video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_frame: Option<MediaInput>,
    /// Image to end on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_frame: Option<MediaInput>,
    /// Seed, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Provider-specific fields, passed through untouched.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub extras: Extras,
}

impl VideoJobSpec {
    /// A text-to-video spec.
    pub fn new(prompt: impl Into<String>, duration_seconds: Decimal) -> Self {
        Self {
            prompt: Some(prompt.into()),
            duration_seconds,
            resolution: None,
            fps: None,
            audio: false,
            first_frame: None,
            last_frame: None,
            seed: None,
            extras: Extras::new(),
        }
    }

    /// An image-to-video spec.
    pub fn from_image(first_frame: MediaInput, duration_seconds: Decimal) -> Self {
        Self {
            prompt: None,
            first_frame: Some(first_frame),
            ..Self::new(String::new(), duration_seconds)
        }
    }

    /// Sets the prompt.
    pub fn prompt(mut self, prompt: impl Into<String>) -> Self {
        self.prompt = Some(prompt.into());
        self
    }

    /// Sets the frame size.
    pub fn resolution(mut self, resolution: Dimensions) -> Self {
        self.resolution = Some(resolution);
        self
    }

    /// Sets frames per second.
    pub fn fps(mut self, fps: u32) -> Self {
        self.fps = Some(fps);
        self
    }

    /// Asks for native audio.
    pub fn audio(mut self, audio: bool) -> Self {
        self.audio = audio;
        self
    }

    /// Sets the last frame.
    pub fn last_frame(mut self, input: MediaInput) -> Self {
        self.last_frame = Some(input);
        self
    }

    /// Sets the seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Adds a provider-specific field.
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extras.insert(key.into(), value);
        self
    }

    /// Validates the spec into a job.
    pub fn build(self) -> Result<VideoJob, JobError> {
        VideoJob::try_from(self)
    }
}

/// A validated video generation.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(try_from = "VideoJobSpec", into = "VideoJobSpec")]
pub struct VideoJob {
    spec: VideoJobSpec,
}

impl TryFrom<VideoJobSpec> for VideoJob {
    type Error = JobError;
    fn try_from(mut spec: VideoJobSpec) -> Result<Self, JobError> {
        match (&spec.prompt, &spec.first_frame) {
            (Some(p), _) if !p.trim().is_empty() => {}
            (Some(_), None) => return Err(JobError::Empty { field: "prompt" }),
            (None, None) => {
                return Err(JobError::Missing {
                    field: "prompt",
                    reason: "a video needs a prompt or a first frame",
                });
            }
            // An image-to-video job may leave the prompt empty: drop it rather than send "".
            (_, Some(_)) => spec.prompt = None,
        }
        spec.duration_seconds = positive_seconds("duration_seconds", spec.duration_seconds)?;
        if let Some(fps) = spec.fps {
            bounded("fps", fps, 1_000)?;
        }
        if let Some(f) = &spec.first_frame {
            f.validate("first_frame")?;
        }
        if let Some(f) = &spec.last_frame {
            f.validate("last_frame")?;
        }
        Ok(Self { spec })
    }
}

impl From<VideoJob> for VideoJobSpec {
    fn from(job: VideoJob) -> Self {
        job.spec
    }
}

impl VideoJob {
    /// The prompt, if any.
    pub fn prompt(&self) -> Option<&str> {
        self.spec.prompt.as_deref()
    }
    /// Exact clip length in seconds (> 0).
    pub fn duration_seconds(&self) -> Decimal {
        self.spec.duration_seconds
    }
    /// Clip length, truncated to milliseconds.
    pub fn duration(&self) -> Duration {
        seconds_to_duration(self.spec.duration_seconds)
    }
    /// Frame size, if asked for.
    pub fn resolution(&self) -> Option<Dimensions> {
        self.spec.resolution
    }
    /// Frames per second, if asked for.
    pub fn fps(&self) -> Option<u32> {
        self.spec.fps
    }
    /// Whether native audio is asked for.
    pub fn audio(&self) -> bool {
        self.spec.audio
    }
    /// The first frame, if any.
    pub fn first_frame(&self) -> Option<&MediaInput> {
        self.spec.first_frame.as_ref()
    }
    /// The last frame, if any.
    pub fn last_frame(&self) -> Option<&MediaInput> {
        self.spec.last_frame.as_ref()
    }
    /// Seed, if given.
    pub fn seed(&self) -> Option<u64> {
        self.spec.seed
    }
    /// Provider-specific fields.
    pub fn extras(&self) -> &Extras {
        &self.spec.extras
    }
    /// The spec this job was built from.
    pub fn spec(&self) -> &VideoJobSpec {
        &self.spec
    }
}

// ---------------------------------------------------------------------------------------------------------
// Audio

/// What kind of audio to make.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AudioKind {
    /// Text to speech.
    Speech {
        /// The text to speak.
        text: String,
        /// The provider's voice id or name, if chosen.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        voice: Option<String>,
    },
    /// A sound effect from a description.
    SoundEffect {
        /// What it should sound like.
        prompt: String,
        /// Length in seconds, if fixed.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "rust_decimal::serde::str_option"
        )]
        duration_seconds: Option<Decimal>,
    },
    /// Music from a description.
    Music {
        /// What it should sound like.
        prompt: String,
        /// Length in seconds.
        #[serde(with = "rust_decimal::serde::str")]
        length_seconds: Decimal,
    },
}

/// The plain-data description of an audio generation; validate with [`AudioJobSpec::build`].
// No `deny_unknown_fields` here: serde does not support it beside `flatten`; `AudioKind` denies instead.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct AudioJobSpec {
    /// Speech, sound effect or music.
    #[serde(flatten)]
    pub kind: AudioKind,
    /// Output format as the provider names it (`mp3`, `mp3_44100_128`, `wav`...), if chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Seed, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Provider-specific fields, passed through untouched.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub extras: Extras,
}

impl AudioJobSpec {
    fn with_kind(kind: AudioKind) -> Self {
        Self {
            kind,
            format: None,
            seed: None,
            extras: Extras::new(),
        }
    }

    /// Text to speech.
    pub fn speech(text: impl Into<String>) -> Self {
        Self::with_kind(AudioKind::Speech {
            text: text.into(),
            voice: None,
        })
    }

    /// A sound effect.
    pub fn sound_effect(prompt: impl Into<String>) -> Self {
        Self::with_kind(AudioKind::SoundEffect {
            prompt: prompt.into(),
            duration_seconds: None,
        })
    }

    /// Music of a given length.
    pub fn music(prompt: impl Into<String>, length_seconds: Decimal) -> Self {
        Self::with_kind(AudioKind::Music {
            prompt: prompt.into(),
            length_seconds,
        })
    }

    /// Sets the voice (speech only; ignored otherwise).
    pub fn voice(mut self, voice_id: impl Into<String>) -> Self {
        if let AudioKind::Speech { voice, .. } = &mut self.kind {
            *voice = Some(voice_id.into());
        }
        self
    }

    /// Sets the sound effect's length (sound effects only; ignored otherwise).
    pub fn duration_seconds(mut self, seconds: Decimal) -> Self {
        if let AudioKind::SoundEffect { duration_seconds, .. } = &mut self.kind {
            *duration_seconds = Some(seconds);
        }
        self
    }

    /// Sets the output format.
    pub fn format(mut self, format: impl Into<String>) -> Self {
        self.format = Some(format.into());
        self
    }

    /// Adds a provider-specific field.
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extras.insert(key.into(), value);
        self
    }

    /// Validates the spec into a job.
    pub fn build(self) -> Result<AudioJob, JobError> {
        AudioJob::try_from(self)
    }
}

/// A validated audio generation.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(try_from = "AudioJobSpec", into = "AudioJobSpec")]
pub struct AudioJob {
    spec: AudioJobSpec,
}

impl TryFrom<AudioJobSpec> for AudioJob {
    type Error = JobError;
    fn try_from(mut spec: AudioJobSpec) -> Result<Self, JobError> {
        match &mut spec.kind {
            AudioKind::Speech { text, voice } => {
                non_empty("text", text)?;
                if let Some(v) = voice {
                    non_empty("voice", v)?;
                }
            }
            AudioKind::SoundEffect {
                prompt,
                duration_seconds,
            } => {
                non_empty("prompt", prompt)?;
                if let Some(d) = duration_seconds {
                    *d = positive_seconds("duration_seconds", *d)?;
                }
            }
            AudioKind::Music {
                prompt,
                length_seconds,
            } => {
                non_empty("prompt", prompt)?;
                *length_seconds = positive_seconds("length_seconds", *length_seconds)?;
            }
        }
        if let Some(f) = &spec.format {
            non_empty("format", f)?;
        }
        Ok(Self { spec })
    }
}

impl From<AudioJob> for AudioJobSpec {
    fn from(job: AudioJob) -> Self {
        job.spec
    }
}

impl AudioJob {
    /// Speech, sound effect or music.
    pub fn kind(&self) -> &AudioKind {
        &self.spec.kind
    }
    /// The text (speech) or prompt (sound effect, music).
    pub fn text(&self) -> &str {
        match &self.spec.kind {
            AudioKind::Speech { text, .. } => text,
            AudioKind::SoundEffect { prompt, .. } | AudioKind::Music { prompt, .. } => prompt,
        }
    }
    /// Characters of text to speak (Unicode scalar values), for per-character pricing.
    pub fn characters(&self) -> u64 {
        match &self.spec.kind {
            AudioKind::Speech { text, .. } => text.chars().count() as u64,
            _ => 0,
        }
    }
    /// Requested output length in seconds, where the job fixes one.
    pub fn duration_seconds(&self) -> Option<Decimal> {
        match &self.spec.kind {
            AudioKind::Speech { .. } => None,
            AudioKind::SoundEffect { duration_seconds, .. } => *duration_seconds,
            AudioKind::Music { length_seconds, .. } => Some(*length_seconds),
        }
    }
    /// Output format, if chosen.
    pub fn format(&self) -> Option<&str> {
        self.spec.format.as_deref()
    }
    /// Seed, if given.
    pub fn seed(&self) -> Option<u64> {
        self.spec.seed
    }
    /// Provider-specific fields.
    pub fn extras(&self) -> &Extras {
        &self.spec.extras
    }
    /// The spec this job was built from.
    pub fn spec(&self) -> &AudioJobSpec {
        &self.spec
    }
}

// ---------------------------------------------------------------------------------------------------------
// Edit

/// An edit operation on an existing image.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum EditOp {
    /// Upscale by a factor (e.g. 2 or 4).
    Upscale {
        /// Scale factor (> 0).
        #[serde(with = "rust_decimal::serde::str")]
        factor: Decimal,
    },
    /// Remove the background.
    RemoveBackground,
    /// Image to image.
    Img2Img {
        /// What to turn it into.
        prompt: String,
        /// How far from the input to move (0–1), if given.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "rust_decimal::serde::str_option"
        )]
        strength: Option<Decimal>,
    },
    /// Repaint the masked region.
    Inpaint {
        /// What to paint.
        prompt: String,
        /// The mask.
        mask: MediaInput,
    },
    /// Vectorise (raster to SVG).
    Vectorize,
    /// Pixel-art style.
    Pixelate {
        /// Pixel grid size, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        grid_size: Option<u32>,
    },
}

/// The plain-data description of an edit; validate with [`EditJobSpec::build`].
// No `deny_unknown_fields` here: serde does not support it beside `flatten`; `EditOp` denies instead.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct EditJobSpec {
    /// The operation.
    #[serde(flatten)]
    pub op: EditOp,
    /// The image to edit.
    pub input: MediaInput,
    /// The input's size, when known (drives cost for some models).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_size: Option<Dimensions>,
    /// Number of outputs.
    #[serde(default = "one")]
    pub count: u32,
    /// Seed, where supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Provider-specific fields, passed through untouched.
    #[serde(default, skip_serializing_if = "Extras::is_empty")]
    pub extras: Extras,
}

impl EditJobSpec {
    /// An edit of an input.
    pub fn new(op: EditOp, input: MediaInput) -> Self {
        Self {
            op,
            input,
            input_size: None,
            count: 1,
            seed: None,
            extras: Extras::new(),
        }
    }

    /// Declares the input's size.
    pub fn input_size(mut self, size: Dimensions) -> Self {
        self.input_size = Some(size);
        self
    }

    /// Sets the number of outputs.
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Adds a provider-specific field.
    pub fn extra(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extras.insert(key.into(), value);
        self
    }

    /// Validates the spec into a job.
    pub fn build(self) -> Result<EditJob, JobError> {
        EditJob::try_from(self)
    }
}

/// A validated edit.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(try_from = "EditJobSpec", into = "EditJobSpec")]
pub struct EditJob {
    spec: EditJobSpec,
    count: NonZeroU32,
}

impl TryFrom<EditJobSpec> for EditJob {
    type Error = JobError;
    fn try_from(spec: EditJobSpec) -> Result<Self, JobError> {
        spec.input.validate("input")?;
        match &spec.op {
            EditOp::Upscale { factor } => {
                if *factor <= Decimal::ZERO {
                    return Err(JobError::NotPositive {
                        field: "factor",
                        value: factor.to_string(),
                    });
                }
                if *factor > Decimal::from(16) {
                    return Err(JobError::TooLarge {
                        field: "factor",
                        value: factor.to_string(),
                        max: "16".into(),
                    });
                }
            }
            EditOp::Img2Img { prompt, strength } => {
                non_empty("prompt", prompt)?;
                if let Some(s) = strength
                    && (*s < Decimal::ZERO || *s > Decimal::ONE)
                {
                    return Err(JobError::Invalid {
                        field: "strength",
                        reason: format!("{s} is not within 0..=1"),
                    });
                }
            }
            EditOp::Inpaint { prompt, mask } => {
                non_empty("prompt", prompt)?;
                mask.validate("mask")?;
            }
            EditOp::Pixelate { grid_size: Some(g) } => {
                bounded("grid_size", *g, MAX_DIMENSION)?;
            }
            EditOp::RemoveBackground | EditOp::Vectorize | EditOp::Pixelate { grid_size: None } => {}
        }
        let count = bounded("count", spec.count, MAX_OUTPUTS)?;
        Ok(Self { spec, count })
    }
}

impl From<EditJob> for EditJobSpec {
    fn from(job: EditJob) -> Self {
        job.spec
    }
}

impl EditJob {
    /// The operation.
    pub fn op(&self) -> &EditOp {
        &self.spec.op
    }
    /// The input image.
    pub fn input(&self) -> &MediaInput {
        &self.spec.input
    }
    /// The input's size, if declared.
    pub fn input_size(&self) -> Option<Dimensions> {
        self.spec.input_size
    }
    /// Number of outputs (≥ 1).
    pub fn count(&self) -> u32 {
        self.count.get()
    }
    /// The prompt, for operations that take one.
    pub fn prompt(&self) -> Option<&str> {
        match &self.spec.op {
            EditOp::Img2Img { prompt, .. } | EditOp::Inpaint { prompt, .. } => Some(prompt),
            _ => None,
        }
    }
    /// Seed, if given.
    pub fn seed(&self) -> Option<u64> {
        self.spec.seed
    }
    /// Provider-specific fields.
    pub fn extras(&self) -> &Extras {
        &self.spec.extras
    }
    /// The spec this job was built from.
    pub fn spec(&self) -> &EditJobSpec {
        &self.spec
    }
}

// ---------------------------------------------------------------------------------------------------------
// Job

/// Broad kind of output, for routing, metrics and thresholds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Still images.
    Image,
    /// Video clips.
    Video,
    /// Speech, sound effects, music.
    Audio,
    /// Edits of existing images.
    Edit,
}

impl Modality {
    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Video => "video",
            Modality::Audio => "audio",
            Modality::Edit => "edit",
        }
    }
}

impl std::fmt::Display for Modality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The precise operation a job asks for; what capabilities are declared against.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Operation {
    /// Text (and references) to image.
    ImageGeneration,
    /// Text or image to video.
    VideoGeneration,
    /// Text to speech.
    Speech,
    /// Sound effect.
    SoundEffect,
    /// Music.
    Music,
    /// Upscale.
    Upscale,
    /// Background removal.
    RemoveBackground,
    /// Image to image.
    Img2Img,
    /// Inpainting.
    Inpaint,
    /// Vectorisation.
    Vectorize,
    /// Pixelation.
    Pixelate,
}

impl Operation {
    /// Lower-case name (`image_generation`, `speech`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::ImageGeneration => "image_generation",
            Operation::VideoGeneration => "video_generation",
            Operation::Speech => "speech",
            Operation::SoundEffect => "sound_effect",
            Operation::Music => "music",
            Operation::Upscale => "upscale",
            Operation::RemoveBackground => "remove_background",
            Operation::Img2Img => "img2img",
            Operation::Inpaint => "inpaint",
            Operation::Vectorize => "vectorize",
            Operation::Pixelate => "pixelate",
        }
    }

    /// The modality this operation belongs to.
    pub fn modality(self) -> Modality {
        match self {
            Operation::ImageGeneration => Modality::Image,
            Operation::VideoGeneration => Modality::Video,
            Operation::Speech | Operation::SoundEffect | Operation::Music => Modality::Audio,
            Operation::Upscale
            | Operation::RemoveBackground
            | Operation::Img2Img
            | Operation::Inpaint
            | Operation::Vectorize
            | Operation::Pixelate => Modality::Edit,
        }
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One generation job.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    /// An image.
    Image(ImageJob),
    /// A video clip.
    Video(VideoJob),
    /// An audio clip.
    Audio(AudioJob),
    /// An edit.
    Edit(EditJob),
}

impl Job {
    /// The broad output kind.
    pub fn modality(&self) -> Modality {
        self.operation().modality()
    }

    /// The precise operation.
    pub fn operation(&self) -> Operation {
        match self {
            Job::Image(_) => Operation::ImageGeneration,
            Job::Video(_) => Operation::VideoGeneration,
            Job::Audio(a) => match a.kind() {
                AudioKind::Speech { .. } => Operation::Speech,
                AudioKind::SoundEffect { .. } => Operation::SoundEffect,
                AudioKind::Music { .. } => Operation::Music,
            },
            Job::Edit(e) => match e.op() {
                EditOp::Upscale { .. } => Operation::Upscale,
                EditOp::RemoveBackground => Operation::RemoveBackground,
                EditOp::Img2Img { .. } => Operation::Img2Img,
                EditOp::Inpaint { .. } => Operation::Inpaint,
                EditOp::Vectorize => Operation::Vectorize,
                EditOp::Pixelate { .. } => Operation::Pixelate,
            },
        }
    }

    /// The prompt or text, where the job has one.
    pub fn prompt(&self) -> Option<&str> {
        match self {
            Job::Image(j) => Some(j.prompt()),
            Job::Video(j) => j.prompt(),
            Job::Audio(j) => Some(j.text()),
            Job::Edit(j) => j.prompt(),
        }
    }

    /// How many outputs the job asks for (video and audio: one clip).
    pub fn output_count(&self) -> u32 {
        match self {
            Job::Image(j) => j.count(),
            Job::Edit(j) => j.count(),
            Job::Video(_) | Job::Audio(_) => 1,
        }
    }

    /// Seed, if given.
    pub fn seed(&self) -> Option<u64> {
        match self {
            Job::Image(j) => j.seed(),
            Job::Video(j) => j.seed(),
            Job::Audio(j) => j.seed(),
            Job::Edit(j) => j.seed(),
        }
    }

    /// Provider-specific fields.
    pub fn extras(&self) -> &Extras {
        match self {
            Job::Image(j) => j.extras(),
            Job::Video(j) => j.extras(),
            Job::Audio(j) => j.extras(),
            Job::Edit(j) => j.extras(),
        }
    }
}

impl From<ImageJob> for Job {
    fn from(j: ImageJob) -> Self {
        Job::Image(j)
    }
}
impl From<VideoJob> for Job {
    fn from(j: VideoJob) -> Self {
        Job::Video(j)
    }
}
impl From<AudioJob> for Job {
    fn from(j: AudioJob) -> Self {
        Job::Audio(j)
    }
}
impl From<EditJob> for Job {
    fn from(j: EditJob) -> Self {
        Job::Edit(j)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(s: &str) -> Decimal {
        Decimal::from_str_exact(s).unwrap()
    }

    fn url(u: &str) -> MediaInput {
        MediaInput::Url { url: u.into() }
    }

    #[test]
    fn image_errors_name_the_field() {
        let cases = [
            (ImageJobSpec::new(""), "prompt"),
            (ImageJobSpec::new("   "), "prompt"),
            (ImageJobSpec::new("cat").size(0, 512), "width"),
            (ImageJobSpec::new("cat").size(512, 0), "height"),
            (ImageJobSpec::new("cat").size(MAX_DIMENSION + 1, 512), "width"),
            (ImageJobSpec::new("cat").count(0), "count"),
            (ImageJobSpec::new("cat").count(MAX_OUTPUTS + 1), "count"),
            (ImageJobSpec::new("cat").steps(0), "steps"),
            (ImageJobSpec::new("cat").reference(url("")), "references"),
            (
                ImageJobSpec::new("cat").control(Control {
                    kind: "".into(),
                    input: url("u"),
                    strength: None,
                }),
                "controls.kind",
            ),
        ];
        for (spec, field) in cases {
            let err = spec.clone().build().unwrap_err();
            assert_eq!(err.field(), field, "{spec:?} gave {err}");
            assert!(
                err.to_string().starts_with(field),
                "message should lead with the field: {err}"
            );
        }
    }

    #[test]
    fn image_valid_job_exposes_cost_drivers() {
        let job = ImageJobSpec::new("a cat")
            .size(1024, 1408)
            .steps(150)
            .count(2)
            .seed(u64::MAX)
            .reference(url("https://x/ref.png"))
            .extra("guidance_scale", json!(3.5))
            .build()
            .unwrap();
        assert_eq!(job.size().pixels(), 1024 * 1408);
        assert_eq!(job.size().megapixels(), d("1.441792"));
        assert_eq!(job.steps(), Some(150));
        assert_eq!(job.count(), 2);
        assert_eq!(job.seed(), Some(u64::MAX));
        assert_eq!(job.references().len(), 1);
        assert_eq!(job.extras()["guidance_scale"], json!(3.5));
        let job = Job::from(job);
        assert_eq!(job.modality(), Modality::Image);
        assert_eq!(job.operation(), Operation::ImageGeneration);
        assert_eq!(job.output_count(), 2);
        assert_eq!(job.prompt(), Some("a cat"));
    }

    #[test]
    fn video_validation() {
        let err = VideoJobSpec::new("waves", Decimal::ZERO).build().unwrap_err();
        assert_eq!(
            err,
            JobError::NotPositive {
                field: "duration_seconds",
                value: "0".into()
            }
        );
        let err = VideoJobSpec::new("waves", d("-1")).build().unwrap_err();
        assert_eq!(err.field(), "duration_seconds");
        let err = VideoJobSpec::new("waves", d("86401")).build().unwrap_err();
        assert_eq!(err.field(), "duration_seconds");
        assert_eq!(
            VideoJobSpec::new("", d("5")).build().unwrap_err().field(),
            "prompt"
        );
        assert_eq!(
            VideoJobSpec::new("waves", d("5"))
                .fps(0)
                .build()
                .unwrap_err()
                .field(),
            "fps"
        );
        let mut spec = VideoJobSpec::new("x", d("5"));
        spec.prompt = None;
        assert!(matches!(
            spec.build().unwrap_err(),
            JobError::Missing { field: "prompt", .. }
        ));
        // Image-to-video without a prompt is fine; an empty prompt is dropped, not sent.
        let job = VideoJobSpec::from_image(url("https://x/first.png"), d("3.5"))
            .build()
            .unwrap();
        assert_eq!(job.prompt(), None);
        assert_eq!(job.duration(), Duration::from_millis(3500));
        let bad_frame = VideoJobSpec::from_image(url(" "), d("3")).build().unwrap_err();
        assert_eq!(bad_frame.field(), "first_frame");
        let job = VideoJobSpec::new("waves", d("5.0")).audio(true).build().unwrap();
        assert_eq!(job.duration_seconds(), d("5"));
        assert!(job.audio());
    }

    #[test]
    fn audio_validation_and_characters() {
        assert_eq!(AudioJobSpec::speech(" ").build().unwrap_err().field(), "text");
        assert_eq!(
            AudioJobSpec::speech("hi").voice("").build().unwrap_err().field(),
            "voice"
        );
        assert_eq!(
            AudioJobSpec::sound_effect("").build().unwrap_err().field(),
            "prompt"
        );
        let err = AudioJobSpec::sound_effect("door")
            .duration_seconds(d("0"))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "duration_seconds");
        let err = AudioJobSpec::music("jazz", d("-3")).build().unwrap_err();
        assert_eq!(err.field(), "length_seconds");
        let job = AudioJobSpec::speech("héllo wörld")
            .voice("rachel")
            .build()
            .unwrap();
        assert_eq!(job.characters(), 11);
        assert_eq!(Job::from(job).operation(), Operation::Speech);
        let job = AudioJobSpec::music("jazz", d("30")).build().unwrap();
        assert_eq!(job.duration_seconds(), Some(d("30")));
        assert_eq!(Job::from(job).modality(), Modality::Audio);
    }

    #[test]
    fn edit_validation() {
        let up = |f: &str| EditJobSpec::new(EditOp::Upscale { factor: d(f) }, url("https://x/a.png"));
        assert_eq!(up("0").build().unwrap_err().field(), "factor");
        assert_eq!(up("32").build().unwrap_err().field(), "factor");
        assert!(up("2").build().is_ok());
        let err = EditJobSpec::new(EditOp::RemoveBackground, url(""))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "input");
        let err = EditJobSpec::new(EditOp::Vectorize, url("u"))
            .count(0)
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "count");
        let err = EditJobSpec::new(
            EditOp::Img2Img {
                prompt: "x".into(),
                strength: Some(d("1.5")),
            },
            url("u"),
        )
        .build()
        .unwrap_err();
        assert_eq!(err.field(), "strength");
        let err = EditJobSpec::new(
            EditOp::Inpaint {
                prompt: "x".into(),
                mask: url(""),
            },
            url("u"),
        )
        .build()
        .unwrap_err();
        assert_eq!(err.field(), "mask");
        let err = EditJobSpec::new(EditOp::Pixelate { grid_size: Some(0) }, url("u"))
            .build()
            .unwrap_err();
        assert_eq!(err.field(), "grid_size");
        let bytes = MediaInput::Bytes {
            media_type: "image/png".into(),
            data: vec![],
        };
        assert_eq!(
            EditJobSpec::new(EditOp::Vectorize, bytes)
                .build()
                .unwrap_err()
                .field(),
            "input"
        );
        let job = Job::from(EditJobSpec::new(EditOp::Vectorize, url("u")).build().unwrap());
        assert_eq!(job.operation(), Operation::Vectorize);
        assert_eq!(job.modality(), Modality::Edit);
        assert_eq!(job.prompt(), None);
    }

    #[test]
    fn jobs_round_trip_through_json_with_extras_untouched() {
        let extras = json!({"guidance_scale": 3.5, "nested": {"a": [1, 2, {"b": null}]}, "big": 18446744073709551615u64});
        let mut spec = ImageJobSpec::new("a cat").size(512, 768).count(3);
        spec.extras = extras.as_object().unwrap().clone();
        let jobs: Vec<Job> = vec![
            spec.build().unwrap().into(),
            VideoJobSpec::new("waves", d("5.5"))
                .resolution(Dimensions::new(1280, 720).unwrap())
                .build()
                .unwrap()
                .into(),
            AudioJobSpec::speech("hello")
                .voice("v1")
                .format("mp3")
                .build()
                .unwrap()
                .into(),
            AudioJobSpec::music("jazz", d("30")).build().unwrap().into(),
            EditJobSpec::new(EditOp::Upscale { factor: d("2") }, url("https://x/a.png"))
                .build()
                .unwrap()
                .into(),
        ];
        for job in jobs {
            let text = serde_json::to_string(&job).unwrap();
            let back: Job = serde_json::from_str(&text).unwrap();
            assert_eq!(back, job, "{text}");
        }
        let text = serde_json::to_string(&Job::from(ImageJobSpec::new("a").build().unwrap())).unwrap();
        assert!(text.contains(r#""kind":"image""#), "{text}");
    }

    #[test]
    fn deserialising_validates() {
        let err = serde_json::from_value::<Job>(json!({"kind":"image","prompt":"cat","width":0,"height":5}))
            .unwrap_err();
        assert!(
            err.to_string().contains("width must be greater than zero"),
            "{err}"
        );
        let err = serde_json::from_value::<Job>(json!({"kind":"video","prompt":"x","duration_seconds":"0"}))
            .unwrap_err();
        assert!(
            err.to_string().contains("duration_seconds must be positive"),
            "{err}"
        );
        let err =
            serde_json::from_value::<Job>(json!({"kind":"audio","type":"speech","text":""})).unwrap_err();
        assert!(err.to_string().contains("text must not be empty"), "{err}");
        let err = serde_json::from_value::<Job>(
            json!({"kind":"image","prompt":"cat","width":5,"height":5,"sizee":1}),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sizee"), "{err}");
        let job: Job =
            serde_json::from_value(json!({"kind":"image","prompt":"cat","width":64,"height":64})).unwrap();
        assert_eq!(job.output_count(), 1);
    }
}
