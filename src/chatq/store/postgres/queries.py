"""The PostgreSQL dialect's own statements, under the names SQLite's use for the same verbs."""

from chatq.store import queries as shared
from chatq.store.queries import (
    CLAIMED_COLUMNS,
    DELIVERY_COLUMNS,
    JOB_COLUMNS,
    OUTBOX_ID,
    OUTBOX_INSERT,
    WEBHOOK_RECORD,
)

# Notified by triggers: work to claim (migration 0001); a status change, a piece of text,
# a cancel to act on (migration 0002).
WORK_CHANNEL = "chatq_work"
STATUS_CHANNEL = "chatq_status"
TEXT_CHANNEL = "chatq_text"
CANCEL_CHANNEL = "chatq_cancel"
WEBHOOK_CHANNEL = "chatq_webhook"  # a delivery is due (migration 0003)
# Concurrent gets, read together (PostgresStore.get): each row's owner is checked by the caller.
GET_MANY = f"SELECT {JOB_COLUMNS} FROM requests WHERE id = ANY($1::text[])"
MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(hashtext('chatq_migrate'))"

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at double precision NOT NULL
)
"""

# One statement for a whole group-committed batch. A row whose (owner, idempotency_key) is
# taken, by an earlier request or by an earlier row of the same batch, is not inserted and not
# returned; the store then reads the row that holds the key.
# Each row's vtime puts it at the end of its owner's lane of waiting requests, or just after
# the head of the queue if that is later (an owner with nothing waiting): so a new owner's
# requests take turns with the backlog of the others instead of queueing behind it (the
# claim, below). Two processes submitting for one owner at once may give two requests the
# same turn; the owner then has one turn more, once.
# The places are those the same requests submitted one at a time would take (SQLite's store
# places them so too): only the rows that will be inserted (fresh: their key held neither by
# the table nor by an earlier row of the batch) count in a lane; and into an empty queue the
# first of them is the head, which every other owner's first request then comes after.
# Each statement names the always-true term of the partial index it is meant to use (see
# migration 0007): the head of the queue from requests_waiting (vtime >= 0), the end of an
# owner's lane from requests_owner_lane (created_at > 0), read backwards. Without
# them the planner read an owner's last row by scanning all of requests_waiting
# (test_postgres_plans.py). MATERIALIZED: once per owner, not once per row.
SUBMIT = f"""
WITH new AS (
    SELECT *, n.idempotency_key IS NULL OR (
        row_number() OVER (PARTITION BY n.owner, n.idempotency_key ORDER BY n.ord) = 1
        AND NOT EXISTS (
            SELECT 1 FROM requests AS r
            WHERE r.owner = n.owner AND r.idempotency_key = n.idempotency_key
        )
    ) AS fresh
    FROM unnest(
        $1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $8::bool[],
        $9::text[], $10::text[], $11::int[]
    ) WITH ORDINALITY
    AS n(id, owner, model, request, request_hash, idempotency_key, stream, webhook_url,
         metadata, priority, ord)
), head AS (
    SELECT min(vtime) AS vtime FROM requests
    WHERE status = 'CREATED' AND vtime >= 0
), lanes AS MATERIALIZED (
    SELECT o.owner, greatest(
        coalesce(head.vtime, CASE WHEN o.owner = (
            SELECT owner FROM new WHERE fresh ORDER BY ord LIMIT 1
        ) THEN 0 ELSE 1 END),
        coalesce((
            SELECT r.vtime FROM requests AS r
            WHERE r.owner = o.owner AND r.status = 'CREATED' AND r.created_at > 0
            ORDER BY r.vtime DESC LIMIT 1
        ), 0)
    ) AS last
    FROM (SELECT DISTINCT owner FROM new) AS o, head
)
INSERT INTO requests
    (id, owner, model, status, request, request_hash, idempotency_key, created_at, stream,
     webhook_url, metadata, priority, vtime)
SELECT new.id, new.owner, model, 'CREATED', request, request_hash, idempotency_key, $7, stream,
    webhook_url, metadata, priority,
    lanes.last + count(*) FILTER (WHERE fresh) OVER (PARTITION BY new.owner ORDER BY ord)
FROM new JOIN lanes ON lanes.owner = new.owner
ORDER BY ord
ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING {JOB_COLUMNS}
"""

# A list filter's metadata.KEY=VALUE (store/queries.py list_query). The create route
# refuses NUL and lone surrogates in metadata, which jsonb could not read.
METADATA_MATCH = "CAST(metadata AS jsonb) ->> CAST({key} AS text) = CAST({value} AS text)"

# Fair share: the first $4 waiting rows by (vtime, seq) are turns; each owner's turns are
# given to its own waiting requests, highest priority first, then oldest (a LATERAL index
# scan per owner in the batch, so rows are touched in proportion to the batch).
# SKIP LOCKED: concurrent workers take disjoint batches instead of queueing on each other.
# The picked rows are updated by primary key, not joined back to the table: after a burst of
# submits, statistics that say nothing is waiting made the join a nested loop over every
# waiting row times the batch (8 s per claim with 200,000 waiting; test_postgres_plans.py).
# The turns come from requests_waiting and the picks from requests_owner_next, each named
# by its always-true term (migration 0007); the update's guard names none, so no partial
# index can serve it: with stale statistics the planner scanned all of one for the picked
# seqs, or all of requests_waiting for each owner's picks (test_postgres_plans.py).
CLAIM = f"""
WITH turns AS (
    SELECT owner, count(*) AS n FROM (
        SELECT owner FROM requests WHERE status = 'CREATED' AND vtime >= 0
        ORDER BY vtime, seq LIMIT $4
    ) AS head
    GROUP BY owner
), picked AS (
    SELECT next.seq FROM turns CROSS JOIN LATERAL (
        SELECT seq FROM requests
        WHERE owner = turns.owner AND status = 'CREATED' AND seq > 0
        ORDER BY priority DESC, seq LIMIT turns.n
        FOR UPDATE SKIP LOCKED
    ) AS next
)
UPDATE requests AS r
SET status = 'IN_PROGRESS', started_at = $1, lease_owner = $2, lease_expires_at = $3,
    deliveries = r.deliveries + 1, runs = r.runs + 1
WHERE r.seq = ANY(ARRAY(SELECT seq FROM picked)) AND r.status = 'CREATED'
RETURNING {CLAIMED_COLUMNS}
"""

# ---- limits (store/admission.py), in the submit's transaction. Locks are taken in one
# order, keys (sorted) then owners (by lock key), before anything is inserted.

# Each rate-limited key's state, its row locked until the transaction ends.
KEY_RATES_LOCK = """
INSERT INTO key_rates (key_id, tat) SELECT k, 0 FROM unnest($1::text[]) AS k
ON CONFLICT (key_id) DO UPDATE SET tat = key_rates.tat
RETURNING key_id, tat
"""
# One transaction at a time per capped owner, so that no two count the same free places.
OWNERS_LOCK = """
SELECT pg_advisory_xact_lock(l) FROM (
    SELECT DISTINCT hashtextextended('chatq owner ' || o, 0) AS l
    FROM unnest($1::text[]) AS o ORDER BY l
) AS locks
"""
# Run after OWNERS_LOCK, in a statement of its own: its snapshot then sees every request
# committed by those that held the lock before. Counted up to the cap, no further, from the
# two status ranges of requests_owner_status_seq (migration 0009).
UNFINISHED_COUNTS = """
SELECT o.owner, (
    SELECT count(*) FROM (
        SELECT 1 FROM requests AS r
        WHERE r.owner = o.owner AND r.status IN ('CREATED', 'IN_PROGRESS')
        LIMIT o.cap
    ) AS counted
)
FROM unnest($1::text[], $2::int[]) AS o(owner, cap)
"""
# Which (owner, idempotency key) pairs of the batch are stored already: their replays are
# never refused.
HELD_KEYS = """
SELECT r.owner, r.idempotency_key FROM requests AS r
JOIN unnest($1::text[], $2::text[]) AS k(owner, idempotency_key)
    ON r.owner = k.owner AND r.idempotency_key = k.idempotency_key
"""

# The watched requests ($1: an array of ids), for polling them while notifications are off.
WATCHED = """
SELECT id, status, runs, (
    SELECT coalesce(max(start + length(text)), 0) FROM request_text t
    WHERE t.request_id = r.id AND t.run = r.runs
)
FROM requests r WHERE id = ANY($1::text[])
"""

# Usage (migration 0005): an upsert of the sums of a CTE `finished` that holds the rows a
# terminal transition moved (owner, model, at: the transition's time, and the tokens and
# cost), one row per (owner, day, model), in key order: concurrent workers take the usage
# rows' locks in one order, so they cannot deadlock on them.
USAGE_ADD = """
INSERT INTO usage AS u
    (owner, day, model, requests, prompt_tokens, completion_tokens, total_tokens, cost)
SELECT owner, to_char(to_timestamp(at) AT TIME ZONE 'UTC', 'YYYY-MM-DD'), model, count(*),
       sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost)
FROM finished
GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
ON CONFLICT (owner, day, model) DO UPDATE SET
    requests = u.requests + excluded.requests,
    prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = u.completion_tokens + excluded.completion_tokens,
    total_tokens = u.total_tokens + excluded.total_tokens,
    cost = u.cost + excluded.cost
"""

# The batch's rows are found by id alone (`r.id = ANY(...)`, an index probe per id), and the
# guard is a join against the batch: no clause on requests alone names status or
# lease_owner. With one that did, the planner started from this worker's leased rows (the
# partial index requests_leased), which a worker that claims ahead of its writes holds by
# the thousand: a hash join over all of them on every batch, and after an ANALYZE taken
# while they were few (the statistics then say 1 row), a nested loop comparing each of them
# with each of the batch (2.6 million comparisons, 0.6 s for one batch of 512, seen with
# auto_explain in bench/webhook_delivery.py's drain). Each clause has its reason:
# - `done` is MATERIALIZED, so its status and lease_owner are values the planner cannot
#   see through to turn the join's guard back into such a clause;
# - the id list is ARRAY(SELECT ...) over it, not $2: an InitPlan, evaluated once. With
#   `r.id = ANY($2)` beside an unnest in the join, the generic plan (after five runs)
#   guessed 10 ids and re-scanned the unnest for every row (256 x 256), which held the
#   queue drain to 0.6 of pgqueuer's (test_postgres_plans.py).
# The webhook deliveries of the completed requests are queued by the same statement (the
# outbox, store/queries.py WEBHOOK_ENQUEUE), so in the same transaction; each id comes back
# with whether it queued one. Their usage is counted by it too, from the rows it moved
# (none for a result whose guard failed): $5..$8 are each result's tokens and cost, read
# from its response by the store (rows.accounted_usage).
COMPLETE_MANY = f"""
WITH done AS MATERIALIZED (
    SELECT *, 'IN_PROGRESS' AS status, $4::text AS lease_owner FROM unnest(
        $2::text[], $3::text[], $5::bigint[], $6::bigint[], $7::bigint[], $8::float8[]
    ) AS done(id, response, prompt_tokens, completion_tokens, total_tokens, cost)
), finished AS (
    UPDATE requests AS r
    SET status = 'COMPLETED', completed_at = $1, response = done.response, lease_owner = NULL,
        lease_expires_at = NULL
    FROM done
    WHERE r.id = ANY(ARRAY(SELECT id FROM done)) AND r.id = done.id
        AND r.status = done.status AND r.lease_owner = done.lease_owner
    RETURNING r.id, r.owner, r.model, r.webhook_url, r.completed_at AS at, done.prompt_tokens,
        done.completion_tokens, done.total_tokens, done.cost
), queued AS (
{OUTBOX_INSERT}
    SELECT {OUTBOX_ID}, id, owner, webhook_url,
           'async_chat_completion.completed', $1, 'PENDING', 0, $1, $1
    FROM finished WHERE webhook_url IS NOT NULL
    ON CONFLICT (id) DO NOTHING
), counted AS ({USAGE_ADD})
SELECT id, webhook_url IS NOT NULL FROM finished
"""


def counted(transition: str) -> str:
    """A transition to FAILED (a guarded UPDATE of requests) that counts the requests it
    failed in usage, in the same statement. A FAILED request has no response, so no tokens.
    It returns a row per request failed, so its command tag ('SELECT n') says how many, as
    the UPDATE's own would."""
    return f"""
WITH finished AS (
{transition.strip()}
    RETURNING owner, model, failed_at AS at, 0 AS prompt_tokens, 0 AS completion_tokens,
        0 AS total_tokens, 0.0 AS cost
), counted AS ({USAGE_ADD})
SELECT 1 FROM finished
"""


# The transitions to FAILED, each counting what it failed (SQLite's run as they are).
FAIL = counted(shared.FAIL)
RELEASE_CANCELLED = counted(shared.RELEASE_CANCELLED)
RESCUE_CANCELLED = counted(shared.RESCUE_CANCELLED)
RESCUE_FAIL = counted(shared.RESCUE_FAIL)
CANCEL_WAITING = counted(shared.CANCEL_WAITING)

# Up to $4 due deliveries, oldest due first, at most $6 of an owner less what $5 (a JSON
# object, owner to count) says this worker has in flight for it. The owners come from a skip
# scan of the index and each owner's share from its own index range, so a long backlog of
# one owner is never scanned; SKIP LOCKED: workers take disjoint batches.
CLAIM_DELIVERIES = f"""
WITH RECURSIVE owners(owner) AS (
    SELECT min(owner) FROM webhook_deliveries WHERE status = 'PENDING'
    UNION ALL
    SELECT (SELECT min(d.owner) FROM webhook_deliveries AS d
            WHERE d.status = 'PENDING' AND d.owner > o.owner)
    FROM owners AS o WHERE o.owner IS NOT NULL
),
picked AS (
    SELECT p.id, p.next_attempt_at FROM owners AS o, LATERAL (
        SELECT d.id, d.next_attempt_at FROM webhook_deliveries AS d
        WHERE d.status = 'PENDING' AND d.owner = o.owner AND d.next_attempt_at <= $1
        ORDER BY d.next_attempt_at, d.id
        LIMIT greatest($6 - coalesce(($5::jsonb ->> o.owner)::integer, 0), 0)
        FOR UPDATE SKIP LOCKED
    ) AS p
    WHERE o.owner IS NOT NULL
    ORDER BY p.next_attempt_at, p.id LIMIT $4
)
UPDATE webhook_deliveries AS d SET lease_owner = $2, next_attempt_at = $3
WHERE d.id = ANY(ARRAY(SELECT id FROM picked)) AND d.status = 'PENDING'
RETURNING {DELIVERY_COLUMNS}
"""

# The shared WEBHOOK_RECORD and WEBHOOK_ATTEMPT in one statement (one round trip, no
# transaction): $1-$6 as WEBHOOK_RECORD's, then the attempt's time and status code.
RECORD_DELIVERY = f"""
WITH recorded AS ({WEBHOOK_RECORD} RETURNING request_id, attempts)
INSERT INTO webhook_attempts (request_id, attempt, at, status_code, error)
SELECT request_id, attempts, CAST($7 AS double precision), CAST($8 AS integer), $6
FROM recorded
"""

# A batch of creates that named their webhook_url set it again: enabled if a 410 disabled it.
WEBHOOK_ENABLE_MANY = """
DELETE FROM webhook_disabled AS w
USING unnest($1::text[], $2::text[]) AS named(owner, url)
WHERE w.owner = named.owner AND w.url = named.url
"""
