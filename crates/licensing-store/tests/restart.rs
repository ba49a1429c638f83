//! A real PostgreSQL restart in the middle of a load. In a test binary of its own, so that no
//! other test shares the server while it restarts. Needs the local cluster and the rights to
//! restart it (`pg_ctlcluster`, as on the development and CI machines).

mod support;

use std::process::Command;

use licensing_store::testing::TestDatabase;

fn restart_postgresql() {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL cluster in /etc/postgresql")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .max_by_key(|v| v.parse::<u32>().unwrap_or(0))
        .expect("a PostgreSQL version directory");
    let status = Command::new("pg_ctlcluster")
        .args([
            "--skip-systemctl-redirect",
            &version,
            "main",
            "restart",
            "-m",
            "fast",
        ])
        .status()
        .expect("pg_ctlcluster runs");
    assert!(status.success(), "pg_ctlcluster restart failed: {status}");
}

#[tokio::test]
async fn acknowledged_appends_survive_a_postgresql_restart() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let writers = support::Writers::spawn(&store);
    writers.progress(20).await;
    tokio::task::spawn_blocking(restart_postgresql)
        .await
        .unwrap();
    // The load goes on after the restart.
    writers.progress(20).await;
    support::check_nothing_acknowledged_was_lost(&store, writers).await;
}
