//! `licensing-ingress`: the KooGallery callback URL and the internal API. Settings: see the README.

use std::sync::{Arc, Mutex};

use licensing_ingress::{Application, IngressConfig};
use licensing_runtime::{Settings, init_logging, shutdown_signal};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licensing-ingress: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    init_logging(&settings)?;
    licensing_runtime::init_traces(&settings, "licensing-ingress")?;
    let config = IngressConfig::from_settings(&settings)?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let app = Application::build(config.clone(), registry)?;
    let internal = app.internal_addr;
    app.run(shutdown_signal(), |public| {
        tracing::info!(%public, %internal, callback_path = %config.callback_path, "licensing-ingress ready");
    })
    .await
}
