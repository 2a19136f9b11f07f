//! Refresh ahead. A token past its refresh point but still valid is served, and fetched again
//! from the root context's tick, in the background: no request waits for the refresh, and a
//! call made by the root context is not cancelled when a request ends. A shared-data claim
//! keeps the workers of a VM from fetching the same thing at once.

use crate::control_plane::TokenNeed;
use crate::host::{Host, SetSharedError};
use std::cell::RefCell;
use std::collections::BTreeMap;

/// The tokens to fetch again on the next tick, by fetch key: a token that many requests find
/// past its refresh point between two ticks is fetched once. At most `cache.max_entries` wait
/// for a tick; beyond that an ask is dropped (the next request past the refresh point asks
/// again, and a token that expires meanwhile is fetched by the request that needs it).
pub struct Refreshes {
    due: RefCell<BTreeMap<String, TokenNeed>>,
    max: usize,
}

impl Refreshes {
    pub fn new(max: u32) -> Refreshes {
        Refreshes {
            due: RefCell::default(),
            max: max.max(1) as usize,
        }
    }

    /// Asks for `need` to be fetched again on the next tick.
    pub fn ask(&self, need: TokenNeed) {
        let mut due = self.due.borrow_mut();
        if due.len() >= self.max && !due.contains_key(&need.fetch_key) {
            return;
        }
        due.entry(need.fetch_key.clone()).or_insert(need);
    }

    /// The tokens asked for since the last tick, which are now the tick's to fetch.
    pub fn take(&self) -> BTreeMap<String, TokenNeed> {
        std::mem::take(&mut *self.due.borrow_mut())
    }
}

/// Claims the right to refresh the token at `key` (its location: its own key, or its slot)
/// across this VM's workers with a CAS marker in shared
/// data, valid for one call timeout (`timeout_ms`). Another worker's live claim means it is fetching.
pub fn claim(host: &impl Host, key: &str, timeout_ms: u64) -> bool {
    let marker = format!("credmgr/v1/fetching/{key}");
    let now = host.now_ms();
    let (current, cas) = match host.get_shared(&marker) {
        Ok(v) => v,
        Err(_) => return true,
    };
    let held_until = current
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0);
    if held_until > now {
        return false;
    }
    let until = now.saturating_add(timeout_ms);
    match host.set_shared(&marker, until.to_string().as_bytes(), cas) {
        Ok(()) => true,
        Err(SetSharedError::CasMismatch) => false,
        Err(SetSharedError::Host(_)) => true,
    }
}
