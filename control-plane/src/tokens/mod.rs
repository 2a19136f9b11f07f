//! Obtaining, storing and handing out access tokens.
//!
//! [`TokenService`] serves a connection's token from the store while it is fresh (before its
//! `refresh_at`), and otherwise obtains a new one before answering, one fetch per connection
//! at a time (a lock in this process, and a lease in the store across replicas): with the client's credentials (client-credentials connections) or with the
//! stored refresh token (authorization-code connections). A provider that fails while the
//! stored token is still valid costs nothing: the stored token is served, and the gateway is
//! told to ask again soon. The first tokens of an authorization-code connection come from a
//! user's consent ([`TokenService::complete_consent`]).

mod client;
mod error;
mod flight;
mod response;
pub mod scheduler;

use std::sync::Arc;

use credmgr_common::error::codes;
use credmgr_common::RuntimeToken;
use secrecy::ExposeSecret;

use crate::clock::unix_now;
use crate::crypto::Envelope;
use crate::crypto::{Aad, Keyring};
use crate::domain::{ConnectionKey, ConnectionStatus};
use crate::metrics::Metrics;
use crate::store::{
    ConnectionError, ConnectionRecord, ProviderRecord, PutToken, Store, TokenRecord,
};

pub use client::{ClientAuth, Grant, OAuthClient};
pub use error::{FailureKind, TokenError, TokenFailure};
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

/// How often a fetch is retried when the connection's configuration changed under it.
const MAX_CONFIG_RACES: usize = 2;

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

/// Must `t` be replaced now? Within `lead` seconds of its refresh point, or as old as a token
/// a backend refused.
fn is_due(t: &TokenRecord, lead: i64, rejected_expires_at: Option<i64>) -> bool {
    unix_now() >= t.refresh_at.saturating_sub(lead)
        || rejected_expires_at.is_some_and(|r| t.expires_at <= r)
}

/// What makes a stored token need replacing, for one request.
#[derive(Clone)]
struct Need {
    /// Refresh this many seconds ahead of the refresh point.
    lead: i64,
    /// A backend refused the token that expires then.
    rejected_expires_at: Option<i64>,
    /// The token this request found due (its envelope): another one stored since then came
    /// from a refresh that finished while this request waited, and is shared.
    seen: Option<Envelope>,
}

impl Need {
    /// Does `t` make a refresh unnecessary? It is not due, or it is newer than the token this
    /// request found due and still valid. (With tokens of a few seconds, a token just
    /// refreshed for the request ahead can already be past its refresh point; refreshing it
    /// again would cost a refresh per waiting request.)
    fn satisfied_by(&self, t: &TokenRecord) -> bool {
        if !is_due(t, self.lead, self.rejected_expires_at) {
            return true;
        }
        let newer = self.seen.as_ref() != Some(&t.access_token);
        newer
            && unix_now() < t.expires_at
            && self.rejected_expires_at.is_none_or(|r| t.expires_at > r)
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

/// Why a consent could not be completed. Nothing was stored.
#[derive(Debug)]
pub enum ConsentFailure {
    /// The provider refused the code exchange or could not be reached.
    Provider(TokenFailure),
    /// The provider or connection was changed or deleted while the user consented.
    Reconfigured,
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
}

/// What one refresh attempt came to.
enum Attempt {
    Done(RuntimeToken, Served),
    /// The connection was reconfigured during the fetch; the token obtained under the old
    /// configuration was discarded.
    Reconfigured,
    /// Another replica holds the refresh lease (only when not waiting for it).
    Elsewhere,
}

fn done((token, served): (RuntimeToken, Served)) -> Attempt {
    Attempt::Done(token, served)
}

/// What a failed attempt does with the connection's stored tokens.
enum Tokens<'a> {
    /// Drops them: the grant they belong to is gone.
    Drop,
    /// Keeps them (the ones read before the attempt): the access token serves while valid.
    Keep(Option<&'a TokenRecord>),
}

/// How often a replica waiting for another one's refresh looks at the store.
const LEASE_POLL: std::time::Duration = std::time::Duration::from_millis(100);

/// A refresh token as used for one request: its stored envelope, expiry and plaintext.
struct UsedRefreshToken {
    envelope: Envelope,
    expires_at: Option<i64>,
    secret: secrecy::SecretString,
}

/// The refresh token to keep when a response brings no new one: its envelope and expiry.
type KeptRefresh = Option<(Envelope, Option<i64>)>;

/// Whether `t`'s refresh token is past the expiry the provider gave it.
fn refresh_token_expired(t: &TokenRecord) -> bool {
    t.refresh_token.is_some()
        && t.refresh_token_expires_at
            .is_some_and(|at| unix_now() >= at)
}

impl TokenService {
    pub fn new(
        store: Store,
        keyring: Arc<Keyring>,
        client: OAuthClient,
        metrics: Arc<Metrics>,
        refresh_skew: std::time::Duration,
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
            client,
            instance,
        }
    }

    /// The connection's token for a gateway: `stored`, the token the caller has just read
    /// from the store with the connection ([`crate::store::Store::runtime_view`]), while it is
    /// not due; otherwise one fetched first (which reads the connection and its token again,
    /// under the refresh lock: a missing connection is a 404 then).
    ///
    /// `rejected_expires_at`: a gateway saw a backend refuse the token that expires then (it was
    /// revoked, say). A stored token that old is replaced first; a newer one is served, so many
    /// refusals of one token cost one fetch.
    pub async fn runtime_token(
        self: &Arc<Self>,
        key: &ConnectionKey,
        stored: Option<TokenRecord>,
        rejected_expires_at: Option<i64>,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        if let Some(t) = stored.filter(|t| !is_due(t, 0, rejected_expires_at)) {
            return Ok((self.runtime(key, &t)?, Served::Hit));
        }
        self.refresh(key, 0, rejected_expires_at).await
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
        rejected_expires_at: Option<i64>,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        self.refresh_mode(key, lead, rejected_expires_at, true)
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
        rejected_expires_at: Option<i64>,
        wait: bool,
    ) -> Result<Option<(RuntimeToken, Served)>, TokenError> {
        let this = Arc::clone(self);
        let key = key.clone();
        tokio::spawn(async move {
            this.refresh_detached(&key, lead, rejected_expires_at, wait)
                .await
        })
        .await
        .map_err(|e| TokenError::Internal(format!("the refresh task failed: {e}")))?
    }

    async fn refresh_detached(
        &self,
        key: &ConnectionKey,
        lead: i64,
        rejected_expires_at: Option<i64>,
        wait: bool,
    ) -> Result<Option<(RuntimeToken, Served)>, TokenError> {
        for _ in 0..MAX_CONFIG_RACES {
            match self
                .refresh_once(key, lead, rejected_expires_at, wait)
                .await?
            {
                Attempt::Done(token, served) => return Ok(Some((token, served))),
                Attempt::Elsewhere => return Ok(None),
                Attempt::Reconfigured => {}
            }
        }
        Err(TokenError::Reconfigured(key.clone()))
    }

    /// One attempt.
    async fn refresh_once(
        &self,
        key: &ConnectionKey,
        lead: i64,
        rejected_expires_at: Option<i64>,
        wait: bool,
    ) -> Result<Attempt, TokenError> {
        // One fetch per connection: in this process by the flight lock, across replicas that
        // share the database by the lease taken below.
        let mut flight = self.flights.lock(key.clone()).await;
        let (provider, conn) = self.load(key).await?;
        let stored = self
            .store
            .get_token(key.provider(), key.connection())
            .await?;
        if let Some(t) = &stored {
            if !is_due(t, lead, rejected_expires_at) {
                return Ok(done((self.runtime(key, t)?, Served::Hit)));
            }
        }
        let need = Need {
            lead,
            rejected_expires_at,
            seen: None,
        };
        if flight.attempt_finished_while_waiting() {
            match flight.last_failure() {
                Some((generation, failure)) if *generation == conn.token_generation => {
                    // The provider just failed for the request ahead of us: do not ask again.
                    return self
                        .fallback(key, stored.as_ref(), failure.clone())
                        .map(done);
                }
                None => {
                    // The request ahead of us just stored a token: share it.
                    if let Some(t) = stored.as_ref().filter(|t| need.satisfied_by(t)) {
                        return Ok(done((self.runtime(key, t)?, Served::Hit)));
                    }
                }
                Some(_) => {}
            }
        }
        let need = Need {
            seen: stored.as_ref().map(|t| t.access_token.clone()),
            ..need
        };

        if let Some(t) = stored.as_ref().filter(|t| refresh_token_expired(t)) {
            if unix_now() >= t.expires_at {
                return self.refresh_token_gone(key, &conn, t, &mut flight).await;
            }
            // The access token still serves; then a user must consent again.
            return self.without_refresh_token(key, &conn, stored).map(done);
        }
        let has_refresh_token = stored.as_ref().is_some_and(|t| t.refresh_token.is_some());
        if provider.grant_type.needs_consent() && !has_refresh_token {
            // Nothing to ask the provider: no lease needed.
            return self.without_refresh_token(key, &conn, stored).map(done);
        }
        let now = unix_now();
        if !wait
            && !self
                .store
                .try_refresh_lease(
                    key.provider(),
                    key.connection(),
                    &self.instance,
                    now,
                    now + self.lease_secs,
                )
                .await?
        {
            return Ok(Attempt::Elsewhere);
        }
        // (Taken just now, if not waiting: taking it again is a no-op for its holder.)
        if let Some(t) = self.lease(key, Some(&need)).await? {
            // Another replica refreshed while we waited for its lease.
            return Ok(done((self.runtime(key, &t)?, Served::Hit)));
        }
        // The lease is ours: what is stored now is the latest (another replica may have
        // rotated the refresh token just before).
        let outcome = async {
            let stored = self
                .store
                .get_token(key.provider(), key.connection())
                .await?;
            if let Some(t) = stored.as_ref().filter(|t| need.satisfied_by(t)) {
                return Ok(done((self.runtime(key, t)?, Served::Hit)));
            }
            self.refresh_leased(key, &provider, &conn, stored, &mut flight)
                .await
                .map(|answer| answer.map_or(Attempt::Reconfigured, done))
        }
        .await;
        self.release_lease(key).await;
        outcome
    }

    /// Both the access token and the refresh token have expired: the tokens are dropped and
    /// the connection says why, so an operator knows a user must consent again.
    async fn refresh_token_gone(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
        t: &TokenRecord,
        flight: &mut flight::FlightGuard<'_, ConnectionKey>,
    ) -> Result<Attempt, TokenError> {
        let at = t.refresh_token_expires_at.map(crate::clock::rfc3339);
        let failure = TokenFailure::new(
            FailureKind::RefreshTokenExpired,
            format!(
                "the refresh token expired at {}, as the provider said when it issued it; a \
                 user must consent again: create a login link for this connection",
                at.unwrap_or_default()
            ),
        );
        self.failed(key, conn, flight, failure, Tokens::Drop, "not refreshing")
            .await
            .map(done)
    }

    /// Waits for the connection's refresh lease. With `need`, gives up waiting as soon as
    /// another replica has stored a token that satisfies it ([`Need::satisfied_by`]), and
    /// returns it; `None` means the lease is ours.
    async fn lease(
        &self,
        key: &ConnectionKey,
        need: Option<&Need>,
    ) -> Result<Option<TokenRecord>, TokenError> {
        let deadline = std::time::Instant::now()
            + std::time::Duration::from_secs(u64::try_from(self.lease_secs).unwrap_or(60) + 2);
        loop {
            let now = unix_now();
            let until = now.saturating_add(self.lease_secs);
            if self
                .store
                .try_refresh_lease(key.provider(), key.connection(), &self.instance, now, until)
                .await?
            {
                return Ok(None);
            }
            if std::time::Instant::now() > deadline {
                return Err(TokenError::Unavailable(TokenFailure::new(
                    FailureKind::ProviderUnreachable,
                    format!(
                        "another control-plane replica has been refreshing {key} for longer \
                         than {}s",
                        self.lease_secs
                    ),
                )));
            }
            tokio::time::sleep(LEASE_POLL).await;
            if let Some(need) = need {
                if let Some(t) = self
                    .store
                    .get_token(key.provider(), key.connection())
                    .await?
                {
                    if need.satisfied_by(&t) {
                        return Ok(Some(t));
                    }
                }
            }
        }
    }

    async fn release_lease(&self, key: &ConnectionKey) {
        if let Err(e) = self
            .store
            .release_refresh_lease(key.provider(), key.connection(), &self.instance)
            .await
        {
            // It expires by itself; until then other replicas wait for it.
            tracing::warn!(provider = %key.provider(), connection = %key.connection(), error = %e,
                "could not release the refresh lease");
        }
    }

    /// The refresh proper, holding both the flight lock and the lease.
    async fn refresh_leased(
        &self,
        key: &ConnectionKey,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
        stored: Option<TokenRecord>,
        flight: &mut flight::FlightGuard<'_, ConnectionKey>,
    ) -> Result<Option<(RuntimeToken, Served)>, TokenError> {
        let (provider, conn) = (provider.clone(), conn.clone());
        let sent_at = unix_now();
        // `presented`: the refresh token redeemed, kept if the response brings no new one.
        let (result, presented) = if provider.grant_type.needs_consent() {
            let Some(used) = self.stored_refresh_token(key, stored.as_ref())? else {
                return self.without_refresh_token(key, &conn, stored).map(Some);
            };
            self.redeem_refresh_token(key, &provider, &conn, used)
                .await?
        } else {
            let grant = Grant::ClientCredentials {
                scopes: &provider.scopes,
            };
            (self.fetch(&provider, &conn, &grant).await?, None)
        };
        match result {
            Ok(response) => {
                let quirks = &provider.identity_provider.preset().quirks;
                let (record, token) =
                    self.token_record(key, &response, presented.clone(), sent_at, quirks)?;
                let put = match presented.as_ref().map(|(envelope, _)| envelope) {
                    Some(presented) => self.put_refreshed(key, &conn, presented, &record).await?,
                    None => {
                        let stored = self
                            .store
                            .put_token(
                                key.provider(),
                                key.connection(),
                                conn.token_generation,
                                &record,
                            )
                            .await?;
                        if stored {
                            PutToken::Stored
                        } else {
                            PutToken::Reconfigured
                        }
                    }
                };
                flight.finish(None);
                if put == PutToken::RefreshTokenChanged {
                    // Only when this replica's lease ran out mid-refresh and another one
                    // refreshed meanwhile: what it stored is newer and is kept.
                    tracing::warn!(provider = %key.provider(), connection = %key.connection(),
                        "another replica stored a newer token while this refresh ran (its \
                         lease expired); keeping the stored one");
                    if let Some(t) = self
                        .store
                        .get_token(key.provider(), key.connection())
                        .await?
                    {
                        return Ok(Some((self.runtime(key, &t)?, Served::Hit)));
                    }
                    return Ok(None);
                }
                if put == PutToken::Reconfigured {
                    tracing::info!(provider = %key.provider(), connection = %key.connection(),
                        "connection reconfigured during the token fetch; token discarded");
                    return Ok(None);
                }
                tracing::info!(provider = %key.provider(), connection = %key.connection(),
                    expires_at = record.expires_at,
                    rotated = response.refresh_token.is_some(), "token obtained");
                Ok(Some((token, Served::Fetched)))
            }
            Err(failure) if failure.kind == FailureKind::InvalidGrant => {
                // The grant is gone (revoked, expired, or the refresh token was reused): the
                // stored access token belongs to it and dies with it.
                let failure = TokenFailure::new(
                    FailureKind::InvalidGrant,
                    format!(
                        "{}; the refresh token no longer works, so a user must consent \
                         again: create a login link for this connection",
                        failure.message
                    ),
                );
                self.failed(key, &conn, flight, failure, Tokens::Drop, "refresh refused")
                    .await
                    .map(Some)
            }
            Err(failure) => {
                let tokens = Tokens::Keep(stored.as_ref());
                self.failed(key, &conn, flight, failure, tokens, "token request failed")
                    .await
                    .map(Some)
            }
        }
    }

    /// After a failed attempt: records `failure` on the connection (dropping its tokens, or
    /// keeping them), hands it to the requests waiting on `flight` so that they do not ask
    /// the provider again, and answers with the kept token while it is valid, otherwise with
    /// the failure. `what` opens the log line.
    async fn failed(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
        flight: &mut flight::FlightGuard<'_, ConnectionKey>,
        failure: TokenFailure,
        tokens: Tokens<'_>,
        what: &str,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        let still_valid = matches!(&tokens, Tokens::Keep(Some(t)) if unix_now() < t.expires_at);
        tracing::warn!(provider = %key.provider(), connection = %key.connection(),
            code = failure.kind.code(), serving_stored_token = still_valid, "{what}: {failure}");
        let error = ConnectionError {
            status: if still_valid {
                ConnectionStatus::Connected
            } else {
                ConnectionStatus::Error
            },
            code: failure.kind.code(),
            message: &failure.message,
        };
        let stored = match tokens {
            Tokens::Drop => {
                self.store
                    .drop_tokens_with_error(
                        key.provider(),
                        key.connection(),
                        conn.token_generation,
                        &error,
                    )
                    .await?;
                None
            }
            Tokens::Keep(stored) => {
                self.store
                    .record_token_error(
                        key.provider(),
                        key.connection(),
                        conn.token_generation,
                        &error,
                    )
                    .await?;
                stored
            }
        };
        flight.finish(Some((conn.token_generation, failure.clone())));
        self.fallback(key, stored, failure)
    }

    /// Stores a token obtained with the refresh token `presented`, if that is still the
    /// stored one. Key rotation may have re-wrapped it meanwhile (same token, new envelope):
    /// then the write is retried against the re-wrapped envelope.
    async fn put_refreshed(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
        presented: &Envelope,
        record: &TokenRecord,
    ) -> Result<PutToken, TokenError> {
        let mut expected = presented.clone();
        for _ in 0..3 {
            let put = self
                .store
                .put_refreshed_token(
                    key.provider(),
                    key.connection(),
                    conn.token_generation,
                    &expected,
                    record,
                )
                .await?;
            if put != PutToken::RefreshTokenChanged {
                return Ok(put);
            }
            let current = self
                .store
                .get_token(key.provider(), key.connection())
                .await?;
            let Some(current) = self.stored_refresh_token(key, current.as_ref())? else {
                return Ok(put);
            };
            let aad = Aad::connection_refresh_token(key.provider(), key.connection());
            let was = self.keyring.decrypt_string(&aad, presented)?;
            if current.secret.expose_secret() != was.expose_secret() {
                return Ok(put);
            }
            expected = current.envelope;
        }
        Ok(PutToken::RefreshTokenChanged)
    }

    fn stored_refresh_token(
        &self,
        key: &ConnectionKey,
        stored: Option<&TokenRecord>,
    ) -> Result<Option<UsedRefreshToken>, TokenError> {
        let Some(envelope) = stored.and_then(|t| t.refresh_token.clone()) else {
            return Ok(None);
        };
        let secret = self.keyring.decrypt_string(
            &Aad::connection_refresh_token(key.provider(), key.connection()),
            &envelope,
        )?;
        Ok(Some(UsedRefreshToken {
            envelope,
            expires_at: stored.and_then(|t| t.refresh_token_expires_at),
            secret,
        }))
    }

    /// Redeems the refresh token. On `invalid_grant` the store is read again: if another
    /// request (another replica, or a new consent) stored a newer refresh token meanwhile,
    /// that one is tried once. Returns the outcome and the refresh token to keep if the
    /// response brings no new one.
    async fn redeem_refresh_token(
        &self,
        key: &ConnectionKey,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
        used: UsedRefreshToken,
    ) -> Result<(Result<TokenResponse, TokenFailure>, KeptRefresh), TokenError> {
        let grant = Grant::RefreshToken {
            refresh_token: &used.secret,
        };
        let first = self.fetch(provider, conn, &grant).await?;
        match &first {
            Err(f) if f.kind == FailureKind::InvalidGrant => {}
            _ => return Ok((first, Some((used.envelope, used.expires_at)))),
        }
        let current = self
            .store
            .get_token(key.provider(), key.connection())
            .await?;
        let newer = self
            .stored_refresh_token(key, current.as_ref())?
            .filter(|t| t.envelope != used.envelope);
        let Some(newer) = newer else {
            return Ok((first, Some((used.envelope, used.expires_at))));
        };
        tracing::info!(provider = %key.provider(), connection = %key.connection(),
            "refresh token refused, but a newer one was stored meanwhile: retrying with it");
        let grant = Grant::RefreshToken {
            refresh_token: &newer.secret,
        };
        let second = self.fetch(provider, conn, &grant).await?;
        Ok((second, Some((newer.envelope, newer.expires_at))))
    }

    /// An authorization-code connection without a refresh token: its access token serves
    /// until it expires; then a user must consent (again).
    fn without_refresh_token(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
        stored: Option<TokenRecord>,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        if let Some(t) = stored.filter(|t| unix_now() < t.expires_at) {
            let mut token = self.runtime(key, &t)?;
            token.refresh_at = t.expires_at;
            return Ok((token, Served::Hit));
        }
        match &conn.error {
            Some((code, message)) if code == codes::REFRESH_TOKEN_INVALID => Err(
                TokenError::Unavailable(TokenFailure::new(FailureKind::InvalidGrant, message)),
            ),
            Some((code, message)) if code == codes::REFRESH_TOKEN_EXPIRED => {
                Err(TokenError::Unavailable(TokenFailure::new(
                    FailureKind::RefreshTokenExpired,
                    message,
                )))
            }
            _ => Err(TokenError::ConsentRequired(key.clone())),
        }
    }

    /// Completes a user's consent: exchanges the authorization code (RFC 6749 §4.1.3, with
    /// the PKCE verifier) and stores the tokens, replacing any the connection had. Nothing is
    /// stored unless the exchange succeeds and the connection is still at `generation`.
    pub async fn complete_consent(
        &self,
        p: &str,
        c: &str,
        generation: i64,
        code: &secrecy::SecretString,
        code_verifier: &secrecy::SecretString,
        redirect_uri: &str,
    ) -> Result<Result<(), ConsentFailure>, TokenError> {
        let key = &ConnectionKey::new(p, c);
        // Not while a refresh of the same connection is in flight: its result would
        // overwrite the new consent's tokens.
        let mut flight = self.flights.lock(key.clone()).await;
        let Some((provider, conn)) = self.try_load(key).await? else {
            return Ok(Err(ConsentFailure::Reconfigured));
        };
        if conn.token_generation != generation || !provider.grant_type.needs_consent() {
            return Ok(Err(ConsentFailure::Reconfigured));
        }
        // Not while another replica refreshes: its result would overwrite the new tokens.
        self.lease(key, None).await?;
        let outcome = self
            .exchange_code(key, &provider, &conn, code, code_verifier, redirect_uri)
            .await;
        self.release_lease(key).await;
        if matches!(outcome, Ok(Ok(()))) {
            flight.finish(None);
        }
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    async fn exchange_code(
        &self,
        key: &ConnectionKey,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
        code: &secrecy::SecretString,
        code_verifier: &secrecy::SecretString,
        redirect_uri: &str,
    ) -> Result<Result<(), ConsentFailure>, TokenError> {
        let generation = conn.token_generation;
        let grant = Grant::AuthorizationCode {
            code,
            redirect_uri,
            code_verifier,
        };
        let sent_at = unix_now();
        let response = match self.fetch(provider, conn, &grant).await? {
            Ok(r) => r,
            Err(failure) => {
                tracing::warn!(provider = %key.provider(), connection = %key.connection(),
                    code = failure.kind.code(), "authorization code exchange failed: {failure}");
                return Ok(Err(ConsentFailure::Provider(failure)));
            }
        };
        let quirks = &provider.identity_provider.preset().quirks;
        let (record, _) = self.token_record(key, &response, None, sent_at, quirks)?;
        if !self
            .store
            .put_token(key.provider(), key.connection(), generation, &record)
            .await?
        {
            return Ok(Err(ConsentFailure::Reconfigured));
        }
        tracing::info!(provider = %key.provider(), connection = %key.connection(),
            expires_at = record.expires_at,
            refresh_token = record.refresh_token.is_some(), "consent completed; tokens stored");
        Ok(Ok(()))
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
            .await;
        let outcome = match &result {
            Ok(_) => "success",
            Err(f) => f.kind.code(),
        };
        self.metrics.provider_token_request(grant.name(), outcome);
        Ok(result)
    }

    /// The record to store for a new token, and the answer to give for it. A response
    /// without a refresh token keeps `kept_refresh` (RFC 6749 §6: the server MAY issue a new
    /// one; when it does not, the old one stays valid), with the expiry it had.
    fn token_record(
        &self,
        key: &ConnectionKey,
        response: &TokenResponse,
        kept_refresh: KeptRefresh,
        obtained_at: i64,
        quirks: &crate::presets::Quirks,
    ) -> Result<(TokenRecord, RuntimeToken), TokenError> {
        let plaintext = response.access_token.expose_secret();
        let lifetime = lifetime(response, obtained_at, quirks);
        let (refresh_token, refresh_token_expires_at) = match &response.refresh_token {
            Some(rt) => (
                Some(self.keyring.encrypt(
                    &Aad::connection_refresh_token(key.provider(), key.connection()),
                    rt.expose_secret().as_bytes(),
                )?),
                response
                    .refresh_token_expires_in
                    .map(|s| obtained_at.saturating_add(s.min(MAX_LIFETIME_SECS))),
            ),
            None => match kept_refresh {
                Some((envelope, expires_at)) => (Some(envelope), expires_at),
                None => (None, None),
            },
        };
        let record = TokenRecord {
            access_token: self.keyring.encrypt(
                &Aad::connection_access_token(key.provider(), key.connection()),
                plaintext.as_bytes(),
            )?,
            refresh_token,
            refresh_token_expires_at,
            token_type: response.token_type.clone(),
            claims: response.claims.clone(),
            obtained_at,
            expires_at: obtained_at.saturating_add(lifetime),
            refresh_at: refresh_at(obtained_at, lifetime, self.refresh_skew),
        };
        let token = RuntimeToken {
            access_token: plaintext.to_owned(),
            token_type: record.token_type.clone(),
            expires_at: record.expires_at,
            refresh_at: record.refresh_at,
            claims: record.claims.clone(),
            access_policies: Vec::new(),
        };
        Ok((record, token))
    }

    fn runtime(&self, key: &ConnectionKey, t: &TokenRecord) -> Result<RuntimeToken, TokenError> {
        let access_token = self.keyring.decrypt_string(
            &Aad::connection_access_token(key.provider(), key.connection()),
            &t.access_token,
        )?;
        Ok(RuntimeToken {
            access_token: access_token.expose_secret().to_owned(),
            token_type: t.token_type.clone(),
            expires_at: t.expires_at,
            refresh_at: t.refresh_at,
            claims: t.claims.clone(),
            access_policies: Vec::new(),
        })
    }

    /// After a failed fetch: the stored token while it is valid, due again in a few seconds;
    /// otherwise the failure.
    fn fallback(
        &self,
        key: &ConnectionKey,
        stored: Option<&TokenRecord>,
        failure: TokenFailure,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        let now = unix_now();
        match stored {
            Some(t) if now < t.expires_at => {
                let mut token = self.runtime(key, t)?;
                token.refresh_at = now
                    .saturating_add(RETRY_AFTER_FAILURE_SECS)
                    .min(t.expires_at);
                Ok((token, Served::Stale))
            }
            _ => Err(TokenError::Unavailable(failure)),
        }
    }
}

/// How long a new access token lives: `expires_in` if the provider said; else the `exp` of
/// an access token that is a JWT; else the preset's declared default; else one hour. Never
/// "forever": a token the provider gave no end is still fetched again in time.
fn lifetime(response: &TokenResponse, obtained_at: i64, quirks: &crate::presets::Quirks) -> i64 {
    response
        .expires_in
        .or_else(|| {
            response::jwt_exp(response.access_token.expose_secret())
                .map(|exp| exp.saturating_sub(obtained_at))
        })
        .or(quirks.default_lifetime_secs)
        .unwrap_or(DEFAULT_LIFETIME_SECS)
        .clamp(0, MAX_LIFETIME_SECS)
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
