-- table api_keys
CREATE TABLE api_keys ( id TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL, secret_hash TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL ) STRICT;
-- table meta
CREATE TABLE meta ( name TEXT PRIMARY KEY, value BLOB NOT NULL ) STRICT;
-- table request_text
CREATE TABLE request_text ( request_id TEXT NOT NULL, run INTEGER NOT NULL, start INTEGER NOT NULL, text TEXT NOT NULL, PRIMARY KEY (request_id, run, start) ) STRICT, WITHOUT ROWID;
-- table requests
CREATE TABLE requests ( seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, model TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('CREATED', 'IN_PROGRESS', 'COMPLETED', 'FAILED')), request TEXT NOT NULL, request_hash TEXT NOT NULL, idempotency_key TEXT, created_at REAL NOT NULL, started_at REAL, completed_at REAL, failed_at REAL, response TEXT, error_message TEXT, deliveries INTEGER NOT NULL DEFAULT 0, lease_owner TEXT, lease_expires_at REAL , runs INTEGER NOT NULL DEFAULT 0, stream INTEGER NOT NULL DEFAULT 0, cancel_requested_at REAL) STRICT;
-- table schema_migrations
CREATE TABLE schema_migrations ( version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL ) STRICT;
-- index requests_cancel_requested
CREATE INDEX requests_cancel_requested ON requests (lease_owner) WHERE status = 'IN_PROGRESS' AND cancel_requested_at IS NOT NULL;
-- index requests_finished
CREATE INDEX requests_finished ON requests (coalesce(completed_at, failed_at)) WHERE status IN ('COMPLETED', 'FAILED');
-- index requests_leased
CREATE INDEX requests_leased ON requests (lease_expires_at) WHERE status = 'IN_PROGRESS';
-- index requests_owner_idempotency
CREATE UNIQUE INDEX requests_owner_idempotency ON requests (owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- index requests_owner_seq
CREATE INDEX requests_owner_seq ON requests (owner, seq);
-- index requests_waiting
CREATE INDEX requests_waiting ON requests (seq) WHERE status = 'CREATED';
