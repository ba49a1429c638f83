//! The chaos loop: the whole stack with the simulator under a steady load of signed callbacks,
//! activation requests and usage reports over many licenses, while, at seeded random moments, each
//! service is SIGKILLed and restarted, RabbitMQ is stopped and started (`rabbitmqctl stop_app` /
//! `start_app`) and PostgreSQL is restarted. Then the faults stop, the system drains, and the
//! check runs:
//!
//! - every callback answered `000000` is in the store exactly once (its `renewed` event);
//! - every stream's versions run from 1 without a gap;
//! - the license views equal a full rebuild;
//! - every event reached a durable subscriber bound to `license.#` at least once, the first
//!   deliveries of each license in stream order;
//! - no callback answer took longer than 5 s;
//! - nothing was dead-lettered.
//!
//! ```text
//! chaos [MINUTES] [SEED]        # defaults: 2 minutes, a seed from the clock
//! ```
//! `CHAOS_LICENSES` sets the number of licenses (default 40); `CHAOS_FAULTS` a comma-separated
//! subset of the faults (`KillIngress,KillProcessor,KillProjector,RestartBroker,RestartPostgres`,
//! default all). Once the load has stopped, the projector's followers must reach the store's last
//! position within `CATCH_UP_LIMIT` of the commands queue running empty.
//! Prints one verdict line, `chaos: PASS …` or `chaos: FAIL …` with the counts, and exits 1 on any
//! violation. Needs root (to restart PostgreSQL with `pg_ctlcluster` and to reach `rabbitmqctl`).
//! `scripts/chaos` runs it against the release binaries.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use licensing_bus::{Bus, BusConfig, Names, QueueType};
use serde_json::{Value, json};
use support::*;

/// Callbacks slower than this are a violation: the marketplace gives up after 5 s.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);

/// How long after the commands queue runs empty the views and the publisher may take to reach the
/// store's last position.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(30);

/// How long after the load stops its last callbacks may take to be accepted.
const LOAD_FINISH_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Fault {
    KillIngress,
    KillProcessor,
    KillProjector,
    RestartBroker,
    RestartPostgres,
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        FAULTS
            .into_iter()
            .find(|fault| format!("{fault:?}") == name.trim())
            .ok_or_else(|| format!("no fault named {name:?}; the faults: {FAULTS:?}"))
    }
}

const FAULTS: [Fault; 5] = [
    Fault::KillIngress,
    Fault::KillProcessor,
    Fault::KillProjector,
    Fault::RestartBroker,
    Fault::RestartPostgres,
];

/// What the load saw.
#[derive(Default)]
struct Observed {
    /// Order ids of renewals answered `000000`, by license.
    accepted: Vec<(String, String)>,
    callbacks_sent: u64,
    /// Answers other than `000000` (`000004` while the processor was away, `000005` while the
    /// broker was), each retried as the marketplace does.
    retried_answers: BTreeMap<String, u64>,
    /// Requests that found no listener or lost their connection (the ingress killed).
    unreachable: u64,
    slowest: Duration,
    slow: Vec<String>,
    internal_sent: u64,
}

/// What the subscriber received.
#[derive(Default)]
struct Received {
    unique: HashSet<String>,
    first_versions: HashMap<String, Vec<i64>>,
    deliveries: u64,
}

fn run_command(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn postgres_version() -> String {
    std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a version under /etc/postgresql")
}

fn renewal(license: &str, order: &str, step: u64) -> String {
    // Each renewal moves the expiry a day further: unique content, so never a duplicate (D9).
    let expire =
        time::OffsetDateTime::from_unix_timestamp(1_893_456_000 + step as i64 * 86_400).unwrap();
    format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"{:04}{:02}{:02}235959","license":"{license}","orderId":"{order}","orderLineId":"{order}-1","scene":"RENEWAL","testFlag":"0"}}"#,
        expire.year(),
        u8::from(expire.month()),
        expire.day()
    )
}

/// Sends one callback until it is answered `000000`, as the marketplace retries.
async fn deliver_callback(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    observed: &Mutex<Observed>,
    stop: &AtomicBool,
) -> bool {
    loop {
        let (answer, elapsed) = post_callback(http, url, body, Duration::from_secs(15)).await;
        let code = match answer {
            Ok(code) => {
                let mut o = observed.lock().unwrap();
                o.callbacks_sent += 1;
                o.slowest = o.slowest.max(elapsed);
                if elapsed > ANSWER_LIMIT {
                    o.slow.push(format!("{elapsed:?} for {body}"));
                }
                code
            }
            Err(e) if e.is_timeout() => {
                let mut o = observed.lock().unwrap();
                o.callbacks_sent += 1;
                o.slow.push(format!("no answer within 15 s for {body}"));
                "timeout".to_owned()
            }
            Err(_) => {
                observed.lock().unwrap().unreachable += 1;
                "unreachable".to_owned()
            }
        };
        if code == "000000" {
            return true;
        }
        if code == "unreachable" {
            if stop.load(Ordering::Relaxed) {
                // The load is over and the ingress is gone for good: give up on this one.
                return false;
            }
        } else {
            *observed
                .lock()
                .unwrap()
                .retried_answers
                .entry(code)
                .or_default() += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Posts an internal request until it is accepted (2xx), with one idempotency key throughout.
async fn deliver_internal(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    observed: &Mutex<Observed>,
) {
    let key = uuid::Uuid::new_v4().to_string();
    for _ in 0..600 {
        let answer = http
            .post(url)
            .bearer_auth(TOKEN)
            .header("Idempotency-Key", &key)
            .json(body)
            .timeout(Duration::from_secs(15))
            .send()
            .await;
        observed.lock().unwrap().internal_sent += 1;
        if answer.is_ok_and(|r| r.status().is_success() || r.status() == 409) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One license's load: activation once, then renewals and usage reports until told to stop.
async fn license_load(
    license: String,
    urls: (String, String),
    observed: Arc<Mutex<Observed>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let http = reqwest::Client::new();
    let (callback_url, internal_base) = urls;
    let mut random = Random(seed);
    let mut step = 0;
    let mut activated = false;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        let order = format!("CH{license}-{step}");
        if deliver_callback(
            &http,
            &callback_url,
            &renewal(&license, &order, step),
            &observed,
            &stop,
        )
        .await
        {
            observed
                .lock()
                .unwrap()
                .accepted
                .push((license.clone(), order));
        }
        if !activated {
            deliver_internal(
                &http,
                &format!("{internal_base}/v1/licenses/{license}/activation"),
                &json!({}),
                &observed,
            )
            .await;
            activated = true;
        } else if random.between(0, 4) == 0 {
            deliver_internal(
                &http,
                &format!("{internal_base}/v1/licenses/{license}/usage"),
                &json!({"account": "chaos", "ip": "192.0.2.7"}),
                &observed,
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(random.between(100, 600))).await;
    }
}

/// A durable subscriber bound to `license.#` that reconnects whenever the broker goes away.
async fn subscribe(prefix: String, received: Arc<Mutex<Received>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let mut config = BusConfig::new(amqp_url());
        config.prefix = prefix.clone();
        let Ok(bus) = Bus::connect(config).await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let Ok(mut incoming) = bus
            .subscribe_events_durable("chaos", "license.#", 500)
            .await
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        loop {
            let next = tokio::time::timeout(Duration::from_millis(500), incoming.next()).await;
            let message = match next {
                Err(_) if stop.load(Ordering::Relaxed) => return,
                Err(_) => continue,
                Ok(Some(Ok(message))) => message,
                Ok(_) => break,
            };
            let event: Value = serde_json::from_slice(&message.body).unwrap_or(Value::Null);
            {
                let mut r = received.lock().unwrap();
                r.deliveries += 1;
                let id = event["event_id"].as_str().unwrap_or_default().to_owned();
                if r.unique.insert(id) {
                    r.first_versions
                        .entry(event["license"].as_str().unwrap_or_default().to_owned())
                        .or_default()
                        .push(event["stream_version"].as_i64().unwrap_or(0));
                }
            }
            if message.ack().await.is_err() {
                break;
            }
        }
    }
}

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

async fn inject(stack: &mut Stack, sim_url: &str, fault: Fault, random: &mut Random) {
    let pause = Duration::from_millis(random.between(0, 3000));
    match fault {
        Fault::KillIngress => {
            stack.ingress = None; // SIGKILL
            tokio::time::sleep(pause).await;
            block(|| stack.start_ingress());
        }
        Fault::KillProcessor => {
            stack.processor = None;
            tokio::time::sleep(pause).await;
            block(|| stack.start_processor());
        }
        Fault::KillProjector => {
            stack.projector = None;
            tokio::time::sleep(pause).await;
            block(|| stack.start_projector(sim_url));
        }
        Fault::RestartBroker => {
            block(|| run_command("rabbitmqctl", &["stop_app"])).expect("RabbitMQ stops");
            tokio::time::sleep(Duration::from_millis(random.between(1000, 10_000))).await;
            block(|| run_command("rabbitmqctl", &["start_app"])).expect("RabbitMQ starts");
        }
        Fault::RestartPostgres => {
            let version = postgres_version();
            block(|| {
                run_command(
                    "pg_ctlcluster",
                    &[
                        "--skip-systemctl-redirect",
                        &version,
                        "main",
                        "restart",
                        "-m",
                        "fast",
                    ],
                )
            })
            .expect("PostgreSQL restarts");
        }
    }
}

/// Each projector follower and how many events it is behind the store's last position.
async fn follower_lags(stack: &Stack) -> Vec<(String, i64)> {
    let Ok(client) = stack.store.client().await else {
        return Vec::new();
    };
    client
        .query(
            "SELECT c.name, (SELECT count(*) FROM events e WHERE e.global_position > c.position)
               FROM checkpoints c WHERE c.name IN ('license_views', 'event_publisher')",
            &[],
        )
        .await
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

async fn queue_depths(prefix: &str) -> Option<(u32, u32)> {
    let mut config = BusConfig::new(amqp_url());
    config.prefix = prefix.to_owned();
    config.queue_type = QueueType::Quorum;
    let bus = Bus::connect(config).await.ok()?;
    let names = Names::new(prefix);
    let commands = bus.queue_depth(&names.commands_queue).await.ok()?;
    let dead = bus.queue_depth(&names.dead_letter_queue).await.ok()?;
    bus.close().await;
    Some((commands, dead))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let minutes: f64 = args.first().map_or(2.0, |m| m.parse().expect("MINUTES"));
    let seed: u64 = args.get(1).map_or_else(
        || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        },
        |s| s.parse().expect("SEED"),
    );
    let licenses: usize = std::env::var("CHAOS_LICENSES")
        .ok()
        .map_or(40, |n| n.parse().expect("CHAOS_LICENSES"));
    let faults: Vec<Fault> = std::env::var("CHAOS_FAULTS").ok().map_or_else(
        || FAULTS.to_vec(),
        |names| {
            names
                .split(',')
                .map(|name| name.parse().expect("CHAOS_FAULTS"))
                .collect()
        },
    );
    eprintln!("chaos: {minutes} minutes, seed {seed}, {licenses} licenses, faults {faults:?}");

    let sim = Simulator::start();
    let (public, internal) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let mut stack = Stack::start(&[
        ("LICENSING_AMQP_QUEUE_TYPE", "quorum"),
        ("LICENSING_INGRESS_ADDR", &public),
        ("LICENSING_INTERNAL_ADDR", &internal),
    ])
    .await;
    // The subscriber's durable queue exists before the first event is published.
    {
        let mut config = BusConfig::new(amqp_url());
        config.prefix = stack.prefix.clone();
        let bus = Bus::connect(config).await.expect("RabbitMQ");
        bus.subscribe_events_durable("chaos", "license.#", 1)
            .await
            .expect("the subscriber's queue");
        bus.close().await;
    }
    block(|| stack.start_projector(&sim.url));
    let codes: Vec<String> = (0..licenses).map(|i| format!("PLCH{i:05}")).collect();
    for code in &codes {
        sim.put(code, "claimed").await;
    }

    let observed = Arc::new(Mutex::new(Observed::default()));
    let received = Arc::new(Mutex::new(Received::default()));
    let stop_load = Arc::new(AtomicBool::new(false));
    let stop_subscriber = Arc::new(AtomicBool::new(false));
    let subscriber = tokio::spawn(subscribe(
        stack.prefix.clone(),
        received.clone(),
        stop_subscriber.clone(),
    ));
    let mut random = Random(seed);
    let mut load = tokio::task::JoinSet::new();
    for code in &codes {
        load.spawn(license_load(
            code.clone(),
            (
                format!("http://{public}/koogallery/license"),
                format!("http://{internal}"),
            ),
            observed.clone(),
            stop_load.clone(),
            random.next(),
        ));
    }

    // Faults: rounds of the five kinds in a seeded order, 3–12 s apart.
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(minutes * 60.0);
    let mut injected: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut round: Vec<Fault> = Vec::new();
    loop {
        let wait = Duration::from_secs(random.between(3, 12));
        if Instant::now() + wait >= until {
            break;
        }
        tokio::time::sleep(wait).await;
        if round.is_empty() {
            round = faults.clone();
            for i in (1..round.len()).rev() {
                round.swap(i, random.between(0, i as u64) as usize);
            }
        }
        let fault = round.pop().unwrap();
        eprintln!("chaos: {:>5.1}s {fault:?}", started.elapsed().as_secs_f64());
        inject(&mut stack, &sim.url, fault, &mut random).await;
        *injected.entry(fault).or_default() += 1;
    }
    tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    stop_load.store(true, Ordering::Relaxed);
    let mut violations: Vec<String> = Vec::new();
    // Each load task ends once its callback in hand is accepted: a system that never accepts it
    // again is a violation, not a run that waits for ever.
    let finishing = async { while load.join_next().await.is_some() {} };
    if tokio::time::timeout(LOAD_FINISH_LIMIT, finishing)
        .await
        .is_err()
    {
        violations.push(format!(
            "callbacks still not accepted {LOAD_FINISH_LIMIT:?} after the load stopped"
        ));
        load.abort_all();
    }
    eprintln!("chaos: load stopped, draining");

    // Drain: the queue empty, every event handled by the projector and received, and no new
    // events for two seconds (outbound calls settle).
    let drain_deadline = Instant::now() + Duration::from_secs(180);
    let mut last_count = -1;
    let mut stable_since = Instant::now();
    let mut dead_letters = 0;
    let mut commands_empty_at: Option<Instant> = None;
    let mut caught_up_after: Option<Duration> = None;
    // When each follower first reached the store's last position after the queue ran empty, and
    // how far behind it was then: which one is the slow one.
    let mut followers: BTreeMap<String, (i64, Option<Duration>)> = BTreeMap::new();
    loop {
        let count = stack.event_count().await;
        let depths = queue_depths(&stack.prefix).await;
        let received_all = received.lock().unwrap().unique.len() as i64 >= count;
        if count != last_count {
            last_count = count;
            stable_since = Instant::now();
        }
        if let Some((commands, dead)) = depths {
            // Parked commands wait in the queue until the processor's keeper records them.
            let kept = stack.store.dead_letters_waiting().await.unwrap_or(0);
            dead_letters = i64::from(dead) + kept;
            let caught_up = stack.projector_caught_up().await;
            if commands == 0 {
                let first = commands_empty_at.is_none();
                let empty_at = *commands_empty_at.get_or_insert_with(Instant::now);
                for (name, behind) in follower_lags(&stack).await {
                    let entry = followers.entry(name).or_insert((behind, None));
                    if first {
                        entry.0 = behind;
                    }
                    if behind == 0 && entry.1.is_none() {
                        entry.1 = Some(empty_at.elapsed());
                    }
                }
                if caught_up && caught_up_after.is_none() {
                    caught_up_after = Some(empty_at.elapsed());
                }
            }
            if commands == 0
                && received_all
                && caught_up
                && stable_since.elapsed() > Duration::from_secs(2)
            {
                break;
            }
        }
        if Instant::now() > drain_deadline {
            let caught_up = stack.projector_caught_up().await;
            let unique = received.lock().unwrap().unique.len();
            violations.push(format!(
                "not drained within 180 s: {count} events, {unique} received, queues {depths:?}, projector caught up: {caught_up}"
            ));
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    stop_subscriber.store(true, Ordering::Relaxed);
    let _ = subscriber.await;
    let followers_seen = followers
        .iter()
        .map(|(name, (behind, after))| {
            format!(
                "{name}:behind={behind},after_ms={}",
                after.map_or(-1, |d| d.as_millis() as i64)
            )
        })
        .collect::<Vec<_>>()
        .join(",");
    match caught_up_after {
        Some(after) if after <= CATCH_UP_LIMIT => {}
        Some(after) => violations.push(format!(
            "the projector reached the store's last position {:.1} s after the commands queue ran empty (limit {} s)",
            after.as_secs_f64(),
            CATCH_UP_LIMIT.as_secs()
        )),
        None => violations.push("the projector never reached the store's last position".into()),
    }

    // The check.
    let client = stack.store.client().await.unwrap();
    let renewed: HashMap<String, i64> = client
        .query(
            "SELECT payload->>'order_id', count(*) FROM events
              WHERE event_type = 'renewed' GROUP BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let observed = std::mem::take(&mut *observed.lock().unwrap());
    for (license, order) in &observed.accepted {
        match renewed.get(order).copied().unwrap_or(0) {
            1 => {}
            n => violations.push(format!(
                "{license} {order} answered 000000, in the store {n} times"
            )),
        }
    }
    let gaps: Vec<(String, i64, i64)> = client
        .query(
            "SELECT stream_id, count(*), max(stream_version) FROM events GROUP BY stream_id
              HAVING count(*) <> max(stream_version) OR min(stream_version) <> 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    for (stream, count, max) in &gaps {
        violations.push(format!("{stream}: {count} events, versions up to {max}"));
    }
    let live = stack.views_snapshot().await;
    block(|| stack.rebuild_views());
    let rebuilt = stack.views_snapshot().await;
    if live != rebuilt {
        let differing = live.iter().filter(|row| !rebuilt.contains(row)).count();
        violations.push(format!(
            "views differ from a rebuild: {differing} of {} rows",
            live.len()
        ));
    }
    let events = stack.event_count().await;
    let received = std::mem::take(&mut *received.lock().unwrap());
    if (received.unique.len() as i64) < events {
        violations.push(format!(
            "the subscriber received {} of {events} events",
            received.unique.len()
        ));
    }
    for (license, versions) in &received.first_versions {
        if *versions != (1..=versions.len() as i64).collect::<Vec<_>>() {
            violations.push(format!("{license}: first deliveries out of order"));
        }
    }
    for slow in &observed.slow {
        violations.push(format!("slow answer: {slow}"));
    }
    if dead_letters > 0 {
        violations.push(format!("{dead_letters} dead letters"));
    }
    let panics: Vec<String> = [&stack.ingress, &stack.processor, &stack.projector]
        .into_iter()
        .flatten()
        .flat_map(Service::panics)
        .collect();
    for panic in panics {
        violations.push(format!("a service panicked: {panic}"));
    }

    let faults_seen = injected
        .iter()
        .map(|(fault, n)| format!("{fault:?}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    let retried = observed
        .retried_answers
        .iter()
        .map(|(code, n)| format!("{code}={n}"))
        .collect::<Vec<_>>()
        .join(",");
    let verdict = if violations.is_empty() {
        "PASS"
    } else {
        "FAIL"
    };
    println!(
        "chaos: {verdict} seed={seed} minutes={minutes} licenses={licenses} faults=[{faults_seen}] caught_up_ms={} followers=[{followers_seen}] \
         callbacks_sent={} accepted={} retried=[{retried}] unreachable={} internal_sent={} \
         events={events} delivered={} redelivered={} slowest_answer_ms={} dead_letters={dead_letters} \
         violations={}",
        caught_up_after.map_or(-1, |d| d.as_millis() as i64),
        observed.callbacks_sent,
        observed.accepted.len(),
        observed.unreachable,
        observed.internal_sent,
        received.unique.len(),
        received.deliveries - received.unique.len() as u64,
        observed.slowest.as_millis(),
        violations.len()
    );
    for violation in violations.iter().take(20) {
        println!("  violation: {violation}");
    }
    // The durable subscriber queue is this run's own; the stack removes the rest.
    let mut config = BusConfig::new(amqp_url());
    config.prefix = stack.prefix.clone();
    if let Ok(bus) = Bus::connect(config).await {
        let _ = bus
            .delete_queue(&format!("{}licensing.subscriber.chaos", stack.prefix))
            .await;
        bus.close().await;
    }
    drop(stack);
    drop(sim);
    std::process::exit(if violations.is_empty() { 0 } else { 1 });
}
