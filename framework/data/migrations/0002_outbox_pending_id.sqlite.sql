-- pykratos outbox: the relay claims pending rows in id order (framework/data/claims.py).
-- Replaces 0001's per-key pending index, which the relay no longer reads.
CREATE INDEX IF NOT EXISTS ix_outbox_pending_id ON outbox (id) WHERE state = 0;
DROP INDEX IF EXISTS ix_outbox_pending;
