use std::time::Duration;

use axum::http::{Method, StatusCode};
use credmgr_control_plane::tokens::RETRY_AFTER_FAILURE_SECS;
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn the_runtime_api_needs_a_gateway_key() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    let path = credmgr_common::runtime::token_path("gh", "alice");
    for token in [None, Some("wrong-key"), Some(ADMIN)] {
        let r = h.call(Method::GET, &path, token, None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(r.headers["www-authenticate"], "Bearer");
    }
    // The runtime key opens nothing on the management API.
    let r = h
        .call(Method::GET, "/v1/providers", Some(GATEWAY_KEY), None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
}

#[tokio::test]
async fn unknown_connections_are_404() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    // 404 before 403: neither has a policy, and the answer says which part is missing.
    let r = h.runtime("gh", "nobody").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        r.json["error"]["message"],
        "connection `nobody` of provider `gh` does not exist"
    );
    let r = h.runtime("nope", "alice").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(r.json["error"]["message"], "provider `nope` does not exist");
    let r = h
        .call(
            Method::GET,
            "/runtime/v1/providers/gh/connections/bad%20id/token",
            Some(GATEWAY_KEY),
            None,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test]
async fn a_fresh_stored_token_is_served_without_asking_the_provider() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    let (t0, refresh, expires) = h.store_fresh_token("gh", "alice", "stored-token").await;

    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.headers["cache-control"], "no-store");
    // The gateway asks again after half the access refresh interval (30 s), well before
    // the token's own refresh point, so that policy changes reach it in time.
    let refresh_at = r.json["refresh_at"].as_i64().unwrap();
    assert!(
        (t0 + 15..=now() + 15).contains(&refresh_at) && refresh_at < refresh,
        "{}",
        r.json
    );
    assert_eq!(
        r.json,
        json!({
            "access_token": "stored-token",
            "token_type": "Bearer",
            "expires_at": expires,
            "refresh_at": refresh_at,
            "claims": {"scope": "api:read", "token_type": "Bearer"},
            "access_policies": [{"kind": "gateway", "name": "edge-1"}]
        })
    );
    let token: credmgr_common::RuntimeToken = serde_json::from_value(r.json).unwrap();
    assert_eq!(token.access_token, "stored-token");

    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="hit"} 1"#);
    // Only the connection's creation asked the provider.
    h.assert_metric(r#"outcome="provider_unreachable"} 1"#);
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected");
    assert_eq!(conn["error"], json!(null));
}

#[tokio::test]
async fn a_due_token_still_valid_is_served_when_the_provider_is_down() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    let (t0, refresh, expires) = (now() - 3000, now() - 120, now() + 600);
    h.store_token("gh", "alice", "old-but-valid", t0, refresh, expires)
        .await;

    let before = now();
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "old-but-valid");
    assert_eq!(r.json["expires_at"], expires);
    let retry = r.json["refresh_at"].as_i64().unwrap();
    assert!(
        retry >= before && retry <= now() + RETRY_AFTER_FAILURE_SECS,
        "{retry}"
    );

    // The stored token is untouched; the failure is recorded on the connection.
    let stored = h.stored_token("gh", "alice").await;
    assert_eq!(
        (stored.obtained_at, stored.refresh_at, stored.expires_at),
        (t0, refresh, expires)
    );
    let conn = h.shown_connection("gh", "alice").await;
    assert_eq!(conn["status"], "connected", "{conn}");
    assert_eq!(conn["error"]["code"], "provider_unreachable");
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="stale"} 1"#);
}

#[tokio::test]
async fn an_expired_token_is_never_served() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    h.store_token(
        "gh",
        "alice",
        "expired",
        now() - 4000,
        now() - 1000,
        now() - 400,
    )
    .await;
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "provider_unreachable");
    assert!(!r.json.to_string().contains("expired\""));
    assert_eq!(h.shown_connection("gh", "alice").await["status"], "error");
}

#[tokio::test]
async fn authorization_code_connections_need_consent() {
    let h = Harness::new().await;
    let mut body = provider_body("https://idp.example/token");
    body["grant_type"] = json!("authorization_code");
    body["identity_provider"] = json!("oauth2-pkce");
    body["authorization_url"] = json!("https://idp.example/authorize");
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = h.connection("gh", "alice").await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.json["status"], "not_connected");
    assert_eq!(r.json["error"]["code"], "consent_required", "{}", r.json);
    assert_error_mentions(&r, "login-links");
    assert_error(
        &h.runtime("gh", "alice").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "consent_required",
    );
    // No token request was made.
    assert!(!h
        .metrics()
        .contains("credmgr_provider_token_requests_total{"));
}

/// A provider that accepts connections and never answers: requests time out.
fn silent_provider() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    (listener, url)
}

#[tokio::test]
async fn concurrent_requests_share_one_fetch() {
    let h = std::sync::Arc::new(Harness::with_timeout(Duration::from_millis(800)).await);
    let (_listener, url) = silent_provider();
    h.provider("gh", &url).await;
    let r = h.connection("gh", "alice").await;
    assert_eq!(
        r.json["error"]["code"], "provider_unreachable",
        "{}",
        r.json
    );
    assert_error_mentions(&r, "did not answer");

    let requests: Vec<_> = (0..5)
        .map(|_| {
            let h = h.clone();
            tokio::spawn(async move { h.runtime("gh", "alice").await })
        })
        .collect();
    for r in requests {
        assert_error(
            &r.await.unwrap(),
            StatusCode::SERVICE_UNAVAILABLE,
            "provider_unreachable",
        );
    }
    // One request for the connection's creation; the five concurrent runtime requests share
    // its remembered failure (the connection backs off) instead of asking again.
    h.assert_metric(r#"outcome="provider_unreachable"} 1"#);
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="error"} 5"#);
}

#[tokio::test]
async fn unreachable_providers_all_get_one_message_that_maps_no_ports() {
    let h = Harness::with_timeout(Duration::from_millis(800)).await;
    // A closed port, a port that never answers, one that hangs up at once.
    let (_silent, silent) = silent_provider();
    let hangs_up = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_up_url = format!("http://{}/token", hangs_up.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((socket, _)) = hangs_up.accept().await {
            drop(socket);
        }
    });
    let mut messages = std::collections::BTreeSet::new();
    for (i, url) in [closed_port_url(), silent, hang_up_url].iter().enumerate() {
        let p = format!("p{i}");
        h.provider(&p, url).await;
        let r = h.connection(&p, "alice").await;
        assert_eq!(
            r.json["error"]["code"], "provider_unreachable",
            "{}",
            r.json
        );
        let message = r.json["error"]["message"].as_str().unwrap();
        messages.insert(message.replace(url.as_str(), "URL"));
    }
    assert_eq!(messages.len(), 1, "{messages:#?}");
}
