//! Per-test databases, cloned from a migrated template so that tests run in parallel, each on its
//! own store. Only with the `testing` feature.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

use crate::store::{Store, StoreConfig};

/// The server the tests use: `LICENSING_TEST_DATABASE_URL`, else the local PostgreSQL as `postgres`.
pub fn server_url() -> String {
    std::env::var("LICENSING_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

const TEMPLATE: &str = "licensing_test_template";
static TEMPLATE_READY: OnceCell<()> = OnceCell::const_new();
static NEXT: AtomicU32 = AtomicU32::new(0);

fn url_for(database: &str) -> String {
    let base = server_url();
    match base.rfind('/') {
        Some(i) if base[..i].contains("://") && !base[..i].ends_with('/') => {
            format!("{}/{database}", &base[..i])
        }
        _ => format!("{base} dbname={database}"),
    }
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&server_url(), NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {} is reachable: {e}", server_url()));
    tokio::spawn(connection);
    client
}

/// Creates (once per process, under a lock shared by all test processes) the migrated template,
/// replacing it when it was built by another schema, and drops databases left by dead test processes.
async fn ensure_template() {
    TEMPLATE_READY
        .get_or_init(|| async {
            let admin = admin().await;
            admin
                .execute("SELECT pg_advisory_lock(7419251410)", &[])
                .await
                .expect("template lock");
            let stale = admin
                .query(
                    "SELECT datname FROM pg_database WHERE datname LIKE 'licensing_test_%' \
                     AND datname <> $1",
                    &[&TEMPLATE],
                )
                .await
                .expect("list test databases");
            for row in stale {
                let name: String = row.get(0);
                let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
                let alive =
                    pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
                if !alive {
                    let _ = admin
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                }
            }
            let exists = admin
                .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE])
                .await
                .expect("look up the template")
                .is_some();
            let current = if exists {
                let template =
                    Store::connect(&StoreConfig::new(url_for(TEMPLATE))).expect("template pool");
                let ok = template.ready().await.is_ok()
                    && schema_fingerprint(&template).await == expected_fingerprint();
                template.pool.close();
                ok
            } else {
                false
            };
            if !current {
                admin
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)"))
                    .await
                    .expect("drop the old template");
                admin
                    .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                    .await
                    .expect("create the template");
                let template =
                    Store::connect(&StoreConfig::new(url_for(TEMPLATE))).expect("template pool");
                template.migrate().await.expect("migrate the template");
                set_fingerprint(&template).await;
                template.pool.close();
            }
            admin
                .execute("SELECT pg_advisory_unlock(7419251410)", &[])
                .await
                .expect("template unlock");
        })
        .await;
}

/// The migrations' text, hashed: a template built from other SQL is rebuilt.
fn expected_fingerprint() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for (_, _, sql) in crate::store::MIGRATIONS {
        sql.hash(&mut hasher);
    }
    format!("{:016x}", hasher.finish())
}

async fn schema_fingerprint(store: &Store) -> String {
    let Ok(client) = store.client().await else {
        return String::new();
    };
    client
        .query_opt("SELECT fingerprint FROM licensing_test_fingerprint", &[])
        .await
        .ok()
        .flatten()
        .map(|r| r.get(0))
        .unwrap_or_default()
}

async fn set_fingerprint(store: &Store) {
    let client = store.client().await.expect("template connection");
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS licensing_test_fingerprint (fingerprint text NOT NULL); \
             DELETE FROM licensing_test_fingerprint; \
             INSERT INTO licensing_test_fingerprint VALUES ('{}')",
            expected_fingerprint()
        ))
        .await
        .expect("record the template fingerprint");
}

/// A fresh, migrated database of its own, dropped when the test process ends (or by the next run).
#[derive(Debug)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl TestDatabase {
    /// Clones the template into a new database.
    pub async fn create() -> Self {
        ensure_template().await;
        Self::new_database(&format!("TEMPLATE {TEMPLATE}")).await
    }

    /// A new database of this process's, created with `options` (`TEMPLATE …` or nothing).
    async fn new_database(options: &str) -> Self {
        let name = format!(
            "licensing_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\" {options}"))
            .await
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        let url = url_for(&name);
        Self { name, url }
    }

    /// A new database migrated only up to migration `version`: a migration's test writes rows
    /// in the schema before it, then runs [`Store::migrate`].
    pub async fn create_at(version: i32) -> Self {
        let Self { name, url } = Self::new_database("").await;
        let store = Store::connect(&StoreConfig::new(url.clone())).expect("test store");
        store
            .migrate_up_to(version)
            .await
            .unwrap_or_else(|e| panic!("migrate {name} up to {version}: {e}"));
        Self { name, url }
    }

    /// A store on this database with a small pool (tests run many databases at once).
    pub fn store(&self) -> Store {
        self.store_with_connections(4)
    }

    /// A store on this database with a pool of `connections`.
    pub fn store_with_connections(&self, connections: usize) -> Store {
        let mut config = StoreConfig::new(self.url.clone());
        config.max_connections = connections;
        Store::connect(&config).expect("test store")
    }
}
