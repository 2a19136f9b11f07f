-- The background refresher looks for tokens by their refresh time.
CREATE INDEX tokens_refresh_at ON tokens (refresh_at);
-- One refresh per connection across control-plane replicas sharing this database: a replica
-- takes the lease (a conditional UPDATE, which PostgreSQL serialises on the row lock and
-- re-checks against the committed row) before it asks the provider, and gives it back after.
-- The expiry frees a lease whose holder died.
ALTER TABLE connections ADD COLUMN refresh_lease_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_lease_until BIGINT;
