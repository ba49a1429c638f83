//! Does a command's cost grow with its license's history? (`scripts/bench-history`,
//! docs/benchmarks.md.) One license is given a long history of renewals; then renewals on it and
//! on fresh licenses are applied interleaved, one command per batch as a quiet shard sees them,
//! through the processor's `apply_batch` against the real PostgreSQL, twice: with the states the
//! processor keeps between batches, and with every stream folded in full (nothing kept: the cost
//! after a restart). Prints one JSON line: medians in ms, the busy / fresh ratio of each, and this
//! process's CPU per command.
//!
//! `--renewals N` (default 3000) sets the history, `--rounds N` (default 60) the measured commands
//! of each kind.

use std::time::Instant;

use koogallery::callback::CallbackRequest;
use licensing_messages::{
    CallbackCommand, CommandBody, CommandEnvelope, ENVELOPE_VERSION, Interpretation,
};
use licensing_processor::{KeptStates, apply_batch};
use licensing_store::Store;
use licensing_store::testing::TestDatabase;
use uuid::Uuid;

fn renewal(license: &str, order: usize) -> CommandEnvelope {
    let body = format!(
        r#"{{"activity":"refreshLicenseCode","expireTime":"{}1231235959","license":"{license}","orderId":"CS{order}","orderLineId":"CS{order}-1","scene":"RENEWAL"}}"#,
        2027 + order % 900
    );
    let nonce = Uuid::new_v4().simple().to_string();
    CommandEnvelope {
        v: ENVELOPE_VERSION,
        message_id: Uuid::new_v4(),
        correlation_id: Uuid::new_v4(),
        received_at_ms: koogallery::market_time::unix_millis(time::OffsetDateTime::now_utc()),
        source: "koogallery".into(),
        request_hash: None,
        actor: None,
        command: CommandBody::Callback(CallbackCommand {
            request: CallbackRequest::parse(body.as_bytes()).expect("a renewal"),
            signature: Some(format!("{nonce:0>64}")),
            nonce,
            timestamp_ms: 0,
            raw_query: String::new(),
            raw_body: body,
            seen: None,
        }),
        trace_parent: None,
    }
}

async fn apply(store: &Store, kept: &KeptStates, envelopes: &[&CommandEnvelope]) {
    apply_batch(
        store,
        kept,
        &Interpretation::default(),
        time::Duration::minutes(10),
        envelopes,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .expect("the batch commits");
}

/// This process's CPU seconds so far (user + system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Interleaved renewals on the busy license and on fresh ones: (busy ms, fresh ms, CPU ms per
/// command of this process).
async fn measure(store: &Store, kept: &KeptStates, rounds: usize, label: &str) -> (f64, f64, f64) {
    let (mut busy, mut fresh) = (Vec::new(), Vec::new());
    let cpu = cpu_seconds();
    for round in 0..rounds {
        let on_busy = renewal("PLBUSY", 1_000_000 + round);
        let on_fresh = renewal(&format!("PLFRESH{label}{round}"), 0);
        for (envelope, samples) in [(&on_busy, &mut busy), (&on_fresh, &mut fresh)] {
            let started = Instant::now();
            apply(store, kept, &[envelope]).await;
            samples.push(started.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let cpu_ms = (cpu_seconds() - cpu) * 1000.0 / (2 * rounds) as f64;
    (median(busy), median(fresh), cpu_ms)
}

#[tokio::main]
async fn main() {
    let (renewals, rounds) = (arg("--renewals", 3000), arg("--rounds", 60));
    let db = TestDatabase::create().await;
    let store = db.store();
    let kept = KeptStates::new(20_000);
    // The history, 50 renewals per batch.
    let history: Vec<CommandEnvelope> = (0..renewals).map(|i| renewal("PLBUSY", i)).collect();
    for chunk in history.chunks(50) {
        let refs: Vec<&CommandEnvelope> = chunk.iter().collect();
        apply(&store, &KeptStates::new(0), &refs).await;
    }
    let events: i64 = store
        .client()
        .await
        .expect("a connection")
        .query_one(
            "SELECT count(*) FROM events WHERE stream_id = 'license-PLBUSY'",
            &[],
        )
        .await
        .expect("a count")
        .get(0);
    let (kept_busy, kept_fresh, kept_cpu) = measure(&store, &kept, rounds, "k").await;
    let (full_busy, full_fresh, full_cpu) = measure(&store, &KeptStates::new(0), rounds, "f").await;
    println!(
        "{}",
        serde_json::json!({
            "history_events": events,
            "rounds": rounds,
            "kept": {"busy_ms": kept_busy, "fresh_ms": kept_fresh, "ratio": kept_busy / kept_fresh, "cpu_ms_per_command": kept_cpu},
            "full_fold": {"busy_ms": full_busy, "fresh_ms": full_fresh, "ratio": full_busy / full_fresh, "cpu_ms_per_command": full_cpu},
        })
    );
}
