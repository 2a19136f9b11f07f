//! What the control plane logs at `debug`, the most a deployment turns on: the request log
//! names routes, never the URIs that carry login-link secrets and the callback's `code` and
//! `state`.
//!
//! A test binary of its own: the log is captured by the process's one global subscriber,
//! which the API tests, running on many threads, would share.

// clippy.toml allows these in `#[test]` functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

#[path = "api/fixtures.rs"]
mod fixtures;
#[path = "api/harness.rs"]
mod harness;
#[path = "api/pg.rs"]
mod pg;

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::harness::*;

const LANDING: &str = "https://app.example/after-consent";

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn at_debug_level_no_login_link_code_or_state_is_logged() {
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(log.clone())
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let h = Harness::new().await;
    let mut body = provider_body("https://idp.example/token");
    body["grant_type"] = json!("authorization_code");
    body["authorization_url"] = json!("https://idp.example/authorize");
    body["allowed_redirect_urls"] = json!([LANDING]);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    h.connection("gh", "alice").await;

    // A link opened (GET), then a whole sign-in up to the callback.
    let r = h
        .admin(
            Method::POST,
            "/v1/providers/gh/connections/alice/login-links",
            Some(json!({"post_login_redirect_url": LANDING})),
        )
        .await;
    let login_url = r.json["login_url"].as_str().unwrap().to_owned();
    let link_secret = login_url.rsplit('/').next().unwrap().to_owned();
    let path = format!("/oauth2/login/{link_secret}");
    let page = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let r = h
        .admin(
            Method::POST,
            "/v1/providers/gh/connections/alice/login-links",
            Some(json!({"post_login_redirect_url": LANDING})),
        )
        .await;
    let path = url::Url::parse(r.json["login_url"].as_str().unwrap())
        .unwrap()
        .path()
        .to_owned();
    let go = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.json);
    let location = url::Url::parse(go.headers["location"].to_str().unwrap()).unwrap();
    let state = location
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    let cookie = go.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    let code = "the-authorization-code-4f1c2a";
    let cb = Request::get(format!("/oauth2/callback?code={code}&state={state}"))
        .header("cookie", &cookie)
        .body(Body::empty())
        .unwrap();
    h.raw(cb).await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let cookie_value = cookie.split_once('=').unwrap().1;
    for (what, secret) in [
        ("login link", link_secret.as_str()),
        ("state", state.as_str()),
        ("code", code),
        ("consent cookie", cookie_value),
    ] {
        assert!(
            !text.contains(secret),
            "the {what} is in the debug log:\n{text}"
        );
    }
    assert!(
        text.contains("/oauth2/login/{link}") && text.contains("/oauth2/callback"),
        "the request log names the routes: {text}"
    );
}
