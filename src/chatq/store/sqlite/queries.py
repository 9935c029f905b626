"""The SQLite dialect's own statements, under the names PostgreSQL's use for the same verbs.

Placeholders are written $1 like the shared statements (store/queries.py); the store runs
them as SQLite's ?1.
"""

from chatq.store import queries as shared
from chatq.store.queries import CLAIMED_COLUMNS, DELIVERY_COLUMNS

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    applied_at REAL NOT NULL
) STRICT
"""

# A whole batch in one statement: $1 is a JSON array with an array per request, each its
# columns in the order below, every value placed by the store (store.py's _Batch): seq
# (what AUTOINCREMENT would give it: after LAST_SEQ), vtime (QUEUE_HEAD, LANE_END), and
# only the requests that the idempotency keys already held let in. One statement, not one
# per request: a statement releases Python's GIL while it runs, so a batch's thousand rows
# go in while the event loop reads the next batch, where a statement per row handed the GIL
# back and forth with it per row (docs/benchmarks.md section 14). No ON CONFLICT: a key
# the store took for free is an error, which rolls the batch back, never a row dropped.
SUBMIT = """
INSERT INTO requests
    (seq, id, owner, model, status, request, request_hash, idempotency_key, created_at,
     stream, webhook_url, metadata, priority, vtime)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, 'CREATED', value ->> 4,
    value ->> 5, value ->> 6, $2, value ->> 7, value ->> 8, value ->> 9, value ->> 10,
    value ->> 11
FROM json_each($1)
"""
# The seq AUTOINCREMENT would give the next row, less one: past every seq the table has
# ever held (sqlite_sequence), and so past every row in it.
LAST_SEQ = """
SELECT max(
    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'requests'), 0),
    coalesce((SELECT max(seq) FROM requests), 0)
)
"""
# A new request's vtime: the end of its owner's lane of waiting requests, or the head of the
# queue if that is later (see PostgreSQL's SUBMIT), plus one. Each statement names the WHERE
# of the partial index it is meant to use, as the index writes it (migration 0007; SQLite
# uses a partial index only then): the head from requests_waiting, the end of the owner's
# lane, read backwards, from requests_owner_unfinished. No row: 0.
QUEUE_HEAD = """
SELECT vtime FROM requests WHERE status = 'CREATED' AND vtime >= 0 ORDER BY vtime LIMIT 1
"""
LANE_END = """
SELECT vtime FROM requests
WHERE owner = $1 AND status IN ('CREATED', 'IN_PROGRESS') AND created_at > 0
    AND status = 'CREATED'
ORDER BY vtime DESC LIMIT 1
"""

# A list filter's metadata.KEY=VALUE (store/queries.py list_query): any key, unquoted.
METADATA_MATCH = (
    "EXISTS (SELECT 1 FROM json_each(metadata) AS m WHERE m.key = {key} AND m.value = {value})"
)

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
