//! Connections: their configuration and status, listed in pages.

use super::dialect::BeginWrite as _;
use super::rows::{connection_from_row, split_error, CONNECTION_SELECT};
use super::{ConnectionRecord, Store, StoreError};
use crate::crypto::Envelope;

impl Store {
    pub async fn get_connection(
        &self,
        provider_id: &str,
        id: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id = $2");
            let row = sqlx::query(&sql)
                .bind(provider_id)
                .bind(id)
                .fetch_optional(db)
                .await?;
            row.as_ref().map(connection_from_row).transpose()
        })
    }

    pub async fn list_connections(
        &self,
        provider_id: &str,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 ORDER BY c.id");
            let rows = sqlx::query(&sql).bind(provider_id).fetch_all(db).await?;
            rows.iter().map(connection_from_row).collect()
        })
    }

    /// At most `limit` connections of a provider whose ids sort after `after` (from the
    /// first without it), in id order: one page of a keyset-paginated list.
    pub async fn list_connections_page(
        &self,
        provider_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
            );
            let rows = sqlx::query(&sql)
                .bind(provider_id)
                .bind(after.unwrap_or(""))
                .bind(i64::from(limit))
                .fetch_all(db)
                .await?;
            rows.iter().map(connection_from_row).collect()
        })
    }

    /// Inserts a new connection; `false` if one with that id exists already under the
    /// provider. Fails if the provider does not exist (foreign key).
    pub async fn insert_connection(&self, c: &ConnectionRecord) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let (error_code, error_message) = split_error(&c.error);
            let done = sqlx::query(
                "INSERT INTO connections (provider_id, id, display_name, client_id, client_secret, \
                 status, error_code, error_message, token_generation, last_refresh_at, created_at, \
                 updated_at, etag) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (provider_id, id) DO NOTHING",
            )
            .bind(&c.provider_id)
            .bind(&c.id)
            .bind(&c.display_name)
            .bind(&c.client_id)
            .bind(c.client_secret.as_ref().map(Envelope::to_bytes))
            .bind(c.status.as_str())
            .bind(error_code)
            .bind(error_message)
            .bind(c.token_generation)
            .bind(c.last_refresh_at)
            .bind(c.created_at)
            .bind(c.updated_at)
            .bind(&c.etag)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
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
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            let done = sqlx::query(
                "UPDATE connections SET display_name = $1, client_id = $2, client_secret = $3, \
                 updated_at = $4, etag = $5 WHERE provider_id = $6 AND id = $7 AND etag = $8",
            )
            .bind(&c.display_name)
            .bind(&c.client_id)
            .bind(c.client_secret.as_ref().map(Envelope::to_bytes))
            .bind(c.updated_at)
            .bind(&c.etag)
            .bind(&c.provider_id)
            .bind(&c.id)
            .bind(expected_etag)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if invalidate_token {
                sqlx::query("DELETE FROM tokens WHERE provider_id = $1 AND connection_id = $2")
                    .bind(&c.provider_id)
                    .bind(&c.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE connections SET token_generation = token_generation + 1, \
                     status = 'not_connected', error_code = NULL, error_message = NULL \
                     WHERE provider_id = $1 AND id = $2",
                )
                .bind(&c.provider_id)
                .bind(&c.id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes a connection (only if its etag is `expected_etag`, when given).
    pub async fn delete_connection(
        &self,
        provider_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "DELETE FROM connections WHERE provider_id = $1 AND id = $2 \
                 AND ($3 IS NULL OR etag = $4)",
            )
            .bind(provider_id)
            .bind(id)
            .bind(expected_etag)
            .bind(expected_etag)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
