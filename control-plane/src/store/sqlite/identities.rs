//! Trusted issuers and access policies in SQLite.

use super::SqliteStore;
use crate::store::identities::{IssuerRecord, PolicyRecord};
use crate::store::rows::{
    issuer_from_row, policy_from_row, to_json, ISSUER_COLUMNS, POLICY_COLUMNS,
};
use crate::store::StoreError;

impl SqliteStore {
    pub async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {ISSUER_COLUMNS} FROM trusted_issuers ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(issuer_from_row).collect()
    }

    pub async fn get_issuer(&self, id: &str) -> Result<Option<IssuerRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {ISSUER_COLUMNS} FROM trusted_issuers WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(issuer_from_row).transpose()
    }

    pub async fn insert_issuer(&self, r: &IssuerRecord) -> Result<bool, StoreError> {
        let jwks = r.jwks.as_ref().map(to_json).transpose()?;
        // DO NOTHING on either unique column: the id, or the issuer URL.
        let done = sqlx::query(
            "INSERT INTO trusted_issuers (id, display_name, issuer, audiences, jwks_uri, jwks, \
             claims, leeway_seconds, etag, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(&r.id)
        .bind(&r.display_name)
        .bind(&r.issuer)
        .bind(to_json(&r.audiences)?)
        .bind(&r.jwks_uri)
        .bind(jwks)
        .bind(to_json(&r.claims)?)
        .bind(r.leeway_seconds)
        .bind(&r.etag)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn replace_issuer(
        &self,
        r: &IssuerRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let jwks = r.jwks.as_ref().map(to_json).transpose()?;
        let done = sqlx::query(
            "UPDATE trusted_issuers SET display_name = ?, issuer = ?, audiences = ?, \
             jwks_uri = ?, jwks = ?, claims = ?, leeway_seconds = ?, etag = ?, updated_at = ? \
             WHERE id = ? AND etag = ?",
        )
        .bind(&r.display_name)
        .bind(&r.issuer)
        .bind(to_json(&r.audiences)?)
        .bind(&r.jwks_uri)
        .bind(jwks)
        .bind(to_json(&r.claims)?)
        .bind(r.leeway_seconds)
        .bind(&r.etag)
        .bind(r.updated_at)
        .bind(&r.id)
        .bind(expected_etag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_issuer(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM trusted_issuers WHERE id = ? AND (? IS NULL OR etag = ?)")
                .bind(id)
                .bind(expected_etag)
                .bind(expected_etag)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn list_policies(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM access_policies WHERE provider_id = ? AND connection_id = ? ORDER BY id"
        ))
        .bind(provider_id)
        .bind(connection_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(policy_from_row).collect()
    }

    pub async fn get_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {POLICY_COLUMNS} FROM access_policies WHERE provider_id = ? AND connection_id = ? AND id = ?"
        ))
        .bind(provider_id)
        .bind(connection_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    pub async fn insert_policy(&self, r: &PolicyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO access_policies (provider_id, connection_id, id, display_name, \
             identity, etag, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (provider_id, connection_id, id) DO NOTHING",
        )
        .bind(&r.provider_id)
        .bind(&r.connection_id)
        .bind(&r.id)
        .bind(&r.display_name)
        .bind(to_json(&r.identity)?)
        .bind(&r.etag)
        .bind(r.created_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn replace_policy(
        &self,
        r: &PolicyRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE access_policies SET display_name = ?, identity = ?, etag = ?, \
             updated_at = ? WHERE provider_id = ? AND connection_id = ? AND id = ? AND etag = ?",
        )
        .bind(&r.display_name)
        .bind(to_json(&r.identity)?)
        .bind(&r.etag)
        .bind(r.updated_at)
        .bind(&r.provider_id)
        .bind(&r.connection_id)
        .bind(&r.id)
        .bind(expected_etag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "DELETE FROM access_policies WHERE provider_id = ? AND connection_id = ? AND id = ? \
             AND (? IS NULL OR etag = ?)",
        )
        .bind(provider_id)
        .bind(connection_id)
        .bind(id)
        .bind(expected_etag)
        .bind(expected_etag)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
