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
use licensing_runtime::{CancellationToken, Readiness, ops_service};
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
}

pub(crate) fn now_millis() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
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

/// A built ingress: both listeners bound, not yet serving.
pub struct Application {
    /// The public listener's address.
    pub public_addr: SocketAddr,
    /// The internal listener's address.
    pub internal_addr: SocketAddr,
    public: actix_web::dev::Server,
    internal: actix_web::dev::Server,
    state: web::Data<State>,
    bus: licensing_bus::BusConfig,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("public_addr", &self.public_addr)
            .field("internal_addr", &self.internal_addr)
            .finish_non_exhaustive()
    }
}

async fn healthz() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("text/plain")
        .body("ok\n")
}

impl Application {
    /// Binds both listeners (port 0 picks a free port).
    pub fn build(config: IngressConfig, registry: Arc<Mutex<Registry>>) -> anyhow::Result<Self> {
        let window_ms = i64::try_from(config.window.as_millis()).unwrap_or(i64::MAX);
        let verifier = Verifier::with_window(config.callback_keys.clone(), window_ms);
        let bus = config.bus.clone();
        let state = web::Data::new(State {
            verifier,
            connection: Connection::default(),
            metrics: metrics::Metrics::register(&registry),
            config,
        });
        let connection = state.connection.clone();
        let readiness: Readiness = Arc::new(move || {
            let connected = connection.get().is_some();
            Box::pin(async move {
                if connected {
                    Ok(())
                } else {
                    Err("not connected to the broker".to_owned())
                }
            })
        });
        let ops = ops_service(registry, readiness);

        // Public: the callback URL, and a liveness probe for load balancers. Nothing else.
        let public_state = state.clone();
        let path = state.config.callback_path.clone();
        let public = HttpServer::new(move || {
            App::new()
                .app_data(public_state.clone())
                .route(&path, web::route().to(callback::callback))
                .route("/healthz", web::get().to(healthz))
        })
        .disable_signals()
        .bind(&state.config.public_addr)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on LICENSING_INGRESS_ADDR {}: {e}",
                state.config.public_addr
            )
        })?;
        let public_addr = public.addrs()[0];

        // Internal: the command API, health, readiness and metrics.
        let internal_state = state.clone();
        let internal = HttpServer::new(move || {
            App::new()
                .app_data(internal_state.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .route(
                    "/v1/licenses/{code}/activation",
                    web::post().to(internal::activation),
                )
                .route("/v1/licenses/{code}/usage", web::post().to(internal::usage))
                .configure(ops.clone())
        })
        .disable_signals()
        .bind(&state.config.internal_addr)
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on LICENSING_INTERNAL_ADDR {}: {e}",
                state.config.internal_addr
            )
        })?;
        let internal_addr = internal.addrs()[0];
        Ok(Self {
            public_addr,
            internal_addr,
            public: public.run(),
            internal: internal.run(),
            state,
            bus,
        })
    }

    /// Serves until `cancel` fires, then stops accepting and lets requests in flight finish.
    pub async fn run(self, cancel: CancellationToken) -> anyhow::Result<()> {
        let supervisor = tokio::spawn(
            self.state
                .connection
                .clone()
                .supervise(self.bus.clone(), cancel.clone()),
        );
        let (public, internal) = (self.public.handle(), self.internal.handle());
        let servers = async { tokio::try_join!(self.public, self.internal) };
        tokio::select! {
            result = servers => { result?; }
            () = cancel.cancelled() => {
                tokio::join!(public.stop(true), internal.stop(true));
            }
        }
        let _ = supervisor.await;
        Ok(())
    }
}
