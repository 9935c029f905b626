-- Usage accounting and admin keys (issue 14).

-- An admin key may read every owner's usage (and, later, the operator's summaries).
ALTER TABLE api_keys ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;

-- What each owner used, per model and per UTC day of the terminal transition: every request
-- that finished (COMPLETED or FAILED) counted once, with the tokens and cost of its final
-- response (a FAILED request has none: 0). Never written on read, and kept when the requests
-- themselves are purged or deleted. day is the date, YYYY-MM-DD.
CREATE TABLE usage (
    owner             TEXT NOT NULL,
    day               TEXT NOT NULL,
    model             TEXT NOT NULL,
    requests          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    total_tokens      INTEGER NOT NULL,
    cost              REAL NOT NULL,
    PRIMARY KEY (owner, day, model)
) STRICT, WITHOUT ROWID;

-- Counted by the terminal transition itself, so in its transaction, whichever statement
-- makes it (complete, fail, cancel, release, rescue): a trigger fires once for each row the
-- guarded UPDATE actually moved, and for none when the guard matched nothing. (PostgreSQL
-- counts in the transition's own statement instead: see its 0005.) The rule for reading the
-- response is store/rows.py's accounted_usage: a token count is a JSON number, truncated
-- and capped at 2^31 - 1; the cost is usage.cost.total_cost when a number; else 0 (and
-- all of it 0 for a response that is not JSON, which the store never writes).
CREATE TRIGGER requests_usage
    AFTER UPDATE OF status ON requests
    FOR EACH ROW
    WHEN OLD.status IN ('CREATED', 'IN_PROGRESS') AND NEW.status IN ('COMPLETED', 'FAILED')
BEGIN
    INSERT INTO usage
        (owner, day, model, requests, prompt_tokens, completion_tokens, total_tokens, cost)
    SELECT NEW.owner, date(coalesce(NEW.completed_at, NEW.failed_at), 'unixepoch'), NEW.model,
        1,
        CASE WHEN json_type(r, '$.usage.prompt_tokens') IN ('integer', 'real')
            THEN CAST(max(0, min(json_extract(r, '$.usage.prompt_tokens'), 2147483647))
                 AS INTEGER)
            ELSE 0 END,
        CASE WHEN json_type(r, '$.usage.completion_tokens') IN ('integer', 'real')
            THEN CAST(max(0, min(json_extract(r, '$.usage.completion_tokens'), 2147483647))
                 AS INTEGER)
            ELSE 0 END,
        CASE WHEN json_type(r, '$.usage.total_tokens') IN ('integer', 'real')
            THEN CAST(max(0, min(json_extract(r, '$.usage.total_tokens'), 2147483647))
                 AS INTEGER)
            ELSE 0 END,
        CASE WHEN json_type(r, '$.usage.cost.total_cost') IN ('integer', 'real')
            THEN json_extract(r, '$.usage.cost.total_cost')
            ELSE 0.0 END
    FROM (SELECT CASE WHEN json_valid(NEW.response) THEN NEW.response END AS r)
    WHERE true
    ON CONFLICT (owner, day, model) DO UPDATE SET
        requests = usage.requests + excluded.requests,
        prompt_tokens = usage.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = usage.completion_tokens + excluded.completion_tokens,
        total_tokens = usage.total_tokens + excluded.total_tokens,
        cost = usage.cost + excluded.cost;
END;
