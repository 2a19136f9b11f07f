//! Steps 2 and 3 of the consent flow, at the login link's URL: the interstitial page (GET)
//! that says which provider account is about to be connected to which connection, and
//! Continue (POST), which uses the link up and redirects the browser to the provider with a
//! fresh `state`, a PKCE S256 challenge (RFC 7636) and the cookie that binds the consent to
//! this browser.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

use super::helpers::{cookie_name, from_own_page, hex, random_token, redirect, sha256};
use super::{page, CONSENT_TTL_SECS};
use crate::clock::{rfc3339, unix_now};
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{ConsentState, LoginLink, ProviderRecord};

/// Why a login link cannot be used, as a page.
fn unusable_link(link: Option<&LoginLink>, now: i64) -> Response {
    match link {
        None => page::error(
            StatusCode::NOT_FOUND,
            "Unknown login link",
            "This login link does not exist. Check that it was copied whole.",
        ),
        Some(l) if l.used_at.is_some() => page::error(
            StatusCode::GONE,
            "Login link already used",
            "This login link was already used; each link works once.",
        ),
        Some(l) if l.expires_at <= now => page::error(
            StatusCode::GONE,
            "Login link expired",
            "This login link has expired.",
        ),
        Some(_) => page::error(
            StatusCode::GONE,
            "Login link not usable",
            "This login link cannot be used any more.",
        ),
    }
}

/// What the interstitial shows; `None` if the provider or connection is gone.
async fn describe(
    state: &AppState,
    link: &LoginLink,
) -> Result<Option<(ProviderRecord, String)>, ApiError> {
    let Some(provider) = state.store.get_provider(&link.provider_id).await? else {
        return Ok(None);
    };
    let Some(conn) = state
        .store
        .get_connection(&link.provider_id, &link.connection_id)
        .await?
    else {
        return Ok(None);
    };
    let name = conn.display_name.unwrap_or(conn.id);
    Ok(Some((provider, name)))
}

/// The link's post-login URL was removed from the provider's `allowed_redirect_urls` after
/// the link was made: the removal must take effect on outstanding links too.
fn redirect_no_longer_allowed() -> Response {
    page::error(
        StatusCode::CONFLICT,
        "Login link withdrawn",
        "The page this link would send you back to is no longer allowed for this provider.",
    )
}

fn gone_connection() -> Response {
    page::error(
        StatusCode::NOT_FOUND,
        "Connection not found",
        "The connection this link was made for no longer exists.",
    )
}

/// The interstitial page a login link opens: what is about to be connected to what, and a
/// Continue button. An unknown, used or expired link gets an HTML page that says so.
#[utoipa::path(
    get,
    path = "/oauth2/login/{link}",
    operation_id = "login_page",
    tag = "consent",
    params(("link" = String, Path, description = "The login link's secret (from `login_url`)")),
    responses(
        (
            status = 200,
            description = "The interstitial",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 404,
            description = "No such link, or its connection is gone",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 409,
            description = "The link's post-login URL is no longer allowed",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 410,
            description = "The link was used or has expired",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = credmgr_common::ErrorBody)
    )
)]
pub(super) async fn interstitial(
    State(state): State<AppState>,
    Path(link): Path<String>,
) -> Result<Response, ApiError> {
    let now = unix_now();
    let found = state.store.get_login_link(&sha256(&link)).await?;
    let link = match found {
        Some(l) if l.used_at.is_none() && l.expires_at > now => l,
        other => return Ok(unusable_link(other.as_ref(), now)),
    };
    let Some((provider, connection_name)) = describe(&state, &link).await? else {
        return Ok(gone_connection());
    };
    if !provider.allowed_redirect_urls.contains(&link.redirect_url) {
        return Ok(redirect_no_longer_allowed());
    }
    let provider_name = provider.display_name.as_deref().unwrap_or(&provider.id);
    let provider_host = host_of(provider.authorization_url.as_deref().unwrap_or_default());
    let back_host = host_of(&link.redirect_url);
    let body = format!(
        "<p>You are about to connect your account at <strong>{provider}</strong> \
         (<code>{provider_host}</code>) to the credmgr connection \
         <strong>{connection}</strong> (<code>{p}/{c}</code>). Services that use this \
         connection will act with your account's permissions.</p>{made_for}\
         <p>Continue only if you asked for this link yourself. If someone sent it to you \
         unasked, close this page: continuing would give them access through your account.</p>\
         <p>After you sign in at <code>{provider_host}</code> you will be sent back to \
         <code>{back_host}</code>. This link works once and expires at {expires}.</p>\
         <form method=\"post\"><button type=\"submit\">Continue</button></form>",
        provider = page::escape(provider_name),
        provider_host = page::escape(&provider_host),
        connection = page::escape(&connection_name),
        p = page::escape(&link.provider_id),
        c = page::escape(&link.connection_id),
        back_host = page::escape(&back_host),
        expires = rfc3339(link.expires_at),
        made_for = made_for(&link),
    );
    Ok(page::page(StatusCode::OK, "Connect your account", &body))
}

/// Whom a self-service link was made for, as a paragraph of the interstitial; empty for an
/// operator's link.
fn made_for(link: &LoginLink) -> String {
    match &link.made_for {
        Some(user) => format!(
            "<p>This link was made for the user <code>{}</code> of <code>{}</code>: only \
             that user can use the connection afterwards.</p>",
            page::escape(&user.object_id),
            page::escape(&user.issuer),
        ),
        None => String::new(),
    }
}

fn host_of(raw: &str) -> String {
    url::Url::parse(raw)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            })
        })
        .unwrap_or_else(|| raw.to_owned())
}

/// Continue: uses the link up and sends the browser to the provider.
/// Continue, from the interstitial only (`Sec-Fetch-Site`/`Origin` checked): uses the link
/// up and redirects the browser to the provider's authorization endpoint.
#[utoipa::path(
    post,
    path = "/oauth2/login/{link}",
    operation_id = "login_continue",
    tag = "consent",
    params(("link" = String, Path, description = "The login link's secret (from `login_url`)")),
    responses(
        (
            status = 303,
            description = "To the provider, with `state` and PKCE; sets the browser-binding cookie",
            headers(("Location" = String), ("Set-Cookie" = String))
        ),
        (
            status = 403,
            description = "Not sent from the interstitial (CSRF)",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 404,
            description = "No such link, or its connection is gone",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 409,
            description = "The provider or the post-login URL changed",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 410,
            description = "The link was used or has expired",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = credmgr_common::ErrorBody)
    )
)]
pub(super) async fn continue_(
    State(state): State<AppState>,
    Path(link): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Err(why) = from_own_page(&headers, &state.consent.public_url) {
        // Checked before the link is used: a forged Continue must not spend it either.
        tracing::warn!(reason = %why, "Continue from another site's page refused (CSRF)");
        return Ok(page::error(
            StatusCode::FORBIDDEN,
            "Continue refused",
            "This request did not come from the login page itself, so it was refused: \
             another site may have tried to continue the sign-in for you. Open the login \
             link directly and press Continue there.",
        ));
    }
    let now = unix_now();
    let id_hash = sha256(&link);
    let Some(link) = state.store.use_login_link(&id_hash, now).await? else {
        let found = state.store.get_login_link(&id_hash).await?;
        return Ok(unusable_link(found.as_ref(), now));
    };
    let (p, c) = (&link.provider_id, &link.connection_id);
    let Some(conn) = state.store.get_connection(p, c).await? else {
        return Ok(gone_connection());
    };
    let Some(provider) = state.store.get_provider(p).await? else {
        return Ok(gone_connection());
    };
    if !provider.allowed_redirect_urls.contains(&link.redirect_url) {
        tracing::warn!(provider = %p, connection = %c,
            "login link refused: its post-login URL was removed from allowed_redirect_urls");
        return Ok(redirect_no_longer_allowed());
    }
    let Some(authorization_url) = provider
        .authorization_url
        .as_deref()
        .filter(|_| provider.grant_type.needs_consent())
    else {
        return Ok(page::error(
            StatusCode::CONFLICT,
            "Provider changed",
            "The provider no longer uses the authorization-code grant.",
        ));
    };

    let state_param = random_token();
    let browser = random_token();
    let verifier = random_token(); // 43 characters of [A-Za-z0-9-_]: RFC 7636 §4.1.
    let challenge = B64URL.encode(Sha256::digest(verifier.expose_secret().as_bytes()));
    let state_hash = sha256(state_param.expose_secret());
    let record = ConsentState {
        code_verifier: state.keyring.encrypt(
            &Aad::consent_code_verifier(&hex(&state_hash)),
            verifier.expose_secret().as_bytes(),
        )?,
        browser_hash: sha256(browser.expose_secret()),
        provider_id: p.clone(),
        connection_id: c.clone(),
        redirect_url: link.redirect_url.clone(),
        token_generation: conn.token_generation,
        expires_at: now.saturating_add(CONSENT_TTL_SECS),
        state_hash: state_hash.clone(),
    };
    state.store.insert_consent_state(&record).await?;

    let mut target = url::Url::parse(authorization_url)
        .map_err(|e| ApiError::Internal(format!("stored authorization_url: {e}")))?;
    {
        // Joined and named as the provider wants (Slack: commas, and `user_scope` for user
        // tokens).
        let quirks = &provider.identity_provider.preset().quirks;
        let scope = quirks.join_scopes(&provider.scopes);
        let mut q = target.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", &state.consent.callback_url());
        if !scope.is_empty() {
            q.append_pair(&quirks.scope_param, &scope);
        }
        q.append_pair("state", state_param.expose_secret())
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        for (k, v) in &provider.authorize_params {
            q.append_pair(k, v);
        }
    }
    tracing::info!(provider = %p, connection = %c, "consent started: redirecting to the provider");
    let cookie = state.consent.consent_cookie(
        &cookie_name(&state_hash),
        browser.expose_secret(),
        CONSENT_TTL_SECS,
    );
    redirect(target.as_str(), Some(cookie))
}
