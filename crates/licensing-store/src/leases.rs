//! Shard leases (ADR 0016): processors share the command queues by leases kept here, timed by
//! PostgreSQL's clock. A tick renews a member and its leases, reads the live members, computes the
//! member's share and takes free shards up to it, in one transaction; giving a shard back is a
//! separate step, taken once the member has drained it.

use std::time::Duration;

use crate::error::StoreError;
use crate::store::Store;

/// What one tick saw and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseTick {
    /// The shards this member holds after the tick, ascending.
    pub held: Vec<i32>,
    /// How many shards this member should hold.
    pub share: usize,
    /// The live members, by name (this one included).
    pub members: Vec<String>,
}

/// Why a tick took nothing.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A live member runs with another shard count.
    #[error(
        "LICENSING_SHARDS is {ours} here but {theirs} for the live processor {member}; every processor must use the same count (docs/operations.md, changing the shard count)"
    )]
    ShardCountDiffers {
        /// This member's count.
        ours: i32,
        /// The other's.
        theirs: i32,
        /// The other member.
        member: String,
    },
}

/// A member's share of `shards` among `members` sorted by name: an even split, the first ones
/// taking one more when it does not divide.
pub fn share_of(shards: usize, members: &[String], holder: &str) -> usize {
    let count = members.len().max(1);
    let index = members.iter().position(|m| m == holder).unwrap_or(count);
    shards / count + usize::from(index < shards % count)
}

fn interval(d: Duration) -> f64 {
    d.as_secs_f64()
}

impl Store {
    /// One lease tick for `holder` running `shards` shards with leases of `lease`: renews the
    /// membership and the leases held, then takes free or expired shards up to the share.
    pub async fn lease_tick(
        &self,
        holder: &str,
        shards: i32,
        lease: Duration,
    ) -> Result<LeaseTick, LeaseError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(StoreError::from)?;
        let secs = interval(lease);
        // A live member with another count wins: this one joins nothing and holds nothing, so
        // that one misconfigured processor cannot stop the others.
        let rows = tx
            .query(
                "SELECT holder, shards FROM processor_members
                 WHERE expires_at > now() AND holder <> $1 ORDER BY holder",
                &[&holder],
            )
            .await
            .map_err(StoreError::from)?;
        let mut members = Vec::with_capacity(rows.len() + 1);
        for row in &rows {
            let (member, theirs): (String, i32) = (row.get(0), row.get(1));
            if theirs != shards {
                return Err(LeaseError::ShardCountDiffers {
                    ours: shards,
                    theirs,
                    member,
                });
            }
            members.push(member);
        }
        members.push(holder.to_owned());
        members.sort_unstable();
        // Members gone for an hour are forgotten (one row per process start otherwise stays).
        tx.execute(
            "DELETE FROM processor_members WHERE expires_at < now() - interval '1 hour'",
            &[],
        )
        .await
        .map_err(StoreError::from)?;
        tx.execute(
            "INSERT INTO processor_members (holder, shards, expires_at)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             ON CONFLICT (holder) DO UPDATE SET shards = excluded.shards, expires_at = excluded.expires_at",
            &[&holder, &shards, &secs],
        )
        .await
        .map_err(StoreError::from)?;
        let mut held: Vec<i32> = tx
            .query(
                "UPDATE shard_leases SET expires_at = now() + make_interval(secs => $2)
                 WHERE holder = $1 AND shard < $3 RETURNING shard",
                &[&holder, &secs, &shards],
            )
            .await
            .map_err(StoreError::from)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let share = share_of(shards as usize, &members, holder);
        if held.len() < share {
            let wanted = (share - held.len()) as i64;
            let taken = tx
                .query(
                    "INSERT INTO shard_leases (shard, holder, expires_at)
                     SELECT s, $1, now() + make_interval(secs => $2)
                     FROM generate_series(0, $3 - 1) AS s
                     WHERE NOT EXISTS (SELECT 1 FROM shard_leases l WHERE l.shard = s AND l.expires_at > now())
                     ORDER BY s LIMIT $4
                     ON CONFLICT (shard) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE shard_leases.expires_at <= now()
                     RETURNING shard",
                    &[&holder, &secs, &shards, &wanted],
                )
                .await
                .map_err(StoreError::from)?;
            held.extend(taken.iter().map(|r| r.get::<_, i32>(0)));
        }
        tx.commit().await.map_err(StoreError::from)?;
        held.sort_unstable();
        Ok(LeaseTick {
            held,
            share,
            members,
        })
    }

    /// Gives `shard` back (after draining it), so that another member may take it at once.
    pub async fn release_shard(&self, holder: &str, shard: i32) -> Result<(), StoreError> {
        self.client()
            .await?
            .execute(
                "DELETE FROM shard_leases WHERE shard = $1 AND holder = $2",
                &[&shard, &holder],
            )
            .await?;
        Ok(())
    }

    /// Leaves: the member's row and any lease it still holds are deleted (a clean stop).
    pub async fn leave_shards(&self, holder: &str) -> Result<(), StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM shard_leases WHERE holder = $1", &[&holder])
            .await?;
        client
            .execute(
                "DELETE FROM processor_members WHERE holder = $1",
                &[&holder],
            )
            .await?;
        Ok(())
    }

    /// Every lease, live or not: `(shard, holder, live)`, by shard (status pages, tests).
    pub async fn shard_leases(&self) -> Result<Vec<(i32, String, bool)>, StoreError> {
        Ok(self
            .client()
            .await?
            .query(
                "SELECT shard, holder, expires_at > now() FROM shard_leases ORDER BY shard",
                &[],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::share_of;

    #[test]
    fn shares_add_up_to_the_shard_count_and_differ_by_one_at_most() {
        for shards in 1..=9usize {
            for count in 1..=5usize {
                let members: Vec<String> = (0..count).map(|i| format!("p{i}")).collect();
                let shares: Vec<usize> = members
                    .iter()
                    .map(|m| share_of(shards, &members, m))
                    .collect();
                assert_eq!(
                    shares.iter().sum::<usize>(),
                    shards,
                    "{shards} over {count}"
                );
                assert!(shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1);
            }
        }
    }
}
