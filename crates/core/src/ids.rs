//! Identifier newtypes.
//!
//! Every identifier is a cheap-to-clone (`Arc<str>`) non-empty string without control characters. Keeping
//! them distinct types means a member id can never be passed where a project id is expected.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string was refused as an identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string was empty (or only whitespace).
    #[error("{kind} must not be empty")]
    Empty {
        /// Which identifier type refused it.
        kind: &'static str,
    },
    /// The string holds a control character (newline, NUL, ...).
    #[error("{kind} must not contain control characters")]
    ControlCharacter {
        /// Which identifier type refused it.
        kind: &'static str,
    },
    /// The string is longer than [`MAX_ID_LEN`] bytes.
    #[error("{kind} is longer than {max} bytes")]
    TooLong {
        /// Which identifier type refused it.
        kind: &'static str,
        /// The limit.
        max: usize,
    },
}

/// The longest identifier accepted, in bytes.
pub const MAX_ID_LEN: usize = 512;

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.trim().is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong {
            kind,
            max: MAX_ID_LEN,
        });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $label:literal) => {
        $(#[$meta])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                validate($label, value)?;
                Ok(Self(Arc::from(value)))
            }

            /// Wraps a string derived inside this crate from already-validated identifiers.
            #[allow(dead_code)]
            pub(crate) fn derived(value: String) -> Self {
                Self(Arc::from(value))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                Self::new(&*s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A provider's name as configured, e.g. `fal`, `replicate`, `openai`.
    ProviderId,
    "provider id"
);
id_type!(
    /// A model as the provider names it, e.g. `fal-ai/flux/dev` or `gpt-image-1`.
    ModelId,
    "model id"
);
id_type!(
    /// The team whose pooled budget pays for a job.
    TeamId,
    "team id"
);
id_type!(
    /// A team member.
    MemberId,
    "member id"
);
id_type!(
    /// A project within a team.
    ProjectId,
    "project id"
);
id_type!(
    /// The *identifier* of an API key (never the secret itself).
    ApiKeyId,
    "api key id"
);
id_type!(
    /// One job as the application submitted it; all its attempts share it.
    JobId,
    "job id"
);
id_type!(
    /// A key that makes a reservation or a call safe to replay.
    IdempotencyKey,
    "idempotency key"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_empty_whitespace_control_and_long() {
        assert_eq!(ProviderId::new(""), Err(IdError::Empty { kind: "provider id" }));
        assert_eq!(ModelId::new("  "), Err(IdError::Empty { kind: "model id" }));
        assert_eq!(
            TeamId::new("a\nb"),
            Err(IdError::ControlCharacter { kind: "team id" })
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            JobId::new(&long),
            Err(IdError::TooLong {
                kind: "job id",
                max: MAX_ID_LEN
            })
        );
        assert!(JobId::new("x".repeat(MAX_ID_LEN)).is_ok());
    }

    #[test]
    fn serde_round_trip_and_validation() {
        let id = ModelId::new("fal-ai/flux/dev").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"fal-ai/flux/dev\"");
        let back: ModelId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        let err = serde_json::from_str::<ModelId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("model id must not be empty"), "{err}");
    }

    #[test]
    fn display_and_debug() {
        let id = MemberId::new("alice").unwrap();
        assert_eq!(id.to_string(), "alice");
        assert_eq!(format!("{id:?}"), "MemberId(\"alice\")");
    }
}
