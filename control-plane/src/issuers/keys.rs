//! The keys of trusted issuers that publish them at a JWKS URI: fetched in the background,
//! at most one fetch per issuer at a time, and cached.
//!
//! No lock is held while a JWKS URI is fetched: a slow or silent issuer delays only the
//! requests that wait for its own keys (a token naming a key id not yet known, the management
//! API's answer to a change of that issuer), never the snapshot that every other issuer's
//! callers and gateways are served from; that snapshot is built from what is cached (see
//! [`super::registry`]). A body is read with a cap of [`MAX_JWKS_BYTES`] and refused as soon
//! as it exceeds it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

/// Fetched keys are used this long before they are fetched again.
pub const KEYS_MAX_AGE: Duration = Duration::from_secs(600);
/// A failed fetch is retried, and an unknown key id fetches an issuer's keys again, at most
/// this often.
pub const REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(5);
/// Largest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// What is known of one issuer's keys.
pub(super) struct Fetched {
    /// The URI they came from: a changed URI is fetched anew.
    pub uri: String,
    /// The last keys fetched successfully.
    pub jwks: Option<Value>,
    pub fetched_at: Option<(Instant, i64)>,
    last_attempt: Option<Instant>,
    /// The last fetch made for an unknown key id: those are rate-limited, not the regular
    /// ones (keys rotated just after a regular fetch are fetched at once).
    pub last_forced: Option<Instant>,
    pub error: Option<String>,
    /// The fetch under way: its ticket and a receiver that turns `true` when it is done.
    in_flight: Option<(u64, watch::Receiver<bool>)>,
}

impl Fetched {
    fn new(uri: &str) -> Fetched {
        Fetched {
            uri: uri.to_owned(),
            jwks: None,
            fetched_at: None,
            last_attempt: None,
            last_forced: None,
            error: None,
            in_flight: None,
        }
    }

    /// Whether a regular (not forced) fetch should start now.
    fn due(&self) -> bool {
        let fresh = self
            .fetched_at
            .is_some_and(|(at, _)| at.elapsed() < KEYS_MAX_AGE);
        let retry_due = self
            .last_attempt
            .is_none_or(|at| at.elapsed() >= REFETCH_MIN_INTERVAL);
        self.in_flight.is_none() && !fresh && retry_due
    }
}

/// The cache, shared with the fetch tasks.
#[derive(Default)]
struct Shared {
    fetched: Mutex<HashMap<String, Fetched>>,
    /// Changes whenever cached keys change or an issuer is forgotten: a snapshot built at
    /// another generation is out of date.
    generation: AtomicU64,
    tickets: AtomicU64,
}

impl Shared {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Fetched>> {
        // A poisoned lock only means a panic elsewhere while holding it; every write leaves
        // the map consistent.
        self.fetched.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(super) struct KeyCache {
    http: reqwest::Client,
    shared: Arc<Shared>,
}

/// Whether a fetch should be forced (a token names an unknown key id).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Fetch {
    IfDue,
    Force,
}

impl KeyCache {
    pub fn new(http: reqwest::Client) -> KeyCache {
        KeyCache {
            http,
            shared: Arc::default(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::SeqCst)
    }

    /// Drops what is cached for an issuer; a fetch under way for it is discarded when done.
    pub fn forget(&self, id: &str) {
        self.shared.map().remove(id);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Reads what is cached for issuer `id` (`None`: nothing, or for another URI).
    pub fn read<T>(&self, id: &str, uri: &str, f: impl FnOnce(&Fetched) -> T) -> Option<T> {
        self.shared.map().get(id).filter(|e| e.uri == uri).map(f)
    }

    /// The cached keys, without waiting; starts a fetch in the background when they are
    /// missing or old (and no fetch is under way or failed just now).
    pub fn cached(&self, id: &str, uri: &str) -> Option<Value> {
        let mut map = self.shared.map();
        let entry = entry(&mut map, id, uri);
        let jwks = entry.jwks.clone();
        if entry.due() {
            self.start(entry, id, Fetch::IfDue);
        }
        jwks
    }

    /// Fetches now if due (`IfDue`) or regardless (`Force`), joining a fetch already under way,
    /// and waits for it to end. The wait is bounded by the HTTP client's timeout.
    pub async fn fetch_and_wait(&self, id: &str, uri: &str, how: Fetch) {
        let waiting = {
            let mut map = self.shared.map();
            let entry = entry(&mut map, id, uri);
            if how == Fetch::Force {
                entry.last_forced = Some(Instant::now());
            }
            match &entry.in_flight {
                Some((_, done)) => Some(done.clone()),
                None if how == Fetch::Force || entry.due() => Some(self.start(entry, id, how)),
                None => None,
            }
        };
        if let Some(mut done) = waiting {
            // An error means the task ended without saying so (the runtime is stopping).
            let _ = done.wait_for(|d| *d).await;
        }
    }

    /// Starts a fetch task for `entry`, which has none under way.
    fn start(&self, entry: &mut Fetched, id: &str, how: Fetch) -> watch::Receiver<bool> {
        let ticket = self.shared.tickets.fetch_add(1, Ordering::SeqCst);
        let (tx, rx) = watch::channel(false);
        entry.in_flight = Some((ticket, rx.clone()));
        entry.last_attempt = Some(Instant::now());
        let (http, shared) = (self.http.clone(), Arc::clone(&self.shared));
        let (id, uri) = (id.to_owned(), entry.uri.clone());
        if how == Fetch::Force {
            tracing::info!(issuer_id = %id, "a token names an unknown key: fetching the issuer's keys again");
        }
        tokio::spawn(async move {
            let result = fetch(&http, &uri).await;
            {
                let mut map = shared.map();
                // Forgotten, or its URI changed, while this ran: the result is not its.
                let current = map
                    .get_mut(&id)
                    .filter(|e| e.in_flight.as_ref().is_some_and(|(t, _)| *t == ticket));
                if let Some(e) = current {
                    e.in_flight = None;
                    match result {
                        Ok(jwks) => {
                            tracing::info!(issuer_id = %id, keys = count_keys(&jwks),
                                "fetched the keys of a trusted issuer");
                            e.jwks = Some(jwks);
                            e.fetched_at = Some((Instant::now(), crate::clock::unix_now()));
                            e.error = None;
                        }
                        Err(error) => {
                            // The keys fetched before stay in use.
                            tracing::warn!(issuer_id = %id, jwks_uri = %uri,
                                "cannot fetch the keys of a trusted issuer: {error}");
                            e.error = Some(error);
                        }
                    }
                    shared.generation.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _ = tx.send(true);
        });
        rx
    }
}

/// The entry of issuer `id` for `uri`, made anew if there is none or it is for another URI.
fn entry<'m>(map: &'m mut HashMap<String, Fetched>, id: &str, uri: &str) -> &'m mut Fetched {
    let slot = map
        .entry(id.to_owned())
        .or_insert_with(|| Fetched::new(uri));
    if slot.uri != uri {
        *slot = Fetched::new(uri);
    }
    slot
}

/// GETs a JWKS, reading at most [`MAX_JWKS_BYTES`] of it.
async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Value, String> {
    let too_large = || {
        format!(
            "the JWKS is larger than {} KiB, the limit; publish fewer keys",
            MAX_JWKS_BYTES / 1024
        )
    };
    let mut response = http
        .get(uri)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("the JWKS URI answered HTTP {status}"));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(too_large());
    }
    // Chunk by chunk: a body over the limit is refused when the limit is passed, not after
    // it has been read whole (the connection is then dropped).
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("reading the answer: {e}"))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    let jwks: Value =
        serde_json::from_slice(&body).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
    if !jwks.get("keys").is_some_and(Value::is_array) {
        return Err("the JWKS has no `keys` array (RFC 7517 §5)".into());
    }
    Ok(jwks)
}

/// How many usable keys a JWKS holds (keys of unsupported types or uses are skipped).
pub(super) fn count_keys(jwks: &Value) -> usize {
    credmgr_common::jwt::TrustedIssuer::new(String::new(), vec![], Default::default(), 0, jwks)
        .map_or(0, |v| v.key_count())
}
