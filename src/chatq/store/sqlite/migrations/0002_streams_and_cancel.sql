-- Streamed text, runs and cancel (issue 12).

-- runs: how many times the request's text has (re)started: each claim starts a run, and a
-- worker starts another when it retries a streamed call that had already produced text.
-- Event-stream positions are (run, offset), so a restarted run can never be mistaken for
-- the continuation of an earlier one.
ALTER TABLE requests ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
-- Submitted with stream: true: its text is published as it is generated.
ALTER TABLE requests ADD COLUMN stream INTEGER NOT NULL DEFAULT 0;
-- Set by a cancel of an IN_PROGRESS request; the worker holding it stops and fails it.
ALTER TABLE requests ADD COLUMN cancel_requested_at REAL;

-- The text a streamed request has generated so far, as the worker checkpointed it: pieces
-- appended a few times a second, each at its character offset in its run's text.
CREATE TABLE request_text (
    request_id TEXT NOT NULL,
    run        INTEGER NOT NULL,
    start      INTEGER NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (request_id, run, start)
) STRICT, WITHOUT ROWID;

CREATE INDEX requests_cancel_requested ON requests (lease_owner)
    WHERE status = 'IN_PROGRESS' AND cancel_requested_at IS NOT NULL;
