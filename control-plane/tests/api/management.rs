use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::json;

use crate::harness::*;

#[tokio::test]
async fn the_management_api_needs_the_admin_token() {
    let h = Harness::new().await;
    let r = h.call(Method::GET, "/v1/providers", None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let r = h
        .call(Method::GET, "/v1/providers", Some("wrong"), None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
    let r = h
        .call(Method::GET, "/v1/providers", Some(GATEWAY_KEY), None)
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");
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

#[tokio::test]
async fn bad_requests_name_the_field() {
    let h = Harness::new().await;
    let url = "https://idp.example/token";
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        ("/v1/providers/gh", json!({"bogus": 1}), "bogus"),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b["token_url"] = json!("/relative");
                b
            },
            "token_url",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b["token_url"] = json!("ftp://x/token");
                b
            },
            "token_url",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b["grant_type"] = json!("password");
                b
            },
            "grant_type",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b["scopes"] = json!(["ok", "has space"]);
                b
            },
            "scopes[1]",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b["token_params"] = json!({"grant_type": "x"});
                b
            },
            "token_params.grant_type",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b.as_object_mut().unwrap().remove("client_secret");
                b
            },
            "client_secret",
        ),
        (
            "/v1/providers/gh",
            {
                let mut b = provider_body(url);
                b.as_object_mut().unwrap().remove("client_id");
                b
            },
            "client_id",
        ),
        ("/v1/providers/bad%20id", provider_body(url), "provider_id"),
        ("/v1/providers/.hidden", provider_body(url), "provider_id"),
    ];
    for (path, body, field) in cases {
        let r = h.admin(Method::PUT, path, Some(body)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(
            r.json["error"]["details"]["field"], field,
            "{path}: {}",
            r.json
        );
        assert!(
            r.json["error"]["message"].as_str().unwrap().contains(field),
            "{}",
            r.json
        );
    }

    let malformed = Request::put("/v1/providers/gh")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "application/json")
        .body(Body::from("{\"client_id\": "))
        .unwrap();
    let r = h.raw(malformed).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert!(r.json["error"]["message"]
        .as_str()
        .unwrap()
        .contains("malformed JSON"));

    let not_json = Request::put("/v1/providers/gh")
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("content-type", "text/plain")
        .body(Body::from(provider_body(url).to_string()))
        .unwrap();
    assert_error(
        &h.raw(not_json).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request",
    );

    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections/bad%2Fid", None)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(r.json["error"]["details"]["field"], "connection_id");

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
    let mut body = provider_body(url);
    body.as_object_mut().unwrap().remove("client_secret");
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

    h.provider("azure", url).await;
    let r = h.admin(Method::GET, "/v1/providers", None).await;
    let ids: Vec<_> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, [json!("azure"), json!("gh")]);

    let r = h.admin(Method::DELETE, "/v1/providers/gh", None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_error(
        &h.admin(Method::GET, "/v1/providers/gh", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.admin(Method::DELETE, "/v1/providers/gh", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// The `rel="next"` target of a `Link` header, if there is one.
fn next_link(r: &Reply) -> Option<String> {
    let link = r.headers.get("link")?.to_str().unwrap();
    let (target, rel) = link.split_once(">; ")?;
    assert_eq!(rel, "rel=\"next\"", "{link}");
    Some(target.trim_start_matches('<').to_owned())
}

fn ids(r: &Reply) -> Vec<String> {
    r.json
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {}", r.json))
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_connection_list_comes_in_pages_that_link_to_the_next() {
    let h = Harness::new().await;
    h.provider("gh", &closed_port_url()).await;
    for c in ["c03", "c01", "c05", "c02", "c04"] {
        assert_eq!(h.connection("gh", c).await.status, StatusCode::CREATED);
    }

    // Without a limit, one page of up to 100 holds them all, and names no next page.
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections", None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(ids(&r), ["c01", "c02", "c03", "c04", "c05"]);
    assert_eq!(next_link(&r), None);

    // Two at a time, following the links.
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections?limit=2", None)
        .await;
    assert_eq!(ids(&r), ["c01", "c02"]);
    let next = next_link(&r).expect("a next page");
    assert_eq!(next, "/v1/providers/gh/connections?limit=2&after=c02");
    // A connection created before the cursor, and one deleted after it, while paging: the
    // pages that follow neither repeat nor skip one that was there throughout.
    h.connection("gh", "c00").await;
    h.admin(Method::DELETE, "/v1/providers/gh/connections/c03", None)
        .await;
    let r = h.admin(Method::GET, &next, None).await;
    assert_eq!(ids(&r), ["c04", "c05"]);
    assert_eq!(next_link(&r), None);

    // The largest page, and an exact fit: no link to an empty page.
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections?limit=1000", None)
        .await;
    assert_eq!(ids(&r), ["c00", "c01", "c02", "c04", "c05"]);
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections?limit=5", None)
        .await;
    assert_eq!(ids(&r).len(), 5);
    assert_eq!(next_link(&r), None);
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections?after=c05", None)
        .await;
    assert_eq!(r.json, json!([]));

    // Bad paging parameters are refused naming the parameter.
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("after=a%20b", "after"),
        ("after=", "after"),
        ("page=2", "query"),
    ] {
        let r = h
            .admin(
                Method::GET,
                &format!("/v1/providers/gh/connections?{query}"),
                None,
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        assert_eq!(
            r.json["error"]["details"]["field"], field,
            "{query}: {}",
            r.json
        );
    }
}

#[tokio::test]
async fn an_unreachable_provider_leaves_the_connection_in_error() {
    let h = Harness::new().await;
    h.provider("gh", &closed_port_url()).await;
    let r = h.connection("gh", "alice").await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["id"], "alice");
    assert_eq!(r.json["provider_id"], "gh");
    assert_eq!(r.json["display_name"], "Test");
    assert_eq!(r.json["status"], "error");
    assert_eq!(r.json["error"]["code"], "provider_unreachable");
    assert!(
        r.json["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{}",
        r.json
    );
    assert_eq!(r.json["token_expires_at"], json!(null));
    assert_eq!(r.json["last_refresh_at"], json!(null));
    assert_eq!(r.json["client_id"], json!(null));

    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "provider_unreachable");

    let metrics = h.metrics();
    assert!(metrics.contains(
        r#"credmgr_provider_token_requests_total{grant_type="client_credentials",outcome="provider_unreachable"} 2"#
    ), "{metrics}");
    assert!(
        metrics.contains(r#"credmgr_runtime_token_requests_total{outcome="error"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn connections_are_created_listed_replaced_and_deleted() {
    let h = Harness::new().await;
    h.provider("gh", &closed_port_url()).await;
    assert_error(
        &h.connection("nope", "alice").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_eq!(
        h.connection("gh", "alice").await.status,
        StatusCode::CREATED
    );
    assert_eq!(h.connection("gh", "bob").await.status, StatusCode::CREATED);
    let r = h.connection("gh", "bob").await;
    assert_eq!(r.status, StatusCode::OK);

    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections", None)
        .await;
    let ids: Vec<_> = r
        .json
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [json!("alice"), json!("bob")]);
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections/alice", None)
        .await;
    assert_eq!(
        (r.status, r.json["id"].clone()),
        (StatusCode::OK, json!("alice"))
    );

    // A connection can bring its own client credentials: both or neither.
    let path = "/v1/providers/gh/connections/carol";
    let r = h
        .admin(
            Method::PUT,
            path,
            Some(json!({"client_secret": "only-a-secret-xyz"})),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
    assert_eq!(r.json["error"]["details"]["field"], "client_id");
    let r = h
        .admin(Method::PUT, path, Some(json!({"client_id": "own-client"})))
        .await;
    assert_eq!(r.json["error"]["details"]["field"], "client_secret");
    let r = h
        .admin(
            Method::PUT,
            path,
            Some(json!({"client_id": "own-client", "client_secret": "own-secret-7d1e9b"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["client_id"], "own-client");
    assert_eq!(r.json["client_secret"], json!({"set": true}));
    // Replacing with only the id keeps the connection's own secret.
    let r = h
        .admin(
            Method::PUT,
            path,
            Some(json!({"client_id": "own-client-2"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["client_secret"], json!({"set": true}));
    // Replacing with neither goes back to the provider's credentials.
    let r = h.admin(Method::PUT, path, Some(json!({}))).await;
    assert_eq!(
        (r.json["client_id"].clone(), r.json["client_secret"].clone()),
        (json!(null), json!({"set": false}))
    );

    assert_eq!(
        h.admin(Method::DELETE, path, None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &h.admin(Method::GET, path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.admin(Method::DELETE, path, None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    // Deleting the provider deletes its connections.
    assert_eq!(
        h.admin(Method::DELETE, "/v1/providers/gh", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    h.provider("gh", &closed_port_url()).await;
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections", None)
        .await;
    assert_eq!(r.json, json!([]));
    assert_error(
        &h.admin(Method::GET, "/v1/providers/gone/connections", None)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
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
    h.admin(Method::GET, "/v1/providers/gh", None).await;
    h.admin(Method::GET, "/v1/providers", None).await;
    h.admin(Method::GET, "/v1/providers/gh/connections", None)
        .await;
    h.admin(Method::GET, "/v1/providers/gh/connections/alice", None)
        .await;
    let mut body = provider_body("https://idp.example/token");
    body.as_object_mut().unwrap().remove("client_secret");
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
    let files = h.db_contents().await;
    let mut found_client_id = false;
    for (file, bytes) in &files {
        for secret in [CLIENT_SECRET, conn_secret, token] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{file} contains {secret}"
            );
        }
        found_client_id |= bytes.windows(12).any(|w| w == b"credmgr-demo");
    }
    // ...while the non-secret configuration is there: the check did look at the data.
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
    let mut body = provider_body(&url);
    body["display_name"] = json!("New name");
    body.as_object_mut().unwrap().remove("client_secret");
    assert_eq!(
        h.admin(Method::PUT, "/v1/providers/gh", Some(body.clone()))
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections/alice", None)
        .await;
    assert_eq!(r.json["status"], "connected");
    assert!(r.json["token_expires_at"].is_string());
    assert_eq!(h.runtime("gh", "alice").await.json["access_token"], "tok");

    // Re-sending the same configuration, secret included, keeps it too.
    let r = h
        .admin(Method::PUT, "/v1/providers/gh", Some(provider_body(&url)))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h
        .state
        .store
        .get_token("gh", "alice")
        .await
        .unwrap()
        .is_some());

    // A new secret drops it.
    let mut new_secret = provider_body(&url);
    new_secret["client_secret"] = json!("a-rotated-client-secret-1234");
    h.admin(Method::PUT, "/v1/providers/gh", Some(new_secret))
        .await;
    assert!(h
        .state
        .store
        .get_token("gh", "alice")
        .await
        .unwrap()
        .is_none());
    h.store_token("gh", "alice", "tok", now(), now() + 3000, now() + 3600)
        .await;

    // Other scopes: the token is dropped, the connection must fetch again.
    body["scopes"] = json!(["api:write"]);
    assert_eq!(
        h.admin(Method::PUT, "/v1/providers/gh", Some(body))
            .await
            .status,
        StatusCode::OK
    );
    let r = h
        .admin(Method::GET, "/v1/providers/gh/connections/alice", None)
        .await;
    assert_eq!(r.json["status"], "not_connected");
    assert_eq!(r.json["token_expires_at"], json!(null));
    assert!(h
        .state
        .store
        .get_token("gh", "alice")
        .await
        .unwrap()
        .is_none());
}
