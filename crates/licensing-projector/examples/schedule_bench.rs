//! The access schedule's benchmark (D22, D23): a million licenses waiting for the clock, the plan of
//! the query that takes due ones, and how fast due work is taken: the SQL alone, then whole rounds
//! that also publish each `pass_time` command to RabbitMQ with a confirm. The baseline, measured in
//! the same run, is a plain index-ordered read of the same number of rows.
//!
//! ```text
//! cargo run --release -p licensing-projector --example schedule_bench -- [LICENSES] [DUE] [BATCH]
//! ```
//! Defaults: 1000000 licenses, 100000 of them due, batches of 1000. Uses its own fresh database
//! and its own RabbitMQ prefix (`LICENSING_TEST_AMQP_URL`, default the local broker).

use std::time::Instant;

use licensing_bus::{Bus, BusConfig, QueueType};
use licensing_domain::NoticePolicy;
use licensing_projector::{Schedule, TAKE_DUE, ensure_schema, take_due};
use licensing_runtime::Clock;
use licensing_store::testing::TestDatabase;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut arg = |default: i64| args.next().and_then(|a| a.parse().ok()).unwrap_or(default);
    let (licenses, due, batch) = (arg(1_000_000), arg(100_000), arg(1000));
    let db = TestDatabase::create().await;
    let store = db.store_with_connections(4);
    ensure_schema(&store).await.unwrap();
    let client = store.client().await.unwrap();
    // `due` licenses overdue by up to a day; the rest due over the next year.
    client
        .batch_execute(&format!(
            "INSERT INTO access_schedule (license, due_at)
             SELECT 'PLS' || g, CASE WHEN g <= {due} THEN now() - (g % 86400) * interval '1 second'
                                     ELSE now() + (g % 31536000) * interval '1 second' END
               FROM generate_series(1, {licenses}) g;
             ANALYZE access_schedule;"
        ))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            &format!("EXPLAIN {TAKE_DUE}"),
            &[&time::OffsetDateTime::now_utc(), &batch],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!(
        "plan of the due-time query over {licenses} licenses:\n  {}",
        plan.join("\n  ")
    );

    // Baseline: the same number of rows read in due order, nothing locked or deleted.
    let half = due / 2;
    let t = Instant::now();
    let mut read = 0i64;
    let mut after = time::OffsetDateTime::UNIX_EPOCH;
    while read < half {
        let rows = client
            .query(
                "SELECT license, due_at FROM access_schedule WHERE due_at > $1 ORDER BY due_at LIMIT $2",
                &[&after, &batch],
            )
            .await
            .unwrap();
        read += rows.len() as i64;
        after = rows.last().map(|r| r.get(1)).unwrap();
    }
    let read_rate = read as f64 / t.elapsed().as_secs_f64();

    // The SQL of taking: lock, delete and return a batch, one transaction per batch.
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let mut taken = 0i64;
    while taken < half {
        let mut c = store.client().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let licenses = take_due(&*tx, time::OffsetDateTime::now_utc(), batch as u32)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        taken += licenses.len() as i64;
    }
    let take_seconds = t.elapsed().as_secs_f64();
    let take_cpu = cpu_seconds() - cpu;

    // Whole rounds: take, publish each command with a confirm, commit.
    let mut config = BusConfig::new(
        std::env::var("LICENSING_TEST_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
    );
    config.prefix = format!("bench-{}.", uuid::Uuid::new_v4().simple());
    config.queue_type = QueueType::Classic;
    let bus = Bus::connect(config).await.unwrap();
    bus.declare_topology().await.unwrap();
    let schedule = Schedule {
        store: store.clone(),
        clock: Clock::system(),
        notices: NoticePolicy::default(),
        batch: batch as u32,
    };
    let (cpu, t) = (cpu_seconds(), Instant::now());
    let mut sent = 0usize;
    loop {
        let n = schedule.round(&bus).await.unwrap();
        if n == 0 {
            break;
        }
        sent += n;
    }
    let round_seconds = t.elapsed().as_secs_f64();
    let round_cpu = cpu_seconds() - cpu;
    bus.delete_topology().await.unwrap();
    bus.close().await;

    let take_rate = taken as f64 / take_seconds;
    let round_rate = sent as f64 / round_seconds;
    println!("baseline, plain ordered read: {read_rate:.0} rows/s");
    println!(
        "taking due work (SQL, batches of {batch}): {take_rate:.0} items/s = {:.2}x the read; client CPU {:.1} µs per item",
        take_rate / read_rate,
        take_cpu * 1e6 / taken as f64
    );
    println!(
        "whole rounds (take, publish pass_time with confirms, commit): {round_rate:.0} items/s over {sent} items = {:.2}x the read; client CPU {:.1} µs per item",
        round_rate / read_rate,
        round_cpu * 1e6 / sent as f64
    );
}
