-- The processor's inbox, written in the same transaction as the append it guards.

-- Queue messages already processed, with the reply they got (a redelivery gets the same reply).
CREATE TABLE inbox_messages (
    message_id   uuid        PRIMARY KEY,
    reply        jsonb       NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Callbacks already decided, by content key (D9), with the reply they got.
CREATE TABLE inbox_callbacks (
    content_key text        PRIMARY KEY,
    message_id  uuid        NOT NULL,
    reply       jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- Nonces of verified callbacks, remembered until they expire (D5).
CREATE TABLE inbox_nonces (
    nonce      text        PRIMARY KEY,
    expires_at timestamptz NOT NULL
);
CREATE INDEX inbox_nonces_expires_at ON inbox_nonces (expires_at);
