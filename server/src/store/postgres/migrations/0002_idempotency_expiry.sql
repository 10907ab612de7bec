-- Idempotency records expire after the idempotency window: the store's sweep deletes
-- those older than it, by the time of the first send.
CREATE INDEX idem_ts ON idem (ts);
