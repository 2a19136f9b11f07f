//! Tokens: the one query of the runtime API, token writes that lose no race (the connection's
//! generation, the refresh token presented), failures recorded on the connection, the refresh
//! lease that lets one replica at a time refresh a connection, and the refresh schedule.

use super::exec::args;
use super::rows::{
    runtime_view_from_row, schedule_from_row, to_json, token_from_row, RUNTIME_SELECT,
    SCHEDULE_COLUMNS, TOKEN_COLUMNS,
};
use super::webhooks::enqueue;
use super::{
    ConnectionError, PutToken, RuntimeView, Store, StoreError, TokenRecord, TokenSchedule,
};
use crate::clock::unix_now;
use crate::crypto::Envelope;
use crate::events::{Event, EventType};
use credmgr_common::error::codes;

/// Records a failure on a connection still at the generation the token was asked for; with a
/// retry time, also one more failure in a row and when the provider may be asked again.
/// Binds: provider, connection, generation, status, code, message, retry time.
const RECORD_ERROR: &str = "UPDATE connections SET status = $4, error_code = $5, \
     error_message = $6, \
     refresh_failures = refresh_failures + (CASE WHEN CAST($7 AS BIGINT) IS NULL THEN 0 ELSE 1 END), \
     refresh_retry_at = COALESCE(CAST($7 AS BIGINT), refresh_retry_at) \
     WHERE provider_id = $1 AND id = $2 AND token_generation = $3";

impl Store {
    pub async fn get_token(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE provider_id = $1 AND connection_id = $2"
        );
        self.fetch_optional(&sql, &args![provider_id, connection_id], token_from_row)
            .await
    }

    /// Whether the provider and the connection exist, the connection's access policies and
    /// its token: what a runtime token request reads before it decides, in one query (one
    /// round trip and one pooled connection per request, on the runtime API's hot path).
    pub async fn runtime_view(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<RuntimeView, StoreError> {
        let binds = args![provider_id, connection_id];
        let view = self
            .fetch_optional(RUNTIME_SELECT, &binds, runtime_view_from_row)
            .await?;
        Ok(view.unwrap_or(RuntimeView::NoProvider))
    }

    /// Stores a newly obtained token and marks the connection `connected`, in one
    /// transaction. Returns `false`, storing nothing, if the connection is gone or its
    /// `token_generation` is no longer `generation`.
    pub async fn put_token(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        t: &TokenRecord,
    ) -> Result<bool, StoreError> {
        let put = self
            .put_token_if(provider_id, connection_id, generation, None, t)
            .await?;
        Ok(put == PutToken::Stored)
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
        t: &TokenRecord,
    ) -> Result<PutToken, StoreError> {
        self.put_token_if(provider_id, connection_id, generation, Some(presented), t)
            .await
    }

    /// Every token write first updates the connection's row, which serialises the writers
    /// of one connection; the refresh token is compared after that, so it is the one the
    /// previous writer committed.
    async fn put_token_if(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        presented: Option<&Envelope>,
        t: &TokenRecord,
    ) -> Result<PutToken, StoreError> {
        let key = args![provider_id, connection_id];
        let mut tx = self.begin_write().await?;
        // What the connection was before, for its event (read in the write transaction; on
        // PostgreSQL a concurrent writer of the same connection could slip in between, which
        // at worst repeats or skips a `recovered`: the refresh lease makes it rare).
        let before = tx
            .fetch_optional(
                "SELECT status, error_code FROM connections WHERE provider_id = $1 AND id = $2",
                &key,
                |row| Ok((row.text("status")?, row.opt_text("error_code")?)),
            )
            .await?;
        let connected = tx
            .execute(
                "UPDATE connections SET status = 'connected', error_code = NULL, \
                 error_message = NULL, last_refresh_at = $4, refresh_failures = 0, \
                 refresh_retry_at = NULL \
                 WHERE provider_id = $1 AND id = $2 AND token_generation = $3",
                &args![provider_id, connection_id, generation, t.obtained_at],
            )
            .await?;
        if connected == 0 {
            return Ok(PutToken::Reconfigured);
        }
        if let Some(presented) = presented {
            let current = tx
                .fetch_optional(
                    "SELECT refresh_token FROM tokens WHERE provider_id = $1 AND connection_id = $2",
                    &key,
                    |row| Ok(row.opt_bytes("refresh_token")?),
                )
                .await?;
            if current.flatten() != Some(presented.to_bytes()) {
                return Ok(PutToken::RefreshTokenChanged);
            }
        }
        tx.execute(
            "INSERT INTO tokens (provider_id, connection_id, access_token, token_type, claims, \
             obtained_at, expires_at, refresh_at, refresh_token, refresh_token_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (provider_id, connection_id) DO UPDATE SET \
             access_token = excluded.access_token, token_type = excluded.token_type, \
             refresh_token = excluded.refresh_token, \
             refresh_token_expires_at = excluded.refresh_token_expires_at, \
             claims = excluded.claims, obtained_at = excluded.obtained_at, \
             expires_at = excluded.expires_at, refresh_at = excluded.refresh_at",
            &args![
                provider_id,
                connection_id,
                t.access_token.to_bytes(),
                &t.token_type,
                to_json(&t.claims)?,
                t.obtained_at,
                t.expires_at,
                t.refresh_at,
                t.refresh_token.as_ref().map(Envelope::to_bytes),
                t.refresh_token_expires_at,
            ],
        )
        .await?;
        if let Some(kind) = before
            .and_then(|(status, code)| token_event(&status, code.as_deref(), presented.is_none()))
        {
            let event = Event::connection(
                kind,
                unix_now(),
                provider_id,
                connection_id,
                Some("connected"),
                None,
            );
            enqueue(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(PutToken::Stored)
    }

    /// Records a failure to obtain a token on the connection, if it is still at `generation`
    /// (`false` otherwise). The stored token is left as it is, unless `e.drop_tokens`: then it
    /// is deleted in the same transaction.
    pub async fn record_token_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        e: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        let binds = args![
            provider_id,
            connection_id,
            generation,
            e.status.as_str(),
            e.code,
            e.message,
            e.retry_at
        ];
        let mut tx = self.begin_write().await?;
        if tx.execute(RECORD_ERROR, &binds).await? == 0 {
            return Ok(false);
        }
        if e.drop_tokens {
            tx.execute(
                "DELETE FROM tokens WHERE provider_id = $1 AND connection_id = $2",
                &args![provider_id, connection_id],
            )
            .await?;
        }
        let now = unix_now();
        for &kind in error_events(e.code) {
            let event = Event::connection(
                kind,
                now,
                provider_id,
                connection_id,
                Some(e.status.as_str()),
                Some((e.code, e.message)),
            );
            enqueue(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The connection's refresh backoff: failures in a row, and before when the provider is
    /// not asked again (`None` for no connection).
    pub async fn refresh_backoff(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<(i64, Option<i64>)>, StoreError> {
        self.fetch_optional(
            "SELECT refresh_failures, refresh_retry_at FROM connections \
             WHERE provider_id = $1 AND id = $2",
            &args![provider_id, connection_id],
            |row| {
                Ok((
                    row.int("refresh_failures")?,
                    row.opt_int("refresh_retry_at")?,
                ))
            },
        )
        .await
    }

    /// When a backend's refusal last forced a refresh of the connection, if ever.
    pub async fn forced_refresh_at(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(self
            .fetch_optional(
                "SELECT forced_refresh_at FROM connections WHERE provider_id = $1 AND id = $2",
                &args![provider_id, connection_id],
                |row| Ok(row.opt_int("forced_refresh_at")?),
            )
            .await?
            .flatten())
    }

    /// Records that a backend's refusal forces a refresh of the connection now.
    pub async fn mark_forced_refresh(
        &self,
        provider_id: &str,
        connection_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE connections SET forced_refresh_at = $3 WHERE provider_id = $1 AND id = $2",
            &args![provider_id, connection_id, now],
        )
        .await?;
        Ok(())
    }

    /// The tokens whose `refresh_at` is at or before `horizon`, soonest first.
    pub async fn tokens_due_by(&self, horizon: i64) -> Result<Vec<TokenSchedule>, StoreError> {
        let sql = format!(
            "SELECT {SCHEDULE_COLUMNS} FROM tokens WHERE refresh_at <= $1 ORDER BY refresh_at"
        );
        self.fetch_all(&sql, &args![horizon], schedule_from_row)
            .await
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
        let sql = "UPDATE connections SET refresh_lease_owner = $3, refresh_lease_until = $5 \
                   WHERE provider_id = $1 AND id = $2 AND (refresh_lease_owner IS NULL \
                   OR refresh_lease_owner = $3 OR refresh_lease_until <= $4)";
        let binds = args![provider_id, connection_id, owner, now, until];
        Ok(self.execute(sql, &binds).await? == 1)
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
                   WHERE provider_id = $1 AND id = $2 AND refresh_lease_owner = $3";
        self.execute(sql, &args![provider_id, connection_id, owner])
            .await?;
        Ok(())
    }
}

/// The event a stored token makes, from the connection's status and error code before it:
/// `connected` when it had no token or needed consent and a grant was just given (a consent,
/// client credentials), `recovered` when it had failed and a token was obtained again; none
/// for an ordinary refresh.
fn token_event(status: &str, error_code: Option<&str>, new_grant: bool) -> Option<EventType> {
    let needed_consent = error_code.is_some_and(needs_consent);
    if status == "not_connected" || (new_grant && needed_consent) {
        Some(EventType::Connected)
    } else if status == "error" || error_code.is_some() {
        Some(EventType::Recovered)
    } else {
        None
    }
}

/// Whether a failure's code means a user must consent (again).
fn needs_consent(code: &str) -> bool {
    [
        codes::CONSENT_REQUIRED,
        codes::REFRESH_TOKEN_INVALID,
        codes::REFRESH_TOKEN_EXPIRED,
    ]
    .contains(&code)
}

/// The events a recorded failure makes: a refused or expired refresh token is a failed
/// refresh that leaves the connection needing consent; a plain `consent_required` (the
/// provider's configuration changed) is only the latter.
fn error_events(code: &str) -> &'static [EventType] {
    if code == codes::CONSENT_REQUIRED {
        &[EventType::ConsentRequired]
    } else if needs_consent(code) {
        &[EventType::RefreshFailed, EventType::ConsentRequired]
    } else {
        &[EventType::RefreshFailed]
    }
}

#[cfg(test)]
mod event_tests {
    use super::*;

    #[test]
    fn transitions_make_the_right_events() {
        assert_eq!(
            token_event("not_connected", None, true),
            Some(EventType::Connected)
        );
        assert_eq!(
            token_event("error", Some(codes::REFRESH_TOKEN_INVALID), true),
            Some(EventType::Connected)
        );
        assert_eq!(
            token_event("error", Some("provider_unreachable"), false),
            Some(EventType::Recovered)
        );
        assert_eq!(
            token_event("connected", Some("provider_unreachable"), false),
            Some(EventType::Recovered)
        );
        assert_eq!(token_event("connected", None, false), None);
        assert_eq!(
            error_events(codes::REFRESH_TOKEN_INVALID),
            &[EventType::RefreshFailed, EventType::ConsentRequired]
        );
        assert_eq!(
            error_events("provider_unreachable"),
            &[EventType::RefreshFailed]
        );
    }
}
