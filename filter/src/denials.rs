//! Refusals the filter remembers, so that a refused request does not turn into load:
//! - the control plane's refusals (403), by fetch key, repeated on this worker without asking
//!   again for `cache.denial_ttl_ms`: a denied caller's traffic does not become the control
//!   plane's load;
//! - the tokens a backend refused (401), recorded in Envoy's shared data by fingerprint with
//!   the time, so that the next fetch of that token from any worker asks the control plane
//!   to replace it, and a refresh is forced at most once per key per
//!   `cache.forced_refresh_interval_ms`. The record lives beside the token's location (its
//!   key, or its slot: see [`crate::cache`]) and names the key it is for, so the number of
//!   records is bounded like the tokens'.

use crate::failure::Failure;
use crate::host::{Host, SetSharedError};
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;

/// The control plane's refusals on one worker.
pub struct Denials {
    /// How long a refusal is repeated locally (`cache.denial_ttl_ms`).
    ttl_ms: u64,
    /// Refusals (403) by fetch key, with when they stop being repeated locally.
    by_fetch_key: RefCell<HashMap<String, (u64, Failure)>>,
    /// Most refusals remembered (`cache.max_entries`).
    max: usize,
}

impl Denials {
    /// Refusals repeated for `ttl_ms` after they came, at most `max` of them.
    pub fn new(ttl_ms: u64, max: u32) -> Denials {
        Denials {
            ttl_ms,
            by_fetch_key: RefCell::default(),
            max: max.max(1) as usize,
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
        // Bounded: a flood of distinct refused callers only costs memory up to here. The
        // expired go first; if none has, all go (the control plane is asked again).
        if denials.len() >= self.max {
            let now = host.now_ms();
            denials.retain(|_, (until, _)| *until > now);
            if denials.len() >= self.max {
                denials.clear();
            }
        }
        let until = host.now_ms().saturating_add(self.ttl_ms);
        denials.insert(fetch_key.to_owned(), (until, failure.clone()));
    }
}

/// Shared-data key recording the token that a backend refused, so that the next fetch from
/// any worker asks the control plane for a newer one; `location` is where the token lives
/// ([`crate::cache::TokenCache::location`]).
fn rejected_key(location: &str) -> String {
    format!("credmgr/v1/rejected/{location}")
}

/// A refused token, as recorded: its fingerprint
/// ([`credmgr_common::runtime::token_fingerprint`]: the control plane compares tokens by it,
/// not by expiry, which two tokens issued in one second share), and when the refusal that
/// forced a refresh was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub fingerprint: String,
    pub at_ms: u64,
}

/// Records that a backend refused the token of cache key `key` (living at `location`) whose
/// fingerprint is `fingerprint`, at `now_ms`. Value: `<fingerprint> <at_ms> <key>`; a record
/// for another key in the same slot is replaced.
pub fn record_rejected(
    host: &impl Host,
    location: &str,
    key: &str,
    fingerprint: &str,
    now_ms: u64,
) -> Result<(), SetSharedError> {
    let marker = format!("{fingerprint} {now_ms} {key}");
    host.set_shared(&rejected_key(location), marker.as_bytes(), None)
}

/// The last token of cache key `key` that a backend refused, if one was. The control plane
/// replaces a stored token only if it is that one; a record of an older token changes
/// nothing, so it is never cleared. A record for another key, or in an older format, reads
/// as none.
pub fn rejected(host: &impl Host, location: &str, key: &str) -> Option<Rejected> {
    let bytes = host.get_shared(&rejected_key(location)).ok()?.0?;
    let text = String::from_utf8(bytes).ok()?;
    let mut parts = text.splitn(3, ' ');
    let (fingerprint, at_ms, for_key) = (parts.next()?, parts.next()?, parts.next()?);
    if for_key != key || fingerprint.len() != 16 {
        return None;
    }
    Some(Rejected {
        fingerprint: fingerprint.to_owned(),
        at_ms: at_ms.parse().ok()?,
    })
}
