//! Console sessions (ADR 0015): a signed cookie, no server-side session table.
//!
//! The cookie's value is `name.expiry.nonce.signature`: the API token's name, the expiry (Unix
//! seconds), a random nonce and an HMAC-SHA256 keyed by the console's own secret
//! (`LICENSING_CONSOLE_SECRET`) over the three and the SHA-256 of the token's current value. The
//! token is never a key: a cookie that leaks gives no way to search for the token offline. A
//! session ends when it expires, when the token is removed from `LICENSING_API_TOKENS` (or loses
//! its `console` scope), when the token's value changes, or when the console secret changes; an
//! altered byte fails the signature. The CSRF token of a session's forms is an HMAC of its nonce
//! under the same key. The sign-in form, which has no session yet, carries a double-submit token:
//! a random value both in a cookie and in the form.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{KeyInit, Mac};
use koogallery::Secret;
use licensing_runtime::ApiToken;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

type HmacSha256 = hmac::Hmac<Sha256>;

/// The session cookie's name.
pub(crate) const SESSION_COOKIE: &str = "licensing_console";
/// The sign-in form's double-submit cookie.
pub(crate) const SIGN_IN_COOKIE: &str = "licensing_console_sign_in";
/// The language cookie.
pub(crate) const LANG_COOKIE: &str = "licensing_console_lang";

/// A signed-in operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Session {
    /// The API token's name: the actor of every action.
    pub(crate) actor: String,
    /// When the session ends.
    pub(crate) expires_at: OffsetDateTime,
    /// The CSRF token its forms carry.
    pub(crate) csrf: String,
}

fn mac(secret: &Secret, purpose: &str, parts: &[&str]) -> HmacSha256 {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(purpose.as_bytes());
    for part in parts {
        mac.update(b"\x1f");
        mac.update(part.as_bytes());
    }
    mac
}

/// What a session is bound to of its token: the digest of its current value, never the value.
fn token_digest(token: &ApiToken) -> String {
    hex::encode(Sha256::digest(token.token.expose().as_bytes()))
}

fn session_mac(secret: &Secret, token: &ApiToken, expiry: &str, nonce: &str) -> HmacSha256 {
    mac(
        secret,
        "console-session",
        &[&token.name, &token_digest(token), expiry, nonce],
    )
}

fn csrf_of(secret: &Secret, nonce: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        mac(secret, "console-csrf", &[nonce])
            .finalize()
            .into_bytes(),
    )
}

/// A new session's cookie value for `token`, valid until `expires_at`, signed with `secret`.
pub(crate) fn issue(secret: &Secret, token: &ApiToken, expires_at: OffsetDateTime) -> String {
    let name = &token.name;
    let expiry = expires_at.unix_timestamp().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let signature = URL_SAFE_NO_PAD.encode(
        session_mac(secret, token, &expiry, &nonce)
            .finalize()
            .into_bytes(),
    );
    format!("{name}.{expiry}.{nonce}.{signature}")
}

/// The session a cookie value proves at `now`, if it does: a known token's name, a valid
/// signature under that token, and an expiry after `now`.
pub(crate) fn verify(
    value: &str,
    secret: &Secret,
    tokens: &[ApiToken],
    now: OffsetDateTime,
) -> Option<Session> {
    // The name may hold dots; the other three parts cannot.
    let mut parts = value.rsplitn(4, '.');
    let (signature, nonce, expiry, name) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let provided = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let token = tokens
        .iter()
        .find(|t| t.name == name && t.allows(licensing_runtime::Scope::Console))?;
    session_mac(secret, token, expiry, nonce)
        .verify_slice(&provided)
        .ok()?;
    let expires_at = OffsetDateTime::from_unix_timestamp(expiry.parse().ok()?).ok()?;
    (expires_at > now).then(|| Session {
        actor: name.to_owned(),
        expires_at,
        csrf: csrf_of(secret, nonce),
    })
}

/// Whether `presented` is the session's CSRF token (in constant time).
pub(crate) fn csrf_matches(session: &Session, presented: Option<&str>) -> bool {
    presented.is_some_and(|p| licensing_runtime::same_bytes(p.as_bytes(), session.csrf.as_bytes()))
}

/// A random value for the sign-in form's double-submit cookie.
pub(crate) fn sign_in_nonce() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The value of cookie `name` in a request.
pub(crate) fn cookie<'a>(req: &'a actix_web::HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, path `/console`, `Secure` over TLS;
/// `max_age` seconds (0 deletes it).
pub(crate) fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// An address or a network, as `LICENSING_TRUSTED_PROXIES` lists them (`10.0.0.5`, `10.0.0.0/8`,
/// `::1`, `fd00::/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Parses one item; the error says what is wrong.
    pub fn parse(item: &str) -> Result<Self, String> {
        let (addr, prefix) = match item.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (item, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{item} is not an IP address or network"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{item}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> Option<u128> {
            match (self.addr, ip) {
                (IpAddr::V4(_), IpAddr::V4(v4)) => Some(u128::from(u32::from(v4)) << 96),
                (IpAddr::V6(_), IpAddr::V6(v6)) => Some(u128::from(v6)),
                (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                    .to_ipv4_mapped()
                    .map(|v4| u128::from(u32::from(v4)) << 96),
                (IpAddr::V6(_), IpAddr::V4(_)) => None,
            }
        };
        let (Some(ours), Some(theirs)) = (bits(self.addr), bits(ip)) else {
            return false;
        };
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        ours & mask == theirs & mask
    }
}

/// Where a request came from and whether it came over TLS, trusting the forwarding headers
/// (`X-Forwarded-For`, `X-Forwarded-Proto`) only from a trusted proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    /// The client's address.
    pub(crate) client: Option<IpAddr>,
    /// Whether the client's connection was TLS.
    pub(crate) tls: bool,
}

impl Origin {
    pub(crate) fn of(req: &actix_web::HttpRequest, trusted: &[Network]) -> Self {
        let peer = req.peer_addr().map(|a| a.ip());
        let proxied = peer.is_some_and(|ip| trusted.iter().any(|n| n.contains(ip)));
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
        };
        if !proxied {
            // The query listener itself is plain HTTP: without a trusted proxy in front, the
            // connection was not TLS, whatever headers say.
            return Self {
                client: peer,
                tls: false,
            };
        }
        // The last address the proxy appended is the one it saw.
        let forwarded = header("X-Forwarded-For")
            .and_then(|list| list.rsplit(',').next())
            .and_then(|ip| ip.trim().parse().ok());
        Self {
            client: forwarded.or(peer),
            tls: header("X-Forwarded-Proto").is_some_and(|p| p.eq_ignore_ascii_case("https")),
        }
    }
}

/// Failed sign-ins per client address: after [`Attempts::LIMIT`] within [`Attempts::WINDOW`],
/// further tries are refused until the oldest failure leaves the window.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    failures: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

impl Attempts {
    /// Failures allowed in a window.
    pub(crate) const LIMIT: usize = 5;
    /// The window.
    pub(crate) const WINDOW: Duration = Duration::from_secs(300);

    /// `Some(seconds to wait)` when `client` may not try now.
    pub(crate) fn blocked(&self, client: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let recent = failures.entry(client).or_default();
        recent.retain(|t| now.duration_since(*t) < Self::WINDOW);
        (recent.len() >= Self::LIMIT).then(|| {
            let oldest = recent.first().copied().unwrap_or(now);
            Self::WINDOW
                .saturating_sub(now.duration_since(oldest))
                .as_secs()
                .max(1)
        })
    }

    /// Records a failed sign-in from `client`.
    pub(crate) fn failed(&self, client: Option<IpAddr>) {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        // Forget addresses whose failures all left the window, so the map stays small.
        failures.retain(|_, times| {
            times
                .last()
                .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
        });
        failures.entry(client).or_default().push(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Secret {
        Secret::new("console-secret-for-the-tests-0123456789".to_owned())
    }

    fn tokens() -> Vec<ApiToken> {
        vec![
            ApiToken::parse("ops.team:secret-one"),
            ApiToken::parse("other:secret-two"),
        ]
    }

    #[test]
    fn a_session_verifies_until_it_expires_and_not_after_one_byte_changes() {
        let tokens = tokens();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let value = issue(&key(), &tokens[0], now + time::Duration::hours(12));
        let session = verify(&value, &key(), &tokens, now).expect("valid");
        assert_eq!(session.actor, "ops.team");
        assert!(verify(&value, &key(), &tokens, now + time::Duration::hours(12)).is_none());
        for i in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert!(
                verify(&altered, &key(), &tokens, now).is_none(),
                "byte {i} altered: {altered}"
            );
        }
        // The token's removal ends its sessions; another token's key does not verify it.
        assert!(verify(&value, &key(), &tokens[1..], now).is_none());
        let renamed = value.replacen("ops.team", "other", 1);
        assert!(verify(&renamed, &key(), &tokens, now).is_none());
        // Another console secret, a new value of the token, or its console scope taken away:
        // the session is over.
        let other_key = Secret::new("another-console-secret-0123456789abcdef".to_owned());
        assert!(verify(&value, &other_key, &tokens, now).is_none());
        let changed = vec![ApiToken::parse("ops.team:secret-one-rotated")];
        assert!(verify(&value, &key(), &changed, now).is_none());
        let narrowed = vec![ApiToken::parse("ops.team:secret-one:query,internal")];
        assert!(verify(&value, &key(), &narrowed, now).is_none());
        let scoped = vec![ApiToken::parse("ops.team:secret-one:console")];
        assert!(verify(&value, &key(), &scoped, now).is_some());
        // The cookie holds neither the token nor anything keyed by it.
        assert!(!value.contains("secret-one"));
    }

    #[test]
    fn csrf_tokens_belong_to_their_session() {
        let tokens = tokens();
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let later = now + time::Duration::hours(1);
        let a = verify(&issue(&key(), &tokens[0], later), &key(), &tokens, now).unwrap();
        let b = verify(&issue(&key(), &tokens[0], later), &key(), &tokens, now).unwrap();
        assert!(csrf_matches(&a, Some(&a.csrf)));
        assert!(!csrf_matches(&a, Some(&b.csrf)));
        assert!(!csrf_matches(&a, None));
        assert!(!csrf_matches(&a, Some("")));
    }

    #[test]
    fn networks_contain_their_addresses() {
        let net = Network::parse("10.1.0.0/16").unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Network::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Network::parse("fd00::/8")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("proxy.local").is_err());
    }

    #[test]
    fn five_failures_block_an_address_and_no_other() {
        let attempts = Attempts::default();
        let a = Some("192.0.2.1".parse().unwrap());
        let b = Some("192.0.2.2".parse().unwrap());
        for _ in 0..Attempts::LIMIT {
            assert_eq!(attempts.blocked(a), None);
            attempts.failed(a);
        }
        let wait = attempts.blocked(a).expect("blocked");
        assert!((1..=300).contains(&wait), "{wait}");
        assert_eq!(attempts.blocked(b), None);
    }
}
