//! Obtaining, storing and handing out access tokens.
//!
//! [`TokenService`] serves a connection's token from the store while it is fresh (before its
//! `refresh_at`, 80 % of its lifetime), and otherwise fetches a new one from the provider
//! before answering, one fetch per connection at a time. A provider that fails while the
//! stored token is still valid costs nothing: the stored token is served, and the gateway is
//! told to ask again soon.

mod client;
mod flight;

use std::sync::Arc;

use credmgr_common::error::codes;
use credmgr_common::RuntimeToken;
use secrecy::ExposeSecret;

use crate::clock::unix_now;
use crate::connections::ConnectionStatus;
use crate::crypto::{Aad, Keyring};
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::store::{ConnectionError, ConnectionRecord, ProviderRecord, Store, TokenRecord};

pub use client::{ClientCredentialsRequest, OAuthClient, TokenResponse};
use flight::Flights;

/// Lifetime assumed for a token whose response has no `expires_in` (RFC 6749 §5.1 makes it
/// optional, "the authorization server SHOULD provide the expiration time via other means or
/// document the default value"). One hour is the most common documented default; a later
/// version makes it a per-preset setting.
pub const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// Longest lifetime taken at face value; protects the arithmetic from absurd `expires_in`.
const MAX_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

/// After a failed refresh, how soon the gateway should ask again for a still-valid token.
pub const RETRY_AFTER_FAILURE_SECS: i64 = 5;

/// How often a fetch is retried when the connection's configuration changed under it.
const MAX_CONFIG_RACES: usize = 2;

/// When a token obtained at `obtained_at` and valid for `lifetime` seconds should be replaced:
/// at 80 % of its lifetime, which leaves the last fifth to refresh in, and to ride out a
/// provider outage.
pub fn refresh_at(obtained_at: i64, lifetime: i64) -> i64 {
    let lifetime = lifetime.clamp(0, MAX_LIFETIME_SECS);
    obtained_at.saturating_add(lifetime * 4 / 5)
}

/// Must `t` be replaced before it is handed out? Past its refresh point, or as old as a token
/// a backend refused.
fn is_due(t: &TokenRecord, rejected_expires_at: Option<i64>) -> bool {
    unix_now() >= t.refresh_at || rejected_expires_at.is_some_and(|r| t.expires_at <= r)
}

/// Why no new token could be obtained from a provider.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TokenFailure {
    pub kind: FailureKind,
    /// Says what happened and what to check; never contains a secret.
    pub message: String,
}

impl TokenFailure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        TokenFailure {
            kind,
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// Connection failure, timeout, 5xx, or an answer that is not a token response.
    ProviderUnreachable,
    /// `invalid_client` / `unauthorized_client` (RFC 6749 §5.2), or HTTP 401.
    ClientSecretRejected,
    /// Any other OAuth error.
    ProviderError,
}

impl FailureKind {
    pub fn code(self) -> &'static str {
        match self {
            FailureKind::ProviderUnreachable => codes::PROVIDER_UNREACHABLE,
            FailureKind::ClientSecretRejected => codes::CLIENT_SECRET_REJECTED,
            FailureKind::ProviderError => codes::PROVIDER_ERROR,
        }
    }
}

/// How a token handed to a gateway was obtained (the `outcome` label of the runtime metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Fresh in the store.
    Hit,
    /// Just fetched from the provider.
    Fetched,
    /// The provider failed; the stored token is still valid and was served.
    Stale,
}

impl Served {
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Hit => "hit",
            Served::Fetched => "fetched",
            Served::Stale => "stale",
        }
    }
}

/// Hands out tokens, fetching and storing them as needed.
pub struct TokenService {
    store: Store,
    keyring: Arc<Keyring>,
    client: OAuthClient,
    metrics: Arc<Metrics>,
    flights: Flights<(String, String)>,
}

impl TokenService {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        client: OAuthClient,
        metrics: Arc<Metrics>,
    ) -> Self {
        TokenService {
            store,
            keyring,
            client,
            metrics,
            flights: Flights::default(),
        }
    }

    /// The connection's token for a gateway, fetched first if the stored one is due.
    ///
    /// `rejected_expires_at`: a gateway saw a backend refuse the token that expires then (it was
    /// revoked, say). A stored token that old is replaced first; a newer one is served, so many
    /// refusals of one token cost one fetch.
    pub async fn runtime_token(
        &self,
        p: &str,
        c: &str,
        rejected_expires_at: Option<i64>,
    ) -> Result<(RuntimeToken, Served), ApiError> {
        let provider = self.load(p, c).await?.0;
        if provider.grant_type.needs_consent() {
            return Err(consent_required(p, c));
        }
        if let Some(t) = self.store.get_token(p, c).await? {
            if !is_due(&t, rejected_expires_at) {
                return Ok((self.runtime(p, c, &t)?, Served::Hit));
            }
        }
        self.refresh(p, c, rejected_expires_at).await
    }

    /// Makes sure the connection has a fresh token, fetching one if not. The outcome is
    /// recorded on the connection; a provider failure is not an error here.
    pub async fn connect(&self, p: &str, c: &str) -> Result<(), ApiError> {
        match self.refresh(p, c, None).await {
            Ok(_) | Err(ApiError::TokenUnavailable(_) | ApiError::ConsentRequired(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn refresh(
        &self,
        p: &str,
        c: &str,
        rejected_expires_at: Option<i64>,
    ) -> Result<(RuntimeToken, Served), ApiError> {
        for _ in 0..MAX_CONFIG_RACES {
            if let Some(answer) = self.refresh_once(p, c, rejected_expires_at).await? {
                return Ok(answer);
            }
        }
        Err(ApiError::Conflict(format!(
            "connection `{c}` of provider `{p}` was reconfigured while a token was being \
             fetched; retry"
        )))
    }

    /// One attempt; `None` if the connection was reconfigured during the fetch, so the token
    /// obtained under the old configuration was discarded.
    async fn refresh_once(
        &self,
        p: &str,
        c: &str,
        rejected_expires_at: Option<i64>,
    ) -> Result<Option<(RuntimeToken, Served)>, ApiError> {
        // One fetch per connection in this process. With several replicas on one database,
        // a lease row in the store (taken with a conditional UPDATE, with an expiry) is
        // acquired right after this lock, and everything below stays as it is: it re-reads
        // the store once it holds the right to fetch.
        let mut flight = self.flights.lock((p.to_owned(), c.to_owned())).await;
        let (provider, conn) = self.load(p, c).await?;
        if provider.grant_type.needs_consent() {
            return Err(consent_required(p, c));
        }
        let stored = self.store.get_token(p, c).await?;
        if let Some(t) = &stored {
            if !is_due(t, rejected_expires_at) {
                return Ok(Some((self.runtime(p, c, t)?, Served::Hit)));
            }
        }
        if flight.attempt_finished_while_waiting() {
            if let Some((generation, failure)) = flight.last_failure() {
                if *generation == conn.token_generation {
                    // The provider just failed for the request ahead of us: do not ask again.
                    return self.fallback(p, c, stored, failure.clone()).map(Some);
                }
            }
        }

        let sent_at = unix_now();
        match self.fetch(&provider, &conn).await? {
            Ok(response) => {
                let (record, token) = self.token_record(p, c, &response, sent_at)?;
                let stored = self
                    .store
                    .put_token(p, c, conn.token_generation, &record)
                    .await?;
                flight.finish(None);
                if !stored {
                    tracing::info!(provider = %p, connection = %c,
                        "connection reconfigured during the token fetch; token discarded");
                    return Ok(None);
                }
                tracing::info!(provider = %p, connection = %c, expires_at = record.expires_at,
                    "token obtained");
                Ok(Some((token, Served::Fetched)))
            }
            Err(failure) => {
                let still_valid = stored.as_ref().is_some_and(|t| unix_now() < t.expires_at);
                tracing::warn!(provider = %p, connection = %c, code = failure.kind.code(),
                    serving_stored_token = still_valid, "token request failed: {failure}");
                let status = if still_valid {
                    ConnectionStatus::Connected
                } else {
                    ConnectionStatus::Error
                };
                let error = ConnectionError {
                    status,
                    code: failure.kind.code(),
                    message: &failure.message,
                };
                self.store
                    .record_token_error(p, c, conn.token_generation, &error)
                    .await?;
                flight.finish(Some((conn.token_generation, failure.clone())));
                self.fallback(p, c, stored, failure).map(Some)
            }
        }
    }

    async fn load(&self, p: &str, c: &str) -> Result<(ProviderRecord, ConnectionRecord), ApiError> {
        let not_found =
            || ApiError::NotFound(format!("connection `{c}` of provider `{p}` does not exist"));
        let provider = self.store.get_provider(p).await?.ok_or_else(not_found)?;
        let conn = self
            .store
            .get_connection(p, c)
            .await?
            .ok_or_else(not_found)?;
        Ok((provider, conn))
    }

    /// Asks the provider. The outer error is ours (a secret that does not decrypt); the inner
    /// one is the provider's.
    async fn fetch(
        &self,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
    ) -> Result<Result<TokenResponse, TokenFailure>, ApiError> {
        let (client_id, secret) = match (&conn.client_id, &conn.client_secret) {
            (Some(id), Some(envelope)) => {
                let aad = Aad::connection_client_secret(&conn.provider_id, &conn.id);
                (id.as_str(), self.keyring.decrypt_string(&aad, envelope)?)
            }
            _ => {
                let aad = Aad::provider_client_secret(&provider.id);
                let secret = self.keyring.decrypt_string(&aad, &provider.client_secret)?;
                (provider.client_id.as_str(), secret)
            }
        };
        let result = self
            .client
            .client_credentials(&ClientCredentialsRequest {
                token_url: &provider.token_url,
                client_id,
                client_secret: &secret,
                auth_method: provider.token_endpoint_auth_method,
                scopes: &provider.scopes,
                extra_params: &provider.token_params,
            })
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(f) => f.kind.code(),
        };
        self.metrics
            .provider_token_request(provider.grant_type.as_str(), outcome);
        Ok(result)
    }

    /// The record to store for a new token, and the answer to give for it.
    fn token_record(
        &self,
        p: &str,
        c: &str,
        response: &TokenResponse,
        obtained_at: i64,
    ) -> Result<(TokenRecord, RuntimeToken), ApiError> {
        let lifetime = response
            .expires_in
            .unwrap_or(DEFAULT_LIFETIME_SECS)
            .clamp(0, MAX_LIFETIME_SECS);
        let plaintext = response.access_token.expose_secret();
        let record = TokenRecord {
            access_token: self
                .keyring
                .encrypt(&Aad::connection_access_token(p, c), plaintext.as_bytes())?,
            token_type: response.token_type.clone(),
            claims: response.claims.clone(),
            obtained_at,
            expires_at: obtained_at.saturating_add(lifetime),
            refresh_at: refresh_at(obtained_at, lifetime),
        };
        let token = RuntimeToken {
            access_token: plaintext.to_owned(),
            token_type: record.token_type.clone(),
            expires_at: record.expires_at,
            refresh_at: record.refresh_at,
            claims: record.claims.clone(),
        };
        Ok((record, token))
    }

    fn runtime(&self, p: &str, c: &str, t: &TokenRecord) -> Result<RuntimeToken, ApiError> {
        let access_token = self
            .keyring
            .decrypt_string(&Aad::connection_access_token(p, c), &t.access_token)?;
        Ok(RuntimeToken {
            access_token: access_token.expose_secret().to_owned(),
            token_type: t.token_type.clone(),
            expires_at: t.expires_at,
            refresh_at: t.refresh_at,
            claims: t.claims.clone(),
        })
    }

    /// After a failed fetch: the stored token while it is valid, due again in a few seconds;
    /// otherwise the failure.
    fn fallback(
        &self,
        p: &str,
        c: &str,
        stored: Option<TokenRecord>,
        failure: TokenFailure,
    ) -> Result<(RuntimeToken, Served), ApiError> {
        let now = unix_now();
        match stored {
            Some(t) if now < t.expires_at => {
                let mut token = self.runtime(p, c, &t)?;
                token.refresh_at = now
                    .saturating_add(RETRY_AFTER_FAILURE_SECS)
                    .min(t.expires_at);
                Ok((token, Served::Stale))
            }
            _ => Err(ApiError::TokenUnavailable(failure)),
        }
    }
}

fn consent_required(p: &str, c: &str) -> ApiError {
    ApiError::ConsentRequired(format!(
        "connection `{c}` of provider `{p}` uses the authorization-code grant and needs a \
         user's consent; this version of credmgr has no consent flow yet"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_at_80_percent_of_the_lifetime() {
        assert_eq!(refresh_at(1_000, 3_600), 1_000 + 2_880);
        assert_eq!(refresh_at(1_000, 0), 1_000);
        assert_eq!(refresh_at(1_000, -5), 1_000);
        assert!(refresh_at(i64::MAX - 10, i64::MAX) >= i64::MAX - 10);
    }
}
