//! The provider catalogue through the API: provider types, providers made from presets and
//! their parameters, and the authorization requests they lead to. The helpers here serve the
//! quirk tests too (`quirks.rs`).

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

pub(crate) const LANDING: &str = "https://app.example/connected";

pub(crate) fn preset_body(identity_provider: &str, extra: Value) -> Value {
    let mut body = json!({
        "identity_provider": identity_provider,
        "client_id": "client-1",
        "client_secret": CLIENT_SECRET,
        "allowed_redirect_urls": [LANDING],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

pub(crate) async fn create(h: &Harness, id: &str, body: Value) -> Reply {
    let r = h
        .admin(Method::PUT, &format!("/v1/providers/{id}"), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    r
}

/// Follows a login link through the interstitial; returns the authorization request and
/// the browser's cookie and state.
pub(crate) async fn authorize(h: &Harness, p: &str, c: &str) -> (url::Url, String, String) {
    let r = h
        .admin(
            Method::POST,
            &format!("/v1/providers/{p}/connections/{c}/login-links"),
            Some(json!({"post_login_redirect_url": LANDING})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let path = r.json["login_url"]
        .as_str()
        .unwrap()
        .strip_prefix("http://127.0.0.1:0")
        .unwrap()
        .to_owned();
    let go = h
        .raw(Request::post(&path).body(Body::empty()).unwrap())
        .await;
    assert_eq!(go.status, StatusCode::SEE_OTHER, "{}", go.json);
    let location = url::Url::parse(go.headers["location"].to_str().unwrap()).unwrap();
    let state = query(&location, "state").unwrap();
    let cookie = go.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    (location, cookie, state)
}

pub(crate) fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A whole consent: the provider sends the user back with `code`; the callback's answer.
pub(crate) async fn consent(h: &Harness, p: &str, c: &str) -> Reply {
    let (_, cookie, state) = authorize(h, p, c).await;
    let cb = Request::get(format!("/oauth2/callback?code=the-code&state={state}"))
        .header("cookie", cookie)
        .body(Body::empty())
        .unwrap();
    h.raw(cb).await
}

/// Moves the stored token's refresh time (and with `expired`, its expiry) into the past.
pub(crate) async fn make_due(h: &Harness, p: &str, c: &str, expired: bool) {
    let now = now();
    h.change_token(p, c, |t| {
        t.refresh_at = now - 1;
        if expired {
            t.expires_at = now - 1;
        }
    })
    .await;
}

/// Seconds until the stored access token and refresh token expire.
pub(crate) async fn left(h: &Harness, p: &str, c: &str) -> (i64, Option<i64>) {
    let t = h.stored_token(p, c).await;
    let now = now();
    (
        t.expires_at - now,
        t.refresh_token_expires_at.map(|at| at - now),
    )
}

#[tokio::test]
async fn provider_types_list_every_preset_with_the_parameters_a_form_needs() {
    let h = Harness::new().await;
    let r = h.admin(Method::GET, "/v1/provider-types", None).await;
    assert_eq!(r.status, StatusCode::OK);
    let ids: Vec<_> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    for id in [
        "oauth2",
        "oauth2-pkce",
        "entra-id",
        "google",
        "github",
        "github-app",
        "salesforce",
        "slack",
        "slack-user",
        "dropbox",
        "box",
        "zoom",
        "atlassian",
        "linkedin",
        "spotify",
        "okta",
        "auth0",
        "keycloak",
    ] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    let r = h
        .admin(Method::GET, "/v1/provider-types/keycloak", None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let params = r.json["parameters"].as_array().unwrap();
    assert_eq!(params[0]["name"], "base_url");
    assert_eq!(params[0]["required"], true);
    assert_eq!(params[0]["example"], "https://keycloak.example.com");
    assert!(params[0]["description"].as_str().unwrap().len() > 5);
    assert_eq!(params[1]["name"], "realm");
    assert_eq!(
        r.json["token_url"],
        "{base_url}/realms/{realm}/protocol/openid-connect/token"
    );
    let r = h
        .admin(Method::GET, "/v1/provider-types/github", None)
        .await;
    assert_eq!(
        r.json["quirks"]["form_encoded_response"], true,
        "{}",
        r.json
    );
    let r = h.admin(Method::GET, "/v1/provider-types/nope", None).await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = h.call(Method::GET, "/v1/provider-types", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn a_preset_fills_in_the_provider_from_its_parameters_and_names_what_is_wrong() {
    let h = Harness::new().await;
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/okta",
            Some(preset_body("okta", json!({}))),
        )
        .await;
    assert_invalid_field(&r, "parameters.domain");
    assert_error_mentions(&r, "dev-123456.okta.com");
    let okta = |params: Value| preset_body("okta", json!({ "parameters": params }));
    for (id, body, field) in [
        (
            "okta",
            okta(json!({"domain": "evil.example/x?"})),
            "parameters.domain",
        ),
        (
            "okta",
            okta(json!({"domain": "acme.okta.com", "realm": "x"})),
            "parameters.realm",
        ),
        (
            "gh",
            preset_body("github", json!({"grant_type": "client_credentials"})),
            "grant_type",
        ),
        ("x", preset_body("oauth2", json!({})), "token_url"),
    ] {
        let r = h
            .admin(Method::PUT, &format!("/v1/providers/{id}"), Some(body))
            .await;
        assert_invalid_field(&r, field);
    }
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/x",
            Some(preset_body("gitlab", json!({}))),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_error_mentions(&r, "provider-types");

    let body = preset_body("okta", json!({"parameters": {"domain": "acme.okta.com"}}));
    let r = create(&h, "okta", body).await;
    assert_eq!(r.json["identity_provider"], "okta");
    assert_eq!(r.json["parameters"], json!({"domain": "acme.okta.com"}));
    assert_eq!(r.json["grant_type"], "authorization_code");
    assert_eq!(
        r.json["authorization_url"],
        "https://acme.okta.com/oauth2/default/v1/authorize"
    );
    assert_eq!(
        r.json["token_url"],
        "https://acme.okta.com/oauth2/default/v1/token"
    );
    assert_eq!(r.json["issuer"], "https://acme.okta.com/oauth2/default");
    assert_eq!(r.json["scopes"], json!(["openid", "offline_access"]));
    assert_eq!(r.json["token_endpoint_auth_method"], "client_secret_basic");

    // Given fields win; re-sending what GET shows changes nothing.
    let body = preset_body(
        "entra-id",
        json!({"parameters": {"tenant": "common"}, "grant_type": "client_credentials",
               "scopes": ["api://x/.default"], "token_endpoint_auth_method": "client_secret_basic"}),
    );
    let r = create(&h, "entra", body).await;
    assert_eq!(
        r.json["token_url"],
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
    assert_eq!(
        r.json["authorization_url"],
        Value::Null,
        "not for client credentials"
    );
    assert_eq!(r.json["scopes"], json!(["api://x/.default"]));
    assert_eq!(r.json["token_endpoint_auth_method"], "client_secret_basic");
    let again = h.provider_to_resend("entra").await;
    let r = h
        .admin(Method::PUT, "/v1/providers/entra", Some(again))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json["token_url"],
        "https://login.microsoftonline.com/common/oauth2/v2.0/token"
    );
}

#[tokio::test]
async fn authorization_requests_carry_what_each_provider_needs_for_a_refresh_token() {
    let h = Harness::new().await;
    let cases = [
        (
            "google",
            json!({}),
            "scope",
            "openid email",
            vec![("access_type", "offline"), ("prompt", "consent")],
        ),
        (
            "dropbox",
            json!({}),
            "scope",
            "",
            vec![("token_access_type", "offline")],
        ),
        (
            "entra-id",
            json!({"parameters": {"tenant": "contoso.onmicrosoft.com"}}),
            "scope",
            "openid offline_access https://graph.microsoft.com/User.Read",
            vec![],
        ),
        (
            "atlassian",
            json!({}),
            "scope",
            "read:jira-user offline_access",
            vec![("audience", "api.atlassian.com"), ("prompt", "consent")],
        ),
        (
            "slack",
            json!({"scopes": ["chat:write", "channels:read"]}),
            "scope",
            "chat:write,channels:read",
            vec![],
        ),
        (
            "slack-user",
            json!({"scopes": ["users:read", "chat:write"]}),
            "user_scope",
            "users:read,chat:write",
            vec![],
        ),
    ];
    for (preset, extra, scope_param, scope, params) in cases {
        create(&h, preset, preset_body(preset, extra)).await;
        h.connection(preset, "alice").await;
        let (location, _, _) = authorize(&h, preset, "alice").await;
        let shown = location.to_string();
        let expected_host = h
            .admin(Method::GET, &format!("/v1/providers/{preset}"), None)
            .await;
        assert!(
            shown.starts_with(expected_host.json["authorization_url"].as_str().unwrap()),
            "{shown}"
        );
        assert_eq!(
            query(&location, scope_param).unwrap_or_default(),
            scope,
            "{preset}: {shown}"
        );
        for (k, v) in params {
            assert_eq!(query(&location, k).as_deref(), Some(v), "{preset}: {shown}");
        }
        assert_eq!(
            query(&location, "code_challenge_method").as_deref(),
            Some("S256")
        );
    }
}
