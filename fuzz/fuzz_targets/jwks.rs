//! A trusted issuer's JWKS (`TrustedIssuer::new`, and `from_published` as gateways read the
//! control plane's trusted-issuers document): what a `jwks_uri` answers.
//!
//! Checks: no more usable keys than the JWKS lists; the published form (serialized and read
//! back, as a gateway receives it) gives the same issuer; a negative leeway counts as none;
//! tokens signed by the fixed keys verify against it only as that issuer.
#![no_main]

use credmgr_common::access::ClaimNames;
use credmgr_common::jwt::{verify, TrustedIssuer};
use credmgr_common::runtime::PublishedIssuer;
use credmgr_fuzz::{sign, signers, Alg, AUD, ISS, NOW};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::sync::LazyLock;

/// Tokens signed by the fixed keys, valid at NOW for the fixed issuer and audience.
static TOKENS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let s = signers();
    let claims = format!(
        r#"{{"iss":"{ISS}","aud":"{AUD}","sub":"u1","exp":{}}}"#,
        NOW + 60
    );
    vec![
        sign(
            &s,
            Alg::EdDsa,
            br#"{"alg":"EdDSA","kid":"ed"}"#,
            claims.as_bytes(),
        ),
        sign(
            &s,
            Alg::Es256,
            br#"{"alg":"ES256","kid":"es"}"#,
            claims.as_bytes(),
        ),
        sign(&s, Alg::EdDsa, br#"{"alg":"EdDSA"}"#, claims.as_bytes()),
    ]
});

fuzz_target!(|data: &[u8]| {
    let [leeway, json @ ..] = data else {
        return;
    };
    let Ok(jwks) = serde_json::from_slice::<Value>(json) else {
        return;
    };
    let leeway = i64::from(*leeway as i8);
    let listed = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let made = TrustedIssuer::new(
        ISS.into(),
        vec![AUD.into()],
        ClaimNames::default(),
        leeway,
        &jwks,
    );
    let published = PublishedIssuer {
        issuer: ISS.into(),
        audiences: vec![AUD.into()],
        claims: ClaimNames::default(),
        leeway_seconds: leeway,
        jwks: jwks.clone(),
    };
    let wire = serde_json::to_vec(&published).unwrap_or_default();
    let received: PublishedIssuer = match serde_json::from_slice(&wire) {
        Ok(p) => p,
        Err(e) => panic!("a published issuer does not read back: {e}"),
    };
    let from_published = TrustedIssuer::from_published(&received);
    match (&made, &from_published) {
        (Ok(a), Ok(b)) => assert_eq!(a.key_count(), b.key_count()),
        // Not the messages: serde_json reads long decimals to the nearest f64 only
        // approximately, so a number quoted in one may differ in its last digits.
        (Err(_), Err(_)) => {}
        _ => panic!(
            "the published form reads otherwise: {:?} / {:?}",
            made.is_ok(),
            from_published.is_ok()
        ),
    }
    let Ok(issuer) = made else {
        return;
    };
    assert!(issuer.key_count() <= listed);
    assert_eq!(issuer.leeway, leeway.max(0));
    let issuers = [issuer];
    for token in TOKENS.iter() {
        if let Ok(v) = verify(&issuers, token, NOW) {
            assert_eq!(v.identity.issuer, ISS);
        }
    }
});
