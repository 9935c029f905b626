-- The outbox wakes the workers once per statement, not once per row (issue 13's drain).
-- A completion batch inserts up to 512 deliveries in one statement; a row trigger ran
-- PL/pgSQL and pg_notify for each of them (15-20 us a row, 7-10 ms of a batch's 41-47 ms),
-- all to send the one notification PostgreSQL folds them into. The statement trigger reads
-- its transition table only to see whether anything was inserted: the terminal transitions
-- without a webhook run the same INSERT with no rows (every completion batch of requests
-- that have none, every fail and rescue), and must not wake every deliverer for nothing.
DROP TRIGGER webhook_delivery_due ON webhook_deliveries;

CREATE FUNCTION chatq_notify_webhooks_added() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM added) THEN
        PERFORM pg_notify('chatq_webhook', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_deliveries_added
    AFTER INSERT ON webhook_deliveries
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION chatq_notify_webhooks_added();

-- A delivery made due again (a replay, a retry) still wakes them from a row trigger: a
-- statement trigger cannot have a transition table on an UPDATE OF a column list, and these
-- updates come a row or a few at a time.
CREATE TRIGGER webhook_delivery_due
    AFTER UPDATE OF status ON webhook_deliveries
    FOR EACH ROW WHEN (NEW.status = 'PENDING')
    EXECUTE FUNCTION chatq_notify_webhook();
