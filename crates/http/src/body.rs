//! Response bodies read with a size limit.

use bytes::{Bytes, BytesMut};
use genroute_core::{ErrorKind, ProviderError};

/// The default limit on one response body: 64 MiB (enough for base64 images and short audio).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Reading a body failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is longer than the limit; reading stopped there.
    #[error("response body exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The connection failed while reading.
    #[error("reading the response body failed: {0}")]
    Transport(#[source] reqwest::Error),
}

impl From<BodyError> for ProviderError {
    /// A body too large is a `MalformedResponse` (not temporary); a broken read is `Unavailable`
    /// (temporary). Both happen after the provider did the work: billing unknown.
    fn from(e: BodyError) -> Self {
        match &e {
            BodyError::TooLarge { .. } => ProviderError::new(ErrorKind::MalformedResponse, e.to_string()),
            BodyError::Transport(_) => ProviderError::new(ErrorKind::Unavailable, e.to_string()),
        }
    }
}

/// Reads a whole body, stopping with [`BodyError::TooLarge`] as soon as it would pass `limit` bytes (a
/// `Content-Length` above the limit is refused before reading anything).
pub async fn read_limited(response: &mut reqwest::Response, limit: usize) -> Result<Bytes, BodyError> {
    if let Some(len) = response.content_length()
        && len > limit as u64
    {
        return Err(BodyError::TooLarge { limit });
    }
    let hint = response.content_length();
    let mut next = async || {
        response
            .chunk()
            .await
            .map_err(|e| BodyError::Transport(e.without_url()))
    };
    // A body that arrives in one chunk (most JSON answers) is returned as is, without a copy.
    let Some(first) = next().await? else {
        return Ok(Bytes::new());
    };
    if first.len() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let Some(second) = next().await? else {
        return Ok(first);
    };
    // Several chunks: one buffer, sized from `Content-Length` when known (already checked against the limit).
    let capacity = hint.map_or(first.len() + second.len(), |n| {
        usize::try_from(n).unwrap_or(limit)
    });
    let mut buf = BytesMut::with_capacity(capacity);
    buf.extend_from_slice(&first);
    let mut chunk = Some(second);
    while let Some(c) = chunk {
        if buf.len() + c.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        buf.extend_from_slice(&c);
        chunk = next().await?;
    }
    Ok(buf.freeze())
}
