//! What a request's pipeline sees of its worker: the configuration, the token cache, the
//! counters, the trusted issuers, the control plane's recent refusals, and the queue of
//! refresh-ahead fetches. The worker owns a [`View`] and lends it to each run of the pipeline.
//! The pipeline sees nothing else of the worker (not the paused requests, not the calls in
//! flight), so what only the worker can do, pausing a request for a fetch or answering it, the
//! pipeline asks for as data: the `Progress` it returns.

use crate::cache::TokenCache;
use crate::config::FilterConfig;
use crate::denials::Denials;
use crate::host::Host;
use crate::identity::Identities;
use crate::refresh::Refreshes;
use crate::stats::Stats;
use std::cell::Cell;
use std::rc::Rc;

/// The part of one worker's state that its requests' pipelines use. Owned by the worker and
/// lent by reference, so the pipeline reaches each part as cheaply as the worker does.
pub struct View {
    pub config: Rc<FilterConfig>,
    pub cache: TokenCache,
    pub stats: Stats,
    pub identities: Identities,
    /// Consulted before a fetch; the worker records a refusal when a fetch is refused.
    pub denials: Denials,
    /// A token served past its refresh point is queued here; the worker's tick fetches it.
    pub refreshes: Refreshes,
    /// The time requests use, set by the worker's tick (0: no tick yet). See [`View::now`].
    ticked: Cell<u64>,
}

impl View {
    pub fn new(config: FilterConfig) -> View {
        View {
            cache: TokenCache::new(
                config.revalidate_ms,
                config.expiry_margin_ms,
                config.max_entries,
            ),
            denials: Denials::new(config.denial_ttl_ms, config.max_entries),
            identities: Identities::keeping(config.identity_claims.clone()),
            refreshes: Refreshes::new(config.max_entries),
            config: Rc::new(config),
            stats: Stats::default(),
            ticked: Cell::new(0),
        }
    }

    /// The time a request uses, in milliseconds since the epoch: the clock as read by the
    /// last tick plus one tick period, so never earlier than the real time while ticks come
    /// (a token looks at most one tick older than it is, which only makes the filter stop
    /// serving it a little earlier). A clock read is a host call; a tick comes every
    /// `cache.refresh_tick_ms` (200 ms by default) and expiries, margins and leeways are
    /// seconds. Before the first tick, the clock is read.
    pub fn now(&self, host: &impl Host) -> u64 {
        match self.ticked.get() {
            0 => host.now_ms(),
            t => t,
        }
    }

    /// The worker's tick: reads the clock for the requests until the next one.
    pub fn tick(&self, host: &impl Host) {
        let now = host.now_ms();
        self.ticked
            .set(now.saturating_add(self.config.refresh_tick_ms).max(1));
    }
}
