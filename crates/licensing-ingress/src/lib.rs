//! The ingress: the KooGallery callback URL and the internal command API. It never talks to
//! PostgreSQL: it verifies and validates, hands commands to the processor over RabbitMQ with
//! publisher confirms, and answers with the processor's reply (or `000004` after the deadline, D8).

mod callback;
mod config;
mod connection;
mod dispatch;
mod internal;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpServer, web};
use koogallery::signature::Verifier;
use licensing_runtime::{CancellationToken, Health, Readiness, ops_service, post_only, supervise};
use prometheus_client::registry::Registry;

pub use config::IngressConfig;
pub use connection::Connection;

/// Shared by every request.
#[derive(Debug)]
pub struct State {
    config: IngressConfig,
    verifier: Verifier,
    connection: Connection,
    metrics: metrics::Metrics,
    health: Health,
    /// Refusal records handed over per second at most (D20).
    evidence_budget: callback::EvidenceBudget,
}

pub(crate) fn now_millis() -> i64 {
    koogallery::market_time::unix_millis(time::OffsetDateTime::now_utc())
}

/// The request's id: a valid `X-Request-Id` UUID, else a new one. It becomes the correlation id
/// of the command and of every event it causes.
pub(crate) fn request_id(req: &HttpRequest) -> uuid::Uuid {
    req.headers()
        .get("X-Request-Id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| uuid::Uuid::parse_str(v).ok())
        .unwrap_or_else(uuid::Uuid::new_v4)
}

/// A built ingress: the internal listener bound, nothing serving yet. The public listener opens
/// only once the broker link is up ([`Application::run`]).
pub struct Application {
    /// The internal listener's address.
    pub internal_addr: SocketAddr,
    internal: actix_web::dev::Server,
    state: web::Data<State>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("internal_addr", &self.internal_addr)
            .finish_non_exhaustive()
    }
}

async fn healthz() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain")
        .body("ok\n")
}

/// How long requests in flight may take to finish after SIGTERM.
const DRAIN_SECONDS: u64 = 10;

impl Application {
    /// Binds the internal listener (port 0 picks a free port).
    pub fn build(config: IngressConfig, registry: Arc<Mutex<Registry>>) -> anyhow::Result<Self> {
        let verifier = config.verifier.clone();
        let health = Health::register(&registry);
        let state = web::Data::new(State {
            verifier,
            connection: Connection::default(),
            metrics: metrics::Metrics::register(&registry),
            evidence_budget: callback::EvidenceBudget::new(config.evidence_refused_per_second),
            config,
            health,
        });
        let readiness: Readiness = Arc::new({
            let state = state.clone();
            move || {
                let ready = state.health.check().and_then(|()| {
                    state
                        .connection
                        .get()
                        .map(|_| ())
                        .ok_or_else(|| "broker_link (not connected)".to_owned())
                });
                Box::pin(async move { ready })
            }
        });
        let ops = ops_service(registry, readiness);

        // Internal: the command API, health, readiness and metrics.
        let internal_state = state.clone();
        let internal = HttpServer::new(move || {
            App::new()
                .app_data(internal_state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .service(
                    // The token is checked before the body is read.
                    web::scope("/v1")
                        .wrap(actix_web::middleware::from_fn(internal::require_token))
                        .service(post_only(
                            "/licenses/{code}/activation",
                            internal::activation,
                        ))
                        .service(post_only("/licenses/{code}/usage", internal::usage))
                        .service(post_only(
                            "/licenses/{code}/drift/resolve",
                            internal::resolve_drift,
                        )),
                )
                .configure(ops.clone())
        })
        .disable_signals()
        .shutdown_timeout(DRAIN_SECONDS)
        .bind(&state.config.internal_addr)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on LICENSING_INTERNAL_ADDR {}: {e}",
                state.config.internal_addr
            )
        })?;
        let internal_addr = internal.addrs()[0];
        Ok(Self {
            internal_addr,
            internal: internal.run(),
            state,
        })
    }

    /// Keeps the broker link up; once it is, opens the public listener and calls `ready` with its
    /// address. Serves until `cancel` fires, then stops accepting, lets requests in flight finish
    /// with their real answers, and only then closes the broker link.
    pub async fn run(
        self,
        cancel: CancellationToken,
        ready: impl FnOnce(SocketAddr),
    ) -> anyhow::Result<()> {
        // The link outlives `cancel`: requests in flight still need it while draining.
        let link_cancel = CancellationToken::new();
        let supervisor = supervise(&self.state.health, "broker_link", link_cancel.clone(), {
            let (connection, config) =
                (self.state.connection.clone(), self.state.config.bus.clone());
            move |task| {
                let (connection, config) = (connection.clone(), config.clone());
                async move { connection.serve(config, task).await }
            }
        });
        let internal = self.internal.handle();
        let internal_server = tokio::spawn(self.internal);
        let stop = |public: Option<actix_web::dev::ServerHandle>| async move {
            if let Some(public) = &public {
                tokio::join!(public.stop(true), internal.stop(true));
            } else {
                internal.stop(true).await;
            }
            link_cancel.cancel();
        };

        // No public port before the broker link: a callback must never meet a backend that
        // cannot hand it over.
        let mut waited = false;
        while self.state.connection.get().is_none() {
            if !waited {
                tracing::info!("waiting for the broker before opening the public listener");
                waited = true;
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    stop(None).await;
                    let _ = tokio::join!(supervisor, internal_server);
                    return Ok(());
                }
                () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            }
        }
        let public_state = self.state.clone();
        let config = &self.state.config;
        let path = config.callback_path.clone();
        let public = HttpServer::new(move || {
            App::new()
                .app_data(public_state.clone())
                .route(&path, web::route().to(callback::callback))
                .route("/healthz", web::get().to(healthz))
        })
        .disable_signals()
        .shutdown_timeout(DRAIN_SECONDS)
        .client_request_timeout(config.header_timeout)
        .keep_alive(config.keep_alive)
        .max_connections(config.max_connections)
        .bind(&config.public_addr)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on LICENSING_INGRESS_ADDR {}: {e}",
                config.public_addr
            )
        })?;
        ready(public.addrs()[0]);
        let public = public.run();
        let public_handle = public.handle();
        let public_server = tokio::spawn(public);
        cancel.cancelled().await;
        tracing::info!("stopping: no new connections, finishing the requests in flight");
        stop(Some(public_handle)).await;
        let _ = tokio::join!(supervisor, internal_server, public_server);
        Ok(())
    }
}
