//! Building and running the projector: its HTTP listener, its followers and workers, each
//! supervised.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpServer, web};
use licensing_bus::{Bus, BusConfig, BusError};
use licensing_runtime::{
    CancellationToken, Health, Readiness, Task, get_only, ops_service, post_only, supervise,
    until_done,
};
use licensing_store::{Store, Subscription};
use prometheus_client::registry::Registry;

use crate::config::ProjectorConfig;
use crate::read_model::views::Views;
use crate::{api, console, read_model, workers};

/// A built projector: the query listener bound, nothing running yet.
pub struct Projector {
    /// The query listener's address.
    pub query_addr: SocketAddr,
    server: actix_web::dev::Server,
    config: ProjectorConfig,
    store: Store,
    outbound: workers::outbound::Outbound,
    health: Health,
}

impl std::fmt::Debug for Projector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projector")
            .field("query_addr", &self.query_addr)
            .finish_non_exhaustive()
    }
}

/// The query API's OpenAPI document (committed as `docs/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

async fn openapi() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

impl Projector {
    /// Binds the query listener.
    pub fn build(config: ProjectorConfig, registry: Arc<Mutex<Registry>>) -> anyhow::Result<Self> {
        let store = Store::connect(&config.store)?;
        let client = koogallery::client::Client::new(config.marketplace.clone())?;
        let metrics = crate::metrics::Metrics::register(&registry);
        let outbound = workers::outbound::Outbound {
            store: store.clone(),
            client,
            default_account: config.default_account.clone(),
            retry_base: config.retry_base,
            retry_cap: config.retry_cap,
            rate: config.rate,
            claim_days: config.claim_days,
            metrics,
        };
        let health = Health::register(&registry);
        let readiness: Readiness = Arc::new({
            let (health, store, max_lag) = (health.clone(), store.clone(), config.ready_max_lag);
            move || {
                let (health, store) = (health.clone(), store.clone());
                Box::pin(async move {
                    // The ops routes answer the reason as text.
                    crate::metrics::ready(&health, &store, max_lag)
                        .await
                        .map_err(|reason| reason.to_string())
                })
            }
        });
        let ops = ops_service(registry, readiness);
        let state = web::Data::new(api::QueryState {
            store: store.clone(),
            tokens: config.api_tokens.clone(),
            verifier: config.callback_verifier.clone(),
            entitlements: config.entitlements.clone(),
            entitlement_ttl: config.entitlement_ttl,
            clock: config.clock.clone(),
            day_zone: config.day_zone,
            probe: config.probe.clone(),
            probe_schedule: config.probe_schedule.clone(),
            bus: config.bus.clone(),
        });
        if config.console_secret.is_none() {
            tracing::warn!(
                "LICENSING_CONSOLE_SECRET is not set: the operator console is off (nobody can sign in)"
            );
        }
        let console = web::Data::new(console::Console::new(
            config.console_session_hours,
            config.trusted_proxies.clone(),
            config.console_peers.clone(),
            health.clone(),
            config.ready_max_lag,
            config.market_zone,
            config.bus.clone(),
            config.console_secret.clone(),
        ));
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(console.clone())
                .configure(console::routes)
                .service(get_only("/openapi.json", openapi))
                .service(get_only("/.well-known/jwks.json", api::entitlements::jwks))
                .service(get_only(
                    "/v1/licenses/{code}/entitlement",
                    api::entitlements::entitlement,
                ))
                .service(get_only(
                    "/v1/licenses/{code}/heartbeats",
                    api::heartbeats::heartbeats,
                ))
                .service(get_only("/v1/licenses", api::licenses::list))
                .service(get_only("/v1/licenses/{code}", api::licenses::license))
                .service(get_only(
                    "/v1/licenses/{code}/events",
                    api::licenses::events,
                ))
                .service(get_only(
                    "/v1/licenses/{code}/ledger",
                    api::exchanges::license_ledger,
                ))
                .service(get_only(
                    "/v1/licenses/{code}/evidence",
                    api::exchanges::license_evidence,
                ))
                .service(get_only("/v1/probe", api::probe::probe))
                .service(get_only("/v1/dead-letters", api::dead_letters::list))
                .service(post_only(
                    "/v1/dead-letters/redrive",
                    api::dead_letters::redrive_all,
                ))
                .service(get_only("/v1/dead-letters/{id}", api::dead_letters::one))
                .service(post_only(
                    "/v1/dead-letters/{id}/redrive",
                    api::dead_letters::redrive,
                ))
                .service(get_only("/v1/exchanges", api::exchanges::exchanges))
                .service(get_only("/v1/exchanges/{id}", api::exchanges::exchange))
                .configure(ops.clone())
        })
        .workers(2)
        .disable_signals()
        .bind(&config.query_addr)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on LICENSING_QUERY_ADDR {}: {e}",
                config.query_addr
            )
        })?;
        let query_addr = server.addrs()[0];
        Ok(Self {
            query_addr,
            server: server.run(),
            config,
            store,
            outbound,
            health,
        })
    }

    /// Runs the views follower, the event publisher, the outbound worker, the gauges and the query
    /// API until `cancel`; each task is supervised (restarted with backoff, shown by `/readyz`).
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let store = &self.store;
        let migrated = until_done(
            &self.health,
            "migrations",
            &cancel,
            || async {
                store.migrate().await?;
                read_model::schema::ensure(store).await
            },
            licensing_store::StoreError::is_unavailable,
        )
        .await?;
        if migrated.is_none() {
            return Ok(());
        }
        let (health, bus) = (&self.health, &self.config.bus);
        let views = supervise(health, "license_views", cancel.clone(), {
            let (store, day_zone, market_zone, account, notices, clock) = (
                self.store.clone(),
                self.config.day_zone,
                self.config.market_zone,
                self.config.default_account.clone(),
                self.config.notices.clone(),
                self.config.clock.clone(),
            );
            move |task| {
                let subscription = Subscription::new(store.clone(), "license_views");
                let mut handler = Views::new(
                    day_zone,
                    market_zone,
                    account.clone(),
                    notices.clone(),
                    clock.clone(),
                );
                async move {
                    subscription
                        .run(&mut handler, task.cancel.clone(), || task.up())
                        .await
                }
            }
        });
        let publisher = supervise_with_bus(health, "event_publisher", &cancel, bus, {
            let store = self.store.clone();
            move |bus, task| {
                let subscription = Subscription::new(store.clone(), "event_publisher");
                async move {
                    let mut handler = workers::publisher::Publisher { bus: &bus };
                    subscription
                        .run_pipelined(
                            &mut handler,
                            workers::publisher::IN_FLIGHT,
                            task.cancel.clone(),
                            || task.up(),
                        )
                        .await
                }
            }
        });
        let outbound = supervise_with_bus(health, "outbound_worker", &cancel, bus, {
            let outbound = self.outbound.clone();
            move |bus, task| {
                let outbound = outbound.clone();
                async move {
                    task.up();
                    outbound.run(&bus, &task.cancel).await
                }
            }
        });
        let schedule = supervise_with_bus(health, "access_schedule", &cancel, bus, {
            let schedule = workers::schedule::Schedule {
                store: self.store.clone(),
                clock: self.config.clock.clone(),
                notices: self.config.notices.clone(),
                batch: self.config.schedule_batch,
            };
            move |bus, task| {
                let schedule = schedule.clone();
                async move {
                    task.up();
                    schedule.run(&bus, &task.cancel).await
                }
            }
        });
        let watchdog = self.config.probe.clone().map(|settings| {
            let watchdog = workers::watchdog::Watchdog {
                settings,
                schedule: self.config.probe_schedule.clone(),
                clock: self.config.clock.clone(),
                store: self.store.clone(),
            };
            supervise_with_bus(health, "probe_watchdog", &cancel, bus, move |bus, task| {
                let watchdog = watchdog.clone();
                async move {
                    task.up();
                    watchdog.run(&bus, &task.cancel).await
                }
            })
        });
        let gauges = supervise(health, "gauges", cancel.clone(), {
            let (metrics, store, zone, clock) = (
                self.outbound.metrics.clone(),
                self.store.clone(),
                self.config.day_zone,
                self.config.clock.clone(),
            );
            move |task| {
                let (metrics, store, clock) = (metrics.clone(), store.clone(), clock.clone());
                async move {
                    task.up();
                    workers::upkeep::gauges(&metrics, &store, &clock, zone, &task.cancel).await;
                    Ok::<(), std::convert::Infallible>(())
                }
            }
        });
        let evidence = supervise(health, "evidence_upkeep", cancel.clone(), {
            let (store, clock, retention, refused_retention) = (
                self.store.clone(),
                self.config.clock.clone(),
                time::Duration::days(i64::from(self.config.evidence_retention_days)),
                time::Duration::days(i64::from(self.config.evidence_refused_retention_days)),
            );
            move |task| {
                let (store, clock) = (store.clone(), clock.clone());
                async move {
                    task.up();
                    workers::upkeep::evidence(
                        &store,
                        &clock,
                        retention,
                        refused_retention,
                        &task.cancel,
                    )
                    .await
                }
            }
        });
        let handle = self.server.handle();
        tokio::spawn(self.server);
        cancel.cancelled().await;
        handle.stop(true).await;
        let _ = tokio::join!(views, publisher, outbound, schedule, gauges, evidence);
        if let Some(watchdog) = watchdog {
            let _ = watchdog.await;
        }
        Ok(())
    }
}

/// Why a task with a broker connection of its own stopped.
#[derive(Debug, thiserror::Error)]
enum BusTaskError<E: std::error::Error + 'static> {
    /// It could not connect.
    #[error("cannot connect to the broker: {0}")]
    Connect(BusError),
    /// The connection went away under it.
    #[error("the broker connection was lost")]
    Lost,
    /// Its work failed.
    #[error(transparent)]
    Work(E),
}

/// Supervises `name`, a task with a broker connection of its own: each start connects, then runs
/// `work` until it ends or the connection is lost, whichever comes first (a loss is a failure,
/// so the task starts over with a new connection); the connection is closed either way. `work`
/// reports the task up.
fn supervise_with_bus<W, Fut, E>(
    health: &Health,
    name: &'static str,
    cancel: &CancellationToken,
    bus: &BusConfig,
    work: W,
) -> tokio::task::JoinHandle<()>
where
    W: Fn(Arc<Bus>, Task) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let (config, work) = (bus.clone(), Arc::new(work));
    supervise(health, name, cancel.clone(), move |task| {
        let (config, work) = (config.clone(), work.clone());
        async move {
            let bus = Arc::new(Bus::connect(config).await.map_err(BusTaskError::Connect)?);
            let result = tokio::select! {
                r = work(bus.clone(), task) => r.map_err(BusTaskError::Work),
                () = bus.closed() => Err(BusTaskError::Lost),
            };
            bus.close().await;
            result
        }
    })
}
