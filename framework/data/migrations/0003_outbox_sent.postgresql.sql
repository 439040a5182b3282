-- pykratos outbox: the relay moves each confirmed row from outbox to outbox_sent
-- (framework/data/claims.py), kept there for its retention. Moves the SENT rows (state 1)
-- an older relay left in outbox; safe to run again.
CREATE TABLE IF NOT EXISTS outbox_sent (
    id           BIGINT       PRIMARY KEY,
    message_id   VARCHAR(64)  NOT NULL,
    destination  VARCHAR(64)  NOT NULL,
    topic        VARCHAR(255) NOT NULL,
    key          BYTEA,
    ordering_key BYTEA        NOT NULL,
    body         BYTEA        NOT NULL,
    headers      TEXT         NOT NULL,
    attempts     INTEGER      NOT NULL,
    created_at   TIMESTAMPTZ  NOT NULL,
    sent_at      TIMESTAMPTZ  NOT NULL
);
CREATE INDEX IF NOT EXISTS ix_outbox_sent_sent_at ON outbox_sent (sent_at);
-- One statement: a row is in one table or the other, even next to a running relay.
WITH sent AS (
    DELETE FROM outbox WHERE state = 1
    RETURNING id, message_id, destination, topic, key, ordering_key, body, headers, attempts,
              created_at, sent_at
)
INSERT INTO outbox_sent (id, message_id, destination, topic, key, ordering_key, body, headers,
                         attempts, created_at, sent_at)
SELECT id, message_id, destination, topic, key, ordering_key, body, headers, attempts,
       created_at, coalesce(sent_at, created_at)
FROM sent;
