//! A gateway reports that a backend refused a token: `?rejected_fingerprint=` (the token's
//! fingerprint), or from gateways not yet upgraded `?rejected_expires_at=` (its expiry). The
//! stored token is replaced only if it is the refused one, and at most once per connection per
//! forced-refresh interval (10 s in the harness).

use axum::http::{Method, StatusCode};
use credmgr_common::runtime::token_fingerprint;

use crate::fake_saas::{FakeSaas, JSON};
use crate::harness::*;

fn path(query: &str) -> String {
    format!(
        "{}?{query}",
        credmgr_common::runtime::token_path("gh", "alice")
    )
}

const NEW_TOKEN: &str = r#"{"access_token":"new-token","token_type":"Bearer","expires_in":3600}"#;

#[tokio::test]
async fn a_refused_token_is_replaced_before_it_is_served_again_and_a_newer_one_is_not() {
    let h = Harness::new().await;
    // The provider is down, so an attempt to replace the token shows as a "stale" answer.
    h.unreachable_connection("gh", "alice").await;
    // Fetched a minute ago: older than the forced-refresh interval.
    let (obtained, refresh, expires) = (now() - 60, now() + 2820, now() + 3540);
    h.store_token("gh", "alice", "stored-token", obtained, refresh, expires)
        .await;

    // An older token was refused: the stored one is newer and served as it is.
    let older = path(&format!("rejected_expires_at={}", expires - 60));
    let r = h.call(Method::GET, &older, Some(GATEWAY_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let other = path(&format!(
        "rejected_fingerprint={}",
        token_fingerprint("other")
    ));
    let r = h.call(Method::GET, &other, Some(GATEWAY_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="hit"} 2"#);

    // The stored token itself was refused: the control plane tries to replace it first (and,
    // the provider being down, serves it until it expires, asking the gateway to retry soon).
    let same = path(&format!(
        "rejected_fingerprint={}",
        token_fingerprint("stored-token")
    ));
    let r = h.call(Method::GET, &same, Some(GATEWAY_KEY), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(
        r.json["refresh_at"].as_i64().unwrap() < refresh,
        "{}",
        r.json
    );
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="stale"} 1"#);
}

/// #19 item 7: two reports of one refused token, the second after the replacement, replace
/// it once, even when the new token expires in the same second as the refused one (which is
/// all `rejected_expires_at` can tell apart). Before the fix both replaced it.
#[tokio::test]
async fn two_reports_of_one_refused_token_replace_it_once() {
    for form in ["fingerprint", "expires_at"] {
        let h = Harness::new().await;
        let fake = FakeSaas::start().await;
        fake.answer(500, "text/plain", "down while the connection is created");
        h.provider("gh", &fake.token_url).await;
        h.connection("gh", "alice").await;
        // The refused token expires when a token issued now does.
        let expires = now() + 3600;
        h.store_token(
            "gh",
            "alice",
            "old-token",
            now() - 60,
            expires - 720,
            expires,
        )
        .await;
        fake.answer(200, JSON, NEW_TOKEN);
        fake.answer(200, JSON, NEW_TOKEN);
        let before = fake.seen().len();
        let query = match form {
            "fingerprint" => format!("rejected_fingerprint={}", token_fingerprint("old-token")),
            _ => format!("rejected_expires_at={expires}"),
        };
        for _ in 0..2 {
            let r = h
                .call(Method::GET, &path(&query), Some(GATEWAY_KEY), None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{form}: {}", r.json);
            assert_eq!(r.json["access_token"], "new-token", "{form}");
        }
        assert_eq!(
            fake.seen().len() - before,
            1,
            "{form}: the new token was replaced again"
        );
    }
}

/// #19 item 5: a backend that refuses every token costs at most one forced refresh per
/// connection per interval, however many requests it refuses. Before the fix, each report
/// of the token just served replaced it: 20 reports, 20 token requests.
#[tokio::test]
async fn refusals_force_at_most_one_refresh_per_interval() {
    let h = Harness::new().await;
    let fake = FakeSaas::start().await;
    fake.answer(500, "text/plain", "down while the connection is created");
    h.provider("gh", &fake.token_url).await;
    h.connection("gh", "alice").await;
    // Obtained just now: a token revoked right after it was issued is still replaced at once.
    h.store_fresh_token("gh", "alice", "old-token").await;
    for _ in 0..20 {
        fake.answer(200, JSON, NEW_TOKEN);
    }
    let before = fake.seen().len();
    let mut served = "old-token".to_owned();
    for _ in 0..20 {
        let query = format!("rejected_fingerprint={}", token_fingerprint(&served));
        let r = h
            .call(Method::GET, &path(&query), Some(GATEWAY_KEY), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.json);
        served = r.json["access_token"].as_str().unwrap().to_owned();
    }
    assert_eq!(served, "new-token");
    assert_eq!(
        fake.seen().len() - before,
        1,
        "one forced refresh in the interval"
    );
}

#[tokio::test]
async fn a_malformed_query_is_a_json_400() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    for (query, field) in [
        ("rejected_expires_at=soon", "query"),
        ("unknown=1", "query"),
        ("rejected_fingerprint=abc", "rejected_fingerprint"),
    ] {
        let r = h
            .call(Method::GET, &path(query), Some(GATEWAY_KEY), None)
            .await;
        assert_invalid_field(&r, field);
    }
}
