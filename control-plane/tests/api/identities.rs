//! Access policies and trusted issuers through the management API, and the runtime API
//! deciding with them.

use axum::http::{Method, StatusCode};
use credmgr_common::runtime::{CALLER_TOKEN_HEADER, ISSUERS_PATH};
use jwt_compact::alg::Es256;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{AlgorithmExt, Claims, Header};
use serde_json::{json, Value};

use crate::harness::{
    assert_error, assert_error_mentions, assert_invalid_field, now, Harness, Reply, GATEWAY_KEY,
};

const ISS: &str = "https://login.example/tenant-1/v2.0";
const POLICIES: &str = "/v1/providers/gh/connections/alice/access-policies";

async fn connection_with_token(h: &Harness) {
    h.unreachable_connection("gh", "alice").await;
    h.store_fresh_token("gh", "alice", "stored-token").await;
}

/// Puts the access policy `id` of gh/alice.
async fn put_policy(h: &Harness, id: &str, body: Value) -> Reply {
    h.admin(Method::PUT, &format!("{POLICIES}/{id}"), Some(body))
        .await
}

#[tokio::test]
async fn a_connection_is_usable_only_by_what_its_policies_name() {
    let h = Harness::new().await;
    connection_with_token(&h).await;
    assert_eq!(h.runtime("gh", "alice").await.status, StatusCode::OK);

    // The harness's policy names the gateway; with another name, or none at all, it is 403.
    let r = put_policy(
        &h,
        "edge-1",
        json!({"identity": {"kind": "gateway", "name": "edge-2"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert_error_mentions(&r, "edge-1");

    let r = h
        .admin(Method::DELETE, &format!("{POLICIES}/edge-1"), None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = h.runtime("gh", "alice").await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert_error_mentions(&r, "no access policies");
    let r = h.admin(Method::GET, POLICIES, None).await;
    assert_eq!(r.json, json!([]));
    h.assert_metric(r#"credmgr_runtime_token_requests_total{outcome="denied"} 2"#);
}

#[tokio::test]
async fn a_token_answer_carries_every_policy_of_its_connection_in_id_order() {
    // The runtime API reads the policies with the token in one query, joined by the
    // database: identities holding commas, brackets and quotes come back whole.
    let h = Harness::new().await;
    connection_with_token(&h).await;
    let group = json!({"kind": "group", "issuer": ISS, "group_id": "g,1\"]},{"});
    let user = json!({"kind": "user", "issuer": ISS, "object_id": "u-alice"});
    for (id, identity) in [("b-group", &group), ("a-user", &user)] {
        let r = put_policy(&h, id, json!({ "identity": identity })).await;
        assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.json);
    }
    let r = h.runtime("gh", "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let gateway = json!({"kind": "gateway", "name": "edge-1"});
    assert_eq!(r.json["access_policies"], json!([user, group, gateway]));

    // Another connection of the provider has its own policies only.
    h.connection("gh", "bob").await;
    h.store_fresh_token("gh", "bob", "bobs-token").await;
    let r = h.runtime("gh", "bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "bobs-token");
    assert_eq!(r.json["access_policies"], json!([gateway]));
}

#[tokio::test]
async fn policies_are_validated_and_have_etags() {
    let h = Harness::new().await;
    connection_with_token(&h).await;
    for (body, field) in [
        (
            json!({"identity": {"kind": "robot", "name": "r"}}),
            "identity",
        ),
        (
            json!({"identity": {"kind": "user", "issuer": ISS}}),
            "identity",
        ),
        (
            json!({"identity": {"kind": "user", "issuer": ISS, "object_id": ""}}),
            "identity.object_id",
        ),
        (
            json!({"identity": {"kind": "gateway", "name": "a b"}}),
            "identity.name",
        ),
        (
            json!({"identity": {"kind": "gateway", "name": "g"}, "colour": 1}),
            "colour",
        ),
    ] {
        let r = put_policy(&h, "p1", body).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_request");
        let got = r.json["error"]["details"]["field"].as_str().unwrap_or("");
        assert!(got.starts_with(field), "{field}: {}", r.json);
    }
    let r = h
        .admin(
            Method::PUT,
            "/v1/providers/gh/connections/nobody/access-policies/p1",
            Some(json!({"identity": {"kind": "gateway", "name": "g"}})),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");

    let body = json!({"display_name": "Ops", "identity": {"kind": "group", "issuer": ISS, "group_id": "g-ops"}});
    let r = put_policy(&h, "ops", body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let etag = r.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(r.json["identity"]["group_id"], "g-ops");
    let r = put_policy(&h, "ops", body).await;
    assert_eq!(r.status, StatusCode::OK);
    // The first ETag is stale now.
    let stale = h
        .admin_if_match(Method::DELETE, &format!("{POLICIES}/ops"), &etag, None)
        .await;
    assert_error(
        &stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    );
    let r = h.admin(Method::GET, POLICIES, None).await;
    assert_eq!(r.json.as_array().unwrap().len(), 2, "{}", r.json);
}

/// An ES256 key pair: the private key, and the JWKS of its public key with kid `k1`.
pub fn es256_keys() -> (<Es256 as jwt_compact::Algorithm>::SigningKey, Value) {
    let sk = <Es256 as jwt_compact::Algorithm>::SigningKey::random(&mut rand::rngs::OsRng);
    let mut jwk = serde_json::to_value(JsonWebKey::from(sk.verifying_key())).unwrap();
    jwk["kid"] = json!("k1");
    (sk, json!({"keys": [jwk]}))
}

pub fn sign(sk: &<Es256 as jwt_compact::Algorithm>::SigningKey, claims: Value) -> String {
    let Value::Object(custom) = claims else {
        panic!()
    };
    let mut claims = Claims::new(custom);
    claims.expiration = chrono::DateTime::from_timestamp(now() + 300, 0);
    Es256
        .token(&Header::empty().with_key_id("k1"), &claims, sk)
        .unwrap()
}

/// A caller's JWT from the issuer `ISS`, for the audience `aud` and the user `oid`.
fn caller_jwt(sk: &<Es256 as jwt_compact::Algorithm>::SigningKey, aud: &str, oid: &str) -> String {
    sign(sk, json!({"iss": ISS, "aud": aud, "oid": oid}))
}

#[tokio::test]
async fn the_runtime_api_verifies_a_forwarded_jwt_and_decides_for_its_holder() {
    let h = Harness::new().await;
    connection_with_token(&h).await;
    let (sk, jwks) = es256_keys();

    // Issuers: validated, and private keys refused.
    let mut leaky = jwks.clone();
    leaky["keys"][0]["d"] = json!("c2VjcmV0");
    for (body, field) in [
        (
            json!({"issuer": ISS, "audiences": [], "jwks": jwks}),
            "audiences",
        ),
        (json!({"issuer": ISS, "audiences": ["api"]}), "jwks_uri"),
        (
            json!({"issuer": "not a url", "audiences": ["api"], "jwks": jwks}),
            "issuer",
        ),
        (
            json!({"issuer": ISS, "audiences": ["api"], "jwks": leaky}),
            "jwks.keys[0]",
        ),
        (
            json!({"issuer": ISS, "audiences": ["api"], "jwks": {"keys": []}}),
            "jwks",
        ),
        (
            json!({"issuer": ISS, "audiences": ["api"], "jwks": jwks, "leeway_seconds": 3600}),
            "leeway_seconds",
        ),
    ] {
        let r = h
            .admin(Method::PUT, "/v1/trusted-issuers/entra", Some(body))
            .await;
        assert_invalid_field(&r, field);
    }
    let body = json!({"issuer": ISS, "audiences": ["api://backend"], "jwks": jwks});
    let r = h
        .admin(Method::PUT, "/v1/trusted-issuers/entra", Some(body.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    assert_eq!(r.json["keys"]["count"], 1);
    let r = h
        .admin(Method::PUT, "/v1/trusted-issuers/other", Some(body))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");

    // Gateways get the issuers with their public keys.
    let r = h
        .call(Method::GET, ISSUERS_PATH, Some(GATEWAY_KEY), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json["issuers"][0]["issuer"], ISS);
    assert_eq!(r.json["issuers"][0]["jwks"], jwks);
    assert_eq!(r.json["refresh_after_seconds"], 15);
    let r = h.call(Method::GET, ISSUERS_PATH, None, None).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthenticated");

    let r = put_policy(
        &h,
        "alice",
        json!({"identity": {"kind": "user", "issuer": ISS, "object_id": "u-alice"}}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.json);
    let path = credmgr_common::runtime::token_path("gh", "alice");
    let as_caller = |jwt: String| {
        let h = &h;
        let path = path.clone();
        async move {
            h.call_with_headers(
                Method::GET,
                &path,
                &[
                    ("authorization", &format!("Bearer {GATEWAY_KEY}")),
                    (CALLER_TOKEN_HEADER, &jwt),
                ],
            )
            .await
        }
    };
    let alice = caller_jwt(&sk, "api://backend", "u-alice");
    let r = as_caller(alice).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["access_token"], "stored-token");

    let bob = caller_jwt(&sk, "api://backend", "u-bob");
    assert_error(&as_caller(bob).await, StatusCode::FORBIDDEN, "forbidden");
    let wrong_aud = caller_jwt(&sk, "api://other", "u-alice");
    assert_error(
        &as_caller(wrong_aud).await,
        StatusCode::UNAUTHORIZED,
        "jwt_wrong_audience",
    );
    let (other_sk, _) = es256_keys();
    let forged = caller_jwt(&other_sk, "api://backend", "u-alice");
    assert_error(
        &as_caller(forged).await,
        StatusCode::UNAUTHORIZED,
        "jwt_bad_signature",
    );

    // A deleted issuer identifies nobody any more.
    let r = h
        .admin(Method::DELETE, "/v1/trusted-issuers/entra", None)
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let alice = caller_jwt(&sk, "api://backend", "u-alice");
    assert_error(
        &as_caller(alice).await,
        StatusCode::UNAUTHORIZED,
        "jwt_untrusted_issuer",
    );
}
