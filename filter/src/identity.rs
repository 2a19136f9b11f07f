//! Callers' JWTs (`identity-type: jwt`): the trusted issuers and their keys, as the control
//! plane publishes them, kept in Envoy shared data for every worker, and each worker's cache
//! of tokens it has verified.
//!
//! The issuers document is fetched by one worker (the tick, or a request that finds none or
//! meets an unknown key id) and stored in shared data with the time it was fetched; each
//! worker decodes it again only when its CAS version changes, and looks at shared data at
//! most every [`RECHECK_MS`], so a request with a remembered JWT makes no host call here.
//! When the keys change, the verified tokens are forgotten: a token verified with a key that
//! was withdrawn must not stay accepted.

use crate::host::{Host, Level, SetSharedError};
use credmgr_common::jwt::{JwtError, TrustedIssuer, Verified, VerifiedCache};
use credmgr_common::runtime::TrustedIssuers;
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Shared-data key of the issuers document.
pub const ISSUERS_KEY: &str = "credmgr/v1/issuers";
/// How often a worker looks for a newer document in shared data.
pub const RECHECK_MS: u64 = 1_000;
/// A token with an unknown key id fetches the issuers again at most this often per worker.
pub const HINT_INTERVAL_MS: u64 = 5_000;

/// What shared data holds.
#[derive(Serialize, Deserialize)]
struct Stored {
    fetched_at_ms: u64,
    document: TrustedIssuers,
}

/// The issuers one worker verifies with.
struct Loaded {
    cas: u32,
    document: TrustedIssuers,
    issuers: Rc<Vec<TrustedIssuer>>,
    fetched_at_ms: u64,
    refresh_after_ms: u64,
    checked_at_ms: u64,
}

/// One worker's view of the trusted issuers, and its verified tokens.
#[derive(Default)]
pub struct Identities {
    loaded: RefCell<Option<Loaded>>,
    verified: RefCell<VerifiedCache>,
    last_hint_ms: Cell<u64>,
}

impl Identities {
    /// Identities whose verified tokens keep the claims named in `claims` (those that id
    /// templates use), and nothing else of the token's content.
    pub fn keeping(claims: Vec<String>) -> Identities {
        Identities {
            verified: RefCell::new(VerifiedCache::keeping(claims)),
            ..Identities::default()
        }
    }

    /// The issuers to verify with at `now` (milliseconds), if a document was fetched.
    pub fn issuers(&self, host: &impl Host, now: u64) -> Option<Rc<Vec<TrustedIssuer>>> {
        let recheck = match self.loaded.borrow().as_ref() {
            Some(l) => now.saturating_sub(l.checked_at_ms) >= RECHECK_MS,
            None => true,
        };
        if recheck {
            self.reload(host, now);
        }
        self.loaded.borrow().as_ref().map(|l| Rc::clone(&l.issuers))
    }

    /// Whether the document should be fetched again: none yet, or older than the control
    /// plane asked.
    pub fn due(&self, host: &impl Host) -> bool {
        let now = host.now_ms();
        self.reload(host, now);
        match self.loaded.borrow().as_ref() {
            Some(l) => now.saturating_sub(l.fetched_at_ms) >= l.refresh_after_ms,
            None => true,
        }
    }

    /// Whether a request may ask for the issuers again because of an unknown key id; each
    /// `true` starts a new interval.
    pub fn may_hint(&self, host: &impl Host) -> bool {
        let now = host.now_ms();
        let last = self.last_hint_ms.get();
        if last != 0 && now.saturating_sub(last) < HINT_INTERVAL_MS {
            return false;
        }
        self.last_hint_ms.set(now);
        true
    }

    /// Stores a document the control plane sent, for every worker.
    pub fn store(&self, host: &impl Host, document: TrustedIssuers) {
        let stored = Stored {
            fetched_at_ms: host.now_ms(),
            document,
        };
        let Ok(bytes) = serde_json::to_vec(&stored) else {
            return;
        };
        match host.set_shared(ISSUERS_KEY, &bytes, None) {
            Ok(()) | Err(SetSharedError::CasMismatch) => {}
            Err(SetSharedError::Host(e)) => {
                host.log(Level::Warn, &format!("storing the trusted issuers: {e}"));
            }
        }
        self.reload(host, host.now_ms());
    }

    /// Verifies `token`, or remembers that it was verified.
    pub fn verify(
        &self,
        issuers: &[TrustedIssuer],
        token: &str,
        now_s: i64,
    ) -> Result<Verified, JwtError> {
        self.verified.borrow_mut().verify(issuers, token, now_s)
    }

    /// Signatures verified by this worker so far.
    pub fn verifications(&self) -> u64 {
        self.verified.borrow().verifications
    }

    fn reload(&self, host: &impl Host, now: u64) {
        let (bytes, cas) = match host.get_shared(ISSUERS_KEY) {
            Ok(v) => v,
            Err(e) => {
                host.log(Level::Warn, &format!("reading the trusted issuers: {e}"));
                return;
            }
        };
        let cas = cas.unwrap_or(0);
        if let Some(l) = self.loaded.borrow_mut().as_mut() {
            if l.cas == cas {
                l.checked_at_ms = now;
                return;
            }
        }
        let Some(bytes) = bytes else {
            return;
        };
        let stored: Stored = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("ignoring an unreadable trusted-issuers document: {e}"),
                );
                return;
            }
        };
        let refresh_after_ms = stored
            .document
            .refresh_after_seconds
            .max(1)
            .saturating_mul(1000);
        if let Some(l) = self.loaded.borrow_mut().as_mut() {
            if l.document == stored.document {
                // Fetched again, unchanged: keep the verified tokens.
                l.cas = cas;
                l.fetched_at_ms = stored.fetched_at_ms;
                l.refresh_after_ms = refresh_after_ms;
                l.checked_at_ms = now;
                return;
            }
        }
        let mut issuers = Vec::with_capacity(stored.document.issuers.len());
        for p in &stored.document.issuers {
            match TrustedIssuer::from_published(p) {
                Ok(i) => issuers.push(i),
                Err(e) => host.log(
                    Level::Warn,
                    &format!("ignoring trusted issuer {:?}: {e}", p.issuer),
                ),
            }
        }
        // New keys: what was verified with the old ones is checked again.
        self.verified.borrow_mut().clear();
        *self.loaded.borrow_mut() = Some(Loaded {
            cas,
            document: stored.document,
            issuers: Rc::new(issuers),
            fetched_at_ms: stored.fetched_at_ms,
            refresh_after_ms,
            checked_at_ms: now,
        });
    }
}

/// The JWT in an identity value: a header's `Bearer <jwt>`, or the bare token.
pub fn bearer_token(value: &str) -> &str {
    let v = value.trim();
    match v.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_dropped_in_any_case() {
        assert_eq!(bearer_token("Bearer a.b.c"), "a.b.c");
        assert_eq!(bearer_token("bearer   a.b.c "), "a.b.c");
        assert_eq!(bearer_token("a.b.c"), "a.b.c");
        assert_eq!(bearer_token(""), "");
    }
}
