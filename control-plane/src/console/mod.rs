//! The web console at `/console`: server-rendered pages over the management API, for an
//! operator signed in with the admin token.
//!
//! - Sign-in (`auth.rs`): the admin token, once, in a form; the browser then holds a signed
//!   session cookie that contains no token (`session.rs`).
//! - Every form carries the session's CSRF token, and every POST must also come from the
//!   console's own pages (`Sec-Fetch-Site`/`Origin`, the consent pages' check).
//! - Pages answer with the consent pages' security headers and a stricter CSP: the
//!   console's own stylesheet and one small script (the login link's Copy button), nothing
//!   inline (`html.rs`, `assets.rs`).
//! - What the pages show and change goes through the management API's own handlers, called
//!   in process (`api.rs`): the same validation and the same error messages as the REST API
//!   and the CLI.

mod access;
mod api;
mod assets;
mod auth;
mod connections;
mod form;
mod html;
mod keys;
mod providers;
pub mod session;

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::clock::unix_now;
use crate::state::AppState;

pub use api::Api;
use form::Form;
use session::Session;

/// The console's routes; `state` backs the in-process management API its pages use.
pub fn routes(state: AppState) -> Router<AppState> {
    let api = Api::new(state);
    Router::new()
        .route(
            "/console",
            get(|| async { see_other("/console/providers") }),
        )
        .route(
            "/console/",
            get(|| async { see_other("/console/providers") }),
        )
        .route("/console/sign-in", get(auth::form).post(auth::sign_in))
        .route("/console/sign-out", post(auth::sign_out))
        .route("/console/assets/console.css", get(assets::css))
        .route("/console/assets/console.js", get(assets::js))
        .route(
            "/console/providers",
            get(providers::list).post(providers::create),
        )
        .route("/console/providers/new", get(providers::new_form))
        .route("/console/providers/{provider}", get(providers::show))
        .route(
            "/console/providers/{provider}/connections",
            post(connections::create),
        )
        .route(
            "/console/providers/{provider}/connections/{connection}",
            get(connections::show),
        )
        .route(
            "/console/providers/{provider}/connections/{connection}/login-link",
            post(connections::login_link),
        )
        .route(
            "/console/providers/{provider}/connections/{connection}/policies",
            post(access::add_policy),
        )
        .route("/console/connections", get(connections::list))
        .route(
            "/console/issuers",
            get(access::issuers).post(access::add_issuer),
        )
        .route("/console/keys", get(keys::page))
        .layer(Extension(api))
}

/// A 303 to `location` (a console path).
pub(crate) fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// A signed-in request: the API, the session and its CSRF token. As an extractor it sends
/// a browser without a valid session to the sign-in page.
pub(crate) struct Ctx {
    pub api: Api,
    pub state: AppState,
    session: Session,
    key: [u8; 32],
}

impl Ctx {
    /// The CSRF token for this session's forms.
    pub fn csrf(&self) -> String {
        self.session.csrf(&self.key)
    }

    /// A POSTed form, accepted only from the console's own pages with this session's CSRF
    /// token; otherwise the 403 page.
    pub fn form(&self, headers: &HeaderMap, body: &[u8]) -> Result<Form, Refused> {
        let form = Form::parse(body);
        let own = crate::consent::from_own_page(headers, &self.state.consent.public_url);
        if let Err(why) = own {
            tracing::warn!(reason = %why, "console form from another site refused (CSRF)");
            return Err(self.refused());
        }
        if !self.session.csrf_ok(&self.key, form.get("csrf")) {
            tracing::warn!("console form without this session's CSRF token refused");
            return Err(self.refused());
        }
        Ok(form)
    }

    fn refused(&self) -> Refused {
        Refused(format!("{}/console", self.state.consent.base()))
    }

    /// A page for this session.
    pub fn page(&self, status: StatusCode, title: &str, body: &str) -> Response {
        html::page(status, title, Some(&self.csrf()), body)
    }
}

/// A form refused by the CSRF checks (with the console's own address); answers the 403 page.
pub(crate) struct Refused(String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        html::page(
            StatusCode::FORBIDDEN,
            "Request refused",
            None,
            &format!(
                "<p>This form was not sent from a console page of this session, so it was \
                 refused (cross-site request forgery protection). Open the console at \
                 <a href=\"{url}\">{url}</a> (CREDMGR_PUBLIC_URL), reload the page and try \
                 again.</p>",
                url = html::esc(&self.0)
            ),
        )
    }
}

/// The session cookie's value in a request.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == session::COOKIE)
        .map(|(_, v)| v.trim())
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = state.credentials.console_session_key();
        let session = session_cookie(&parts.headers)
            .and_then(|v| session::verify(&key, v, unix_now()))
            .ok_or_else(|| see_other("/console/sign-in"))?;
        let api = parts
            .extensions
            .get::<Api>()
            .cloned()
            .ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
        Ok(Ctx {
            api,
            state: state.clone(),
            session,
            key,
        })
    }
}
