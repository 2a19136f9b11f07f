-- One refresh per connection across control-plane replicas sharing this database: a replica
-- takes the lease (a conditional UPDATE) before it asks the provider, and gives it back after.
-- The expiry frees a lease whose holder died.
ALTER TABLE connections ADD COLUMN refresh_lease_owner TEXT;
ALTER TABLE connections ADD COLUMN refresh_lease_until INTEGER;
