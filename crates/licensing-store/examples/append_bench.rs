//! Append throughput, measured against `pgbench` in the same run on the same server.
//!
//! ```text
//! cargo run --release -p licensing-store --example append_bench [-- SECONDS]
//! ```
//! For 1, 8 and 32 connections it measures, for SECONDS each (default 5):
//! - `pgbench`: a single-row INSERT transaction into a table shaped like `events`;
//! - plain: the same single-row INSERT from this process (the client's own cost);
//! - append: `Store::append` of one event (the gap-safe append, ADR 0005);
//! - batch: `Store::append` of 10 events (events per second).
//!
//! The server is `LICENSING_BENCH_DATABASE_URL`'s (default: local, user postgres); the benchmark
//! creates and drops its own database `licensing_bench`.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use licensing_store::{AppendOutcome, EventMetadata, NewEvent, Store, StoreConfig};
use serde_json::json;
use tokio_postgres::NoTls;
use uuid::Uuid;

const DATABASE: &str = "licensing_bench";

const PGBENCH_TABLE: &str = "CREATE TABLE pgbench_events (
    global_position bigserial PRIMARY KEY, stream_id text NOT NULL, stream_version bigint NOT NULL,
    event_id uuid NOT NULL UNIQUE, event_type text NOT NULL, schema_version integer NOT NULL,
    payload jsonb NOT NULL, metadata jsonb NOT NULL, recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream_id, stream_version))";

const PGBENCH_SCRIPT: &str = "INSERT INTO pgbench_events (stream_id, stream_version, event_id, event_type, \
    schema_version, payload, metadata) VALUES ('s' || :client_id || '-' || random(), 1, gen_random_uuid(), \
    'usage_recorded', 1, '{\"day\": 20000, \"account\": \"alice\"}', '{\"source\": \"bench\"}');\n";

fn server_url() -> String {
    std::env::var("LICENSING_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn database_url() -> String {
    let url = server_url();
    let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
    format!("{base}/{DATABASE}")
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "usage_recorded".to_owned(),
        schema_version: 1,
        payload: json!({"day": 20000 + n, "account": "alice"}),
        metadata: EventMetadata {
            source: Some("bench".to_owned()),
            ..EventMetadata::default()
        },
    }
}

/// Runs `connections` workers for `seconds`; each call of `work` returns how many events it wrote.
async fn measure<F, Fut>(connections: usize, seconds: u64, work: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = u64> + Send,
{
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let workers: Vec<_> = (0..connections)
        .map(|worker| {
            let work = work.clone();
            let count = count.clone();
            tokio::spawn(async move {
                let mut i = 0;
                while Instant::now() < deadline {
                    count.fetch_add(work(worker, i).await, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();
    for w in workers {
        w.await.expect("worker");
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn pgbench(connections: usize, seconds: u64) -> f64 {
    let script = std::env::temp_dir().join("licensing_bench_insert.sql");
    std::fs::write(&script, PGBENCH_SCRIPT).expect("write the pgbench script");
    let output = Command::new("pgbench")
        .args(["-n", "-f"])
        .arg(&script)
        .args([
            "-c",
            &connections.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
            &database_url(),
        ])
        .output()
        .expect("pgbench is installed (Debian: postgresql-client)");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .find_map(|l| {
            l.strip_prefix("tps = ")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "pgbench printed no tps: {text}{}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(connection);
    client
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let admin = admin().await;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await
        .expect("drop");
    admin
        .batch_execute(&format!("CREATE DATABASE {DATABASE}"))
        .await
        .expect("create");

    println!(
        "connections | pgbench tx/s | plain insert/s | append/s (ratio to pgbench) | 10-event batches: events/s (ratio to single)"
    );
    println!(
        "----------- | ------------ | -------------- | --------------------------- | -------------------------------------------"
    );
    for connections in [1usize, 8, 32] {
        let mut config = StoreConfig::new(database_url());
        config.max_connections = connections;
        let store = Store::connect(&config).expect("pool");
        store.migrate().await.expect("migrate");
        store
            .client()
            .await
            .expect("connection")
            .batch_execute(PGBENCH_TABLE)
            .await
            .ok();

        let pgbench_tps = tokio::task::spawn_blocking(move || pgbench(connections, seconds))
            .await
            .expect("pgbench");

        let plain = {
            let store = store.clone();
            measure(connections, seconds, move |_, _| {
                let store = store.clone();
                async move {
                    let client = store.client().await.expect("connection");
                    let e = event(0);
                    client
                        .execute(
                            "INSERT INTO pgbench_events (stream_id, stream_version, event_id, event_type, schema_version, payload, metadata) \
                             VALUES ($1, 1, $2, $3, 1, $4, '{\"source\": \"bench\"}')",
                            &[&Uuid::new_v4().to_string(), &e.event_id, &e.event_type, &e.payload],
                        )
                        .await
                        .expect("insert");
                    1
                }
            })
            .await
        };

        let run = Uuid::new_v4().simple().to_string();
        let single = {
            let store = store.clone();
            let run = run.clone();
            measure(connections, seconds, move |worker, i| {
                let store = store.clone();
                let stream = format!("license-{run}-{worker}");
                async move {
                    match store
                        .append(&stream, i as i64, vec![event(i)])
                        .await
                        .expect("append")
                    {
                        AppendOutcome::Appended { positions } => positions.len() as u64,
                        other => panic!("{other:?}"),
                    }
                }
            })
            .await
        };

        let batched = {
            let store = store.clone();
            measure(connections, seconds, move |worker, i| {
                let store = store.clone();
                let stream = format!("batch-{run}-{worker}");
                async move {
                    let events = (0..10).map(|k| event(i * 10 + k)).collect();
                    match store
                        .append(&stream, i as i64 * 10, events)
                        .await
                        .expect("append")
                    {
                        AppendOutcome::Appended { positions } => positions.len() as u64,
                        other => panic!("{other:?}"),
                    }
                }
            })
            .await
        };
        println!(
            "{connections:>11} | {pgbench_tps:>12.0} | {plain:>14.0} | {single:>9.0} ({:.2}x) | {batched:>9.0} ({:.2}x)",
            single / pgbench_tps,
            batched / single
        );
        store
            .client()
            .await
            .expect("connection")
            .batch_execute("TRUNCATE pgbench_events")
            .await
            .ok();
    }
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .await
        .ok();
}
