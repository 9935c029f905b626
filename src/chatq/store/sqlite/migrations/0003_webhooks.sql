-- Webhooks (issue 13).

-- Where a request's terminal event goes: the create's webhook_url, or else its key's default,
-- fixed when it is submitted.
ALTER TABLE requests ADD COLUMN webhook_url TEXT;
ALTER TABLE api_keys ADD COLUMN webhook_url TEXT;

-- The outbox: one row per finished request that has a webhook, inserted in the transaction of
-- its terminal transition, so no crash can lose the event. id is the webhook-id (msg_...),
-- the same on every attempt. A PENDING row is due at next_attempt_at; a worker that claims it
-- leases it (lease_owner) by moving next_attempt_at past the attempt's timeout, so the row of
-- a worker that died becomes due again by itself.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY,
    request_id      TEXT NOT NULL UNIQUE,
    owner           TEXT NOT NULL,
    url             TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    created_at      REAL NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL,
    window_start    REAL NOT NULL,
    lease_owner     TEXT,
    delivered_at    REAL,
    last_error      TEXT
) STRICT;

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);

-- Every attempt of a delivery: when, and the receiver's status code or what went wrong.
CREATE TABLE webhook_attempts (
    request_id  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    at          REAL NOT NULL,
    status_code INTEGER,
    error       TEXT,
    PRIMARY KEY (request_id, attempt)
) STRICT, WITHOUT ROWID;

-- Each owner's signing secret (whsec_...), created on first use; after a rotation the one
-- before is kept, and signs too for an overlap after rotated_at.
CREATE TABLE webhook_secrets (
    owner      TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    previous   TEXT,
    rotated_at REAL
) STRICT;

-- URLs that answered 410 Gone: no more deliveries to them for that owner until the URL is
-- set again (named by a create, set on a key, or a delivery to it replayed).
CREATE TABLE webhook_disabled (
    owner       TEXT NOT NULL,
    url         TEXT NOT NULL,
    disabled_at REAL NOT NULL,
    PRIMARY KEY (owner, url)
) STRICT;
