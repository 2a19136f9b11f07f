-- Entity tags for optimistic concurrency (If-Match). A random value, new on every write of a
-- resource's configuration, so a deleted and re-created resource never matches an old tag.
ALTER TABLE providers ADD COLUMN etag TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN etag TEXT NOT NULL DEFAULT '';
-- Random hex of the length new_etag() makes (gen_random_uuid is built in since PostgreSQL 13).
UPDATE providers SET etag = substr(replace(gen_random_uuid()::text, '-', ''), 1, 24);
UPDATE connections SET etag = substr(replace(gen_random_uuid()::text, '-', ''), 1, 24);
