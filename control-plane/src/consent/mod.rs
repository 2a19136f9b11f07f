//! The consent flow of authorization-code connections (RFC 6749 §4.1 with PKCE, RFC 7636).
//!
//! 1. An operator asks for a login link (`POST .../login-links`, management API) with a
//!    post-login redirect URL from the provider's allowlist. The link carries 256 random bits;
//!    only their SHA-256 is stored. It is single-use and expires.
//! 2. The user opens it: an interstitial page says which provider account is about to be
//!    connected to which connection, with a Continue button, so that a link sent by someone
//!    else does not connect the victim's account without a look.
//! 3. Continue (a POST) uses the link up and redirects to the provider with a fresh `state`
//!    (single use, ten minutes, bound to this browser by a cookie), a PKCE S256 challenge and
//!    the provider's extra parameters.
//! 4. The provider redirects to `/oauth2/callback`. The state is consumed whatever happens;
//!    the cookie must match it, `iss` must be the provider's (RFC 9207) when sent, and the
//!    code is exchanged. Only a successful exchange stores anything: the tokens, replacing
//!    the connection's old ones. The user lands on the post-login URL with the outcome.

mod helpers;
mod links;
mod page;

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::{rfc3339, unix_now};
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::store::{ConsentState, LoginLink, ProviderRecord};
use crate::tokens::ConsentFailure;
use crate::AppState;

use helpers::{cookie_name, cookie_value, hex, random_token, redirect, sha256};
use links::create_login_link;

/// How long the user has between Continue and the provider's redirect back.
const CONSENT_TTL_SECS: i64 = 600;

/// The path of the redirect URI to register at providers.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

/// Where browsers reach the control plane, and how long login links live.
#[derive(Debug)]
pub struct Settings {
    pub public_url: url::Url,
    pub login_link_ttl: Duration,
}

impl Settings {
    pub fn new(public_url: url::Url, login_link_ttl: Duration) -> Self {
        Settings {
            public_url,
            login_link_ttl,
        }
    }

    fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    /// The redirect URI registered at providers.
    pub fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.base())
    }

    fn login_url(&self, secret: &str) -> String {
        format!("{}/oauth2/login/{secret}", self.base())
    }

    /// Cookies are `Secure` when browsers reach the control plane over https.
    fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// Management route: `POST /v1/providers/{p}/connections/{c}/login-links`.
pub fn management_routes() -> Router<AppState> {
    Router::new().route(
        "/v1/providers/{provider_id}/connections/{connection_id}/login-links",
        post(create_login_link),
    )
}

/// Browser routes, without the admin token: the interstitial and the callback.
pub fn browser_routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/login/{link}", get(interstitial).post(continue_))
        .route(CALLBACK_PATH, get(callback))
}

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

fn gone_connection() -> Response {
    page::error(
        StatusCode::NOT_FOUND,
        "Connection not found",
        "The connection this link was made for no longer exists.",
    )
}

async fn interstitial(
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
    let provider_name = provider.display_name.as_deref().unwrap_or(&provider.id);
    let provider_host = host_of(provider.authorization_url.as_deref().unwrap_or_default());
    let back_host = host_of(&link.redirect_url);
    let body = format!(
        "<p>You are about to connect your account at <strong>{provider}</strong> \
         (<code>{provider_host}</code>) to the credmgr connection \
         <strong>{connection}</strong> (<code>{p}/{c}</code>). Services that use this \
         connection will act with your account's permissions.</p>\
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
    );
    Ok(page::page(StatusCode::OK, "Connect your account", &body))
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
async fn continue_(
    State(state): State<AppState>,
    Path(link): Path<String>,
) -> Result<Response, ApiError> {
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
    let cookie = format!(
        "{}={}; Path={CALLBACK_PATH}; Max-Age={CONSENT_TTL_SECS}; HttpOnly; SameSite=Lax{}",
        cookie_name(&state_hash),
        browser.expose_secret(),
        if state.consent.secure() {
            "; Secure"
        } else {
            ""
        },
    );
    redirect(target.as_str(), Some(cookie))
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let bad = |title: &str, message: &str| Ok(page::error(StatusCode::BAD_REQUEST, title, message));
    let Some(state_param) = params.get("state").filter(|s| !s.is_empty()) else {
        return bad(
            "Sign-in failed",
            "The provider's answer has no state parameter, so it cannot be matched to a \
             sign-in started here.",
        );
    };
    let state_hash = sha256(state_param);
    // Consumed now, whatever follows: a state works once.
    let Some(consent) = state.store.take_consent_state(&state_hash).await? else {
        tracing::warn!("consent callback with an unknown or already used state");
        return bad(
            "Sign-in failed",
            "This sign-in is unknown or was already completed. Each sign-in can be completed \
             once; opening the provider's answer again does not work.",
        );
    };
    let (p, c) = (consent.provider_id.as_str(), consent.connection_id.as_str());
    let clear = format!(
        "{}=; Path={CALLBACK_PATH}; Max-Age=0; HttpOnly; SameSite=Lax",
        cookie_name(&state_hash)
    );
    let fail = |status: StatusCode, title: &str, message: &str| {
        let mut r = page::error(status, title, message);
        if let Ok(v) = HeaderValue::from_str(&clear) {
            r.headers_mut().insert(SET_COOKIE, v);
        }
        Ok(r)
    };
    if consent.expires_at <= unix_now() {
        tracing::warn!(provider = %p, connection = %c, "consent callback after the state expired");
        return fail(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "This sign-in took too long and has expired.",
        );
    }
    let same_browser = cookie_value(&headers, &cookie_name(&state_hash))
        .is_some_and(|v| bool::from(sha256(v).ct_eq(&consent.browser_hash)));
    if !same_browser {
        tracing::warn!(provider = %p, connection = %c,
            "consent callback from another browser than the one that started it: refused");
        return fail(
            StatusCode::BAD_REQUEST,
            "Sign-in started elsewhere",
            "This sign-in was started in another browser (or its cookie is gone). For your \
             safety it can only be completed in the browser that opened the login link.",
        );
    }
    let Some(provider) = state.store.get_provider(p).await? else {
        return fail(
            StatusCode::NOT_FOUND,
            "Connection not found",
            "The provider of this connection no longer exists.",
        );
    };
    if let Some(iss) = params.get("iss") {
        if !issuer_matches(&provider, iss) {
            tracing::warn!(provider = %p, connection = %c,
                "consent callback with an unexpected iss (RFC 9207): refused");
            return fail(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                "The answer names another authorization server than the one this sign-in was \
                 sent to (RFC 9207 issuer check).",
            );
        }
    }
    if let Some(error) = params.get("error") {
        let description = params
            .get("error_description")
            .map(|d| format!(": {}", printable(d)))
            .unwrap_or_default();
        tracing::info!(provider = %p, connection = %c, error = %printable(error),
            "the provider answered the authorization request with an error");
        return fail(
            StatusCode::BAD_REQUEST,
            "Sign-in not completed",
            &format!("The provider answered `{}`{description}.", printable(error)),
        );
    }
    let Some(code) = params.get("code").filter(|s| !s.is_empty()) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            "The provider's answer has neither a code nor an error.",
        );
    };
    let verifier = state.keyring.decrypt_string(
        &Aad::consent_code_verifier(&hex(&state_hash)),
        &consent.code_verifier,
    )?;
    let code = SecretString::from(code.as_str());
    let outcome = state
        .tokens
        .complete_consent(
            p,
            c,
            consent.token_generation,
            &code,
            &verifier,
            &state.consent.callback_url(),
        )
        .await?;
    match outcome {
        Ok(()) => {
            let mut target = url::Url::parse(&consent.redirect_url)
                .map_err(|e| ApiError::Internal(format!("stored redirect URL: {e}")))?;
            target
                .query_pairs_mut()
                .append_pair("credmgr_status", "connected")
                .append_pair("provider_id", p)
                .append_pair("connection_id", c);
            redirect(target.as_str(), Some(clear))
        }
        Err(ConsentFailure::Provider(failure)) => fail(
            StatusCode::BAD_GATEWAY,
            "Sign-in failed",
            &format!(
                "The provider did not exchange the authorization code for tokens: {}",
                failure.message
            ),
        ),
        Err(ConsentFailure::Reconfigured) => fail(
            StatusCode::CONFLICT,
            "Connection changed",
            "The connection or its provider was changed or deleted during the sign-in.",
        ),
    }
}

/// RFC 9207 §2.4: `iss` must be the issuer identifier of the server the request went to:
/// the provider's `issuer` when configured, else an URL with the authorization URL's origin.
fn issuer_matches(provider: &ProviderRecord, iss: &str) -> bool {
    if let Some(expected) = &provider.issuer {
        return iss == expected;
    }
    let origin = |raw: &str| url::Url::parse(raw).ok().map(|u| u.origin());
    match (
        origin(iss),
        provider.authorization_url.as_deref().map(origin),
    ) {
        (Some(a), Some(Some(b))) => a.is_tuple() && a == b,
        _ => false,
    }
}

/// A provider's text, made safe to show: printable, bounded.
fn printable(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(300).collect()
}
