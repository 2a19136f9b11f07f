-- credmgr schema, PostgreSQL: the same tables as migrations/sqlite/, one file per SQLite
-- migration with the same number and name, so both backends stay at the same version.
-- Secrets are stored only as envelopes (see src/crypto.rs): BYTEA holding the key-encryption
-- key id, the wrapped data key and the ciphertext. Times are unix seconds (BIGINT). JSON is
-- kept as TEXT, as in SQLite, so both backends decode rows with the same code.

CREATE TABLE providers (
    id                          TEXT    NOT NULL PRIMARY KEY,
    display_name                TEXT,
    identity_provider           TEXT    NOT NULL,
    grant_type                  TEXT    NOT NULL,
    client_id                   TEXT    NOT NULL,
    client_secret               BYTEA   NOT NULL,
    token_url                   TEXT    NOT NULL,
    scopes                      TEXT    NOT NULL,  -- JSON array of strings
    token_endpoint_auth_method  TEXT    NOT NULL,
    token_params                TEXT    NOT NULL,  -- JSON object of strings
    created_at                  BIGINT  NOT NULL,
    updated_at                  BIGINT  NOT NULL
);

CREATE TABLE connections (
    provider_id       TEXT    NOT NULL REFERENCES providers (id) ON DELETE CASCADE,
    id                TEXT    NOT NULL,
    display_name      TEXT,
    client_id         TEXT,
    client_secret     BYTEA,
    status            TEXT    NOT NULL,
    error_code        TEXT,
    error_message     TEXT,
    token_generation  BIGINT  NOT NULL DEFAULT 0,
    last_refresh_at   BIGINT,
    created_at        BIGINT  NOT NULL,
    updated_at        BIGINT  NOT NULL,
    PRIMARY KEY (provider_id, id)
);

CREATE TABLE tokens (
    provider_id    TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    access_token   BYTEA   NOT NULL,
    token_type     TEXT    NOT NULL,
    claims         TEXT    NOT NULL,  -- JSON object: the token response without its secrets
    obtained_at    BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    refresh_at     BIGINT  NOT NULL,
    PRIMARY KEY (provider_id, connection_id),
    FOREIGN KEY (provider_id, connection_id)
        REFERENCES connections (provider_id, id) ON DELETE CASCADE
);
