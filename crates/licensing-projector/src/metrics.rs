//! The projector's Prometheus metrics.

use std::sync::{Arc, Mutex};

use std::sync::atomic::AtomicU64;

use licensing_runtime::Health;
use licensing_store::Store;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::time::Duration;

type Labels = Vec<(&'static str, String)>;

/// Counters, registered once.
#[derive(Debug, Clone)]
pub(crate) struct Metrics {
    /// Marketplace calls, by kind and disposition (`credentials` means the AK/SK was refused).
    pub(crate) calls: Family<Labels, Counter>,
    /// Failed marketplace calls, by kind and the marketplace's code (`92020005`, `APIGW.0301`, `timeout`…).
    pub(crate) failures: Family<Labels, Counter>,
    /// Outbound jobs waiting, by kind.
    pub(crate) jobs: Family<Labels, Gauge>,
    /// Seconds the most overdue job has been due.
    pub(crate) oldest_due: Gauge<f64, AtomicU64>,
    /// Seconds between the newest event and the last one each follower handled.
    pub(crate) lag: Family<Labels, Gauge<f64, AtomicU64>>,
    /// Days of use over the last 7 days (today included) whose heartbeat the marketplace has not
    /// acknowledged, over all real licenses.
    pub(crate) heartbeat_debt: Gauge,
    /// Consecutive market days on which a probe watchdog run failed (D21).
    pub(crate) probe_failed_days: Gauge,
    /// When the last watchdog run whose every case passed started (0: never).
    pub(crate) probe_last_success: Gauge<f64, AtomicU64>,
    /// When the marketplace's own probe was last seen (0: never).
    pub(crate) marketplace_probe_last_seen: Gauge<f64, AtomicU64>,
    /// Dead letters not re-driven yet.
    pub(crate) dead_letters_waiting: Gauge,
}

impl Metrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &Arc<Mutex<Registry>>) -> Self {
        let metrics = Self {
            calls: Family::default(),
            failures: Family::default(),
            jobs: Family::default(),
            oldest_due: Gauge::default(),
            lag: Family::default(),
            heartbeat_debt: Gauge::default(),
            probe_failed_days: Gauge::default(),
            probe_last_success: Gauge::default(),
            marketplace_probe_last_seen: Gauge::default(),
            dead_letters_waiting: Gauge::default(),
        };
        let mut r = registry.lock().unwrap_or_else(|p| p.into_inner());
        r.register(
            "licensing_outbound_calls",
            "Marketplace calls, by kind and disposition (credentials: AK/SK refused)",
            metrics.calls.clone(),
        );
        r.register(
            "licensing_outbound_failures",
            "Failed marketplace calls, by kind and code",
            metrics.failures.clone(),
        );
        r.register(
            "licensing_outbound_jobs",
            "Outbound jobs waiting, by kind",
            metrics.jobs.clone(),
        );
        r.register(
            "licensing_outbound_oldest_due_seconds",
            "How long the most overdue outbound job has been due",
            metrics.oldest_due.clone(),
        );
        r.register(
            "licensing_projection_lag_seconds",
            "Newest event minus the last one handled, by follower",
            metrics.lag.clone(),
        );
        r.register(
            "licensing_heartbeat_debt",
            "Days of use over the last 7 market days (today included) without an acknowledged heartbeat, over all real licenses",
            metrics.heartbeat_debt.clone(),
        );
        r.register(
            "licensing_probe_failed_days",
            "Consecutive market days on which a run of the probe watchdog failed (the marketplace freezes trading after 5)",
            metrics.probe_failed_days.clone(),
        );
        r.register(
            "licensing_probe_last_success_timestamp_seconds",
            "When the last probe watchdog run whose every case passed started (0: never)",
            metrics.probe_last_success.clone(),
        );
        r.register(
            "licensing_marketplace_probe_last_seen_timestamp_seconds",
            "When the marketplace's own probe (a testFlag=1 callback) was last seen (0: never)",
            metrics.marketplace_probe_last_seen.clone(),
        );
        r.register(
            "licensing_dead_letters_waiting",
            "Commands parked in the dead-letter queue and not re-driven yet (GET /v1/dead-letters)",
            metrics.dead_letters_waiting.clone(),
        );
        metrics
    }

    /// Refreshes the gauges from the database.
    pub(crate) async fn refresh(
        &self,
        store: &licensing_store::Store,
        today: i64,
    ) -> Result<(), licensing_store::StoreError> {
        let client = store.client().await?;
        for kind in ["activate", "heartbeat"] {
            self.jobs
                .get_or_create(&vec![("kind", kind.to_owned())])
                .set(0);
        }
        for row in client
            .query(
                "SELECT kind, count(*) FROM outbound_jobs GROUP BY kind",
                &[],
            )
            .await?
        {
            self.jobs
                .get_or_create(&vec![("kind", row.get::<_, String>(0))])
                .set(row.get(1));
        }
        let oldest: f64 = client
            .query_one("SELECT coalesce(extract(epoch FROM now() - min(due_at))::float8, 0) FROM outbound_jobs WHERE due_at <= now()", &[])
            .await?
            .get(0);
        self.oldest_due.set(oldest.max(0.0));
        for (follower, seconds) in store.follower_lags(&crate::read_model::FOLLOWERS).await? {
            self.lag
                .get_or_create(&vec![("follower", follower)])
                .set(seconds);
        }
        self.heartbeat_debt
            .set(heartbeat_debt(&**client, today).await?);
        let probe = crate::read_model::probe_log::ProbeStatus::read(&**client).await?;
        let seconds = |t: Option<time::OffsetDateTime>| {
            t.map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9)
        };
        self.probe_failed_days.set(i64::from(probe.failed_days));
        self.probe_last_success.set(seconds(probe.last_success_at));
        self.marketplace_probe_last_seen
            .set(seconds(probe.marketplace_last_seen_at));
        self.dead_letters_waiting
            .set(store.dead_letters_waiting().await?);
        Ok(())
    }
}

/// Days of use over the last 7 market days up to `today` without an acknowledged heartbeat, over
/// all real licenses (the gauge and the console's overview).
pub(crate) async fn heartbeat_debt(
    client: &impl licensing_store::GenericClient,
    today: i64,
) -> Result<i64, licensing_store::StoreError> {
    Ok(client
        .query_one(
            "SELECT count(*) FROM heartbeat_days WHERE acknowledged_at IS NULL AND day > $1::bigint - 7 AND day <= $1::bigint",
            &[&today],
        )
        .await?
        .get(0))
}

/// Why the projector is not ready. Its text (the `/readyz` answer) names tasks and followers,
/// never a database's error text; the store's error stays its source, for the log.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotReady {
    /// Tasks that are not up, as the task board names them.
    #[error("{0}")]
    Tasks(String),
    /// The store cannot say how far the followers are.
    #[error("event store (unavailable)")]
    Store(#[source] licensing_store::StoreError),
    /// Followers further behind than allowed: each with its lag in seconds.
    #[error("{}", .0.iter().map(|(name, s)| format!("{name} (lagging {s:.0} s)")).collect::<Vec<_>>().join(", "))]
    Lagging(Vec<(String, f64)>),
}

/// Whether the projector works: every task up, the store reachable, and no follower further
/// behind than `max_lag`.
pub(crate) async fn ready(
    health: &Health,
    store: &Store,
    max_lag: Duration,
) -> Result<(), NotReady> {
    health.check().map_err(NotReady::Tasks)?;
    let lags = store
        .follower_lags(&crate::read_model::FOLLOWERS)
        .await
        .map_err(NotReady::Store)?;
    let behind: Vec<(String, f64)> = lags
        .into_iter()
        .filter(|(_, seconds)| *seconds > max_lag.as_secs_f64())
        .collect();
    if behind.is_empty() {
        Ok(())
    } else {
        Err(NotReady::Lagging(behind))
    }
}
