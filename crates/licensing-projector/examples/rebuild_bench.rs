//! The projector's benchmark: rebuild speed against a plain sequential read of the same events,
//! and the plan and cost of selecting due work among a million outbound jobs.
//!
//! ```text
//! cargo run --release -p licensing-projector --example rebuild_bench -- [LICENSES] [JOBS]
//! ```
//! Defaults: 20000 licenses of 5 events each, 1000000 jobs. Uses its own fresh database.

use std::time::Instant;

use licensing_domain::*;
use licensing_messages::event_codec;
use licensing_store::testing::TestDatabase;
use licensing_store::{EventMetadata, NewEvent, StreamAppend};

fn events_for(code: &LicenseCode, i: i64) -> Vec<NewEvent> {
    let at = |n: i64| Timestamp::from_millis(1_790_000_000_000 + i * 1000 + n);
    let expire = MarketTime {
        instant: at(99),
        raw: "20301231235959".into(),
    };
    let domain_events = [
        Event::Registered(Registered {
            license: code.clone(),
            sandbox: false,
            origin: Origin::Callback,
            at: at(0),
        }),
        Event::Renewed(Renewed {
            order_id: format!("CS{i}"),
            order_line_id: format!("CS{i}-1"),
            scene: Scene::Renewal,
            product_id: Some("OFFI1".into()),
            expire,
            at: at(1),
        }),
        Event::Frozen(StatusChanged { at: at(2) }),
        Event::Unfrozen(StatusChanged { at: at(3) }),
        Event::UsageRecorded(UsageRecorded {
            day: Day::from_number(20_000),
            account: "alice".into(),
            ip: None,
            at: at(4),
        }),
    ];
    domain_events
        .iter()
        .map(|e| {
            let (event_type, payload) = event_codec::encode(e);
            NewEvent {
                event_id: uuid::Uuid::new_v4(),
                event_type,
                schema_version: 1,
                payload,
                metadata: EventMetadata::default(),
            }
        })
        .collect()
}

#[path = "support/cpu.rs"]
mod cpu;
use cpu::cpu_seconds;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let licenses: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let jobs: i64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let db = TestDatabase::create().await;
    let store = db.store_with_connections(4);
    let started = Instant::now();
    for chunk in (0..licenses).collect::<Vec<_>>().chunks(200) {
        let appends: Vec<StreamAppend> = chunk
            .iter()
            .map(|i| {
                let code = LicenseCode::parse(&format!("PLB{i:08}")).unwrap();
                StreamAppend {
                    stream_id: code.stream_name(false),
                    expected_version: 0,
                    events: events_for(&code, *i),
                }
            })
            .collect();
        store.append_many(&appends).await.unwrap();
    }
    let total_events = licenses * 5;
    eprintln!(
        "loaded {total_events} events in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let client = store.client().await.unwrap();
    let t = Instant::now();
    let rows = client.query("SELECT stream_id, event_type, schema_version, payload FROM events ORDER BY stream_id, stream_version", &[]).await.unwrap();
    let read_seconds = t.elapsed().as_secs_f64();
    assert_eq!(rows.len() as i64, total_events);
    drop(rows);

    let report = licensing_projector::rebuild(&store, |_, _| {})
        .await
        .unwrap();
    let rebuild_rate = report.events as f64 / report.seconds;
    let read_rate = total_events as f64 / read_seconds;
    println!(
        "rebuild: {} events of {} licenses in {:.2} s = {:.0} events/s",
        report.events, report.streams, report.seconds, rebuild_rate
    );
    println!(
        "plain sequential read of the same events: {:.0} events/s; rebuild / read = {:.2}x",
        read_rate,
        rebuild_rate / read_rate
    );

    // Due work among a million jobs: the worker's query must use the due_at index.
    client
        .batch_execute(&format!(
            "INSERT INTO outbound_jobs (license, kind, day, attempt, due_at)
             SELECT 'PLJ' || g, 'heartbeat', 20000, 1, now() + ((g % 1000) - 10) * interval '1 minute'
               FROM generate_series(1, {jobs}) g;
             ANALYZE outbound_jobs;"
        ))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "EXPLAIN SELECT license, kind, day, attempt, account, real_effect_time, tries FROM outbound_jobs
              WHERE due_at <= now() ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!(
        "plan of the worker's query over {jobs} jobs:\n  {}",
        plan.join("\n  ")
    );
    let (cpu, t, taken) = (cpu_seconds(), Instant::now(), 10_000);
    for _ in 0..taken {
        let mut c = store.client().await.unwrap();
        let tx = c.transaction().await.unwrap();
        let row = tx
            .query_opt("SELECT license, kind FROM outbound_jobs WHERE due_at <= now() ORDER BY due_at LIMIT 1 FOR UPDATE SKIP LOCKED", &[])
            .await
            .unwrap()
            .expect("due work");
        let (license, kind): (String, String) = (row.get(0), row.get(1));
        tx.execute("UPDATE outbound_jobs SET due_at = now() + interval '1 day' WHERE license = $1 AND kind = $2", &[&license, &kind]).await.unwrap();
        tx.commit().await.unwrap();
    }
    let elapsed = t.elapsed().as_secs_f64();
    println!(
        "taking and rescheduling {taken} due jobs: {:.0} jobs/s; client CPU {:.1} s per million (the database's CPU not included)",
        taken as f64 / elapsed,
        (cpu_seconds() - cpu) * 1_000_000.0 / taken as f64
    );
}
