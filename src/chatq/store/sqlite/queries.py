"""Every SQL statement of the SQLite dialect, named after the store verb that runs it."""

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
) STRICT
"""
APPLIED_MIGRATIONS = "SELECT version, name FROM schema_migrations ORDER BY version"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)"

PING = "SELECT 1"
SECRET_INSERT = "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING"
SECRET_GET = "SELECT value FROM meta WHERE name = ?"

KEY_INSERT = """
INSERT INTO api_keys (id, name, owner, secret_hash, created_at) VALUES (?, ?, ?, ?, ?)
"""
KEY_OWNER = "SELECT owner FROM api_keys WHERE secret_hash = ? AND revoked_at IS NULL"
KEY_LIST = "SELECT id, name, owner, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
KEY_REVOKE = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
KEY_COUNT = "SELECT count(*) FROM api_keys"

_SUMMARY_COLUMNS = "seq, id, model, status, created_at, started_at, completed_at, failed_at"
_JOB_COLUMNS = f"{_SUMMARY_COLUMNS}, owner, request_hash, response, error_message"

SUBMIT = f"""
INSERT INTO requests (id, owner, model, status, request, request_hash, idempotency_key, created_at)
VALUES (?, ?, ?, 'CREATED', ?, ?, ?, ?)
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {_JOB_COLUMNS}
"""
GET_BY_IDEMPOTENCY_KEY = f"""
SELECT {_JOB_COLUMNS} FROM requests WHERE owner = ? AND idempotency_key = ?
"""
GET = f"SELECT {_JOB_COLUMNS} FROM requests WHERE owner = ? AND id = ?"

LIST_FIRST_PAGE = f"""
SELECT {_SUMMARY_COLUMNS} FROM requests WHERE owner = ? ORDER BY seq DESC LIMIT ?
"""
LIST_PAGE_BEFORE = f"""
SELECT {_SUMMARY_COLUMNS} FROM requests WHERE owner = ? AND seq < ? ORDER BY seq DESC LIMIT ?
"""

CLAIM = """
UPDATE requests
SET status = 'IN_PROGRESS', started_at = :now, lease_owner = :worker,
    lease_expires_at = :expires, deliveries = deliveries + 1
WHERE seq IN (
    SELECT seq FROM requests WHERE status = 'CREATED' ORDER BY seq LIMIT :limit
)
RETURNING seq, id, model, request, deliveries
"""
RENEW = """
UPDATE requests SET lease_expires_at = ?
WHERE lease_owner = ? AND status = 'IN_PROGRESS'
"""
COMPLETE = """
UPDATE requests
SET status = 'COMPLETED', completed_at = ?, response = ?, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = ? AND status = 'IN_PROGRESS' AND lease_owner = ?
"""
FAIL = """
UPDATE requests
SET status = 'FAILED', failed_at = ?, error_message = ?, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = ? AND status = 'IN_PROGRESS' AND lease_owner = ?
"""
RELEASE = """
UPDATE requests
SET status = 'CREATED', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
    deliveries = deliveries - 1
WHERE id = ? AND status = 'IN_PROGRESS' AND lease_owner = ?
"""
RESCUE_FAIL = """
UPDATE requests
SET status = 'FAILED', failed_at = :now, lease_owner = NULL, lease_expires_at = NULL,
    error_message = 'gave up: the worker running this request was lost '
                    || deliveries || ' times'
WHERE status = 'IN_PROGRESS' AND lease_expires_at < :now AND deliveries >= :max_deliveries
"""
RESCUE_REQUEUE = """
UPDATE requests
SET status = 'CREATED', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL
WHERE status = 'IN_PROGRESS' AND lease_expires_at < :now
"""
PURGE = """
DELETE FROM requests
WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < ?
"""
