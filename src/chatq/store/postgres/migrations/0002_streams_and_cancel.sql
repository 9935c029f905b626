-- Streamed text, runs and cancel (issue 12).

-- runs: how many times the request's text has (re)started: each claim starts a run, and a
-- worker starts another when it retries a streamed call that had already produced text.
-- Event-stream positions are (run, offset), so a restarted run can never be mistaken for
-- the continuation of an earlier one.
ALTER TABLE requests ADD COLUMN runs integer NOT NULL DEFAULT 0;
-- Submitted with stream: true: its text is published as it is generated.
ALTER TABLE requests ADD COLUMN stream boolean NOT NULL DEFAULT false;
-- Set by a cancel of an IN_PROGRESS request; the worker holding it stops and fails it.
ALTER TABLE requests ADD COLUMN cancel_requested_at double precision;

-- The text a streamed request has generated so far, as the worker checkpointed it: pieces
-- appended a few times a second, each at its character offset in its run's text.
CREATE TABLE request_text (
    request_id text NOT NULL,
    run        integer NOT NULL,
    start      integer NOT NULL,
    text       text NOT NULL,
    PRIMARY KEY (request_id, run, start)
);

CREATE INDEX requests_cancel_requested ON requests (lease_owner)
    WHERE status = 'IN_PROGRESS' AND cancel_requested_at IS NOT NULL;

-- Every status change and every checkpointed piece of text is announced, so that one
-- listener per API process can wake its long-polls and feed its event streams. Payloads:
-- chatq_status 'ID STATUS RUNS'; chatq_text 'ID RUN START', then a newline and the piece
-- itself when it fits in a notification (8000 bytes), else the listener reads it.
CREATE FUNCTION chatq_notify_status() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatq_status', NEW.id || ' ' || NEW.status || ' ' || NEW.runs);
    RETURN NULL;
END
$$;

CREATE TRIGGER requests_status_changed
    AFTER UPDATE OF status, runs ON requests
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.runs <> NEW.runs)
    EXECUTE FUNCTION chatq_notify_status();

CREATE FUNCTION chatq_notify_text() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(
        'chatq_text',
        NEW.request_id || ' ' || NEW.run || ' ' || NEW.start
            || CASE WHEN octet_length(NEW.text) <= 7000 THEN E'\n' || NEW.text ELSE '' END
    );
    RETURN NULL;
END
$$;

CREATE TRIGGER request_text_appended
    AFTER INSERT ON request_text
    FOR EACH ROW EXECUTE FUNCTION chatq_notify_text();

-- A cancel of a running request wakes the workers at once (each polls as a fallback).
CREATE FUNCTION chatq_notify_cancel() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('chatq_cancel', NEW.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER requests_cancel_requested
    AFTER UPDATE OF cancel_requested_at ON requests
    FOR EACH ROW WHEN (OLD.cancel_requested_at IS NULL AND NEW.cancel_requested_at IS NOT NULL)
    EXECUTE FUNCTION chatq_notify_cancel();
