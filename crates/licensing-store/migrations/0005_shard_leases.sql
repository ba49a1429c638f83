-- Shard leases (ADR 0016): which processor consumes which command queue. Times come from this
-- database's clock only, so that processors on different machines agree on expiry.
CREATE TABLE processor_members (
    holder     text        PRIMARY KEY,
    -- The processor's LICENSING_SHARDS: live members must agree.
    shards     integer     NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE shard_leases (
    shard      integer     PRIMARY KEY,
    holder     text        NOT NULL,
    expires_at timestamptz NOT NULL
);
