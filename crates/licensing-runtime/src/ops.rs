//! The operations listener: liveness, readiness and Prometheus metrics.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use actix_web::http::Method;
use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus_client::registry::Registry;

/// Checks whether the service can do its work (database, broker): `Ok` or the reason it cannot.
pub type Readiness =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

struct Ops {
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(ops: web::Data<Ops>) -> HttpResponse {
    match (ops.readiness)().await {
        Ok(()) => HttpResponse::Ok()
            .content_type("text/plain")
            .body("ready\n"),
        Err(reason) => HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body(format!("not ready: {reason}\n")),
    }
}

async fn metrics(ops: web::Data<Ops>) -> HttpResponse {
    let mut text = String::new();
    let registry = ops.registry.lock().unwrap_or_else(|p| p.into_inner());
    match prometheus_client::encoding::text::encode(&mut text, &registry) {
        Ok(()) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(text),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

/// 405 with `Allow: {allow}` and the JSON error body, for a method a route does not answer.
fn method_not_allowed(allow: &'static str) -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header(("Allow", allow))
        .json(crate::error_body(
            "method_not_allowed",
            &format!("this route answers {allow} only"),
        ))
}

/// A route that answers the method `allow` only, and [`method_not_allowed`] to any other.
fn only<F, Args>(path: &str, allow: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    let method = Method::from_bytes(allow.as_bytes()).expect("a method name");
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move || async move { method_not_allowed(allow) }))
}

/// A route that answers GET, and 405 with `Allow: GET` to any other method.
pub fn get_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    only(path, "GET", handler)
}

/// A route that answers POST, and 405 with `Allow: POST` to any other method.
pub fn post_only<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    only(path, "POST", handler)
}

/// The `/healthz`, `/readyz` and `/metrics` routes, to mount on any actix app.
pub fn ops_service(
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
) -> impl Fn(&mut web::ServiceConfig) + Clone {
    let data = web::Data::new(Ops {
        registry,
        readiness,
    });
    move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(data.clone())
            .service(get_only("/healthz", healthz))
            .service(get_only("/readyz", readyz))
            .service(get_only("/metrics", metrics));
    }
}

/// A listener serving only the operations routes (for services without their own HTTP API).
/// Returns the bound address and the server to await.
pub fn ops_server(
    address: &str,
    registry: Arc<Mutex<Registry>>,
    readiness: Readiness,
) -> std::io::Result<(SocketAddr, actix_web::dev::Server)> {
    let routes = ops_service(registry, readiness);
    let server = HttpServer::new(move || App::new().configure(routes.clone()))
        .workers(1)
        .disable_signals()
        .bind(address)?;
    let bound = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| std::io::Error::other("no address bound"))?;
    Ok((bound, server.run()))
}
