//! Callers' JWTs verified against a fixed trusted issuer (`credmgr_common::jwt::verify`, as
//! the filter and the control plane both do), with one key of each accepted algorithm.
//!
//! Input: byte 0 even: the rest is the token as a caller sends it. Byte 0 odd: the fuzzer
//! writes the header (up to byte 1's length) and the claims, and the harness signs them with
//! the issuer's own Ed25519 or P-256 key, so claims parsing and checking past the signature
//! are reached.
//!
//! Checks: a verified token has the fixed issuer, is valid now, and its `valid_until` is its
//! `exp` plus the leeway; the cache answers as `verify` does; a token the issuer's key
//! signed is never refused as badly signed or unknown-keyed when its header names that key.
#![no_main]

use credmgr_common::jwt::{peek_issuer_and_kid, verify, JwtError, TrustedIssuer, VerifiedCache};
use credmgr_fuzz::{sign, signers, Alg, Signers, ISS, LEEWAY, NOW};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static ISSUERS: LazyLock<Vec<TrustedIssuer>> = LazyLock::new(|| vec![credmgr_fuzz::issuer()]);
static SIGNERS: LazyLock<Signers> = LazyLock::new(signers);

fuzz_target!(|data: &[u8]| {
    let [mode, rest @ ..] = data else {
        return;
    };
    let (token, signed_with) = if mode & 1 == 0 {
        let Ok(token) = std::str::from_utf8(rest) else {
            return;
        };
        (token.to_owned(), None)
    } else {
        let [len, rest @ ..] = rest else {
            return;
        };
        let split = usize::from(*len).min(rest.len());
        let (header, payload) = rest.split_at(split);
        let alg = if mode & 2 == 0 {
            Alg::EdDsa
        } else {
            Alg::Es256
        };
        (sign(&SIGNERS, alg, header, payload), Some((alg, header)))
    };

    let result = verify(&ISSUERS, &token, NOW);
    let mut cache = VerifiedCache::default();
    assert_eq!(cache.verify(&ISSUERS, &token, NOW), result);
    assert_eq!(
        cache.verify(&ISSUERS, &token, NOW),
        result,
        "the cache answered otherwise"
    );

    match &result {
        Ok(v) => {
            assert_eq!(v.identity.issuer, ISS);
            assert_eq!(v.valid_until, v.expires_at.saturating_add(LEEWAY));
            assert!(NOW <= v.valid_until, "an expired token was accepted");
            let (iss, _) = peek_issuer_and_kid(&token).unwrap_or_default();
            assert_eq!(iss, ISS, "peek_issuer_and_kid disagrees with verify");
        }
        Err(JwtError::BadSignature | JwtError::UnknownKey(_)) => {
            if let Some((alg, header)) = signed_with {
                let header: serde_json::Value = serde_json::from_slice(header).unwrap_or_default();
                let (want_alg, want_kid) = match alg {
                    Alg::EdDsa => ("EdDSA", "ed"),
                    Alg::Es256 => ("ES256", "es"),
                };
                let names_key = header.get("alg").and_then(|a| a.as_str()) == Some(want_alg)
                    && header.get("kid").and_then(|k| k.as_str()) == Some(want_kid);
                assert!(
                    !names_key,
                    "a token signed by the issuer's own key was refused: {result:?}, {token}"
                );
            }
        }
        Err(_) => {}
    }
});
