-- Webhooks and their outbox.
--
-- An event is written in the same transaction as the change that caused it (a token stored,
-- a failure recorded, a connection deleted), together with one delivery row per endpoint
-- subscribed to its type: a committed change always has its deliveries, a rolled-back one
-- never does. A background worker on any replica claims due deliveries with a lease
-- (`leased_until`), so one delivery is not attempted by two replicas at once, and a replica
-- that dies mid-delivery leaves a lease that expires and is claimed again.

-- Receivers. `events` is the subscribed event types between commas (",a,b,"), so that the
-- outbox insert can match a type with LIKE on both databases. `secret` is an envelope.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    secret BLOB NOT NULL,
    events TEXT NOT NULL,
    description TEXT,
    enabled INTEGER NOT NULL DEFAULT 1,
    etag TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Events: the payload as sent (JSON, never a token or secret).
CREATE TABLE webhook_events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One per event and subscribed endpoint. state: pending, delivered, failed (gave up). seq: the
-- order events were written in (microseconds, strictly increasing within a process): one
-- endpoint's deliveries are attempted in that order.
CREATE TABLE webhook_deliveries (
    webhook_id TEXT NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL REFERENCES webhook_events (id) ON DELETE CASCADE,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner TEXT,
    leased_until INTEGER,
    last_attempt_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    delivered_at INTEGER,
    created_at INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (webhook_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id);
