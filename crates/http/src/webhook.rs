//! Webhook signature verification: Standard Webhooks HMAC-SHA256 (Replicate) and fal's Ed25519.
//!
//! Verify on the **raw** body, before parsing it. Both check the timestamp against a tolerance
//! ([`DEFAULT_TOLERANCE`], 5 minutes, either direction) to refuse replays. Comparisons are constant-time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signature, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// How far a webhook's timestamp may be from now, either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// A required header is missing or not text.
    #[error("missing webhook header {0}")]
    MissingHeader(&'static str),
    /// The timestamp header is not unix seconds.
    #[error("invalid webhook timestamp")]
    InvalidTimestamp,
    /// The timestamp is outside the tolerance.
    #[error("webhook timestamp is {skew_seconds} s away from now, beyond the tolerance")]
    Stale {
        /// Distance from now, in seconds.
        skew_seconds: u64,
    },
    /// The signing secret or a public key could not be decoded.
    #[error("invalid webhook key: {0}")]
    InvalidKey(String),
    /// No signature in the header could be decoded.
    #[error("malformed webhook signature")]
    MalformedSignature,
    /// No signature matched.
    #[error("webhook signature does not match")]
    Mismatch,
}

fn header<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, WebhookError> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .ok_or(WebhookError::MissingHeader(name))
}

fn check_timestamp(ts: &str, now: SystemTime, tolerance: Duration) -> Result<(), WebhookError> {
    let ts: u64 = ts.parse().map_err(|_| WebhookError::InvalidTimestamp)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let skew = now.abs_diff(ts);
    if skew > tolerance.as_secs() {
        return Err(WebhookError::Stale { skew_seconds: skew });
    }
    Ok(())
}

type HmacSha256 = Hmac<Sha256>;

/// A Standard Webhooks verifier (Replicate): headers `webhook-id`, `webhook-timestamp`,
/// `webhook-signature` (space-separated `v1,<base64>`), HMAC-SHA256 over `"{id}.{timestamp}.{body}"` keyed
/// by the base64-decoded part of the `whsec_...` secret.
#[derive(Clone)]
pub struct StandardWebhook {
    keyed: HmacSha256,
}

impl std::fmt::Debug for StandardWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardWebhook([redacted])")
    }
}

impl StandardWebhook {
    /// From a `whsec_<base64>` secret (the prefix is optional).
    pub fn new(secret: &SecretString) -> Result<Self, WebhookError> {
        let s = secret.expose_secret().trim();
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| WebhookError::InvalidKey("the secret is not base64 after whsec_".into()))?;
        if key.is_empty() {
            return Err(WebhookError::InvalidKey("empty secret".into()));
        }
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .map_err(|_| WebhookError::InvalidKey("HMAC refused the key".into()))?;
        Ok(Self { keyed })
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of a message (for emulators and tests).
    pub fn sign(&self, id: &str, timestamp: &str, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(tag))
    }

    /// Verifies a delivery at the current time with [`DEFAULT_TOLERANCE`].
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        self.verify_at(headers, body, SystemTime::now(), DEFAULT_TOLERANCE)
    }

    /// Verifies a delivery: timestamp within `tolerance` of `now`, and any `v1` signature matching.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), WebhookError> {
        let id = header(headers, "webhook-id")?;
        let ts = header(headers, "webhook-timestamp")?;
        let sigs = header(headers, "webhook-signature")?;
        check_timestamp(ts, now, tolerance)?;
        let mac = self.mac(id, ts, body);
        let mut decoded_any = false;
        for candidate in sigs.split(' ').filter(|s| !s.is_empty()) {
            let Some(b64) = candidate.strip_prefix("v1,") else {
                continue;
            };
            let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                continue;
            };
            decoded_any = true;
            // verify_slice compares in constant time.
            if mac.clone().verify_slice(&sig).is_ok() {
                return Ok(());
            }
        }
        if decoded_any {
            Err(WebhookError::Mismatch)
        } else {
            Err(WebhookError::MalformedSignature)
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
}

/// fal's webhook verifier: headers `X-Fal-Webhook-Request-Id`, `X-Fal-Webhook-User-Id`,
/// `X-Fal-Webhook-Timestamp`, `X-Fal-Webhook-Signature` (hex Ed25519); message
/// `request_id\nuser_id\ntimestamp\nhex(sha256(body))`; keys from fal's JWKS (cache them ~24 h).
#[derive(Clone, Debug)]
pub struct FalWebhookVerifier {
    keys: Vec<VerifyingKey>,
}

impl FalWebhookVerifier {
    /// From raw 32-byte Ed25519 public keys.
    pub fn from_keys(keys: &[[u8; 32]]) -> Result<Self, WebhookError> {
        let keys = keys
            .iter()
            .map(|k| VerifyingKey::from_bytes(k).map_err(|e| WebhookError::InvalidKey(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(WebhookError::InvalidKey("no keys".into()));
        }
        Ok(Self { keys })
    }

    /// From a JWKS document (`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"<base64url>"}]}`); keys of
    /// other types are skipped.
    pub fn from_jwks(json: &[u8]) -> Result<Self, WebhookError> {
        let jwks: Jwks = serde_json::from_slice(json).map_err(|e| WebhookError::InvalidKey(e.to_string()))?;
        let mut raw = Vec::new();
        for k in jwks.keys {
            if k.kty != "OKP" || k.crv.as_deref() != Some("Ed25519") {
                continue;
            }
            let Some(x) = k.x else { continue };
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(x.trim_end_matches('='))
                .map_err(|e| WebhookError::InvalidKey(e.to_string()))?;
            let arr: [u8; 32] = bytes
                .try_into()
                .map_err(|_| WebhookError::InvalidKey("an Ed25519 key is 32 bytes".into()))?;
            raw.push(arr);
        }
        Self::from_keys(&raw)
    }

    /// The signed message for a delivery (for emulators and tests).
    pub fn message(request_id: &str, user_id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
        let digest = hex_encode(&Sha256::digest(body));
        format!("{request_id}\n{user_id}\n{timestamp}\n{digest}").into_bytes()
    }

    /// Verifies a delivery at the current time with [`DEFAULT_TOLERANCE`].
    pub fn verify(&self, headers: &HeaderMap, body: &[u8]) -> Result<(), WebhookError> {
        self.verify_at(headers, body, SystemTime::now(), DEFAULT_TOLERANCE)
    }

    /// Verifies a delivery: timestamp within `tolerance` of `now`, signature valid under any key.
    pub fn verify_at(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        now: SystemTime,
        tolerance: Duration,
    ) -> Result<(), WebhookError> {
        let request_id = header(headers, "x-fal-webhook-request-id")?;
        let user_id = header(headers, "x-fal-webhook-user-id")?;
        let ts = header(headers, "x-fal-webhook-timestamp")?;
        let sig_hex = header(headers, "x-fal-webhook-signature")?;
        check_timestamp(ts, now, tolerance)?;
        let sig_bytes = hex_decode(sig_hex).ok_or(WebhookError::MalformedSignature)?;
        let signature = Signature::from_slice(&sig_bytes).map_err(|_| WebhookError::MalformedSignature)?;
        let message = Self::message(request_id, user_id, ts, body);
        if self
            .keys
            .iter()
            .any(|k| k.verify_strict(&message, &signature).is_ok())
        {
            Ok(())
        } else {
            Err(WebhookError::Mismatch)
        }
    }
}

/// Lower-case hex.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};
    use reqwest::header::HeaderValue;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn hm(pairs: &[(&'static str, String)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn standard_webhooks_known_vector() {
        // Independent vector: HMAC-SHA256(key = b"test-secret-key!", "msg_1.1700000000.{\"a\":1}"),
        // computed with Python's hmac module.
        let secret = SecretString::from(format!(
            "whsec_{}",
            base64::engine::general_purpose::STANDARD.encode(b"test-secret-key!")
        ));
        let v = StandardWebhook::new(&secret).unwrap();
        let body = br#"{"a":1}"#;
        let sig = v.sign("msg_1", "1700000000", body);
        assert_eq!(sig, "v1,/fKSUBZzvMxYrozj4gOKIdW3WpqHLt6Tcd/oNHJyJoY=");
        let headers = hm(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", "1700000000".into()),
            ("webhook-signature", format!("v1,AAAA {sig}")),
        ]);
        assert_eq!(
            v.verify_at(&headers, body, at(1_700_000_100), DEFAULT_TOLERANCE),
            Ok(())
        );
        // Tampered body, stale timestamp, future timestamp, missing header, wrong secret.
        assert_eq!(
            v.verify_at(&headers, br#"{"a":2}"#, at(1_700_000_100), DEFAULT_TOLERANCE),
            Err(WebhookError::Mismatch)
        );
        assert_eq!(
            v.verify_at(&headers, body, at(1_700_000_301), DEFAULT_TOLERANCE),
            Err(WebhookError::Stale { skew_seconds: 301 })
        );
        assert!(matches!(
            v.verify_at(&headers, body, at(1_699_999_000), DEFAULT_TOLERANCE),
            Err(WebhookError::Stale { .. })
        ));
        let mut missing = headers.clone();
        missing.remove("webhook-id");
        assert_eq!(
            v.verify_at(&missing, body, at(1_700_000_000), DEFAULT_TOLERANCE),
            Err(WebhookError::MissingHeader("webhook-id"))
        );
        let other = StandardWebhook::new(&SecretString::from("whsec_b3RoZXI=".to_owned())).unwrap();
        assert_eq!(
            other.verify_at(&headers, body, at(1_700_000_000), DEFAULT_TOLERANCE),
            Err(WebhookError::Mismatch)
        );
        let garbage = hm(&[
            ("webhook-id", "msg_1".into()),
            ("webhook-timestamp", "1700000000".into()),
            ("webhook-signature", "v2,xyz".into()),
        ]);
        assert_eq!(
            v.verify_at(&garbage, body, at(1_700_000_000), DEFAULT_TOLERANCE),
            Err(WebhookError::MalformedSignature)
        );
        assert!(StandardWebhook::new(&SecretString::from("whsec_!!!".to_owned())).is_err());
        assert!(!format!("{v:?}").contains("test"));
    }

    #[test]
    fn fal_ed25519_round_trip_and_refusals() {
        let signing = SigningKey::from_bytes(&[7u8; 32]);
        let public = signing.verifying_key().to_bytes();
        let jwks = format!(
            r#"{{"keys":[{{"kty":"RSA","n":"x"}},{{"kty":"OKP","crv":"Ed25519","x":"{}","kid":"k1"}}]}}"#,
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public)
        );
        let v = FalWebhookVerifier::from_jwks(jwks.as_bytes()).unwrap();
        let body = br#"{"request_id":"r1","status":"OK","payload":{}}"#;
        let msg = FalWebhookVerifier::message("r1", "u1", "1700000000", body);
        // The message format itself: three fields and the hex SHA-256 of the body.
        let text = String::from_utf8(msg.clone()).unwrap();
        let digest = hex_encode(&Sha256::digest(body));
        assert_eq!(text, format!("r1\nu1\n1700000000\n{digest}"));
        assert_eq!(digest.len(), 64);
        let sig = hex_encode(&signing.sign(&msg).to_bytes());
        let headers = hm(&[
            ("x-fal-webhook-request-id", "r1".into()),
            ("x-fal-webhook-user-id", "u1".into()),
            ("x-fal-webhook-timestamp", "1700000000".into()),
            ("x-fal-webhook-signature", sig.clone()),
        ]);
        let now = at(1_700_000_010);
        assert_eq!(v.verify_at(&headers, body, now, DEFAULT_TOLERANCE), Ok(()));
        // Upper-case hex is accepted too.
        let mut upper = headers.clone();
        upper.insert(
            "x-fal-webhook-signature",
            HeaderValue::from_str(&sig.to_uppercase()).unwrap(),
        );
        assert_eq!(v.verify_at(&upper, body, now, DEFAULT_TOLERANCE), Ok(()));
        assert_eq!(
            v.verify_at(&headers, b"{}", now, DEFAULT_TOLERANCE),
            Err(WebhookError::Mismatch)
        );
        let mut other_user = headers.clone();
        other_user.insert("x-fal-webhook-user-id", HeaderValue::from_static("u2"));
        assert_eq!(
            v.verify_at(&other_user, body, now, DEFAULT_TOLERANCE),
            Err(WebhookError::Mismatch)
        );
        assert!(matches!(
            v.verify_at(&headers, body, at(1_700_001_000), DEFAULT_TOLERANCE),
            Err(WebhookError::Stale { .. })
        ));
        let mut bad = headers.clone();
        bad.insert("x-fal-webhook-signature", HeaderValue::from_static("zz"));
        assert_eq!(
            v.verify_at(&bad, body, now, DEFAULT_TOLERANCE),
            Err(WebhookError::MalformedSignature)
        );
        // Another key does not verify it.
        let other =
            FalWebhookVerifier::from_keys(&[SigningKey::from_bytes(&[8u8; 32]).verifying_key().to_bytes()])
                .unwrap();
        assert_eq!(
            other.verify_at(&headers, body, now, DEFAULT_TOLERANCE),
            Err(WebhookError::Mismatch)
        );
        assert!(FalWebhookVerifier::from_jwks(br#"{"keys":[]}"#).is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex_encode(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(hex_decode("00abFF"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(hex_decode("abc"), None);
        assert_eq!(hex_decode("zz"), None);
    }
}
