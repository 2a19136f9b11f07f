//! Completing a user's consent: the authorization-code exchange (RFC 6749 §4.1.3, with the
//! PKCE verifier) and storing its tokens, under the same flight lock and lease as a refresh.

use super::client::Grant;
use super::error::{ConsentFailure, TokenError};
use super::TokenService;
use crate::clock::unix_now;
use crate::domain::ConnectionKey;
use crate::store::{ConnectionRecord, ProviderRecord};

impl TokenService {
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
}
