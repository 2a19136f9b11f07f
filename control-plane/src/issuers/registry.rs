//! The trusted issuers as gateways are sent them and as this replica verifies callers with:
//! the [`Snapshot`], built from the store and the keys cached by [`KeyCache`].
//!
//! Keys are fetched when first needed and again after [`KEYS_MAX_AGE`], in the background: the
//! snapshot is built from what is cached and never waits for a JWKS URI, so one slow issuer
//! does not hold up the others. A token that names a key id the cache does not hold (the
//! issuer rotated its keys) makes the issuer's JWKS be fetched again at once, and that request
//! waits for it; such fetches happen at most once per [`REFETCH_MIN_INTERVAL`] per issuer, so
//! a stream of tokens with made-up key ids cannot turn the control plane into a load
//! generator against the issuer. A failed fetch keeps the keys fetched before.
//!
//! The snapshot is rebuilt from the store at most every [`SNAPSHOT_TTL`], at once when this
//! replica's management API changes an issuer, and when fetched keys arrive: other replicas
//! see a change within that time. While one request rebuilds it, others are served the
//! previous one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use credmgr_common::jwt::TrustedIssuer;
use credmgr_common::runtime::{PublishedIssuer, TrustedIssuers};
use serde::Serialize;
use serde_json::Value;

use super::keys::{count_keys, Fetch, KeyCache};
pub use super::keys::{KEYS_MAX_AGE, MAX_JWKS_BYTES, REFETCH_MIN_INTERVAL};
use crate::clock::rfc3339;
use crate::store::{IssuerRecord, Store, StoreError};

/// How long a snapshot of the trusted issuers is used before the store is read again.
pub const SNAPSHOT_TTL: Duration = Duration::from_secs(5);

/// The trusted issuers at one moment: as published, and ready to verify with.
pub struct Snapshot {
    pub published: TrustedIssuers,
    pub verifiers: Vec<TrustedIssuer>,
}

/// The state of an issuer's keys, as the management API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyStatus {
    /// Usable signing keys (RS256, ES256, Ed25519).
    pub count: usize,
    /// When they were fetched from `jwks_uri` (null for inline keys or before a fetch).
    pub fetched_at: Option<String>,
    /// Why the last fetch failed, if it did.
    pub error: Option<String>,
}

/// A built snapshot: when, and at which generation of the key cache.
struct Built {
    at: Instant,
    generation: u64,
    snapshot: Arc<Snapshot>,
}

pub struct Registry {
    keys: KeyCache,
    snapshot: Mutex<Option<Built>>,
    /// Held by the one request that rebuilds the snapshot.
    rebuild: tokio::sync::Mutex<()>,
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
            keys: KeyCache::new(http),
            snapshot: Mutex::default(),
            rebuild: tokio::sync::Mutex::default(),
            publish_interval,
        })
    }

    /// The snapshot if one was built at this generation (and, with `fresh`, recently).
    fn built(&self, generation: u64, fresh: bool) -> Option<Arc<Snapshot>> {
        let slot = self.snapshot.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref()
            .filter(|b| b.generation == generation && (!fresh || b.at.elapsed() < SNAPSHOT_TTL))
            .map(|b| Arc::clone(&b.snapshot))
    }

    /// The current snapshot, rebuilt from the store when it is older than [`SNAPSHOT_TTL`] or
    /// keys or issuers changed. Never waits for a JWKS URI.
    pub async fn snapshot(&self, store: &Store) -> Result<Arc<Snapshot>, StoreError> {
        if let Some(snap) = self.built(self.keys.generation(), true) {
            return Ok(snap);
        }
        let _rebuilding = match self.rebuild.try_lock() {
            Ok(guard) => guard,
            Err(_) => {
                // Another request is rebuilding: an aged snapshot of the same issuers and keys
                // serves meanwhile; after a change, wait for the new one.
                if let Some(snap) = self.built(self.keys.generation(), false) {
                    return Ok(snap);
                }
                self.rebuild.lock().await
            }
        };
        let generation = self.keys.generation();
        if let Some(snap) = self.built(generation, true) {
            return Ok(snap);
        }
        let records = store.list_issuers().await?;
        let mut issuers = Vec::with_capacity(records.len());
        let mut verifiers = Vec::with_capacity(records.len());
        for r in &records {
            let jwks = super::public_jwks(&self.cached_keys(r));
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
        // Keys that arrived during the build changed the generation: this one is then out of
        // date at once, and the next request builds again.
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Some(Built {
            at: Instant::now(),
            generation,
            snapshot: Arc::clone(&snap),
        });
        Ok(snap)
    }

    /// A token from `issuer` named key `kid`, which the snapshot does not hold: fetches that
    /// issuer's keys again (rate-limited) and waits for them. Returns whether there are new
    /// keys to try.
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
        let recent = self
            .keys
            .read(&record.id, uri, |f| {
                f.last_forced
                    .is_some_and(|at| at.elapsed() < REFETCH_MIN_INTERVAL)
            })
            .unwrap_or(false);
        if recent {
            return Ok(false);
        }
        self.keys
            .fetch_and_wait(&record.id, uri, Fetch::Force)
            .await;
        let known = self
            .keys
            .read(&record.id, uri, |f| f.jwks.clone())
            .flatten()
            .is_some_and(|jwks| {
                TrustedIssuer::new(String::new(), vec![], Default::default(), 0, &jwks)
                    .is_ok_and(|v| v.has_key(kid))
            });
        Ok(known)
    }

    /// Forgets what is cached for an issuer (it was changed or deleted), and the snapshot.
    pub async fn forget(&self, id: &str) {
        self.keys.forget(id);
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
        let status = r.jwks_uri.as_ref().and_then(|uri| {
            self.keys.read(&r.id, uri, |f| KeyStatus {
                count: f.jwks.as_ref().map_or(0, count_keys),
                fetched_at: f.fetched_at.map(|(_, at)| rfc3339(at)),
                error: f.error.clone(),
            })
        });
        status.unwrap_or(KeyStatus {
            count: 0,
            fetched_at: None,
            error: None,
        })
    }

    /// The state of an issuer's keys after fetching them if they are not cached (waiting for
    /// that fetch, which the provider timeout bounds; no other request waits for it).
    pub async fn key_status_fresh(&self, r: &IssuerRecord) -> KeyStatus {
        if let (None, Some(uri)) = (&r.jwks, &r.jwks_uri) {
            self.keys.fetch_and_wait(&r.id, uri, Fetch::IfDue).await;
        }
        self.key_status(r).await
    }

    /// The issuer's keys: inline, or as cached (a fetch starts in the background if due).
    fn cached_keys(&self, r: &IssuerRecord) -> Value {
        if let Some(jwks) = &r.jwks {
            return jwks.clone();
        }
        r.jwks_uri
            .as_ref()
            .and_then(|uri| self.keys.cached(&r.id, uri))
            .unwrap_or_else(empty)
    }
}

fn empty() -> Value {
    serde_json::json!({ "keys": [] })
}
