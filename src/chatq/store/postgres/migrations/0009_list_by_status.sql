-- Every list page, filtered or not, is read from requests_owner_status_seq, one ordered
-- range per status merged newest first (store/queries.py list_query), so the (owner, seq)
-- index goes: one index entry less on every submit, claim and completion, where the queue
-- drain pays for each. (SQLite keeps it: see its 0009.)
DROP INDEX requests_owner_seq;
