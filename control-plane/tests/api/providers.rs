//! Providers through the management API: created, read, replaced, listed and deleted; their
//! secrets never shown nor stored in plaintext; and a replacement that keeps the connections'
//! tokens only while they still fit.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn providers_are_created_read_replaced_listed_and_deleted() {
    let h = Harness::new().await;
    let url = "https://idp.example/oauth2/token";
    let r = h.provider("gh", url).await;
    let created = r.json.clone();
    assert_eq!(created["id"], "gh");
    assert_eq!(created["client_id"], "credmgr-demo");
    assert_eq!(created["client_secret"], json!({"set": true}));
    assert_eq!(created["scopes"], json!(["api:read"]));
    assert_eq!(created["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        created["token_params"],
        json!({"audience": "https://api.example"})
    );
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));

    let r = h.admin(Method::GET, "/v1/providers/gh", None).await;
    assert_eq!((r.status, &r.json), (StatusCode::OK, &created));

    // Replace without a secret keeps the stored one.
    let mut body = provider_body_without(url, "client_secret");
    body["display_name"] = json!("Renamed");
    body["token_endpoint_auth_method"] = json!("client_secret_post");
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["display_name"], "Renamed");
    assert_eq!(r.json["created_at"], created["created_at"]);
    let stored = h.state.store.get_provider("gh").await.unwrap().unwrap();
    let secret = h
        .state
        .keyring
        .decrypt_string(
            &credmgr_control_plane::crypto::Aad::provider_client_secret("gh"),
            &stored.client_secret,
        )
        .unwrap();
    assert_eq!(secrecy::ExposeSecret::expose_secret(&secret), CLIENT_SECRET);

    // The kept secret does not follow the token or refresh URL to another origin: an admin
    // who could otherwise point it at their own host must send the secret again.
    for (field, to) in [
        ("token_url", "https://attacker.example/token"),
        ("refresh_url", "https://attacker.example/refresh"),
        ("token_url", "https://idp.example:8443/oauth2/token"),
    ] {
        let mut body = provider_body_without(url, "client_secret");
        body[field] = json!(to);
        let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
        assert_invalid_field(&r, "client_secret");
        assert!(
            r.json["error"]["message"].as_str().unwrap().contains(field),
            "{}",
            r.json
        );
    }
    // Another path on the same origin keeps it; with the secret, any origin goes.
    let mut body = provider_body_without(url, "client_secret");
    body["refresh_url"] = json!(format!("{url}/refresh"));
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let mut body = provider_body(url);
    body["token_url"] = json!("https://idp.example/token");
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);

    h.provider("azure", url).await;
    let r = h.admin(Method::GET, "/v1/providers", None).await;
    assert_eq!(ids(&r), ["azure", "gh"]);

    let r = h.admin(Method::DELETE, "/v1/providers/gh", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    for method in [Method::GET, Method::DELETE] {
        let r = h.admin(method, "/v1/providers/gh", None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn secrets_never_leave_and_are_encrypted_at_rest() {
    let h = Harness::new().await;
    h.provider("gh", &closed_port_url()).await;
    let conn_secret = "connection-own-secret-e3b0c442";
    let token = "access-token-value-98fc1c14";
    h.admin(
        Method::PUT,
        "/v1/providers/gh/connections/alice",
        Some(json!({"client_id": "own", "client_secret": conn_secret})),
    )
    .await;
    h.store_token("gh", "alice", token, now(), now() + 3000, now() + 3600)
        .await;
    for path in [
        "/v1/providers/gh",
        "/v1/providers",
        "/v1/providers/gh/connections",
        "/v1/providers/gh/connections/alice",
    ] {
        h.admin(Method::GET, path, None).await;
    }
    let body = provider_body_without("https://idp.example/token", "client_secret");
    h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;

    for text in h.seen.lock().unwrap().iter() {
        for secret in [CLIENT_SECRET, conn_secret, token] {
            assert!(
                !text.contains(secret),
                "a response contains a secret: {text}"
            );
        }
    }
    // The database files, WAL included, hold no secret in plaintext...
    h.assert_not_at_rest(&[CLIENT_SECRET, conn_secret, token])
        .await;
    // ...while the non-secret configuration is there: the check did look at the data.
    let files = h.db_contents().await;
    let found_client_id = files.iter().any(|(_, bytes)| holds(bytes, "credmgr-demo"));
    let names: Vec<&String> = files.iter().map(|(name, _)| name).collect();
    assert!(found_client_id, "{names:?}");
}

#[tokio::test]
async fn replacing_a_provider_drops_tokens_only_when_they_no_longer_fit() {
    let h = Harness::new().await;
    let url = closed_port_url();
    h.provider("gh", &url).await;
    h.connection("gh", "alice").await;
    h.store_token("gh", "alice", "tok", now(), now() + 3000, now() + 3600)
        .await;

    // A new display name keeps the token.
    let mut body = provider_body_without(&url, "client_secret");
    body["display_name"] = json!("New name");
    let r = h
        .admin(Method::PUT, "/v1/providers/gh", Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected");
    assert!(conn["token_expires_at"].is_string());
    assert_eq!(h.runtime("gh", "alice").await.json["access_token"], "tok");

    // Re-sending the same configuration, secret included, keeps it too.
    let r = h
        .admin(Method::PUT, "/v1/providers/gh", Some(provider_body(&url)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h.has_token("gh", "alice").await);

    // A new secret drops it.
    let mut new_secret = provider_body(&url);
    new_secret["client_secret"] = json!("a-rotated-client-secret-1234");
    h.admin(Method::PUT, "/v1/providers/gh", Some(new_secret))
        .await;
    assert!(!h.has_token("gh", "alice").await);
    h.store_token("gh", "alice", "tok", now(), now() + 3000, now() + 3600)
        .await;

    // Other scopes: the token is dropped, the connection must fetch again.
    body["scopes"] = json!(["api:write"]);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "not_connected");
    assert_eq!(conn["token_expires_at"], json!(null));
    assert!(!h.has_token("gh", "alice").await);
}
