//! Self-service providers: who may not use or create a connection, concurrent first calls,
//! the rate limits on login URLs, the template's validation, and providers that are not
//! self-service answering as before.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::harness::*;
use crate::presets::LANDING;
use crate::self_service::{
    as_user, assert_login_answer, body, self_service_provider, trust_issuer, ISS,
};

#[tokio::test]
async fn nobody_but_its_user_can_use_or_create_a_self_service_connection() {
    let h = Harness::new().await;
    let sk = self_service_provider(&h, "forge", &closed_port_url()).await;
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    assert_login_answer(&r, "forge", "forge-u-alice");

    // Bob may not use alice's connection, and gets no login URL for it.
    let r = as_user(&h, &sk, "u-bob", "forge", "forge-u-alice").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert_error_mentions(&r, "`forge-u-bob`");
    assert!(r.json["error"].get("login_url").is_none(), "{}", r.json);
    assert!(r.headers.get("www-authenticate").is_none());

    // Nor create a connection under any id but his own.
    for id in ["forge-u-carol", "something-else", "forge-u-bob2"] {
        let r = as_user(&h, &sk, "u-bob", "forge", id).await;
        assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
        assert_error_mentions(
            &r,
            "the caller's connection of provider `forge` is `forge-u-bob`",
        );
    }
    // An object id that makes no valid id: no connection either.
    let r = as_user(&h, &sk, "auth0|42", "forge", "forge-auth0|42").await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "the path itself: {}",
        r.json
    );
    let r = as_user(&h, &sk, "auth0|42", "forge", "forge-x").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert_error_mentions(&r, "object id");

    // A gateway acting as itself gets no self-service connection: 404, nothing created.
    let r = h.runtime("forge", "forge-edge-1").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    // Nor alice's, which names only her.
    let r = h.runtime("forge", "forge-u-alice").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    let all = h
        .admin(Method::GET, "/v1/providers/forge/connections", None)
        .await;
    assert_eq!(ids(&all), ["forge-u-alice"]);

    // A caller from an issuer that is not trusted is refused before anything else.
    let (other, _) = crate::identities::es256_keys();
    let r = as_user(&h, &other, "u-bob", "forge", "forge-u-bob").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_ne!(r.json["error"]["code"], "consent_required");
    assert_eq!(
        ids(&h
            .admin(Method::GET, "/v1/providers/forge/connections", None)
            .await)
        .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_calls_make_one_connection_and_respect_the_limit() {
    let h = Arc::new(Harness::new().await);
    let sk = Arc::new(self_service_provider(&h, "forge", &closed_port_url()).await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let (h, sk) = (h.clone(), sk.clone());
            tokio::spawn(async move { as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await })
        })
        .collect();
    let mut links = 0;
    for call in calls {
        let r = call.await.unwrap();
        match r.status {
            StatusCode::UNAUTHORIZED => {
                assert_login_answer(&r, "forge", "forge-u-alice");
                links += 1;
            }
            StatusCode::TOO_MANY_REQUESTS => assert_error(&r, r.status, "rate_limited"),
            other => panic!("{other}: {}", r.json),
        }
    }
    assert_eq!(
        links, LINK_LIMITS.per_connection,
        "exactly the limit, counted together"
    );
    let all = h
        .admin(Method::GET, "/v1/providers/forge/connections", None)
        .await;
    assert_eq!(ids(&all), ["forge-u-alice"]);
    let policies = h
        .admin(
            Method::GET,
            "/v1/providers/forge/connections/forge-u-alice/access-policies",
            None,
        )
        .await;
    assert_eq!(
        policies.json.as_array().unwrap().len(),
        1,
        "{}",
        policies.json
    );
}

#[tokio::test]
async fn login_urls_are_rate_limited_per_connection_and_per_caller() {
    let h = Harness::new().await;
    let sk = self_service_provider(&h, "forge", &closed_port_url()).await;
    for _ in 0..LINK_LIMITS.per_connection {
        let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
        assert_login_answer(&r, "forge", "forge-u-alice");
    }
    let r = as_user(&h, &sk, "u-alice", "forge", "forge-u-alice").await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.json["error"].get("login_url").is_none(), "{}", r.json);
    let retry: i64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.json["error"]["details"]["retry_after_seconds"], retry);
    assert_error_mentions(&r, "for this connection");
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="rate_limited"} 1"#);

    // Another user of the same provider has a budget of their own.
    let r = as_user(&h, &sk, "u-bob", "forge", "forge-u-bob").await;
    assert_login_answer(&r, "forge", "forge-u-bob");

    // Alice's links for all connections count together.
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/forge2",
            Some(body("forge2", &closed_port_url())),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let left = LINK_LIMITS.per_caller - LINK_LIMITS.per_connection;
    for _ in 0..left {
        let r = as_user(&h, &sk, "u-alice", "forge2", "forge2-u-alice").await;
        assert_login_answer(&r, "forge2", "forge2-u-alice");
    }
    let r = as_user(&h, &sk, "u-alice", "forge2", "forge2-u-alice").await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_error_mentions(&r, "for this caller");
}

#[tokio::test]
async fn the_template_is_validated_shown_and_versioned() {
    let h = Harness::new().await;
    let put = |b: serde_json::Value| {
        let h = &h;
        async move { h.admin(Method::PUT, "/v1/providers/forge", Some(b)).await }
    };
    let good = body("forge", &closed_port_url());
    for (change, field) in [
        (
            json!({"connection_id": "fixed"}),
            "self_service.connection_id",
        ),
        (
            json!({"connection_id": "a/{{object_id}}"}),
            "self_service.connection_id",
        ),
        (
            json!({"connection_id": "{{sub}}-{{object_id}}"}),
            "self_service.connection_id",
        ),
        (
            json!({"display_name": "{{email}}"}),
            "self_service.display_name",
        ),
        (
            json!({"post_login_redirect_url": "https://evil.example/"}),
            "self_service.post_login_redirect_url",
        ),
        (json!({"scopes": ["x"]}), "self_service"),
    ] {
        let mut b = good.clone();
        for (k, v) in change.as_object().unwrap() {
            b["self_service"][k] = v.clone();
        }
        let r = put(b).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        let got = r.json["error"]["details"]["field"].as_str().unwrap_or("");
        assert!(got.starts_with(field), "{field}: {}", r.json);
    }
    let mut b = good.clone();
    b["self_service"]
        .as_object_mut()
        .unwrap()
        .remove("post_login_redirect_url");
    assert_error(&put(b).await, StatusCode::BAD_REQUEST, "invalid_request");
    let mut b = provider_body(&closed_port_url());
    b["self_service"] = good["self_service"].clone();
    b["allowed_redirect_urls"] = json!([LANDING]);
    assert_invalid_field(&put(b).await, "self_service");

    let r = put(good.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(r.json["self_service"], good["self_service"]);
    let shown = h.admin(Method::GET, "/v1/providers/forge", None).await;
    assert_eq!(shown.json["self_service"], good["self_service"]);

    // Changing the template is a change: a new ETag; the old one is stale.
    let mut b = h.provider_to_resend("forge").await;
    b["self_service"]["display_name"] = json!("Account {{object_id}}");
    let r = h
        .admin_if_match(Method::PUT, "/v1/providers/forge", &etag, Some(b.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h
        .admin_if_match(Method::PUT, "/v1/providers/forge", &etag, Some(b))
        .await;
    assert_error(&r, StatusCode::PRECONDITION_FAILED, "precondition_failed");

    // A preset's provider takes a template too (GitHub: authorization code).
    let mut b = crate::presets::preset_body("github", json!({}));
    b["self_service"] =
        json!({"connection_id": "gh-{{object_id}}", "post_login_redirect_url": LANDING});
    let r = h.admin(Method::PUT, "/v1/providers/github", Some(b)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["self_service"]["connection_id"], "gh-{{object_id}}");
    assert!(r.json["self_service"].get("display_name").is_none());

    // Without the template the provider is not self-service any more.
    let mut b = h.provider_to_resend("forge").await;
    b.as_object_mut().unwrap().remove("self_service");
    let r = put(b).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert!(r.json["self_service"].is_null(), "{}", r.json);
}

#[tokio::test]
async fn providers_that_are_not_self_service_answer_as_before() {
    let h = Harness::new().await;
    let mut b = body("plain", &closed_port_url());
    b.as_object_mut().unwrap().remove("self_service");
    let r = h.admin(Method::PUT, "/v1/providers/plain", Some(b)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let sk = trust_issuer(&h).await;

    // No connection is made: 404.
    let r = as_user(&h, &sk, "u-alice", "plain", "plain-u-alice").await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let all = h
        .admin(Method::GET, "/v1/providers/plain/connections", None)
        .await;
    assert_eq!(ids(&all), Vec::<String>::new());

    // A connection alice may use but that awaits consent: today's 503, no login URL.
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/plain/connections/alice",
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/plain/connections/alice/access-policies/alice",
            Some(json!({"identity": {"kind": "user", "issuer": ISS, "object_id": "u-alice"}})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let r = as_user(&h, &sk, "u-alice", "plain", "alice").await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "consent_required");
    assert!(r.json["error"].get("login_url").is_none(), "{}", r.json);
    assert!(r.headers.get("www-authenticate").is_none());
    assert_error_mentions(&r, "login-links");
}
