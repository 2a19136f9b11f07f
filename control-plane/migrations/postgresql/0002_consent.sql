-- Authorization-code providers, refresh tokens, login links and consent states.

ALTER TABLE providers ADD COLUMN authorization_url TEXT;
-- NULL: refresh at token_url.
ALTER TABLE providers ADD COLUMN refresh_url TEXT;
-- Expected `iss` of authorization responses (RFC 9207); NULL: the authorization URL's origin.
ALTER TABLE providers ADD COLUMN issuer TEXT;
ALTER TABLE providers ADD COLUMN authorize_params TEXT NOT NULL DEFAULT '{}';  -- JSON object
ALTER TABLE providers ADD COLUMN allowed_redirect_urls TEXT NOT NULL DEFAULT '[]';  -- JSON array

-- An envelope, like access_token; NULL when the provider issued none.
ALTER TABLE tokens ADD COLUMN refresh_token BYTEA;

-- A login link's URL carries a random secret; only its SHA-256 is stored, so a copy of the
-- database does not hold usable links.
CREATE TABLE login_links (
    id_hash        BYTEA   NOT NULL PRIMARY KEY,
    provider_id    TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    redirect_url   TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    expires_at     BIGINT  NOT NULL,
    used_at        BIGINT,
    FOREIGN KEY (provider_id, connection_id)
        REFERENCES connections (provider_id, id) ON DELETE CASCADE
);

-- One authorization request in progress: created when the user continues past the
-- interstitial, consumed by the callback (on whichever replica it reaches). `state` and the
-- browser cookie are stored hashed; the PKCE code verifier as an envelope.
CREATE TABLE consent_states (
    state_hash        BYTEA   NOT NULL PRIMARY KEY,
    browser_hash      BYTEA   NOT NULL,
    provider_id       TEXT    NOT NULL,
    connection_id     TEXT    NOT NULL,
    redirect_url      TEXT    NOT NULL,
    code_verifier     BYTEA   NOT NULL,
    token_generation  BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    FOREIGN KEY (provider_id, connection_id)
        REFERENCES connections (provider_id, id) ON DELETE CASCADE
);
