-- Usage accounting and admin keys (issue 14).

-- An admin key may read every owner's usage (and, later, the operator's summaries).
ALTER TABLE api_keys ADD COLUMN admin boolean NOT NULL DEFAULT false;

-- What each owner used, per model and per UTC day of the terminal transition: every request
-- that finished (COMPLETED or FAILED) counted once, with the tokens and cost of its final
-- response (a FAILED request has none: 0). Never written on read, and kept when the requests
-- themselves are purged or deleted. day is the date, YYYY-MM-DD.
-- Written by the statement of each terminal transition, from the rows it moved (a CTE:
-- postgres/queries.py COMPLETE_MANY and counted()), so exactly once and in its transaction;
-- one upsert per (owner, day, model) of a batch, taken in key order, so that concurrent
-- workers lock usage rows in one order and cannot deadlock on them.
CREATE TABLE usage (
    owner             text NOT NULL,
    day               text NOT NULL,
    model             text NOT NULL,
    requests          bigint NOT NULL,
    prompt_tokens     bigint NOT NULL,
    completion_tokens bigint NOT NULL,
    total_tokens      bigint NOT NULL,
    cost              double precision NOT NULL,
    PRIMARY KEY (owner, day, model)
);
