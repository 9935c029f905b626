-- trigger requests_usage
CREATE TRIGGER requests_usage AFTER UPDATE OF status ON requests FOR EACH ROW WHEN OLD.status IN ('CREATED', 'IN_PROGRESS') AND NEW.status IN ('COMPLETED', 'FAILED') BEGIN INSERT INTO usage (owner, day, model, requests, prompt_tokens, completion_tokens, total_tokens, cost) SELECT NEW.owner, date(coalesce(NEW.completed_at, NEW.failed_at), 'unixepoch'), NEW.model, 1, CASE WHEN json_type(r, '$.usage.prompt_tokens') IN ('integer', 'real') THEN CAST(max(0, min(json_extract(r, '$.usage.prompt_tokens'), 2147483647)) AS INTEGER) ELSE 0 END, CASE WHEN json_type(r, '$.usage.completion_tokens') IN ('integer', 'real') THEN CAST(max(0, min(json_extract(r, '$.usage.completion_tokens'), 2147483647)) AS INTEGER) ELSE 0 END, CASE WHEN json_type(r, '$.usage.total_tokens') IN ('integer', 'real') THEN CAST(max(0, min(json_extract(r, '$.usage.total_tokens'), 2147483647)) AS INTEGER) ELSE 0 END, CASE WHEN json_type(r, '$.usage.cost.total_cost') IN ('integer', 'real') THEN json_extract(r, '$.usage.cost.total_cost') ELSE 0.0 END FROM (SELECT CASE WHEN json_valid(NEW.response) THEN NEW.response END AS r) WHERE true ON CONFLICT (owner, day, model) DO UPDATE SET requests = usage.requests + excluded.requests, prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens, completion_tokens = usage.completion_tokens + excluded.completion_tokens, total_tokens = usage.total_tokens + excluded.total_tokens, cost = usage.cost + excluded.cost; END;
-- table api_keys
CREATE TABLE api_keys ( id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL , webhook_url TEXT, admin INTEGER NOT NULL DEFAULT 0, max_unfinished INTEGER CHECK (max_unfinished >= 0), rpm INTEGER CHECK (rpm >= 0)) STRICT;
-- table key_rates
CREATE TABLE key_rates ( key_id TEXT PRIMARY KEY, tat REAL NOT NULL ) STRICT;
-- table meta
CREATE TABLE meta ( name TEXT PRIMARY KEY, value BLOB NOT NULL ) STRICT;
-- table request_text
CREATE TABLE request_text ( request_id TEXT NOT NULL, run INTEGER NOT NULL, start INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (request_id, run, start) ) STRICT, WITHOUT ROWID;
-- table requests
CREATE TABLE requests ( seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('CREATED', 'IN_PROGRESS', 'COMPLETED', 'FAILED')), request TEXT NOT NULL, request_hash TEXT NOT NULL, idempotency_key TEXT, created_at REAL NOT NULL, started_at REAL, completed_at REAL, failed_at REAL, response TEXT, error_message TEXT, deliveries INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_expires_at REAL , runs INTEGER NOT NULL DEFAULT 0, stream INTEGER NOT NULL DEFAULT 0, cancel_requested_at REAL, webhook_url TEXT, metadata TEXT, priority INTEGER NOT NULL DEFAULT 0, vtime INTEGER NOT NULL DEFAULT 0) STRICT;
-- table schema_migrations
CREATE TABLE schema_migrations ( version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL ) STRICT;
-- table usage
CREATE TABLE usage ( owner TEXT NOT NULL, day TEXT NOT NULL, model TEXT NOT NULL, requests INTEGER NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, total_tokens INTEGER NOT NULL, cost REAL NOT NULL, PRIMARY KEY (owner, day, model) ) STRICT, WITHOUT ROWID;
-- table webhook_attempts
CREATE TABLE webhook_attempts ( request_id TEXT NOT NULL, attempt INTEGER NOT NULL, at REAL NOT NULL, status_code INTEGER, error TEXT, PRIMARY KEY (request_id, attempt) ) STRICT, WITHOUT ROWID;
-- table webhook_deliveries
CREATE TABLE webhook_deliveries ( id TEXT PRIMARY KEY, request_id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, url TEXT NOT NULL, event_type TEXT NOT NULL, created_at REAL NOT NULL, status TEXT NOT NULL CHECK (status IN ('PENDING', 'DELIVERED', 'FAILED')), attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL, window_start REAL NOT NULL, lease_owner TEXT, delivered_at REAL, last_error TEXT ) STRICT;
-- table webhook_disabled
CREATE TABLE webhook_disabled ( owner TEXT NOT NULL, url TEXT NOT NULL, disabled_at REAL NOT NULL, PRIMARY KEY (owner, url) ) STRICT;
-- table webhook_secrets
CREATE TABLE webhook_secrets ( owner TEXT PRIMARY KEY, secret TEXT NOT NULL, previous TEXT, rotated_at REAL ) STRICT;
-- index requests_cancel_requested
CREATE INDEX requests_cancel_requested ON requests (lease_owner) WHERE status = 'IN_PROGRESS' AND cancel_requested_at IS NOT NULL;
-- index requests_finished
CREATE INDEX requests_finished ON requests (coalesce(completed_at, failed_at)) WHERE status IN ('COMPLETED', 'FAILED');
-- index requests_leased
CREATE INDEX requests_leased ON requests (lease_expires_at) WHERE status = 'IN_PROGRESS';
-- index requests_owner_idempotency
CREATE UNIQUE INDEX requests_owner_idempotency ON requests (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- index requests_owner_next
CREATE INDEX requests_owner_next ON requests (owner, seq - priority * 17592186044416) WHERE status = 'CREATED' AND seq > 0;
-- index requests_owner_seq
CREATE INDEX requests_owner_seq ON requests (owner, seq);
-- index requests_owner_status_seq
CREATE INDEX requests_owner_status_seq ON requests (owner, status, seq);
-- index requests_owner_unfinished
CREATE INDEX requests_owner_unfinished ON requests (owner, vtime) WHERE status IN ('CREATED', 'IN_PROGRESS') AND created_at > 0;
-- index requests_waiting
CREATE INDEX requests_waiting ON requests (vtime, seq) WHERE status = 'CREATED' AND vtime >= 0;
-- index webhook_deliveries_created
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
-- index webhook_deliveries_due
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (owner, next_attempt_at, id) WHERE status = 'PENDING';
