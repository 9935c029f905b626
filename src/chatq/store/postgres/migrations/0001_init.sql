-- chatq schema, PostgreSQL dialect. Timestamps are unix seconds (double precision).

CREATE TABLE meta (
    name  text PRIMARY KEY,
    value bytea NOT NULL
);

CREATE TABLE api_keys (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    owner       text NOT NULL,
    secret_hash text NOT NULL UNIQUE,
    created_at  double precision NOT NULL,
    revoked_at  double precision
);

-- seq orders the queue (oldest first) and the list (newest first) and is the keyset cursor.
-- request and response are text, not jsonb: they are returned exactly as stored.
CREATE TABLE requests (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text NOT NULL UNIQUE,
    owner            text NOT NULL,
    model            text NOT NULL,
    status           text NOT NULL
                     CHECK (status IN ('CREATED', 'IN_PROGRESS', 'COMPLETED', 'FAILED')),
    request          text NOT NULL,
    request_hash     text NOT NULL,
    idempotency_key  text,
    created_at       double precision NOT NULL,
    started_at       double precision,
    completed_at     double precision,
    failed_at        double precision,
    response         text,
    error_message    text,
    deliveries       integer NOT NULL DEFAULT 0,
    lease_owner      text,
    lease_expires_at double precision
);

CREATE UNIQUE INDEX requests_owner_idempotency
    ON requests (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX requests_owner_seq ON requests (owner, seq);
CREATE INDEX requests_waiting ON requests (seq) WHERE status = 'CREATED';
CREATE INDEX requests_leased ON requests (lease_expires_at) WHERE status = 'IN_PROGRESS';
CREATE INDEX requests_finished ON requests ((coalesce(completed_at, failed_at)))
    WHERE status IN ('COMPLETED', 'FAILED');

-- Wake idle workers whenever a job becomes claimable: submitted, released or rescued.
-- PostgreSQL folds identical notifications within a transaction into one.
CREATE FUNCTION chatq_notify_work() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatq_work', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER requests_work_available
    AFTER INSERT OR UPDATE OF status ON requests
    FOR EACH ROW WHEN (NEW.status = 'CREATED')
    EXECUTE FUNCTION chatq_notify_work();
