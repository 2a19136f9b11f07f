//! Counters through the Proxy-Wasm metrics API. Envoy shows them in its `/stats` with the
//! `wasmcustom.` prefix, e.g. `wasmcustom.credmgr.cache_hit`.
//!
//! Requests count in the worker's memory; the root context's tick hands the sums to Envoy.
//! Two host calls per request cost more than the counting itself (measured by `make bench`),
//! and a counter a fraction of a second late is fine for stats.

use crate::host::{Host, Level};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// A cached token served.
pub const CACHE_HIT: &str = "credmgr.cache_hit";
/// No usable cached token: the request waited for the control plane.
pub const CACHE_MISS: &str = "credmgr.cache_miss";
/// A background fetch of a token past its refresh point.
pub const REFRESH_AHEAD: &str = "credmgr.refresh_ahead";
/// Token requests to the control plane's runtime API.
pub const CONTROL_PLANE_CALL: &str = "credmgr.control_plane_call";
/// Requests for the trusted issuers and their keys (identity-type `jwt`).
pub const ISSUERS_FETCH: &str = "credmgr.issuers_fetch";
/// Failed calls, by reason (`credmgr.control_plane_failure.<code>`).
pub const CONTROL_PLANE_FAILURE: &str = "credmgr.control_plane_failure";
/// Calls made once more because the control plane did not answer the first (a replica died).
pub const CONTROL_PLANE_RETRY: &str = "credmgr.control_plane_retry";
/// Backend 401s that forced no refresh: one was forced for that key within
/// `cache.forced_refresh_interval_ms`.
pub const FORCED_REFRESH_SKIPPED: &str = "credmgr.forced_refresh_skipped";
/// A still-valid token served because the control plane failed.
pub const STALE_SERVED: &str = "credmgr.stale_token_served";
/// Headers set from a token.
pub const TOKEN_INJECTED: &str = "credmgr.token_injected";
/// Requests answered by the filter itself (`credmgr.request_rejected.<status>`).
pub const REQUEST_REJECTED: &str = "credmgr.request_rejected";
/// Callers' JWT signatures verified (a JWT already verified by this worker is not counted).
pub const JWT_VERIFIED: &str = "credmgr.jwt_verified";
/// Backend answers of 401 to a request that carried a token; the token is fetched anew.
pub const UPSTREAM_UNAUTHORIZED: &str = "credmgr.upstream_unauthorized";

/// The counters of one worker: counted here, defined in Envoy on first flush.
#[derive(Default)]
pub struct Stats {
    ids: RefCell<HashMap<String, u32>>,
    pending: RefCell<HashMap<String, i64>>,
    warned: Cell<bool>,
}

impl Stats {
    /// Adds one to counter `name`; Envoy sees it at the next [`Stats::flush`].
    pub fn inc(&self, name: &str) {
        let mut pending = self.pending.borrow_mut();
        match pending.get_mut(name) {
            Some(n) => *n += 1,
            None => {
                pending.insert(name.to_owned(), 1);
            }
        }
    }

    /// Adds one to `<name>.<reason>`.
    pub fn inc_by_reason(&self, name: &str, reason: &str) {
        self.inc(&format!("{name}.{reason}"));
    }

    /// Hands the counts since the last flush to Envoy. A failing metrics call is logged once,
    /// never fatal.
    pub fn flush(&self, host: &impl Host) {
        let pending: Vec<(String, i64)> = self
            .pending
            .borrow_mut()
            .iter_mut()
            .filter(|(_, n)| **n != 0)
            .map(|(name, n)| (name.clone(), std::mem::take(n)))
            .collect();
        for (name, n) in pending {
            let known = self.ids.borrow().get(&name).copied();
            let id = match known {
                Some(id) => id,
                None => match host.define_counter(&name) {
                    Ok(id) => {
                        self.ids.borrow_mut().insert(name.clone(), id);
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
