//! `licensing-processor`: applies commands from RabbitMQ to the event store. Settings: see the README.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use licensing_processor::{Processor, ProcessorConfig};
use licensing_runtime::{Readiness, Settings, init_logging, ops_server, shutdown_signal};
use prometheus_client::registry::Registry;

// One thread: the processor waits on PostgreSQL and RabbitMQ, and handing work between threads
// cost more CPU than it saved (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licensing-processor: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    init_logging(&settings)?;
    let config = ProcessorConfig::from_settings(&settings)?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let processor = Processor::new(config.clone(), &registry)?;
    let readiness: Readiness = Arc::new({
        let processor = processor.clone();
        move || {
            let processor = processor.clone();
            Box::pin(async move { processor.ready().await })
        }
    });
    let (ops_addr, ops) = ops_server(&config.ops_addr, registry, readiness).with_context(|| {
        format!(
            "cannot listen on LICENSING_PROCESSOR_ADDR {}",
            config.ops_addr
        )
    })?;
    let ops_handle = ops.handle();
    tokio::spawn(ops);
    tracing::info!(ops = %ops_addr, queue_prefix = %config.bus.prefix, "licensing-processor ready");
    let cancel = shutdown_signal();
    let result = processor.run(cancel).await;
    ops_handle.stop(true).await;
    result
}
