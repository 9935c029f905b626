-- Webhooks (issue 13).

-- Where a request's terminal event goes: the create's webhook_url, or else its key's default,
-- fixed when it is submitted.
ALTER TABLE requests ADD COLUMN webhook_url text;
ALTER TABLE api_keys ADD COLUMN webhook_url text;

-- The outbox: one row per finished request that has a webhook, inserted in the transaction of
-- its terminal transition, so no crash can lose the event. id is the webhook-id (msg_...),
-- the same on every attempt. A PENDING row is due at next_attempt_at; a worker that claims it
-- leases it (lease_owner) by moving next_attempt_at past the attempt's timeout, so the row of
-- a worker that died becomes due again by itself.
CREATE TABLE webhook_deliveries (
    id              text PRIMARY KEY,
    request_id      text NOT NULL UNIQUE,
    owner           text NOT NULL,
    url             text NOT NULL,
    event_type      text NOT NULL,
    created_at      double precision NOT NULL,
    status          text NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at double precision,
    window_start    double precision NOT NULL,
    lease_owner     text,
    delivered_at    double precision,
    last_error      text
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- Every attempt of a delivery: when, and the receiver's status code or what went wrong.
CREATE TABLE webhook_attempts (
    request_id  text NOT NULL,
    attempt     integer NOT NULL,
    at          double precision NOT NULL,
    status_code integer,
    error       text,
    PRIMARY KEY (request_id, attempt)
);

-- Each owner's signing secret (whsec_...), created on first use; after a rotation the one
-- before is kept, and signs too for an overlap after rotated_at.
CREATE TABLE webhook_secrets (
    owner      text PRIMARY KEY,
    secret     text NOT NULL,
    previous   text,
    rotated_at double precision
);

-- URLs that answered 410 Gone: no more deliveries to them for that owner until the URL is
-- set again (named by a create, set on a key, or a delivery to it replayed).
CREATE TABLE webhook_disabled (
    owner       text NOT NULL,
    url         text NOT NULL,
    disabled_at double precision NOT NULL,
    PRIMARY KEY (owner, url)
);

-- A delivery to make (a new one, or one replayed) wakes the workers at once; each also polls.
CREATE FUNCTION chatq_notify_webhook() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatq_webhook', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_delivery_due
    AFTER INSERT OR UPDATE OF status ON webhook_deliveries
    FOR EACH ROW WHEN (NEW.status = 'PENDING')
    EXECUTE FUNCTION chatq_notify_webhook();
