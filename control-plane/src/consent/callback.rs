//! Step 4 of the consent flow: the provider redirects the browser to `/oauth2/callback`.
//! The state is consumed whatever happens; the cookie must match it, `iss` must be the
//! provider's (RFC 9207): required when the provider's issuer is known, checked when sent,
//! and the code is exchanged. Only a successful exchange
//! stores anything; the user lands on the post-login URL with the outcome.

use std::collections::HashMap;

use axum::extract::{RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use secrecy::SecretString;
use subtle::ConstantTimeEq;

use super::helpers::{cookie_name, cookie_value, hex, redirect, sha256};
use super::page;
use crate::clock::unix_now;
use crate::crypto::Aad;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::ProviderRecord;
use crate::tokens::ConsentFailure;

/// The redirect URI registered at authorization-code providers (RFC 6749 §4.1.2): checks
/// `state`, its cookie and `iss`, exchanges the code, stores the tokens and redirects to the
/// post-login URL with the outcome.
#[utoipa::path(
    get,
    path = "/oauth2/callback",
    operation_id = "oauth2_callback",
    tag = "consent",
    params(
        ("state" = Option<String>, Query, description = "The state sent to the provider"),
        ("code" = Option<String>, Query, description = "The authorization code"),
        ("iss" = Option<String>, Query, description = "The provider's issuer (RFC 9207)"),
        ("error" = Option<String>, Query, description = "The provider's error code"),
        ("error_description" = Option<String>, Query, description = "The provider's error text")
    ),
    responses(
        (
            status = 303,
            description = "To the post-login URL, with the outcome",
            headers(("Location" = String))
        ),
        (
            status = 400,
            description = "Unknown or used state, wrong browser, wrong issuer, or an error from the provider",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 404,
            description = "The connection is gone",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 409,
            description = "The connection changed meanwhile",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (
            status = 502,
            description = "The provider did not exchange the code",
            content_type = "text/html; charset=utf-8",
            body = String
        ),
        (status = 500, description = "`internal_error`", body = credmgr_common::ErrorBody),
        (status = 503, description = "`store_unavailable`", body = credmgr_common::ErrorBody)
    )
)]
pub(super) async fn callback(
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
    let clear = state
        .consent
        .consent_cookie(&cookie_name(&state_hash), "", 0);
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
    if !provider
        .allowed_redirect_urls
        .contains(&consent.redirect_url)
    {
        // Removed from the allowlist since Continue: the sign-in is withdrawn, no code is
        // exchanged and the browser is not sent there.
        tracing::warn!(provider = %p, connection = %c,
            "consent callback refused: its post-login URL was removed from allowed_redirect_urls");
        return fail(
            StatusCode::CONFLICT,
            "Sign-in withdrawn",
            "The page this sign-in would send you back to is no longer allowed for this \
             provider, so the sign-in was not completed.",
        );
    }
    if let Err(why) = check_iss(&provider, params.get("iss").map(String::as_str)) {
        tracing::warn!(provider = %p, connection = %c,
            "consent callback refused by the RFC 9207 issuer check: {why}");
        return fail(
            StatusCode::BAD_REQUEST,
            "Sign-in failed",
            &format!(
                "The answer cannot be shown to come from the authorization server this sign-in \
                 was sent to (RFC 9207 issuer check): {why}."
            ),
        );
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

/// RFC 9207 §2.4: an `iss` that is sent must be the provider's; when the provider's issuer is
/// known (configured, or from its preset) `iss` must be sent, unless the preset says the
/// provider never sends it.
fn check_iss(provider: &ProviderRecord, iss: Option<&str>) -> Result<(), &'static str> {
    match iss {
        Some(iss) if issuer_matches(provider, iss) => Ok(()),
        Some(_) => Err("it names another issuer"),
        None if provider.issuer.is_some()
            && !provider
                .identity_provider
                .preset()
                .quirks
                .omits_authorization_response_iss =>
        {
            Err("it has no `iss` parameter, which this provider sends")
        }
        None => Ok(()),
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
