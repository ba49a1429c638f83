//! Console sessions (ADR 0015): a signed cookie; PostgreSQL keeps only the sign-outs.
//!
//! The cookie's value is `name.issued.expiry.nonce.signature`: the API token's name, when it was
//! issued (Unix milliseconds), the expiry (Unix seconds), a random nonce and an HMAC-SHA256 keyed
//! by the console's own secret (`LICENSING_CONSOLE_SECRET`) over them and the SHA-256 of the
//! token's current value. A sign-out is kept in `console_sign_outs` (that session, or every
//! session of the token issued until then), so it holds on every projector. The
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

use crate::config::network::Network;

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
    /// When it began.
    pub(crate) issued_at: OffsetDateTime,
    /// When the session ends.
    pub(crate) expires_at: OffsetDateTime,
    /// Its random part: what a sign-out of this session records.
    pub(crate) nonce: String,
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

fn session_mac(
    secret: &Secret,
    token: &ApiToken,
    issued: &str,
    expiry: &str,
    nonce: &str,
) -> HmacSha256 {
    mac(
        secret,
        "console-session",
        &[&token.name, &token_digest(token), issued, expiry, nonce],
    )
}

fn csrf_of(secret: &Secret, nonce: &str) -> String {
    URL_SAFE_NO_PAD.encode(
        mac(secret, "console-csrf", &[nonce])
            .finalize()
            .into_bytes(),
    )
}

/// A new session's cookie value for `token`, issued at `now` and valid until `expires_at`,
/// signed with `secret`.
pub(crate) fn issue(
    secret: &Secret,
    token: &ApiToken,
    now: OffsetDateTime,
    expires_at: OffsetDateTime,
) -> String {
    let name = &token.name;
    let issued = (now.unix_timestamp_nanos() / 1_000_000).to_string();
    let expiry = expires_at.unix_timestamp().to_string();
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let signature = URL_SAFE_NO_PAD.encode(
        session_mac(secret, token, &issued, &expiry, &nonce)
            .finalize()
            .into_bytes(),
    );
    format!("{name}.{issued}.{expiry}.{nonce}.{signature}")
}

/// The session a cookie value proves at `now`, if it does: a known token's name, a valid
/// signature, and an expiry after `now`. Whether it was signed out is the store's to say
/// ([`revoked`]).
pub(crate) fn verify(
    value: &str,
    secret: &Secret,
    tokens: &[ApiToken],
    now: OffsetDateTime,
) -> Option<Session> {
    // The name may hold dots; the other four parts cannot.
    let mut parts = value.rsplitn(5, '.');
    let (signature, nonce, expiry, issued, name) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    let provided = URL_SAFE_NO_PAD.decode(signature).ok()?;
    let token = tokens
        .iter()
        .find(|t| t.name == name && t.allows(licensing_runtime::Scope::Console))?;
    session_mac(secret, token, issued, expiry, nonce)
        .verify_slice(&provided)
        .ok()?;
    let expires_at = OffsetDateTime::from_unix_timestamp(expiry.parse().ok()?).ok()?;
    let issued_at = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(issued.parse::<i64>().ok()?) * 1_000_000,
    )
    .ok()?;
    (expires_at > now).then(|| Session {
        actor: name.to_owned(),
        issued_at,
        expires_at,
        nonce: nonce.to_owned(),
        csrf: csrf_of(secret, nonce),
    })
}

/// Whether `session` was signed out: by itself on any projector, or by a "sign out everywhere" of
/// its token after it was issued (both kept in PostgreSQL, `console_sign_outs`).
pub(crate) async fn revoked(
    store: &licensing_store::Store,
    session: &Session,
) -> Result<bool, licensing_store::StoreError> {
    let client = store.client().await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM console_sign_outs
                             WHERE (nonce = $1) OR (nonce IS NULL AND actor = $2 AND signed_out_at >= $3))",
            &[&session.nonce, &session.actor, &session.issued_at],
        )
        .await?;
    Ok(row.get(0))
}

/// Records that `session` signed out (`everywhere`: every session of its token issued until
/// `now`), and forgets sign-outs of sessions that expired meanwhile.
pub(crate) async fn sign_out(
    store: &licensing_store::Store,
    session: &Session,
    everywhere: bool,
    now: OffsetDateTime,
) -> Result<(), licensing_store::StoreError> {
    let client = store.client().await?;
    client
        .execute(
            "INSERT INTO console_sign_outs (nonce, actor, signed_out_at, expires_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&session.nonce, &session.actor, &now, &session.expires_at],
        )
        .await?;
    if everywhere {
        // Sessions last at most 720 hours: the mark is kept that long.
        let until = now + time::Duration::hours(720);
        client
            .execute(
                "INSERT INTO console_sign_outs (nonce, actor, signed_out_at, expires_at)
                 VALUES (NULL, $1, $2, $3)",
                &[&session.actor, &now, &until],
            )
            .await?;
    }
    client
        .execute(
            "DELETE FROM console_sign_outs WHERE expires_at < $1",
            &[&now],
        )
        .await?;
    Ok(())
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
        // Read from the right: each trusted proxy appends the address it saw, so the first
        // address that is not itself a trusted proxy is the client; what is further left was
        // written by the client and proves nothing. Every `X-Forwarded-For` line counts, in order.
        let forwarded = req
            .headers()
            .get_all("X-Forwarded-For")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|line| line.split(','))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|item| item.trim().parse::<IpAddr>().ok())
            .find(|ip| ip.is_none_or(|ip| !trusted.iter().any(|n| n.contains(ip))))
            .flatten();
        Self {
            client: forwarded.or(peer),
            tls: header("X-Forwarded-Proto").is_some_and(|p| p.eq_ignore_ascii_case("https")),
        }
    }
}

/// Failed sign-ins per client: after [`Attempts::LIMIT`] within [`Attempts::WINDOW`], further
/// tries are refused until the oldest failure leaves the window. An IPv6 client counts by its
/// /64 (what one subscriber is usually given, so rotating addresses inside it buys nothing), an
/// IPv4 client by its address. At most [`Attempts::CLIENTS`] clients are remembered: beyond, the
/// one whose last failure is oldest is forgotten, so a flood from many addresses cannot grow the
/// map without bound.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    failures: Mutex<HashMap<Option<IpAddr>, Vec<Instant>>>,
}

/// The key a client's failures are counted under.
fn client_key(client: Option<IpAddr>) -> Option<IpAddr> {
    client.map(|ip| match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ipnet::Ipv6Net::new(v6, 64).map_or(ip, |net| IpAddr::V6(net.network())),
        },
        v4 => v4,
    })
}

impl Attempts {
    /// Failures allowed in a window.
    pub(crate) const LIMIT: usize = 5;
    /// The window.
    pub(crate) const WINDOW: Duration = Duration::from_secs(300);
    /// Clients remembered at most.
    pub(crate) const CLIENTS: usize = 10_000;

    /// `Some(seconds to wait)` when `client` may not try now.
    pub(crate) fn blocked(&self, client: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let recent = failures.get_mut(&client_key(client))?;
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
        let key = client_key(client);
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if !failures.contains_key(&key) && failures.len() >= Self::CLIENTS {
            // Forget clients whose failures all left the window; if none did, the stalest one.
            failures.retain(|_, times| {
                times
                    .last()
                    .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
            });
            if failures.len() >= Self::CLIENTS
                && let Some(stalest) = failures
                    .iter()
                    .min_by_key(|(_, times)| times.last().copied())
                    .map(|(k, _)| *k)
            {
                failures.remove(&stalest);
            }
        }
        let times = failures.entry(key).or_default();
        times.push(now);
        // Only the last LIMIT failures decide anything.
        if times.len() > Self::LIMIT {
            let extra = times.len() - Self::LIMIT;
            times.drain(..extra);
        }
    }

    /// Clients remembered now.
    #[cfg(test)]
    fn remembered(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
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
        let value = issue(&key(), &tokens[0], now, now + time::Duration::hours(12));
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
        let a = verify(&issue(&key(), &tokens[0], now, later), &key(), &tokens, now).unwrap();
        let b = verify(&issue(&key(), &tokens[0], now, later), &key(), &tokens, now).unwrap();
        assert!(csrf_matches(&a, Some(&a.csrf)));
        assert!(!csrf_matches(&a, Some(&b.csrf)));
        assert!(!csrf_matches(&a, None));
        assert!(!csrf_matches(&a, Some("")));
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

    #[test]
    fn an_ipv6_client_counts_by_its_64_and_memory_stays_bounded() {
        let attempts = Attempts::default();
        for n in 0..Attempts::LIMIT {
            // Five addresses of one /64: one client.
            attempts.failed(Some(format!("2001:db8:1:2::{n:x}").parse().unwrap()));
        }
        assert!(
            attempts
                .blocked(Some("2001:db8:1:2:ffff::1".parse().unwrap()))
                .is_some()
        );
        assert_eq!(
            attempts.blocked(Some("2001:db8:1:3::1".parse().unwrap())),
            None
        );
        // A flood from many addresses: the map never holds more than its bound, and the newest
        // clients are still counted.
        for n in 0..(Attempts::CLIENTS as u32 + 500) {
            attempts.failed(Some(IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))));
        }
        assert!(
            attempts.remembered() <= Attempts::CLIENTS,
            "{}",
            attempts.remembered()
        );
        let last = Some(IpAddr::V4(std::net::Ipv4Addr::from(
            0x0a00_0000 + Attempts::CLIENTS as u32 + 499,
        )));
        for _ in 1..Attempts::LIMIT {
            attempts.failed(last);
        }
        assert!(attempts.blocked(last).is_some());
    }

    #[test]
    fn the_client_is_the_first_address_from_the_right_that_is_not_a_trusted_proxy() {
        let trusted = vec![
            Network::parse("10.0.0.0/8").unwrap(),
            Network::parse("192.0.2.7").unwrap(),
        ];
        let origin = |peer: &str, forwarded: &[&str]| {
            let mut req = actix_web::test::TestRequest::default()
                .peer_addr(format!("{peer}:40000").parse().unwrap());
            for line in forwarded {
                req = req.append_header(("X-Forwarded-For", *line));
            }
            Origin::of(&req.to_http_request(), &trusted).client
        };
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        // Two proxies in a row: the client is what the outer one saw, not what the client wrote.
        assert_eq!(
            origin("10.0.0.2", &["6.6.6.6, 203.0.113.9, 10.1.1.1"]),
            ip("203.0.113.9")
        );
        assert_eq!(
            origin("10.0.0.2", &["6.6.6.6", "203.0.113.9"]),
            ip("203.0.113.9")
        );
        // Only proxies, or nothing at all: the peer.
        assert_eq!(origin("10.0.0.2", &["192.0.2.7, 10.1.1.1"]), ip("10.0.0.2"));
        assert_eq!(origin("10.0.0.2", &[]), ip("10.0.0.2"));
        // A garbled entry where the client should be is not skipped over to the forged ones.
        assert_eq!(origin("10.0.0.2", &["6.6.6.6, garbage"]), ip("10.0.0.2"));
        // From an untrusted peer the header is ignored.
        assert_eq!(origin("198.51.100.1", &["203.0.113.9"]), ip("198.51.100.1"));
    }
}
