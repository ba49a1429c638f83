//! PostgreSQL dropping every connection mid-load: the pool reconnects, and no acknowledged append is lost.

use licensing_store::testing::{TestDatabase, server_url};
use tokio_postgres::NoTls;

use crate::support::{Writers, check_nothing_acknowledged_was_lost};

async fn terminate_connections(database: &str) -> i64 {
    let (admin, connection) = tokio_postgres::connect(&server_url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    let rows = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&database],
        )
        .await
        .unwrap();
    rows.len() as i64
}

#[tokio::test]
async fn acknowledged_appends_survive_all_connections_being_killed() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let writers = Writers::spawn(&store);

    writers.progress(20).await;
    let killed = terminate_connections(&db.name).await;
    assert!(killed > 0, "there were connections to kill");
    // The pool reconnected and the load goes on; then once more.
    writers.progress(20).await;
    terminate_connections(&db.name).await;
    writers.progress(20).await;

    check_nothing_acknowledged_was_lost(&store, writers).await;
}
