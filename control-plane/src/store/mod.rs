//! Persistence of providers, connections and tokens.
//!
//! [`Store`] is the one door to the database. It speaks in records whose secrets are already
//! encrypted ([`Envelope`]s): the store never sees a plaintext secret, and never holds a key.
//! Behind it sits one backend per database: SQLite (`sqlite.rs`, one node, the default) and
//! PostgreSQL (`postgres.rs`, several replicas on one database). Each has its own migration
//! folder (`migrations/sqlite/`, `migrations/postgresql/`, numbered alike) and the same
//! statements as runtime (not compile-time checked) queries; `rows.rs` decodes rows for both.
//! A new store method is one method in each backend plus one `dispatch!` line here.

// Defined before the modules so that every store module forwards its calls with it.
/// Forwards a call to whichever backend is configured.
macro_rules! dispatch {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match &$self.backend {
            Backend::Sqlite(s) => s.$method($($arg),*).await,
            Backend::Postgres(s) => s.$method($($arg),*).await,
        }
    };
}

pub mod identities;
mod postgres;
mod rows;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;

use anyhow::Context as _;

use credmgr_common::access::PolicyIdentity;

use crate::crypto::Envelope;
use crate::domain::{AuthMethod, ConnectionStatus, GrantType};
use crate::presets::IdentityProvider;

pub use identities::{IssuerRecord, PolicyRecord};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

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
    NoConnection,
    Connection {
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
}

/// A database failure. The details go to the log, never to a client.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Is the database unreachable (rather than refusing this statement)? A request that
    /// fails so may succeed when retried: the pool replaces dead connections by itself.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed => true,
                // SQLSTATE class 08: connection exception; 57P01..57P03: the server is
                // shutting down, was shut down by an administrator, or cannot connect now.
                sqlx::Error::Database(db) => db
                    .code()
                    .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
                _ => false,
            },
            StoreError::Corrupt(_) => false,
        }
    }
}

/// The database URL, shown without its password.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(url.into())
    }

    /// The URL itself, for the driver only: it may hold a password.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced, safe to log.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("redacted"));
                u.to_string()
            }
            Ok(_) => self.0.clone(),
            Err(_) if self.0.contains('@') => "[unparseable URL, redacted]".to_owned(),
            Err(_) => self.0.clone(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// The store: cheap to clone, shared by all requests.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

impl Store {
    /// Opens the database named by `url` and brings its schema up to date.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Store> {
        let raw = url.expose();
        if raw.starts_with("sqlite:") {
            let store = SqliteStore::connect(raw).await.with_context(|| {
                format!(
                    "could not open the SQLite database {url}: check that its directory \
                         exists and is writable, or set CREDMGR_DATABASE_URL (--database-url)"
                )
            })?;
            return Ok(Store {
                backend: Backend::Sqlite(store),
            });
        }
        if raw.starts_with("postgres:") || raw.starts_with("postgresql:") {
            let store = PostgresStore::connect(raw).await.with_context(|| {
                format!(
                    "could not connect to the PostgreSQL database {url} or bring its schema \
                     up to date: check that the server runs, that the database exists and \
                     that the user may create tables in it (CREDMGR_DATABASE_URL, \
                     --database-url)"
                )
            })?;
            return Ok(Store {
                backend: Backend::Postgres(store),
            });
        }
        anyhow::bail!(
            "unsupported database URL {url}: set CREDMGR_DATABASE_URL (--database-url) to \
             sqlite://PATH (for example sqlite://credmgr.db) or \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE"
        )
    }

    /// Which database this is: `sqlite` or `postgresql`.
    pub fn kind(&self) -> &'static str {
        match &self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgresql",
        }
    }

    /// Waits for open connections to finish and closes them.
    pub async fn close(&self) {
        dispatch!(self.close())
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self.ping())
    }

    pub async fn get_provider(&self, id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        dispatch!(self.get_provider(id))
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        dispatch!(self.list_providers())
    }

    /// Inserts a new provider; `false` if one with that id exists already.
    pub async fn insert_provider(&self, p: &ProviderRecord) -> Result<bool, StoreError> {
        dispatch!(self.insert_provider(p))
    }

    /// Replaces a provider (not its `created_at`) if its etag is still `expected_etag`;
    /// `false` if it does not exist or changed meanwhile. With `invalidate_tokens`, its
    /// connections' tokens are deleted in the same transaction and the connections go back
    /// to `not_connected`.
    pub async fn replace_provider(
        &self,
        p: &ProviderRecord,
        invalidate_tokens: bool,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.replace_provider(p, invalidate_tokens, expected_etag))
    }

    /// Deletes a provider with its connections and tokens (only if its etag is
    /// `expected_etag`, when given); `false` if nothing was deleted.
    pub async fn delete_provider(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_provider(id, expected_etag))
    }

    pub async fn get_connection(
        &self,
        provider_id: &str,
        id: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        dispatch!(self.get_connection(provider_id, id))
    }

    pub async fn list_connections(
        &self,
        provider_id: &str,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        dispatch!(self.list_connections(provider_id))
    }

    /// At most `limit` connections of a provider whose ids sort after `after` (from the
    /// first without it), in id order: one page of a keyset-paginated list.
    pub async fn list_connections_page(
        &self,
        provider_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        dispatch!(self.list_connections_page(provider_id, after, limit))
    }

    /// Inserts a new connection; `false` if one with that id exists already under the
    /// provider. Fails if the provider does not exist (foreign key).
    pub async fn insert_connection(&self, c: &ConnectionRecord) -> Result<bool, StoreError> {
        dispatch!(self.insert_connection(c))
    }

    /// Replaces a connection's configuration (name, credentials override) if its etag is
    /// still `expected_etag`; `false` if it does not exist or changed meanwhile. With
    /// `invalidate_token`, its token is deleted in the same transaction.
    pub async fn replace_connection(
        &self,
        c: &ConnectionRecord,
        invalidate_token: bool,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.replace_connection(c, invalidate_token, expected_etag))
    }

    /// Deletes a connection (only if its etag is `expected_etag`, when given).
    pub async fn delete_connection(
        &self,
        provider_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_connection(provider_id, id, expected_etag))
    }

    pub async fn get_token(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        dispatch!(self.get_token(provider_id, connection_id))
    }

    /// Whether the provider and the connection exist, the connection's access policies and
    /// its token: what a runtime token request reads before it decides, in one query (one
    /// round trip and one pooled connection per request, on the runtime API's hot path).
    pub async fn runtime_view(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<RuntimeView, StoreError> {
        dispatch!(self.runtime_view(provider_id, connection_id))
    }

    /// Stores a newly obtained token and marks the connection `connected`, in one
    /// transaction. Returns `false`, storing nothing, if the connection is gone or its
    /// `token_generation` is no longer `generation`.
    pub async fn put_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        token: &TokenRecord,
    ) -> Result<bool, StoreError> {
        dispatch!(self.put_token(provider_id, connection_id, generation, token))
    }

    /// As [`Store::put_token`] for a token obtained by redeeming a refresh token: a
    /// compare-and-swap, storing only if the stored refresh token is still exactly
    /// `presented` (envelopes are unique, so the bytes are a version). A replica whose lease
    /// ran out while it refreshed cannot overwrite what the next holder stored.
    pub async fn put_refreshed_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        presented: &Envelope,
        token: &TokenRecord,
    ) -> Result<PutToken, StoreError> {
        dispatch!(self.put_refreshed_token(
            provider_id,
            connection_id,
            generation,
            presented,
            token
        ))
    }

    /// Records a failure to obtain a token on the connection (if still at `generation`);
    /// the stored token, if any, is left as it is.
    pub async fn record_token_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        error: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.record_token_error(provider_id, connection_id, generation, error))
    }
}

impl Store {
    /// Stores a new login link, dropping expired ones.
    pub async fn insert_login_link(&self, link: &LoginLink) -> Result<(), StoreError> {
        dispatch!(self.insert_login_link(link))
    }

    /// The login link with this hash, used or not.
    pub async fn get_login_link(&self, id_hash: &[u8]) -> Result<Option<LoginLink>, StoreError> {
        dispatch!(self.get_login_link(id_hash))
    }

    /// Marks the link used, if it is unused and unexpired at `now`; returns it then. Atomic:
    /// of two concurrent uses, one wins.
    pub async fn use_login_link(
        &self,
        id_hash: &[u8],
        now: i64,
    ) -> Result<Option<LoginLink>, StoreError> {
        dispatch!(self.use_login_link(id_hash, now))
    }

    /// Stores an authorization request in progress, dropping expired ones.
    pub async fn insert_consent_state(&self, state: &ConsentState) -> Result<(), StoreError> {
        dispatch!(self.insert_consent_state(state))
    }

    /// Removes and returns the authorization request with this state hash: a state is
    /// consumed by its first use, whatever the outcome.
    pub async fn take_consent_state(
        &self,
        state_hash: &[u8],
    ) -> Result<Option<ConsentState>, StoreError> {
        dispatch!(self.take_consent_state(state_hash))
    }

    /// Takes the connection's refresh lease for `owner` until `until`, if nobody else holds
    /// an unexpired one at `now`. Atomic across replicas sharing the database.
    pub async fn try_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
        now: i64,
        until: i64,
    ) -> Result<bool, StoreError> {
        dispatch!(self.try_refresh_lease(provider_id, connection_id, owner, now, until))
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        dispatch!(self.release_refresh_lease(provider_id, connection_id, owner))
    }

    /// Every stored envelope (key rotation and the key-usage report).
    pub async fn all_envelopes(&self) -> Result<Vec<StoredEnvelope>, StoreError> {
        dispatch!(self.all_envelopes())
    }

    /// Writes `new` in place of `old.envelope`, only if the stored value is still exactly
    /// `old.envelope` (a token refreshed meanwhile is newer and left alone); `false` then.
    pub async fn replace_envelope(
        &self,
        old: &StoredEnvelope,
        new: &Envelope,
    ) -> Result<bool, StoreError> {
        dispatch!(self.replace_envelope(old, new))
    }

    /// The tokens whose `refresh_at` is at or before `horizon`, soonest first.
    pub async fn tokens_due_by(&self, horizon: i64) -> Result<Vec<TokenSchedule>, StoreError> {
        dispatch!(self.tokens_due_by(horizon))
    }

    /// After the provider refused the refresh token: deletes the connection's tokens and
    /// records the error, in one transaction, if the connection is still at `generation`.
    pub async fn drop_tokens_with_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        error: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.drop_tokens_with_error(provider_id, connection_id, generation, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_never_shows_a_password() {
        let url = DatabaseUrl::new("postgres://credmgr:hunter2@db:5432/credmgr");
        assert!(!format!("{url:?}").contains("hunter2"));
        assert!(!url.to_string().contains("hunter2"));
        assert!(url.to_string().contains("credmgr:redacted@db"), "{url}");
        let plain = DatabaseUrl::new("sqlite://credmgr.db");
        assert_eq!(plain.to_string(), "sqlite://credmgr.db");
    }
}
