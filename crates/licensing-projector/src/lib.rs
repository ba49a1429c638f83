//! The projector: follows the event store to keep the license views and the calls owed to the
//! marketplace, runs the outbound worker that makes those calls (their outcomes go back to the
//! processor as commands), and serves the query API.

mod config;
mod metrics;
mod outbound;
mod publisher;
mod query;
mod rebuild;
mod schema;
mod views;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use licensing_bus::Bus;
use licensing_runtime::{CancellationToken, Readiness, ops_service};
use licensing_store::{Store, Subscription};
use prometheus_client::registry::Registry;

pub use config::ProjectorConfig;
pub use publisher::{EVENT_ENVELOPE_VERSION, envelope};
pub use rebuild::{RebuildReport, rebuild};
pub use views::{Views, replay};

/// A built projector: the query listener bound, nothing running yet.
pub struct Projector {
    /// The query listener's address.
    pub query_addr: SocketAddr,
    server: actix_web::dev::Server,
    config: ProjectorConfig,
    store: Store,
    outbound: outbound::Outbound,
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
        let metrics = metrics::Metrics::register(&registry);
        let outbound = outbound::Outbound {
            store: store.clone(),
            client,
            default_account: config.default_account.clone(),
            retry_base: config.retry_base,
            retry_cap: config.retry_cap,
            rate: config.rate,
            metrics,
        };
        let ready_store = store.clone();
        let readiness: Readiness = Arc::new(move || {
            let store = ready_store.clone();
            Box::pin(async move { store.ready().await.map_err(|e| e.to_string()) })
        });
        let ops = ops_service(registry, readiness);
        let state = web::Data::new(query::QueryState {
            store: store.clone(),
            tokens: config.api_tokens.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/openapi.json", web::get().to(openapi))
                .route("/v1/licenses", web::get().to(query::list))
                .route("/v1/licenses/{code}", web::get().to(query::license))
                .route("/v1/licenses/{code}/events", web::get().to(query::events))
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
        })
    }

    /// Runs the views follower, the outbound worker and the query API until `cancel`.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(200);
        loop {
            let ready = async {
                self.store.migrate().await?;
                schema::ensure(&self.store).await
            };
            match ready.await {
                Ok(()) => break,
                Err(e) if e.is_unavailable() && !cancel.is_cancelled() => {
                    tracing::warn!(error = %e, "event store unavailable at start, retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let views = {
            let subscription = Subscription::new(self.store.clone(), "license_views");
            let mut handler = Views {
                day_zone: self.config.day_zone,
                default_account: self.config.default_account.clone(),
            };
            let cancel = cancel.clone();
            tokio::spawn(async move {
                subscription
                    .run(&mut handler, cancel)
                    .await
                    .map_err(|e| e.to_string())
            })
        };
        let publisher = {
            let (store, bus_config, cancel) =
                (self.store.clone(), self.config.bus.clone(), cancel.clone());
            tokio::spawn(async move {
                let subscription = Subscription::new(store, "event_publisher");
                let mut backoff = Duration::from_millis(200);
                while !cancel.is_cancelled() {
                    match Bus::connect(bus_config.clone()).await {
                        Ok(bus) => {
                            backoff = Duration::from_millis(200);
                            let mut handler = publisher::Publisher { bus: &bus };
                            if let Err(e) = subscription.run(&mut handler, cancel.clone()).await {
                                tracing::warn!(error = %e, "event publisher stopped, reconnecting");
                            }
                            bus.close().await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "broker unavailable for the event publisher")
                        }
                    }
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            })
        };
        let outbound = {
            let (outbound, bus_config, cancel) = (
                self.outbound.clone(),
                self.config.bus.clone(),
                cancel.clone(),
            );
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(200);
                while !cancel.is_cancelled() {
                    match Bus::connect(bus_config.clone()).await {
                        Ok(bus) => {
                            backoff = Duration::from_millis(200);
                            if let Err(e) = outbound.run(&bus, &cancel).await {
                                tracing::warn!(error = %e, "outbound worker lost the broker");
                            }
                            bus.close().await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "broker unavailable for the outbound worker");
                            tokio::select! {
                                () = cancel.cancelled() => {}
                                () = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })
        };
        let gauges = {
            let (metrics, store, zone, cancel) = (
                self.outbound.metrics.clone(),
                self.store.clone(),
                self.config.day_zone,
                cancel.clone(),
            );
            tokio::spawn(async move {
                while !cancel.is_cancelled() {
                    let now = time::OffsetDateTime::now_utc();
                    let today = licensing_domain::Day::containing(
                        licensing_domain::Timestamp::from_millis(
                            (now.unix_timestamp_nanos() / 1_000_000) as i64,
                        ),
                        zone.whole_minutes().into(),
                    );
                    if let Err(e) = metrics.refresh(&store, today.number()).await {
                        tracing::debug!(error = %e, "cannot refresh the gauges");
                    }
                    tokio::select! {
                        () = cancel.cancelled() => {}
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
            })
        };
        let handle = self.server.handle();
        tokio::spawn(self.server);
        cancel.cancelled().await;
        handle.stop(true).await;
        match views.await {
            Ok(Err(e)) => tracing::error!(error = %e, "the view follower stopped"),
            Err(e) => tracing::error!(error = %e, "the view follower panicked"),
            Ok(Ok(())) => {}
        }
        let _ = outbound.await;
        let _ = publisher.await;
        let _ = gauges.await;
        Ok(())
    }
}
