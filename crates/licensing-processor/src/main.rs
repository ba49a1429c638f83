//! `licensing-processor`: applies commands from RabbitMQ to the event store. Settings: see the README.
//!
//! `licensing-processor replay [--from T] [--to T] [--license CODE]` re-runs the stored callbacks
//! through this build and its settings and prints every difference from what was recorded; exits 1
//! on any (docs/evidence.md). It writes nothing.
//!
//! `licensing-processor redrive ID | --all` publishes parked dead letters to the command queue
//! again (docs/operations.md, Dead letters).

use std::sync::{Arc, Mutex};

use anyhow::Context;
use licensing_processor::{Processor, ProcessorConfig};
use licensing_runtime::{Readiness, Settings, init_logging, ops_server, shutdown_signal};
use prometheus_client::registry::Registry;

/// Applies commands from RabbitMQ to the event store. Settings come from LICENSING_* variables
/// (see the README).
#[derive(Debug, clap::Parser)]
#[command(name = "licensing-processor")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Re-run the stored callbacks through this build and its settings against a shadow copy of
    /// state, print every difference from what was recorded, exit 1 on any. Writes nothing. Needs
    /// LICENSING_DATABASE_URL and LICENSING_CALLBACK_KEYS.
    Replay {
        /// Callbacks received at or after (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Callbacks received before (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Only this license's callbacks.
        #[arg(long)]
        license: Option<String>,
    },
    /// Publish a parked dead letter (or every waiting one with --all) to the command queue again;
    /// prints one line per re-driven command. Needs LICENSING_DATABASE_URL and LICENSING_AMQP_*.
    Redrive {
        /// The dead letter's id (GET /v1/dead-letters lists them).
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<String>,
        /// Every dead letter not re-driven yet.
        #[arg(long)]
        all: bool,
    },
}

// One thread: the processor waits on PostgreSQL and RabbitMQ, and handing work between threads
// cost more CPU than it saved (docs/benchmarks.md).
#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let result = match cli.command {
        None => run().await.map(|()| true),
        Some(Command::Replay { from, to, license }) => replay(from, to, license).await,
        Some(Command::Redrive { id, all: _ }) => redrive(id).await,
    };
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("licensing-processor: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Returns whether the replay found no difference.
async fn replay(
    from: Option<String>,
    to: Option<String>,
    license: Option<String>,
) -> anyhow::Result<bool> {
    use time::format_description::well_known::Rfc3339;
    let instant = |name: &str, raw: Option<String>| {
        raw.map(|r| {
            time::OffsetDateTime::parse(&r, &Rfc3339).map_err(|_| {
                anyhow::anyhow!("--{name} must be RFC 3339, like 2026-11-01T00:00:00+08:00")
            })
        })
        .transpose()
    };
    let (from, to) = (instant("from", from)?, instant("to", to)?);
    let settings = Settings::load()?;
    let store_config = licensing_store::StoreConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| anyhow::anyhow!("{name} {reason}"))?;
    let Some(verifier) = settings.callback_verifier()? else {
        anyhow::bail!("LICENSING_CALLBACK_KEYS is required: replay verifies every callback again");
    };
    let (how, nonce_ttl) = licensing_processor::interpretation(&settings)?;
    let options = licensing_processor::ReplayOptions {
        from,
        to,
        license,
        verifier,
        how,
        nonce_ttl: time::Duration::try_from(nonce_ttl)?,
    };
    let store = licensing_store::Store::connect(&store_config)?;
    let report = licensing_processor::replay(&store, &options).await?;
    for line in &report.differences {
        println!("{line}");
    }
    println!(
        "{} callbacks replayed, {} differences{}",
        report.replayed,
        report.differences.len(),
        if report.skipped > 0 {
            format!(
                " ({} answered before a decision that never came, skipped)",
                report.skipped
            )
        } else {
            String::new()
        }
    );
    Ok(report.differences.is_empty())
}

/// Returns whether there was something to re-drive.
async fn redrive(id: Option<String>) -> anyhow::Result<bool> {
    let id = id
        .map(|id| {
            uuid::Uuid::parse_str(&id)
                .map_err(|_| anyhow::anyhow!("{id:?} is not a dead letter's id (a UUID)"))
        })
        .transpose()?;
    let settings = Settings::load()?;
    let store_config = licensing_store::StoreConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| anyhow::anyhow!("{name} {reason}"))?;
    let store = licensing_store::Store::connect(&store_config)?;
    store.migrate().await?;
    let bus = licensing_bus::Bus::connect(licensing_processor::bus_config(&settings)?).await?;
    let result = licensing_processor::redrive(&store, &bus, id, "cli").await;
    bus.close().await;
    let letters = result?;
    for l in &letters {
        println!(
            "redriven {} message {} {} {} ({})",
            l.letter.id,
            l.letter.message_id,
            l.letter.kind.as_deref().unwrap_or("-"),
            l.letter.license.as_deref().unwrap_or("-"),
            l.letter.reason
        );
    }
    if letters.is_empty() {
        eprintln!(
            "licensing-processor: {}",
            match id {
                Some(id) => format!("no waiting dead letter {id} (unknown, or re-driven already)"),
                None => "no dead letter is waiting".to_owned(),
            }
        );
    }
    Ok(!letters.is_empty())
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    init_logging(&settings)?;
    licensing_runtime::init_traces(&settings, "licensing-processor")?;
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
