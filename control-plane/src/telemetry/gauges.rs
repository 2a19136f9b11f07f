//! The gauges that describe the whole store (connections by status, tokens past their refresh
//! point), read when `/metrics` is scraped, at most every [`READ_EVERY`].
//!
//! On scrape rather than on a timer: nothing is read while nobody scrapes, and a scrape sees
//! numbers at most a few seconds old. Two aggregate queries (`store/stats.rs`); a scrape that
//! comes within [`READ_EVERY`] of the last read, or while another scrape is reading, serves
//! the values already there, so a storm of scrapers costs the database nothing more. Every
//! replica reports the same numbers (they describe the shared database): aggregate them with
//! `max`, not `sum`.

use std::time::Duration;

use crate::clock::unix_now;
use crate::state::AppState;

/// The longest the store's gauges are served without reading them again.
pub const READ_EVERY: Duration = Duration::from_secs(5);
/// How long a scrape waits for the store; past it, the previous values are served.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// Reads the store's gauges again if they are older than [`READ_EVERY`]. A store that does
/// not answer leaves the previous values (and `credmgr_store_gauges_updated_timestamp_seconds`
/// stops moving).
pub async fn refresh(state: &AppState) {
    if state.metrics.claim_store_read(READ_EVERY) {
        read_now(state).await;
    }
}

/// Reads the store's gauges now, whatever their age (tests, and [`refresh`]).
pub async fn read_now(state: &AppState) {
    let now = unix_now();
    match tokio::time::timeout(READ_TIMEOUT, state.store.counts(now)).await {
        Ok(Ok(counts)) => state.metrics.set_store_gauges(
            &counts.connections,
            counts.in_refresh_window,
            counts.expired,
            now,
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "metrics: cannot read the store's counts"),
        Err(_) => tracing::warn!(
            "metrics: the store's counts took more than {}s; serving the previous ones",
            READ_TIMEOUT.as_secs()
        ),
    }
}
