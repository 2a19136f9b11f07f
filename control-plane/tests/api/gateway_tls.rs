//! The router of the gateways' TLS listener: the runtime API authenticated by what the TLS
//! handshake proved (axum `ConnectInfo`, set by the listener and here by hand), never by a
//! gateway key; `/healthz`; and nothing of the management API. The handshake itself is
//! proven end to end (tests/e2e/tests/gateway_mtls).

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Request, StatusCode};
use credmgr_control_plane::gateway_tls::ClientCertificate;
use credmgr_control_plane::http::gateway_app;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use crate::harness::*;

async fn call(
    h: &Harness,
    path: &str,
    gateway: Option<&str>,
    bearer: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::get(path);
    if let Some(token) = bearer {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let mut request = request.body(Body::empty()).unwrap();
    if let Some(name) = gateway {
        request
            .extensions_mut()
            .insert(ConnectInfo(ClientCertificate {
                gateway: Some(name.to_owned()),
                remote: "127.0.0.1:1".parse().unwrap(),
            }));
    }
    let response = gateway_app(h.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_certificate_is_the_credential_and_a_gateway_key_alone_is_refused() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    h.store_fresh_token("gh", "alice", "stored-token").await;
    let path = credmgr_common::runtime::token_path("gh", "alice");

    // The certificate's gateway is who the access policies must name.
    let (status, body) = call(&h, &path, Some("edge-mtls"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let r = h
        .admin(
            axum::http::Method::PUT,
            "/v1/providers/gh/connections/alice/access-policies/edge-mtls",
            Some(serde_json::json!({"identity": {"kind": "gateway", "name": "edge-mtls"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let (status, body) = call(&h, &path, Some("edge-mtls"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["access_token"], "stored-token");

    // A valid gateway key on a connection without a certificate identity: refused.
    let (status, body) = call(&h, &path, None, Some(GATEWAY_KEY)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
}

#[tokio::test]
async fn only_the_runtime_api_and_healthz_are_served() {
    let h = Harness::new().await;
    let (status, body) = call(&h, "/healthz", None, None).await;
    assert_eq!((status, &body["status"]), (StatusCode::OK, &"ok".into()));
    for path in ["/v1/providers", "/v1/keys", "/metrics"] {
        let (status, body) = call(&h, path, Some("edge-mtls"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}
