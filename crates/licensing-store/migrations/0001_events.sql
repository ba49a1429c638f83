-- The event store: one row per event, append-only.
--
-- global_position comes from a sequence, assigned inside a short critical section together with
-- the transaction id (xid), so positions increase with xids. Followers read only events whose xid
-- is below the oldest transaction still running; those can never be joined later by an event with
-- a smaller position (ADR 0005). Positions may have holes (rolled-back appends); never gaps that fill.
CREATE SEQUENCE events_global_position_seq AS bigint;

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
    xid             xid8        NOT NULL,
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

-- Appends events, atomically, to one or more streams. Each event names its stream and version; the
-- first version given for a stream must follow the stream's current version. Returns one row per
-- event; no row at all when every event id exists already (an idempotent re-append).
-- Raises LS001 when the transaction wrote before (the critical section must assign the xid),
-- LS002 on a version conflict (DETAIL: the stream id), LS004 when only some event ids exist.
-- One call per transaction: a second call would take positions out of xid order.
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
    v_existing bigint;
    v_current  bigint;
    r          record;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'licensing_append must be the first write of its transaction'
            USING ERRCODE = 'LS001';
    END IF;
    SELECT count(*) INTO v_existing FROM events e WHERE e.event_id = ANY (p_event_ids);
    IF v_existing = cardinality(p_event_ids) THEN
        RETURN;
    ELSIF v_existing > 0 THEN
        RAISE EXCEPTION 'some of the event ids were appended before, not all'
            USING ERRCODE = 'LS004';
    END IF;
    FOR r IN
        SELECT s.stream_id, min(s.version) AS first_version
          FROM unnest(p_stream_ids, p_versions) AS s(stream_id, version)
         GROUP BY s.stream_id
    LOOP
        SELECT coalesce(max(e.stream_version), 0) INTO v_current
          FROM events e WHERE e.stream_id = r.stream_id;
        IF v_current <> r.first_version - 1 THEN
            RAISE EXCEPTION 'stream % is at version %, expected %',
                    r.stream_id, v_current, r.first_version - 1
                USING ERRCODE = 'LS002', DETAIL = r.stream_id;
        END IF;
    END LOOP;

    -- Critical section: the xid and the positions are taken together, so positions follow xids.
    -- A session lock, released right after the insert, not at commit: commits stay concurrent.
    PERFORM pg_advisory_lock(7419251408);
    BEGIN
        RETURN QUERY
        INSERT INTO events AS e (global_position, stream_id, stream_version, event_id, event_type,
                                 schema_version, payload, metadata, xid)
        SELECT nextval('events_global_position_seq'), n.stream_id, n.version, n.event_id,
               n.event_type, n.schema_version, n.payload, n.metadata, pg_current_xact_id()
          FROM unnest(p_stream_ids, p_versions, p_event_ids, p_types, p_schema_versions,
                      p_payloads, p_metadata)
               WITH ORDINALITY AS n(stream_id, version, event_id, event_type, schema_version,
                                    payload, metadata, ord)
        RETURNING e.event_id, e.global_position;
        PERFORM pg_advisory_unlock(7419251408);
    EXCEPTION WHEN OTHERS THEN
        PERFORM pg_advisory_unlock(7419251408);
        RAISE;
    END;
    PERFORM pg_notify('licensing_events', '');
END $$;

-- Followers' checkpoints, each updated in the same transaction as the follower's own work.
CREATE TABLE checkpoints (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
