//! The Huawei API Gateway `SDK-HMAC-SHA256` request signer (spec §4.4), used for the open API.
//!
//! ```text
//! CanonicalRequest = METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n SignedHeaders \n hex(sha256(body))
//! StringToSign     = "SDK-HMAC-SHA256" \n X-Sdk-Date \n hex(sha256(CanonicalRequest))
//! Authorization    = SDK-HMAC-SHA256 Access=AK, SignedHeaders=…, Signature=hex(hmac_sha256(SK, StringToSign))
//! ```
//! The same code verifies a signed request, which is what the marketplace simulator does.

use hmac::{KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use url::Url;

use crate::secret::Secret;

/// The algorithm name, first word of the `Authorization` header.
pub const ALGORITHM: &str = "SDK-HMAC-SHA256";
/// The header carrying the signing time.
pub const DATE_HEADER: &str = "X-Sdk-Date";

/// An AK/SK pair from "我的凭证 > 管理访问密钥". Unrelated to the callback access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Access Key Id (not secret: it is sent in every request).
    pub ak: String,
    /// Secret Access Key.
    pub sk: Secret,
}

impl Credentials {
    /// A pair.
    pub fn new(ak: impl Into<String>, sk: impl Into<Secret>) -> Self {
        Self {
            ak: ak.into(),
            sk: sk.into(),
        }
    }
}

/// Everything a signature is computed from, kept so that a mismatch can be debugged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The canonical request, byte for byte.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// Lower-case names of the signed headers, sorted, joined with `;`.
    pub signed_headers: String,
    /// The hex signature.
    pub signature: String,
    /// The full `Authorization` header value.
    pub authorization: String,
}

/// Characters kept as they are: the unreserved set `A-Z a-z 0-9 - _ . ~`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn encode(text: &str) -> String {
    utf8_percent_encode(text, ENCODE).to_string()
}

/// The canonical URI: each path segment decoded then encoded again, always ending with `/`.
pub fn canonical_uri(url: &Url) -> String {
    let path = percent_decode_str(url.path()).decode_utf8_lossy();
    let mut uri = path.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    uri
}

/// The canonical query string: parameters sorted by name then value, each encoded, joined with `&`.
pub fn canonical_query(url: &Url) -> String {
    let mut pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (encode(&k), encode(&v)))
        .collect();
    pairs.sort();
    pairs
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The `Host` header for a URL: host, plus `:port` when the URL names a non-default port.
pub fn host_header(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn hmac_hex(key: &Secret, message: &str) -> String {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Signs a request. `headers` are exactly the headers to sign (name, value), and must include
/// `X-Sdk-Date`; names are matched case-insensitively, values trimmed.
pub fn sign(
    credentials: &Credentials,
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Signature, SignError> {
    let mut canonical: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    canonical.sort();
    let date = canonical
        .iter()
        .find(|(name, _)| name == "x-sdk-date")
        .map(|(_, value)| value.clone())
        .ok_or(SignError::MissingDate)?;
    let signed_headers = canonical
        .iter()
        .map(|(name, _)| name.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = canonical
        .iter()
        .map(|(name, value)| format!("{name}:{value}\n"))
        .collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        method.to_ascii_uppercase(),
        canonical_uri(url),
        canonical_query(url),
        canonical_headers,
        signed_headers,
        sha256_hex(body),
    );
    let string_to_sign = format!(
        "{ALGORITHM}\n{date}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let signature = hmac_hex(&credentials.sk, &string_to_sign);
    let authorization = format!(
        "{ALGORITHM} Access={}, SignedHeaders={signed_headers}, Signature={signature}",
        credentials.ak
    );
    Ok(Signature {
        canonical_request,
        string_to_sign,
        signed_headers,
        signature,
        authorization,
    })
}

/// The headers the open-API client signs (D18): `Content-Type`, `Host`, `X-Sdk-Date`, then any
/// extra ones. Returns them in the order they should be sent.
pub fn default_headers(
    url: &Url,
    content_type: &str,
    date: &str,
    extra: &[(String, String)],
) -> Vec<(String, String)> {
    let mut headers = vec![
        ("Content-Type".to_owned(), content_type.to_owned()),
        ("Host".to_owned(), host_header(url)),
        (DATE_HEADER.to_owned(), date.to_owned()),
    ];
    headers.extend(extra.iter().cloned());
    headers
}

/// Why a request could not be signed or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// `X-Sdk-Date` is not among the headers.
    #[error("the X-Sdk-Date header is missing")]
    MissingDate,
    /// The `Authorization` header is absent or not `SDK-HMAC-SHA256 Access=…, SignedHeaders=…, Signature=…`.
    #[error("malformed Authorization header")]
    MalformedAuthorization,
    /// A header named in `SignedHeaders` is not in the request.
    #[error("signed header `{0}` is missing from the request")]
    MissingSignedHeader(String),
    /// The access key id is not known.
    #[error("unknown access key id")]
    UnknownAccessKey,
    /// The signature does not match.
    #[error("signature does not match")]
    Mismatch,
}

/// The parts of an `Authorization: SDK-HMAC-SHA256 …` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationHeader {
    /// `Access`.
    pub access: String,
    /// `SignedHeaders`, as lower-case names.
    pub signed_headers: Vec<String>,
    /// `Signature`.
    pub signature: String,
}

impl AuthorizationHeader {
    /// Parses the header value.
    pub fn parse(value: &str) -> Result<Self, SignError> {
        let rest = value
            .trim()
            .strip_prefix(ALGORITHM)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(SignError::MalformedAuthorization)?;
        let (mut access, mut signed, mut signature) = (None, None, None);
        for part in rest.split(',') {
            let (name, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignError::MalformedAuthorization)?;
            match name {
                "Access" => access = Some(value.to_owned()),
                "SignedHeaders" => signed = Some(value.to_owned()),
                "Signature" => signature = Some(value.to_owned()),
                _ => return Err(SignError::MalformedAuthorization),
            }
        }
        let signed = signed.ok_or(SignError::MalformedAuthorization)?;
        Ok(Self {
            access: access.ok_or(SignError::MalformedAuthorization)?,
            signed_headers: signed.split(';').map(str::to_ascii_lowercase).collect(),
            signature: signature.ok_or(SignError::MalformedAuthorization)?,
        })
    }
}

/// Verifies a signed request as the gateway does: recomputes the signature over the headers the
/// client listed and compares in constant time. `lookup` maps an access key id to its credentials.
/// Checking the freshness of `X-Sdk-Date` is left to the caller, which owns the clock.
pub fn verify(
    lookup: impl Fn(&str) -> Option<Credentials>,
    method: &str,
    url: &Url,
    request_headers: &[(String, String)],
    body: &[u8],
) -> Result<AuthorizationHeader, SignError> {
    let header = |name: &str| {
        request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let auth = AuthorizationHeader::parse(
        &header("authorization").ok_or(SignError::MalformedAuthorization)?,
    )?;
    let credentials = lookup(&auth.access).ok_or(SignError::UnknownAccessKey)?;
    let signed = auth
        .signed_headers
        .iter()
        .map(|name| {
            header(name)
                .map(|value| (name.clone(), value))
                .ok_or_else(|| SignError::MissingSignedHeader(name.clone()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let expected = sign(&credentials, method, url, &signed, body)?;
    let provided = hex::decode(&auth.signature).map_err(|_| SignError::Mismatch)?;
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(credentials.sk.expose().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(expected.string_to_sign.as_bytes());
    mac.verify_slice(&provided)
        .map_err(|_| SignError::Mismatch)?;
    Ok(auth)
}
