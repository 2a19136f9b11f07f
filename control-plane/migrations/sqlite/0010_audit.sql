-- The audit trail: every token the runtime API handed out (or refused), and every change
-- made through the management API. Purged after CREDMGR_AUDIT_RETENTION.
--
-- kind: `token` (runtime API) or `change` (management API). actor: the gateway's name, or
-- `admin`. identity: the caller's object id (or application id) when a JWT was forwarded, with
-- its issuer. outcome: how the runtime call ended (hit, fetched, stale, or an error code), or
-- the management call's HTTP status. detail: JSON; for a change `before` and `after` (the
-- resource as the API shows it, never a secret), for a token its fingerprint and expiry.
CREATE TABLE audit_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    identity TEXT,
    issuer TEXT,
    provider_id TEXT,
    connection_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_connection ON audit_log (provider_id, connection_id, id);
CREATE INDEX audit_log_identity ON audit_log (identity, id);
