-- Metadata and list filters (issue 14).

-- The client's labels: a JSON object of up to 16 string pairs, NULL if none were given.
-- Returned on get and list, matched by the list's metadata.KEY=VALUE filters.
ALTER TABLE requests ADD COLUMN metadata TEXT;

-- A status-filtered list page: for each status asked for, an ordered range of this index,
-- newest first from the cursor, so a page costs the same at any depth and table size.
CREATE INDEX requests_owner_status_seq ON requests (owner, status, seq);
