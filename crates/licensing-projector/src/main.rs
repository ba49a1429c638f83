//! `licensing-projector`: license views, the query API, and the outbound activation and heartbeat
//! calls. Settings: see the README.

use std::sync::{Arc, Mutex};

use licensing_projector::{Projector, ProjectorConfig};
use licensing_runtime::{Settings, init_logging, shutdown_signal};
use prometheus_client::registry::Registry;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licensing-projector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    init_logging(&settings)?;
    let config = ProjectorConfig::from_settings(&settings)?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let projector = Projector::build(config, registry)?;
    tracing::info!(query = %projector.query_addr, "licensing-projector ready");
    projector.run(shutdown_signal()).await
}
