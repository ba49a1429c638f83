-- The bytes stored per UTC day for records of refused callback requests (issue: hostile input),
-- shared by every processor, so that the daily ceiling holds however many run; and how many
-- records were dropped past it. A refusal is an inbound exchange without a command
-- (direction 'in', message_id NULL).
CREATE TABLE evidence_refusal_days (
    day     date   PRIMARY KEY,
    bytes   bigint NOT NULL DEFAULT 0,
    dropped bigint NOT NULL DEFAULT 0
);
-- Refusals expire sooner than genuine exchanges: their deletion reads them by time.
CREATE INDEX evidence_exchanges_refusals ON evidence_exchanges (at)
    WHERE direction = 'in' AND message_id IS NULL;
