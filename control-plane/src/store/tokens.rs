//! Tokens: the one query of the runtime API, token writes that lose no race (the connection's
//! generation, the refresh token presented), failures recorded on the connection, the refresh
//! lease that lets one replica at a time refresh a connection, and the refresh schedule.

use super::dialect::BeginWrite as _;
use super::rows::{
    runtime_view_from_row, schedule_from_row, to_json, token_from_row, RUNTIME_SELECT,
    SCHEDULE_COLUMNS, TOKEN_COLUMNS,
};
use super::{
    ConnectionError, PutToken, RuntimeView, Store, StoreError, TokenRecord, TokenSchedule,
};
use crate::crypto::Envelope;

impl Store {
    pub async fn get_token(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE provider_id = $1 AND connection_id = $2"
            );
            let row = sqlx::query(&sql)
                .bind(provider_id)
                .bind(connection_id)
                .fetch_optional(db)
                .await?;
            row.as_ref().map(token_from_row).transpose()
        })
    }

    /// Whether the provider and the connection exist, the connection's access policies and
    /// its token: what a runtime token request reads before it decides, in one query (one
    /// round trip and one pooled connection per request, on the runtime API's hot path).
    pub async fn runtime_view(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<RuntimeView, StoreError> {
        on_db!(self, |db| {
            let row = sqlx::query(RUNTIME_SELECT)
                .bind(provider_id)
                .bind(connection_id)
                .fetch_optional(db)
                .await?;
            runtime_view_from_row(row.as_ref())
        })
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
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            let done = sqlx::query(
                "UPDATE connections SET status = 'connected', error_code = NULL, \
                 error_message = NULL, last_refresh_at = $1 \
                 WHERE provider_id = $2 AND id = $3 AND token_generation = $4",
            )
            .bind(t.obtained_at)
            .bind(provider_id)
            .bind(connection_id)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(PutToken::Reconfigured);
            }
            if let Some(presented) = presented {
                let current: Option<Option<Vec<u8>>> = sqlx::query_scalar(
                    "SELECT refresh_token FROM tokens WHERE provider_id = $1 AND connection_id = $2",
                )
                .bind(provider_id)
                .bind(connection_id)
                .fetch_optional(&mut *tx)
                .await?;
                if current.flatten() != Some(presented.to_bytes()) {
                    return Ok(PutToken::RefreshTokenChanged);
                }
            }
            sqlx::query(
                "INSERT INTO tokens (provider_id, connection_id, access_token, token_type, claims, \
                 obtained_at, expires_at, refresh_at, refresh_token, refresh_token_expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (provider_id, connection_id) DO UPDATE SET \
                 access_token = excluded.access_token, token_type = excluded.token_type, \
                 refresh_token = excluded.refresh_token, \
                 refresh_token_expires_at = excluded.refresh_token_expires_at, \
                 claims = excluded.claims, obtained_at = excluded.obtained_at, \
                 expires_at = excluded.expires_at, refresh_at = excluded.refresh_at",
            )
            .bind(provider_id)
            .bind(connection_id)
            .bind(t.access_token.to_bytes())
            .bind(&t.token_type)
            .bind(to_json(&t.claims)?)
            .bind(t.obtained_at)
            .bind(t.expires_at)
            .bind(t.refresh_at)
            .bind(t.refresh_token.as_ref().map(Envelope::to_bytes))
            .bind(t.refresh_token_expires_at)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(PutToken::Stored)
        })
    }

    /// Records a failure to obtain a token on the connection (if still at `generation`);
    /// the stored token, if any, is left as it is.
    pub async fn record_token_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        e: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "UPDATE connections SET status = $1, error_code = $2, error_message = $3 \
                 WHERE provider_id = $4 AND id = $5 AND token_generation = $6",
            )
            .bind(e.status.as_str())
            .bind(e.code)
            .bind(e.message)
            .bind(provider_id)
            .bind(connection_id)
            .bind(generation)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// After the provider refused the refresh token: deletes the connection's tokens and
    /// records the error, in one transaction, if the connection is still at `generation`.
    pub async fn drop_tokens_with_error(
        &self,
        provider_id: &str,
        connection_id: &str,
        generation: i64,
        e: &ConnectionError<'_>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            let done = sqlx::query(
                "UPDATE connections SET status = $1, error_code = $2, error_message = $3 \
                 WHERE provider_id = $4 AND id = $5 AND token_generation = $6",
            )
            .bind(e.status.as_str())
            .bind(e.code)
            .bind(e.message)
            .bind(provider_id)
            .bind(connection_id)
            .bind(generation)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM tokens WHERE provider_id = $1 AND connection_id = $2")
                .bind(provider_id)
                .bind(connection_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// The tokens whose `refresh_at` is at or before `horizon`, soonest first.
    pub async fn tokens_due_by(&self, horizon: i64) -> Result<Vec<TokenSchedule>, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "SELECT {SCHEDULE_COLUMNS} FROM tokens WHERE refresh_at <= $1 ORDER BY refresh_at"
            );
            let rows = sqlx::query(&sql).bind(horizon).fetch_all(db).await?;
            rows.iter().map(schedule_from_row).collect()
        })
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
        on_db!(self, |db| {
            let done = sqlx::query(
                "UPDATE connections SET refresh_lease_owner = $1, refresh_lease_until = $2 \
                 WHERE provider_id = $3 AND id = $4 AND (refresh_lease_owner IS NULL \
                 OR refresh_lease_owner = $5 OR refresh_lease_until <= $6)",
            )
            .bind(owner)
            .bind(until)
            .bind(provider_id)
            .bind(connection_id)
            .bind(owner)
            .bind(now)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives the lease back, if `owner` still holds it.
    pub async fn release_refresh_lease(
        &self,
        provider_id: &str,
        connection_id: &str,
        owner: &str,
    ) -> Result<(), StoreError> {
        on_db!(self, |db| {
            sqlx::query(
                "UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
                 WHERE provider_id = $1 AND id = $2 AND refresh_lease_owner = $3",
            )
            .bind(provider_id)
            .bind(connection_id)
            .bind(owner)
            .execute(db)
            .await?;
            Ok(())
        })
    }
}
