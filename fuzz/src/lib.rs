//! What the fuzz targets share: a fixed trusted issuer with one key of each accepted algorithm
//! (fixed, so a crash reproduces), a signer that turns fuzzed claims into tokens that issuer
//! accepts the signature of, and small checks.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use credmgr_common::access::ClaimNames;
use credmgr_common::jwt::TrustedIssuer;
use jwt_compact::alg::{Ed25519, Es256};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmSignature};
use serde_json::{json, Value};

/// The fixed trusted issuer's `iss`.
pub const ISS: &str = "https://issuer.example";
/// Its one accepted audience.
pub const AUD: &str = "api://backend";
/// Its leeway, seconds.
pub const LEEWAY: i64 = 30;
/// "Now" for every verification, Unix seconds.
pub const NOW: i64 = 1_800_000_000;

/// An RSA public key (2048 bits, e = 65537) whose private half was thrown away: RS256 tokens
/// reach signature verification, and none verifies.
const RSA_N: &str = "xAQH_kFo65PGF9LxeYTj3YfZAhS_xE9nmpr1gCISC2o5m0aYZUHTq9TdD7W8r-3QXXeLpMWHzqdU81yASfI-FrNoozK59cQESBoHBtVGN8d79KbZrAk16uj4cTqzdTrmmu0SNRZT9EQaqLt0pEZQG1np0Qd6wI270A4hg8OT6ysTA9ncQYcEvkOxPLJWtXC5tnQoNLVkdWsgrrpHlphA2CUgHuwP-GTMVWkOrvY6hJPAhqv6j0L8NA96TXlQUJ_OQkOYm7gTViooAsNWpRcg6B91nVzX0bVQFCpbgcLvu77xgqFy1NtR2GRzgmU8RwcWLINoulCQYW9F36o4Xvkwqw";

/// The fixed keys that sign tokens in the targets.
pub struct Signers {
    pub ed: <Ed25519 as Algorithm>::SigningKey,
    pub es: <Es256 as Algorithm>::SigningKey,
}

/// Which key signs, and which `kid` the header names.
#[derive(Clone, Copy, Debug)]
pub enum Alg {
    EdDsa,
    Es256,
}

fn ed_pair() -> ed25519_compact::KeyPair {
    ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new([7; 32]))
}

fn es_key() -> p256::ecdsa::SigningKey {
    // A scalar well inside the group order.
    match p256::ecdsa::SigningKey::from_slice(&[0x11; 32]) {
        Ok(k) => k,
        Err(_) => unreachable!("0x11.. is a valid P-256 scalar"),
    }
}

pub fn signers() -> Signers {
    Signers {
        ed: ed_pair().sk,
        es: es_key(),
    }
}

/// The fixed issuer's JWKS: `ed` (Ed25519), `es` (P-256), `rs` (RSA), plus an encryption key
/// and a symmetric key, which are left out.
pub fn jwks() -> Value {
    let jwk = |key: JsonWebKey<'_>, kid: &str| {
        let mut v = serde_json::to_value(key).unwrap_or(Value::Null);
        v["kid"] = json!(kid);
        v
    };
    let es_pk = *es_key().verifying_key();
    json!({"keys": [
        jwk(JsonWebKey::from(&ed_pair().pk), "ed"),
        jwk(JsonWebKey::from(&es_pk), "es"),
        {"kty": "RSA", "kid": "rs", "n": RSA_N, "e": "AQAB"},
        {"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
    ]})
}

/// The fixed trusted issuer.
pub fn issuer() -> TrustedIssuer {
    match TrustedIssuer::new(
        ISS.into(),
        vec![AUD.into()],
        ClaimNames::default(),
        LEEWAY,
        &jwks(),
    ) {
        Ok(i) => i,
        Err(e) => unreachable!("the fixed JWKS is readable: {e}"),
    }
}

/// A JWT over exactly these header and payload bytes, signed by `alg`'s fixed key.
pub fn sign(signers: &Signers, alg: Alg, header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = match alg {
        Alg::EdDsa => Ed25519
            .sign(&signers.ed, input.as_bytes())
            .as_bytes()
            .into_owned(),
        Alg::Es256 => Es256
            .sign(&signers.es, input.as_bytes())
            .as_bytes()
            .into_owned(),
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The names a token endpoint's secrets go by (RFC 6749 §5.1; OpenID Connect Core §3.1.3.3).
pub const SECRET_FIELDS: &[&str] = &["access_token", "refresh_token", "id_token"];

/// The first object key, at any depth, that is one of [`SECRET_FIELDS`].
pub fn secret_field(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map
            .keys()
            .find(|k| SECRET_FIELDS.contains(&k.as_str()))
            .cloned()
            .or_else(|| map.values().find_map(secret_field)),
        Value::Array(items) => items.iter().find_map(secret_field),
        _ => None,
    }
}

/// How many times `needle` occurs in `hay` (overlapping).
pub fn occurrences(hay: &[u8], needle: &[u8]) -> usize {
    if needle.is_empty() {
        return 0;
    }
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}
