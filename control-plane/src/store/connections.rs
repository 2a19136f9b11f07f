//! Connections: their configuration and status, listed in pages.

use super::exec::{args, Arg, Tx};
use super::identities;
use super::rows::{connection_from_row, split_error, CONNECTION_SELECT};
use super::webhooks::enqueue;
use super::{ConnectionRecord, PolicyRecord, Store, StoreError};
use crate::clock::unix_now;
use crate::crypto::Envelope;
use crate::events::{Event, EventType};

impl Store {
    pub async fn get_connection(
        &self,
        provider_id: &str,
        id: &str,
    ) -> Result<Option<ConnectionRecord>, StoreError> {
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id = $2");
        self.fetch_optional(&sql, &args![provider_id, id], connection_from_row)
            .await
    }

    pub async fn list_connections(
        &self,
        provider_id: &str,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let sql = format!("{CONNECTION_SELECT} WHERE c.provider_id = $1 ORDER BY c.id");
        self.fetch_all(&sql, &args![provider_id], connection_from_row)
            .await
    }

    /// At most `limit` connections of a provider whose ids sort after `after` (from the
    /// first without it), in id order: one page of a keyset-paginated list.
    pub async fn list_connections_page(
        &self,
        provider_id: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ConnectionRecord>, StoreError> {
        let sql = format!(
            "{CONNECTION_SELECT} WHERE c.provider_id = $1 AND c.id > $2 ORDER BY c.id LIMIT $3"
        );
        let binds = args![provider_id, after.unwrap_or(""), i64::from(limit)];
        self.fetch_all(&sql, &binds, connection_from_row).await
    }

    /// Inserts a new connection; `false` if one with that id exists already under the
    /// provider. Fails if the provider does not exist (foreign key).
    pub async fn insert_connection(&self, c: &ConnectionRecord) -> Result<bool, StoreError> {
        let (error_code, error_message) = split_error(&c.error);
        Ok(self
            .execute(
                INSERT_CONNECTION,
                &connection_values(c, error_code, error_message),
            )
            .await?
            == 1)
    }

    /// Inserts a new connection with its access policy, in one transaction; `false`, and
    /// nothing written, if a connection with that id exists already (of two concurrent
    /// requests creating it, one does). Fails if the provider does not exist (foreign key).
    pub async fn insert_connection_with_policy(
        &self,
        c: &ConnectionRecord,
        policy: &PolicyRecord,
    ) -> Result<bool, StoreError> {
        let (error_code, error_message) = split_error(&c.error);
        let mut tx = self.begin_write().await?;
        let values = connection_values(c, error_code, error_message);
        if tx.execute(INSERT_CONNECTION, &values).await? == 0 {
            return Ok(false);
        }
        let (sql, values) = identities::insert_policy_statement(policy)?;
        tx.execute(&sql, &values).await?;
        tx.commit().await?;
        Ok(true)
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
        let mut tx = self.begin_write().await?;
        let replaced = tx
            .execute(
                "UPDATE connections SET display_name = $3, client_id = $4, client_secret = $5, \
                 updated_at = $6, etag = $7 WHERE provider_id = $1 AND id = $2 AND etag = $8",
                &args![
                    &c.provider_id,
                    &c.id,
                    &c.display_name,
                    &c.client_id,
                    c.client_secret.as_ref().map(Envelope::to_bytes),
                    c.updated_at,
                    &c.etag,
                    expected_etag,
                ],
            )
            .await?;
        if replaced == 0 {
            return Ok(false);
        }
        if invalidate_token {
            invalidate_tokens(&mut tx, &c.provider_id, Some(&c.id)).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a connection (only if its etag is `expected_etag`, when given).
    pub async fn delete_connection(
        &self,
        provider_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "DELETE FROM connections WHERE provider_id = $1 AND id = $2 \
                   AND (CAST($3 AS TEXT) IS NULL OR etag = $3)";
        let mut tx = self.begin_write().await?;
        if tx
            .execute(sql, &args![provider_id, id, expected_etag])
            .await?
            != 1
        {
            return Ok(false);
        }
        let event = Event::connection(EventType::Deleted, unix_now(), provider_id, id, None, None);
        enqueue(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// Binds: [`connection_values`].
const INSERT_CONNECTION: &str = "INSERT INTO connections (provider_id, id, display_name, \
     client_id, client_secret, status, error_code, error_message, token_generation, \
     last_refresh_at, created_at, updated_at, etag) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
     ON CONFLICT (provider_id, id) DO NOTHING";

/// A new connection's values, in the order of [`INSERT_CONNECTION`].
fn connection_values<'a>(
    c: &'a ConnectionRecord,
    error_code: Option<&'a str>,
    error_message: Option<&'a str>,
) -> [Arg<'a>; 13] {
    args![
        &c.provider_id,
        &c.id,
        &c.display_name,
        &c.client_id,
        c.client_secret.as_ref().map(Envelope::to_bytes),
        c.status.as_str(),
        error_code,
        error_message,
        c.token_generation,
        c.last_refresh_at,
        c.created_at,
        c.updated_at,
        &c.etag,
    ]
}

/// Forgets the tokens of a provider's connections (all of them, or the one named): deletes
/// them, and moves the connections to a new generation and back to `not_connected`, so that a
/// token fetched under the old configuration is discarded rather than stored.
pub(super) async fn invalidate_tokens(
    tx: &mut Tx,
    provider_id: &str,
    connection_id: Option<&str>,
) -> Result<(), StoreError> {
    let binds = args![provider_id, connection_id];
    tx.execute(
        "DELETE FROM tokens WHERE provider_id = $1 \
         AND (CAST($2 AS TEXT) IS NULL OR connection_id = $2)",
        &binds,
    )
    .await?;
    tx.execute(
        "UPDATE connections SET token_generation = token_generation + 1, \
         status = 'not_connected', error_code = NULL, error_message = NULL, \
         refresh_failures = 0, refresh_retry_at = NULL \
         WHERE provider_id = $1 AND (CAST($2 AS TEXT) IS NULL OR id = $2)",
        &binds,
    )
    .await?;
    Ok(())
}
