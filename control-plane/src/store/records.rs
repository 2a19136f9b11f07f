//! The records the store reads and writes. Their secrets are [`Envelope`]s, already
//! encrypted: the store never sees a plaintext secret, and never holds a key.

use std::collections::BTreeMap;

use credmgr_common::access::{ClaimNames, PolicyIdentity};

use crate::connection_template::ConnectionTemplate;
use crate::crypto::Envelope;
use crate::domain::{AuthMethod, ConnectionStatus, GrantType};
use crate::presets::IdentityProvider;

/// A credential provider as stored.
#[derive(Debug, Clone)]
pub struct ProviderRecord {
    pub id: String,
    pub display_name: Option<String>,
    pub identity_provider: IdentityProvider,
    /// The preset's parameters, as given.
    pub parameters: BTreeMap<String, String>,
    pub grant_type: GrantType,
    pub client_id: String,
    pub client_secret: Envelope,
    pub token_url: String,
    pub scopes: Vec<String>,
    pub token_endpoint_auth_method: AuthMethod,
    pub token_params: BTreeMap<String, String>,
    /// Where users consent (authorization-code providers).
    pub authorization_url: Option<String>,
    /// Where refresh tokens are redeemed; `None`: `token_url`.
    pub refresh_url: Option<String>,
    /// The `iss` expected in authorization responses (RFC 9207).
    pub issuer: Option<String>,
    /// Extra parameters of the authorization request.
    pub authorize_params: BTreeMap<String, String>,
    /// Where users may be sent back after consent.
    pub allowed_redirect_urls: Vec<String>,
    /// Set when the provider is self-service: the runtime API creates a verified caller's
    /// connection on first need, from this template.
    pub self_service: Option<ConnectionTemplate>,
    /// Changes with every write of the configuration ([`new_etag`]).
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ProviderRecord {
    /// The endpoint that redeems refresh tokens.
    pub fn refresh_endpoint(&self) -> &str {
        self.refresh_url.as_deref().unwrap_or(&self.token_url)
    }
}

/// A connection as stored, with the expiry of its token if it has one.
#[derive(Debug, Clone)]
pub struct ConnectionRecord {
    pub provider_id: String,
    pub id: String,
    pub display_name: Option<String>,
    /// Overrides the provider's client id (client-credentials connections).
    pub client_id: Option<String>,
    /// Overrides the provider's client secret; set exactly when `client_id` is.
    pub client_secret: Option<Envelope>,
    pub status: ConnectionStatus,
    /// The last failure to obtain a token: `(code, message)`.
    pub error: Option<(String, String)>,
    /// Incremented whenever the stored token stops being valid for the connection's
    /// configuration (credentials, scopes, endpoint changed). A token fetched under an older
    /// generation is discarded instead of stored.
    pub token_generation: i64,
    pub last_refresh_at: Option<i64>,
    /// Changes with every write of the configuration (not with token refreshes).
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Read from the token, if any; not written through this record.
    pub token_expires_at: Option<i64>,
    /// When the stored refresh token expires, if the provider said; read from the token.
    pub refresh_token_expires_at: Option<i64>,
}

impl ConnectionRecord {
    /// A connection as it is created: not connected, without credentials of its own or a
    /// token, with `error` saying what to do next (a user's consent) if anything.
    pub fn new(
        provider_id: &str,
        id: &str,
        display_name: Option<String>,
        error: Option<(String, String)>,
        now: i64,
    ) -> ConnectionRecord {
        ConnectionRecord {
            provider_id: provider_id.to_owned(),
            id: id.to_owned(),
            display_name,
            client_id: None,
            client_secret: None,
            status: ConnectionStatus::NotConnected,
            error,
            token_generation: 0,
            last_refresh_at: None,
            etag: new_etag(),
            created_at: now,
            updated_at: now,
            token_expires_at: None,
            refresh_token_expires_at: None,
        }
    }
}

/// A connection's current access token, encrypted.
#[derive(Debug, Clone)]
pub struct TokenRecord {
    pub access_token: Envelope,
    /// The refresh token, if the provider issued one (authorization code).
    pub refresh_token: Option<Envelope>,
    /// When the refresh token expires, if the provider said (`refresh_token_expires_in`).
    pub refresh_token_expires_at: Option<i64>,
    pub token_type: String,
    /// The token response's non-secret fields.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub obtained_at: i64,
    pub expires_at: i64,
    pub refresh_at: i64,
}

/// What a runtime token request needs from the store, read in one query
/// ([`Store::runtime_view`]).
// Returned once per request and taken apart at once: boxing the large variant would only
// add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum RuntimeView {
    NoProvider,
    /// The provider exists, the connection does not.
    NoConnection {
        /// The provider's self-service template, if it has one.
        self_service: Option<ConnectionTemplate>,
    },
    Connection {
        /// The provider's self-service template, if it has one.
        self_service: Option<ConnectionTemplate>,
        /// The identities its access policies name, by policy id.
        policies: Vec<PolicyIdentity>,
        /// Its stored token, if it has one.
        token: Option<TokenRecord>,
    },
}

/// A fresh entity tag: 96 random bits as hex.
pub fn new_etag() -> String {
    use aes_gcm::aead::rand_core::RngCore as _;
    let mut bytes = [0u8; 12];
    aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A login link: its secret is in the URL only; the store keys it by the secret's hash.
#[derive(Debug, Clone)]
pub struct LoginLink {
    pub id_hash: Vec<u8>,
    pub provider_id: String,
    pub connection_id: String,
    pub redirect_url: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The verified caller it was made for (self-service links); `None`: an operator's.
    pub made_for: Option<LinkUser>,
}

/// The user a self-service login link was made for: an issuer and an object id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkUser {
    pub issuer: String,
    pub object_id: String,
}

/// How many self-service login links may be made for one caller, and for one connection, in
/// [`LINK_WINDOW_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkLimits {
    pub per_caller: u32,
    pub per_connection: u32,
}

/// The window of [`LinkLimits`]: links made in the last minute are counted.
pub const LINK_WINDOW_SECS: i64 = 60;

/// What became of a self-service login link ([`Store::insert_login_link_limited`]).
///
/// [`Store::insert_login_link_limited`]: super::Store::insert_login_link_limited
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkInsert {
    Stored,
    /// A limit is reached; the next link can be made in this many seconds.
    Limited {
        retry_after_secs: i64,
        /// Whether the caller's limit (else the connection's) was reached.
        per_caller: bool,
    },
}

/// An authorization request in progress, from the interstitial's Continue to the callback.
#[derive(Debug, Clone)]
pub struct ConsentState {
    /// SHA-256 of the `state` parameter.
    pub state_hash: Vec<u8>,
    /// SHA-256 of the cookie that binds the request to one browser.
    pub browser_hash: Vec<u8>,
    pub provider_id: String,
    pub connection_id: String,
    pub redirect_url: String,
    /// The PKCE code verifier (RFC 7636), encrypted.
    pub code_verifier: Envelope,
    /// The connection's generation when the request started; tokens obtained for an older
    /// configuration are discarded.
    pub token_generation: i64,
    pub expires_at: i64,
}

/// A stored token's schedule, for the background refresher.
#[derive(Debug, Clone)]
pub struct TokenSchedule {
    pub provider_id: String,
    pub connection_id: String,
    pub obtained_at: i64,
    pub expires_at: i64,
    pub refresh_at: i64,
}

/// Which stored field an envelope is (for key rotation, which visits them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvelopeField {
    ProviderClientSecret,
    ConnectionClientSecret,
    AccessToken,
    RefreshToken,
    CodeVerifier,
    /// A webhook's signing secret (`provider_id` holds the webhook's id).
    WebhookSecret,
}

/// One stored envelope and where it lives.
#[derive(Debug, Clone)]
pub struct StoredEnvelope {
    pub field: EnvelopeField,
    pub provider_id: String,
    /// For connection fields and tokens.
    pub connection_id: String,
    /// For code verifiers: the consent state's hash.
    pub state_hash: Vec<u8>,
    pub envelope: Envelope,
}

/// What became of a token write that presented the refresh token it was obtained with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutToken {
    Stored,
    /// The connection is gone or its `token_generation` changed; nothing was stored.
    Reconfigured,
    /// The stored refresh token is no longer the one presented (another writer stored a
    /// newer token, or key rotation re-wrapped it); nothing was stored.
    RefreshTokenChanged,
}

/// What a failed token fetch leaves on its connection.
#[derive(Debug, Clone)]
pub struct ConnectionError<'a> {
    pub status: ConnectionStatus,
    pub code: &'a str,
    pub message: &'a str,
    /// Whether the stored tokens go with it: the provider refused the refresh token, so the
    /// grant and the access token that belongs to it are dead.
    pub drop_tokens: bool,
    /// The provider failed: one more failure in a row, and nobody asks it again before this
    /// time (the shared backoff). `None` leaves the backoff as it is.
    pub retry_at: Option<i64>,
}

/// An issuer whose JWTs identify callers.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerRecord {
    pub id: String,
    pub display_name: Option<String>,
    /// `iss`, exactly as in its tokens; unique among trusted issuers.
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Where its keys are fetched from; `None` when they are given inline.
    pub jwks_uri: Option<String>,
    /// Its keys, given inline; `None` when they are fetched from `jwks_uri`.
    pub jwks: Option<serde_json::Value>,
    pub claims: ClaimNames,
    pub leeway_seconds: i64,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One access policy of a connection: an identity that may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub provider_id: String,
    pub connection_id: String,
    pub id: String,
    pub display_name: Option<String>,
    pub identity: PolicyIdentity,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}
