-- Entity tags for optimistic concurrency (If-Match). A random value, new on every write of a
-- resource's configuration, so a deleted and re-created resource never matches an old tag.
ALTER TABLE providers ADD COLUMN etag TEXT NOT NULL DEFAULT '';
ALTER TABLE connections ADD COLUMN etag TEXT NOT NULL DEFAULT '';
UPDATE providers SET etag = lower(hex(randomblob(12)));
UPDATE connections SET etag = lower(hex(randomblob(12)));

-- The background refresher looks for tokens by their refresh time.
CREATE INDEX tokens_refresh_at ON tokens (refresh_at);
