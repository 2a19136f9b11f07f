//! Trusted issuers (whose JWTs identify callers) and access policies (who may use a
//! connection). An insert writes a record's keys, its `created_at` and its settings; a replace
//! writes the settings again, found by the keys and the etag the caller saw.

use super::exec::{args, placeholders, Arg};
use super::rows::{issuer_from_row, policy_from_row, to_json, ISSUER_COLUMNS, POLICY_COLUMNS};
use super::{IssuerRecord, PolicyRecord, Store, StoreError};

/// An issuer's columns that a replace writes, in the order [`issuer_settings`] binds them.
const ISSUER_SETTINGS: &str = "display_name, issuer, audiences, jwks_uri, jwks, claims, \
     leeway_seconds, etag, updated_at";

/// A policy's columns that a replace writes, in the order [`policy_settings`] binds them.
const POLICY_SETTINGS: &str = "display_name, identity, etag, updated_at";

impl Store {
    pub async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        let sql = format!("SELECT {ISSUER_COLUMNS} FROM trusted_issuers ORDER BY id");
        self.fetch_all(&sql, &[], issuer_from_row).await
    }

    pub async fn get_issuer(&self, id: &str) -> Result<Option<IssuerRecord>, StoreError> {
        let sql = format!("SELECT {ISSUER_COLUMNS} FROM trusted_issuers WHERE id = $1");
        self.fetch_optional(&sql, &args![id], issuer_from_row).await
    }

    /// Inserts a new issuer; `false` if one with that id, or that `issuer`, exists already.
    pub async fn insert_issuer(&self, r: &IssuerRecord) -> Result<bool, StoreError> {
        // DO NOTHING on either unique column: the id, or the issuer URL.
        let sql = format!(
            "INSERT INTO trusted_issuers (id, created_at, {ISSUER_SETTINGS}) VALUES ({}) \
             ON CONFLICT DO NOTHING",
            placeholders(1..=11)
        );
        let mut binds = args![&r.id, r.created_at].to_vec();
        binds.extend(issuer_settings(r)?);
        Ok(self.execute(&sql, &binds).await? == 1)
    }

    /// Replaces an issuer if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_issuer(
        &self,
        r: &IssuerRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE trusted_issuers SET ({ISSUER_SETTINGS}) = ({}) WHERE id = $1 AND etag = $2",
            placeholders(3..=11)
        );
        let mut binds = args![&r.id, expected_etag].to_vec();
        binds.extend(issuer_settings(r)?);
        Ok(self.execute(&sql, &binds).await? == 1)
    }

    /// Deletes an issuer (only if its etag is `expected_etag`, when given).
    pub async fn delete_issuer(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "DELETE FROM trusted_issuers WHERE id = $1 \
                   AND (CAST($2 AS TEXT) IS NULL OR etag = $2)";
        Ok(self.execute(sql, &args![id, expected_etag]).await? == 1)
    }

    /// A connection's access policies, by id.
    pub async fn list_policies(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM access_policies \
             WHERE provider_id = $1 AND connection_id = $2 ORDER BY id"
        );
        self.fetch_all(&sql, &args![provider_id, connection_id], policy_from_row)
            .await
    }

    pub async fn get_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        let sql = format!(
            "SELECT {POLICY_COLUMNS} FROM access_policies \
             WHERE provider_id = $1 AND connection_id = $2 AND id = $3"
        );
        let binds = args![provider_id, connection_id, id];
        self.fetch_optional(&sql, &binds, policy_from_row).await
    }

    /// Inserts a new policy; `false` if one with that id exists already. Fails if the
    /// connection does not exist (foreign key).
    pub async fn insert_policy(&self, r: &PolicyRecord) -> Result<bool, StoreError> {
        let (sql, binds) = insert_policy_statement(r)?;
        Ok(self.execute(&sql, &binds).await? == 1)
    }

    /// Replaces a policy if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_policy(
        &self,
        r: &PolicyRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        let sql = format!(
            "UPDATE access_policies SET ({POLICY_SETTINGS}) = ({}) \
             WHERE provider_id = $1 AND connection_id = $2 AND id = $3 AND etag = $4",
            placeholders(5..=8)
        );
        let mut binds = args![&r.provider_id, &r.connection_id, &r.id, expected_etag].to_vec();
        binds.extend(policy_settings(r)?);
        Ok(self.execute(&sql, &binds).await? == 1)
    }

    /// Deletes a policy (only if its etag is `expected_etag`, when given).
    pub async fn delete_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        let sql = "DELETE FROM access_policies WHERE provider_id = $1 AND connection_id = $2 \
                   AND id = $3 AND (CAST($4 AS TEXT) IS NULL OR etag = $4)";
        let binds = args![provider_id, connection_id, id, expected_etag];
        Ok(self.execute(sql, &binds).await? == 1)
    }
}

/// An issuer's values in the order of [`ISSUER_SETTINGS`].
fn issuer_settings(r: &IssuerRecord) -> Result<[Arg<'_>; 9], StoreError> {
    Ok(args![
        &r.display_name,
        &r.issuer,
        to_json(&r.audiences)?,
        &r.jwks_uri,
        r.jwks.as_ref().map(to_json).transpose()?,
        to_json(&r.claims)?,
        r.leeway_seconds,
        &r.etag,
        r.updated_at,
    ])
}

/// The statement that inserts a policy (doing nothing if one with its id exists), and its
/// values.
pub(super) fn insert_policy_statement(
    r: &PolicyRecord,
) -> Result<(String, Vec<Arg<'_>>), StoreError> {
    let sql = format!(
        "INSERT INTO access_policies (provider_id, connection_id, id, created_at, \
         {POLICY_SETTINGS}) VALUES ({}) ON CONFLICT (provider_id, connection_id, id) DO NOTHING",
        placeholders(1..=8)
    );
    let mut binds = args![&r.provider_id, &r.connection_id, &r.id, r.created_at].to_vec();
    binds.extend(policy_settings(r)?);
    Ok((sql, binds))
}

/// A policy's values in the order of [`POLICY_SETTINGS`].
fn policy_settings(r: &PolicyRecord) -> Result<[Arg<'_>; 4], StoreError> {
    Ok(args![
        &r.display_name,
        to_json(&r.identity)?,
        &r.etag,
        r.updated_at,
    ])
}
