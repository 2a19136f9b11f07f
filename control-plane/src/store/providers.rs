//! Credential providers: their configuration, replaced only at the version the caller saw.

use super::dialect::BeginWrite as _;
use super::rows::{provider_from_row, to_json, PROVIDER_COLUMNS};
use super::{ProviderRecord, Store, StoreError};

impl Store {
    pub async fn get_provider(&self, id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(db).await?;
            row.as_ref().map(provider_from_row).transpose()
        })
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        on_db!(self, |db| {
            let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY id");
            let rows = sqlx::query(&sql).fetch_all(db).await?;
            rows.iter().map(provider_from_row).collect()
        })
    }

    /// Inserts a new provider; `false` if one with that id exists already.
    pub async fn insert_provider(&self, p: &ProviderRecord) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let sql = format!(
                "INSERT INTO providers ({PROVIDER_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) ON CONFLICT (id) DO NOTHING"
            );
            let done = sqlx::query(&sql)
                .bind(&p.id)
                .bind(&p.display_name)
                .bind(p.identity_provider.as_str())
                .bind(p.grant_type.as_str())
                .bind(&p.client_id)
                .bind(p.client_secret.to_bytes())
                .bind(&p.token_url)
                .bind(to_json(&p.scopes)?)
                .bind(p.token_endpoint_auth_method.as_str())
                .bind(to_json(&p.token_params)?)
                .bind(p.created_at)
                .bind(p.updated_at)
                .bind(&p.authorization_url)
                .bind(&p.refresh_url)
                .bind(&p.issuer)
                .bind(to_json(&p.authorize_params)?)
                .bind(to_json(&p.allowed_redirect_urls)?)
                .bind(&p.etag)
                .bind(to_json(&p.parameters)?)
                .execute(db)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Replaces a provider (not its `created_at`) if its etag is still `expected_etag`;
    /// `false` if it does not exist or changed meanwhile. With `invalidate_tokens`, its
    /// connections' tokens are deleted in the same transaction and the connections go back
    /// to `not_connected`.
    pub async fn replace_provider(
        &self,
        p: &ProviderRecord,
        invalidate_tokens: bool,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let mut tx = db.begin_write().await?;
            let done = sqlx::query(
                "UPDATE providers SET display_name = $1, identity_provider = $2, grant_type = $3, \
                 client_id = $4, client_secret = $5, token_url = $6, scopes = $7, \
                 token_endpoint_auth_method = $8, token_params = $9, updated_at = $10, \
                 authorization_url = $11, refresh_url = $12, issuer = $13, authorize_params = $14, \
                 allowed_redirect_urls = $15, etag = $16, preset_parameters = $17 \
                 WHERE id = $18 AND etag = $19",
            )
            .bind(&p.display_name)
            .bind(p.identity_provider.as_str())
            .bind(p.grant_type.as_str())
            .bind(&p.client_id)
            .bind(p.client_secret.to_bytes())
            .bind(&p.token_url)
            .bind(to_json(&p.scopes)?)
            .bind(p.token_endpoint_auth_method.as_str())
            .bind(to_json(&p.token_params)?)
            .bind(p.updated_at)
            .bind(&p.authorization_url)
            .bind(&p.refresh_url)
            .bind(&p.issuer)
            .bind(to_json(&p.authorize_params)?)
            .bind(to_json(&p.allowed_redirect_urls)?)
            .bind(&p.etag)
            .bind(to_json(&p.parameters)?)
            .bind(&p.id)
            .bind(expected_etag)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            if invalidate_tokens {
                sqlx::query("DELETE FROM tokens WHERE provider_id = $1")
                    .bind(&p.id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "UPDATE connections SET token_generation = token_generation + 1, \
                     status = 'not_connected', error_code = NULL, error_message = NULL \
                     WHERE provider_id = $1",
                )
                .bind(&p.id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Deletes a provider with its connections and tokens (only if its etag is
    /// `expected_etag`, when given); `false` if nothing was deleted.
    pub async fn delete_provider(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            // Connections and tokens go with it: ON DELETE CASCADE.
            let done =
                sqlx::query("DELETE FROM providers WHERE id = $1 AND ($2 IS NULL OR etag = $3)")
                    .bind(id)
                    .bind(expected_etag)
                    .bind(expected_etag)
                    .execute(db)
                    .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
