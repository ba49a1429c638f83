//! Scale-out (ADR 0016): several ingresses and several processors sharing four shards of the
//! command queue, with processors killed (SIGKILL) and restarted at random under load, and a
//! processor stopped while it holds shards. The tests of this binary run one at a time: each
//! loads the machine's two cores, and one measures a takeover.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A renewal whose expiry is `step` days after a fixed date: unique content per step (D9).
fn renewal(license: &str, step: u64) -> String {
    let expire =
        time::OffsetDateTime::from_unix_timestamp(1_893_456_000 + step as i64 * 86_400).unwrap();
    renew(
        license,
        &format!("SO{license}-{step}"),
        &format!(
            "{:04}{:02}{:02}235959",
            expire.year(),
            u8::from(expire.month()),
            expire.day()
        ),
        false,
    )
}

/// Posts a callback until it is answered `000000`, as the marketplace retries; the answers seen.
async fn deliver(http: &reqwest::Client, url: &str, body: &str) -> Vec<(String, Duration)> {
    let mut answers = Vec::new();
    loop {
        let (answer, took) = post_callback(http, url, body, Duration::from_secs(10)).await;
        let code = answer.unwrap_or_else(|e| format!("transport: {e}"));
        answers.push((code.clone(), took));
        if code == "000000" {
            return answers;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The settings of every service here: four shards, quick takeovers.
fn sharded(stack: &Stack) -> Vec<(String, String)> {
    let mut env = stack.env.clone();
    env.retain(|(k, _)| k != "LICENSING_SHARDS");
    env.push(("LICENSING_SHARDS".to_owned(), "4".to_owned()));
    env
}

/// The order ids of a license's renewals as stored, after checking its versions run from 1.
async fn stored_renewals(stack: &Stack, license: &str) -> Vec<String> {
    let events = stack.events(&format!("license-{license}")).await;
    let versions: Vec<i64> = events.iter().map(|e| e.stream_version).collect();
    assert_eq!(
        versions,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "{license}: versions with a gap"
    );
    events
        .iter()
        .filter(|e| e.event_type == "renewed")
        .map(|e| {
            e.payload["order_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Commands a processor process applied, from its log.
fn applied(processor: &Service) -> usize {
    processor.logged("\"command applied\"").len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn processors_killed_at_random_lose_nothing_keep_each_license_in_order_and_share_the_work() {
    let _one = ONE_AT_A_TIME.lock().await;
    let mut stack = Stack::start(&[
        ("LICENSING_SHARDS", "4"),
        ("LICENSING_TAKEOVER_SECONDS", "4"),
    ])
    .await;
    let env = sharded(&stack);
    let mut processors: Vec<Service> = vec![stack.processor.take().unwrap()];
    processors.push(Service::start("licensing-processor", &env));
    processors.push(Service::start("licensing-processor", &env));
    let second_ingress = Service::start("licensing-ingress", &env);
    let urls = [
        stack.callback_url(),
        format!(
            "http://{}/koogallery/license",
            second_ingress.ready["public"].as_str().unwrap()
        ),
    ];

    // The load: 24 licenses, each renewed again and again, alternating between the ingresses;
    // each renewal is delivered until answered 000000 before the next is sent.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted: Arc<Mutex<BTreeMap<String, Vec<String>>>> = Arc::default();
    let mut load = Vec::new();
    for n in 0..24 {
        let (stop, accepted, urls) = (stop.clone(), accepted.clone(), urls.clone());
        load.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let license = format!("SO{n:03}");
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                step += 1;
                deliver(&http, &urls[step as usize % 2], &renewal(&license, step)).await;
                accepted
                    .lock()
                    .unwrap()
                    .entry(license.clone())
                    .or_default()
                    .push(format!("SO{license}-{step}"));
                tokio::time::sleep(Duration::from_millis(50 + (step * 37 + n) % 150)).await;
            }
        }));
    }

    // A minute of faults: a random processor SIGKILLed, restarted a little later.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    eprintln!("scale-out chaos seed {seed}");
    let mut random = seed | 1;
    let mut next = move |below: u64| {
        random ^= random << 13;
        random ^= random >> 7;
        random ^= random << 17;
        random % below
    };
    let mut killed = Vec::new();
    let chaos = Instant::now();
    let mut kills = 0;
    while chaos.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(2000 + next(3000))).await;
        let victim = next(processors.len() as u64) as usize;
        processors[victim].signal("KILL");
        let status = processors[victim].wait_exit(10);
        assert!(!status.success());
        kills += 1;
        tokio::time::sleep(Duration::from_millis(500 + next(2500))).await;
        let restarted = Service::start("licensing-processor", &env);
        killed.push(std::mem::replace(&mut processors[victim], restarted));
    }
    // With all three up, the shares settle; the load goes on a while, then stops.
    let settled: Vec<usize> = processors.iter().map(applied).collect();
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(12)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }

    let accepted = accepted.lock().unwrap().clone();
    let total: usize = accepted.values().map(Vec::len).sum();
    eprintln!("{kills} kills, {total} renewals accepted");
    assert!(kills >= 8, "{kills} kills");
    assert!(total >= 200, "only {total} renewals accepted");
    for (license, orders) in &accepted {
        // Exactly once each, in the order they were accepted.
        assert_eq!(&stored_renewals(&stack, license).await, orders, "{license}");
    }
    // Every live processor applied some commands after the faults stopped: the work was spread.
    let after: Vec<usize> = processors.iter().map(applied).collect();
    for (i, (before, after)) in settled.iter().zip(&after).enumerate() {
        assert!(
            after > before,
            "processor {i} applied nothing at the end ({before} → {after})"
        );
    }
    let leases = stack.store.shard_leases().await.unwrap();
    assert_eq!(leases.len(), 4, "{leases:?}");
    let holders: std::collections::BTreeSet<&str> =
        leases.iter().map(|(_, h, _)| h.as_str()).collect();
    assert_eq!(
        holders.len(),
        3,
        "four shards over three processors: {leases:?}"
    );
    let dead: usize = killed.iter().map(applied).sum();
    assert!(dead > 0, "the killed processors had applied commands too");
    drop(killed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_processors_shards_are_taken_over_within_the_setting_and_callbacks_meanwhile_apply_once()
 {
    let _one = ONE_AT_A_TIME.lock().await;
    // The default takeover: 10 s.
    let takeover = Duration::from_secs(10);
    let stack = Stack::start(&[("LICENSING_SHARDS", "4")]).await;
    let env = sharded(&stack);
    let mut doomed = Service::start("licensing-processor", &env);
    let leases = eventually("the shards shared two and two", 30, || async {
        let leases = stack.store.shard_leases().await.ok()?;
        let mut per: BTreeMap<String, usize> = BTreeMap::new();
        for (_, holder, live) in &leases {
            if *live {
                *per.entry(holder.clone()).or_default() += 1;
            }
        }
        (per.len() == 2 && per.values().all(|&n| n == 2)).then_some(leases)
    })
    .await;
    let name = leases
        .iter()
        .map(|(_, holder, _)| holder.clone())
        .find(|holder| !doomed.logged(holder).is_empty())
        .expect("the second processor names itself in its log");
    let its_shards: Vec<i32> = leases
        .iter()
        .filter(|(_, holder, _)| *holder == name)
        .map(|(shard, _, _)| *shard)
        .collect();
    let licenses: Vec<String> = (0..16).map(|n| format!("TK{n:02}")).collect();
    let orphans: Vec<String> = licenses
        .iter()
        .filter(|l| its_shards.contains(&i32::from(licensing_bus::shard_of(l, 4))))
        .cloned()
        .collect();
    assert!(orphans.len() >= 2, "{orphans:?} in shards {its_shards:?}");
    let http = reqwest::Client::new();
    for license in &licenses {
        deliver(&http, &stack.callback_url(), &renewal(license, 1)).await;
    }

    doomed.signal("KILL");
    doomed.wait_exit(10);
    let killed = Instant::now();
    let watcher = {
        let store = stack.store.clone();
        tokio::spawn(async move {
            loop {
                let leases = store.shard_leases().await.unwrap_or_default();
                if leases.len() == 4 && leases.iter().all(|(_, h, live)| *live && *h != name) {
                    return killed.elapsed();
                }
                assert!(killed.elapsed() < Duration::from_secs(60), "{leases:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    // Callbacks for the licenses it held, meanwhile: 000004 at worst, each within the
    // marketplace's 5 s, retried until 000000.
    let answers = futures_util::future::join_all(orphans.iter().map(|license| {
        let (http, url, body) = (&http, stack.callback_url(), renewal(license, 2));
        async move { deliver(http, &url, &body).await }
    }))
    .await;
    let applied_after = killed.elapsed();
    let moved = watcher.await.unwrap();
    eprintln!(
        "shards moved after {moved:?}; the orphaned licenses were answered 000000 after {applied_after:?}: {answers:?}"
    );
    assert!(moved <= takeover, "the shards moved after {moved:?}");
    for (code, took) in answers.iter().flatten() {
        assert!(code == "000000" || code == "000004", "answered {code}");
        assert!(*took < Duration::from_secs(5), "{code} took {took:?}");
    }
    assert!(
        answers.iter().flatten().any(|(code, _)| code == "000004"),
        "a callback arrived while its shard had no reader: {answers:?}"
    );
    // Each applied once.
    for license in &licenses {
        let mut expected = vec![format!("SO{license}-1")];
        if orphans.contains(license) {
            expected.push(format!("SO{license}-2"));
        }
        assert_eq!(stored_renewals(&stack, license).await, expected);
    }
}

/// The answer of a processor's `/readyz`: status and body.
async fn readiness(processor: &Service) -> (u16, String) {
    let url = format!("http://{}/readyz", processor.ready["ops"].as_str().unwrap());
    match reqwest::get(url).await {
        Ok(answer) => (
            answer.status().as_u16(),
            answer.text().await.unwrap_or_default(),
        ),
        Err(e) => (0, e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_service_started_with_more_shards_makes_the_processors_refuse_loudly() {
    let _one = ONE_AT_A_TIME.lock().await;
    let stack = Stack::start(&[("LICENSING_SHARDS", "2")]).await;
    let processor = stack.processor.as_ref().unwrap();
    eventually("the processor ready", 30, || async {
        (readiness(processor).await.0 == 200).then_some(())
    })
    .await;
    // An ingress told four declares shards 2 and 3, which no processor reads: its commands there
    // would wait for ever. The processor sees those queues on the broker and says so, instead of
    // reporting ready while commands pile up.
    let mut env = stack.env.clone();
    env.retain(|(k, _)| k != "LICENSING_SHARDS");
    env.push(("LICENSING_SHARDS".to_owned(), "4".to_owned()));
    let _ingress = Service::start("licensing-ingress", &env);
    let body = eventually("a refusal on /readyz", 30, || async {
        let (status, body) = readiness(processor).await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("shards (LICENSING_SHARDS differs"), "{body}");
    let logged = processor.logged("taking no shards");
    assert!(
        logged
            .iter()
            .any(|l| l.contains("licensing.commands.2 exists")),
        "{logged:?}"
    );
}

/// How many consumers each command queue has.
async fn consumers_per_queue(env: &[(String, String)]) -> Vec<u32> {
    let config = licensing_bus::BusConfig::from_lookup(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
    .unwrap();
    let names = licensing_bus::Names::new(&config.prefix);
    let shards = config.shards;
    let bus = licensing_bus::Bus::connect(config).await.unwrap();
    let mut consumers = Vec::new();
    for shard in 0..shards {
        consumers.push(
            bus.queue_stats(&names.command_queue(shard))
                .await
                .unwrap()
                .1,
        );
    }
    bus.close().await;
    consumers
}

/// Each live lease's holder, by shard.
async fn live_holders(stack: &Stack) -> BTreeMap<i32, String> {
    let leases = stack.store.shard_leases().await.unwrap_or_default();
    leases
        .into_iter()
        .filter(|(_, _, live)| *live)
        .map(|(shard, holder, _)| (shard, holder))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_processor_cut_off_from_postgresql_stops_reading_its_shards_within_the_takeover() {
    let _one = ONE_AT_A_TIME.lock().await;
    let takeover = Duration::from_secs(10);
    let stack = Stack::start(&[("LICENSING_SHARDS", "4")]).await;
    // The second processor reaches PostgreSQL through a relay that the test silences: every
    // byte held, no connection closed, as a network partition looks from both ends.
    let (server, relayed_url) = {
        let rest = stack.db.url.split_once("://").expect("a postgres:// URL").1;
        let authority = rest.split('/').next().unwrap();
        let host = authority.rsplit('@').next().unwrap();
        let server = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:5432")
        };
        (server, host)
    };
    let relay = Relay::start(server).await;
    let mut env = sharded(&stack);
    env.retain(|(k, _)| k != "LICENSING_DATABASE_URL");
    env.push((
        "LICENSING_DATABASE_URL".to_owned(),
        stack
            .db
            .url
            .replacen(relayed_url, &relay.addr.to_string(), 1),
    ));
    let cut = Service::start("licensing-processor", &env);
    let holders = eventually("the shards shared two and two", 30, || async {
        let holders = live_holders(&stack).await;
        let mut per: BTreeMap<&String, usize> = BTreeMap::new();
        for holder in holders.values() {
            *per.entry(holder).or_default() += 1;
        }
        (holders.len() == 4 && per.len() == 2 && per.values().all(|&n| n == 2))
            .then_some(holders.clone())
    })
    .await;
    let name = holders
        .values()
        .find(|holder| !cut.logged(holder).is_empty())
        .expect("the relayed processor names itself in its log")
        .clone();
    let its_shards: Vec<i32> = holders
        .iter()
        .filter(|(_, holder)| **holder == name)
        .map(|(shard, _)| *shard)
        .collect();
    let licenses: Vec<String> = (0..16).map(|n| format!("CUT{n:02}")).collect();
    let orphans: Vec<String> = licenses
        .iter()
        .filter(|l| its_shards.contains(&i32::from(licensing_bus::shard_of(l, 4))))
        .cloned()
        .collect();
    assert!(orphans.len() >= 2, "{orphans:?} in shards {its_shards:?}");
    let http = reqwest::Client::new();
    for license in &licenses {
        deliver(&http, &stack.callback_url(), &renewal(license, 1)).await;
    }

    // Silenced mid-load: callbacks for its licenses keep coming.
    let load = {
        let (http, url) = (http.clone(), stack.callback_url());
        let orphans = orphans.clone();
        tokio::spawn(async move {
            let mut answers = Vec::new();
            for license in &orphans {
                answers.extend(deliver(&http, &url, &renewal(license, 2)).await);
            }
            answers
        })
    };
    relay.pause();
    let silenced = Instant::now();
    // Within the takeover: the other processor holds all four, and the silenced one reads none
    // (one consumer per queue: it no longer takes commands it cannot apply).
    eventually(
        "the other processor holding all four shards alone",
        60,
        || async {
            let holders = live_holders(&stack).await;
            let consumers = consumers_per_queue(&env).await;
            (holders.len() == 4
                && holders.values().all(|h| *h != name)
                && consumers == [1, 1, 1, 1])
            .then_some(())
        },
    )
    .await;
    let moved = silenced.elapsed();
    eprintln!("the silenced processor's shards moved after {moved:?}");
    assert!(moved <= takeover, "the shards moved after {moved:?}");
    let (status, body) = readiness(&cut).await;
    assert_eq!(
        status, 503,
        "the silenced processor says it is not ready: {body}"
    );
    assert!(body.contains("shards"), "{body}");
    let answers = load.await.unwrap();
    for (code, took) in &answers {
        assert!(code == "000000" || code == "000004", "answered {code}");
        assert!(*took < Duration::from_secs(5), "{code} took {took:?}");
    }

    // Heard again: it rejoins and takes its share back; every renewal is stored once, in order.
    relay.resume();
    eventually("the shards shared two and two again", 60, || async {
        let holders = live_holders(&stack).await;
        let theirs = holders.values().filter(|h| **h == name).count();
        (holders.len() == 4 && theirs == 2 && readiness(&cut).await.0 == 200).then_some(())
    })
    .await;
    for license in &licenses {
        let mut expected = vec![format!("SO{license}-1")];
        if orphans.contains(license) {
            expected.push(format!("SO{license}-2"));
        }
        assert_eq!(stored_renewals(&stack, license).await, expected);
    }
    assert!(cut.panics().is_empty(), "{:?}", cut.panics());
}
