-- Self-service providers (consent on demand) and login links made for a caller.

-- The connection template of a self-service provider (a JSON object: connection_id,
-- display_name, post_login_redirect_url); NULL: connections are created by operators only.
ALTER TABLE providers ADD COLUMN self_service TEXT;

-- Whom a login link was made for: the verified caller of the runtime API that asked for it
-- (issuer and object id); NULL for links an operator created. The consent page names them,
-- and login links per caller and per connection are counted from here (rate limits).
ALTER TABLE login_links ADD COLUMN made_for_issuer TEXT;
ALTER TABLE login_links ADD COLUMN made_for_object_id TEXT;
CREATE INDEX login_links_by_caller ON login_links (made_for_issuer, made_for_object_id, created_at);
CREATE INDEX login_links_by_connection ON login_links (provider_id, connection_id, created_at);
