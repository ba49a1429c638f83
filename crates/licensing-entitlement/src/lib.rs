//! Signed entitlements for the seller's software (D24): a license's access verdict as a compact
//! JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037), so that any JOSE library, or this
//! crate, can verify it offline against the backend's JWK set.
//!
//! - The backend signs with [`SigningKey::sign`] (keys read from PKCS#8 PEM files, as
//!   `openssl genpkey -algorithm ed25519` writes them).
//! - The seller's software verifies with [`verify`] and a [`Jwks`] it fetched once from
//!   `/.well-known/jwks.json` (or shipped with the software), and the current time.
//!
//! No async, no network, no clock: time comes in as an argument.
//!
//! ```
//! use licensing_entitlement::{Claims, Jwks, SigningKey, verify};
//! # let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHBy/P0e4Cq+dLU9aDr0jdUKhmOk38n7SK8tXV7XpLtI\n-----END PRIVATE KEY-----\n";
//! let key = SigningKey::from_pkcs8_pem(pem).unwrap();
//! let token = key.sign(&Claims::new("PL0001", "active", Some(1_900_000_000), 1_800_000_000, 1_800_086_400));
//! let jwks = Jwks { keys: vec![key.jwk()] };
//! let claims = verify(&token, &jwks, 1_800_000_100).unwrap();
//! assert_eq!(claims.access_mode, "active");
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::Signer;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// What an entitlement says. Times are seconds since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The license code.
    pub sub: String,
    /// `pending`, `active`, `expired`, `frozen` or `released` (D22).
    pub access_mode: String,
    /// While active: when access ends (`expireTime`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_until: Option<i64>,
    /// While frozen: until when the buyer's data is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_kept_until: Option<i64>,
    /// Issued at.
    pub iat: i64,
    /// Expires at: never past `access_until`.
    pub exp: i64,
    /// The signing key's id (also in the header).
    #[serde(default)]
    pub kid: String,
}

impl Claims {
    /// Claims for license `sub`; `exp` is cut to `access_until` when that comes first.
    pub fn new(
        sub: &str,
        access_mode: &str,
        access_until: Option<i64>,
        iat: i64,
        exp: i64,
    ) -> Self {
        Self {
            sub: sub.to_owned(),
            access_mode: access_mode.to_owned(),
            access_until,
            data_kept_until: None,
            iat,
            exp: access_until.map_or(exp, |until| exp.min(until)),
            kid: String::new(),
        }
    }
}

/// A public key as a JWK (RFC 8037: `kty` `OKP`, `crv` `Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    /// `OKP`.
    pub kty: String,
    /// `Ed25519`.
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    /// The key id: its RFC 7638 thumbprint.
    #[serde(default)]
    pub kid: String,
    /// `EdDSA`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    /// `sig`.
    #[serde(rename = "use", default, skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
}

/// A JWK set (`/.well-known/jwks.json`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Jwks {
    /// The keys, current first.
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// Reads a JWK set's JSON.
    pub fn from_json(text: &str) -> Result<Self, Refused> {
        serde_json::from_str(text).map_err(|e| Refused::Malformed(format!("JWK set: {e}")))
    }
}

/// Why a token or a key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not three base64url parts of JSON, or claims missing.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header names another algorithm than `EdDSA`.
    #[error("unsupported algorithm {0:?}: only EdDSA (Ed25519) is accepted")]
    Algorithm(String),
    /// No key of the set has the token's `kid`.
    #[error("unknown key {0:?}: not in the JWK set")]
    UnknownKey(String),
    /// The signature does not verify: the token was altered or signed by another key.
    #[error("bad signature: the token was altered or not signed by this key")]
    Signature,
    /// Past `exp`.
    #[error("expired at {exp} (now {now})")]
    Expired {
        /// The token's `exp`.
        exp: i64,
        /// The time it was checked at.
        now: i64,
    },
    /// Issued in the future (more than the allowed skew).
    #[error("issued in the future ({iat}, now {now})")]
    NotYetValid {
        /// The token's `iat`.
        iat: i64,
        /// The time it was checked at.
        now: i64,
    },
    /// A key file that is not a PKCS#8 Ed25519 private key.
    #[error("not a PKCS#8 Ed25519 private key: {0}")]
    Key(String),
}

/// A private key that signs entitlements.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The RFC 7638 thumbprint of an Ed25519 public key's JWK.
fn thumbprint(x: &str) -> String {
    let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
    B64.encode(sha2::Sha256::digest(canonical.as_bytes()))
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Refused> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| Refused::Key(e.to_string()))?;
        let x = B64.encode(key.verifying_key().as_bytes());
        Ok(Self {
            kid: thumbprint(&x),
            key,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Jwk {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: B64.encode(self.key.verifying_key().as_bytes()),
            kid: self.kid.clone(),
            alg: Some("EdDSA".to_owned()),
            use_: Some("sig".to_owned()),
        }
    }

    /// A compact JWS of `claims` (its `kid` set to this key's).
    pub fn sign(&self, claims: &Claims) -> String {
        let claims = Claims {
            kid: self.kid.clone(),
            ..claims.clone()
        };
        let header = serde_json::json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(serde_json::to_vec(&claims).unwrap_or_default())
        );
        let signature = self.key.sign(input.as_bytes());
        format!("{input}.{}", B64.encode(signature.to_bytes()))
    }
}

/// The signing keys of a service: the first signs, all are published (rotation keeps tokens
/// signed by an older key verifiable while it stays listed).
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<SigningKey>,
}

impl Keyring {
    /// Reads PKCS#8 PEM files, current first. The error names the file.
    pub fn from_pem_files(paths: &[impl AsRef<std::path::Path>]) -> Result<Self, String> {
        let keys = paths
            .iter()
            .map(|path| {
                let path = path.as_ref();
                let pem = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                SigningKey::from_pkcs8_pem(&pem).map_err(|e| format!("{}: {e}", path.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err("no key file given".to_owned());
        }
        Ok(Self { keys })
    }

    /// The key that signs.
    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    /// Every public key, current first.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(SigningKey::jwk).collect(),
        }
    }
}

/// How far in the future `iat` may be (clock skew between the backend and the software).
pub const ALLOWED_SKEW_SECONDS: i64 = 300;

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Verifies `token` against `jwks` at `now` (seconds since the epoch): the algorithm is EdDSA, the
/// key is in the set (by `kid`), the signature holds, and `now` is before `exp`.
pub fn verify(token: &str, jwks: &Jwks, now: i64) -> Result<Claims, Refused> {
    let token = token.trim();
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Refused::Malformed(
            "a compact JWS has three parts".to_owned(),
        ));
    };
    let decode = |part: &str, what: &str| {
        B64.decode(part)
            .map_err(|e| Refused::Malformed(format!("{what} is not base64url: {e}")))
    };
    let header: Header = serde_json::from_slice(&decode(header, "the header")?)
        .map_err(|e| Refused::Malformed(format!("header: {e}")))?;
    if header.alg != "EdDSA" {
        return Err(Refused::Algorithm(header.alg));
    }
    let kid = header.kid.unwrap_or_default();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid && k.kty == "OKP" && k.crv == "Ed25519")
        .ok_or_else(|| Refused::UnknownKey(kid.clone()))?;
    let public: [u8; 32] = decode(&jwk.x, "the key")?
        .try_into()
        .map_err(|_| Refused::Malformed("an Ed25519 key has 32 bytes".to_owned()))?;
    let public = ed25519_dalek::VerifyingKey::from_bytes(&public)
        .map_err(|e| Refused::Malformed(format!("key: {e}")))?;
    let signature: [u8; 64] = decode(signature, "the signature")?
        .try_into()
        .map_err(|_| Refused::Signature)?;
    let signed = &token[..token.len() - token.rsplit('.').next().map_or(0, str::len) - 1];
    public
        .verify_strict(
            signed.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .map_err(|_| Refused::Signature)?;
    let claims: Claims = serde_json::from_slice(&decode(payload, "the claims")?)
        .map_err(|e| Refused::Malformed(format!("claims: {e}")))?;
    if now >= claims.exp {
        return Err(Refused::Expired {
            exp: claims.exp,
            now,
        });
    }
    if claims.iat > now + ALLOWED_SKEW_SECONDS {
        return Err(Refused::NotYetValid {
            iat: claims.iat,
            now,
        });
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl genpkey -algorithm ed25519` output (a test key, nowhere else used).
    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHBy/P0e4Cq+dLU9aDr0jdUKhmOk38n7SK8tXV7XpLtI\n-----END PRIVATE KEY-----\n";

    fn key() -> SigningKey {
        SigningKey::from_pkcs8_pem(PEM).unwrap()
    }

    fn claims() -> Claims {
        Claims::new("PL0001", "frozen", None, 1_000, 1_000 + 86_400)
    }

    #[test]
    fn a_signed_token_verifies_and_says_what_was_signed() {
        let key = key();
        let jwks = Jwks {
            keys: vec![key.jwk()],
        };
        let token = key.sign(&claims());
        let verified = verify(&token, &jwks, 2_000).unwrap();
        assert_eq!(verified.access_mode, "frozen");
        assert_eq!(verified.kid, key.kid());
    }

    #[test]
    fn exp_never_passes_access_until() {
        let c = Claims::new("PL0001", "active", Some(5_000), 1_000, 90_000);
        assert_eq!(c.exp, 5_000);
    }

    #[test]
    fn tampered_expired_foreign_and_malformed_tokens_are_refused() {
        let key = key();
        let jwks = Jwks {
            keys: vec![key.jwk()],
        };
        let token = key.sign(&claims());
        // Tampered: the claims say active instead of frozen.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(
            serde_json::to_vec(&Claims {
                access_mode: "active".into(),
                kid: key.kid().to_owned(),
                ..claims()
            })
            .unwrap(),
        );
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert_eq!(verify(&tampered, &jwks, 2_000), Err(Refused::Signature));
        assert!(matches!(
            verify(&token, &jwks, 1_000 + 86_400),
            Err(Refused::Expired { .. })
        ));
        assert!(matches!(
            verify(&token, &Jwks::default(), 2_000),
            Err(Refused::UnknownKey(_))
        ));
        assert!(matches!(
            verify("a.b", &jwks, 2_000),
            Err(Refused::Malformed(_))
        ));
        let none_alg = format!("{}.{}.", B64.encode(r#"{"alg":"none"}"#), parts[1]);
        assert!(matches!(
            verify(&none_alg, &jwks, 2_000),
            Err(Refused::Algorithm(_))
        ));
    }

    #[test]
    fn the_kid_is_the_rfc_7638_thumbprint() {
        // RFC 8037 appendix A.3: the thumbprint of its example key.
        assert_eq!(
            thumbprint("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }
}
