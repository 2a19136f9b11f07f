//! Signing in with the admin token, and out.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::form::Form;
use super::html::{self, esc};
use super::{see_other, session, Ctx};
use crate::clock::unix_now;
use crate::state::AppState;

fn sign_in_page(status: StatusCode, message: Option<&str>) -> Response {
    let notice = message
        .map(|m| html::notice("error", m))
        .unwrap_or_default();
    html::page(
        status,
        "Sign in",
        None,
        &format!(
            "{notice}<form method=\"post\" action=\"/console/sign-in\" class=\"box\">\
             <label>Admin token<input type=\"password\" name=\"admin_token\" \
             autocomplete=\"current-password\" required autofocus>\
             <small>The token the control plane was started with (CREDMGR_ADMIN_TOKEN). It is \
             not kept in the browser: a signed session cookie is.</small></label>\
             <button type=\"submit\">Sign in</button></form>"
        ),
    )
}

pub async fn form() -> Response {
    sign_in_page(StatusCode::OK, None)
}

pub async fn sign_in(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    // No session yet, so no CSRF token: the origin check alone keeps other sites from
    // signing a browser in (they would need the admin token anyway).
    if crate::consent::from_own_page(&headers, &state.consent.public_url).is_err() {
        let at = format!("{}/console/sign-in", state.consent.base());
        return sign_in_page(
            StatusCode::FORBIDDEN,
            Some(&format!(
                "Sign in from the console's own page, at {at} (CREDMGR_PUBLIC_URL)."
            )),
        );
    }
    let form = Form::parse(&body);
    if !state.credentials.is_admin(form.get("admin_token")) {
        tracing::warn!("console sign-in with a wrong admin token");
        return sign_in_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token this control plane was started with."),
        );
    }
    let (value, _) = session::issue(&state.credentials.console_session_key(), unix_now());
    tracing::info!("console sign-in");
    with_cookie(
        see_other("/console/providers"),
        &session::set_cookie(&value, session::LIFETIME_SECS, state.consent.secure()),
    )
}

pub async fn sign_out(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(refused) = ctx.form(&headers, &body) {
        return refused.into_response();
    }
    let r = html::page(
        StatusCode::OK,
        "Signed out",
        None,
        &format!(
            "<p>{}</p><p><a href=\"/console/sign-in\">Sign in again</a></p>",
            esc("The session cookie is cleared in this browser.")
        ),
    );
    with_cookie(r, &session::set_cookie("", 0, ctx.state.consent.secure()))
}

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(mut v) = HeaderValue::from_str(cookie) {
        v.set_sensitive(true);
        r.headers_mut().insert(SET_COOKIE, v);
    }
    r
}
