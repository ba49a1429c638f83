//! `licensing-projector`: license views, the query API, and the outbound activation and heartbeat
//! calls. Settings: see the README.
//!
//! `licensing-projector rebuild` rebuilds the license view from the event store into a new table
//! and swaps it in while the service keeps running (needs only `LICENSING_DATABASE_URL`).
//!
//! `licensing-projector evidence CODE [--from T] [--to T] [--sandbox] --out FILE` writes a
//! license's dispute evidence pack (a `.zip`; docs/evidence.md).
//!
//! `licensing-projector probe-now` sends the saved debug cases once, as the marketplace's probe
//! does (`LICENSING_PROBE_CASES`, `LICENSING_PROBE_URL`, `LICENSING_CALLBACK_KEYS`): a `PASS name`
//! or `FAIL name: reason` line per case; exit 1 if any failed, 2 when it cannot run.

use std::sync::{Arc, Mutex};

use licensing_projector::{Projector, ProjectorConfig};
use licensing_runtime::{Settings, init_logging, shutdown_signal};
use prometheus_client::registry::Registry;

/// License views, the query API, and the outbound activation and heartbeat calls. Settings come
/// from LICENSING_* variables (see the README).
#[derive(Debug, clap::Parser)]
#[command(name = "licensing-projector")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Rebuild the license view from the event store into a new table and swap it in, while the
    /// service keeps running (needs only LICENSING_DATABASE_URL).
    Rebuild,
    /// Write a license's dispute evidence pack (.zip: report.html, exchanges, events, manifest).
    /// Needs LICENSING_DATABASE_URL; LICENSING_CALLBACK_KEYS to verify callback signatures again.
    Evidence {
        /// The license code.
        code: String,
        /// From this instant (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Until this instant (RFC 3339, exclusive).
        #[arg(long)]
        to: Option<String>,
        /// The license's sandbox twin (test traffic).
        #[arg(long)]
        sandbox: bool,
        /// Where to write the .zip.
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Send the saved debug cases once as the marketplace's twice-daily probe does (拨测): one
    /// `PASS name` or `FAIL name: reason` line per case; exit 1 if any failed. Needs
    /// LICENSING_PROBE_CASES, LICENSING_PROBE_URL and LICENSING_CALLBACK_KEYS.
    ProbeNow,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let result = match cli.command {
        None => run().await,
        Some(Command::Rebuild) => rebuild().await,
        Some(Command::ProbeNow) => return probe_now().await,
        Some(Command::Evidence {
            code,
            from,
            to,
            sandbox,
            out,
        }) => evidence(&code, from, to, sandbox, &out).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licensing-projector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn probe_now() -> std::process::ExitCode {
    let settings =
        Settings::load().and_then(|s| licensing_projector::ProbeSettings::from_settings(&s));
    let probe = match settings {
        Ok(Some(probe)) => probe,
        Ok(None) => {
            eprintln!("licensing-projector: set LICENSING_PROBE_CASES and LICENSING_PROBE_URL");
            return std::process::ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("licensing-projector: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let outcomes = probe.run_once().await;
    for outcome in &outcomes {
        println!("{}", outcome.line());
    }
    if outcomes.iter().any(|o| o.failure.is_some()) {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

async fn rebuild() -> anyhow::Result<()> {
    use std::io::Write;
    let settings = Settings::load()?;
    let config = licensing_store::StoreConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| anyhow::anyhow!("{name} {reason}"))?;
    let store = licensing_store::Store::connect(&config)?;
    let mut last_shown = std::time::Instant::now();
    let report = licensing_projector::rebuild(&store, |done, total| {
        if done == total || last_shown.elapsed().as_millis() > 200 {
            const WIDTH: u64 = 40;
            let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
            eprint!(
                "\r[{}{}] {done}/{total} licenses",
                "#".repeat(filled as usize),
                "-".repeat((WIDTH - filled) as usize)
            );
            let _ = std::io::stderr().flush();
            last_shown = std::time::Instant::now();
        }
    })
    .await?;
    eprintln!();
    println!(
        "rebuilt {} licenses from {} events in {:.2} s ({:.0} events/s); the new view is live",
        report.streams,
        report.events,
        report.seconds,
        report.events as f64 / report.seconds.max(1e-9)
    );
    Ok(())
}

async fn evidence(
    code: &str,
    from: Option<String>,
    to: Option<String>,
    sandbox: bool,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use time::format_description::well_known::Rfc3339;
    let instant = |name: &str, raw: Option<String>| {
        raw.map(|r| {
            time::OffsetDateTime::parse(&r, &Rfc3339).map_err(|_| {
                anyhow::anyhow!("--{name} must be RFC 3339, like 2026-11-01T00:00:00+08:00")
            })
        })
        .transpose()
    };
    let window = licensing_projector::Window {
        sandbox,
        from: instant("from", from)?,
        to: instant("to", to)?,
    };
    let settings = Settings::load()?;
    let config = licensing_store::StoreConfig::from_lookup(settings.lookup())
        .map_err(|(name, reason)| anyhow::anyhow!("{name} {reason}"))?;
    let verifier = settings.callback_verifier()?;
    if verifier.is_none() {
        eprintln!(
            "licensing-projector: LICENSING_CALLBACK_KEYS is not set: callback signatures are not verified again"
        );
    }
    let store = licensing_store::Store::connect(&config)?;
    let zip = licensing_projector::evidence_pack(&store, code, &window, verifier.as_ref()).await?;
    std::fs::write(out, &zip)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    println!("wrote {} ({} bytes)", out.display(), zip.len());
    Ok(())
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::load()?;
    init_logging(&settings)?;
    licensing_runtime::init_traces(&settings, "licensing-projector")?;
    let config = ProjectorConfig::from_settings(&settings)?;
    let registry = Arc::new(Mutex::new(Registry::default()));
    let projector = Projector::build(config, registry)?;
    tracing::info!(query = %projector.query_addr, "licensing-projector ready");
    projector.run(shutdown_signal()).await
}
