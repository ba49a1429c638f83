//! `licensing-store`: operate the event store from the command line.
//!
//! ```text
//! licensing-store migrate    apply the pending migrations (the services also do this at start)
//! licensing-store status     schema version, event count, last position, follower checkpoints,
//!                            the evidence log's volume and oldest month
//! ```
//! The database comes from `LICENSING_DATABASE_URL`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use licensing_store::{Store, StoreConfig, StoreError};

/// Operate the event store. The database is read from LICENSING_DATABASE_URL.
#[derive(Debug, Parser)]
#[command(name = "licensing-store")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
enum Command {
    /// Apply the pending migrations (the services also do this at start).
    Migrate,
    /// Schema version, event count, last position, follower checkpoints, evidence volume.
    Status,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let command = Cli::parse().command;
    let config = match StoreConfig::from_lookup(|name| std::env::var(name).ok()) {
        Ok(config) => config,
        Err((name, reason)) => {
            eprintln!("licensing-store: {name} {reason}");
            return ExitCode::from(2);
        }
    };
    let result = match Store::connect(&config) {
        Ok(store) if command == Command::Migrate => migrate(&store).await,
        Ok(store) => status(&store).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("licensing-store: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn migrate(store: &Store) -> Result<(), StoreError> {
    let applied = store.migrate().await?;
    if applied.is_empty() {
        println!("schema is up to date (version {})", Store::schema_version());
    } else {
        let list: Vec<String> = applied.iter().map(i32::to_string).collect();
        println!(
            "applied migrations {} (schema version {})",
            list.join(", "),
            Store::schema_version()
        );
    }
    Ok(())
}

async fn status(store: &Store) -> Result<(), StoreError> {
    let client = store.client().await?;
    let version: Option<i32> = client
        .query_opt("SELECT max(version) FROM licensing_migrations", &[])
        .await
        .ok()
        .flatten()
        .and_then(|r| r.get(0));
    println!(
        "schema version: {} (this build: {})",
        version.map_or("none".to_owned(), |v| v.to_string()),
        Store::schema_version()
    );
    if version.is_none() {
        return Ok(());
    }
    let row = client
        .query_one("SELECT count(*), coalesce(max(global_position), 0), count(DISTINCT stream_id) FROM events", &[])
        .await?;
    let (events, last, streams): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
    println!("events: {events} in {streams} streams, last position {last}");
    for row in client
        .query(
            "SELECT name, position, updated_at FROM checkpoints ORDER BY name",
            &[],
        )
        .await?
    {
        let (name, position, at): (String, i64, time::OffsetDateTime) =
            (row.get(0), row.get(1), row.get(2));
        println!(
            "follower {name}: position {position} ({} behind), updated {at}",
            last - position
        );
    }
    let evidence = store.evidence_volume().await?;
    println!(
        "evidence: {} exchanges, {} bytes, oldest month {}",
        evidence.exchanges,
        evidence.bytes,
        evidence
            .months
            .iter()
            .find(|(_, count)| *count > 0)
            .map_or("none", |(month, _)| month.as_str())
    );
    for (month, count) in &evidence.months {
        println!("evidence month {month}: {count} exchanges");
    }
    if evidence.unpartitioned > 0 {
        println!(
            "evidence outside a month partition: {} exchanges (created at the next upkeep)",
            evidence.unpartitioned
        );
    }
    Ok(())
}
