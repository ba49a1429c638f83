//! The projector's tables, created at start (idempotent): the license view and the outbound jobs.

use licensing_store::{Store, StoreError};

/// The license view's table, under a given name (the live one, or one being rebuilt).
pub(crate) fn view_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (
    license            text        NOT NULL,
    sandbox            boolean     NOT NULL,
    status             text        NOT NULL,
    product_id         text,
    order_id           text,
    expire_at          timestamptz,
    expire_raw         text,
    frozen_since       timestamptz,
    expected_release   timestamptz,
    activation_status  text        NOT NULL,
    activation_error   text,
    last_usage_day     bigint,
    last_heartbeat_day bigint,
    market_status      text,
    drift              boolean     NOT NULL DEFAULT false,
    version            bigint      NOT NULL,
    updated_at         timestamptz NOT NULL,
    PRIMARY KEY (license, sandbox)
);
CREATE INDEX IF NOT EXISTS {name}_status ON {name} (status, license);
CREATE INDEX IF NOT EXISTS {name}_expire ON {name} (expire_at);"
    )
}

const JOBS: &str = "
-- Calls owed to the marketplace. The view follower creates, updates and deletes them from the
-- license's state; the outbound worker takes due ones with FOR UPDATE SKIP LOCKED.
CREATE TABLE IF NOT EXISTS outbound_jobs (
    license          text        NOT NULL,
    kind             text        NOT NULL CHECK (kind IN ('activate', 'heartbeat')),
    day              bigint      NOT NULL DEFAULT 0,
    attempt          integer     NOT NULL,
    account          text,
    real_effect_time text,
    tries            integer     NOT NULL DEFAULT 0,
    last_error       text,
    due_at           timestamptz NOT NULL DEFAULT now(),
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (license, kind)
);
CREATE INDEX IF NOT EXISTS outbound_jobs_due ON outbound_jobs (due_at);
-- The usage report's IP address, sent with the heartbeat; since when an activation waits for the
-- buyer's claim (parked after LICENSING_ACTIVATION_CLAIM_DAYS).
ALTER TABLE outbound_jobs ADD COLUMN IF NOT EXISTS ip text;
ALTER TABLE outbound_jobs ADD COLUMN IF NOT EXISTS claim_since timestamptz;
-- The correlation id of the request that made the call owed: the call's outcome carries it, so one
-- id follows a license change from the HTTP request to the marketplace and back.
ALTER TABLE outbound_jobs ADD COLUMN IF NOT EXISTS correlation_id uuid;
";

/// Creates the projector's tables if they do not exist.
pub(crate) async fn ensure(store: &Store) -> Result<(), StoreError> {
    store
        .ensure_schema(&format!("{}\n{JOBS}", view_table("license_views")))
        .await
}
