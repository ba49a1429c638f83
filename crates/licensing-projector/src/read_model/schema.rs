//! The projector's tables, created at start (idempotent): the license view, the outbound jobs, the
//! access schedule, the heartbeat ledger, the probe log and the snapshots of long streams.

use licensing_store::{Store, StoreError};

/// The suffixes of the license view's indexes (`{table}_{suffix}`), renamed with the table when a
/// rebuilt view replaces the live one.
pub(crate) const VIEW_INDEXES: [&str; 7] = [
    "pkey", "status", "expire", "access", "prefix", "order", "product",
];

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
CREATE INDEX IF NOT EXISTS {name}_expire ON {name} (expire_at);
-- Access modes (D22): what the seller's software may do.
ALTER TABLE {name} ADD COLUMN IF NOT EXISTS access_mode text;
ALTER TABLE {name} ADD COLUMN IF NOT EXISTS access_until timestamptz;
ALTER TABLE {name} ADD COLUMN IF NOT EXISTS data_kept_until timestamptz;
CREATE INDEX IF NOT EXISTS {name}_access ON {name} (access_mode, license);
-- The console's search (`q`): a code prefix, an order id or a product.
CREATE INDEX IF NOT EXISTS {name}_prefix ON {name} (license text_pattern_ops);
CREATE INDEX IF NOT EXISTS {name}_order ON {name} (order_id);
CREATE INDEX IF NOT EXISTS {name}_product ON {name} (product_id, status, license);"
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
-- The W3C trace context of the work that made the call owed: the call continues that trace.
ALTER TABLE outbound_jobs ADD COLUMN IF NOT EXISTS trace_parent text;

-- The instant each real license waits for the clock next (expireTime, data_kept_until, a notice
-- threshold; D22, D23). The view follower keeps it equal to the state; the access schedule takes
-- due rows (FOR UPDATE SKIP LOCKED), sends pass_time commands and deletes them.
CREATE TABLE IF NOT EXISTS access_schedule (
    license text        PRIMARY KEY,
    due_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS access_schedule_due ON access_schedule (due_at);

-- The heartbeat ledger (D15): per real license and market day of use, what was owed and what the
-- marketplace answered. The view follower writes it from the heartbeat events.
CREATE TABLE IF NOT EXISTS heartbeat_days (
    license         text        NOT NULL,
    day             bigint      NOT NULL,
    used_at         timestamptz,
    account         text,
    attempts        integer     NOT NULL DEFAULT 0,
    acknowledged_at timestamptz,
    market_status   text,
    last_error      text,
    given_up        boolean     NOT NULL DEFAULT false,
    PRIMARY KEY (license, day)
);
CREATE INDEX IF NOT EXISTS heartbeat_days_unpaid ON heartbeat_days (day) WHERE acknowledged_at IS NULL;

-- The probe log (D21), kept by the view follower from the `probe` stream: each case of each
-- watchdog run (by the event's position in the stream), and each marketplace probe seen.
CREATE TABLE IF NOT EXISTS probe_runs (
    position    bigint      PRIMARY KEY,
    run_at      timestamptz NOT NULL,
    market_day  bigint      NOT NULL,
    case_name   text        NOT NULL,
    passed      boolean     NOT NULL,
    http_status integer,
    answer      text,
    latency_ms  bigint,
    error       text
);
CREATE INDEX IF NOT EXISTS probe_runs_run_at ON probe_runs (run_at);
CREATE TABLE IF NOT EXISTS marketplace_probes (
    position bigint      PRIMARY KEY,
    seen_at  timestamptz NOT NULL,
    license  text        NOT NULL,
    activity text        NOT NULL
);

-- Snapshots of licenses' folded states for as-of reads (ADR 0022), one per thousand events of a
-- stream, written by the view follower. `valid_from` is the latest `recorded_at` of the events
-- folded into the state: it serves an instant only from then on.
CREATE TABLE IF NOT EXISTS license_snapshots (
    stream_id  text        NOT NULL,
    version    bigint      NOT NULL,
    format     integer     NOT NULL,
    valid_from timestamptz NOT NULL,
    state      text        NOT NULL,
    PRIMARY KEY (stream_id, version)
);

-- Console sign-outs (ADR 0015): one session by its nonce, or (nonce NULL) every session of a
-- token issued until signed_out_at; each kept until the sessions it ends would have expired.
CREATE TABLE IF NOT EXISTS console_sign_outs (
    nonce         text        UNIQUE,
    actor         text        NOT NULL,
    signed_out_at timestamptz NOT NULL,
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sign_outs_everywhere ON console_sign_outs (actor) WHERE nonce IS NULL;

-- Views written before access modes existed: their licenses are judged once by the clock, which
-- records their mode (a stream that stays pending keeps the default).
WITH old AS (
    UPDATE license_views SET access_mode = 'pending' WHERE access_mode IS NULL RETURNING license, sandbox
)
INSERT INTO access_schedule (license, due_at)
SELECT license, now() FROM old WHERE NOT sandbox
ON CONFLICT (license) DO NOTHING;
";

/// Creates the projector's tables if they do not exist.
pub(crate) async fn ensure(store: &Store) -> Result<(), StoreError> {
    store
        .ensure_schema(&format!("{}\n{JOBS}", view_table("license_views")))
        .await
}
