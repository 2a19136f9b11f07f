//! Obtaining, storing and handing out access tokens.
//!
//! [`TokenService`] serves a connection's token from the store while it is fresh (before its
//! `refresh_at`), and otherwise obtains a new one before answering, one fetch per connection
//! at a time (a lock in this process, and a lease in the store across replicas): with the
//! client's credentials (client-credentials connections) or with the stored refresh token
//! (authorization-code connections). A provider that fails while the stored token is still
//! valid costs nothing: the stored token is served, and the gateway is told to ask again soon.
//! The first tokens of an authorization-code connection come from a user's consent
//! ([`TokenService::complete_consent`]).
//!
//! This file holds the service, its public entry points and when a token is due; the rest
//! is split by seam: `refresh` (the state machine of one attempt), `refresh_token` (redeeming
//! and rotating refresh tokens), `lease` (the cross-replica refresh lease), `flight` (the
//! in-process lock), `consent` (the authorization-code exchange), `record` (what is stored
//! and served), `client` and `response` (the token endpoint), `error` (what can go wrong),
//! `scheduler` (proactive refresh).

mod backoff;
mod claims;
mod client;
mod consent;
mod error;
mod flight;
#[doc(hidden)]
pub mod fuzz;
mod lease;
mod record;
mod refresh;
mod refresh_token;
mod response;
pub mod scheduler;

use std::sync::Arc;

use credmgr_common::RuntimeToken;
use tracing::Instrument as _;

use crate::clock::unix_now;
use crate::crypto::{Aad, Envelope, Keyring};
use crate::domain::ConnectionKey;
use crate::metrics::Metrics;
use crate::store::{ConnectionRecord, ProviderRecord, Store, TokenRecord};

pub use client::{ClientAuth, Grant, OAuthClient};
pub use error::{ConsentFailure, FailureKind, TokenError, TokenFailure};
use flight::Flights;
pub use response::TokenResponse;

/// Lifetime assumed for a token whose response has no `expires_in` (RFC 6749 §5.1 makes it
/// optional, "the authorization server SHOULD provide the expiration time via other means or
/// document the default value"), whose access token is no JWT with an `exp`, and whose
/// preset declares no `default_lifetime_secs`. One hour is the most common documented default.
pub const DEFAULT_LIFETIME_SECS: i64 = 3600;

/// Longest lifetime taken at face value; protects the arithmetic from absurd `expires_in`.
const MAX_LIFETIME_SECS: i64 = 10 * 365 * 24 * 3600;

/// After a failed refresh, how soon the gateway should ask again for a still-valid token.
pub const RETRY_AFTER_FAILURE_SECS: i64 = 5;

/// When a token obtained at `obtained_at` and valid for `lifetime` seconds should be replaced:
/// at 80 % of its lifetime, which leaves the last fifth to refresh in and to ride out a
/// provider outage, and at least `skew` seconds before it expires, but never before half its
/// lifetime (a token shorter than twice the skew would otherwise be due at once).
pub fn refresh_at(obtained_at: i64, lifetime: i64, skew: i64) -> i64 {
    let lifetime = lifetime.clamp(0, MAX_LIFETIME_SECS);
    let at_80 = lifetime * 4 / 5;
    let before_skew = lifetime.saturating_sub(skew.max(0));
    obtained_at.saturating_add(at_80.min(before_skew).max(lifetime / 2))
}

/// Must `t` be replaced now? Within `lead` seconds of its refresh point, or `refused` (it is
/// the token a backend refused: [`TokenService::refused`]).
fn is_due(t: &TokenRecord, lead: i64, refused: bool) -> bool {
    refused || unix_now() >= t.refresh_at.saturating_sub(lead)
}

/// The token a backend refused, as a gateway names it (a query parameter of the runtime API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    /// By [`credmgr_common::runtime::token_fingerprint`]: exactly that token.
    Fingerprint(String),
    /// By its expiry second (gateways before the fingerprint): any token expiring then or
    /// earlier. Two tokens issued in one second look alike, so the forced-refresh interval
    /// is what keeps a second report from replacing the new token.
    ExpiresAt(i64),
}

/// What makes a stored token need replacing, for one request.
#[derive(Clone)]
struct Need {
    /// Refresh this many seconds ahead of the refresh point.
    lead: i64,
    /// A backend refused this token.
    rejected: Option<Rejected>,
    /// The token this request found due (its envelope): another one stored since then came
    /// from a refresh that finished while this request waited, and is shared.
    seen: Option<Envelope>,
}

impl Need {
    /// Does `t` make a refresh unnecessary? It is not due, or it is newer than the token this
    /// request found due, still valid and not the refused one. (With tokens of a few seconds,
    /// a token just refreshed for the request ahead can already be past its refresh point;
    /// refreshing it again would cost a refresh per waiting request.)
    fn satisfied_by(&self, tokens: &TokenService, key: &ConnectionKey, t: &TokenRecord) -> bool {
        let refused = tokens.refused(key, t, self.rejected.as_ref());
        if !is_due(t, self.lead, refused) {
            return true;
        }
        let newer = self.seen.as_ref() != Some(&t.access_token);
        newer && unix_now() < t.expires_at && !refused
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
    flights: Flights<ConnectionKey>,
    /// Seconds before expiry by which a token is refreshed at the latest.
    refresh_skew: i64,
    /// This process, as the holder of refresh leases in the shared store.
    instance: String,
    /// How long a refresh lease lasts: longer than any refresh can take.
    lease_secs: i64,
    /// At most one refresh forced by backends' refusals per connection per this many seconds,
    /// however many requests a backend refuses (`CREDMGR_FORCED_REFRESH_INTERVAL`).
    forced_refresh_interval: i64,
}

impl TokenService {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        client: OAuthClient,
        metrics: Arc<Metrics>,
        refresh_skew: std::time::Duration,
        forced_refresh_interval: std::time::Duration,
    ) -> Self {
        let instance = {
            use aes_gcm::aead::rand_core::RngCore as _;
            let mut bytes = [0u8; 12];
            aes_gcm::aead::OsRng.fill_bytes(&mut bytes);
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        // Names this process in the `refresh_lease_owner` column, so an operator can tell
        // which replica holds a lease.
        tracing::info!(lease_owner = %instance, "refresh leases are held as this id");
        TokenService {
            store,
            keyring,
            metrics,
            lease_secs: i64::try_from(client.timeout().as_secs())
                .unwrap_or(60)
                .saturating_mul(3)
                .saturating_add(5),
            flights: Flights::default(),
            refresh_skew: i64::try_from(refresh_skew.as_secs()).unwrap_or(i64::MAX),
            forced_refresh_interval: i64::try_from(forced_refresh_interval.as_secs())
                .unwrap_or(i64::MAX),
            client,
            instance,
        }
    }

    /// The connection's token for a gateway: `stored`, the token the caller has just read
    /// from the store with the connection ([`crate::store::Store::runtime_view`]), while it is
    /// not due; otherwise one fetched first (which reads the connection and its token again,
    /// under the refresh lock: a missing connection is [`TokenError::NotFound`] then).
    ///
    /// `rejected`: a gateway saw a backend refuse that token (it was revoked, say). If it is
    /// the stored one, it is replaced first, unless a refusal forced a refresh of the
    /// connection less than the forced-refresh interval ago; any other token is served, so
    /// many refusals of one token cost at most one fetch.
    #[tracing::instrument(level = "debug", name = "token_fetch", skip_all,
        fields(provider = %key.provider(), connection = %key.connection(),
            outcome = tracing::field::Empty))]
    pub async fn runtime_token(
        self: &Arc<Self>,
        key: &ConnectionKey,
        stored: Option<TokenRecord>,
        rejected: Option<Rejected>,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        let answer = match stored.filter(|t| !is_due(t, 0, self.refused(key, t, rejected.as_ref())))
        {
            Some(t) => Ok((self.runtime(key, &t)?, Served::Hit)),
            None => self.refresh(key, 0, rejected).await,
        };
        let span = tracing::Span::current();
        match &answer {
            Ok((_, served)) => span.record("outcome", served.as_str()),
            Err(TokenError::Unavailable(f)) => span.record("outcome", f.kind.code()),
            Err(TokenError::ConsentRequired(_)) => span.record("outcome", "consent_required"),
            Err(_) => span.record("outcome", "error"),
        };
        answer
    }

    /// Whether `t` is the token a backend refused.
    fn refused(&self, key: &ConnectionKey, t: &TokenRecord, rejected: Option<&Rejected>) -> bool {
        match rejected {
            None => false,
            Some(Rejected::ExpiresAt(r)) => t.expires_at <= *r,
            Some(Rejected::Fingerprint(fp)) => self
                .keyring
                .decrypt_string(
                    &Aad::connection_access_token(key.provider(), key.connection()),
                    &t.access_token,
                )
                .is_ok_and(|plain| {
                    use secrecy::ExposeSecret as _;
                    credmgr_common::runtime::token_fingerprint(plain.expose_secret()) == *fp
                }),
        }
    }

    /// `rejected`, unless a refusal forced a refresh of the connection less than the
    /// forced-refresh interval ago (on any replica): then the refusal is ignored, so that a
    /// backend refusing every token costs one refresh per interval, not one per request.
    async fn may_force(
        &self,
        key: &ConnectionKey,
        rejected: Option<Rejected>,
    ) -> Result<Option<Rejected>, TokenError> {
        if rejected.is_none() {
            return Ok(None);
        }
        let last = self
            .store
            .forced_refresh_at(key.provider(), key.connection())
            .await?;
        let recent =
            last.is_some_and(|at| unix_now() < at.saturating_add(self.forced_refresh_interval));
        Ok(if recent { None } else { rejected })
    }

    /// The metrics this service counts in (the scheduler reports to them too).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Makes sure the connection has a fresh token, fetching one if not. The outcome is
    /// recorded on the connection; a provider failure is not an error here.
    pub async fn connect(self: &Arc<Self>, key: &ConnectionKey) -> Result<(), TokenError> {
        match self.refresh(key, 0, None).await {
            Ok(_) | Err(TokenError::Unavailable(_) | TokenError::ConsentRequired(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Refreshes the connection's token if it is due within `lead` seconds (the background
    /// scheduler's entry: it refreshes a little ahead of the runtime API, with jitter).
    /// `None`: another replica holds the connection's refresh lease, so this one leaves the
    /// connection to it instead of waiting (replicas' schedulers share the work).
    pub async fn refresh_if_due(
        self: &Arc<Self>,
        key: &ConnectionKey,
        lead: i64,
    ) -> Result<Option<Served>, TokenError> {
        Ok(self
            .refresh_mode(key, lead, None, false)
            .await?
            .map(|(_, served)| served))
    }

    /// Refreshes in a task of its own: if the gateway gives up and its request is dropped, the
    /// refresh still completes and stores what the provider sent. Abandoned half-way, a
    /// rotated refresh token would be lost, and the next refresh would present the used one,
    /// which revokes the grant at providers that detect reuse.
    async fn refresh(
        self: &Arc<Self>,
        key: &ConnectionKey,
        lead: i64,
        rejected: Option<Rejected>,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        self.refresh_mode(key, lead, rejected, true)
            .await?
            .ok_or_else(|| {
                TokenError::Internal("a refresh that waits for the lease gave up".into())
            })
    }

    /// As [`TokenService::refresh`]; with `wait` false, returns `None` at once if another
    /// replica holds the lease.
    async fn refresh_mode(
        self: &Arc<Self>,
        key: &ConnectionKey,
        lead: i64,
        rejected: Option<Rejected>,
        wait: bool,
    ) -> Result<Option<(RuntimeToken, Served)>, TokenError> {
        let this = Arc::clone(self);
        let key = key.clone();
        // The refresh's spans (the provider's token request) belong to the caller's trace.
        let refresh = async move { this.refresh_detached(&key, lead, rejected, wait).await };
        tokio::spawn(refresh.instrument(tracing::Span::current()))
            .await
            .map_err(|e| TokenError::Internal(format!("the refresh task failed: {e}")))?
    }

    async fn try_load(
        &self,
        key: &ConnectionKey,
    ) -> Result<Option<(ProviderRecord, ConnectionRecord)>, TokenError> {
        let Some(provider) = self.store.get_provider(key.provider()).await? else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_connection(key.provider(), key.connection())
            .await?
            .map(|conn| (provider, conn)))
    }

    async fn load(
        &self,
        key: &ConnectionKey,
    ) -> Result<(ProviderRecord, ConnectionRecord), TokenError> {
        self.try_load(key)
            .await?
            .ok_or_else(|| TokenError::NotFound(key.clone()))
    }

    /// Asks the provider. The outer error is ours (a secret that does not decrypt); the inner
    /// one is the provider's.
    async fn fetch(
        &self,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
        grant: &Grant<'_>,
    ) -> Result<Result<TokenResponse, TokenFailure>, TokenError> {
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
        let token_url = match grant {
            Grant::RefreshToken { .. } => provider.refresh_endpoint(),
            _ => &provider.token_url,
        };
        // The token endpoint's host names the provider's server; the URL's path and query
        // are left out (a provider's URL could carry a tenant or a key).
        let host = url::Url::parse(token_url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        let span = tracing::debug_span!("provider_token_request", "otel.kind" = "client",
            provider = %provider.id, grant_type = grant.name(), "server.address" = %host,
            outcome = tracing::field::Empty, "otel.status_code" = tracing::field::Empty);
        let started = std::time::Instant::now();
        let result = self
            .client
            .request(
                &ClientAuth {
                    token_url,
                    client_id,
                    client_secret: &secret,
                    auth_method: provider.token_endpoint_auth_method,
                    extra_params: &provider.token_params,
                    quirks: &provider.identity_provider.preset().quirks,
                },
                grant,
            )
            .instrument(span.clone())
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(f) => f.kind.code(),
        };
        span.record("outcome", outcome);
        if result.is_err() {
            span.record("otel.status_code", "ERROR");
        }
        self.metrics
            .provider_token_request(&provider.id, grant.name(), outcome, started.elapsed());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_is_due_at_80_percent_of_the_lifetime() {
        assert_eq!(refresh_at(1_000, 3_600, 0), 1_000 + 2_880);
        assert_eq!(refresh_at(1_000, 0, 0), 1_000);
        assert_eq!(refresh_at(1_000, -5, 0), 1_000);
        assert!(refresh_at(i64::MAX - 10, i64::MAX, 0) >= i64::MAX - 10);
    }

    #[test]
    fn refresh_is_due_a_skew_before_expiry_but_not_before_half_the_lifetime() {
        // 80 % of 3600 is 2880; 3600 - 900 is earlier.
        assert_eq!(refresh_at(0, 3_600, 900), 2_700);
        // 80 % is earlier than the skew asks for.
        assert_eq!(refresh_at(0, 3_600, 60), 2_880);
        // A token shorter than the skew: half its lifetime.
        assert_eq!(refresh_at(0, 10, 60), 5);
    }
}
