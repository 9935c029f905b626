"""The SQLite dialect's own statements, under the names PostgreSQL's use for the same verbs.

Placeholders are written $1 like the shared statements (store/queries.py); the store runs
them as SQLite's ?1.
"""

from chatq.store.queries import CLAIMED_COLUMNS, DELIVERY_COLUMNS, JOB_COLUMNS

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
) STRICT
"""

# One request per statement: the store runs it for each request of a group-committed batch,
# all in one transaction (SQLite has no unnest to take a batch in one statement).
SUBMIT = f"""
INSERT INTO requests
    (id, owner, model, status, request, request_hash, idempotency_key, created_at, stream,
     webhook_url, metadata)
VALUES ($1, $2, $3, 'CREATED', $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {JOB_COLUMNS}
"""

# A list filter's metadata.KEY=VALUE (store/queries.py filtered_list): any key, unquoted.
METADATA_MATCH = (
    "EXISTS (SELECT 1 FROM json_each(metadata) AS m WHERE m.key = {key} AND m.value = {value})"
)

# One writer at a time: SQLite needs no SKIP LOCKED.
CLAIM = f"""
UPDATE requests
SET status = 'IN_PROGRESS', started_at = $1, lease_owner = $2, lease_expires_at = $3,
    deliveries = deliveries + 1, runs = runs + 1
WHERE seq IN (
    SELECT seq FROM requests WHERE status = 'CREATED' ORDER BY seq LIMIT $4
)
RETURNING {CLAIMED_COLUMNS}
"""

# The watched requests ($1: a JSON array of ids), for polling them.
WATCHED = """
SELECT id, status, runs, (
    SELECT coalesce(max(start + length(text)), 0) FROM request_text t
    WHERE t.request_id = r.id AND t.run = r.runs
)
FROM requests r WHERE id IN (SELECT value FROM json_each($1))
"""

# One result per statement, all of a batch in one transaction.
COMPLETE_MANY = """
UPDATE requests
SET status = 'COMPLETED', completed_at = $1, response = $2, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $3 AND status = 'IN_PROGRESS' AND lease_owner = $4
"""

# Due deliveries, oldest due first, but none of an owner in $5 (a JSON array: owners this
# worker already has as many deliveries in flight for as it allows); one writer at a time.
CLAIM_DELIVERIES = f"""
UPDATE webhook_deliveries SET lease_owner = $2, next_attempt_at = $3
WHERE id IN (
    SELECT id FROM webhook_deliveries
    WHERE status = 'PENDING' AND next_attempt_at <= $1
        AND owner NOT IN (SELECT value FROM json_each($5))
    ORDER BY next_attempt_at LIMIT $4
)
RETURNING {DELIVERY_COLUMNS}
"""
