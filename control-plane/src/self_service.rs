//! Consent on demand: what the runtime API does for the callers of a self-service provider.
//!
//! A provider with a connection template ([`ConnectionTemplate`]) lets each caller whose JWT
//! the control plane has verified itself have a connection of their own, named by the
//! template after the caller's object id:
//! - [`create_own_connection`]: the caller asks for its own connection and it does not exist
//!   yet: it is created, `not_connected`, with exactly one access policy naming that caller
//!   (issuer and object id), in one transaction, so two first requests make one connection.
//!   Any other id, or a gateway acting as itself, gets no connection.
//! - [`consent_answer`]: a connection the caller may use needs a user's consent (never
//!   connected, or its refresh token was refused or expired): the caller gets a single-use
//!   login link made for them (401, `login_url`, the `Credmgr-Consent` challenge), unless the
//!   rate limits per caller and per connection are reached (429 with `Retry-After`).
//!
//! The consent itself is the flow that exists (`crate::consent`): interstitial, state, PKCE,
//! `iss`; the link records whom it was made for, and the interstitial names them.

use credmgr_common::access::{Caller, JwtIdentity, PolicyIdentity};
use secrecy::ExposeSecret as _;

use crate::clock::unix_now;
use crate::connection_template::ConnectionTemplate;
use crate::consent::new_login_link;
use crate::domain::ConnectionKey;
use crate::error::{consent_required_error, ApiError, ConsentLink};
use crate::extract::ConnectionPath;
use crate::state::AppState;
use crate::store::{new_etag, ConnectionRecord, LinkInsert, LinkUser, PolicyRecord};
use crate::tokens::{FailureKind, TokenError};

/// The id of the access policy a self-service connection is created with.
pub const POLICY_ID: &str = "self-service-user";

/// Connection `path` does not exist. For a verified caller of a self-service provider asking
/// for its own connection, creates it (or finds that a concurrent request just did) and
/// returns; otherwise answers why not: 404 for a gateway acting as itself or a provider that is
/// not self-service (as for any missing connection), 403 for an id that is not the caller's own.
pub async fn create_own_connection(
    state: &AppState,
    path: &ConnectionPath,
    caller: &Caller,
    template: Option<&ConnectionTemplate>,
) -> Result<(), ApiError> {
    let (Some(template), Caller::Jwt(id)) = (template, caller) else {
        return Err(crate::connections::not_found(path));
    };
    let (p, c) = (&path.provider_id, &path.connection_id);
    let own = template.connection_id_for(id).map_err(|why| {
        ApiError::Forbidden(format!(
            "connection `{c}` of provider `{p}` does not exist, and provider `{p}` can make no \
             self-service connection for the caller: {why}"
        ))
    })?;
    if own != *c {
        return Err(ApiError::Forbidden(format!(
            "connection `{c}` of provider `{p}` does not exist, and only the caller's own \
             connection is created on demand: the caller's connection of provider `{p}` is \
             `{own}`"
        )));
    }
    // The JWT named an object id, or the template would have made no id.
    let object_id = id.object_id.clone().unwrap_or_default();
    let now = unix_now();
    let connection = ConnectionRecord::new(
        p,
        c,
        template.display_name_for(id),
        Some(consent_required_error(&path.key())),
        now,
    );
    let policy = PolicyRecord {
        provider_id: p.clone(),
        connection_id: c.clone(),
        id: POLICY_ID.to_owned(),
        display_name: Some("the user this self-service connection was created for".into()),
        identity: PolicyIdentity::User {
            issuer: id.issuer.clone(),
            object_id: object_id.clone(),
        },
        etag: new_etag(),
        created_at: now,
        updated_at: now,
    };
    if state
        .store
        .insert_connection_with_policy(&connection, &policy)
        .await?
    {
        tracing::info!(provider = %p, connection = %c, issuer = %id.issuer,
            object_id = %object_id, "self-service connection created for its caller");
    }
    Ok(())
}

/// When the provider is self-service and a verified caller the connection's policies allow
/// met `error`, and `error` means the connection needs a user's consent: the answer with a
/// login link made for that caller (or 429 past the rate limits). `None`: answer `error` as
/// usual.
pub async fn consent_answer(
    state: &AppState,
    key: &ConnectionKey,
    caller: &Caller,
    template: Option<&ConnectionTemplate>,
    error: &TokenError,
) -> Option<ApiError> {
    let (Some(template), Caller::Jwt(id)) = (template, caller) else {
        return None;
    };
    // A link is made for someone: a caller without an object id (let in by a group or
    // application policy) gets the usual answer.
    id.object_id.as_ref()?;
    let needs_consent = match error {
        TokenError::ConsentRequired(_) => true,
        TokenError::Unavailable(f) => matches!(
            f.kind,
            FailureKind::InvalidGrant | FailureKind::RefreshTokenExpired
        ),
        _ => false,
    };
    if !needs_consent {
        return None;
    }
    Some(match login_link(state, key, template, id).await {
        Ok(answer) | Err(answer) => answer,
    })
}

/// A login link for `caller` to consent to `key`: `Ok(ConsentLink)` as the 401 to answer, or
/// why none was made.
async fn login_link(
    state: &AppState,
    key: &ConnectionKey,
    template: &ConnectionTemplate,
    caller: &JwtIdentity,
) -> Result<ApiError, ApiError> {
    let user = LinkUser {
        issuer: caller.issuer.clone(),
        object_id: caller.object_id.clone().unwrap_or_default(),
    };
    let (p, c) = (key.provider(), key.connection());
    let redirect = template.post_login_redirect_url.clone();
    let (secret, link) = new_login_link(state, key, redirect, Some(user.clone()));
    let limits = state.consent.self_service_limits;
    match state.store.insert_login_link_limited(&link, limits).await? {
        LinkInsert::Stored => {}
        LinkInsert::Limited {
            retry_after_secs,
            per_caller,
        } => {
            let (what, limit) = if per_caller {
                ("for this caller", limits.per_caller)
            } else {
                ("for this connection", limits.per_connection)
            };
            tracing::info!(provider = %p, connection = %c, issuer = %user.issuer,
                object_id = %user.object_id, per_caller, retry_after_secs,
                "self-service login link refused: rate limit reached");
            return Err(ApiError::RateLimited {
                message: format!(
                    "{key} needs your consent, but {limit} login links were made {what} in \
                     the last minute; retry in {retry_after_secs} s"
                ),
                retry_after_secs,
            });
        }
    }
    // The URL is a secret until used: it goes in the answer only, never in a log line.
    tracing::info!(provider = %p, connection = %c, issuer = %user.issuer,
        object_id = %user.object_id, expires_at = link.expires_at,
        "self-service login link made for the caller");
    Ok(ApiError::ConsentLink(Box::new(ConsentLink {
        key: key.clone(),
        login_url: state.consent.login_url(secret.expose_secret()).into(),
        expires_at: link.expires_at,
    })))
}

/// For a 403 to a caller of a self-service provider: which connection is the caller's own.
pub fn own_connection_hint(template: Option<&ConnectionTemplate>, caller: &Caller) -> String {
    match (template, caller) {
        (Some(t), Caller::Jwt(id)) => match t.connection_id_for(id) {
            Ok(own) => format!("; the caller's own connection of this provider is `{own}`"),
            Err(_) => String::new(),
        },
        _ => String::new(),
    }
}
