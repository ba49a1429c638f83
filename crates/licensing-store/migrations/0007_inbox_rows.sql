-- One inbox row per processed command, one replay row per callback (ADR 0021): a callback's
-- content key (D9) moves into its message's row, and its signature key (D5) into its nonce's row.
-- Stop every processor of an earlier release before this runs (docs/operations.md, upgrading).

ALTER TABLE inbox_messages ADD COLUMN content_key text;
UPDATE inbox_messages m SET content_key = c.content_key
  FROM inbox_callbacks c
 WHERE c.message_id = m.message_id;
-- Written together with their message's row, so none is expected; kept if there is one.
INSERT INTO inbox_messages (message_id, reply, processed_at, content_key)
SELECT c.message_id, c.reply, c.recorded_at, c.content_key
  FROM inbox_callbacks c
 WHERE NOT EXISTS (SELECT 1 FROM inbox_messages m WHERE m.message_id = c.message_id);
-- The first answer to each content: only a decided callback's row carries its key.
CREATE UNIQUE INDEX inbox_messages_content_key ON inbox_messages (content_key)
 WHERE content_key IS NOT NULL;
DROP TABLE inbox_callbacks;

-- A nonce's row also holds its callback's signature key (`sig:` and the lower-case hex). A row
-- written before for a signature key alone (the key in `nonce`; no nonce has a colon) gets it in
-- its new column too, and is found by it until it expires.
ALTER TABLE inbox_nonces ADD COLUMN signature_key text;
UPDATE inbox_nonces SET signature_key = nonce WHERE nonce LIKE 'sig:%';
-- Not unique: a signature covers its nonce, so the nonce's key settles races (ADR 0021), and a key
-- expired but not purged yet must not stop a new row from taking it.
CREATE INDEX inbox_nonces_signature_key ON inbox_nonces (signature_key);
