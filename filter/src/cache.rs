//! Tokens cached in Envoy shared data, shared by every worker of this filter's VM.
//!
//! Key: `credmgr/v1/token/<provider>/<connection>/<identity>`; value: the control plane's
//! [`RuntimeToken`] as JSON, which carries its own expiry. Each worker also keeps the decoded
//! value next to its CAS version, so a hit decodes nothing unless another worker wrote since.

use crate::host::{Host, Level, SetSharedError};
use credmgr_common::RuntimeToken;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Shared-data key of a connection's token as seen by one identity.
pub fn token_key(provider_id: &str, connection_id: &str, identity: &str) -> String {
    format!("credmgr/v1/token/{provider_id}/{connection_id}/{identity}")
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

/// Per-worker view of the shared token cache.
#[derive(Default)]
pub struct TokenCache {
    decoded: RefCell<HashMap<String, (u32, Rc<RuntimeToken>)>>,
}

impl TokenCache {
    /// The cached token for `key`, if any. A value that cannot be read is treated as absent
    /// (and logged): the filter then fetches a new one, which overwrites it.
    pub fn get(&self, host: &impl Host, key: &str) -> Option<Rc<RuntimeToken>> {
        let (bytes, cas) = match host.get_shared(key) {
            Ok(v) => v,
            Err(e) => {
                host.log(Level::Warn, &format!("reading shared data {key}: {e}"));
                return None;
            }
        };
        let bytes = bytes?;
        let cas = cas.unwrap_or(0);
        if let Some((seen, token)) = self.decoded.borrow().get(key) {
            if *seen == cas {
                return Some(Rc::clone(token));
            }
        }
        match serde_json::from_slice::<RuntimeToken>(&bytes) {
            Ok(token) => {
                let token = Rc::new(token);
                self.decoded
                    .borrow_mut()
                    .insert(key.to_owned(), (cas, Rc::clone(&token)));
                Some(token)
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
        let Ok((Some(bytes), cas)) = host.get_shared(key) else {
            return false;
        };
        let Ok(mut current) = serde_json::from_slice::<RuntimeToken>(&bytes) else {
            return false;
        };
        if only.is_some_and(|t| current.access_token != t) || current.expires_at <= 0 {
            return false;
        }
        current.expires_at = 0;
        current.refresh_at = 0;
        let Ok(bytes) = serde_json::to_vec(&current) else {
            return false;
        };
        host.set_shared(key, &bytes, cas).is_ok()
    }

    /// Stores `token` unless the cache already holds one that expires later (another worker
    /// may have fetched a newer token meanwhile). Writes with compare-and-swap so that a
    /// concurrent writer's newer token is never overwritten by an older one.
    pub fn put(&self, host: &impl Host, key: &str, token: &RuntimeToken) {
        let Ok(bytes) = serde_json::to_vec(token) else {
            return;
        };
        for _ in 0..3 {
            let (current, cas) = match host.get_shared(key) {
                Ok(v) => v,
                Err(e) => {
                    host.log(Level::Warn, &format!("reading shared data {key}: {e}"));
                    return;
                }
            };
            if let Some(current) =
                current.and_then(|b| serde_json::from_slice::<RuntimeToken>(&b).ok())
            {
                if current.expires_at > token.expires_at {
                    return;
                }
            }
            match host.set_shared(key, &bytes, cas) {
                Ok(()) => return,
                Err(SetSharedError::CasMismatch) => continue,
                Err(SetSharedError::Host(e)) => {
                    host.log(Level::Warn, &format!("writing shared data {key}: {e}"));
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
    fn freshness_follows_refresh_point_and_expiry_margin() {
        let t = token(100, 80);
        assert_eq!(freshness(&t, 79_999, 1000), Freshness::Fresh);
        assert_eq!(freshness(&t, 80_000, 1000), Freshness::Refresh);
        assert_eq!(freshness(&t, 98_999, 1000), Freshness::Refresh);
        assert_eq!(freshness(&t, 99_000, 1000), Freshness::Expired);
        assert_eq!(freshness(&token(-5, -6), 0, 0), Freshness::Expired);
    }
}
