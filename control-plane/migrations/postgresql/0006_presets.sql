-- PostgreSQL twin of migrations/sqlite/0006_presets.sql.
-- Provider presets and refresh-token expiry. identity_provider now holds any preset id
-- (`github`, `entra-id`, ...); the endpoints a preset fills in are stored as before, and its
-- parameters next to them so GET shows what the provider was created with.
ALTER TABLE providers ADD COLUMN preset_parameters TEXT NOT NULL DEFAULT '{}';  -- JSON object

-- When the stored refresh token stops working (`refresh_token_expires_in`, GitHub App user
-- tokens, LinkedIn); NULL: the provider did not say.
ALTER TABLE tokens ADD COLUMN refresh_token_expires_at BIGINT;
