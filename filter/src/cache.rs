//! Tokens cached in Envoy shared data, shared by every worker of this filter's VM.
//!
//! Envoy's shared data has no delete: a key once written stays for the life of the VM. So
//! where an entry lives depends on where its ids come from:
//! - literal ids (the configuration names them, so their number is fixed): at their own key,
//!   `credmgr/v1/token/<provider>/<connection>/<identity>`;
//! - ids rendered per request (one connection per user): in one of `cache.max_entries` slots,
//!   `credmgr/v1/slot/<n>` with `n = fnv1a(key) mod max_entries`. A slot holds one token at a
//!   time; a token written to a slot evicts the one there, and a look-up that finds another
//!   key in its slot is a miss. However many users call, shared data holds at most
//!   `max_entries` such tokens (and as many refusal and refresh markers).
//!
//! Value: `{"key": <cache key>, "token": <RuntimeToken>}` as JSON; the token carries its own
//! expiry, the key tells a slot's occupant from the entry looked for.
//!
//! Each worker also keeps its own decoded copy of each token, next to the CAS version it was
//! read at. A request serves that copy without a host call while the copy is fresh (before its
//! refresh point) and was checked against shared data less than `cache.revalidate_ms` ago.
//! Reading shared data is a host call that copies the whole entry into the VM (through a call
//! back into the VM to allocate it), on every request. What a worker can miss meanwhile is a
//! token that another worker replaced early or retired (a backend's 401, a refused caller);
//! the worker sees it at its next check, and a 401 the worker gets itself retires its copy at
//! once. A token past its refresh point is always looked up in shared data, so a token that
//! another worker refreshed is picked up on the first request that needs it.

use crate::host::{Host, Level, SetSharedError};
use credmgr_common::RuntimeToken;
use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::cell::RefCell;
use std::rc::Rc;

/// Beginning of the cache keys of ids rendered per request, which live in slots.
const RENDERED: &str = "credmgr/v1/rendered/";

/// Cache key (and shared-data key) of a connection's token as seen by one identity, for
/// literal ids.
pub fn token_key(provider_id: &str, connection_id: &str, identity: &str) -> String {
    format!("credmgr/v1/token/{provider_id}/{connection_id}/{identity}")
}

/// Cache key of a connection's token as seen by one identity, for ids rendered per request;
/// it lives in a slot (see [`TokenCache::location`]).
pub fn rendered_key(provider_id: &str, connection_id: &str, identity: &str) -> String {
    format!("{RENDERED}{provider_id}/{connection_id}/{identity}")
}

/// A shared-data entry as written.
#[derive(Serialize)]
struct EntryOut<'a> {
    key: &'a str,
    token: &'a RuntimeToken,
}

/// A shared-data entry as read.
#[derive(Deserialize)]
struct EntryIn {
    key: String,
    token: RuntimeToken,
}

/// Reads an entry: the token if the entry holds `key` (`Ok(None)`: the slot holds another).
fn decode(bytes: &[u8], key: &str) -> Result<Option<RuntimeToken>, serde_json::Error> {
    let entry: EntryIn = serde_json::from_slice(bytes)?;
    Ok((entry.key == key).then_some(entry.token))
}

/// FNV-1a, 64 bits.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// How usable a cached token is at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use it; nothing to do.
    Fresh,
    /// Still valid, but past the point where the control plane refreshes it: fetch again, and
    /// keep using this one if the fetch fails.
    Refresh,
    /// Expired, or too close to expiry to reach the backend valid.
    Expired,
}

/// Classifies `token` at `now_ms`; tokens within `margin_ms` of expiry count as expired.
pub fn freshness(token: &RuntimeToken, now_ms: u64, margin_ms: u64) -> Freshness {
    let to_ms = |s: i64| u64::try_from(s).unwrap_or(0).saturating_mul(1000);
    if now_ms.saturating_add(margin_ms) >= to_ms(token.expires_at) {
        Freshness::Expired
    } else if now_ms >= to_ms(token.refresh_at) {
        Freshness::Refresh
    } else {
        Freshness::Fresh
    }
}

/// A worker's decoded copy of a shared-data entry.
struct LocalCopy {
    /// The CAS version of the entry it was decoded from.
    cas: u32,
    token: Rc<RuntimeToken>,
    /// When shared data last confirmed it (milliseconds since the epoch).
    checked_at: u64,
}

/// Per-worker view of the shared token cache.
pub struct TokenCache {
    /// At most `max_entries` copies; a new one beyond that evicts an arbitrary one (it is
    /// read again from shared data when next needed).
    copies: RefCell<HashMap<String, LocalCopy>>,
    /// Slots of rendered keys, and the most copies kept (`cache.max_entries`).
    max_entries: u32,
    /// How long a fresh copy is served without looking at shared data; 0: never.
    revalidate_ms: u64,
    /// The expiry margin: a copy this close to expiry is never served from memory.
    margin_ms: u64,
}

impl TokenCache {
    pub fn new(revalidate_ms: u64, margin_ms: u64, max_entries: u32) -> TokenCache {
        TokenCache {
            copies: RefCell::default(),
            max_entries: max_entries.max(1),
            revalidate_ms,
            margin_ms,
        }
    }

    /// The shared-data key where `key`'s token lives: the key itself for literal ids, its
    /// slot for rendered ones.
    pub fn location<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if key.starts_with(RENDERED) {
            let slot = fnv1a(key.as_bytes()) % u64::from(self.max_entries);
            Cow::Owned(format!("credmgr/v1/slot/{slot}"))
        } else {
            Cow::Borrowed(key)
        }
    }

    /// How many copies this worker keeps now.
    pub fn copies(&self) -> usize {
        self.copies.borrow().len()
    }

    /// Keeps a copy, evicting an arbitrary other one when the worker keeps `max_entries`.
    fn keep(&self, key: &str, copy: LocalCopy) {
        let mut copies = self.copies.borrow_mut();
        if copies.len() >= self.max_entries as usize && !copies.contains_key(key) {
            if let Some(victim) = copies.keys().next().cloned() {
                copies.remove(&victim);
            }
        }
        copies.insert(key.to_owned(), copy);
    }

    /// The cached token for `key` at `now_ms`, if any: the worker's copy while it may be
    /// trusted, else the shared entry. A value that cannot be read is treated as absent (and
    /// logged): the filter then fetches a new one, which overwrites it.
    pub fn get(&self, host: &impl Host, key: &str, now_ms: u64) -> Option<Rc<RuntimeToken>> {
        if let Some(copy) = self.copies.borrow().get(key) {
            if now_ms < copy.checked_at.saturating_add(self.revalidate_ms)
                && freshness(&copy.token, now_ms, self.margin_ms) == Freshness::Fresh
            {
                return Some(Rc::clone(&copy.token));
            }
        }
        let location = self.location(key);
        let (bytes, cas) = match host.get_shared(&location) {
            Ok(v) => v,
            Err(e) => {
                host.log(Level::Warn, &format!("reading shared data {location}: {e}"));
                return None;
            }
        };
        let Some(bytes) = bytes else {
            self.copies.borrow_mut().remove(key);
            return None;
        };
        let cas = cas.unwrap_or(0);
        if let Some(copy) = self.copies.borrow_mut().get_mut(key) {
            if copy.cas == cas {
                copy.checked_at = now_ms;
                return Some(Rc::clone(&copy.token));
            }
        }
        match decode(&bytes, key) {
            Ok(Some(token)) => {
                let token = Rc::new(token);
                let copy = LocalCopy {
                    cas,
                    token: Rc::clone(&token),
                    checked_at: now_ms,
                };
                self.keep(key, copy);
                Some(token)
            }
            // The slot holds another key's token: ours was evicted.
            Ok(None) => {
                self.copies.borrow_mut().remove(key);
                None
            }
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("ignoring unreadable cache entry {key}: {e}"),
                );
                None
            }
        }
    }

    /// Retires `token` if the cache still holds it (a backend refused it): the entry is marked
    /// expired, so the next request fetches a new one. A newer token is left alone. Returns
    /// whether the entry was retired.
    pub fn retire(&self, host: &impl Host, key: &str, token: &RuntimeToken) -> bool {
        self.mark_expired(host, key, Some(&token.access_token))
    }

    /// Stops serving whatever token the cache holds for `key` (the control plane refused a
    /// caller it was served to: an access policy was removed). The next request fetches.
    pub fn expire(&self, host: &impl Host, key: &str) {
        self.mark_expired(host, key, None);
    }

    /// Marks the cached entry expired, if it is still valid and (with `only`) still holds
    /// that access token; compare-and-swap, so a newer token written meanwhile is kept.
    fn mark_expired(&self, host: &impl Host, key: &str, only: Option<&str>) -> bool {
        let forget = match (self.copies.borrow().get(key), only) {
            (Some(copy), Some(t)) => copy.token.access_token == t,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if forget {
            self.copies.borrow_mut().remove(key);
        }
        let location = self.location(key);
        let Ok((Some(bytes), cas)) = host.get_shared(&location) else {
            return false;
        };
        let Ok(Some(mut current)) = decode(&bytes, key) else {
            return false;
        };
        if only.is_some_and(|t| current.access_token != t) || current.expires_at <= 0 {
            return false;
        }
        current.expires_at = 0;
        current.refresh_at = 0;
        let Ok(bytes) = serde_json::to_vec(&EntryOut {
            key,
            token: &current,
        }) else {
            return false;
        };
        host.set_shared(&location, &bytes, cas).is_ok()
    }

    /// Stores `token` unless the cache already holds one that expires later (another worker
    /// may have fetched a newer token meanwhile). Writes with compare-and-swap so that a
    /// concurrent writer's newer token is never overwritten by an older one. The worker's copy
    /// is dropped: the next request reads whichever token won. In a slot that holds another
    /// key's token, the new token evicts it.
    pub fn put(&self, host: &impl Host, key: &str, token: &RuntimeToken) {
        self.copies.borrow_mut().remove(key);
        let Ok(bytes) = serde_json::to_vec(&EntryOut { key, token }) else {
            return;
        };
        let location = self.location(key);
        for _ in 0..3 {
            let (current, cas) = match host.get_shared(&location) {
                Ok(v) => v,
                Err(e) => {
                    host.log(Level::Warn, &format!("reading shared data {location}: {e}"));
                    return;
                }
            };
            if let Some(Ok(Some(current))) = current.map(|b| decode(&b, key)) {
                if current.expires_at > token.expires_at {
                    return;
                }
            }
            match host.set_shared(&location, &bytes, cas) {
                Ok(()) => return,
                Err(SetSharedError::CasMismatch) => continue,
                Err(SetSharedError::Host(e)) => {
                    host.log(Level::Warn, &format!("writing shared data {location}: {e}"));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(expires_at: i64, refresh_at: i64) -> RuntimeToken {
        RuntimeToken {
            access_token: "t".into(),
            token_type: "Bearer".into(),
            expires_at,
            refresh_at,
            claims: Default::default(),
            access_policies: Vec::new(),
        }
    }

    #[test]
    fn rendered_keys_share_a_bounded_number_of_slots_and_literal_keys_keep_theirs() {
        let cache = TokenCache::new(1000, 1000, 8);
        let literal = token_key("gh", "alice", "managed");
        assert_eq!(cache.location(&literal), literal.as_str());
        let slots: std::collections::HashSet<String> = (0..1000)
            .map(|i| {
                cache
                    .location(&rendered_key("gh", &format!("u{i}"), "jwt"))
                    .into_owned()
            })
            .collect();
        assert_eq!(slots.len(), 8);
        assert!(slots.iter().all(|s| s.starts_with("credmgr/v1/slot/")));
    }

    #[test]
    fn freshness_follows_refresh_point_and_expiry_margin() {
        let t = token(100, 80);
        assert_eq!(freshness(&t, 79_999, 1000), Freshness::Fresh);
        assert_eq!(freshness(&t, 80_000, 1000), Freshness::Refresh);
        assert_eq!(freshness(&t, 98_999, 1000), Freshness::Refresh);
        assert_eq!(freshness(&t, 99_000, 1000), Freshness::Expired);
        assert_eq!(freshness(&token(-5, -6), 0, 0), Freshness::Expired);
    }
}
