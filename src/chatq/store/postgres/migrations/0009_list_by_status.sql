-- Two index entries less on the way of every request, where the queue drain pays for each
-- (issue 14's cost to it). Every status change of a request adds an entry to each index
-- whose WHERE the new row version matches.

-- Every list page, filtered or not, is read from requests_owner_status_seq, one ordered
-- range per status merged newest first (store/queries.py list_query), so the (owner, seq)
-- index goes: an entry less on every submit, claim and completion. (SQLite keeps it: see
-- its 0009.)
DROP INDEX requests_owner_seq;

-- The end of an owner's lane is the last of its waiting requests: the index need not hold
-- running ones (an entry less on every claim). The cap counts waiting and running requests
-- from requests_owner_status_seq's two ranges instead.
DROP INDEX requests_owner_unfinished;
CREATE INDEX requests_owner_lane ON requests (owner, vtime)
    WHERE status = 'CREATED' AND created_at > 0;
