"""The SQLite dialect's own statements, under the names PostgreSQL's use for the same verbs.

Placeholders are written $1 like the shared statements (store/queries.py); the store runs
them as SQLite's ?1.
"""

from chatq.store import queries as shared
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

# The terminal transitions: their usage is counted by the trigger of migration 0005, which
# fires for each row they move, in their transaction.
FAIL = shared.FAIL
RELEASE_CANCELLED = shared.RELEASE_CANCELLED
RESCUE_CANCELLED = shared.RESCUE_CANCELLED
RESCUE_FAIL = shared.RESCUE_FAIL
CANCEL_WAITING = shared.CANCEL_WAITING

# One result per statement, all of a batch in one transaction.
COMPLETE_MANY = """
UPDATE requests
SET status = 'COMPLETED', completed_at = $1, response = $2, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $3 AND status = 'IN_PROGRESS' AND lease_owner = $4
"""

# Up to $4 due deliveries, oldest due first, at most $6 of an owner less what $5 (a JSON
# object, owner to count) says this worker has in flight for it. The owners come from a skip
# scan of the index, and each owner's share is walked down its own index range one row at a
# time (SQLite's LIMIT cannot depend on the owner), so a long backlog of one owner is never
# scanned; one writer at a time.
CLAIM_DELIVERIES = f"""
WITH RECURSIVE owners(owner) AS (
    SELECT min(owner) FROM webhook_deliveries WHERE status = 'PENDING'
    UNION ALL
    SELECT (SELECT min(d.owner) FROM webhook_deliveries AS d
            WHERE d.status = 'PENDING' AND d.owner > o.owner)
    FROM owners AS o WHERE o.owner IS NOT NULL
),
room(owner, free) AS (
    SELECT o.owner, $6 - coalesce((SELECT b.value FROM json_each($5) AS b WHERE b.key = o.owner), 0)
    FROM owners AS o WHERE o.owner IS NOT NULL
),
picks(owner, free, n, at, id) AS (
    SELECT r.owner, r.free, 1, d.next_attempt_at, d.id
    FROM room AS r JOIN webhook_deliveries AS d ON d.id = (
        SELECT e.id FROM webhook_deliveries AS e
        WHERE e.status = 'PENDING' AND e.owner = r.owner AND e.next_attempt_at <= $1
        ORDER BY e.next_attempt_at, e.id LIMIT 1)
    WHERE r.free > 0
    UNION ALL
    SELECT p.owner, p.free, p.n + 1, d.next_attempt_at, d.id
    FROM picks AS p JOIN webhook_deliveries AS d ON d.id = (
        SELECT e.id FROM webhook_deliveries AS e
        WHERE e.status = 'PENDING' AND e.owner = p.owner AND e.next_attempt_at <= $1
            AND (e.next_attempt_at, e.id) > (p.at, p.id)
        ORDER BY e.next_attempt_at, e.id LIMIT 1)
    WHERE p.n < p.free
)
UPDATE webhook_deliveries SET lease_owner = $2, next_attempt_at = $3
WHERE id IN (SELECT id FROM picks ORDER BY at, id LIMIT $4)
RETURNING {DELIVERY_COLUMNS}
"""
