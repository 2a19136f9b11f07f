//! What a request's pipeline sees of its worker: the configuration, the token cache, the
//! counters, the trusted issuers, the control plane's recent refusals, and the queue of
//! refresh-ahead fetches. The worker owns a [`View`] and lends it to each run of the pipeline.
//! The pipeline sees nothing else of the worker (not the paused requests, not the calls in
//! flight), so what only the worker can do, pausing a request for a fetch or answering it, the
//! pipeline asks for as data: the `Progress` it returns.

use crate::cache::TokenCache;
use crate::config::FilterConfig;
use crate::denials::Denials;
use crate::identity::Identities;
use crate::refresh::Refreshes;
use crate::stats::Stats;
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
        }
    }
}
