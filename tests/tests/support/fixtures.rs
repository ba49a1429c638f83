//! What tests send: signed callback bodies and queries, and events to store.

use super::*;

/// Events `from..from + count` of a license's stream, as the processor stores them: registered
/// first, then renewals (the benchmarks' synthetic histories).
pub fn events_of(license: &str, from: usize, count: usize) -> Vec<licensing_store::NewEvent> {
    use licensing_domain::{
        Event, LicenseCode, MarketTime, Origin, Registered, Renewed, Scene, Timestamp,
    };
    (from..from + count)
        .map(|i| {
            let at = Timestamp::from_millis(1_800_000_000_000 + i as i64 * 1000);
            let event = if i == 0 {
                Event::Registered(Registered {
                    license: LicenseCode::parse(license).unwrap(),
                    sandbox: false,
                    origin: Origin::Callback,
                    at,
                })
            } else {
                let expire = 1_900_000_000_000 + i as i64 * 86_400_000;
                Event::Renewed(Renewed {
                    order_id: format!("CSV{i}"),
                    order_line_id: format!("CSV{i}-1"),
                    scene: Scene::Renewal,
                    product_id: None,
                    expire: MarketTime {
                        instant: Timestamp::from_millis(expire),
                        raw: format!("{:014}", 20300101000000u64 + i as u64),
                    },
                    at,
                })
            };
            let (event_type, payload) = licensing_messages::event_codec::encode(&event);
            licensing_store::NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type,
                schema_version: 1,
                payload,
                metadata: licensing_store::EventMetadata::default(),
            }
        })
        .collect()
}

/// Posts a callback `body` to `url` once, signed now as the marketplace signs it, waiting at most
/// `limit`: the answer's `resultCode` (`no JSON` without one) or the transport's error, and how
/// long it took.
pub async fn post_callback(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    limit: Duration,
) -> (Result<String, reqwest::Error>, Duration) {
    let started = Instant::now();
    let answer = http
        .post(format!("{url}?{}", fresh_query(KEY, body)))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .timeout(limit)
        .send()
        .await;
    let code = match answer {
        Ok(response) => Ok(
            response.json::<Value>().await.unwrap_or(Value::Null)["resultCode"]
                .as_str()
                .unwrap_or("no JSON")
                .to_owned(),
        ),
        Err(e) => Err(e),
    };
    (code, started.elapsed())
}

/// A query string signed now with a fresh nonce.
pub fn fresh_query(key: &str, body: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    signed_query(
        &AccessKey::new(key),
        &uuid::Uuid::new_v4().simple().to_string(),
        &now,
        body.as_bytes(),
    )
}

/// A query string signed with a given timestamp.
pub fn query_at(key: &str, body: &str, timestamp_ms: i64) -> String {
    signed_query(
        &AccessKey::new(key),
        &uuid::Uuid::new_v4().simple().to_string(),
        &timestamp_ms.to_string(),
        body.as_bytes(),
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn renew(license: &str, order: &str, expire: &str, test: bool) -> String {
    format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"{expire}","license":"{license}","orderId":"{order}","orderLineId":"{order}-000001","scene":"RENEWAL","testFlag":"{}"}}"#,
        if test { 1 } else { 0 }
    )
}

pub fn status(license: &str, status: &str) -> String {
    format!(
        r#"{{"activity":"updateLicenseCodeStatus","license":"{license}","status":"{status}","testFlag":"0"}}"#
    )
}

/// Inserts version 1 of stream `$1` in an open transaction: until it ends, every append to that
/// stream waits for its lock (a lock held elsewhere, as an operator's session might).
pub const HOLD_FIRST_VERSION: &str =
    "INSERT INTO events (global_position, stream_id, stream_version, event_id, event_type,
                         schema_version, payload, metadata)
     VALUES (licensing_position_base(pg_current_xact_id()), $1, 1,
             gen_random_uuid(), 'registered', 1, '{}', '{}')";

pub fn release(license: &str) -> String {
    format!(
        r#"{{"activity":"releaseLicenseCode","license":"{license}","orderId":"CSUNSUB","orderLineId":"CSUNSUB-1","testFlag":"0"}}"#
    )
}

pub fn code(answer: &Value) -> &str {
    answer["resultCode"]
        .as_str()
        .unwrap_or_else(|| panic!("no resultCode in {answer}"))
}

/// An Ed25519 key as sellers make one: `openssl genpkey -algorithm ed25519`.
pub fn openssl_key(dir: &std::path::Path, name: &str) -> PathBuf {
    let path = dir.join(format!("{name}.pem"));
    let status = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&path)
        .status()
        .expect("the openssl command (Debian package openssl)");
    assert!(status.success());
    path
}
