"""The statements both dialects run as they are, each named after the store verb that runs it.

Written once, in PostgreSQL's $1 placeholder style; the SQLite store runs them as ?1 (its
own numbered style). What a dialect does its own way (claim, the batched submit and
complete, migration bookkeeping) is in that dialect's queries.py, under the same names.
"""

from typing import Any

from chatq.domain import ListFilter, Status

APPLIED_MIGRATIONS = "SELECT version, name FROM schema_migrations ORDER BY version"
RECORD_MIGRATION = "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)"

PING = "SELECT 1"
SECRET_INSERT = "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING"
SECRET_GET = "SELECT value FROM meta WHERE name = $1"

KEY_INSERT = """
INSERT INTO api_keys
    (id, name, owner, secret_hash, created_at, webhook_url, admin, max_unfinished, rpm)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
KEY_HOLDER = """
SELECT owner, webhook_url, admin, id, max_unfinished, rpm FROM api_keys
WHERE secret_hash = $1 AND revoked_at IS NULL
"""
KEY_LIST = """
SELECT id, name, owner, created_at, revoked_at, webhook_url, admin, max_unfinished, rpm
FROM api_keys
ORDER BY created_at, id
"""
# keys update: by id or by name, live keys only; the owners whose default changed.
KEY_SET_WEBHOOK = """
UPDATE api_keys SET webhook_url = $1
WHERE (id = $2 OR name = $2) AND revoked_at IS NULL
RETURNING owner
"""
# A key's limits (NULL: the server's default), each set on its own.
KEY_SET_LIMIT = {
    "max_unfinished": """
UPDATE api_keys SET max_unfinished = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL
""",
    "rpm": """
UPDATE api_keys SET rpm = $1 WHERE (id = $2 OR name = $2) AND revoked_at IS NULL
""",
}
# A rate-limited key's state after a submit: see store/admission.py.
KEY_RATE_SET = """
INSERT INTO key_rates (key_id, tat) VALUES ($1, $2)
ON CONFLICT (key_id) DO UPDATE SET tat = excluded.tat
"""
KEY_REVOKE = "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"
KEY_COUNT = "SELECT count(*) FROM api_keys"

# For /metrics: each count reads one partial index (requests_waiting, requests_leased,
# webhook_deliveries_due), so it costs the size of the backlog, not of the table.
# The terms beside each status are always true of its rows (a CREATED row's vtime is at least
# 0, an IN_PROGRESS row is leased); they are there because the partial indexes say them, and
# without them SQLite counts by scanning the whole (owner, status, seq) index.
QUEUE_DEPTH = """
SELECT
  (SELECT count(*) FROM requests WHERE status = 'CREATED' AND vtime >= 0),
  (SELECT count(*) FROM requests WHERE status = 'IN_PROGRESS' AND lease_expires_at IS NOT NULL),
  (SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING')
"""
# The admin view: QUEUE_DEPTH's two request counts per model, each read from the same partial
# index (with the same always-true term) as there, so it costs the backlog, not the table.
QUEUE_BY_MODEL = """
SELECT 'CREATED', model, count(*) FROM requests
WHERE status = 'CREATED' AND vtime >= 0 GROUP BY model
UNION ALL
SELECT 'IN_PROGRESS', model, count(*) FROM requests
WHERE status = 'IN_PROGRESS' AND lease_expires_at IS NOT NULL GROUP BY model
ORDER BY 1, 2
"""

# Every query that returns requests selects these columns in this order, which is the field
# order of Summary and Job (store/rows.py).
SUMMARY_COLUMNS = (
    "seq, id, model, status, created_at, started_at, completed_at, failed_at, metadata"
)
JOB_COLUMNS = (
    f"{SUMMARY_COLUMNS}, owner, request_hash, response, error_message, runs, stream, webhook_url"
)
# What a claim returns, oldest first: the fields of ClaimedJob.
CLAIMED_COLUMNS = "seq, id, model, request, deliveries, created_at, runs"

GET = f"SELECT {JOB_COLUMNS} FROM requests WHERE owner = $1 AND id = $2"
# The dashboard's request page: the request as submitted, and its claims so far.
SUBMITTED = "SELECT request, deliveries FROM requests WHERE owner = $1 AND id = $2"
# submit: the request that holds an owner's idempotency key, when a new one finds it taken.
GET_BY_IDEMPOTENCY_KEY = f"""
SELECT {JOB_COLUMNS} FROM requests WHERE owner = $1 AND idempotency_key = $2
"""


def list_query(
    owner: str,
    narrowed: ListFilter,
    before_seq: int | None,
    limit: int,
    metadata_match: str,
    status_ranges_only: bool,
) -> tuple[str, list[Any]]:
    """A list page's statement and its arguments: the owner's rows below the cursor that
    match, newest first, up to limit + 1 (the extra one says more exist).

    With a status filter, one branch per status, each an ordered range of
    requests_owner_status_seq that stops after limit + 1 rows, merged newest first: the page
    costs the same at any depth and table size. Without one, the range of
    requests_owner_seq, or where the dialect has no such index (status_ranges_only:
    PostgreSQL, migration 0009), a branch for every status. The other parts are checked on
    the rows these ranges read. metadata_match is the dialect's test that metadata holds the
    pair ({key}, {value}).
    """
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [f"owner = {arg(owner)}"]
    if before_seq is not None:
        where.append(f"seq < {arg(before_seq)}")
    if narrowed.model is not None:
        where.append(f"model = {arg(narrowed.model)}")
    if narrowed.created_after is not None:
        where.append(f"created_at >= {arg(float(narrowed.created_after))}")
    if narrowed.created_before is not None:
        where.append(f"created_at < {arg(float(narrowed.created_before))}")
    for key, value in narrowed.metadata:
        where.append(metadata_match.format(key=arg(key), value=arg(value)))
    # The limit is written in too: with it a parameter, PostgreSQL's prepared statement
    # never settled on its generic plan (200k rows and more), so every call planned every
    # branch again: 0.4 ms a call at 1M rows against 0.15 (test_list_filter_plans.py).
    rows = str(int(limit) + 1)
    conditions = " AND ".join(where)
    asked = narrowed.statuses or frozenset(Status)
    statuses = sorted(asked) if status_ranges_only or len(asked) < len(Status) else []
    if not statuses:
        sql = f"""
SELECT {SUMMARY_COLUMNS} FROM requests WHERE {conditions} ORDER BY seq DESC LIMIT {rows}"""
        return sql, args
    # The status is written in, not passed: with it as a parameter, PostgreSQL's generic plan
    # (asyncpg prepares every statement) guesses half the rows match any status and walks
    # the primary key backward, reading 50 rows per match of a status held by 1 in 50
    # (test_list_filter_plans.py). A Status is one of four fixed words, never client text.
    branches = [
        f"""
SELECT {SUMMARY_COLUMNS} FROM requests WHERE {conditions} AND status = '{Status(status).value}'
ORDER BY seq DESC LIMIT {rows}"""
        for status in statuses
    ]
    if len(branches) == 1:
        return branches[0], args
    merged = " UNION ALL ".join(
        f"SELECT * FROM ({branch}) AS branch{i}" for i, branch in enumerate(branches)
    )
    return f"{merged} ORDER BY seq DESC LIMIT {rows}", args


RENEW = """
UPDATE requests SET lease_expires_at = $1
WHERE lease_owner = $2 AND status = 'IN_PROGRESS'
"""
FAIL = """
UPDATE requests
SET status = 'FAILED', failed_at = $1, error_message = $2, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $3 AND status = 'IN_PROGRESS' AND lease_owner = $4
"""
# A request whose cancel is pending is never handed back to the queue: it fails instead.
RELEASE = """
UPDATE requests
SET status = 'CREATED', started_at = NULL, lease_owner = NULL, lease_expires_at = NULL,
    deliveries = deliveries - 1
WHERE id = $1 AND status = 'IN_PROGRESS' AND lease_owner = $2 AND cancel_requested_at IS NULL
"""
RELEASE_CANCELLED = """
UPDATE requests
SET status = 'FAILED', failed_at = $3, error_message = $4, lease_owner = NULL,
    lease_expires_at = NULL
WHERE id = $1 AND status = 'IN_PROGRESS' AND lease_owner = $2 AND cancel_requested_at IS NOT NULL
"""
RESCUE_CANCELLED = """
UPDATE requests
SET status = 'FAILED', failed_at = $1, error_message = $2, lease_owner = NULL,
    lease_expires_at = NULL
WHERE status = 'IN_PROGRESS' AND lease_expires_at < $1 AND cancel_requested_at IS NOT NULL
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
PURGE_WEBHOOK_ATTEMPTS = """
DELETE FROM webhook_attempts WHERE request_id IN (
    SELECT id FROM requests
    WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < $1
)
"""
PURGE_WEBHOOKS = """
DELETE FROM webhook_deliveries WHERE request_id IN (
    SELECT id FROM requests
    WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < $1
)
"""
PURGE_TEXT = """
DELETE FROM request_text WHERE request_id IN (
    SELECT id FROM requests
    WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < $1
)
"""
PURGE = """
DELETE FROM requests
WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) < $1
"""

# cancel: a request not yet claimed fails at once; a running one is marked, and the worker
# holding it stops it (it polls CANCEL_REQUESTED) and fails it; a finished one is left alone.
CANCEL_WAITING = """
UPDATE requests SET status = 'FAILED', failed_at = $1, error_message = $2
WHERE owner = $3 AND id = $4 AND status = 'CREATED'
"""
CANCEL_RUNNING = """
UPDATE requests SET cancel_requested_at = $1
WHERE owner = $2 AND id = $3 AND status = 'IN_PROGRESS' AND cancel_requested_at IS NULL
"""
CANCEL_REQUESTED = """
SELECT id FROM requests
WHERE lease_owner = $1 AND status = 'IN_PROGRESS' AND cancel_requested_at IS NOT NULL
"""

# delete: only a finished request, and its text with it.
DELETE = """
DELETE FROM requests WHERE owner = $1 AND id = $2 AND status IN ('COMPLETED', 'FAILED')
"""
DELETE_TEXT = """
DELETE FROM request_text
WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM requests WHERE id = $1)
"""
DELETE_WEBHOOK = """
DELETE FROM webhook_deliveries
WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM requests WHERE id = $1)
"""
DELETE_WEBHOOK_ATTEMPTS = """
DELETE FROM webhook_attempts
WHERE request_id = $1 AND NOT EXISTS (SELECT 1 FROM requests WHERE id = $1)
"""

# Streamed text: a piece is stored only while its run is the request's current one and the
# worker still holds the request; a piece already stored (a retried write) is left as it is.
APPEND_TEXT = """
INSERT INTO request_text (request_id, run, start, text)
SELECT $1, $2, $3, $4 WHERE EXISTS (
    SELECT 1 FROM requests
    WHERE id = $1 AND runs = $2 AND status = 'IN_PROGRESS' AND lease_owner = $5
)
ON CONFLICT (request_id, run, start) DO NOTHING
"""
NEW_RUN = """
UPDATE requests SET runs = runs + 1
WHERE id = $1 AND status = 'IN_PROGRESS' AND lease_owner = $2
RETURNING runs
"""
READ_TEXT = "SELECT text FROM request_text WHERE request_id = $1 AND run = $2 ORDER BY start"

# ---- webhooks (issue 13)

# The outbox: run in the transaction of every terminal transition, with that transition's
# time as $1, it queues a delivery for each request that finished then and has a webhook.
# The time picks them out through requests_finished; a row already queued (a request that
# finished at the same instant in another transaction) is left as it is.
# The head of every outbox insert, and the webhook-id a request's delivery gets (derived
# from the request id, as domain.delivery_id says): followed by a SELECT of the rest.
OUTBOX_INSERT = """INSERT INTO webhook_deliveries
    (id, request_id, owner, url, event_type, created_at, status, attempts, next_attempt_at,
     window_start)"""
OUTBOX_ID = "'msg_' || replace(id, '-', '')"
WEBHOOK_ENQUEUE = f"""
{OUTBOX_INSERT}
SELECT {OUTBOX_ID}, id, owner, webhook_url,
       CASE status WHEN 'COMPLETED' THEN 'async_chat_completion.completed'
                   ELSE 'async_chat_completion.failed' END,
       CAST($1 AS double precision), 'PENDING', 0, CAST($1 AS double precision),
       CAST($1 AS double precision)
FROM requests
WHERE status IN ('COMPLETED', 'FAILED') AND coalesce(completed_at, failed_at) = $1
    AND webhook_url IS NOT NULL
ON CONFLICT (id) DO NOTHING
"""

# What a claim returns: the fields of Delivery.
DELIVERY_COLUMNS = "id, request_id, owner, url, event_type, created_at, attempts, window_start"
# What operators and owners see: the fields of DeliveryRecord, less its history.
DELIVERY_RECORD_COLUMNS = """
id, request_id, owner, url, event_type, created_at, status, attempts, next_attempt_at,
delivered_at, last_error
"""

# What an attempt needs, in one read: the delivery's request (no row if it is gone), its
# owner's signing secrets (NULL before their first use) and whether a 410 disabled the URL.
DELIVERY_CONTEXT = f"""
SELECT secret, previous, rotated_at,
    EXISTS (SELECT 1 FROM webhook_disabled AS w WHERE w.owner = $1 AND w.url = $3),
    {JOB_COLUMNS}
FROM requests LEFT JOIN webhook_secrets USING (owner)
WHERE owner = $1 AND id = $2
"""

# One attempt's outcome, recorded only while the claim is still this worker's: the attempt
# (numbered after those before it), then the delivery's new state. PostgreSQL runs the two
# as one statement (its RECORD_DELIVERY).
WEBHOOK_ATTEMPT = """
INSERT INTO webhook_attempts (request_id, attempt, at, status_code, error)
SELECT request_id, attempts + 1, CAST($3 AS double precision), CAST($4 AS integer),
       CAST($5 AS text)
FROM webhook_deliveries
WHERE id = $1 AND status = 'PENDING' AND lease_owner = $2
"""
WEBHOOK_RECORD = """
UPDATE webhook_deliveries
SET status = $3, attempts = attempts + 1, next_attempt_at = $4, delivered_at = $5,
    last_error = $6, lease_owner = NULL
WHERE id = $1 AND status = 'PENDING' AND lease_owner = $2
"""
WEBHOOK_DISABLE = """
INSERT INTO webhook_disabled (owner, url, disabled_at) VALUES ($1, $2, $3)
ON CONFLICT (owner, url) DO NOTHING
"""
WEBHOOK_ENABLE = "DELETE FROM webhook_disabled WHERE owner = $1 AND url = $2"
WEBHOOK_DISABLED = "SELECT 1 FROM webhook_disabled WHERE owner = $1 AND url = $2"
# A stopping worker hands back the deliveries it claimed but did not make: due at once.
WEBHOOK_RELEASE = """
UPDATE webhook_deliveries SET lease_owner = NULL, next_attempt_at = $2
WHERE lease_owner = $1 AND status = 'PENDING'
"""
# Replay: by webhook-id or request id, whatever its state: due at once, with a new horizon.
WEBHOOK_REPLAY = """
UPDATE webhook_deliveries
SET status = 'PENDING', next_attempt_at = $2, window_start = $2, lease_owner = NULL,
    delivered_at = NULL
WHERE id = $1 OR request_id = $1
RETURNING owner, url
"""
WEBHOOK_OF_REQUEST = f"""
SELECT {DELIVERY_RECORD_COLUMNS} FROM webhook_deliveries WHERE owner = $1 AND request_id = $2
"""
WEBHOOK_ATTEMPTS = """
SELECT attempt, at, status_code, error FROM webhook_attempts
WHERE request_id = $1 ORDER BY attempt
"""
WEBHOOK_LIST = f"""
SELECT {DELIVERY_RECORD_COLUMNS} FROM webhook_deliveries ORDER BY created_at DESC, id LIMIT $1
"""
WEBHOOK_LIST_FAILED = f"""
SELECT {DELIVERY_RECORD_COLUMNS} FROM webhook_deliveries WHERE status = 'FAILED'
ORDER BY created_at DESC, id LIMIT $1
"""

WEBHOOK_SECRET_GET = "SELECT secret, previous, rotated_at FROM webhook_secrets WHERE owner = $1"
WEBHOOK_SECRET_INSERT = """
INSERT INTO webhook_secrets (owner, secret) VALUES ($1, $2) ON CONFLICT (owner) DO NOTHING
"""
WEBHOOK_SECRET_ROTATE = """
UPDATE webhook_secrets SET previous = secret, secret = $2, rotated_at = $3 WHERE owner = $1
"""

# ---- usage (issue 14)

# The usage table is written by the terminal transitions themselves (SQLite: a trigger,
# migration 0005; PostgreSQL: the transitions' own statements, postgres/queries.py). These
# read it: the sums over a range of days ($2..$3, YYYY-MM-DD, inclusive) for one owner ($1)
# or for every owner, grouped by the keys a report names, in their order.
USAGE_SUMS = """
sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens), sum(cost)
"""


def _usage_report(keys: tuple[str, ...], one_owner: bool) -> str:
    by = ", ".join(keys)
    owner = "owner = $1" if one_owner else "CAST($1 AS text) IS NULL"
    return f"""
SELECT {by}, {USAGE_SUMS} FROM usage
WHERE {owner} AND day >= $2 AND day <= $3
GROUP BY {by} ORDER BY {by}
"""


# By the keys of a report (some of owner, day, model, in that order) and whether it is one
# owner's.
USAGE_REPORTS: dict[tuple[tuple[str, ...], bool], str] = {
    (keys, one_owner): _usage_report(keys, one_owner)
    for keys in (
        ("day", "model"),
        ("day",),
        ("model",),
        ("owner", "day", "model"),
        ("owner", "day"),
        ("owner", "model"),
    )
    for one_owner in (True, False)
}
