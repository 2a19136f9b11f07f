//! What only PostgreSQL has to prove: several replicas on one database. Each test gets a
//! database of its own, and is skipped (saying so) where PostgreSQL is not reachable and
//! neither `DATABASE_URL` nor `CI` is set.

use axum::http::{Method, StatusCode};
use credmgr_control_plane::crypto::Aad;
use credmgr_control_plane::store::{DatabaseUrl, PutToken, Store, TokenRecord};

use crate::harness::*;
use crate::pg::TestDatabase;

/// The migration files of one backend, by name.
fn migrations(backend: &str) -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(backend);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn both_backends_have_the_same_migrations() {
    // Same numbers and names: a schema change is made for both stores or for neither.
    assert_eq!(migrations("sqlite"), migrations("postgresql"));
}

#[tokio::test]
async fn replicas_starting_at_once_on_a_new_database_migrate_it_once() {
    let Some(db) = TestDatabase::create_or_skip("replicas_migrate_once").await else {
        return;
    };
    let url = DatabaseUrl::new(db.url.clone());
    let starts = (0..4).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { Store::connect(&url).await })
    });
    let mut stores = Vec::new();
    for start in starts {
        stores.push(start.await.unwrap().unwrap());
    }
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url)
        .await
        .unwrap();
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    assert_eq!(applied.len(), migrations("postgresql").len(), "{applied:?}");
    assert!(applied.iter().all(|(_, ok)| *ok), "{applied:?}");
    for s in &stores {
        s.ping().await.unwrap();
        assert_eq!(s.kind(), "postgresql");
    }
}

#[tokio::test]
async fn of_replicas_racing_for_a_refresh_lease_exactly_one_gets_it() {
    let Some(db) = TestDatabase::create_or_skip("refresh_lease_race").await else {
        return;
    };
    let a = Harness::on_postgres(db).await;
    let b = a.replica().await;
    a.provider("p", "https://idp.example/token").await;
    assert_eq!(a.connection("p", "c").await.status, StatusCode::CREATED);

    let now = now();
    for round in 0..5 {
        let tries = (0..16).map(|i| {
            let store = if i % 2 == 0 {
                a.state.store.clone()
            } else {
                b.state.store.clone()
            };
            tokio::spawn(async move {
                let owner = format!("replica-{round}-{i}");
                let won = store
                    .try_refresh_lease("p", "c", &owner, now + round * 100, now + round * 100 + 30)
                    .await
                    .unwrap();
                won.then_some(owner)
            })
        });
        let mut winners = Vec::new();
        for t in tries {
            winners.extend(t.await.unwrap());
        }
        // Each round is after the previous lease expired: it is free again, for one.
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
    }

    // Its holder may take it again; nobody else may release it.
    let held_until = now + 400 + 30;
    assert!(a
        .state
        .store
        .try_refresh_lease("p", "c", "x", held_until - 1, held_until + 30)
        .await
        .map(|won| !won)
        .unwrap());
    b.state
        .store
        .release_refresh_lease("p", "c", "x")
        .await
        .unwrap();
    assert!(!b
        .state
        .store
        .try_refresh_lease("p", "c", "y", held_until - 1, held_until + 30)
        .await
        .unwrap());
}

#[tokio::test]
async fn a_refreshed_token_is_stored_only_over_the_refresh_token_it_was_redeemed_with() {
    let Some(db) = TestDatabase::create_or_skip("refresh_token_cas").await else {
        return;
    };
    let a = Harness::on_postgres(db).await;
    let b = a.replica().await;
    let mut body = provider_body("https://idp.example/token");
    body["grant_type"] = serde_json::json!("authorization_code");
    body["authorization_url"] = serde_json::json!("https://idp.example/authorize");
    body["allowed_redirect_urls"] = serde_json::json!(["https://app.example/"]);
    let r = a.admin(Method::PUT, "/v1/providers/p", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(a.connection("p", "c").await.status, StatusCode::CREATED);
    let generation = a
        .state
        .store
        .get_connection("p", "c")
        .await
        .unwrap()
        .unwrap()
        .token_generation;
    let token = |access: &str, refresh: &str| {
        let keyring = &a.state.keyring;
        TokenRecord {
            access_token: keyring
                .encrypt(&Aad::connection_access_token("p", "c"), access.as_bytes())
                .unwrap(),
            refresh_token: Some(
                keyring
                    .encrypt(&Aad::connection_refresh_token("p", "c"), refresh.as_bytes())
                    .unwrap(),
            ),
            token_type: "Bearer".into(),
            claims: Default::default(),
            refresh_token_expires_at: None,
            obtained_at: now(),
            expires_at: now() + 60,
            refresh_at: now() + 30,
        }
    };
    let first = token("at-1", "rt-1");
    assert!(a
        .state
        .store
        .put_token("p", "c", generation, &first)
        .await
        .unwrap());
    let presented = first.refresh_token.clone().unwrap();

    // Replica B redeemed rt-1 and stores its result over it.
    let by_b = token("at-2", "rt-2");
    let put = b
        .state
        .store
        .put_refreshed_token("p", "c", generation, &presented, &by_b)
        .await
        .unwrap();
    assert_eq!(put, PutToken::Stored);
    // Replica A (its lease ran out) redeemed rt-1 too: it must not overwrite rt-2.
    let by_a = token("at-3", "rt-3");
    let put = a
        .state
        .store
        .put_refreshed_token("p", "c", generation, &presented, &by_a)
        .await
        .unwrap();
    assert_eq!(put, PutToken::RefreshTokenChanged);
    let stored = a.state.store.get_token("p", "c").await.unwrap().unwrap();
    assert_eq!(stored.refresh_token, by_b.refresh_token);
    // A write for an older configuration stores nothing either.
    let current = by_b.refresh_token.clone().unwrap();
    let put = a
        .state
        .store
        .put_refreshed_token("p", "c", generation + 1, &current, &by_a)
        .await
        .unwrap();
    assert_eq!(put, PutToken::Reconfigured);
}

#[tokio::test]
async fn readiness_names_the_store_and_any_replica_serves_what_another_wrote() {
    let Some(db) = TestDatabase::create_or_skip("readiness_and_replicas").await else {
        return;
    };
    let a = Harness::on_postgres(db).await;
    let b = a.replica().await;
    let r = b.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(
        r.json,
        serde_json::json!({"status": "ready", "store": "postgresql"})
    );
    a.provider("p", "https://idp.example/token").await;
    assert_eq!(a.connection("p", "c").await.status, StatusCode::CREATED);
    a.store_token("p", "c", "token-from-a", now(), now() + 300, now() + 600)
        .await;
    let r = b.runtime("p", "c").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "token-from-a");
    let r = b
        .admin(Method::GET, "/v1/providers/p/connections/c", None)
        .await;
    assert_eq!(r.json["status"], "connected", "{}", r.json);
}
