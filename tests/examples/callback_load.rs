//! Load for the callback pipeline: signed renewals against a running ingress.
//!
//! ```text
//! callback_load URL KEY closed CONCURRENCY SECONDS   # as fast as possible: committed callbacks/s
//! callback_load URL KEY open RATE SECONDS            # a fixed rate: latency percentiles
//! callback_load URL KEY count CONCURRENCY N          # exactly N callbacks, as fast as possible
//! ```
//! Prints one JSON line: sent, committed (`000000`), other codes, rate, p50/p99/max latency in ms.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use koogallery::signature::{AccessKey, signed_query};

fn body(i: u64, run: &str) -> String {
    format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"20301231235959","license":"PLB{run}{:04}","orderId":"CSB{i}","orderLineId":"CSB{i}-1","scene":"RENEWAL","testFlag":"0"}}"#,
        i % 1000
    )
}

async fn send(
    http: &reqwest::Client,
    url: &str,
    key: &AccessKey,
    i: u64,
    run: &str,
) -> (bool, Duration) {
    let body = body(i, run);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string();
    let query = signed_query(key, &format!("{run}{i:08}"), &now, body.as_bytes());
    let started = Instant::now();
    let answer: Option<serde_json::Value> = async {
        http.post(format!("{url}?{query}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()
    }
    .await;
    let ok = answer.is_some_and(|a| a["resultCode"] == "000000");
    (ok, started.elapsed())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, url, key, mode, amount, seconds] = args.as_slice() else {
        eprintln!("usage: callback_load URL KEY closed|open|count CONCURRENCY|RATE SECONDS|N");
        std::process::exit(2);
    };
    let key = AccessKey::new(key.as_str());
    let amount: u64 = amount.parse().expect("a number");
    // `count` sends a fixed number of callbacks however long they take (the instruction count's
    // load, slowed down by the instrumentation).
    let (duration, budget) = if mode == "count" {
        (Duration::from_secs(86_400), seconds.parse().expect("N"))
    } else {
        (
            Duration::from_secs(seconds.parse().expect("seconds")),
            u64::MAX,
        )
    };
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let run = uuid::Uuid::new_v4().simple().to_string()[..6].to_owned();
    let results = Arc::new(Mutex::new(Vec::<(bool, Duration)>::new()));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    if mode == "closed" || mode == "count" {
        for _ in 0..amount {
            let (http, url, key, run, results, next) = (
                http.clone(),
                url.clone(),
                key.clone(),
                run.clone(),
                results.clone(),
                next.clone(),
            );
            tasks.spawn(async move {
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= budget {
                        break;
                    }
                    let result = send(&http, &url, &key, i, &run).await;
                    results.lock().unwrap().push(result);
                }
            });
        }
    } else {
        let period = Duration::from_secs_f64(1.0 / amount.max(1) as f64);
        let mut ticker = tokio::time::interval(period);
        let mut i = 0;
        while Instant::now() < deadline {
            ticker.tick().await;
            let (http, url, key, run, results) = (
                http.clone(),
                url.clone(),
                key.clone(),
                run.clone(),
                results.clone(),
            );
            tasks.spawn(async move {
                let result = send(&http, &url, &key, i, &run).await;
                results.lock().unwrap().push(result);
            });
            i += 1;
        }
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let results = results.lock().unwrap();
    let committed = results.iter().filter(|(ok, _)| *ok).count();
    let mut latencies: Vec<f64> = results
        .iter()
        .map(|(_, d)| d.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "sent": results.len(),
            "committed": committed,
            "committed_per_second": committed as f64 / elapsed,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": latencies.last().copied().unwrap_or(0.0),
        })
    );
}
