//! A backend refused (401) a token this filter wrote into a request: the token is retired
//! from the cache, so the next request fetches it anew, and recorded with its fingerprint,
//! so the control plane replaces exactly that token. At most one refresh per
//! `cache.forced_refresh_interval_ms` is forced per token key: a backend that refuses
//! every token does not turn its traffic into provider token requests.

use crate::denials;
use crate::host::{Host, Level, SetSharedError};
use crate::stats;
use crate::view::View;
use credmgr_common::runtime::token_fingerprint;
use credmgr_common::RuntimeToken;

/// The backend answered 401 to a request that carried `token`, cached under `key`.
pub fn by_backend(host: &impl Host, view: &View, key: &str, token: &RuntimeToken) {
    view.stats.inc(stats::UPSTREAM_UNAUTHORIZED);
    let location = view.cache.location(key);
    let fingerprint = token_fingerprint(&token.access_token);
    let now = host.now_ms();
    let last = denials::rejected(host, &location, key);
    // Another 401 for the token already recorded retires this worker's copy of it too.
    let recorded = last.as_ref().is_some_and(|l| l.fingerprint == fingerprint);
    if let Some(last) = last.filter(|_| !recorded) {
        let interval = view.config.forced_refresh_interval_ms;
        if now < last.at_ms.saturating_add(interval) {
            view.stats.inc(stats::FORCED_REFRESH_SKIPPED);
            host.log(
                Level::Debug,
                &format!(
                    "the backend refused the token of {key} again; a refresh was \
                 forced less than {interval} ms ago, so it stays in use"
                ),
            );
            return;
        }
    }
    if view.cache.retire(host, key, token) {
        host.log(
            Level::Info,
            &format!("the backend refused the token of {key}; it will be fetched anew"),
        );
    }
    if recorded {
        return;
    }
    if let Err(SetSharedError::Host(e)) =
        denials::record_rejected(host, &location, key, &fingerprint, now)
    {
        host.log(
            Level::Warn,
            &format!("cannot record the refused token of {key}: {e}"),
        );
    }
}
