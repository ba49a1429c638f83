-- The event store: one row per event, append-only.
--
-- global_position = (id of the appending transaction << 16) + index within that transaction.
-- Transaction ids grow in the order transactions start writing, and a reader exposes only events
-- of transactions older than the oldest one still running (the snapshot's xmin). Every event that
-- can still commit therefore has a larger position than any event already exposed: the order is
-- gap-safe without serialising appends (ADR 0005). Positions are sparse, never contiguous.
CREATE TABLE events (
    global_position bigint      NOT NULL,
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL,
    event_type      text        NOT NULL,
    schema_version  integer     NOT NULL,
    payload         jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT events_stream_version_key PRIMARY KEY (stream_id, stream_version),
    CONSTRAINT events_global_position_key UNIQUE (global_position),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);

-- Append-only: no update, no delete, ever.
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only' USING ERRCODE = 'LS003';
END $$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_append_only();

-- The first position a transaction with this id may use.
CREATE FUNCTION licensing_position_base(p_xid xid8) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$ SELECT (p_xid::text::bigint) << 16 $$;

-- The position below which no event can commit any more, as seen by the current snapshot.
CREATE FUNCTION licensing_safe_position() RETURNS bigint
LANGUAGE sql STABLE AS $$ SELECT licensing_position_base(pg_snapshot_xmin(pg_current_snapshot())) $$;

-- Appends events, atomically, to one or more streams. Each event names its stream and version; the
-- first version given for a stream must follow the stream's current version. Returns one row per
-- event; no row at all when every event id exists already (an idempotent re-append).
-- Raises LS002 on a version conflict (DETAIL: the stream id), LS004 when only some event ids
-- exist, LS005 past 65536 events. At most one call per transaction (a second one would reuse
-- the transaction's positions and fail on their uniqueness).
CREATE FUNCTION licensing_append(
    p_stream_ids      text[],
    p_versions        bigint[],
    p_event_ids       uuid[],
    p_types           text[],
    p_schema_versions integer[],
    p_payloads        jsonb[],
    p_metadata        jsonb[]
) RETURNS TABLE (out_event_id uuid, out_position bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_base     bigint;
    v_inserted bigint;
    v_stream   text;
BEGIN
    IF cardinality(p_event_ids) > 65536 THEN
        RAISE EXCEPTION 'more than 65536 events in one append' USING ERRCODE = 'LS005';
    END IF;
    v_base := licensing_position_base(pg_current_xact_id());
    v_base := licensing_position_base(pg_current_xact_id());
    -- The common case, one event, without the set machinery (measurably cheaper).
    IF cardinality(p_event_ids) = 1 THEN
        IF p_versions[1] > 1 AND NOT EXISTS (
            SELECT 1 FROM events e
             WHERE e.stream_id = p_stream_ids[1] AND e.stream_version = p_versions[1] - 1
        ) THEN
            RAISE EXCEPTION 'stream % is not at the expected version', p_stream_ids[1]
                USING ERRCODE = 'LS002', DETAIL = p_stream_ids[1];
        END IF;
        RETURN QUERY
        INSERT INTO events AS e (global_position, stream_id, stream_version, event_id, event_type,
                                 schema_version, payload, metadata)
        VALUES (v_base, p_stream_ids[1], p_versions[1], p_event_ids[1], p_types[1],
                p_schema_versions[1], p_payloads[1], p_metadata[1])
        ON CONFLICT (event_id) DO NOTHING
        RETURNING e.event_id, e.global_position;
        RETURN;
    END IF;

    -- Each stream's first new version must follow an existing one (or be 1); a version taken
    -- already fails on the primary key. Together: the stream is exactly at the expected version.
    SELECT s.stream_id INTO v_stream
      FROM (SELECT stream_id, min(version) AS first_version
              FROM unnest(p_stream_ids, p_versions) AS u(stream_id, version)
             GROUP BY stream_id) AS s
     WHERE s.first_version > 1
       AND NOT EXISTS (SELECT 1 FROM events e
                        WHERE e.stream_id = s.stream_id AND e.stream_version = s.first_version - 1)
     LIMIT 1;
    IF v_stream IS NOT NULL THEN
        RAISE EXCEPTION 'stream % is not at the expected version', v_stream
            USING ERRCODE = 'LS002', DETAIL = v_stream;
    END IF;

    RETURN QUERY
    INSERT INTO events AS e (global_position, stream_id, stream_version, event_id, event_type,
                             schema_version, payload, metadata)
    SELECT v_base + n.ord - 1, n.stream_id, n.version, n.event_id, n.event_type,
           n.schema_version, n.payload, n.metadata
      FROM unnest(p_stream_ids, p_versions, p_event_ids, p_types, p_schema_versions,
                  p_payloads, p_metadata)
           WITH ORDINALITY AS n(stream_id, version, event_id, event_type, schema_version,
                                payload, metadata, ord)
    ON CONFLICT (event_id) DO NOTHING
    RETURNING e.event_id, e.global_position;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF v_inserted > 0 AND v_inserted < cardinality(p_event_ids) THEN
        RAISE EXCEPTION 'some of the event ids were appended before, not all'
            USING ERRCODE = 'LS004';
    END IF;
END $$;

-- Followers' checkpoints, each updated in the same transaction as the follower's own work.
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
