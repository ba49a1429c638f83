//! Server time per console page at scale (docs/benchmarks.md, `scripts/bench-console`): a store
//! with 1,000,000 licenses in the view and one license of 10,000 events with 1,000 exchanges, the
//! release projector serving the console. Each page is fetched `ROUNDS` times in a row, signed in;
//! the baseline, measured in the same run, is `/healthz` on the same listener (the HTTP round trip
//! with no work). Prints one JSON line: per page the median and 95th percentile in ms, the median's
//! ratio to the baseline's, and the projector's CPU ms per page (from /proc).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::Instant;

use licensing_store::{Direction, Exchange};
use serde_json::{Value, json};
use support::*;

const LICENSES: i64 = 1_000_000;
const EVENTS: usize = 10_000;
const EXCHANGES: usize = 1_000;
const ROUNDS: usize = 30;
const BIG: &str = "PLBIG000001";

fn exchanges() -> Vec<Exchange> {
    let now = time::OffsetDateTime::now_utc();
    (0..EXCHANGES)
        .map(|i| {
            let body = renew(BIG, &format!("CSBIG{i}"), "20301231235959", false);
            Exchange {
                id: uuid::Uuid::new_v4(),
                at: now - time::Duration::milliseconds((EXCHANGES - i) as i64),
                direction: Direction::In,
                license: Some(BIG.to_owned()),
                sandbox: false,
                correlation_id: None,
                message_id: None,
                outcome: "000000".to_owned(),
                request_size: body.len() as i64,
                request: body.into_bytes(),
                request_meta: json!({"verification": "valid", "query": "signature=…"}),
                response: Some(br#"{"resultCode":"000000","resultMsg":"success."}"#.to_vec()),
                response_meta: json!({"result_code": "000000", "result_msg": "success."}),
                answered_at: Some(now),
                decision: None,
            }
        })
        .collect()
}

/// Fetches `path` `ROUNDS` times: (median ms, p95 ms, projector CPU ms per fetch).
async fn measure(stack: &Stack, pid: u32, cookie: &str, path: &str) -> (f64, f64, f64) {
    let url = stack.query_url(path);
    let answer = stack
        .http
        .get(&url)
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    let mut times = Vec::with_capacity(ROUNDS);
    let cpu = cpu_seconds(pid);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let answer = stack
            .http
            .get(&url)
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        let _ = answer.bytes().await.unwrap();
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let cpu_ms = (cpu_seconds(pid) - cpu) * 1000.0 / ROUNDS as f64;
    times.sort_by(f64::total_cmp);
    (times[ROUNDS / 2], times[ROUNDS * 95 / 100], cpu_ms)
}

#[tokio::main]
async fn main() {
    let sim = Simulator::start();
    let mut stack = Stack::start(&[]).await;
    stack.start_projector(&sim.url);
    eventually("the projector's tables", 60, || async {
        let client = stack.store.client().await.ok()?;
        let row = client
            .query_one("SELECT to_regclass('license_views') IS NOT NULL", &[])
            .await
            .ok()?;
        row.get::<_, bool>(0).then_some(())
    })
    .await;
    let started = Instant::now();
    let client = stack.store.client().await.unwrap();
    client
        .batch_execute(&format!(
            "INSERT INTO license_views (license, sandbox, status, product_id, order_id, expire_at, expire_raw,
                 activation_status, last_heartbeat_day, version, updated_at, access_mode, access_until)
             SELECT 'PL' || lpad(n::text, 9, '0'), false,
                    (ARRAY['active','frozen','released','registered'])[1 + n % 4],
                    'OFFI' || (n % 50), 'CS' || n, now() + (n % 900) * interval '1 day', '20301231235959',
                    'activated', 20000 + n % 30, 3, now(),
                    (ARRAY['active','frozen','released','pending'])[1 + n % 4], now() + interval '30 days'
               FROM generate_series(1, {LICENSES}) n;
             ANALYZE license_views;"
        ))
        .await
        .unwrap();
    let seeded_views = started.elapsed().as_secs_f64();
    for from in (0..EVENTS).step_by(500) {
        stack
            .store
            .append(
                &format!("license-{BIG}"),
                from as i64,
                events_of(BIG, from, 500),
            )
            .await
            .unwrap();
    }
    stack.store.record_exchanges(&exchanges()).await.unwrap();
    eventually("the projector to fold the big license", 300, || async {
        stack.projector_caught_up().await.then_some(())
    })
    .await;
    drop(client);

    let pid = stack.projector.as_ref().unwrap().child.id();
    let query_instant = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
            .replace(':', "%3A")
            .replace('+', "%2B")
    };
    // An instant after the whole history (the newest snapshot serves it), and the instant of the
    // append that wrote event 5,500 (the snapshot at 5,000, then 500 events folded: ADR 0022).
    let as_of = query_instant(time::OffsetDateTime::now_utc());
    let middle: time::OffsetDateTime = stack
        .store
        .client()
        .await
        .unwrap()
        .query_one(
            "SELECT recorded_at FROM events WHERE stream_id = $1 AND stream_version = 5500",
            &[&format!("license-{BIG}")],
        )
        .await
        .unwrap()
        .get(0);
    let as_of_middle = query_instant(middle);
    let cookie = console_session(&stack.query_url(""), TOKEN).await;
    let (base, base_p95, base_cpu) = measure(&stack, pid, &cookie, "/healthz").await;
    let pages = [
        ("overview", "/console/".to_owned()),
        ("licenses", "/console/licenses".to_owned()),
        (
            "licenses_by_expiry",
            "/console/licenses?sort=expire_at".to_owned(),
        ),
        ("search_prefix", "/console/licenses?q=PL00012".to_owned()),
        ("search_order", "/console/licenses?q=CS777777".to_owned()),
        (
            "search_product_active",
            "/console/licenses?q=OFFI7&status=active".to_owned(),
        ),
        ("license_10000_events", format!("/console/licenses/{BIG}")),
        (
            "license_as_of",
            format!("/console/licenses/{BIG}?as_of={as_of}"),
        ),
        (
            "license_as_of_middle",
            format!("/console/licenses/{BIG}?as_of={as_of_middle}"),
        ),
        ("dead_letters", "/console/dead-letters".to_owned()),
        ("probe", "/console/probe".to_owned()),
    ];
    let mut results = serde_json::Map::new();
    for (name, path) in &pages {
        let (median, p95, cpu) = measure(&stack, pid, &cookie, path).await;
        results.insert(
            (*name).to_owned(),
            json!({
                "median_ms": (median * 10.0).round() / 10.0,
                "p95_ms": (p95 * 10.0).round() / 10.0,
                "ratio_to_baseline": (median / base * 10.0).round() / 10.0,
                "projector_cpu_ms": (cpu * 10.0).round() / 10.0,
            }),
        );
    }
    let report: Value = json!({
        "licenses": LICENSES,
        "events_of_one_license": EVENTS,
        "exchanges_of_one_license": EXCHANGES,
        "rounds": ROUNDS,
        "seeded_views_s": (seeded_views * 10.0).round() / 10.0,
        "baseline_healthz": {"median_ms": (base * 100.0).round() / 100.0, "p95_ms": (base_p95 * 100.0).round() / 100.0, "projector_cpu_ms": (base_cpu * 100.0).round() / 100.0},
        "pages": results,
    });
    println!("{report}");
}
