-- pykratos transactional outbox and inbox (framework/data/tables.py), SQLite.
CREATE TABLE IF NOT EXISTS outbox (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id   VARCHAR(64)  NOT NULL UNIQUE,
    destination  VARCHAR(64)  NOT NULL,
    topic        VARCHAR(255) NOT NULL,
    key          BLOB,
    ordering_key BLOB         NOT NULL,
    body         BLOB         NOT NULL,
    headers      TEXT         NOT NULL,
    state        SMALLINT     NOT NULL DEFAULT 0,
    attempts     INTEGER      NOT NULL DEFAULT 0,
    created_at   DATETIME     NOT NULL,
    sent_at      DATETIME,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (ordering_key, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS ix_outbox_state_sent_at ON outbox (state, sent_at);

CREATE TABLE IF NOT EXISTS inbox (
    consumer     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    applied_at   DATETIME     NOT NULL,
    CONSTRAINT pk_inbox PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS ix_inbox_applied_at ON inbox (applied_at);
