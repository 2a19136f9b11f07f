//! Credential providers: their configuration, replaced only at the version the caller saw.

use super::connections;
use super::exec::{args, placeholders, Arg};
use super::rows::{provider_from_row, to_json, PROVIDER_COLUMNS, PROVIDER_SETTINGS};
use super::{ProviderRecord, Store, StoreError};

impl Store {
    pub async fn get_provider(&self, id: &str) -> Result<Option<ProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1");
        self.fetch_optional(&sql, &args![id], provider_from_row)
            .await
    }

    pub async fn list_providers(&self) -> Result<Vec<ProviderRecord>, StoreError> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers ORDER BY id");
        self.fetch_all(&sql, &[], provider_from_row).await
    }

    /// Inserts a new provider; `false` if one with that id exists already.
    pub async fn insert_provider(&self, p: &ProviderRecord) -> Result<bool, StoreError> {
        let sql = format!(
            "INSERT INTO providers ({PROVIDER_COLUMNS}) VALUES ({}) ON CONFLICT (id) DO NOTHING",
            placeholders(1..=20)
        );
        let mut values = args![&p.id, p.created_at].to_vec();
        values.extend(provider_settings(p)?);
        Ok(self.execute(&sql, &values).await? == 1)
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
        let sql = format!(
            "UPDATE providers SET ({PROVIDER_SETTINGS}) = ({}) WHERE id = $19 AND etag = $20",
            placeholders(1..=18)
        );
        let mut values = provider_settings(p)?.to_vec();
        values.extend(args![&p.id, expected_etag]);
        let mut tx = self.begin_write().await?;
        if tx.execute(&sql, &values).await? == 0 {
            return Ok(false);
        }
        if invalidate_tokens {
            connections::invalidate_tokens(&mut tx, &p.id, None).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes a provider with its connections and tokens (only if its etag is
    /// `expected_etag`, when given); `false` if nothing was deleted.
    pub async fn delete_provider(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        // Connections and tokens go with it: ON DELETE CASCADE.
        let sql = "DELETE FROM providers WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR etag = $2)";
        Ok(self.execute(sql, &args![id, expected_etag]).await? == 1)
    }
}

/// A provider's values in the order of [`PROVIDER_SETTINGS`].
fn provider_settings(p: &ProviderRecord) -> Result<[Arg<'_>; 18], StoreError> {
    Ok(args![
        &p.display_name,
        p.identity_provider.as_str(),
        p.grant_type.as_str(),
        &p.client_id,
        p.client_secret.to_bytes(),
        &p.token_url,
        to_json(&p.scopes)?,
        p.token_endpoint_auth_method.as_str(),
        to_json(&p.token_params)?,
        p.updated_at,
        &p.authorization_url,
        &p.refresh_url,
        &p.issuer,
        to_json(&p.authorize_params)?,
        to_json(&p.allowed_redirect_urls)?,
        &p.etag,
        to_json(&p.parameters)?,
        p.self_service.as_ref().map(to_json).transpose()?,
    ])
}
