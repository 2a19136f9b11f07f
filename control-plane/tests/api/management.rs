//! What every management request goes through: the admin token, request validation that
//! names the wrong field, and JSON answers for unknown paths and methods. Providers and
//! connections themselves: `providers.rs`, `connections.rs`.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

const URL: &str = "https://idp.example/token";

#[tokio::test]
async fn the_management_api_needs_the_admin_token() {
    let h = Harness::new().await;
    for token in [None, Some("wrong"), Some(GATEWAY_KEY)] {
        let r = h.call(Method::GET, "/v1/providers", token, None).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
        assert_eq!(r.headers["www-authenticate"], "Bearer", "{token:?}");
    }
    let r = h
        .call(
            Method::PUT,
            "/v1/providers/gh",
            None,
            Some(provider_body("https://idp.example/token")),
        )
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let r = h.admin(Method::GET, "/v1/providers", None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json, json!([]));
}

/// The test provider's body with `key` set to `value`.
fn with(key: &str, value: Value) -> Value {
    let mut body = provider_body(URL);
    body[key] = value;
    body
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let h = Harness::new().await;
    let cases = [
        ("/v1/providers/gh", json!({"bogus": 1}), "bogus"),
        (
            "/v1/providers/gh",
            with("token_url", json!("/relative")),
            "token_url",
        ),
        (
            "/v1/providers/gh",
            with("token_url", json!("ftp://x/token")),
            "token_url",
        ),
        (
            "/v1/providers/gh",
            with("grant_type", json!("password")),
            "grant_type",
        ),
        (
            "/v1/providers/gh",
            with("scopes", json!(["ok", "has space"])),
            "scopes[1]",
        ),
        (
            "/v1/providers/gh",
            with("token_params", json!({"grant_type": "x"})),
            "token_params.grant_type",
        ),
        (
            "/v1/providers/gh",
            provider_body_without(URL, "client_secret"),
            "client_secret",
        ),
        (
            "/v1/providers/gh",
            provider_body_without(URL, "client_id"),
            "client_id",
        ),
        ("/v1/providers/bad%20id", provider_body(URL), "provider_id"),
        ("/v1/providers/.hidden", provider_body(URL), "provider_id"),
    ];
    for (path, body, field) in cases {
        let r = h.admin(Method::PUT, path, Some(body)).await;
        assert_invalid_field(&r, field);
        assert_error_mentions(&r, field);
    }

    let malformed = Request::put("/v1/providers/gh")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"client_id\": "))
        .unwrap();
    let r = h.raw(malformed).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_error_mentions(&r, "malformed JSON");

    let not_json = Request::put("/v1/providers/gh")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "text/plain")
        .body(Body::from(provider_body(URL).to_string()))
        .unwrap();
    assert_error(
        &h.raw(not_json).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request",
    );

    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections/bad%2Fid", None)
        .await;
    assert_invalid_field(&r, "connection_id");

    // Nothing was stored by any of these.
    assert_eq!(
        h.admin(Method::GET, "/v1/providers", None).await.json,
        json!([])
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json() {
    let h = Harness::new().await;
    assert_error(
        &h.admin(Method::GET, "/v1/nothing", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = h.admin(Method::POST, "/v1/providers", None).await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "invalid_request");
    let r = h.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (r.status, r.json),
        (StatusCode::OK, json!({"status": "ok"}))
    );
    let r = h.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(
        (r.status, r.json),
        (
            StatusCode::OK,
            json!({"status": "ready", "store": h.state.store.kind()})
        )
    );
    let r = h
        .raw(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let text = r.json.as_str().unwrap();
    assert!(
        text.contains("credmgr_runtime_token_requests_total"),
        "{text}"
    );
}

/// Every body of the API is a JSON object. serde reads a struct from a JSON array too (its
/// fields in order): `[null, null]` created a connection, and `["oauth2", ...]` would fill a
/// provider's fields by position. The fuzzer (`make openapi-check`) found it.
#[tokio::test]
async fn a_body_that_is_not_a_json_object_is_refused() {
    let h = Harness::new().await;
    let saas = crate::fake_saas::FakeSaas::start().await;
    h.provider("p", &saas.token_url).await;
    for (uri, body) in [
        ("/v1/providers/p/connections/c", json!([null, null])),
        ("/v1/providers/q", json!(["oauth2"])),
        ("/v1/trusted-issuers/i", json!([])),
    ] {
        let r = h.admin(Method::PUT, uri, Some(body)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.json);
        assert_eq!(r.json["error"]["code"], "invalid_request");
        assert!(
            r.json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("JSON object"),
            "{}",
            r.json
        );
    }
    let r = h
        .admin(Method::GET, "/v1/providers/p/connections/c", None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.json);
}
