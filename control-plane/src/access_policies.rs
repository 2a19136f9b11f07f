//! Access policies: who may use a connection. Management API under
//! `/v1/providers/{provider_id}/connections/{connection_id}/access-policies`.
//!
//! Each policy names one identity ([`PolicyIdentity`]): a gateway, an application, a user or
//! a group. A caller may use the connection when a policy names it; a connection without
//! policies is usable by nobody, so deleting the last policy locks it. The runtime API
//! checks them on every token request with [`credmgr_common::access::allowed`], the same
//! function gateways use on the policies they are sent with each token.

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use credmgr_common::access::PolicyIdentity;
use credmgr_common::ids::validate_id;
use serde::{Deserialize, Serialize};

use crate::clock::{rfc3339, unix_now};
use crate::connections;
use crate::error::ApiError;
use crate::etag::{self, IfMatch};
use crate::extract::{checked, path_error, ApiJson, ConnectionPath};
use crate::providers::validate_display_name;
use crate::state::AppState;
use crate::store::{new_etag, PolicyRecord};

/// Most policies one connection may have: they travel with every token to every gateway.
const MAX_POLICIES: usize = 100;
/// Longest identifier in a policy (issuer URL, client, object or group id).
const MAX_VALUE_LEN: usize = 2048;

/// Body of `PUT .../access-policies/{policy_id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[serde(default)]
    display_name: Option<String>,
    identity: PolicyIdentity,
}

/// A policy as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PolicyView {
    pub id: String,
    pub provider_id: String,
    pub connection_id: String,
    pub display_name: Option<String>,
    pub identity: PolicyIdentity,
    pub etag: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&PolicyRecord> for PolicyView {
    fn from(r: &PolicyRecord) -> Self {
        PolicyView {
            id: r.id.clone(),
            provider_id: r.provider_id.clone(),
            connection_id: r.connection_id.clone(),
            display_name: r.display_name.clone(),
            identity: r.identity.clone(),
            etag: r.etag.clone(),
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show, put, delete))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/providers/{provider_id}/connections/{connection_id}/access-policies",
            get(list),
        )
        .route(
            "/v1/providers/{provider_id}/connections/{connection_id}/access-policies/{policy_id}",
            get(show).put(put).delete(delete),
        )
}

/// `.../access-policies/{policy_id}`, with every id validated.
pub struct PolicyPath {
    pub connection: ConnectionPath,
    pub policy_id: String,
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RawPolicyPath {
    /// The provider's id: ASCII letters, digits, `-`, `_`, `.`; 1 to 64, not starting with `.`.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    provider_id: String,
    /// The connection's id, under the provider; the same rules.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    connection_id: String,
    /// The access policy's id, under the connection; the same rules.
    #[param(pattern = "^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")]
    policy_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for PolicyPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(raw) = Path::<RawPolicyPath>::from_request_parts(parts, state)
            .await
            .map_err(path_error)?;
        Ok(PolicyPath {
            connection: ConnectionPath {
                provider_id: checked("provider_id", raw.provider_id)?,
                connection_id: checked("connection_id", raw.connection_id)?,
            },
            policy_id: checked("policy_id", raw.policy_id)?,
        })
    }
}

/// Lists a connection's access policies.
#[utoipa::path(
    get,
    path = "/v1/providers/{provider_id}/connections/{connection_id}/access-policies",
    operation_id = "list_access_policies",
    tag = "access policies",
    params(crate::extract::RawConnectionPath),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The policies", body = Vec<PolicyView>),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn list(
    State(state): State<AppState>,
    path: ConnectionPath,
) -> Result<Json<Vec<PolicyView>>, ApiError> {
    connections::find(&state, &path).await?;
    let policies = state
        .store
        .list_policies(&path.provider_id, &path.connection_id)
        .await?;
    Ok(Json(policies.iter().map(PolicyView::from).collect()))
}

/// Reads an access policy.
#[utoipa::path(
    get,
    path = "/v1/providers/{provider_id}/connections/{connection_id}/access-policies/{policy_id}",
    operation_id = "get_access_policy",
    tag = "access policies",
    params(RawPolicyPath),
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "The policy",
            body = PolicyView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors
    )
)]
async fn show(State(state): State<AppState>, path: PolicyPath) -> Result<Response, ApiError> {
    connections::find(&state, &path.connection).await?;
    let r = find(&state, &path).await?;
    Ok(etag::respond(StatusCode::OK, &r.etag, PolicyView::from(&r)))
}

async fn find(state: &AppState, path: &PolicyPath) -> Result<PolicyRecord, ApiError> {
    let c = &path.connection;
    state
        .store
        .get_policy(&c.provider_id, &c.connection_id, &path.policy_id)
        .await?
        .ok_or_else(|| not_found(path))
}

fn describe(path: &PolicyPath) -> String {
    format!(
        "access policy `{}` of connection `{}` of provider `{}`",
        path.policy_id, path.connection.connection_id, path.connection.provider_id
    )
}

fn not_found(path: &PolicyPath) -> ApiError {
    ApiError::NotFound(format!("{} does not exist", describe(path)))
}

/// Creates or replaces an access policy (at most 100 per connection).
#[utoipa::path(
    put,
    path = "/v1/providers/{provider_id}/connections/{connection_id}/access-policies/{policy_id}",
    operation_id = "put_access_policy",
    tag = "access policies",
    params(RawPolicyPath, crate::etag::IfMatchParam),
    request_body = PolicyBody,
    security(("admin_token" = [])),
    responses(
        (
            status = 200,
            description = "Replaced",
            body = PolicyView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        (
            status = 201,
            description = "Created",
            body = PolicyView,
            headers(("ETag" = String, description = "The resource's version, for `If-Match`"))
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::WriteErrors
    )
)]
async fn put(
    State(state): State<AppState>,
    path: PolicyPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PolicyBody>,
) -> Result<Response, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    validate_display_name(&body.display_name)?;
    validate_identity(&body.identity)?;
    connections::find(&state, &path.connection).await?;
    let (p, c) = (&path.connection.provider_id, &path.connection.connection_id);
    let what = describe(&path);
    let existing = state.store.get_policy(p, c, &path.policy_id).await?;
    if_match.check(existing.as_ref().map(|r| r.etag.as_str()), &what)?;
    let now = unix_now();
    let record = PolicyRecord {
        provider_id: p.clone(),
        connection_id: c.clone(),
        id: path.policy_id.clone(),
        display_name: body.display_name,
        identity: body.identity,
        etag: new_etag(),
        created_at: existing.as_ref().map_or(now, |r| r.created_at),
        updated_at: now,
    };
    let status = match &existing {
        None => {
            if state.store.list_policies(p, c).await?.len() >= MAX_POLICIES {
                return Err(ApiError::Conflict(format!(
                    "connection `{c}` has {MAX_POLICIES} access policies already, the most it \
                     may have; name groups instead of many users"
                )));
            }
            if !state.store.insert_policy(&record).await? {
                return Err(ApiError::Conflict(format!(
                    "{what} was created by another request at the same time; retry"
                )));
            }
            StatusCode::CREATED
        }
        Some(old) => {
            if !state.store.replace_policy(&record, &old.etag).await? {
                return Err(if if_match.is_present() {
                    etag::stale(&what)
                } else {
                    ApiError::Conflict(format!(
                        "{what} was changed by another request at the same time; retry"
                    ))
                });
            }
            StatusCode::OK
        }
    };
    tracing::info!(provider = %p, connection = %c, policy = %record.id,
        identity = ?record.identity, "access policy written");
    Ok(etag::respond(
        status,
        &record.etag,
        PolicyView::from(&record),
    ))
}

/// Deletes an access policy; a connection without policies is usable by nobody.
#[utoipa::path(
    delete,
    path = "/v1/providers/{provider_id}/connections/{connection_id}/access-policies/{policy_id}",
    operation_id = "delete_access_policy",
    tag = "access policies",
    params(RawPolicyPath, crate::etag::IfMatchParam),
    security(("admin_token" = [])),
    responses(
        (status = 204, description = "Deleted"),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::DeleteErrors
    )
)]
async fn delete(
    State(state): State<AppState>,
    path: PolicyPath,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let if_match = IfMatch::from_headers(&headers)?;
    connections::find(&state, &path.connection).await?;
    let current = find(&state, &path).await?;
    let what = describe(&path);
    if_match.check(Some(&current.etag), &what)?;
    let expected = if_match.is_present().then_some(current.etag.as_str());
    let (p, c) = (&path.connection.provider_id, &path.connection.connection_id);
    if !state
        .store
        .delete_policy(p, c, &path.policy_id, expected)
        .await?
    {
        return Err(if if_match.is_present() {
            etag::stale(&what)
        } else {
            not_found(&path)
        });
    }
    tracing::info!(provider = %p, connection = %c, policy = %path.policy_id, "access policy deleted");
    Ok(StatusCode::NO_CONTENT)
}

fn validate_identity(identity: &PolicyIdentity) -> Result<(), ApiError> {
    let values: Vec<(&str, &str)> = match identity {
        PolicyIdentity::Gateway { name } => {
            validate_id(name).map_err(|why| {
                ApiError::invalid("identity.name", format!("`identity.name` {why}"))
            })?;
            return Ok(());
        }
        PolicyIdentity::Application { issuer, client_id } => {
            vec![("issuer", issuer), ("client_id", client_id)]
        }
        PolicyIdentity::User { issuer, object_id } => {
            vec![("issuer", issuer), ("object_id", object_id)]
        }
        PolicyIdentity::Group { issuer, group_id } => {
            vec![("issuer", issuer), ("group_id", group_id)]
        }
    };
    for (field, value) in values {
        if value.is_empty() || value.len() > MAX_VALUE_LEN || value.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                format!("identity.{field}"),
                format!(
                    "`identity.{field}` must be non-empty, at most {MAX_VALUE_LEN} bytes, and \
                     free of control characters"
                ),
            ));
        }
    }
    Ok(())
}
