//! From a token response to what is stored and what is served: the encrypted [`TokenRecord`],
//! the [`RuntimeToken`] a gateway gets, and how long a new token lives.

use credmgr_common::RuntimeToken;
use secrecy::ExposeSecret;

use super::error::TokenError;
use super::response::{self, TokenResponse};
use super::{refresh_at, TokenService, DEFAULT_LIFETIME_SECS, MAX_LIFETIME_SECS};
use crate::crypto::{Aad, Envelope};
use crate::domain::ConnectionKey;
use crate::presets::Quirks;
use crate::store::TokenRecord;

/// The refresh token to keep when a response brings no new one: its envelope and expiry.
pub(super) type KeptRefresh = Option<(Envelope, Option<i64>)>;

impl TokenService {
    /// The record to store for a new token, and the answer to give for it. A response
    /// without a refresh token keeps `kept_refresh` (RFC 6749 §6: the server MAY issue a new
    /// one; when it does not, the old one stays valid), with the expiry it had.
    pub(super) fn token_record(
        &self,
        key: &ConnectionKey,
        response: &TokenResponse,
        kept_refresh: KeptRefresh,
        obtained_at: i64,
        quirks: &Quirks,
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

    /// A stored token as a gateway gets it: decrypted, without access policies (the caller
    /// adds them).
    pub(super) fn runtime(
        &self,
        key: &ConnectionKey,
        t: &TokenRecord,
    ) -> Result<RuntimeToken, TokenError> {
        let access_token = self.keyring.decrypt_string(
            &Aad::connection_access_token(key.provider(), key.connection()),
            &t.access_token,
        )?;
        Ok(RuntimeToken {
            access_token: access_token.expose_secret().to_owned(),
            token_type: t.token_type.clone(),
            expires_at: t.expires_at,
            refresh_at: t.refresh_at,
            claims: super::claims::served_claims(&t.claims),
            access_policies: Vec::new(),
        })
    }
}

/// How long a new access token lives: `expires_in` if the provider said; else the `exp` of
/// an access token that is a JWT; else the preset's declared default; else one hour. Never
/// "forever": a token the provider gave no end is still fetched again in time.
fn lifetime(response: &TokenResponse, obtained_at: i64, quirks: &Quirks) -> i64 {
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
