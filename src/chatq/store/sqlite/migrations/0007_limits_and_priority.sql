-- Fair share and priority (claims interleave owners; priority orders an owner's own work),
-- and limits (a per-key request rate; a per-owner cap on unfinished requests, set per key).

-- vtime: the request's place in its owner's lane of the queue. A new request goes after
-- the last waiting request of its owner, or after the head of the queue if that is later,
-- so owners take turns: a claim counts the first rows by (vtime, seq) as turns ("slots")
-- per owner, and gives each owner's turns to its own requests by (priority DESC, seq).
ALTER TABLE requests ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN vtime INTEGER NOT NULL DEFAULT 0;

-- Each partial index's WHERE also names a condition true of every row (vtime >= 0, seq > 0,
-- created_at > 0), a different one for each, which only the statements meant to use that
-- index state. While a burst of submits is not yet analyzed, PostgreSQL's statistics say
-- nothing is waiting, and the planner then took any index whose WHERE the statement implies
-- (a claim's pick scanned all of requests_waiting for one owner's rows, once per owner in
-- the batch: test_postgres_plans.py). With these, each statement can use only its own.
DROP INDEX requests_waiting;
CREATE INDEX requests_waiting ON requests (vtime, seq) WHERE status = 'CREATED' AND vtime >= 0;
-- (priority DESC, seq) as one integer, so that the claim can seek from one request of an
-- owner to its next (priority is within +-1000, seq below 2^44).
CREATE INDEX requests_owner_next ON requests (owner, seq - priority * 17592186044416)
    WHERE status = 'CREATED' AND seq > 0;
-- An owner's unfinished requests: counted against its cap, and the end of its lane.
CREATE INDEX requests_owner_unfinished ON requests (owner, vtime)
    WHERE status IN ('CREATED', 'IN_PROGRESS') AND created_at > 0;

-- Per-key limits; NULL: the server's default ([limits] in the config), 0: none.
ALTER TABLE api_keys ADD COLUMN max_unfinished INTEGER CHECK (max_unfinished >= 0);
ALTER TABLE api_keys ADD COLUMN rpm INTEGER CHECK (rpm >= 0);

-- Each rate-limited key's theoretical arrival time (GCRA): a key may submit while it is no
-- more than a minute ahead of now.
CREATE TABLE key_rates (
    key_id TEXT PRIMARY KEY,
    tat    REAL NOT NULL
) STRICT;
