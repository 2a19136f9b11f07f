-- credmgr schema, SQLite. Secrets are stored only as envelopes (see src/crypto.rs): BLOBs
-- holding the key-encryption key id, the wrapped data key and the ciphertext.
-- Times are unix seconds.

CREATE TABLE providers (
    id                          TEXT    NOT NULL PRIMARY KEY,
    display_name                TEXT,
    identity_provider           TEXT    NOT NULL,
    grant_type                  TEXT    NOT NULL,
    client_id                   TEXT    NOT NULL,
    client_secret               BLOB    NOT NULL,
    token_url                   TEXT    NOT NULL,
    scopes                      TEXT    NOT NULL,  -- JSON array of strings
    token_endpoint_auth_method  TEXT    NOT NULL,
    token_params                TEXT    NOT NULL,  -- JSON object of strings
    created_at                  INTEGER NOT NULL,
    updated_at                  INTEGER NOT NULL
) STRICT;

CREATE TABLE connections (
    provider_id       TEXT    NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    id                TEXT    NOT NULL,
    display_name      TEXT,
    client_id         TEXT,
    client_secret     BLOB,
    status            TEXT    NOT NULL,
    error_code        TEXT,
    error_message     TEXT,
    token_generation  INTEGER NOT NULL DEFAULT 0,
    last_refresh_at   INTEGER,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    PRIMARY KEY (provider_id, id)
) STRICT;

CREATE TABLE tokens (
    provider_id    TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    access_token   BLOB    NOT NULL,
    token_type     TEXT    NOT NULL,
    claims         TEXT    NOT NULL,  -- JSON object: the token response without its secrets
    obtained_at    INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    refresh_at     INTEGER NOT NULL,
    PRIMARY KEY (provider_id, connection_id),
    FOREIGN KEY (provider_id, connection_id)
        REFERENCES connections (provider_id, id) ON DELETE CASCADE
) STRICT;
