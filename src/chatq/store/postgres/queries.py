"""Every SQL statement of the PostgreSQL dialect, named after the store verb that runs it."""

WORK_CHANNEL = "chatq_work"
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('chatq_migrate'))"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
)
"""
APPLIED_MIGRATIONS = "SELECT version, name FROM schema_migrations ORDER BY version"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"

PING = "SELECT 1"
SECRET_INSERT = "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
SECRET_GET = "SELECT value FROM meta WHERE name = $1"

KEY_INSERT = """
INSERT INTO api_keys (id, name, owner, secret_hash, created_at) VALUES ($1, $2, $3, $4, $5)
"""
KEY_OWNER = "SELECT owner FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"
KEY_LIST = "SELECT id, name, owner, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
KEY_REVOKE = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
KEY_COUNT = "SELECT count(*) FROM api_keys"

_SUMMARY_COLUMNS = "seq, id, model, status, created_at, started_at, completed_at, failed_at"
_JOB_COLUMNS = f"{_SUMMARY_COLUMNS}, owner, request_hash, response, error_message"

# One statement for a whole group-committed batch. A row whose (owner, idempotency_key) is
# taken, by an earlier request or by an earlier row of the same batch, is not inserted and not
# returned; the store then reads the row that holds the key.
SUBMIT_MANY = f"""
INSERT INTO requests (id, owner, model, status, request, request_hash, idempotency_key, created_at)
SELECT id, owner, model, 'CREATED', request, request_hash, idempotency_key, $7
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
    AS new(id, owner, model, request, request_hash, idempotency_key)
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {_JOB_COLUMNS}
"""
GET_BY_IDEMPOTENCY_KEY = f"""
SELECT {_JOB_COLUMNS} FROM requests WHERE owner = $1 AND idempotency_key = $2
"""
GET = f"SELECT {_JOB_COLUMNS} FROM requests WHERE owner = $1 AND id = $2"

LIST_FIRST_PAGE = f"""
SELECT {_SUMMARY_COLUMNS} FROM requests WHERE owner = $1 ORDER BY seq DESC LIMIT $2
"""
LIST_PAGE_BEFORE = f"""
SELECT {_SUMMARY_COLUMNS} FROM requests WHERE owner = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3
"""

# SKIP LOCKED: concurrent workers take disjoint batches instead of queueing on each other.
# The picked rows are updated by primary key, not joined back to the table: after a burst of
# submits, statistics that say nothing is waiting made the join a nested loop over every
# waiting row times the batch (8 s per claim with 200,000 waiting; test_postgres_plans.py).
CLAIM = """
WITH picked AS (
    SELECT seq FROM requests WHERE status = 'CREATED'
    ORDER BY seq LIMIT $4
    FOR UPDATE SKIP LOCKED
)
UPDATE requests AS r
SET status = 'IN_PROGRESS', started_at = $1, lease_owner = $2, lease_expires_at = $3,
    deliveries = r.deliveries + 1
WHERE r.seq = ANY(ARRAY(SELECT seq FROM picked)) AND r.status = 'CREATED'
RETURNING r.seq, r.id, r.model, r.request, r.deliveries
"""
RENEW = """
UPDATE requests SET lease_expires_at = $1
WHERE lease_owner = $2 AND status = 'IN_PROGRESS'
"""
# Joined on the ids alone; the plans seen hash this worker's leased rows against the batch.
# Do not add `r.id = ANY($2)`: after five runs PostgreSQL switches to a generic plan that
# guesses 10 ids, and with that clause it re-scanned the unnest for every row (256 x 256),
# which made a batch of 256 take 15 ms instead of 5 and held the queue drain to 0.6 of
# pgqueuer's (test_postgres_plans.py).
COMPLETE_MANY = """
UPDATE requests AS r
SET status = 'COMPLETED', completed_at = $1, response = done.response, lease_owner = NULL,
    lease_expires_at = NULL
FROM unnest($2::text[], $3::text[]) AS done(id, response)
WHERE r.id = done.id AND r.status = 'IN_PROGRESS' AND r.lease_owner = $4
RETURNING r.id
"""
FAIL = """
UPDATE requests
SET status = 'FAILED', failed_at = $1, error_message = $2, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $3 AND status = 'IN_PROGRESS' AND lease_owner = $4
"""
RELEASE = """
UPDATE requests
SET status = 'CREATED', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
    deliveries = deliveries - 1
WHERE id = ANY($1::text[]) AND status = 'IN_PROGRESS' AND lease_owner = $2
"""
RESCUE_FAIL = """
UPDATE requests
SET status = 'FAILED', failed_at = $1, lease_owner = NULL, lease_expires_at = NULL,
    error_message = 'gave up: the worker running this request was lost '
                    || deliveries || ' times'
WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND deliveries >= $2
"""
RESCUE_REQUEUE = """
UPDATE requests
SET status = 'CREATED', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL
WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1
"""
PURGE = """
DELETE FROM requests
WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < $1
"""
