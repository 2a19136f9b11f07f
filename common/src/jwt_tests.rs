use super::*;
use chrono::DateTime;
use jwt_compact::alg::{Hs256, Hs256Key, ModulusBits, RsaPrivateKey};
use jwt_compact::Header;
use rand::rngs::OsRng;
use serde_json::json;

const ISS: &str = "https://issuer.example";
const NOW: i64 = 1_800_000_000;

enum Signer {
    Rs256(Box<RsaPrivateKey>),
    Es256(<Es256 as Algorithm>::SigningKey),
    EdDsa(<Ed25519 as Algorithm>::SigningKey),
}

struct Keys {
    signers: Vec<(String, Signer)>,
    jwks: serde_json::Value,
}

/// One key of each accepted algorithm, with kids "rs", "es" and "ed", and their JWKS.
fn keys() -> Keys {
    let (rs_sk, rs_pk) = Rsa::generate(&mut OsRng, ModulusBits::TwoKibibytes).unwrap();
    let es_sk = <Es256 as Algorithm>::SigningKey::random(&mut OsRng);
    let es_pk = *es_sk.verifying_key();
    let (ed_sk, ed_pk) = Ed25519::generate(&mut OsRng);
    let jwk = |key: JsonWebKey<'_>, kid: &str| {
        let mut v = serde_json::to_value(key).unwrap();
        v["kid"] = json!(kid);
        v
    };
    let jwks = json!({"keys": [
        jwk(JsonWebKey::from(rs_pk.as_ref()), "rs"),
        jwk(JsonWebKey::from(&es_pk), "es"),
        jwk(JsonWebKey::from(&ed_pk), "ed"),
        // Left out: an encryption key and a symmetric key.
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]});
    Keys {
        signers: vec![
            ("rs".into(), Signer::Rs256(Box::new(rs_sk.into_inner()))),
            ("es".into(), Signer::Es256(es_sk)),
            ("ed".into(), Signer::EdDsa(ed_sk)),
        ],
        jwks,
    }
}

fn issuer(keys: &Keys) -> Vec<TrustedIssuer> {
    vec![TrustedIssuer::new(
        ISS.into(),
        vec!["api://backend".into()],
        ClaimNames::default(),
        30,
        &keys.jwks,
    )
    .unwrap()]
}

fn claims(extra: Value) -> Claims<Map<String, Value>> {
    let mut custom = json!({"iss": ISS, "aud": "api://backend", "oid": "u-1", "azp": "app-1", "groups": ["g-1"]});
    for (k, v) in extra.as_object().unwrap() {
        custom[k] = v.clone();
    }
    let Value::Object(custom) = custom else {
        unreachable!()
    };
    let mut c = Claims::new(custom);
    c.expiration = DateTime::from_timestamp(NOW + 300, 0);
    c
}

fn sign(signer: &Signer, kid: &str, claims: &Claims<Map<String, Value>>) -> String {
    let header = Header::empty().with_key_id(kid);
    match signer {
        Signer::Rs256(k) => Rsa::rs256().token(&header, claims, k).unwrap(),
        Signer::Es256(k) => Es256.token(&header, claims, k).unwrap(),
        Signer::EdDsa(k) => Ed25519.token(&header, claims, k).unwrap(),
    }
}

#[test]
fn rs256_es256_and_eddsa_tokens_verify_and_name_their_caller() {
    let keys = keys();
    let issuers = issuer(&keys);
    for (kid, signer) in &keys.signers {
        let token = sign(signer, kid, &claims(json!({})));
        let v = verify(&issuers, &token, NOW).unwrap_or_else(|e| panic!("{kid}: {e}"));
        assert_eq!(v.identity.issuer, ISS);
        assert_eq!(v.identity.object_id.as_deref(), Some("u-1"));
        assert_eq!(v.identity.application_id.as_deref(), Some("app-1"));
        assert_eq!(v.identity.groups, vec!["g-1"]);
        assert_eq!(v.expires_at, NOW + 300);
    }
}

#[test]
fn every_bad_token_is_refused_with_its_reason() {
    let keys = keys();
    let issuers = issuer(&keys);
    let (kid, es) = (&keys.signers[1].0, &keys.signers[1].1);
    let code = |token: &str| verify(&issuers, token, NOW).unwrap_err().code();

    // alg: none.
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none"})),
        b64(json!({"iss": ISS, "exp": NOW + 300}))
    );
    assert_eq!(code(&none), "jwt_algorithm_not_allowed");

    // HS256 "signed" with the issuer's public key (algorithm confusion).
    let public = serde_json::to_vec(&keys.jwks["keys"][1]).unwrap();
    let hs = Hs256
        .token(
            &Header::empty().with_key_id("es"),
            &claims(json!({})),
            &Hs256Key::new(public),
        )
        .unwrap();
    assert_eq!(code(&hs), "jwt_algorithm_not_allowed");

    assert_eq!(
        code(&sign(es, "nope", &claims(json!({})))),
        "jwt_unknown_key"
    );
    assert_eq!(
        code(&sign(
            es,
            kid,
            &claims(json!({"iss": "https://evil.example"}))
        )),
        "jwt_untrusted_issuer"
    );
    assert_eq!(
        code(&sign(es, kid, &claims(json!({"aud": "api://other"})))),
        "jwt_wrong_audience"
    );
    assert_eq!(
        code(&sign(es, kid, &claims(json!({"aud": ["x", "y"]})))),
        "jwt_wrong_audience"
    );
    assert_eq!(code("not.a.jwt"), "jwt_malformed");
    assert_eq!(code("garbage"), "jwt_malformed");

    let mut expired = claims(json!({}));
    expired.expiration = DateTime::from_timestamp(NOW - 31, 0);
    assert_eq!(code(&sign(es, kid, &expired)), "jwt_expired");
    expired.expiration = DateTime::from_timestamp(NOW - 29, 0);
    assert!(
        verify(&issuers, &sign(es, kid, &expired), NOW).is_ok(),
        "within the leeway"
    );

    let mut early = claims(json!({}));
    early.not_before = DateTime::from_timestamp(NOW + 60, 0);
    assert_eq!(code(&sign(es, kid, &early)), "jwt_not_yet_valid");

    let mut no_exp = claims(json!({}));
    no_exp.expiration = None;
    assert_eq!(code(&sign(es, kid, &no_exp)), "jwt_missing_claim");

    // Signed by a key the issuer does not have, under a kid it does have.
    let other = <Es256 as Algorithm>::SigningKey::random(&mut OsRng);
    assert_eq!(
        code(&sign(&Signer::Es256(other), kid, &claims(json!({})))),
        "jwt_bad_signature"
    );

    // A tampered payload.
    let good = sign(es, kid, &claims(json!({})));
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(json!({"iss": ISS, "aud": "api://backend", "oid": "admin", "exp": NOW + 300})),
        parts[2]
    );
    assert_eq!(code(&tampered), "jwt_bad_signature");

    // A validly signed token whose `crit` header names an extension (RFC 7515 §4.1.11).
    let Signer::Es256(es_key) = es else {
        panic!("the second signer is ES256")
    };
    let mut fields = Map::new();
    fields.insert("crit".into(), json!(["exp-ext"]));
    fields.insert("exp-ext".into(), json!(true));
    let header = Header::new(fields).with_key_id(kid);
    let critical = Es256.token(&header, &claims(json!({})), es_key).unwrap();
    let refused = verify(&issuers, &critical, NOW).unwrap_err();
    assert_eq!(refused.code(), "jwt_malformed");
    assert!(refused.to_string().contains("crit"), "{refused}");
}

#[test]
fn a_verified_token_is_checked_once_until_it_expires() {
    let keys = keys();
    let issuers = issuer(&keys);
    let token = sign(&keys.signers[2].1, "ed", &claims(json!({})));
    let mut cache = VerifiedCache::default();
    assert!(cache.verify(&issuers, &token, NOW).is_ok());
    // With no issuers at all, only the cache can answer.
    for _ in 0..100 {
        assert!(cache.verify(&[], &token, NOW + 10).is_ok());
    }
    assert_eq!(cache.len(), 1);
    assert_eq!(cache.verifications, 1);
    // Past `exp` plus the issuer's 30 s leeway, the token is verified anew (and fails here).
    assert!(cache.verify(&[], &token, NOW + 329).is_ok());
    assert_eq!(
        cache.verify(&[], &token, NOW + 331).unwrap_err().code(),
        "jwt_untrusted_issuer"
    );
}

#[test]
fn unreadable_keys_are_named() {
    let err = TrustedIssuer::new(
        ISS.into(),
        vec![],
        ClaimNames::default(),
        30,
        &json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "bad", "x": "AA", "y": "AA"}]}),
    )
    .err()
    .unwrap();
    assert!(err.contains("\"bad\""), "{err}");
    assert!(TrustedIssuer::new(ISS.into(), vec![], ClaimNames::default(), 0, &json!({})).is_err());
}

#[test]
fn only_named_short_claims_are_kept_and_only_after_verification() {
    let keys = keys();
    let issuers = issuer(&keys);
    let long = "x".repeat(MAX_KEPT_CLAIM_LEN + 1);
    let token = sign(
        &keys.signers[2].1,
        "ed",
        &claims(json!({"sub": "user-7", "n": 42, "obj": {"a": 1}, "long": long})),
    );
    let keep: Vec<String> = ["sub", "n", "obj", "long", "absent"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let v = verify_keeping(&issuers, &token, NOW, &keep).unwrap();
    assert_eq!(v.claim("sub"), Some("user-7"));
    assert_eq!(v.claim("n"), Some("42"));
    assert_eq!(v.claim("obj"), None);
    assert_eq!(v.claim("long"), None);
    assert_eq!(v.claim("absent"), None);
    assert!(verify(&issuers, &token, NOW).unwrap().claims.is_empty());
    // A tampered token keeps nothing: it is refused.
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = parts[1].chars().rev().collect();
    assert!(verify_keeping(&issuers, &parts.join("."), NOW, &keep).is_err());
    let mut cache = VerifiedCache::keeping(keep);
    assert_eq!(
        cache.verify(&issuers, &token, NOW).unwrap().claim("sub"),
        Some("user-7")
    );
}
