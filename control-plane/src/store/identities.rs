//! Trusted issuers (whose JWTs identify callers) and access policies (who may use a
//! connection).

use super::rows::{issuer_from_row, policy_from_row, to_json, ISSUER_COLUMNS, POLICY_COLUMNS};
use super::{IssuerRecord, PolicyRecord, Store, StoreError};

impl Store {
    pub async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        on_db!(self, |db| {
            let rows = sqlx::query(&format!(
                "SELECT {ISSUER_COLUMNS} FROM trusted_issuers ORDER BY id"
            ))
            .fetch_all(db)
            .await?;
            rows.iter().map(issuer_from_row).collect()
        })
    }

    pub async fn get_issuer(&self, id: &str) -> Result<Option<IssuerRecord>, StoreError> {
        on_db!(self, |db| {
            let row = sqlx::query(&format!(
                "SELECT {ISSUER_COLUMNS} FROM trusted_issuers WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(db)
            .await?;
            row.as_ref().map(issuer_from_row).transpose()
        })
    }

    /// Inserts a new issuer; `false` if one with that id, or that `issuer`, exists already.
    pub async fn insert_issuer(&self, r: &IssuerRecord) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let jwks = r.jwks.as_ref().map(to_json).transpose()?;
            // DO NOTHING on either unique column: the id, or the issuer URL.
            let done = sqlx::query(
                "INSERT INTO trusted_issuers (id, display_name, issuer, audiences, jwks_uri, jwks, \
                 claims, leeway_seconds, etag, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING",
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
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Replaces an issuer if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_issuer(
        &self,
        r: &IssuerRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let jwks = r.jwks.as_ref().map(to_json).transpose()?;
            let done = sqlx::query(
                "UPDATE trusted_issuers SET display_name = $1, issuer = $2, audiences = $3, \
                 jwks_uri = $4, jwks = $5, claims = $6, leeway_seconds = $7, etag = $8, updated_at = $9 \
                 WHERE id = $10 AND etag = $11",
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
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Deletes an issuer (only if its etag is `expected_etag`, when given).
    pub async fn delete_issuer(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "DELETE FROM trusted_issuers WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR etag = $3)",
            )
            .bind(id)
            .bind(expected_etag)
            .bind(expected_etag)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// A connection's access policies, by id.
    pub async fn list_policies(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        on_db!(self, |db| {
            let rows = sqlx::query(&format!(
                "SELECT {POLICY_COLUMNS} FROM access_policies WHERE provider_id = $1 AND connection_id = $2 ORDER BY id"
            ))
            .bind(provider_id)
            .bind(connection_id)
            .fetch_all(db)
            .await?;
            rows.iter().map(policy_from_row).collect()
        })
    }

    pub async fn get_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        on_db!(self, |db| {
            let row = sqlx::query(&format!(
                "SELECT {POLICY_COLUMNS} FROM access_policies WHERE provider_id = $1 AND connection_id = $2 AND id = $3"
            ))
            .bind(provider_id)
            .bind(connection_id)
            .bind(id)
            .fetch_optional(db)
            .await?;
            row.as_ref().map(policy_from_row).transpose()
        })
    }

    /// Inserts a new policy; `false` if one with that id exists already. Fails if the
    /// connection does not exist (foreign key).
    pub async fn insert_policy(&self, r: &PolicyRecord) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "INSERT INTO access_policies (provider_id, connection_id, id, display_name, \
                 identity, etag, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
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
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Replaces a policy if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_policy(
        &self,
        r: &PolicyRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "UPDATE access_policies SET display_name = $1, identity = $2, etag = $3, \
                 updated_at = $4 WHERE provider_id = $5 AND connection_id = $6 AND id = $7 AND etag = $8",
            )
            .bind(&r.display_name)
            .bind(to_json(&r.identity)?)
            .bind(&r.etag)
            .bind(r.updated_at)
            .bind(&r.provider_id)
            .bind(&r.connection_id)
            .bind(&r.id)
            .bind(expected_etag)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Deletes a policy (only if its etag is `expected_etag`, when given).
    pub async fn delete_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        on_db!(self, |db| {
            let done = sqlx::query(
                "DELETE FROM access_policies WHERE provider_id = $1 AND connection_id = $2 AND id = $3 \
                 AND (CAST($4 AS TEXT) IS NULL OR etag = $5)",
            )
            .bind(provider_id)
            .bind(connection_id)
            .bind(id)
            .bind(expected_etag)
            .bind(expected_etag)
            .execute(db)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }
}
