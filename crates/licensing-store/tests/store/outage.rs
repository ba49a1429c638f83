//! PostgreSQL dropping every connection mid-load: the pool reconnects, and no acknowledged append is lost.

use std::time::Duration;

use licensing_store::testing::{TestDatabase, server_url};
use tokio_postgres::NoTls;

use crate::support::{check_nothing_acknowledged_was_lost, spawn_writers};

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
    let writers = spawn_writers(&store, 4);

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = terminate_connections(&db.name).await;
    assert!(killed > 0, "there were connections to kill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    terminate_connections(&db.name).await;

    check_nothing_acknowledged_was_lost(&store, writers).await;
}
