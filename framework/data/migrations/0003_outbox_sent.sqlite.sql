-- pykratos outbox: the relay moves each confirmed row from outbox to outbox_sent
-- (framework/data/claims.py), kept there for its retention. Moves the SENT rows (state 1)
-- an older relay left in outbox; safe to run again, and to resume after an interruption.
CREATE TABLE IF NOT EXISTS outbox_sent (
    id           INTEGER      NOT NULL PRIMARY KEY,
    message_id   VARCHAR(64)  NOT NULL,
    destination  VARCHAR(64)  NOT NULL,
    topic        VARCHAR(255) NOT NULL,
    key          BLOB,
    ordering_key BLOB         NOT NULL,
    body         BLOB         NOT NULL,
    headers      TEXT         NOT NULL,
    attempts     INTEGER      NOT NULL,
    created_at   DATETIME     NOT NULL,
    sent_at      DATETIME     NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outbox_sent_sent_at ON outbox_sent (sent_at);
INSERT OR IGNORE INTO outbox_sent (id, message_id, destination, topic, key, ordering_key, body,
                                   headers, attempts, created_at, sent_at)
SELECT id, message_id, destination, topic, key, ordering_key, body, headers, attempts,
       created_at, coalesce(sent_at, created_at)
FROM outbox WHERE state = 1;
-- Only what was copied (a relay may have marked more rows meanwhile).
DELETE FROM outbox WHERE state = 1 AND id IN (SELECT id FROM outbox_sent);
