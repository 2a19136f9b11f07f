use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::harness::*;
use crate::presets::{authorize, LANDING};

/// The browser's callback with `query` and the login's cookie.
async fn callback(h: &Harness, query: &str, cookie: &str) -> Reply {
    h.raw(
        Request::get(format!("/oauth2/callback?{query}"))
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn consent_provider(h: &Harness) {
    let mut body = provider_body("https://idp.example/token");
    body["grant_type"] = json!("authorization_code");
    body["display_name"] = json!("<script>alert(1)</script> IdP");
    body["authorization_url"] = json!("https://idp.example/authorize?tenant=t1");
    body["authorize_params"] = json!({"access_type": "offline"});
    body["allowed_redirect_urls"] = json!([LANDING]);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(
        r.json["refresh_url"], "https://idp.example/token",
        "defaults to token_url"
    );
    let r = h.connection("gh", "alice").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
}

async fn link(h: &Harness, body: serde_json::Value) -> Reply {
    h.admin(
        Method::POST,
        "/v1/providers/gh/connections/alice/login-links",
        Some(body),
    )
    .await
}

#[tokio::test]
async fn login_links_are_checked_and_lead_through_the_interstitial_to_the_provider() {
    let h = Harness::new().await;
    consent_provider(&h).await;

    let r = link(&h, json!({"post_login_redirect_url": LANDING, "extra": 1})).await;
    assert_invalid_field(&r, "extra");
    let r = link(
        &h,
        json!({"post_login_redirect_url": "https://evil.example/"}),
    )
    .await;
    assert_invalid_field(&r, "post_login_redirect_url");
    let r = h
        .call(
            Method::POST,
            "/v1/providers/gh/connections/alice/login-links",
            Some("wrong"),
            Some(json!({"post_login_redirect_url": LANDING})),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");

    let r = link(&h, json!({"post_login_redirect_url": LANDING})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let login_url = r.json["login_url"].as_str().unwrap().to_owned();
    let path = login_url
        .strip_prefix("http://127.0.0.1:0")
        .unwrap_or_else(|| panic!("{login_url}"))
        .to_owned();
    assert!(path.starts_with("/oauth2/login/"), "{path}");

    // The interstitial: escaped, unframeable, says what is connected to what.
    let page = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.json.as_str().unwrap().to_owned();
    assert!(
        html.contains("&lt;script&gt;") && !html.contains("<script>"),
        "{html}"
    );
    assert!(
        html.contains("gh/alice") && html.contains("Continue"),
        "{html}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "same-origin");

    // Continue: to the provider with state, PKCE S256 and the extra parameters.
    let go = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER);
    let location = url::Url::parse(go.headers["location"].to_str().unwrap()).unwrap();
    assert_eq!(location.host_str(), Some("idp.example"));
    let q: std::collections::HashMap<_, _> = location.query_pairs().into_owned().collect();
    assert_eq!(q["tenant"], "t1");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], "credmgr-demo");
    assert_eq!(q["redirect_uri"], "http://127.0.0.1:0/oauth2/callback");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43);
    assert_eq!(q["access_type"], "offline");
    assert!(q["state"].len() >= 43);
    let cookie = go.headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("credmgr_consent_")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/oauth2/callback"),
        "{cookie}"
    );

    // The link works once.
    let again = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    let again = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    let unknown = h
        .raw(
            Request::get("/oauth2/login/nope")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    // The state and the code verifier are not stored in plaintext.
    h.assert_not_at_rest(&[&q["state"]]).await;

    // A callback without the browser's cookie is refused and stores nothing.
    let cb = format!("/oauth2/callback?code=x&state={}", q["state"]);
    let r = h.raw(Request::get(&cb).body(Body::empty()).unwrap()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "not_connected");
}

#[tokio::test]
async fn continue_from_another_sites_page_is_refused_and_spends_nothing() {
    let h = Harness::new().await;
    consent_provider(&h).await;
    let r = link(&h, json!({"post_login_redirect_url": LANDING})).await;
    let login_url = r.json["login_url"].as_str().unwrap().to_owned();
    let path = login_url
        .strip_prefix("http://127.0.0.1:0")
        .unwrap()
        .to_owned();
    let post = |headers: &[(&str, &str)]| {
        let mut b = Request::post(&path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Body::empty()).unwrap()
    };
    // An attacker's page auto-submitting a form to the login link it holds.
    for forged in [
        &[
            ("origin", "https://evil.example"),
            ("sec-fetch-site", "cross-site"),
        ][..],
        &[
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "same-site"),
        ],
        &[("origin", "null")],
        &[("sec-fetch-site", "cross-site")],
    ] {
        let r = h.raw(post(forged)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{forged:?}: {}", r.json);
        assert!(r.headers.get("location").is_none());
    }
    // The link was not spent: the user's own Continue still works.
    let r = h
        .raw(post(&[
            ("origin", "http://127.0.0.1:0"),
            ("sec-fetch-site", "same-origin"),
        ]))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.json);
}

#[tokio::test]
async fn login_links_are_only_for_authorization_code_providers() {
    let h = Harness::new().await;
    h.provider("cc", &closed_port_url()).await;
    h.connection("cc", "svc").await;
    let r = h
        .admin(
            Method::POST,
            "/v1/providers/cc/connections/svc/login-links",
            Some(json!({"post_login_redirect_url": LANDING})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    let mut body = provider_body("https://idp.example/token");
    body["grant_type"] = json!("authorization_code");
    let r = h.admin(Method::PUT, "/v1/providers/ac", Some(body)).await;
    assert_invalid_field(&r, "authorization_url");
}

#[tokio::test]
async fn a_provider_change_that_drops_tokens_says_consent_is_required_again() {
    let h = Harness::new().await;
    consent_provider(&h).await;
    let now = now();
    h.store_token("gh", "alice", "old-token", now, now + 1800, now + 3600)
        .await;
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    let mut body = h.provider_to_resend("gh").await;
    body["scopes"] = json!(["api:read", "api:write"]);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "not_connected", "{conn}");
    assert_eq!(conn["error"]["code"], "consent_required", "{conn}");
    assert!(conn["token_expires_at"].is_null(), "{conn}");
}

#[tokio::test]
async fn an_expired_state_is_refused_even_from_the_right_browser() {
    let h = Harness::new().await;
    consent_provider(&h).await;
    let (_, cookie, state) = authorize(&h, "gh", "alice").await;
    // Ten minutes pass: move the stored state's expiry into the past.
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(state.as_bytes()).to_vec();
    let mut stored = h
        .state
        .store
        .take_consent_state(&hash)
        .await
        .unwrap()
        .unwrap();
    stored.expires_at = now() - 1;
    h.state.store.insert_consent_state(&stored).await.unwrap();

    let cb = Request::get(format!("/oauth2/callback?code=x&state={state}"))
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    let r = h.raw(cb).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.json.as_str().unwrap().contains("expired"), "{}", r.json);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "not_connected");
}

#[tokio::test]
async fn iss_is_required_when_the_providers_issuer_is_known() {
    let h = Harness::new().await;
    consent_provider(&h).await;
    let mut body = h.provider_to_resend("gh").await;
    body["issuer"] = json!("https://idp.example");
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    for iss in ["", "&iss=https%3A%2F%2Fevil.example"] {
        let (_, cookie, state) = authorize(&h, "gh", "alice").await;
        let r = callback(&h, &format!("code=x&state={state}{iss}"), &cookie).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{iss}: {}", r.json);
        assert!(r.json.as_str().unwrap().contains("RFC 9207"), "{}", r.json);
    }
    // With the right iss the code goes to the token endpoint (unreachable here: 502).
    let (_, cookie, state) = authorize(&h, "gh", "alice").await;
    let q = format!("code=x&state={state}&iss=https%3A%2F%2Fidp.example");
    let r = callback(&h, &q, &cookie).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.json);
}

#[tokio::test]
async fn removing_a_post_login_url_withdraws_the_links_and_sign_ins_that_use_it() {
    let h = Harness::new().await;
    consent_provider(&h).await;
    // A sign-in past Continue, and a link not yet opened.
    let (_, cookie, state) = authorize(&h, "gh", "alice").await;
    let r = link(&h, json!({"post_login_redirect_url": LANDING})).await;
    let path = r.json["login_url"]
        .as_str()
        .unwrap()
        .strip_prefix("http://127.0.0.1:0")
        .unwrap()
        .to_owned();
    let mut body = h.provider_to_resend("gh").await;
    body["allowed_redirect_urls"] = json!(["https://app.example/other"]);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    let page = h
        .raw(Request::get(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.json);
    let go = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(go.status, StatusCode::CONFLICT, "{}", go.json);
    assert!(go.headers.get("location").is_none());
    let r = callback(&h, &format!("code=x&state={state}"), &cookie).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.json);
    assert!(r.headers.get("location").is_none());
    assert!(
        r.json.as_str().unwrap().contains("no longer allowed"),
        "{}",
        r.json
    );
}
