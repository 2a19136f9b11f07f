//! Counters through the Proxy-Wasm metrics API. Envoy shows them in its `/stats` with the
//! `wasmcustom.` prefix, e.g. `wasmcustom.credmgr.cache_hit`.
//!
//! Requests count in the worker's memory; the root context's tick hands the sums to Envoy.
//! Two host calls per request cost more than the counting itself (measured by `make bench`),
//! and a counter a fraction of a second late is fine for stats. The fixed counters are cells
//! of an array indexed by [`Counter`]: counting a cache hit is an add, no hashing, no
//! allocation. Only counters by reason (failures, rejections: the rare paths) live in a map.

use crate::host::{Host, Level};
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};

/// One of the filter's fixed counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(usize);

impl Counter {
    /// Every fixed counter, in index order (the native build defines them all at load).
    pub fn all() -> impl Iterator<Item = Counter> {
        (0..NAMES.len()).map(Counter)
    }

    /// Its name in Envoy's stats (without the `wasmcustom.` prefix).
    pub fn name(self) -> &'static str {
        NAMES.get(self.0).copied().unwrap_or("credmgr.unknown")
    }
}

impl AsRef<str> for Counter {
    fn as_ref(&self) -> &str {
        self.name()
    }
}

/// The counters' names, by index.
const NAMES: [&str; 13] = [
    "credmgr.cache_hit",
    "credmgr.cache_miss",
    "credmgr.refresh_ahead",
    "credmgr.control_plane_call",
    "credmgr.issuers_fetch",
    "credmgr.control_plane_failure",
    "credmgr.control_plane_retry",
    "credmgr.forced_refresh_skipped",
    "credmgr.stale_token_served",
    "credmgr.token_injected",
    "credmgr.request_rejected",
    "credmgr.jwt_verified",
    "credmgr.upstream_unauthorized",
];

/// A cached token served.
pub const CACHE_HIT: Counter = Counter(0);
/// No usable cached token: the request waited for the control plane.
pub const CACHE_MISS: Counter = Counter(1);
/// A background fetch of a token past its refresh point.
pub const REFRESH_AHEAD: Counter = Counter(2);
/// Token requests to the control plane's runtime API.
pub const CONTROL_PLANE_CALL: Counter = Counter(3);
/// Requests for the trusted issuers and their keys (identity-type `jwt`).
pub const ISSUERS_FETCH: Counter = Counter(4);
/// Failed calls, by reason (`credmgr.control_plane_failure.<code>`).
pub const CONTROL_PLANE_FAILURE: Counter = Counter(5);
/// Calls made once more because the control plane did not answer the first (a replica died).
pub const CONTROL_PLANE_RETRY: Counter = Counter(6);
/// Backend 401s that forced no refresh: one was forced for that key within
/// `cache.forced_refresh_interval_ms`.
pub const FORCED_REFRESH_SKIPPED: Counter = Counter(7);
/// A still-valid token served because the control plane failed.
pub const STALE_SERVED: Counter = Counter(8);
/// Headers set from a token.
pub const TOKEN_INJECTED: Counter = Counter(9);
/// Requests answered by the filter itself (`credmgr.request_rejected.<status>`).
pub const REQUEST_REJECTED: Counter = Counter(10);
/// Callers' JWT signatures verified (a JWT already verified by this worker is not counted).
pub const JWT_VERIFIED: Counter = Counter(11);
/// Backend answers of 401 to a request that carried a token; the token is fetched anew.
pub const UPSTREAM_UNAUTHORIZED: Counter = Counter(12);

/// The counters of one worker: counted here, defined in Envoy on first flush.
#[derive(Default)]
pub struct Stats {
    /// Counts since the last flush, by [`Counter`] index.
    fixed: [Cell<i64>; NAMES.len()],
    /// Envoy's ids of the fixed counters, once defined.
    fixed_ids: [Cell<Option<u32>>; NAMES.len()],
    /// Counters by reason (`<name>.<reason>`): counts since the last flush.
    by_reason: RefCell<FxHashMap<String, i64>>,
    /// Envoy's ids of the counters by reason, once defined.
    reason_ids: RefCell<FxHashMap<String, u32>>,
    warned: Cell<bool>,
}

impl Stats {
    /// Adds one to `counter`; Envoy sees it at the next [`Stats::flush`].
    pub fn inc(&self, counter: Counter) {
        if let Some(n) = self.fixed.get(counter.0) {
            n.set(n.get() + 1);
        }
    }

    /// Adds one to `<counter>.<reason>`.
    pub fn inc_by_reason(&self, counter: Counter, reason: &str) {
        let name = format!("{}.{reason}", counter.name());
        *self.by_reason.borrow_mut().entry(name).or_insert(0) += 1;
    }

    /// Hands the counts since the last flush to Envoy. A failing metrics call is logged once,
    /// never fatal.
    pub fn flush(&self, host: &impl Host) {
        for ((name, n), id) in NAMES.iter().zip(&self.fixed).zip(&self.fixed_ids) {
            let n = n.take();
            if n == 0 {
                continue;
            }
            let id = match id.get() {
                Some(id) => id,
                None => match host.define_counter(name) {
                    Ok(new) => {
                        id.set(Some(new));
                        new
                    }
                    Err(e) => {
                        self.warn(host, name, &e.to_string());
                        continue;
                    }
                },
            };
            if let Err(e) = host.increment(id, n) {
                self.warn(host, name, &e.to_string());
            }
        }
        let pending: Vec<(String, i64)> = self
            .by_reason
            .borrow_mut()
            .iter_mut()
            .filter(|(_, n)| **n != 0)
            .map(|(name, n)| (name.clone(), std::mem::take(n)))
            .collect();
        for (name, n) in pending {
            let known = self.reason_ids.borrow().get(&name).copied();
            let id = match known {
                Some(id) => id,
                None => match host.define_counter(&name) {
                    Ok(id) => {
                        self.reason_ids.borrow_mut().insert(name.clone(), id);
                        id
                    }
                    Err(e) => {
                        self.warn(host, &name, &e.to_string());
                        continue;
                    }
                },
            };
            if let Err(e) = host.increment(id, n) {
                self.warn(host, &name, &e.to_string());
            }
        }
    }

    fn warn(&self, host: &impl Host, name: &str, error: &str) {
        if !self.warned.replace(true) {
            host.log(
                Level::Warn,
                &format!("metrics unavailable ({name}: {error}); counting stops"),
            );
        }
    }
}
