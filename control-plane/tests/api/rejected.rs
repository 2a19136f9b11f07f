//! `?rejected_expires_at=`: a gateway reports that a backend refused the token expiring then.

use axum::http::{Method, StatusCode};

use crate::harness::*;

fn path(query: &str) -> String {
    format!(
        "{}?{query}",
        credmgr_common::runtime::token_path("gh", "alice")
    )
}

#[tokio::test]
async fn a_refused_token_is_replaced_before_it_is_served_again_and_a_newer_one_is_not() {
    let h = Harness::new().await;
    // The provider is down, so an attempt to replace the token shows as a "stale" answer.
    h.unreachable_connection("gh", "alice").await;
    let (_, refresh, expires) = h.store_fresh_token("gh", "alice", "stored-token").await;

    // An older token was refused: the stored one is newer and served as it is.
    let older = path(&format!("rejected_expires_at={}", expires - 60));
    let r = h.call(Method::GET, &older, Some(GATEWAY_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="hit"} 1"#);

    // The stored token itself was refused: the control plane tries to replace it first (and,
    // the provider being down, serves it until it expires, asking the gateway to retry soon).
    let same = path(&format!("rejected_expires_at={expires}"));
    let r = h.call(Method::GET, &same, Some(GATEWAY_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(
        r.json["refresh_at"].as_i64().unwrap() < refresh,
        "{}",
        r.json
    );
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="stale"} 1"#);
}

#[tokio::test]
async fn a_malformed_query_is_a_json_400() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    for query in ["rejected_expires_at=soon", "unknown=1"] {
        let r = h
            .call(Method::GET, &path(query), Some(GATEWAY_KEY), None)
            .await;
        assert_invalid_field(&r, "query");
    }
}
