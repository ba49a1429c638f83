//! The attack loop: the whole pipeline under a steady signed load of renewals and status changes
//! over a few licenses, while attackers send, at seeded random, what an outside caller can send to
//! the public callback URL:
//!
//! - unsigned and wrongly signed bodies with pathological fields: strings at and past every
//!   index and column limit, NUL, lone surrogates, invalid UTF-8, 10,000-deep nesting, huge
//!   numbers, duplicate keys, 64 KiB pads, and the genuine licenses' codes;
//! - replays of captured signed requests: as they were, with the nonce's last character moved into
//!   the timestamp, with the signature in upper case;
//! - oversized headers and very many of them;
//! - slow bodies (announced, never finished);
//! - floods from many `X-Forwarded-For` addresses.
//!
//! Then the load stops, the pipeline drains, and the check runs:
//!
//! - every signed callback was answered `000000` within 5 s, and each accepted renewal is stored
//!   exactly once; each license's state is the last status change accepted;
//! - no attacker's request was ever answered `000000`;
//! - nothing was dead-lettered;
//! - the genuine licenses' ledgers hold genuine exchanges only (everything the attacker caused is
//!   a refusal, kept apart);
//! - the refusals stored stay within the day's ceiling;
//! - no processor lane held a command longer than [`LANE_AGE_LIMIT`] at any sample (every half
//!   second, `licensing_processor_lane_age_seconds`);
//! - every service's resident memory stayed under [`RSS_LIMIT_MIB`].
//!
//! ```text
//! attack [SECONDS] [SEED]        # defaults: 60 seconds, a seed from the clock
//! ```
//! Prints one verdict line, `attack: PASS …` or `attack: FAIL …` with the counts, and exits 1 on
//! any violation. `scripts/attack` runs it against the release binaries.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;
use tokio::io::AsyncWriteExt;

/// Callbacks slower than this are a violation: the marketplace gives up after 5 s.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// The refusals' daily ceiling of the run.
const CEILING: i64 = 1024 * 1024;
/// Longest a processor lane may hold a command: a lane older than this is stalled.
const LANE_AGE_LIMIT: Duration = Duration::from_secs(10);
/// Resident memory a service may reach.
const RSS_LIMIT_MIB: u64 = 512;
/// Genuine licenses under load.
const LICENSES: usize = 12;
/// Attackers sending at once.
const ATTACKERS: usize = 4;

/// What the genuine load saw.
#[derive(Default)]
struct Genuine {
    sent: u64,
    accepted: u64,
    retried: BTreeMap<String, u64>,
    slowest: Duration,
    slow: Vec<String>,
    /// Every body sent with a valid signature: what the ledgers may hold.
    bodies: HashSet<String>,
    /// Signed requests as sent (query, body): what the attackers replay.
    captured: Vec<(String, String)>,
    /// Per license: the order ids of accepted renewals, and the last accepted status.
    renewals: BTreeMap<String, Vec<String>>,
    status: BTreeMap<String, &'static str>,
}

/// What the attackers sent and what came back.
#[derive(Default)]
struct Attacks {
    sent: BTreeMap<&'static str, u64>,
    /// Forged or replayed requests answered `000000`: each one a violation.
    accepted: Vec<String>,
}

/// Posts a signed callback until it is answered `000000`; records every attempt.
async fn deliver(http: &reqwest::Client, url: &str, body: &str, genuine: &Mutex<Genuine>) {
    loop {
        let query = fresh_query(KEY, body);
        genuine.lock().unwrap().bodies.insert(body.to_owned());
        let started = Instant::now();
        let answer = http
            .post(format!("{url}?{query}"))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        let code = match answer {
            Ok(response) => response.json::<Value>().await.unwrap_or(Value::Null)["resultCode"]
                .as_str()
                .unwrap_or("no JSON")
                .to_owned(),
            Err(e) => format!("transport: {e}"),
        };
        let took = started.elapsed();
        let accepted = {
            let mut g = genuine.lock().unwrap();
            g.sent += 1;
            // Captured once it has been sent and answered, as an eavesdropper would have it.
            if g.captured.len() < 1000 {
                g.captured.push((query.clone(), body.to_owned()));
            }
            g.slowest = g.slowest.max(took);
            if took > ANSWER_LIMIT {
                g.slow.push(format!("{took:?} for {body}"));
            }
            if code == "000000" {
                g.accepted += 1;
            } else {
                *g.retried.entry(code.clone()).or_default() += 1;
            }
            code == "000000"
        };
        if accepted {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One license's signed load: renewals with a new expiry each, a status change every third.
async fn license_load(
    license: String,
    url: String,
    genuine: Arc<Mutex<Genuine>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut step = 0u64;
    let mut frozen = false;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        if step % 3 == 0 {
            let next = if frozen { "UNFREEZE" } else { "FREEZE" };
            deliver(&http, &url, &status(&license, next), &genuine).await;
            frozen = !frozen;
            genuine
                .lock()
                .unwrap()
                .status
                .insert(license.clone(), if frozen { "frozen" } else { "active" });
        } else {
            let expire =
                time::OffsetDateTime::from_unix_timestamp(1_893_456_000 + step as i64 * 86_400)
                    .unwrap();
            let order = format!("SO{license}-{step}");
            let body = renew(
                &license,
                &order,
                &format!(
                    "{:04}{:02}{:02}235959",
                    expire.year(),
                    u8::from(expire.month()),
                    expire.day()
                ),
                false,
            );
            deliver(&http, &url, &body, &genuine).await;
            genuine
                .lock()
                .unwrap()
                .renewals
                .entry(license.clone())
                .or_default()
                .push(order);
        }
    }
}

/// A query with a signature that cannot verify.
fn forged_query(random: &mut Random) -> String {
    format!(
        "signature={:064x}&timestamp={}&nonce=forged{}",
        random.next(),
        now_ms(),
        random.next()
    )
}

/// A string of `n` letters.
fn letters(random: &mut Random, n: usize) -> String {
    (0..n)
        .map(|_| char::from(b'a' + (random.next() % 26) as u8))
        .collect()
}

/// One pathological body, and what it is.
fn pathological(random: &mut Random, genuine_license: &str) -> (&'static str, Vec<u8>) {
    let renew_with = |license: &str| {
        format!(
            r#"{{"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"{license}","orderId":"X","orderLineId":"X-1","scene":"RENEWAL","testFlag":"0"}}"#
        )
    };
    match random.between(0, 9) {
        0 => ("long_license", renew_with(&letters(random, 8000)).into_bytes()),
        1 => ("limit_license", renew_with(&letters(random, 2700)).into_bytes()),
        2 => ("nul", renew_with("PL\\u0000X").into_bytes()),
        3 => ("lone_surrogate", renew_with("PL\\ud800X").into_bytes()),
        4 => {
            let mut body = renew_with("PLBAD").into_bytes();
            body.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            ("invalid_utf8", body)
        }
        5 => (
            "deep_nesting",
            format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        6 => (
            "huge_number",
            format!(r#"{{"activity":"refreshLicenseCode","license":"PLNUM","orderId":1e400,"n":{}}}"#, "9".repeat(5000)).into_bytes(),
        ),
        7 => (
            "duplicate_keys",
            format!(r#"{{"activity":"refreshLicenseCode","license":"{genuine_license}","license":"PLDUP","expireTime":"20301231235959","orderId":"D","orderLineId":"D-1","scene":"RENEWAL","testFlag":"0"}}"#).into_bytes(),
        ),
        8 => (
            "pad_64k",
            format!(r#"{{"license":"{genuine_license}","pad":"{}"}}"#, "p".repeat(64 * 1024 - 40)).into_bytes(),
        ),
        _ => ("genuine_code_forged", renew_with(genuine_license).into_bytes()),
    }
}

/// A captured signed request rewritten, and what was done to it.
fn rewritten(random: &mut Random, query: &str) -> (&'static str, String) {
    let fields: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let get = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let join = |signature: &str, timestamp: &str, nonce: &str| {
        format!("signature={signature}&timestamp={timestamp}&nonce={nonce}")
    };
    let (signature, timestamp, nonce) = (get("signature"), get("timestamp"), get("nonce"));
    match random.between(0, 2) {
        0 => ("replay_as_is", query.to_owned()),
        1 => {
            let (head, last) = nonce.split_at(nonce.len().saturating_sub(1));
            (
                "replay_boundary_moved",
                join(&signature, &format!("{last}{timestamp}"), head),
            )
        }
        _ => (
            "replay_upper_case",
            join(&signature.to_uppercase(), &timestamp, &nonce),
        ),
    }
}

/// Sends a request by hand and holds it unfinished: a slow body.
async fn slow_body(address: &str) {
    if let Ok(mut stream) = tokio::net::TcpStream::connect(address).await {
        let head = format!(
            "POST /koogallery/license?signature=00&timestamp=0&nonce=slow HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{{\"license\":"
        );
        let _ = stream.write_all(head.as_bytes()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

/// One attacker: sends until told to stop.
async fn attacker(
    seed: u64,
    url: String,
    address: String,
    genuine: Arc<Mutex<Genuine>>,
    attacks: Arc<Mutex<Attacks>>,
    stop: Arc<AtomicBool>,
) {
    let http = reqwest::Client::new();
    let mut random = Random(seed);
    let genuine_license =
        |random: &mut Random| format!("PLAT{:03}", random.between(0, LICENSES as u64 - 1));
    while !stop.load(Ordering::Relaxed) {
        let mut headers: Vec<(String, String)> = Vec::new();
        let (kind, query, body): (&'static str, String, Vec<u8>) = match random.between(0, 9) {
            0..=4 => {
                let license = genuine_license(&mut random);
                let (kind, body) = pathological(&mut random, &license);
                (kind, forged_query(&mut random), body)
            }
            5 | 6 => {
                let captured = {
                    let g = genuine.lock().unwrap();
                    (!g.captured.is_empty())
                        .then(|| g.captured[random.next() as usize % g.captured.len()].clone())
                };
                let Some((query, body)) = captured else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let (kind, query) = rewritten(&mut random, &query);
                (kind, query, body.into_bytes())
            }
            7 => {
                let kind = if random.next() % 2 == 0 {
                    for n in 0..200 {
                        headers.push((format!("x-attack-{n}"), letters(&mut random, 200)));
                    }
                    "many_headers"
                } else {
                    headers.push(("x-attack".to_owned(), letters(&mut random, 64 * 1024)));
                    "huge_header"
                };
                (kind, forged_query(&mut random), b"{}".to_vec())
            }
            8 => {
                let address = address.clone();
                tokio::spawn(async move { slow_body(&address).await });
                *attacks.lock().unwrap().sent.entry("slow_body").or_default() += 1;
                continue;
            }
            _ => {
                let ip = format!(
                    "{}.{}.{}.{}",
                    random.between(1, 223),
                    random.between(0, 255),
                    random.between(0, 255),
                    random.between(1, 254)
                );
                headers.push(("X-Forwarded-For".to_owned(), ip));
                let license = genuine_license(&mut random);
                let (_, body) = pathological(&mut random, &license);
                ("forwarded_flood", forged_query(&mut random), body)
            }
        };
        *attacks.lock().unwrap().sent.entry(kind).or_default() += 1;
        let mut request = http
            .post(format!("{url}?{query}"))
            .header("Content-Type", "application/json")
            .timeout(Duration::from_secs(15))
            .body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Ok(response) = request.send().await
            && let Ok(answer) = response.json::<Value>().await
            && answer["resultCode"] == "000000"
        {
            attacks.lock().unwrap().accepted.push(kind.to_owned());
        }
    }
}

/// Resident memory of `pid`, in MiB.
fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: u64 = args.first().map_or(60, |s| s.parse().expect("SECONDS"));
    let seed: u64 = args.get(1).map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        },
        |s| s.parse().expect("SEED"),
    );
    eprintln!("attack: {seconds} seconds, seed {seed}, {LICENSES} licenses, {ATTACKERS} attackers");
    let public = format!("127.0.0.1:{}", free_port());
    let ceiling = CEILING.to_string();
    let stack = Stack::start(&[
        ("LICENSING_INGRESS_ADDR", &public),
        ("LICENSING_EVIDENCE_REFUSED_MAX_BYTES_PER_DAY", &ceiling),
    ])
    .await;
    let url = format!("http://{public}/koogallery/license");
    let licenses: Vec<String> = (0..LICENSES).map(|i| format!("PLAT{i:03}")).collect();

    let genuine = Arc::new(Mutex::new(Genuine::default()));
    let attacks = Arc::new(Mutex::new(Attacks::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = tokio::task::JoinSet::new();
    for license in &licenses {
        load.spawn(license_load(
            license.clone(),
            url.clone(),
            genuine.clone(),
            stop.clone(),
        ));
    }
    let mut random = Random(seed);
    let mut attackers = tokio::task::JoinSet::new();
    for _ in 0..ATTACKERS {
        attackers.spawn(attacker(
            random.next(),
            url.clone(),
            public.clone(),
            genuine.clone(),
            attacks.clone(),
            stop.clone(),
        ));
    }
    // Resident memory, every half second, while it runs.
    let pids = [
        ("ingress", stack.ingress.as_ref().unwrap().child.id()),
        ("processor", stack.processor.as_ref().unwrap().child.id()),
    ];
    let mut max_rss: BTreeMap<&str, u64> = BTreeMap::new();
    // And the oldest command any processor lane holds: a lane stalled by an attacker's input
    // would grow it past any batch's duration.
    let mut oldest_lane = 0.0_f64;
    let mut lane_samples = 0u64;
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for (name, pid) in pids {
            let rss = rss_mib(pid);
            let top = max_rss.entry(name).or_default();
            *top = (*top).max(rss);
        }
        let ages = samples(
            &stack.processor_metrics().await,
            "licensing_processor_lane_age_seconds",
        );
        lane_samples += u64::from(!ages.is_empty());
        oldest_lane = ages.into_iter().fold(oldest_lane, f64::max);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut violations: Vec<String> = Vec::new();
    let finishing = async {
        while load.join_next().await.is_some() {}
        while attackers.join_next().await.is_some() {}
    };
    if tokio::time::timeout(Duration::from_secs(60), finishing)
        .await
        .is_err()
    {
        violations
            .push("signed callbacks still not accepted 60 s after the load stopped".to_owned());
    }

    // Drained: every refusal record written or dropped, nothing more coming.
    let today = time::OffsetDateTime::now_utc().date();
    let mut last = (-1, -1);
    let mut stable = Instant::now();
    let drained = Instant::now();
    loop {
        let day = stack.store.refusal_day(today).await.unwrap_or((0, 0));
        let client = stack.store.client().await.unwrap();
        let refusals: i64 = client
            .query_one(
                "SELECT count(*) FROM evidence_exchanges WHERE direction = 'in' AND message_id IS NULL",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if (refusals, day.1) != last {
            last = (refusals, day.1);
            stable = Instant::now();
        } else if stable.elapsed() > Duration::from_secs(3) {
            break;
        }
        if drained.elapsed() > Duration::from_secs(120) {
            violations.push("the refusals did not settle within 120 s".to_owned());
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let genuine = std::mem::take(&mut *genuine.lock().unwrap());
    let attacks = std::mem::take(&mut *attacks.lock().unwrap());
    if genuine.slowest > ANSWER_LIMIT {
        violations.push(format!(
            "{} signed callbacks answered after more than 5 s: {:?}",
            genuine.slow.len(),
            genuine.slow.iter().take(3).collect::<Vec<_>>()
        ));
    }
    for kind in &attacks.accepted {
        violations.push(format!("an attacker's {kind} was answered 000000"));
    }
    let client = stack.store.client().await.unwrap();
    for license in &licenses {
        let events = stack.events(&format!("license-{license}")).await;
        let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
        if versions != (1..=versions.len() as i64).collect::<Vec<_>>() {
            violations.push(format!("{license}: versions {versions:?}"));
        }
        let stored: Vec<String> = events
            .iter()
            .filter(|e| e.event_type == "renewed")
            .filter_map(|e| e.payload["order_id"].as_str().map(str::to_owned))
            .collect();
        let accepted = genuine.renewals.get(license).cloned().unwrap_or_default();
        if stored != accepted {
            violations.push(format!(
                "{license}: renewals stored {} ≠ accepted {}",
                stored.len(),
                accepted.len()
            ));
        }
        if let Some(expected) = genuine.status.get(license) {
            let view = client
                .query_opt(
                    "SELECT status FROM license_views WHERE license = $1 AND NOT sandbox",
                    &[license],
                )
                .await
                .ok()
                .flatten()
                .map(|r| r.get::<_, String>(0));
            let frozen = events
                .iter()
                .rev()
                .find(|e| e.event_type == "frozen" || e.event_type == "unfrozen")
                .map(|e| e.event_type.as_str());
            let state = match frozen {
                Some("frozen") => "frozen",
                _ => "active",
            };
            if state != *expected {
                violations.push(format!(
                    "{license}: {state}, last accepted {expected} ({view:?})"
                ));
            }
        }
    }
    let foreign: i64 = client
        .query_one(
            "SELECT count(*) FROM evidence_exchanges
              WHERE direction = 'in' AND message_id IS NOT NULL AND license = ANY($1)
                AND NOT (convert_from(request, 'UTF8') = ANY($2))",
            &[
                &licenses,
                &genuine.bodies.iter().cloned().collect::<Vec<_>>(),
            ],
        )
        .await
        .unwrap()
        .get(0);
    if foreign > 0 {
        violations.push(format!(
            "{foreign} ledger entries of genuine licenses not sent by the load"
        ));
    }
    // A refused request (a replay among them) is a refusal, never an entry of a genuine window.
    let refused_in_window: i64 = client
        .query_one(
            "SELECT count(*) FROM evidence_exchanges
              WHERE direction = 'in' AND message_id IS NOT NULL AND license = ANY($1)
                AND outcome = '000001'",
            &[&licenses],
        )
        .await
        .unwrap()
        .get(0);
    if refused_in_window > 0 {
        violations.push(format!(
            "{refused_in_window} refused requests among the genuine licenses' exchanges"
        ));
    }
    let (refusal_bytes, dropped) = stack.store.refusal_day(today).await.unwrap_or((0, 0));
    if refusal_bytes > CEILING {
        violations.push(format!(
            "refusals stored {refusal_bytes} bytes, over the ceiling {CEILING}"
        ));
    }
    let dead: i64 = client
        .query_one("SELECT count(*) FROM dead_letters", &[])
        .await
        .unwrap()
        .get(0);
    if dead > 0 {
        violations.push(format!("{dead} dead letters"));
    }
    if lane_samples == 0 {
        violations.push("the processor's lane ages could not be read".to_owned());
    }
    if oldest_lane > LANE_AGE_LIMIT.as_secs_f64() {
        violations.push(format!(
            "a processor lane held a command for {oldest_lane:.1} s"
        ));
    }
    for (name, rss) in &max_rss {
        if *rss > RSS_LIMIT_MIB {
            violations.push(format!("{name} reached {rss} MiB"));
        }
    }
    for service in [&stack.ingress, &stack.processor].into_iter().flatten() {
        violations.extend(service.panics());
    }
    let stored_refusals = last.0;
    println!(
        "attack: {} seed={seed} seconds={seconds} signed_sent={} accepted={} retried={:?} slowest_answer_ms={} attacks={:?} refusals_stored={stored_refusals} refusal_bytes={refusal_bytes} refusals_dropped={dropped} max_rss_mib={:?} max_lane_age_s={oldest_lane:.2} dead_letters={dead} violations={}",
        if violations.is_empty() {
            "PASS"
        } else {
            "FAIL"
        },
        genuine.sent,
        genuine.accepted,
        genuine.retried,
        genuine.slowest.as_millis(),
        attacks.sent,
        max_rss,
        violations.len()
    );
    for violation in &violations {
        println!("  violation: {violation}");
    }
    // `exit` runs no destructors: stop the services first, or they outlive the loop.
    drop(stack);
    std::process::exit(if violations.is_empty() { 0 } else { 1 });
}
