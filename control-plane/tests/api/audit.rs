//! The audit trail: runtime tokens and management changes, filters and pages.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::*;

async fn flushed(h: &Harness) {
    if let Some(a) = &h.state.audit {
        a.flush(Duration::from_secs(5)).await;
    }
}

async fn audit(h: &Harness, query: &str) -> Value {
    flushed(h).await;
    let r = h
        .admin(Method::GET, &format!("/v1/audit{query}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    r.json
}

#[tokio::test]
async fn every_token_handed_out_is_recorded_with_its_fingerprint() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    h.unreachable_connection("gl", "bob").await;
    h.store_fresh_token("gh", "alice", "alice-token").await;
    for _ in 0..3 {
        assert_eq!(h.runtime("gh", "alice").await.status, StatusCode::OK);
    }
    assert_eq!(
        h.runtime("gl", "bob").await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );

    let page = audit(&h, "?provider_id=gh&connection_id=alice").await;
    let tokens: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "token")
        .collect();
    assert_eq!(tokens.len(), 3, "{page}");
    let fingerprint = credmgr_common::runtime::token_fingerprint("alice-token");
    for e in &tokens {
        assert_eq!(e["actor"], "edge-1");
        assert_eq!(e["outcome"], "hit");
        assert_eq!(e["detail"]["fingerprint"], fingerprint.as_str());
    }
    let bob = audit(&h, "?provider_id=gl&connection_id=bob").await;
    let refused: Vec<&Value> = bob["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "token")
        .collect();
    assert_eq!(refused.len(), 1, "{bob}");
    assert_ne!(refused[0]["outcome"], "hit");
    let seen = serde_json::to_string(&page).unwrap() + &bob.to_string();
    assert!(!seen.contains("alice-token"), "no token in the trail");
}

#[tokio::test]
async fn management_changes_are_recorded_with_before_and_after_and_no_secret() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    let mut body = h.provider_to_resend("gh").await;
    body["display_name"] = json!("Renamed");
    body["client_secret"] = json!(CLIENT_SECRET);
    let r = h.admin(Method::PUT, "/v1/providers/gh", Some(body)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    // A refused change is not a change.
    let r = h
        .admin(Method::PUT, "/v1/providers/gh", Some(json!({})))
        .await;
    assert!(r.status.is_client_error());

    let page = audit(&h, "?provider_id=gh").await;
    let changes: Vec<&Value> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "change")
        .collect();
    // Newest first: the rename, the policy, the connection, the provider.
    assert_eq!(changes.len(), 4, "{page}");
    let rename = changes[0];
    assert_eq!(rename["action"], "PUT /v1/providers/gh");
    assert_eq!(rename["actor"], "admin");
    assert_eq!(rename["outcome"], "200");
    assert_eq!(rename["detail"]["after"]["display_name"], "Renamed");
    assert_ne!(rename["detail"]["before"]["display_name"], "Renamed");
    assert_eq!(
        rename["detail"]["after"]["client_secret"],
        json!({"set": true})
    );
    assert_eq!(changes[3]["detail"]["before"], Value::Null, "created");
    assert!(!page.to_string().contains(CLIENT_SECRET));
}

#[tokio::test]
async fn the_trail_is_read_in_pages_and_by_time() {
    let h = Harness::new().await;
    h.unreachable_connection("gh", "alice").await;
    h.store_fresh_token("gh", "alice", "alice-token").await;
    for _ in 0..5 {
        h.runtime("gh", "alice").await;
    }
    let mut ids = Vec::new();
    let mut query = "?connection_id=alice&limit=2".to_owned();
    loop {
        let page = audit(&h, &query).await;
        ids.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => query = format!("?connection_id=alice&limit=2&cursor={c}"),
            None => break,
        }
    }
    // 5 tokens, the connection's creation and its policy.
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert!(
        ids.windows(2).all(|w| w[0] > w[1]),
        "newest first, no repeats: {ids:?}"
    );
    let future = audit(&h, &format!("?since={}", now() + 3600)).await;
    assert_eq!(future["entries"], json!([]));
    let past = audit(&h, "?until=1970-01-02T00:00:00Z").await;
    assert_eq!(past["entries"], json!([]));
    let r = h
        .admin(Method::GET, "/v1/audit?since=yesterday", None)
        .await;
    assert_invalid_field(&r, "since");
    let r = h.admin(Method::GET, "/v1/audit?cursor=x", None).await;
    assert_invalid_field(&r, "cursor");
}

#[tokio::test]
async fn entries_and_finished_deliveries_past_the_retention_are_purged() {
    let h = Harness::new().await;
    let receiver = crate::webhooks::Receiver::start().await;
    crate::webhooks::webhook(&h, "ops", &receiver.url, &["connection.deleted"]).await;
    h.unreachable_connection("gh", "alice").await;
    h.admin(Method::DELETE, "/v1/providers/gh/connections/alice", None)
        .await;
    let worker = credmgr_control_plane::webhooks::worker::Worker::new(h.state.clone()).unwrap();
    assert_eq!(worker.run_once().await, 1);
    assert_eq!(receiver.types(), ["connection.deleted"]);
    let entries = audit(&h, "").await["entries"].as_array().unwrap().len();
    assert!(entries >= 4, "{entries}");

    // Nothing is older than a cutoff in the past.
    assert_eq!(h.state.store.purge_audit(now() - 60).await.unwrap(), 0);
    assert_eq!(h.state.store.purge_deliveries(now() - 60).await.unwrap(), 0);
    // Everything is older than one in the future.
    let purged = h.state.store.purge_audit(now() + 60).await.unwrap();
    assert_eq!(purged as usize, entries);
    assert_eq!(h.state.store.purge_deliveries(now() + 60).await.unwrap(), 1);
    let d = h
        .admin(Method::GET, "/v1/webhooks/ops/deliveries", None)
        .await;
    assert_eq!(d.json, json!([]));
}

#[tokio::test]
async fn a_large_batch_is_written_whole_and_in_order() {
    let h = Harness::new().await;
    let entries: Vec<_> = (0..300)
        .map(|i| credmgr_control_plane::store::AuditEntry {
            at: now(),
            kind: "token".into(),
            actor: Some("edge-1".into()),
            provider_id: Some("gh".into()),
            connection_id: Some(format!("c{i}")),
            action: "token".into(),
            outcome: "hit".into(),
            ..Default::default()
        })
        .collect();
    h.state.store.insert_audit(&entries).await.unwrap();
    let page = audit(&h, "?limit=1000").await;
    let got: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["connection_id"].as_str().unwrap())
        .collect();
    assert_eq!(got.len(), 300);
    assert_eq!((got[0], got[299]), ("c299", "c0"), "newest first");
}
