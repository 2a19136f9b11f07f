//! The refresh state machine: one attempt at a connection's token, under the flight lock and
//! the refresh lease.
//!
//! An attempt (`refresh_once`) serves a stored token that is not due; shares the outcome of
//! an attempt that finished while it waited for the lock (the token just stored, or the
//! provider's failure); leaves an authorization-code connection without a usable refresh
//! token to its stored access token and then to a user's consent; and otherwise takes the
//! lease and asks the provider (`refresh_leased`). A failure is recorded on the connection and
//! handed to the waiting requests in one place (`failed`): the stored token serves while it is
//! valid (`fallback`).

use credmgr_common::error::codes;
use credmgr_common::RuntimeToken;
use secrecy::ExposeSecret as _;

use super::client::Grant;
use super::error::{FailureKind, TokenError, TokenFailure};
use super::flight::FlightGuard;
use super::response::TokenResponse;
use super::{is_due, Need, Rejected, Served, TokenService, RETRY_AFTER_FAILURE_SECS};
use crate::clock::unix_now;
use crate::crypto::{Aad, Envelope};
use crate::domain::{ConnectionKey, ConnectionStatus};
use crate::store::{ConnectionError, ConnectionRecord, ProviderRecord, PutToken, TokenRecord};

/// How often a fetch is retried when the connection's configuration changed under it.
const MAX_CONFIG_RACES: usize = 2;

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

/// Whether `t`'s refresh token is past the expiry the provider gave it.
fn refresh_token_expired(t: &TokenRecord) -> bool {
    t.refresh_token.is_some()
        && t.refresh_token_expires_at
            .is_some_and(|at| unix_now() >= at)
}

impl TokenService {
    /// Refreshes, once more if the connection was reconfigured during the fetch (up to
    /// `MAX_CONFIG_RACES` attempts). `None`: another replica holds the lease and `wait` is
    /// false.
    pub(super) async fn refresh_detached(
        &self,
        key: &ConnectionKey,
        lead: i64,
        rejected: Option<Rejected>,
        wait: bool,
    ) -> Result<Option<(RuntimeToken, Served)>, TokenError> {
        for _ in 0..MAX_CONFIG_RACES {
            match self.refresh_once(key, lead, rejected.clone(), wait).await? {
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
        rejected: Option<Rejected>,
        wait: bool,
    ) -> Result<Attempt, TokenError> {
        // One fetch per connection: in this process by the flight lock, across replicas that
        // share the database by the lease taken below.
        let mut flight = self.flights.lock(key.clone()).await;
        let (provider, conn) = self.load(key).await?;
        let rejected = self.may_force(key, rejected).await?;
        let stored = self
            .store
            .get_token(key.provider(), key.connection())
            .await?;
        if let Some(t) = &stored {
            if !is_due(t, lead, self.refused(key, t, rejected.as_ref())) {
                return Ok(done((self.runtime(key, t)?, Served::Hit)));
            }
        }
        let need = Need {
            lead,
            rejected,
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
                    if let Some(t) = stored.as_ref().filter(|t| need.satisfied_by(self, key, t)) {
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
        // The provider failed lately (for this replica or another): it is not asked again
        // before the shared backoff ends; the stored token serves, or the failure answers.
        if let Some(failure) = self.backing_off(key, &conn).await? {
            return self.fallback(key, stored.as_ref(), failure).map(done);
        }
        if !wait && !self.try_lease(key).await? {
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
            if let Some(t) = stored.as_ref().filter(|t| need.satisfied_by(self, key, t)) {
                return Ok(done((self.runtime(key, t)?, Served::Hit)));
            }
            // A replica that failed while we waited for its lease set the backoff.
            if let Some(failure) = self.backing_off(key, &conn).await? {
                return self.fallback(key, stored.as_ref(), failure).map(done);
            }
            let forced = stored
                .as_ref()
                .is_some_and(|t| self.refused(key, t, need.rejected.as_ref()));
            if forced {
                self.store
                    .mark_forced_refresh(key.provider(), key.connection(), unix_now())
                    .await?;
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
        flight: &mut FlightGuard<'_, ConnectionKey>,
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

    /// The refresh proper, holding both the flight lock and the lease.
    async fn refresh_leased(
        &self,
        key: &ConnectionKey,
        provider: &ProviderRecord,
        conn: &ConnectionRecord,
        stored: Option<TokenRecord>,
        flight: &mut FlightGuard<'_, ConnectionKey>,
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
                let rotated = self.rotated(key, &response, presented.as_ref());
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
                    rotated, "token obtained");
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

    /// Whether the response brought a refresh token other than the one presented: some
    /// providers send the same one back, which is no rotation.
    fn rotated(
        &self,
        key: &ConnectionKey,
        response: &TokenResponse,
        presented: Option<&(Envelope, Option<i64>)>,
    ) -> bool {
        let Some(new) = &response.refresh_token else {
            return false;
        };
        let Some((envelope, _)) = presented else {
            return true;
        };
        let aad = Aad::connection_refresh_token(key.provider(), key.connection());
        self.keyring
            .decrypt_string(&aad, envelope)
            .map_or(true, |old| old.expose_secret() != new.expose_secret())
    }

    /// After a failed attempt: records `failure` on the connection (dropping its tokens, or
    /// keeping them), hands it to the requests waiting on `flight` so that they do not ask
    /// the provider again, and answers with the kept token while it is valid, otherwise with
    /// the failure. `what` opens the log line.
    async fn failed(
        &self,
        key: &ConnectionKey,
        conn: &ConnectionRecord,
        flight: &mut FlightGuard<'_, ConnectionKey>,
        failure: TokenFailure,
        tokens: Tokens<'_>,
        what: &str,
    ) -> Result<(RuntimeToken, Served), TokenError> {
        let still_valid = matches!(&tokens, Tokens::Keep(Some(t)) if unix_now() < t.expires_at);
        let retry_in = self.next_backoff(key).await?;
        tracing::warn!(provider = %key.provider(), connection = %key.connection(),
            code = failure.kind.code(), serving_stored_token = still_valid,
            retry_in_secs = retry_in, "{what}: {failure}");
        let error = ConnectionError {
            status: if still_valid {
                ConnectionStatus::Connected
            } else {
                ConnectionStatus::Error
            },
            code: failure.kind.code(),
            message: &failure.message,
            drop_tokens: matches!(tokens, Tokens::Drop),
            retry_at: Some(unix_now().saturating_add(retry_in)),
        };
        self.store
            .record_token_error(
                key.provider(),
                key.connection(),
                conn.token_generation,
                &error,
            )
            .await?;
        let stored = match tokens {
            Tokens::Drop => None,
            Tokens::Keep(stored) => stored,
        };
        flight.finish(Some((conn.token_generation, failure.clone())));
        self.fallback(key, stored, failure)
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
