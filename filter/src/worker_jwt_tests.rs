//! The worker with `identity-type: jwt`: issuers fetched on first use and on an unknown key
//! id, callers verified once, decided with the policies that came with the token.

use super::*;
use crate::host::CallResponse;
use crate::test_host::*;
use jwt_compact::alg::Es256;
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Header};
use serde_json::{json, Value};

pub const ISS: &str = "https://login.example/v2.0";
pub const AUD: &str = "api://backend";
pub const NOW: i64 = 1_800_000_000;

pub type Key = <Es256 as Algorithm>::SigningKey;

pub fn key() -> (Key, Value) {
    let sk = Key::random(&mut rand::rngs::OsRng);
    let jwk = serde_json::to_value(JsonWebKey::from(sk.verifying_key())).unwrap();
    (sk, jwk)
}

pub fn jwks(keys: &[(&str, &Value)]) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(kid, jwk)| {
            let mut k = (*jwk).clone();
            k["kid"] = json!(kid);
            k
        })
        .collect();
    json!({ "keys": keys })
}

fn sign(sk: &Key, kid: &str, oid: &str) -> String {
    let Value::Object(custom) = json!({"iss": ISS, "aud": AUD, "oid": oid}) else {
        unreachable!()
    };
    let mut claims = Claims::new(custom);
    claims.expiration = chrono::DateTime::from_timestamp(NOW + 300, 0);
    Es256
        .token(&Header::empty().with_key_id(kid), &claims, sk)
        .unwrap()
}

fn jwt_worker() -> Worker {
    worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth", "identity-type": "jwt",
                "identity": "{{request.headers.authorization}}"}},
            {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
        ]}
    }))
}

pub fn issuers_answer(jwks: Value) -> CallResponse {
    let body = json!({"issuers": [{"issuer": ISS, "audiences": [AUD], "leeway_seconds": 0,
        "jwks": jwks}], "refresh_after_seconds": 15});
    CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    }
}

fn token_answer(policies: Value) -> CallResponse {
    let body = json!({"access_token": "conn-token", "token_type": "Bearer",
        "expires_at": NOW + 3600, "refresh_at": NOW + 10, "claims": {},
        "access_policies": policies});
    CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    }
}

fn alice_only() -> Value {
    json!([{"kind": "user", "issuer": ISS, "object_id": "u-alice"}])
}

pub fn host_at_now() -> FakeHost {
    let host = FakeHost::default();
    host.now_ms.set(u64::try_from(NOW).unwrap() * 1000);
    host
}

fn caller(host: &FakeHost, ctx: u32, jwt: &str) {
    host.set_headers(ctx, &[("authorization", &format!("Bearer {jwt}"))]);
}

pub fn last_call_header(host: &FakeHost, name: &str) -> Option<String> {
    host.call_headers
        .borrow()
        .last()
        .unwrap()
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

#[test]
fn callers_are_verified_once_and_decided_with_the_connections_policies() {
    let w = jwt_worker();
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, "k1", "u-alice");

    // First request: the issuers, then the token for this caller, then on to the backend.
    caller(&host, 10, &alice);
    assert_eq!(start(&w, &host, 10), Flow::Pause);
    assert_eq!(host.last_call_path(), "/runtime/v1/trusted-issuers");
    answer_last(&w, &host, issuers_answer(jwks(&[("k1", &jwk)])));
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/providers/gh/connections/alice/token"
    );
    assert_eq!(
        last_call_header(&host, "x-credmgr-caller-token").as_deref(),
        Some(alice.as_str()),
        "the control plane decides for the caller too"
    );
    answer_last(&w, &host, token_answer(alice_only()));
    assert_eq!(
        host.header_values(10, "authorization"),
        vec!["Bearer conn-token"]
    );
    assert_eq!(*host.resumed.borrow(), vec![10]);

    // Again: no call, no new verification.
    for ctx in 11..16 {
        caller(&host, ctx, &alice);
        assert_eq!(start(&w, &host, ctx), Flow::Continue);
    }
    assert_eq!(host.calls(), 2);

    // Another caller of the same issuer, not named by a policy: 403 here, no call.
    caller(&host, 20, &sign(&sk, "k1", "u-bob"));
    assert_eq!(start(&w, &host, 20), Flow::Respond);
    let (status, body) = host.reply(20).unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );

    // A forged token, an expired one, none at all: 401 with the reason, no call.
    let (other, _) = key();
    caller(&host, 21, &sign(&other, "k1", "u-alice"));
    assert_eq!(start(&w, &host, 21), Flow::Respond);
    assert_eq!(
        host.reply(21).unwrap().1["error"]["code"],
        "jwt_bad_signature"
    );
    host.set_headers(22, &[]);
    assert_eq!(start(&w, &host, 22), Flow::Respond);
    assert_eq!(host.reply(22).unwrap().0, 401);
    assert_eq!(host.calls(), 2);

    w.view.stats.flush(&host);
    assert_eq!(host.counter(stats::JWT_VERIFIED), 2, "alice once, bob once");
}

#[test]
fn an_unknown_key_id_fetches_the_issuers_again_once_and_the_request_goes_on() {
    let w = jwt_worker();
    let host = host_at_now();
    let (old_sk, old_jwk) = key();
    caller(&host, 10, &sign(&old_sk, "k1", "u-alice"));
    assert_eq!(start(&w, &host, 10), Flow::Pause);
    answer_last(&w, &host, issuers_answer(jwks(&[("k1", &old_jwk)])));
    answer_last(&w, &host, token_answer(alice_only()));
    assert_eq!(host.calls(), 2);

    // The issuer rotated: a token signed with k2, which the gateway does not know yet.
    let (new_sk, new_jwk) = key();
    caller(&host, 11, &sign(&new_sk, "k2", "u-alice"));
    assert_eq!(start(&w, &host, 11), Flow::Pause);
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/trusted-issuers?issuer=https%3A%2F%2Flogin.example%2Fv2.0&kid=k2"
    );
    answer_last(
        &w,
        &host,
        issuers_answer(jwks(&[("k2", &new_jwk), ("k1", &old_jwk)])),
    );
    assert_eq!(
        host.header_values(11, "authorization"),
        vec!["Bearer conn-token"]
    );

    // A made-up key id right after: refused at once, no new call (rate limited).
    caller(&host, 12, &sign(&new_sk, "k9", "u-alice"));
    assert_eq!(start(&w, &host, 12), Flow::Respond);
    assert_eq!(
        host.reply(12).unwrap().1["error"]["code"],
        "jwt_unknown_key"
    );
    assert_eq!(host.calls(), 3);
}

#[test]
fn a_refusal_when_the_token_is_fetched_again_stops_the_cached_token_serving() {
    let w = jwt_worker();
    let host = host_at_now();
    let (sk, jwk) = key();
    let alice = sign(&sk, "k1", "u-alice");
    caller(&host, 10, &alice);
    start(&w, &host, 10);
    answer_last(&w, &host, issuers_answer(jwks(&[("k1", &jwk)])));
    answer_last(&w, &host, token_answer(alice_only()));

    // Past refresh_at (the control plane's revalidation point): served, and fetched again
    // in the background on the tick.
    host.now_ms.set(u64::try_from(NOW + 12).unwrap() * 1000);
    caller(&host, 11, &alice);
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    w.on_tick(host.on(ROOT), ROOT);
    assert_eq!(
        host.last_call_path(),
        "/runtime/v1/providers/gh/connections/alice/token"
    );
    // The policy was deleted meanwhile: the control plane refuses.
    let refused = CallResponse {
        status: Some(403),
        body: br#"{"error": {"code": "forbidden", "message": "no policy"}}"#.to_vec(),
    };
    answer_last(&w, &host, refused);

    // The cached token no longer serves, and the refusal is repeated locally for a while
    // (cache.denial_ttl_ms): no call.
    let calls = host.calls();
    caller(&host, 12, &alice);
    assert_eq!(start(&w, &host, 12), Flow::Respond);
    assert_eq!(host.reply(12).unwrap().0, 403);
    assert_eq!(host.calls(), calls);

    // Then the control plane is asked again (a policy may have been added back).
    host.now_ms.set(u64::try_from(NOW + 15).unwrap() * 1000);
    caller(&host, 13, &alice);
    assert_eq!(start(&w, &host, 13), Flow::Pause);
    answer_last(&w, &host, token_answer(alice_only()));
    assert_eq!(
        host.header_values(13, "authorization"),
        vec!["Bearer conn-token"]
    );
}
