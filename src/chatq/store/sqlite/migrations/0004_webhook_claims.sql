-- A claim takes each owner's due deliveries apart, up to what that owner may have in flight,
-- so it seeks by owner: one owner's long backlog is never scanned to find another's.
DROP INDEX webhook_deliveries_due;
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (owner, next_attempt_at, id)
    WHERE status = 'PENDING';
