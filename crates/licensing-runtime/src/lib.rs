//! What every licensing service shares:
//!
//! - [`Settings`]: `LICENSING_*` settings from an optional file (`LICENSING_CONFIG`) overridden by
//!   the environment; a bad value fails start-up with the variable's name;
//! - [`init_logging`]: structured `tracing` logs, JSON or text;
//! - [`shutdown_signal`]: one [`CancellationToken`] cancelled on SIGTERM or ctrl-c;
//! - [`ops_server`]: `/healthz`, `/readyz` and Prometheus `/metrics` on the operations address;
//! - [`supervise`]: long-running tasks restarted with [`Backoff`] when they fail, their state on a
//!   [`Health`] board that `/readyz` reads.

mod ops;
mod settings;
mod supervise;

/// A secret setting (token, key): its `Debug` is redacted.
pub use koogallery::Secret;
pub use ops::{Readiness, get_only, ops_server, ops_service, post_only};
pub use settings::{Settings, SettingsError, check_secret};
pub use supervise::{Backoff, Health, Task, panic_message, supervise, until_done};
pub use tokio_util::sync::CancellationToken;

/// Whether the request carries `Authorization: Bearer <token>` (the scheme in any case) with one
/// of `tokens`, compared in constant time (the internal and query APIs).
pub fn bearer_authorized(req: &actix_web::HttpRequest, tokens: &[Secret]) -> bool {
    let presented = req
        .headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    tokens
        .iter()
        .map(Secret::expose)
        .fold(false, |found, token| {
            let same_length = token.len() == presented.len();
            let difference = token
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |d, (a, b)| d | (a ^ b));
            found | (same_length && difference == 0)
        })
}

/// Starts logging: `LICENSING_LOG_FORMAT=json` (the default in deployment) or `text`; the level
/// from `RUST_LOG` (default `info`).
pub fn init_logging(settings: &Settings) -> Result<(), SettingsError> {
    use tracing_subscriber::EnvFilter;
    let json = match settings.optional("LICENSING_LOG_FORMAT")?.as_deref() {
        None | Some("json") => true,
        Some("text") => false,
        Some(other) => {
            return Err(SettingsError::invalid(
                "LICENSING_LOG_FORMAT",
                format!("expected json or text, got {other:?}"),
            ));
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let result = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    // A second init (tests) keeps the first subscriber.
    let _ = result;
    Ok(())
}

/// A token cancelled when the process receives SIGTERM or ctrl-c.
pub fn shutdown_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        cancel.cancel();
    });
    token
}
