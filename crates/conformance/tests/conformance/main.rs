//! The conformance suite against all six adapters, each pointed at its own emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod elevenlabs;
mod fal;
mod matrix;
mod openai;
mod replicate;
mod runway;
mod scenario;

use genroute_core::{
    AudioJobSpec, Decimal, EditJobSpec, EditOp, ImageJobSpec, MediaInput, ModelId, ProviderRequest,
    VideoJobSpec,
};

/// Errors a fixture's `provider` may return.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// A model id.
pub fn model(id: &str) -> ModelId {
    ModelId::new(id).unwrap()
}

/// A one-image request of this size.
pub fn image(model_id: &str, width: u32, height: u32) -> ProviderRequest {
    let job = ImageJobSpec::new("a lighthouse at dusk")
        .size(width, height)
        .build()
        .unwrap();
    ProviderRequest::new(model(model_id), job)
}

/// An image request built from a spec.
pub fn image_spec(model_id: &str, spec: ImageJobSpec) -> ProviderRequest {
    ProviderRequest::new(model(model_id), spec.build().unwrap())
}

/// A text-to-video request of this many seconds.
pub fn video(model_id: &str, seconds: i64) -> ProviderRequest {
    let job = VideoJobSpec::new("waves against a lighthouse", Decimal::from(seconds))
        .build()
        .unwrap();
    ProviderRequest::new(model(model_id), job)
}

/// A video request built from a spec.
pub fn video_spec(model_id: &str, spec: VideoJobSpec) -> ProviderRequest {
    ProviderRequest::new(model(model_id), spec.build().unwrap())
}

/// A speech request.
pub fn speech(model_id: &str, text: &str) -> ProviderRequest {
    let job = AudioJobSpec::speech(text).build().unwrap();
    ProviderRequest::new(model(model_id), job)
}

/// An audio request built from a spec.
pub fn audio_spec(model_id: &str, spec: AudioJobSpec) -> ProviderRequest {
    ProviderRequest::new(model(model_id), spec.build().unwrap())
}

/// An edit request.
pub fn edit(model_id: &str, op: EditOp, input: MediaInput) -> ProviderRequest {
    ProviderRequest::new(model(model_id), EditJobSpec::new(op, input).build().unwrap())
}

/// An image given by URL.
pub fn url_input() -> MediaInput {
    MediaInput::Url {
        url: "https://example.com/input.png".into(),
    }
}

/// A small PNG given as bytes.
pub fn png_input() -> MediaInput {
    MediaInput::Bytes {
        media_type: "image/png".into(),
        data: vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0],
    }
}
