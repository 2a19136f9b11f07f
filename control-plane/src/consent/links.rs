//! Step 1 of the consent flow: an operator asks for a login link (management API) for an
//! authorization-code connection, with a post-login URL from the provider's allowlist. The
//! link's secret is returned once; only its SHA-256 is stored. [`new_login_link`] makes the
//! links of both doors: this one, and the runtime API's for self-service callers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::helpers::{random_token, sha256};
use crate::clock::{rfc3339, unix_now};
use crate::domain::ConnectionKey;
use crate::error::ApiError;
use crate::extract::{ApiJson, ConnectionPath};
use crate::providers;
use crate::state::AppState;
use crate::store::{LinkUser, LoginLink};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginLinkBody {
    /// Where the user's browser goes after consent; must be in the provider's
    /// `allowed_redirect_urls`.
    post_login_redirect_url: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LoginLinkView {
    login_url: String,
    expires_at: String,
}

/// A new login link to connection `key` that sends the user to `redirect_url` afterwards,
/// made for `made_for` (a self-service caller) or by an operator (`None`): its secret, which
/// goes in the URL only ([`super::Settings::login_url`]), and its record, to store. The link
/// expires after the configured TTL.
pub fn new_login_link(
    state: &AppState,
    key: &ConnectionKey,
    redirect_url: String,
    made_for: Option<LinkUser>,
) -> (SecretString, LoginLink) {
    let secret = random_token();
    let now = unix_now();
    let ttl = i64::try_from(state.consent.login_link_ttl.as_secs()).unwrap_or(i64::MAX);
    let link = LoginLink {
        id_hash: sha256(secret.expose_secret()),
        provider_id: key.provider().to_owned(),
        connection_id: key.connection().to_owned(),
        redirect_url,
        created_at: now,
        expires_at: now.saturating_add(ttl),
        used_at: None,
        made_for,
    };
    (secret, link)
}

/// Makes a single-use login link for an authorization-code connection; its URL is shown
/// once, in this answer.
#[utoipa::path(
    post,
    path = "/v1/providers/{provider_id}/connections/{connection_id}/login-links",
    operation_id = "create_login_link",
    tag = "connections",
    params(crate::extract::RawConnectionPath),
    request_body = LoginLinkBody,
    security(("admin_token" = [])),
    responses(
        (
            status = 201,
            description = "The link: open `login_url` in a browser",
            body = LoginLinkView
        ),
        crate::openapi_answers::AdminErrors,
        crate::openapi_answers::LookupErrors,
        crate::openapi_answers::WriteErrors
    )
)]
pub(super) async fn create_login_link(
    State(state): State<AppState>,
    path: ConnectionPath,
    ApiJson(body): ApiJson<LoginLinkBody>,
) -> Result<Response, ApiError> {
    let (p, c) = (&path.provider_id, &path.connection_id);
    let provider = providers::find(&state, p).await?;
    state.store.get_connection(p, c).await?.ok_or_else(|| {
        ApiError::NotFound(format!("connection `{c}` of provider `{p}` does not exist"))
    })?;
    if !provider.grant_type.needs_consent() {
        return Err(ApiError::InvalidRequest {
            field: None,
            message: format!(
                "provider `{p}` uses the {} grant: only authorization-code connections are \
                 connected through a login link",
                provider.grant_type
            ),
        });
    }
    let redirect = body.post_login_redirect_url;
    if !provider.allowed_redirect_urls.contains(&redirect) {
        return Err(ApiError::invalid(
            "post_login_redirect_url",
            format!(
                "`post_login_redirect_url` is not one of provider `{p}`'s \
                 allowed_redirect_urls (exact match required)"
            ),
        ));
    }
    let (secret, link) = new_login_link(&state, &path.key(), redirect, None);
    state.store.insert_login_link(&link).await?;
    tracing::info!(provider = %p, connection = %c, expires_at = link.expires_at,
        "login link created");
    let view = LoginLinkView {
        login_url: state.consent.login_url(secret.expose_secret()),
        expires_at: rfc3339(link.expires_at),
    };
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Json(view),
    )
        .into_response())
}
