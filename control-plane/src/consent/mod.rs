//! The consent flow of authorization-code connections (RFC 6749 §4.1 with PKCE, RFC 7636).
//!
//! 1. An operator asks for a login link (`POST .../login-links`, management API) with a
//!    post-login redirect URL from the provider's allowlist. The link carries 256 random bits;
//!    only their SHA-256 is stored. It is single-use and expires.
//! 2. The user opens it: an interstitial page says which provider account is about to be
//!    connected to which connection, with a Continue button, so that a link sent by someone
//!    else does not connect the victim's account without a look.
//! 3. Continue (a POST), accepted only from the interstitial itself (`Sec-Fetch-Site` and
//!    `Origin` checked against the public URL: no other site can press it), uses the link up and redirects to the provider with a fresh `state`
//!    (single use, ten minutes, bound to this browser by a cookie), a PKCE S256 challenge and
//!    the provider's extra parameters.
//! 4. The provider redirects to `/oauth2/callback`. The state is consumed whatever happens;
//!    the cookie must match it, `iss` must be the provider's (RFC 9207; required when the
//!    provider's `issuer` is known, unless its preset says it never sends one), and the
//!    code is exchanged. Only a successful exchange stores anything: the tokens, replacing
//!    the connection's old ones. The user lands on the post-login URL with the outcome.
//!
//! Each step is a file: `links.rs` (1), `authorize.rs` (2 and 3), `callback.rs` (4);
//! `helpers.rs` holds what they share and `page.rs` the HTML. This file keeps the settings
//! and the routes.

mod authorize;
mod callback;
mod helpers;
mod links;
pub mod page;
pub mod settings;

use axum::routing::{get, post};
use axum::Router;

use crate::state::AppState;

pub use helpers::from_own_page;
pub use links::new_login_link;
pub use settings::{Settings, CALLBACK_PATH};

use authorize::{continue_, interstitial};
use callback::callback;
use links::create_login_link;

/// How long the user has between Continue and the provider's redirect back.
const CONSENT_TTL_SECS: i64 = 600;

/// The operations of the consent flow, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(
    links::create_login_link,
    authorize::interstitial,
    authorize::continue_,
    callback::callback
))]
pub struct Api;

/// Management route: `POST /v1/providers/{p}/connections/{c}/login-links`.
pub fn management_routes() -> Router<AppState> {
    Router::new().route(
        "/v1/providers/{provider_id}/connections/{connection_id}/login-links",
        post(create_login_link),
    )
}

/// Where login links live: this prefix, then the link's secret.
pub const LOGIN_PATH_PREFIX: &str = "/oauth2/login/";

/// Browser routes, without the admin token: the interstitial and the callback.
pub fn browser_routes() -> Router<AppState> {
    Router::new()
        .route("/oauth2/login/{link}", get(interstitial).post(continue_))
        .route(CALLBACK_PATH, get(callback))
}
