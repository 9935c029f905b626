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
# vtime: the end of the owner's lane of waiting requests, or the head of the queue if that is
# later (see PostgreSQL's SUBMIT). Each statement names the WHERE of the partial index it is
# meant to use, as the index writes it (migration 0007; SQLite uses a partial index only
# then): the head from requests_waiting, the end of the owner's lane, read backwards, from
# requests_owner_unfinished.
SUBMIT = f"""
INSERT INTO requests
    (id, owner, model, status, request, request_hash, idempotency_key, created_at, stream,
     webhook_url, priority, vtime)
VALUES ($1, $2, $3, 'CREATED', $4, $5, $6, $7, $8, $9, $10, 1 + max(
    coalesce((
        SELECT vtime FROM requests WHERE status = 'CREATED' AND vtime >= 0
        ORDER BY vtime LIMIT 1
    ), 0),
    coalesce((
        SELECT vtime FROM requests
        WHERE owner = $2 AND status IN ('CREATED', 'IN_PROGRESS') AND created_at > 0
            AND status = 'CREATED'
        ORDER BY vtime DESC LIMIT 1
    ), 0)
))
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {JOB_COLUMNS}
"""

# Fair share, as PostgreSQL's CLAIM: the first $4 waiting rows by (vtime, seq) are turns,
# and each owner's turns go to its own waiting requests by (priority DESC, seq). SQLite has
# no LATERAL and takes no LIMIT from an outer row, so each owner's requests are walked one
# index seek at a time (requests_owner_next's key: seq - priority * 2^44), as many as its
# turns. One writer at a time: SQLite needs no SKIP LOCKED.
_NEXT_KEY = "seq - priority * 17592186044416"
CLAIM = f"""
WITH RECURSIVE turns(owner, n) AS (
    SELECT owner, count(*) FROM (
        SELECT owner FROM requests WHERE status = 'CREATED' AND vtime >= 0
        ORDER BY vtime, seq LIMIT $4
    )
    GROUP BY owner
), walk(owner, n, k, seq, next_key) AS (
    SELECT t.owner, t.n, 1, r.seq, r.seq - r.priority * 17592186044416
    FROM turns AS t JOIN requests AS r ON r.seq = (
        SELECT seq FROM requests WHERE owner = t.owner AND status = 'CREATED' AND seq > 0
        ORDER BY {_NEXT_KEY} LIMIT 1
    )
    UNION ALL
    SELECT w.owner, w.n, w.k + 1, r.seq, r.seq - r.priority * 17592186044416
    FROM walk AS w JOIN requests AS r ON r.seq = (
        SELECT seq FROM requests
        WHERE owner = w.owner AND status = 'CREATED' AND seq > 0 AND {_NEXT_KEY} > w.next_key
        ORDER BY {_NEXT_KEY} LIMIT 1
    )
    WHERE w.k < w.n
)
UPDATE requests
SET status = 'IN_PROGRESS', started_at = $1, lease_owner = $2, lease_expires_at = $3,
    deliveries = deliveries + 1, runs = runs + 1
WHERE seq IN (SELECT seq FROM walk)
RETURNING {CLAIMED_COLUMNS}
"""

# ---- limits (store/admission.py), in the submit's transaction: one writer at a time, so
# nothing else changes what they read before the batch commits.
UNFINISHED_COUNT = """
SELECT count(*) FROM (
    SELECT 1 FROM requests
    WHERE owner = $1 AND status IN ('CREATED', 'IN_PROGRESS') AND created_at > 0 LIMIT $2
)
"""
KEY_RATE = "SELECT tat FROM key_rates WHERE key_id = $1"

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
