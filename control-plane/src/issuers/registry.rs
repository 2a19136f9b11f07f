//! The keys of trusted issuers, fetched from their JWKS URIs and cached, and the verifiers
//! built from them.
//!
//! Keys are fetched when first needed and again after [`KEYS_MAX_AGE`]. A token that names
//! a key id the cache does not hold (the issuer rotated its keys) makes the issuer's JWKS be
//! fetched again at once, however recently the keys were fetched; such fetches happen at most
//! once per [`REFETCH_MIN_INTERVAL`] per issuer, so a stream of tokens with made-up key ids
//! cannot turn the control plane into a load generator against the issuer. A failed fetch
//! keeps the keys fetched before.
//!
//! The [`Snapshot`] (what gateways are sent, and the verifiers this replica uses itself) is
//! rebuilt from the store at most every [`SNAPSHOT_TTL`], or at once when this replica's
//! management API changes an issuer: other replicas see a change within that time.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use credmgr_common::jwt::TrustedIssuer;
use credmgr_common::runtime::{PublishedIssuer, TrustedIssuers};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::clock::rfc3339;
use crate::store::{IssuerRecord, Store, StoreError};

/// Fetched keys are used this long before they are fetched again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// An unknown key id fetches an issuer's keys again at most this often.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// How long a snapshot of the trusted issuers is used before the store is read again.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The trusted issuers at one moment: as published, and ready to verify with.
pub struct Snapshot {
    pub published: TrustedIssuers,
    pub verifiers: Vec<TrustedIssuer>,
}

/// The state of an issuer's keys, as the management API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// Usable signing keys (RS256, ES256, Ed25519).
    pub count: usize,
    /// When they were fetched from `jwks_uri` (null for inline keys or before a fetch).
    pub fetched_at: Option<String>,
    /// Why the last fetch failed, if it did.
    pub error: Option<String>,
}

struct Fetched {
    /// The URI they came from: a changed URI is fetched anew.
    uri: String,
    /// The last keys fetched successfully.
    jwks: Option<Value>,
    fetched_at: Option<(Instant, i64)>,
    last_attempt: Instant,
    /// The last fetch made for an unknown key id: those are rate-limited, not the regular
    /// ones (keys rotated just after a regular fetch are fetched at once).
    last_forced: Option<Instant>,
    error: Option<String>,
}

pub struct Registry {
    http: reqwest::Client,
    /// Per issuer id. Held across a fetch, so concurrent needs for keys make one request.
    fetched: Mutex<HashMap<String, Fetched>>,
    snapshot: Mutex<Option<(Instant, Arc<Snapshot>)>>,
    /// `refresh_after_seconds` of the published document.
    publish_interval: Duration,
}

impl Registry {
    pub fn new(timeout: Duration, publish_interval: Duration) -> Result<Registry, reqwest::Error> {
        let http = reqwest::Client::builder()
            // A redirect could point the fetch anywhere (SSRF); a JWKS URI is exact.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("credmgr/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Registry {
            http,
            fetched: Mutex::default(),
            snapshot: Mutex::default(),
            publish_interval,
        })
    }

    /// The current snapshot, rebuilt from the store when it is older than [`SNAPSHOT_TTL`].
    pub async fn snapshot(&self, store: &Store) -> Result<Arc<Snapshot>, StoreError> {
        let mut slot = self.snapshot.lock().await;
        if let Some((built, snap)) = slot.as_ref() {
            if built.elapsed() < SNAPSHOT_TTL {
                return Ok(Arc::clone(snap));
            }
        }
        let records = store.list_issuers().await?;
        let mut issuers = Vec::with_capacity(records.len());
        let mut verifiers = Vec::with_capacity(records.len());
        for r in &records {
            let jwks = super::public_jwks(&self.keys(r, false).await);
            match TrustedIssuer::new(
                r.issuer.clone(),
                r.audiences.clone(),
                r.claims.clone(),
                r.leeway_seconds,
                &jwks,
            ) {
                Ok(v) => verifiers.push(v),
                Err(e) => {
                    tracing::warn!(issuer_id = %r.id, "the keys of trusted issuer are unusable: {e}");
                    continue;
                }
            }
            issuers.push(PublishedIssuer {
                issuer: r.issuer.clone(),
                audiences: r.audiences.clone(),
                claims: r.claims.clone(),
                leeway_seconds: r.leeway_seconds,
                jwks,
            });
        }
        let snap = Arc::new(Snapshot {
            published: TrustedIssuers {
                issuers,
                refresh_after_seconds: self.publish_interval.as_secs().max(1),
            },
            verifiers,
        });
        *slot = Some((Instant::now(), Arc::clone(&snap)));
        Ok(snap)
    }

    /// A token from `issuer` named key `kid`, which the snapshot does not hold: fetches that
    /// issuer's keys again (rate-limited) and drops the snapshot if they changed. Returns
    /// whether there are new keys to try.
    pub async fn refetch_for_kid(
        &self,
        store: &Store,
        issuer: &str,
        kid: &str,
    ) -> Result<bool, StoreError> {
        let snap = self.snapshot(store).await?;
        if snap
            .verifiers
            .iter()
            .any(|v| v.issuer == issuer && v.has_key(kid))
        {
            // Another request fetched them meanwhile, or the gateway is behind.
            return Ok(true);
        }
        let records = store.list_issuers().await?;
        let Some(record) = records.iter().find(|r| r.issuer == issuer) else {
            return Ok(false);
        };
        let Some(uri) = &record.jwks_uri else {
            return Ok(false);
        };
        {
            let map = self.fetched.lock().await;
            if let Some(f) = map.get(&record.id) {
                let recent = f
                    .last_forced
                    .is_some_and(|at| at.elapsed() < REFETCH_MIN_INTERVAL);
                if f.uri == *uri && recent {
                    return Ok(false);
                }
            }
        }
        tracing::info!(issuer_id = %record.id, kid, "a token names an unknown key: fetching the issuer's keys again");
        let jwks = self.keys(record, true).await;
        let known = TrustedIssuer::new(String::new(), vec![], Default::default(), 0, &jwks)
            .is_ok_and(|v| v.has_key(kid));
        *self.snapshot.lock().await = None;
        Ok(known)
    }

    /// Forgets what is cached for an issuer (it was changed or deleted), and the snapshot.
    pub async fn forget(&self, id: &str) {
        self.fetched.lock().await.remove(id);
        *self.snapshot.lock().await = None;
    }

    /// The state of an issuer's keys, without fetching.
    pub async fn key_status(&self, r: &IssuerRecord) -> KeyStatus {
        if let Some(jwks) = &r.jwks {
            return KeyStatus {
                count: count_keys(jwks),
                fetched_at: None,
                error: None,
            };
        }
        let map = self.fetched.lock().await;
        match map.get(&r.id) {
            Some(f) => KeyStatus {
                count: f.jwks.as_ref().map_or(0, count_keys),
                fetched_at: f.fetched_at.map(|(_, at)| rfc3339(at)),
                error: f.error.clone(),
            },
            None => KeyStatus {
                count: 0,
                fetched_at: None,
                error: None,
            },
        }
    }

    /// The state of an issuer's keys after fetching them if they are not cached.
    pub async fn key_status_fresh(&self, r: &IssuerRecord) -> KeyStatus {
        let _ = self.keys(r, false).await;
        self.key_status(r).await
    }

    /// The issuer's keys: inline, cached, or fetched now (`force`: fetched now regardless).
    /// A failed fetch returns the keys fetched before, or none.
    async fn keys(&self, r: &IssuerRecord, force: bool) -> Value {
        if let Some(jwks) = &r.jwks {
            return jwks.clone();
        }
        let Some(uri) = &r.jwks_uri else {
            return empty();
        };
        let mut map = self.fetched.lock().await;
        if let Some(f) = map.get(&r.id) {
            let fresh = f
                .fetched_at
                .is_some_and(|(at, _)| at.elapsed() < KEYS_MAX_AGE);
            let retry_due = f.last_attempt.elapsed() >= REFETCH_MIN_INTERVAL;
            if f.uri == *uri && !force && (fresh || !retry_due) {
                return f.jwks.clone().unwrap_or_else(empty);
            }
        }
        let result = self.fetch(uri).await;
        let previous = map.remove(&r.id).filter(|f| f.uri == *uri);
        let last_forced = if force {
            Some(Instant::now())
        } else {
            previous.as_ref().and_then(|f| f.last_forced)
        };
        let previous = previous.and_then(|f| f.jwks.zip(f.fetched_at));
        let entry = match result {
            Ok(jwks) => {
                tracing::info!(issuer_id = %r.id, keys = count_keys(&jwks), "fetched the keys of a trusted issuer");
                Fetched {
                    uri: uri.clone(),
                    jwks: Some(jwks),
                    fetched_at: Some((Instant::now(), crate::clock::unix_now())),
                    last_attempt: Instant::now(),
                    last_forced,
                    error: None,
                }
            }
            Err(error) => {
                tracing::warn!(issuer_id = %r.id, jwks_uri = %uri, "cannot fetch the keys of a trusted issuer: {error}");
                let (jwks, fetched_at) =
                    previous.map_or((None, None), |(j, at)| (Some(j), Some(at)));
                Fetched {
                    uri: uri.clone(),
                    jwks,
                    fetched_at,
                    last_attempt: Instant::now(),
                    last_forced,
                    error: Some(error),
                }
            }
        };
        let jwks = entry.jwks.clone().unwrap_or_else(empty);
        map.insert(r.id.clone(), entry);
        jwks
    }

    async fn fetch(&self, uri: &str) -> Result<Value, String> {
        let response = self
            .http
            .get(uri)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("the JWKS URI answered HTTP {status}"));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("reading the answer: {e}"))?;
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let jwks: Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        if !jwks.get("keys").is_some_and(Value::is_array) {
            return Err("the JWKS has no `keys` array (RFC 7517 §5)".into());
        }
        Ok(jwks)
    }
}

fn empty() -> Value {
    serde_json::json!({ "keys": [] })
}

fn count_keys(jwks: &Value) -> usize {
    TrustedIssuer::new(String::new(), vec![], Default::default(), 0, jwks)
        .map_or(0, |v| v.key_count())
}
