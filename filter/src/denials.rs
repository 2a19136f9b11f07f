//! Refusals the filter remembers, so that a refused request does not turn into load:
//! - the control plane's refusals (403), by fetch key, repeated on this worker without asking
//!   again for `cache.denial_ttl_ms`: a denied caller's traffic does not become the control
//!   plane's load;
//! - the tokens a backend refused (401), recorded in Envoy's shared data, so that the next
//!   fetch of that token from any worker asks the control plane for a newer one.

use crate::failure::Failure;
use crate::host::{Host, SetSharedError};
use std::cell::RefCell;
use std::collections::HashMap;

/// Most refusals remembered per worker.
const MAX_DENIALS: usize = 10_000;

/// The control plane's refusals on one worker.
pub struct Denials {
    /// How long a refusal is repeated locally (`cache.denial_ttl_ms`).
    ttl_ms: u64,
    /// Refusals (403) by fetch key, with when they stop being repeated locally.
    by_fetch_key: RefCell<HashMap<String, (u64, Failure)>>,
}

impl Denials {
    /// Refusals repeated for `ttl_ms` after they came.
    pub fn new(ttl_ms: u64) -> Denials {
        Denials {
            ttl_ms,
            by_fetch_key: RefCell::default(),
        }
    }

    /// The control plane's refusal for `fetch_key`, if it came less than
    /// `cache.denial_ttl_ms` ago.
    pub fn recent(&self, host: &impl Host, fetch_key: &str) -> Option<Failure> {
        let now = host.now_ms();
        let mut denials = self.by_fetch_key.borrow_mut();
        match denials.get(fetch_key) {
            Some((until, failure)) if *until > now => Some(failure.clone()),
            Some(_) => {
                denials.remove(fetch_key);
                None
            }
            None => None,
        }
    }

    /// Remembers the control plane's refusal of `fetch_key`.
    pub fn remember(&self, host: &impl Host, fetch_key: &str, failure: &Failure) {
        let mut denials = self.by_fetch_key.borrow_mut();
        // Bounded: a flood of distinct refused callers only costs memory up to here.
        if denials.len() >= MAX_DENIALS {
            let now = host.now_ms();
            denials.retain(|_, (until, _)| *until > now);
            if denials.len() >= MAX_DENIALS {
                denials.clear();
            }
        }
        let until = host.now_ms().saturating_add(self.ttl_ms);
        denials.insert(fetch_key.to_owned(), (until, failure.clone()));
    }
}

/// Shared-data key recording the expiry of a token that a backend refused, so that the next
/// fetch from any worker asks the control plane for a newer one.
fn rejected_key(key: &str) -> String {
    format!("credmgr/v1/rejected/{key}")
}

/// Records that a backend refused the token of cache key `key` that expires at `expires_at`.
pub fn record_rejected(host: &impl Host, key: &str, expires_at: i64) -> Result<(), SetSharedError> {
    let marker = expires_at.to_string();
    host.set_shared(&rejected_key(key), marker.as_bytes(), None)
}

/// The expiry of the last token of cache key `key` that a backend refused, if one was. The
/// control plane replaces a stored token no newer than it; a marker older than the stored
/// token changes nothing, so it is never cleared.
pub fn rejected_expiry(host: &impl Host, key: &str) -> Option<i64> {
    host.get_shared(&rejected_key(key))
        .ok()
        .and_then(|(v, _)| v)
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<i64>().ok())
}
