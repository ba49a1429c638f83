-- Dead letters (ADR 0014): every command parked in the dead-letter queue, kept here by the
-- processor's dead-letter keeper so that operators can read and re-drive it. One row per parking
-- (a command parked again after a re-drive is a new row); a re-drive records who and when.
CREATE TABLE dead_letters (
    id             uuid        PRIMARY KEY,
    message_id     text        NOT NULL,
    correlation_id text,
    -- Why it was parked: the processor's failure header, or the broker's own reason.
    reason         text        NOT NULL,
    -- What the body says, when it is a command envelope.
    license        text,
    kind           text,
    body           bytea       NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    redriven_at    timestamptz,
    redriven_by    text
);
CREATE INDEX dead_letters_parked_at ON dead_letters (parked_at);
CREATE INDEX dead_letters_waiting ON dead_letters (parked_at) WHERE redriven_at IS NULL;
