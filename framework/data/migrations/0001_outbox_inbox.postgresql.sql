-- pykratos transactional outbox and inbox (framework/data/tables.py), PostgreSQL.
CREATE TABLE IF NOT EXISTS outbox (
    id           BIGSERIAL PRIMARY KEY,
    message_id   VARCHAR(64)  NOT NULL UNIQUE,
    destination  VARCHAR(64)  NOT NULL,
    topic        VARCHAR(255) NOT NULL,
    key          BYTEA,
    ordering_key BYTEA        NOT NULL,
    body         BYTEA        NOT NULL,
    headers      TEXT         NOT NULL,
    state        SMALLINT     NOT NULL DEFAULT 0,
    attempts     INTEGER      NOT NULL DEFAULT 0,
    created_at   TIMESTAMPTZ  NOT NULL,
    sent_at      TIMESTAMPTZ,
    error        TEXT
);
CREATE INDEX IF NOT EXISTS ix_outbox_pending ON outbox (ordering_key, id) WHERE state = 0;
CREATE INDEX IF NOT EXISTS ix_outbox_state_sent_at ON outbox (state, sent_at);

CREATE TABLE IF NOT EXISTS inbox (
    consumer     VARCHAR(255) NOT NULL,
    message_id   VARCHAR(255) NOT NULL,
    applied_at   TIMESTAMPTZ  NOT NULL,
    CONSTRAINT pk_inbox PRIMARY KEY (consumer, message_id)
);
CREATE INDEX IF NOT EXISTS ix_inbox_applied_at ON inbox (applied_at);
