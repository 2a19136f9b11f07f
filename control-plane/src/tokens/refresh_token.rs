//! The refresh token's part of a refresh (RFC 6749 §6): reading the stored one, redeeming it
//! (once more with a newer one, if another request stored one while the provider refused
//! ours), and storing the answer only if the redeemed refresh token is still the stored one.

use secrecy::ExposeSecret;

use super::client::Grant;
use super::error::{FailureKind, TokenError, TokenFailure};
use super::record::KeptRefresh;
use super::response::TokenResponse;
use super::TokenService;
use crate::crypto::{Aad, Envelope};
use crate::domain::ConnectionKey;
use crate::store::{ConnectionRecord, ProviderRecord, PutToken, TokenRecord};

/// A refresh token as used for one request: its stored envelope, expiry and plaintext.
pub(super) struct UsedRefreshToken {
    envelope: Envelope,
    expires_at: Option<i64>,
    secret: secrecy::SecretString,
}

impl TokenService {
    /// The refresh token stored in `stored`, decrypted; `None` if it has none.
    pub(super) fn stored_refresh_token(
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
    pub(super) async fn redeem_refresh_token(
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

    /// Stores a token obtained with the refresh token `presented`, if that is still the
    /// stored one. Key rotation may have re-wrapped it meanwhile (same token, new envelope):
    /// then the write is retried against the re-wrapped envelope.
    pub(super) async fn put_refreshed(
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
}
