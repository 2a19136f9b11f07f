//! Records of trusted issuers and access policies, and the [`Store`] calls that keep them.

use credmgr_common::access::{ClaimNames, PolicyIdentity};

use super::{Backend, Store, StoreError};

/// An issuer whose JWTs identify callers.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerRecord {
    pub id: String,
    pub display_name: Option<String>,
    /// `iss`, exactly as in its tokens; unique among trusted issuers.
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Where its keys are fetched from; `None` when they are given inline.
    pub jwks_uri: Option<String>,
    /// Its keys, given inline; `None` when they are fetched from `jwks_uri`.
    pub jwks: Option<serde_json::Value>,
    pub claims: ClaimNames,
    pub leeway_seconds: i64,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One access policy of a connection: an identity that may use it.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyRecord {
    pub provider_id: String,
    pub connection_id: String,
    pub id: String,
    pub display_name: Option<String>,
    pub identity: PolicyIdentity,
    pub etag: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    pub async fn list_issuers(&self) -> Result<Vec<IssuerRecord>, StoreError> {
        dispatch!(self.list_issuers())
    }

    pub async fn get_issuer(&self, id: &str) -> Result<Option<IssuerRecord>, StoreError> {
        dispatch!(self.get_issuer(id))
    }

    /// Inserts a new issuer; `false` if one with that id, or that `issuer`, exists already.
    pub async fn insert_issuer(&self, r: &IssuerRecord) -> Result<bool, StoreError> {
        dispatch!(self.insert_issuer(r))
    }

    /// Replaces an issuer if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_issuer(
        &self,
        r: &IssuerRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.replace_issuer(r, expected_etag))
    }

    /// Deletes an issuer (only if its etag is `expected_etag`, when given).
    pub async fn delete_issuer(
        &self,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_issuer(id, expected_etag))
    }

    /// A connection's access policies, by id.
    pub async fn list_policies(
        &self,
        provider_id: &str,
        connection_id: &str,
    ) -> Result<Vec<PolicyRecord>, StoreError> {
        dispatch!(self.list_policies(provider_id, connection_id))
    }

    pub async fn get_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
    ) -> Result<Option<PolicyRecord>, StoreError> {
        dispatch!(self.get_policy(provider_id, connection_id, id))
    }

    /// Inserts a new policy; `false` if one with that id exists already. Fails if the
    /// connection does not exist (foreign key).
    pub async fn insert_policy(&self, r: &PolicyRecord) -> Result<bool, StoreError> {
        dispatch!(self.insert_policy(r))
    }

    /// Replaces a policy if its etag is still `expected_etag`; `false` otherwise.
    pub async fn replace_policy(
        &self,
        r: &PolicyRecord,
        expected_etag: &str,
    ) -> Result<bool, StoreError> {
        dispatch!(self.replace_policy(r, expected_etag))
    }

    /// Deletes a policy (only if its etag is `expected_etag`, when given).
    pub async fn delete_policy(
        &self,
        provider_id: &str,
        connection_id: &str,
        id: &str,
        expected_etag: Option<&str>,
    ) -> Result<bool, StoreError> {
        dispatch!(self.delete_policy(provider_id, connection_id, id, expected_etag))
    }
}
