//! PostgreSQL dropping every connection mid-load: the pool reconnects, and no acknowledged append is lost.

use std::time::Duration;

use licensing_store::AppendOutcome;
use licensing_store::testing::{TestDatabase, server_url};
use tokio_postgres::NoTls;
use uuid::Uuid;

use crate::{event, eventually};

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
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut acknowledged: Vec<Uuid> = Vec::new();
                let mut version = 0;
                let mut failures = 0;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
                while tokio::time::Instant::now() < deadline {
                    let e = event("x", version);
                    let id = e.event_id;
                    match store.append(&format!("w{w}"), version, vec![e]).await {
                        Ok(AppendOutcome::Appended { .. }) => {
                            acknowledged.push(id);
                            version += 1;
                        }
                        // The connection died after the commit: the retry of the same event is a duplicate.
                        Ok(AppendOutcome::Conflict { .. }) => {
                            version = store
                                .load(&format!("w{w}"))
                                .await
                                .map(|l| l.len() as i64)
                                .unwrap_or(version);
                        }
                        Ok(AppendOutcome::Duplicate) => unreachable!("fresh ids"),
                        Err(e) => {
                            assert!(e.is_unavailable(), "only unavailability is expected: {e}");
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                (acknowledged, failures)
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = terminate_connections(&db.name).await;
    assert!(killed > 0, "there were connections to kill");
    tokio::time::sleep(Duration::from_millis(800)).await;
    terminate_connections(&db.name).await;

    let mut acknowledged = Vec::new();
    for writer in writers {
        let (ids, _failures) = writer.await.unwrap();
        acknowledged.extend(ids);
    }
    // The pool serves again.
    eventually("an append after the outage", 10, || async {
        matches!(
            store.append("after", 0, vec![event("x", 0)]).await,
            Ok(AppendOutcome::Appended { .. })
        )
        .then_some(())
    })
    .await;
    let client = store.client().await.unwrap();
    let stored: Vec<Uuid> = client
        .query("SELECT event_id FROM events", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing: Vec<_> = acknowledged
        .iter()
        .filter(|id| !stored.contains(id))
        .collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(
        acknowledged.len() > 20,
        "the writers made progress ({})",
        acknowledged.len()
    );
}
