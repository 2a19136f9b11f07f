//! Connections through the management API: created, listed in pages, replaced (with or
//! without their own client credentials) and deleted; and a connection whose provider
//! cannot be reached.

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

/// The `rel="next"` target of a `Link` header, if there is one.
fn next_link(r: &Reply) -> Option<String> {
    let link = r.headers.get("link")?.to_str().unwrap();
    let (target, rel) = link.split_once(">; ")?;
    assert_eq!(rel, "rel=\"next\"", "{link}");
    Some(target.trim_start_matches('<').to_owned())
}

#[tokio::test]
async fn the_connection_list_comes_in_pages_that_link_to_the_next() {
    let h = Harness::new().await;
    h.provider("gh", &closed_port_url()).await;
    for c in ["c03", "c01", "c05", "c02", "c04"] {
        assert_eq!(h.connection("gh", c).await.status, StatusCode::CREATED);
    }
    let page = |query: &str| {
        let uri = format!("/v1/providers/gh/connections{query}");
        let h = &h;
        async move { h.admin(Method::GET, &uri, None).await }
    };

    // Without a limit, one page of up to 100 holds them all, and names no next page.
    let r = page("").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(ids(&r), ["c01", "c02", "c03", "c04", "c05"]);
    assert_eq!(next_link(&r), None);

    // Two at a time, following the links.
    let r = page("?limit=2").await;
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
    let r = page("?limit=1000").await;
    assert_eq!(ids(&r), ["c00", "c01", "c02", "c04", "c05"]);
    let r = page("?limit=5").await;
    assert_eq!(ids(&r).len(), 5);
    assert_eq!(next_link(&r), None);
    let r = page("?after=c05").await;
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
        assert_invalid_field(&page(&format!("?{query}")).await, field);
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
    assert_error_mentions(&r, "127.0.0.1");
    assert_eq!(r.json["token_expires_at"], json!(null));
    assert_eq!(r.json["last_refresh_at"], json!(null));
    assert_eq!(r.json["client_id"], json!(null));

    // Answered from the remembered failure: the connection backs off, the provider is not
    // asked again at once.
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "provider_unreachable");

    h.assert_metric(
        r#"credmgr_provider_token_requests_total{grant_type="client_credentials",outcome="provider_unreachable"} 1"#,
    );
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="error"} 1"#);
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
    assert_eq!(ids(&r), ["alice", "bob"]);
    assert_eq!(h.shown_connection("gh", "alice").await["id"], "alice");

    // A connection can bring its own client credentials: both or neither.
    let path = "/v1/providers/gh/connections/carol";
    let put = |body: serde_json::Value| {
        let h = &h;
        async move { h.admin(Method::PUT, path, Some(body)).await }
    };
    let r = put(json!({"client_secret": "only-a-secret-xyz"})).await;
    assert_invalid_field(&r, "client_id");
    let r = put(json!({"client_id": "own-client"})).await;
    assert_eq!(r.json["error"]["details"]["field"], "client_secret");
    let r = put(json!({"client_id": "own-client", "client_secret": "own-secret-7d1e9b"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["client_id"], "own-client");
    assert_eq!(r.json["client_secret"], json!({"set": true}));
    // Replacing with only the id keeps the connection's own secret.
    let r = put(json!({"client_id": "own-client-2"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["client_secret"], json!({"set": true}));
    // Replacing with neither goes back to the provider's credentials.
    let r = put(json!({})).await;
    assert_eq!(
        (r.json["client_id"].clone(), r.json["client_secret"].clone()),
        (json!(null), json!({"set": false}))
    );

    assert_eq!(
        h.admin(Method::DELETE, path, None).await.status,
        StatusCode::NO_CONTENT
    );
    for method in [Method::GET, Method::DELETE] {
        let r = h.admin(method, path, None).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }

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
