-- Backoff of a connection whose provider fails, shared by the background scheduler, the
-- runtime API and every replica on this database: after the n-th failure in a row nobody asks
-- the provider again before `refresh_retry_at` (the stored token serves meanwhile, or callers
-- get the remembered failure at once). A stored token resets both.
ALTER TABLE connections ADD COLUMN refresh_failures BIGINT NOT NULL DEFAULT 0;
ALTER TABLE connections ADD COLUMN refresh_retry_at BIGINT;
-- When a backend's refusal (a gateway's `rejected_fingerprint`) last forced a refresh: at most
-- one per connection per `CREDMGR_FORCED_REFRESH_INTERVAL`.
ALTER TABLE connections ADD COLUMN forced_refresh_at BIGINT;
