-- Identities: the issuers whose JWTs identify callers, and who may use each connection.
-- PostgreSQL twin of migrations/sqlite/0005_identities.sql.

-- An OpenID Connect (or any JWT) issuer whose tokens gateways accept as caller identities.
-- Exactly one of jwks_uri (fetched and cached) and jwks (inline, a JSON object) is set.
CREATE TABLE trusted_issuers (
    id              TEXT    NOT NULL PRIMARY KEY,
    display_name    TEXT,
    issuer          TEXT    NOT NULL UNIQUE,
    audiences       TEXT    NOT NULL,  -- JSON array of strings
    jwks_uri        TEXT,
    jwks            TEXT,              -- JSON object (RFC 7517 §5), public keys only
    claims          TEXT    NOT NULL,  -- JSON object: which claims name object, tenant, ...
    leeway_seconds  BIGINT  NOT NULL,
    etag            TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL
);

-- Who may use a connection: each row names one identity. No row: nobody may.
CREATE TABLE access_policies (
    provider_id    TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    id             TEXT    NOT NULL,
    display_name   TEXT,
    identity       TEXT    NOT NULL,  -- JSON object: {"kind": "gateway" | "application" | ...}
    etag           TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL,
    PRIMARY KEY (provider_id, connection_id, id),
    FOREIGN KEY (provider_id, connection_id)
        REFERENCES connections (provider_id, id) ON DELETE CASCADE
);
