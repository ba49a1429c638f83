-- The evidence log (D20, ADR 0010): every exchange with the marketplace, byte for byte.
-- One row per HTTP exchange, inbound (a callback and our answer) or outbound (an open-API call and
-- the marketplace's answer). Range-partitioned by month on `at`, so that expiry drops whole months;
-- the default partition catches a row whose month has no partition yet (never dropped by expiry:
-- `licensing-store status` reports it).
CREATE TABLE evidence_exchanges (
    id              uuid        NOT NULL,
    -- Inbound: when the request was received. Outbound: when the request was sent.
    at              timestamptz NOT NULL,
    direction       text        NOT NULL CHECK (direction IN ('in', 'out')),
    -- The license the body names, when it can be read.
    license         text,
    sandbox         boolean     NOT NULL DEFAULT false,
    correlation_id  uuid,
    -- Inbound: the command that carried the callback. Outbound: the outcome command.
    message_id      uuid,
    -- Inbound: the result code answered. Outbound: the disposition of the answer (D16), or the
    -- transport error's kind.
    outcome         text        NOT NULL,
    request         bytea       NOT NULL,
    request_sha256  bytea       GENERATED ALWAYS AS (sha256(request)) STORED,
    -- The request's real size: more than length(request) when it was stored truncated.
    request_size    bigint      NOT NULL,
    request_meta    jsonb       NOT NULL,
    response        bytea,
    response_sha256 bytea       GENERATED ALWAYS AS (sha256(response)) STORED,
    response_meta   jsonb       NOT NULL DEFAULT '{}',
    -- Inbound: when our answer was sent. Outbound: when the answer (or the error) came.
    answered_at     timestamptz,
    -- Inbound callbacks handed over: the processor's reply, committed with its events.
    decision        jsonb,
    PRIMARY KEY (id, at)
) PARTITION BY RANGE (at);

CREATE INDEX evidence_exchanges_license ON evidence_exchanges (license, at);
CREATE INDEX evidence_exchanges_at ON evidence_exchanges (at);
CREATE INDEX evidence_exchanges_id ON evidence_exchanges (id);
CREATE TABLE evidence_exchanges_default PARTITION OF evidence_exchanges DEFAULT;
