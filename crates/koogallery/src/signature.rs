//! Callback signatures (接口安全令牌, spec §3): HMAC-SHA256 with the access key from 密钥管理.
//!
//! ```text
//! bodyDigest = lower(hex(HMAC_SHA256(accessKey, body bytes as received)))
//! signature  = hex(HMAC_SHA256(accessKey, accessKey + nonce + timestamp + bodyDigest))
//! ```
//! `signature`, `timestamp` (milliseconds) and `nonce` travel in the URL query string. Verification
//! works on the raw body (D2), accepts any of several keys (D7), compares case-insensitively in
//! constant time (D3), and checks the timestamp against an injected clock (D4). Remembering nonces
//! (D5) needs shared storage and is left to the caller, which gets the nonce back.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::secret::Secret;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The callback access key (访问密钥) from the seller console's 密钥管理: the HMAC key, as UTF-8 bytes.
#[derive(Clone)]
pub struct AccessKey {
    key: Secret,
    /// The HMAC already keyed: each signature clones it instead of hashing the key's pads again
    /// (two of a callback's eleven SHA-256 blocks per MAC).
    keyed: HmacSha256,
}

impl PartialEq for AccessKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for AccessKey {}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AccessKey").field(&self.key).finish()
    }
}

impl AccessKey {
    /// Wraps an access key.
    pub fn new(key: impl Into<Secret>) -> Self {
        let key = key.into();
        let keyed = <HmacSha256 as KeyInit>::new_from_slice(key.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        Self { key, keyed }
    }

    fn mac(&self) -> HmacSha256 {
        self.keyed.clone()
    }

    fn canonical_mac(&self, nonce: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let digest = body_digest(self, body);
        let mut mac = self.mac();
        mac.update(self.key.expose().as_bytes());
        mac.update(nonce.as_bytes());
        mac.update(timestamp.as_bytes());
        mac.update(digest.as_bytes());
        mac
    }
}

/// `lower(hex(HMAC_SHA256(accessKey, body)))`: the inner step of the signature.
pub fn body_digest(key: &AccessKey, body: &[u8]) -> String {
    let mut mac = key.mac();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The signature (lower-case hex) of a callback body for a nonce and a timestamp text.
pub fn sign(key: &AccessKey, nonce: &str, timestamp: &str, body: &[u8]) -> String {
    hex::encode(
        key.canonical_mac(nonce, timestamp, body)
            .finalize()
            .into_bytes(),
    )
}

/// The query string the marketplace appends to the callback URL:
/// `signature=<hex>&timestamp=<ms>&nonce=<nonce>`.
pub fn signed_query(key: &AccessKey, nonce: &str, timestamp: &str, body: &[u8]) -> String {
    let signature = sign(key, nonce, timestamp, body);
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("signature", &signature);
    query.append_pair("timestamp", timestamp);
    query.append_pair("nonce", nonce);
    query.finish()
}

/// The three authentication parameters of a callback, as found in its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// `signature`, hex in either case.
    pub signature: String,
    /// `timestamp`, the raw text (it is signed as sent, D4).
    pub timestamp: String,
    /// `nonce`, opaque.
    pub nonce: String,
}

/// Why a callback failed authentication. Each is answered `000001`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A query parameter is absent or empty.
    #[error("missing query parameter `{0}`")]
    MissingParameter(&'static str),
    /// A query parameter appears more than once.
    #[error("query parameter `{0}` appears more than once")]
    DuplicateParameter(&'static str),
    /// `timestamp` is not a decimal number in canonical form (no sign, no leading zero).
    #[error("timestamp {0:?} is not a decimal number of milliseconds without leading zeros")]
    MalformedTimestamp(String),
    /// `nonce` is not 8 to 128 characters of `A-Z a-z 0-9 _ -`.
    #[error("nonce is not 8 to 128 characters of A-Z, a-z, 0-9, _ and -")]
    MalformedNonce,
    /// `timestamp` is too far from our clock.
    #[error("timestamp is {skew_ms} ms away from now, outside the ±{window_ms} ms window")]
    OutsideWindow {
        /// `timestamp − now`, in milliseconds.
        skew_ms: i64,
        /// The allowed distance.
        window_ms: i64,
    },
    /// `signature` is not 64 hex digits.
    #[error("signature is not 64 hexadecimal digits")]
    MalformedSignature,
    /// No configured key produces this signature.
    #[error("signature does not match any configured access key")]
    Mismatch,
}

impl VerifyError {
    /// A short stable label, for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingParameter(_) => "missing_parameter",
            Self::DuplicateParameter(_) => "duplicate_parameter",
            Self::MalformedTimestamp(_) => "malformed_timestamp",
            Self::MalformedNonce => "malformed_nonce",
            Self::OutsideWindow { .. } => "outside_window",
            Self::MalformedSignature => "malformed_signature",
            Self::Mismatch => "mismatch",
        }
    }
}

impl SignatureParams {
    /// Reads `signature`, `timestamp` and `nonce` from a raw query string (percent-decoded);
    /// other parameters, `contentType` included (D6), are ignored.
    pub fn from_query(query: &str) -> Result<Self, VerifyError> {
        let (mut signature, mut timestamp, mut nonce) = (None, None, None);
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let (slot, name) = match name.as_ref() {
                "signature" => (&mut signature, "signature"),
                "timestamp" => (&mut timestamp, "timestamp"),
                "nonce" => (&mut nonce, "nonce"),
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(VerifyError::DuplicateParameter(name));
            }
        }
        let take = |value: Option<String>, name| {
            value
                .filter(|v| !v.is_empty())
                .ok_or(VerifyError::MissingParameter(name))
        };
        Ok(Self {
            signature: take(signature, "signature")?,
            timestamp: take(timestamp, "timestamp")?,
            nonce: take(nonce, "nonce")?,
        })
    }
}

/// A callback that passed verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Which configured key matched (0 is the current one).
    pub key_index: usize,
    /// The nonce, for the caller's replay check (D5).
    pub nonce: String,
    /// The timestamp in milliseconds (a seconds value already scaled, D4).
    pub timestamp_ms: i64,
    /// The signature in its one canonical spelling (lower-case hex), for the caller's replay
    /// check: a signature seen before is a replay however the query around it was rewritten.
    pub signature: String,
}

/// The default timestamp window (D4): ±60 s.
pub const DEFAULT_WINDOW_MS: i64 = 60_000;

/// Verifies callbacks against one or more access keys, current first (D7).
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: Vec<AccessKey>,
    window_ms: i64,
}

impl Verifier {
    /// A verifier with the default ±60 s window. `keys` must not be empty.
    pub fn new(keys: Vec<AccessKey>) -> Self {
        Self::with_window(keys, DEFAULT_WINDOW_MS)
    }

    /// A verifier with a custom window, in milliseconds.
    pub fn with_window(keys: Vec<AccessKey>, window_ms: i64) -> Self {
        assert!(!keys.is_empty(), "a verifier needs at least one access key");
        Self { keys, window_ms }
    }

    /// Verifies a callback. `now_ms` is the current time in milliseconds since the Unix epoch.
    ///
    /// The timestamp is checked first (cheap, and it says more than a mismatch), then the
    /// signature against every key in constant time.
    pub fn verify(
        &self,
        params: &SignatureParams,
        body: &[u8],
        now_ms: i64,
    ) -> Result<Verified, VerifyError> {
        let timestamp_ms = timestamp_millis(&params.timestamp)?;
        let skew_ms = timestamp_ms.saturating_sub(now_ms);
        if skew_ms.unsigned_abs() > self.window_ms.unsigned_abs() {
            return Err(VerifyError::OutsideWindow {
                skew_ms,
                window_ms: self.window_ms,
            });
        }
        check_nonce(&params.nonce)?;
        let expected = decode_signature(&params.signature)?;
        let key_index = self
            .keys
            .iter()
            .position(|key| {
                key.canonical_mac(&params.nonce, &params.timestamp, body)
                    .verify_slice(&expected)
                    .is_ok()
            })
            .ok_or(VerifyError::Mismatch)?;
        Ok(Verified {
            key_index,
            nonce: params.nonce.clone(),
            timestamp_ms,
            signature: hex::encode(expected),
        })
    }
}

/// Reads a timestamp: milliseconds, or seconds when below 10^12 (D4), in canonical decimal form
/// only. The signed string joins nonce and timestamp without a separator, so a second spelling of
/// one value (a leading zero) would let a captured request be rewritten into a new one with the
/// same signature (`nonce=…X0&timestamp=T` → `nonce=…X&timestamp=0T`).
fn timestamp_millis(text: &str) -> Result<i64, VerifyError> {
    let malformed = || VerifyError::MalformedTimestamp(text.to_owned());
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) || text.starts_with('0') {
        return Err(malformed());
    }
    let value: i64 = text.parse().map_err(|_| malformed())?;
    Ok(if value < 1_000_000_000_000 {
        value.saturating_mul(1000)
    } else {
        value
    })
}

/// The nonce's form: 8 to 128 characters of `A-Z a-z 0-9 _ -` (the marketplace sends 16 or 32
/// alphanumerics or 64 hex digits).
fn check_nonce(nonce: &str) -> Result<(), VerifyError> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    if (8..=128).contains(&nonce.len()) && nonce.bytes().all(allowed) {
        Ok(())
    } else {
        Err(VerifyError::MalformedNonce)
    }
}

/// Hex of either case into the 32 bytes of an HMAC-SHA256 (D3: compared case-insensitively).
fn decode_signature(text: &str) -> Result<Vec<u8>, VerifyError> {
    if text.len() != 64 {
        return Err(VerifyError::MalformedSignature);
    }
    hex::decode(text).map_err(|_| VerifyError::MalformedSignature)
}
