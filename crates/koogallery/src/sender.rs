//! The marketplace's side of a callback: post a body to a seller's URL, signed as KooGallery signs
//! it. For simulators, probes and tests of a seller's endpoint.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use url::Url;

use crate::callback::CallbackResponse;
use crate::client::CallError;
use crate::signature::{AccessKey, signed_query};

/// What the seller's endpoint answered.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackAnswer {
    /// HTTP status (KooGallery expects 200).
    pub http_status: u16,
    /// The body as text.
    pub body: String,
    /// The body as a callback answer, when it is one.
    pub response: Option<CallbackResponse>,
    /// Time to the answer.
    pub elapsed: Duration,
}

/// A fresh nonce: 32 hex digits, unique per process and call.
pub fn fresh_nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let seed = format!(
        "{now}:{}:{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    hex::encode(&Sha256::digest(seed.as_bytes())[..16])
}

/// Posts `body` to `url` with `signature`, `timestamp` (now, in milliseconds) and a fresh `nonce`,
/// as KooGallery does, waiting at most `timeout` (KooGallery waits 5 s), with `user_agent` when
/// given.
pub async fn send_callback(
    url: &Url,
    key: &AccessKey,
    body: &[u8],
    timeout: Duration,
    user_agent: Option<&str>,
) -> Result<CallbackAnswer, CallError> {
    let timestamp = crate::market_time::unix_millis(time::OffsetDateTime::now_utc()).to_string();
    let query = signed_query(key, &fresh_nonce(), &timestamp, body);
    let mut target = url.clone();
    target.set_query(Some(&match url.query() {
        Some(existing) if !existing.is_empty() => format!("{existing}&{query}"),
        _ => query,
    }));
    let fail = |kind, e: reqwest::Error| CallError {
        kind,
        url: url.to_string(),
        message: e.to_string(),
    };
    let http = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| fail("transport", e))?;
    let started = Instant::now();
    let mut request = http.post(target).header("Content-Type", "application/json");
    if let Some(agent) = user_agent {
        request = request.header("User-Agent", agent);
    }
    let response = request.body(body.to_vec()).send().await.map_err(|e| {
        fail(
            if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            },
            e,
        )
    })?;
    let http_status = response.status().as_u16();
    let text = response.text().await.map_err(|e| fail("transport", e))?;
    Ok(CallbackAnswer {
        http_status,
        response: serde_json::from_str(&text).ok(),
        body: text,
        elapsed: started.elapsed(),
    })
}
