//! The store handle: a pool of connections that survives PostgreSQL restarts, and migrations.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::error::StoreError;
use crate::tls::{MakeRustls, split_sslmode};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::Notify;

/// The embedded migrations, applied in order, each once.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "events", include_str!("../migrations/0001_events.sql")),
    (2, "inbox", include_str!("../migrations/0002_inbox.sql")),
    (
        3,
        "evidence",
        include_str!("../migrations/0003_evidence.sql"),
    ),
    (
        4,
        "dead_letters",
        include_str!("../migrations/0004_dead_letters.sql"),
    ),
    (
        5,
        "shard_leases",
        include_str!("../migrations/0005_shard_leases.sql"),
    ),
    (
        6,
        "refusal_budget",
        include_str!("../migrations/0006_refusal_budget.sql"),
    ),
    (
        7,
        "inbox_rows",
        include_str!("../migrations/0007_inbox_rows.sql"),
    ),
];

/// Shortest time between two notifications to followers.
const NOTIFY_INTERVAL: Duration = Duration::from_millis(10);

/// Serialises migrations between processes starting at once.
pub(crate) const MIGRATION_LOCK: i64 = 7_419_251_409;

/// How to connect.
#[derive(Clone)]
pub struct StoreConfig {
    /// A `postgres://` URL or a key=value connection string (`LICENSING_DATABASE_URL`).
    pub database_url: String,
    /// Connections in the pool.
    pub max_connections: usize,
    /// Longest wait for a connection from the pool (or a new one) before reporting "unavailable".
    pub connect_timeout: Duration,
    /// `statement_timeout` of every session, when set: no statement hangs for ever.
    pub statement_timeout: Option<Duration>,
    /// `lock_timeout` of every session, when set: a lock held elsewhere fails the statement
    /// (SQLSTATE `55P03`, retried) instead of stalling it.
    pub lock_timeout: Option<Duration>,
    /// `idle_in_transaction_session_timeout` of every session, when set: a transaction whose
    /// client went silent (cut off by the network, say) is ended by the server after this long,
    /// so that its locks do not hold up whoever takes its work over.
    pub idle_in_transaction_timeout: Option<Duration>,
    /// A PEM file of CA certificates trusted besides the system's roots when `sslmode` is
    /// `require`, `verify-ca` or `verify-full` (`LICENSING_DATABASE_CA`).
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password.
        f.debug_struct("StoreConfig")
            .field("database_url", &"[redacted]")
            .field("max_connections", &self.max_connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("lock_timeout", &self.lock_timeout)
            .field(
                "idle_in_transaction_timeout",
                &self.idle_in_transaction_timeout,
            )
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

impl StoreConfig {
    /// Defaults for a URL: 16 connections, 5 s timeout.
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            max_connections: 16,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
            lock_timeout: None,
            idle_in_transaction_timeout: None,
            ca_file: None,
        }
    }

    /// Reads `LICENSING_DATABASE_URL` (required) and `LICENSING_DATABASE_CA` through `get`, with
    /// the other fields at their defaults. An error names the variable.
    pub fn from_lookup(
        get: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, (&'static str, String)> {
        let url = get("LICENSING_DATABASE_URL").ok_or((
            "LICENSING_DATABASE_URL",
            "is required but not set (e.g. postgres://postgres@127.0.0.1:5432/licensing)"
                .to_owned(),
        ))?;
        let mut config = Self::new(url);
        config.ca_file = get("LICENSING_DATABASE_CA").map(PathBuf::from);
        // Checked now, so that a bad URL or CA file stops the service at start-up.
        let (url, mode) = split_sslmode(&config.database_url)
            .map_err(|e| ("LICENSING_DATABASE_URL", e.to_string()))?;
        url.parse::<tokio_postgres::Config>().map_err(|e| {
            (
                "LICENSING_DATABASE_URL",
                format!("invalid database URL: {e}"),
            )
        })?;
        MakeRustls::new(mode.mode, config.ca_file.as_deref())
            .map_err(|e| ("LICENSING_DATABASE_CA", e.to_string()))?;
        Ok(config)
    }
}

/// Whether every host of `config` is this machine: a Unix socket, `localhost` or a loopback
/// address.
fn all_local(config: &tokio_postgres::Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        tokio_postgres::config::Host::Tcp(name) => {
            name == "localhost"
                || name
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        tokio_postgres::config::Host::Unix(_) => true,
    })
}

/// The event store. Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    pub(crate) pg_config: tokio_postgres::Config,
    pub(crate) tls: MakeRustls,
    notifier: Arc<Notifier>,
}

/// Wakes followers after appends commit, outside the appending transaction (ADR 0005): many
/// commits in a row coalesce into one `NOTIFY`.
#[derive(Default)]
struct Notifier {
    pending: Notify,
    started: OnceLock<()>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The connection string may hold a password: show only where it points.
        f.debug_struct("Store")
            .field("hosts", &self.pg_config.get_hosts().len())
            .field("dbname", &self.pg_config.get_dbname())
            .field("status", &self.pool.status())
            .finish()
    }
}

impl Store {
    /// Builds the pool. No connection is opened until one is needed, so this succeeds while
    /// PostgreSQL is down; connections broken by a restart are replaced on their next use.
    pub fn connect(config: &StoreConfig) -> Result<Self, StoreError> {
        let (database_url, ssl_mode) = split_sslmode(&config.database_url)?;
        let tls = MakeRustls::new(ssl_mode.mode, config.ca_file.as_deref())?;
        let mut pg_config: tokio_postgres::Config = database_url
            .parse()
            .map_err(|e| StoreError::Database(format!("invalid database URL: {e}")))?;
        if !ssl_mode.named && !all_local(&pg_config) {
            tracing::warn!(
                "LICENSING_DATABASE_URL names no sslmode and points beyond this machine: libpq's \
                 default, prefer, accepts any certificate and falls back to plain text, so anyone \
                 on the path can read or alter what is stored; name sslmode=verify-full (or \
                 verify-ca with LICENSING_DATABASE_CA), or sslmode=disable on a trusted network"
            );
        }
        pg_config.connect_timeout(config.connect_timeout);
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("licensing");
        }
        let timeouts: Vec<String> = [
            ("statement_timeout", config.statement_timeout),
            ("lock_timeout", config.lock_timeout),
            (
                "idle_in_transaction_session_timeout",
                config.idle_in_transaction_timeout,
            ),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.map(|v| format!("-c {name}={}", v.as_millis())))
        .collect();
        if !timeouts.is_empty() {
            let options = pg_config
                .get_options()
                .into_iter()
                .map(str::to_owned)
                .chain(timeouts)
                .collect::<Vec<_>>()
                .join(" ");
            pg_config.options(&options);
        }
        let manager = Manager::from_config(
            pg_config.clone(),
            tls.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.max_connections)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| StoreError::Database(format!("cannot build the pool: {e}")))?;
        Ok(Self {
            pool,
            pg_config,
            tls,
            notifier: Arc::default(),
        })
    }

    /// Tells followers that new events were committed. Returns at once; the `NOTIFY` is sent by a
    /// background task on its own connection.
    pub(crate) fn events_committed(&self) {
        self.notifier.started.get_or_init(|| {
            let notifier = self.notifier.clone();
            let pool = self.pool.clone();
            tokio::spawn(async move {
                loop {
                    notifier.pending.notified().await;
                    let sent = match pool.get().await {
                        Ok(client) => client
                            .batch_execute("NOTIFY licensing_events")
                            .await
                            .map_err(|e| e.to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    if let Err(error) = sent {
                        tracing::debug!(%error, "cannot notify followers; they will poll");
                    }
                    // At most one NOTIFY per interval: commits in between share the next one.
                    tokio::time::sleep(NOTIFY_INTERVAL).await;
                }
            });
        });
        self.notifier.pending.notify_one();
    }

    /// A pooled connection.
    pub async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// Applies the migrations not applied yet. Safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<Vec<i32>, StoreError> {
        self.migrate_up_to(i32::MAX).await
    }

    /// Applies the migrations not applied yet up to `last` included (tests of a migration start
    /// from the schema before it).
    pub(crate) async fn migrate_up_to(&self, last: i32) -> Result<Vec<i32>, StoreError> {
        let mut client = self.client().await?;
        // One transaction under the lock, from the first statement: services started together on
        // a fresh database wait for each other instead of racing to create the same objects.
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS licensing_migrations (
                 version    integer     PRIMARY KEY,
                 name       text        NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS.iter().filter(|(v, _, _)| *v <= last) {
            let done = tx
                .query_opt(
                    "SELECT 1 FROM licensing_migrations WHERE version = $1",
                    &[version],
                )
                .await?
                .is_some();
            if !done {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO licensing_migrations (version, name) VALUES ($1, $2)",
                    &[version, name],
                )
                .await?;
                applied.push(*version);
            }
        }
        tx.commit().await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "event store migrated");
        }
        self.ensure_evidence_partitions(time::OffsetDateTime::now_utc())
            .await?;
        Ok(applied)
    }

    /// Runs idempotent DDL of a service's own tables (`CREATE … IF NOT EXISTS`) in one transaction
    /// under the migration lock, so that processes started together never race on it.
    pub async fn ensure_schema(&self, sql: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        tx.batch_execute(sql).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The latest migration known to this build.
    pub fn schema_version() -> i32 {
        MIGRATIONS.last().map_or(0, |(v, _, _)| *v)
    }

    /// Whether PostgreSQL answers and the schema is migrated (for readiness probes).
    pub async fn ready(&self) -> Result<(), StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt("SELECT max(version) FROM licensing_migrations", &[])
            .await?;
        let version: Option<i32> = row.and_then(|r| r.get(0));
        if version < Some(Self::schema_version()) {
            return Err(StoreError::Database(format!(
                "schema at version {version:?}, this build needs {}",
                Self::schema_version()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_never_shows_the_database_password() {
        let config = StoreConfig::new("postgres://licensing:hunter2-hunter2@db:5432/licensing");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        let store = Store::connect(&config).unwrap();
        assert!(!format!("{store:?}").contains("hunter2"));
    }

    #[test]
    fn only_this_machine_is_local() {
        let local = |url: &str| all_local(&url.parse().unwrap());
        assert!(local("postgres://u@127.0.0.1:5432/x"));
        assert!(local("postgres://u@localhost/x"));
        assert!(local("host=/var/run/postgresql dbname=x"));
        assert!(local("host=::1 dbname=x"));
        assert!(!local("postgres://u@db.internal:5432/x"));
        assert!(!local("postgres://u@10.0.0.5/x"));
        assert!(!local("host=127.0.0.1,db.internal dbname=x"));
    }
}
