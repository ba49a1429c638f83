//! Shard leases (ADR 0016): an even spread, one holder per shard, takeover after expiry, and a
//! member with another shard count kept out.

use std::time::Duration;

use licensing_store::LeaseError;
use licensing_store::testing::TestDatabase;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn members_share_the_shards_evenly_and_never_hold_the_same_one() {
    let db = TestDatabase::create().await;
    let store = db.store();
    // Alone, a member takes every shard.
    let a = store.lease_tick("a", 4, LONG).await.unwrap();
    assert_eq!(a.held, vec![0, 1, 2, 3]);
    assert_eq!(a.share, 4);
    // A second member finds nothing free, but its share is two: the first gives two back.
    let b = store.lease_tick("b", 4, LONG).await.unwrap();
    assert_eq!((b.held.len(), b.share), (0, 2));
    let a = store.lease_tick("a", 4, LONG).await.unwrap();
    assert_eq!(
        (a.held.len(), a.share),
        (4, 2),
        "a tick never gives back by itself"
    );
    store.release_shard("a", 3).await.unwrap();
    store.release_shard("a", 2).await.unwrap();
    let b = store.lease_tick("b", 4, LONG).await.unwrap();
    assert_eq!(b.held, vec![2, 3]);
    let a = store.lease_tick("a", 4, LONG).await.unwrap();
    assert_eq!(a.held, vec![0, 1]);
    assert_eq!(a.members, vec!["a".to_owned(), "b".to_owned()]);
    // Three members over four shards: 2, 1, 1, in name order.
    let c = store.lease_tick("c", 4, LONG).await.unwrap();
    assert_eq!((c.held.len(), c.share), (0, 1));
    let holders = store.shard_leases().await.unwrap();
    assert_eq!(holders.len(), 4);
    assert!(holders.iter().all(|(_, _, live)| *live));
    // Leaving frees the shards at once: the two left share them.
    store.leave_shards("b").await.unwrap();
    let c = store.lease_tick("c", 4, LONG).await.unwrap();
    assert_eq!((c.held.clone(), c.share), (vec![2, 3], 2));
}

#[tokio::test]
async fn an_expired_lease_moves_and_concurrent_takers_never_both_win() {
    let db = TestDatabase::create().await;
    let store = db.store();
    let short = Duration::from_millis(300);
    assert_eq!(
        store.lease_tick("dead", 2, short).await.unwrap().held,
        vec![0, 1]
    );
    let live = store.lease_tick("live", 2, LONG).await.unwrap();
    assert!(
        live.held.is_empty(),
        "nothing moves before expiry: {live:?}"
    );
    let moved = crate::eventually("the dead member's leases to expire", 10, || async {
        let tick = store.lease_tick("live", 2, LONG).await.unwrap();
        (tick.held == vec![0, 1]).then_some(tick)
    })
    .await;
    assert_eq!(
        moved.members,
        vec!["live".to_owned()],
        "the dead one is no longer a member"
    );

    // Eight members race for eight free shards: each shard has exactly one holder.
    store.leave_shards("live").await.unwrap();
    let ticks = futures_util::future::join_all((0..8).map(|i| {
        let store = store.clone();
        async move { store.lease_tick(&format!("m{i}"), 8, LONG).await.unwrap() }
    }))
    .await;
    let mut taken: Vec<i32> = ticks.iter().flat_map(|t| t.held.clone()).collect();
    taken.sort_unstable();
    let unique = taken.len();
    taken.dedup();
    assert_eq!(unique, taken.len(), "a shard taken twice: {ticks:?}");
}

#[tokio::test]
async fn a_member_with_another_shard_count_takes_nothing_and_names_both() {
    let db = TestDatabase::create().await;
    let store = db.store();
    store.lease_tick("four", 4, LONG).await.unwrap();
    let refused = store.lease_tick("two", 2, LONG).await.unwrap_err();
    assert!(matches!(
        refused,
        LeaseError::ShardCountDiffers { ours: 2, theirs: 4, ref member } if member == "four"
    ));
    assert!(
        refused
            .to_string()
            .contains("LICENSING_SHARDS is 2 here but 4"),
        "{refused}"
    );
    // Members gone for an hour are forgotten.
    let client = store.client().await.unwrap();
    client
        .execute(
            "INSERT INTO processor_members VALUES ('long-gone', 4, now() - interval '2 hours')",
            &[],
        )
        .await
        .unwrap();
    store.lease_tick("four", 4, LONG).await.unwrap();
    let gone: i64 = client
        .query_one(
            "SELECT count(*) FROM processor_members WHERE holder = 'long-gone'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(gone, 0);
    // The misconfigured one did not join: the others keep their whole share.
    let four = store.lease_tick("four", 4, LONG).await.unwrap();
    assert_eq!((four.held.len(), four.members.len()), (4, 1));
}
