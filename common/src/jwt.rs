//! Verifying callers' JWTs locally (`identity-type: jwt`), against the keys of the issuers the
//! control plane trusts.
//!
//! Only asymmetric signatures are accepted: RS256, ES256 and EdDSA (Ed25519). The algorithm a
//! token claims is checked against this list before any key is touched, and each key is used
//! only with its own algorithm, so `alg: none` and the HMAC-with-a-public-key confusion
//! (RFC 8725 §2.1) have nothing to work with. A verified token can be remembered until it
//! expires ([`VerifiedCache`]), so a caller pays for signature verification once.
//!
//! The filter verifies with the issuers and keys the control plane publishes
//! ([`crate::runtime::TrustedIssuers`]); the control plane verifies the same token again before
//! it hands a connection's token out, with this same code.

use crate::access::{ClaimNames, JwtIdentity};
use crate::runtime::PublishedIssuer;
use jwt_compact::alg::{Ed25519, Es256, Rsa, RsaPublicKey};
use jwt_compact::jwk::JsonWebKey;
use jwt_compact::{Algorithm, AlgorithmExt, Claims, Token, UntrustedToken};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;

type Es256Key = <Es256 as Algorithm>::VerifyingKey;
type Ed25519Key = <Ed25519 as Algorithm>::VerifyingKey;

/// A public key of a trusted issuer, ready for one algorithm.
enum Key {
    Rs256(RsaPublicKey),
    Es256(Es256Key),
    EdDsa(Ed25519Key),
}

impl Key {
    fn alg(&self) -> &'static str {
        match self {
            Key::Rs256(_) => "RS256",
            Key::Es256(_) => "ES256",
            Key::EdDsa(_) => "EdDSA",
        }
    }
}

struct KeyEntry {
    kid: Option<String>,
    key: Key,
}

/// An issuer whose tokens are accepted.
pub struct TrustedIssuer {
    /// `iss`, compared exactly.
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one. Empty: any audience.
    pub audiences: Vec<String>,
    pub claim_names: ClaimNames,
    /// Seconds of clock skew allowed on `exp` and `nbf`.
    pub leeway: i64,
    keys: Vec<KeyEntry>,
}

/// Why a JWT was refused; [`JwtError::code`] is the error code in the 401 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    Malformed(String),
    AlgorithmNotAllowed(String),
    UntrustedIssuer(String),
    UnknownKey(Option<String>),
    BadSignature,
    MissingClaim(&'static str),
    Expired,
    NotYetValid,
    WrongAudience,
}

impl JwtError {
    /// Stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            JwtError::Malformed(_) => "jwt_malformed",
            JwtError::AlgorithmNotAllowed(_) => "jwt_algorithm_not_allowed",
            JwtError::UntrustedIssuer(_) => "jwt_untrusted_issuer",
            JwtError::UnknownKey(_) => "jwt_unknown_key",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::MissingClaim(_) => "jwt_missing_claim",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::WrongAudience => "jwt_wrong_audience",
        }
    }
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::Malformed(why) => write!(f, "the token is not a well-formed JWT: {why}"),
            JwtError::AlgorithmNotAllowed(alg) => write!(
                f,
                "algorithm {alg:?} is not accepted; tokens must be signed with RS256, ES256 or EdDSA"
            ),
            JwtError::UntrustedIssuer(iss) => write!(f, "issuer {iss:?} is not trusted"),
            JwtError::UnknownKey(Some(kid)) => write!(f, "the issuer has no key {kid:?}"),
            JwtError::UnknownKey(None) => {
                write!(f, "the issuer has no key for the token's algorithm")
            }
            JwtError::BadSignature => write!(f, "the signature does not verify"),
            JwtError::MissingClaim(c) => write!(f, "the token has no {c:?} claim"),
            JwtError::Expired => write!(f, "the token has expired"),
            JwtError::NotYetValid => write!(f, "the token is not valid yet (nbf)"),
            JwtError::WrongAudience => write!(f, "the token is not meant for this audience"),
        }
    }
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Value>,
}

impl TrustedIssuer {
    /// An issuer as the control plane publishes it to gateways.
    pub fn from_published(p: &PublishedIssuer) -> Result<TrustedIssuer, String> {
        TrustedIssuer::new(
            p.issuer.clone(),
            p.audiences.clone(),
            p.claims.clone(),
            p.leeway_seconds,
            &p.jwks,
        )
    }

    /// An issuer with the keys of its JWKS (RFC 7517 §5). Keys for encryption, symmetric keys
    /// and algorithms other than RS256, ES256 and EdDSA are left out; a key that cannot be
    /// read is an error naming it.
    pub fn new(
        issuer: String,
        audiences: Vec<String>,
        claim_names: ClaimNames,
        leeway: i64,
        jwks: &Value,
    ) -> Result<TrustedIssuer, String> {
        let jwks = Jwks::deserialize(jwks).map_err(|e| format!("unreadable JWKS: {e}"))?;
        let mut keys = Vec::new();
        for (i, raw) in jwks.keys.iter().enumerate() {
            let field = |name: &str| raw.get(name).and_then(Value::as_str);
            let kid = field("kid").map(str::to_owned);
            if field("use") == Some("enc") {
                continue;
            }
            let jwk: JsonWebKey<'_> = serde_json::from_value(raw.clone())
                .map_err(|e| format!("JWKS key {i} ({kid:?}): {e}"))?;
            let key = match (&jwk, field("alg")) {
                (JsonWebKey::Rsa { .. }, None | Some("RS256")) => {
                    RsaPublicKey::try_from(&jwk).map(Key::Rs256)
                }
                (JsonWebKey::EllipticCurve { curve, .. }, None | Some("ES256"))
                    if curve == "P-256" =>
                {
                    Es256Key::try_from(&jwk).map(Key::Es256)
                }
                (JsonWebKey::KeyPair { curve, .. }, None | Some("EdDSA")) if curve == "Ed25519" => {
                    Ed25519Key::try_from(&jwk).map(Key::EdDsa)
                }
                _ => continue,
            }
            .map_err(|e| format!("JWKS key {i} ({kid:?}): {e}"))?;
            keys.push(KeyEntry { kid, key });
        }
        Ok(TrustedIssuer {
            issuer,
            audiences,
            claim_names,
            leeway: leeway.max(0),
            keys,
        })
    }

    /// Whether the issuer has a key with this id (for deciding to fetch its JWKS again).
    pub fn has_key(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// How many usable keys the JWKS held.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub identity: JwtIdentity,
    /// The token's `exp`, Unix seconds.
    pub expires_at: i64,
    /// The last second at which the token is accepted: `exp` plus the issuer's leeway.
    pub valid_until: i64,
    /// The verified claims asked for by name ([`verify_keeping`]), as text: strings as they
    /// are, numbers and booleans in JSON. A claim that is absent, of another type, or longer
    /// than [`MAX_KEPT_CLAIM_LEN`] is not kept.
    pub claims: Vec<(String, String)>,
}

/// Longest claim value [`verify_keeping`] keeps: ids made of claims are at most 64 characters,
/// so a longer value could never make one, and a kept value never costs more than this.
pub const MAX_KEPT_CLAIM_LEN: usize = 256;

impl Verified {
    /// A kept claim's value (see [`verify_keeping`]).
    pub fn claim(&self, name: &str) -> Option<&str> {
        self.claims
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What an unverified token says about where it comes from, for deciding whether the keys of
/// its issuer need fetching again (an unknown `kid` after a key rotation).
pub fn peek_issuer_and_kid(token: &str) -> Option<(String, Option<String>)> {
    let untrusted = UntrustedToken::new(token).ok()?;
    let claims: Claims<Map<String, Value>> = untrusted.deserialize_claims_unchecked().ok()?;
    let iss = claims.custom.get("iss")?.as_str()?.to_owned();
    Some((iss, untrusted.header().key_id.clone()))
}

/// RFC 7515 §4.1.11: a recipient must refuse a token whose `crit` header names an extension
/// it does not understand, and this verifier understands none (the header parsed above
/// keeps only the standard fields, so `crit` is looked for here).
fn refuse_critical_extensions(token: &str) -> Result<(), JwtError> {
    let header: UntrustedToken<'_, Map<String, Value>> =
        UntrustedToken::try_from(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    match header.header().other_fields.get("crit") {
        None => Ok(()),
        Some(crit) => Err(JwtError::Malformed(format!(
            "the header's `crit` ({crit}) names extensions this verifier does not \
             understand (RFC 7515 §4.1.11)"
        ))),
    }
}

/// Verifies `token` against `issuers` at `now` (Unix seconds), allowing each issuer's leeway
/// of clock skew for `exp` and `nbf`.
pub fn verify(issuers: &[TrustedIssuer], token: &str, now: i64) -> Result<Verified, JwtError> {
    verify_keeping(issuers, token, now, &[])
}

/// [`verify`], keeping the claims named in `keep` in [`Verified::claims`] (only once the
/// signature, issuer, audience and times are checked).
pub fn verify_keeping(
    issuers: &[TrustedIssuer],
    token: &str,
    now: i64,
    keep: &[String],
) -> Result<Verified, JwtError> {
    let untrusted = UntrustedToken::new(token).map_err(|e| JwtError::Malformed(e.to_string()))?;
    let alg = untrusted.algorithm();
    if !matches!(alg, "RS256" | "ES256" | "EdDSA") {
        return Err(JwtError::AlgorithmNotAllowed(alg.to_owned()));
    }
    refuse_critical_extensions(token)?;
    let unverified: Claims<Map<String, Value>> = untrusted
        .deserialize_claims_unchecked()
        .map_err(|e| JwtError::Malformed(e.to_string()))?;
    let iss = unverified
        .custom
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(JwtError::MissingClaim("iss"))?;
    let issuer = issuers
        .iter()
        .find(|i| i.issuer == iss)
        .ok_or_else(|| JwtError::UntrustedIssuer(iss.to_owned()))?;

    let kid = untrusted.header().key_id.as_deref();
    let candidates = issuer
        .keys
        .iter()
        .filter(|k| k.key.alg() == alg && (kid.is_none() || k.kid.as_deref() == kid));
    let mut verified: Option<Token<Map<String, Value>>> = None;
    let mut tried = false;
    for entry in candidates {
        tried = true;
        let result = match &entry.key {
            Key::Rs256(k) => Rsa::rs256().validator(k).validate(&untrusted),
            Key::Es256(k) => Es256.validator(k).validate(&untrusted),
            Key::EdDsa(k) => Ed25519.validator(k).validate(&untrusted),
        };
        if let Ok(token) = result {
            verified = Some(token);
            break;
        }
    }
    let leeway = issuer.leeway;
    let token = match verified {
        Some(token) => token,
        None if tried => return Err(JwtError::BadSignature),
        None => return Err(JwtError::UnknownKey(kid.map(str::to_owned))),
    };

    let claims = token.claims();
    let expires_at = claims
        .expiration
        .map(|t| t.timestamp())
        .ok_or(JwtError::MissingClaim("exp"))?;
    if now > expires_at.saturating_add(leeway) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = claims.not_before {
        if nbf.timestamp().saturating_sub(leeway) > now {
            return Err(JwtError::NotYetValid);
        }
    }
    if !issuer.audiences.is_empty() {
        let ok = match claims.custom.get("aud") {
            Some(Value::String(a)) => issuer.audiences.iter().any(|x| x == a),
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .any(|a| issuer.audiences.iter().any(|x| x == a)),
            _ => false,
        };
        if !ok {
            return Err(JwtError::WrongAudience);
        }
    }
    let kept = keep
        .iter()
        .filter_map(|name| {
            let text = match claims.custom.get(name)? {
                Value::String(s) => s.clone(),
                v @ (Value::Number(_) | Value::Bool(_)) => v.to_string(),
                _ => return None,
            };
            (text.len() <= MAX_KEPT_CLAIM_LEN).then(|| (name.clone(), text))
        })
        .collect();
    Ok(Verified {
        identity: issuer.claim_names.identity(iss, &claims.custom),
        expires_at,
        valid_until: expires_at.saturating_add(leeway),
        claims: kept,
    })
}

/// Verified tokens, kept until they expire (per filter worker; in the control plane, shared).
#[derive(Default)]
pub struct VerifiedCache {
    entries: HashMap<String, Verified>,
    /// Claims kept with each verified token ([`verify_keeping`]).
    keep: Vec<String>,
    /// Signatures verified (cache misses that verified), for stats.
    pub verifications: u64,
}

/// Most tokens remembered per worker; beyond it, expired entries go first, then all.
const MAX_CACHED: usize = 10_000;

impl VerifiedCache {
    /// A cache that keeps the claims named in `keep` with each verified token.
    pub fn keeping(keep: Vec<String>) -> VerifiedCache {
        VerifiedCache {
            keep,
            ..VerifiedCache::default()
        }
    }

    /// The verified identity of `token`, verifying it only if it is not remembered (or has
    /// expired since). `verifications` counts signature checks, for tests and stats.
    pub fn verify(
        &mut self,
        issuers: &[TrustedIssuer],
        token: &str,
        now: i64,
    ) -> Result<Verified, JwtError> {
        if let Some(v) = self.entries.get(token) {
            if now <= v.valid_until {
                return Ok(v.clone());
            }
        }
        let verified = verify_keeping(issuers, token, now, &self.keep)?;
        self.verifications = self.verifications.saturating_add(1);
        if self.entries.len() >= MAX_CACHED {
            self.entries.retain(|_, v| now <= v.valid_until);
            if self.entries.len() >= MAX_CACHED {
                self.entries.clear();
            }
        }
        self.entries.insert(token.to_owned(), verified.clone());
        Ok(verified)
    }

    /// Forgets every token, e.g. when the trusted keys change.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[path = "jwt_tests.rs"]
mod tests;
