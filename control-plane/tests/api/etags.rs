use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;

fn etag(r: &Reply) -> String {
    let header = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(header, format!("\"{}\"", r.json["etag"].as_str().unwrap()));
    header
}

#[tokio::test]
async fn updates_and_deletes_with_a_stale_etag_are_refused_with_412_and_change_nothing() {
    let h = Harness::new().await;
    let url = closed_port_url();
    let created = h.provider("gh", &url).await;
    let first = etag(&created);
    let shown = h.admin(Method::GET, "/v1/providers/gh", None).await;
    assert_eq!(etag(&shown), first);

    let mut body = provider_body(&url);
    body["display_name"] = json!("Renamed");
    let r = h
        .admin_if_match(Method::PUT, "/v1/providers/gh", &first, Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let second = etag(&r);
    assert_ne!(first, second, "a write changes the ETag");

    // The first ETag is stale now.
    body["display_name"] = json!("Lost update");
    let r = h
        .admin_if_match(Method::PUT, "/v1/providers/gh", &first, Some(body))
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let r = h
        .admin_if_match(Method::DELETE, "/v1/providers/gh", &first, None)
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let shown = h.admin(Method::GET, "/v1/providers/gh", None).await;
    assert_eq!(shown.json["display_name"], "Renamed");
    assert_eq!(etag(&shown), second);

    // If-Match on something that does not exist fails too; `*` needs it to exist.
    let r = h
        .admin_if_match(
            Method::PUT,
            "/v1/providers/new",
            "*",
            Some(provider_body(&url)),
        )
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let r = h.admin(Method::GET, "/v1/providers/new", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = h
        .admin_if_match(
            Method::PUT,
            "/v1/providers/gh",
            "not-quoted",
            Some(provider_body(&url)),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");

    // Connections: the same rules.
    let conn = h.connection("gh", "svc").await;
    let c1 = etag(&conn);
    let path = "/v1/providers/gh/connections/svc";
    let r = h
        .admin_if_match(Method::PUT, path, &c1, Some(json!({"display_name": "A"})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let c2 = etag(&r);
    let r = h
        .admin_if_match(Method::PUT, path, &c1, Some(json!({"display_name": "B"})))
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let r = h.admin_if_match(Method::DELETE, path, &c1, None).await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");
    let shown = h.admin(Method::GET, path, None).await;
    assert_eq!(shown.json["display_name"], "A");
    assert_eq!(etag(&shown), c2);
    let r = h
        .admin_if_match(Method::DELETE, path, &format!("W/{c2}, {c2}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);

    let r = h
        .admin_if_match(Method::DELETE, "/v1/providers/gh", &second, None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.json);
    // A re-created provider gets a new ETag: the old one never matches it.
    let again = h.provider("gh", &url).await;
    assert_ne!(etag(&again), second);
}
