//! How fast the projector's views keep up (docs/benchmarks.md, `scripts/bench-views`):
//!
//! 1. **Burst**: with the projector running, 100,000 events are appended to the store as fast as
//!    it takes them, 500 per license; then the time until the view follower's and the event
//!    publisher's lag (the age of the oldest event not handled yet) is below 2 s, and until both
//!    have handled every event.
//! 2. **Catch-up**: the projector killed, another 100,000 events (500 per license) appended, the
//!    projector started again: events per second until both followers have caught up.
//! 3. **Baseline**: `licensing-projector rebuild` over the whole store, events per second.
//!
//! Prints one JSON line with the figures, the catch-up rate's ratio to the rebuild's, and the
//! projector's CPU time per event (from /proc). Uses the binaries in `LICENSING_TEST_BINARIES`
//! (release, set by the script) and the local PostgreSQL and RabbitMQ.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use licensing_store::StreamAppend;
use serde_json::json;
use support::*;

const PER_LICENSE: usize = 500;
const LICENSES: usize = 200;
/// Events per append: a batch of one license's events, as the processor writes them.
const CHUNK: usize = 50;

/// Appends `PER_LICENSE` events to each of `licenses` from 8 connections at once; returns the
/// seconds it took.
async fn burst(stack: &Stack, licenses: &[String]) -> f64 {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for part in licenses.chunks(licenses.len().div_ceil(8)) {
        let store = stack.store.clone();
        let part = part.to_vec();
        tasks.spawn(async move {
            for from in (0..PER_LICENSE).step_by(CHUNK) {
                let appends: Vec<StreamAppend> = part
                    .iter()
                    .map(|license| StreamAppend {
                        stream_id: format!("license-{license}"),
                        expected_version: from as i64,
                        events: events_of(license, from, CHUNK),
                    })
                    .collect();
                for append in appends.chunks(4) {
                    store.append_many(append).await.expect("appended");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    started.elapsed().as_secs_f64()
}

async fn worst_lag(stack: &Stack) -> f64 {
    stack
        .store
        .follower_lags(&["license_views", "event_publisher"])
        .await
        .unwrap()
        .into_iter()
        .map(|(_, lag)| lag)
        .fold(0.0, f64::max)
}

/// Seconds until each of the view follower and the event publisher has handled every event
/// (`None` for one that did not within `limit`).
async fn wait_caught_up(stack: &Stack, limit: Duration) -> [Option<f64>; 2] {
    let started = Instant::now();
    let mut done = [None, None];
    let client = stack.store.client().await.unwrap();
    while started.elapsed() < limit && done.iter().any(Option::is_none) {
        for (i, name) in ["license_views", "event_publisher"].iter().enumerate() {
            let row = client
                .query_one(
                    "SELECT (SELECT coalesce(max(global_position), 0) FROM events)
                          = coalesce((SELECT position FROM checkpoints WHERE name = $1), -1)",
                    &[name],
                )
                .await
                .unwrap();
            if done[i].is_none() && row.get::<_, bool>(0) {
                done[i] = Some(started.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done
}

/// With `LICENSING_BENCH_PERF=FILE`, a system-wide `perf record` (call graphs, CPU clock) of the
/// catch-up, written to FILE when the value is dropped: the projector's costliest functions, and
/// PostgreSQL's beside them (`perf report -i FILE --sort comm,dso`).
fn catch_up_profile() -> Option<PerfRecord> {
    let file = std::env::var_os("LICENSING_BENCH_PERF")?;
    let child = std::process::Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-a", "-g", "-o"])
        .arg(file)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("perf (Debian package linux-perf) starts");
    Some(PerfRecord(child))
}

/// A running `perf record`, stopped (SIGINT, so that it writes its file) when dropped.
struct PerfRecord(std::process::Child);

impl Drop for PerfRecord {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    let names =
        |run: &str| -> Vec<String> { (0..LICENSES).map(|i| format!("PLV{run}{i:04}")).collect() };

    // 1. A burst while the projector runs.
    let projector_pid = stack.projector.as_ref().unwrap().child.id();
    let cpu_before = cpu_seconds(projector_pid);
    let burst_seconds = burst(&stack, &names("A")).await;
    let burst_end = Instant::now();
    let mut under_2s = None;
    let mut peak_lag: f64 = 0.0;
    while burst_end.elapsed() < Duration::from_secs(120) {
        let lag = worst_lag(&stack).await;
        peak_lag = peak_lag.max(lag);
        if lag < 2.0 && under_2s.is_none() {
            under_2s = Some(burst_end.elapsed().as_secs_f64());
        }
        if under_2s.is_some() && stack.projector_caught_up().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let burst_caught_up = burst_end.elapsed().as_secs_f64();
    let burst_cpu = cpu_seconds(projector_pid) - cpu_before;

    // 2. Catch-up after a restart.
    stack.projector = None; // SIGKILL
    burst(&stack, &names("B")).await;
    let started = Instant::now();
    tokio::task::block_in_place(|| stack.start_projector(&sim.url));
    let projector_pid = stack.projector.as_ref().unwrap().child.id();
    let profile = catch_up_profile();
    let [views_caught_up, publisher_caught_up] =
        wait_caught_up(&stack, Duration::from_secs(600)).await;
    drop(profile);
    let catch_up = views_caught_up
        .zip(publisher_caught_up)
        .map(|_| started.elapsed().as_secs_f64());
    let catch_up_cpu = cpu_seconds(projector_pid);
    let events = (LICENSES * PER_LICENSE) as f64;

    // 3. The baseline: a full rebuild of both runs' licenses.
    let rebuilt = tokio::task::block_in_place(|| stack.rebuild_views());
    // "rebuilt N licenses from M events in S s (R events/s); …"
    let rebuild_rate: f64 = rebuilt
        .split('(')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .expect("the rebuild's rate");

    let catch_up_rate = catch_up.map(|s| events / s);
    println!(
        "{}",
        json!({
            "burst_events": events,
            "burst_append_seconds": (burst_seconds * 100.0).round() / 100.0,
            "burst_append_events_per_second": (events / burst_seconds).round(),
            "peak_lag_seconds": (peak_lag * 100.0).round() / 100.0,
            "lag_under_2s_after_burst_seconds": under_2s.map(|s| (s * 100.0).round() / 100.0),
            "caught_up_after_burst_seconds": (burst_caught_up * 100.0).round() / 100.0,
            "projector_cpu_ms_per_event_burst": (burst_cpu * 1000.0 / events * 1000.0).round() / 1000.0,
            "catch_up_seconds": catch_up.map(|s| (s * 100.0).round() / 100.0),
            "catch_up_views_seconds": views_caught_up.map(|s| (s * 100.0).round() / 100.0),
            "catch_up_publisher_seconds": publisher_caught_up.map(|s| (s * 100.0).round() / 100.0),
            "catch_up_views_events_per_second": views_caught_up.map(|s| (events / s).round()),
            "catch_up_events_per_second": catch_up_rate.map(f64::round),
            "projector_cpu_ms_per_event_catch_up": (catch_up_cpu * 1000.0 / events * 1000.0).round() / 1000.0,
            "rebuild_events_per_second": rebuild_rate,
            "catch_up_to_rebuild_ratio": catch_up_rate.map(|r| (r / rebuild_rate * 100.0).round() / 100.0),
        })
    );
}
