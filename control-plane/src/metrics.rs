//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! Labels name only what an operator configures or what the code enumerates (providers,
//! grant types, outcomes, statuses, error codes, routes, HTTP status codes), never a
//! connection, a user or a gateway: those number in the tens of thousands, and each label
//! value is a time series of its own in Prometheus (memory, and the cost of every query).
//! Logs and traces name connections; metrics say how many.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Buckets of provider token requests, in seconds: from a fast local identity provider to
/// the default timeout (10 s) of `CREDMGR_PROVIDER_TIMEOUT`.
const PROVIDER_BUCKETS: [f64; 11] = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Buckets of runtime API requests, in seconds: a token served from the store takes about a
/// millisecond, one fetched from the provider first as long as the provider.
const RUNTIME_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    grant_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderDurationLabels {
    /// The provider's id: providers are created by operators, a handful to a few tens per
    /// deployment, and each is a token endpoint of its own (two Entra ID tenants are two
    /// providers of one preset), so the id is what an alert must name.
    provider: String,
    grant_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeHttpLabels {
    /// The route's template, never the path (which names the connection).
    route: String,
    /// The HTTP status code of the answer.
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    status: String,
    /// The code of the last failure recorded on the connection, `none` without one.
    error_code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

type DurationFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How many connections have one status and error code (a row of
/// [`Metrics::set_connections`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCount {
    pub status: String,
    pub error_code: Option<String>,
    pub count: i64,
}

/// The control plane's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    provider_token_requests: Family<ProviderLabels, Counter>,
    provider_request_duration: DurationFamily<ProviderDurationLabels>,
    runtime_token_requests: Family<RuntimeLabels, Counter>,
    runtime_request_duration: DurationFamily<RuntimeHttpLabels>,
    connections: Family<ConnectionLabels, Gauge>,
    /// Every label set of `connections` ever set: one that is gone from the store goes to 0
    /// instead of vanishing (an alert on it then resolves instead of going stale).
    connection_labels: Mutex<HashSet<ConnectionLabels>>,
    tokens_in_refresh_window: Gauge,
    tokens_expired: Gauge,
    store_gauges_updated: Gauge,
    /// When the store's gauges were last read, or a read began (`telemetry::gauges`).
    store_read_at: Mutex<Option<Instant>>,
    scheduler_backlog: Gauge,
    scheduler_lag: Gauge<f64, AtomicU64>,
    scheduler_last_run: Gauge,
    /// Webhooks and the audit trail (#18).
    events: EventCounters,
}

/// The counters of webhook deliveries and of the audit trail's writer.
#[derive(Debug, Default)]
struct EventCounters {
    webhook_delivery_failures: Family<RuntimeLabels, Counter>,
    audit_dropped: Counter,
}

impl EventCounters {
    fn register(registry: &mut Registry) -> Self {
        let c = EventCounters::default();
        registry.register(
            "credmgr_webhook_delivery_failures",
            "Failed webhook delivery attempts, by outcome (retrying: another attempt is \
             scheduled; gave_up: the delivery failed for good after the last attempt)",
            c.webhook_delivery_failures.clone(),
        );
        registry.register(
            "credmgr_audit_entries_dropped",
            "Runtime-API audit entries not recorded: the writer's queue was full (the request \
             was served anyway) or the database refused the batch",
            c.audit_dropped.clone(),
        );
        for outcome in ["retrying", "gave_up"] {
            c.webhook_delivery_failures
                .get_or_create(&RuntimeLabels {
                    outcome: outcome.into(),
                })
                .get();
        }
        c
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn provider_histogram() -> Histogram {
    Histogram::new(PROVIDER_BUCKETS)
}

fn runtime_histogram() -> Histogram {
    Histogram::new(RUNTIME_BUCKETS)
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        registry.register(
            // Encoded `credmgr_build_info{version="..."} 1`.
            "credmgr_build",
            "The running credmgr's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            }),
        );
        let provider_token_requests = Family::<ProviderLabels, Counter>::default();
        registry.register(
            // The `_total` suffix is added by the encoder, as OpenMetrics requires for counters.
            "credmgr_provider_token_requests",
            "Token requests sent to providers' token endpoints, by grant type and outcome \
             (success, provider_unreachable, client_secret_rejected, refresh_token_invalid, \
             provider_error)",
            provider_token_requests.clone(),
        );
        let provider_request_duration: DurationFamily<ProviderDurationLabels> =
            Family::new_with_constructor(provider_histogram);
        registry.register_with_unit(
            "credmgr_provider_token_request_duration",
            "How long providers' token endpoints took to answer (or to fail), by provider id, \
             grant type and outcome",
            Unit::Seconds,
            provider_request_duration.clone(),
        );
        let runtime_token_requests = Family::<RuntimeLabels, Counter>::default();
        registry.register(
            "credmgr_runtime_token_requests",
            "Token requests from gateways on the runtime API, by outcome (hit: served from the \
             store; fetched: fetched from the provider first; stale: the provider failed and a \
             still-valid stored token was served; error: no token; unauthenticated: the \
             caller's JWT was refused; denied: the access policies do not allow the caller; \
             consent_link: a self-service caller was given a login URL; rate_limited: it was \
             refused one, past the rate limits)",
            runtime_token_requests.clone(),
        );
        // Known series start at 0, so rates and alerts work before the first event.
        for outcome in [
            "hit",
            "fetched",
            "stale",
            "error",
            "unauthenticated",
            "denied",
            "consent_link",
            "rate_limited",
        ] {
            runtime_token_requests
                .get_or_create(&RuntimeLabels {
                    outcome: outcome.into(),
                })
                .get();
        }
        let runtime_request_duration: DurationFamily<RuntimeHttpLabels> =
            Family::new_with_constructor(runtime_histogram);
        registry.register_with_unit(
            "credmgr_runtime_request_duration",
            "How long the runtime API took to answer gateways, by route template and HTTP \
             status code",
            Unit::Seconds,
            runtime_request_duration.clone(),
        );
        let connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "credmgr_connections",
            "Connections in the store by status (connected, not_connected, error) and the code \
             of the last failure recorded on them (none; refresh_token_invalid and \
             refresh_token_expired: a user must consent again). Read from the store at most \
             every few seconds, when /metrics is scraped; the same on every replica",
            connections.clone(),
        );
        let tokens_in_refresh_window = Gauge::default();
        registry.register(
            "credmgr_tokens_in_refresh_window",
            "Stored tokens past their refresh point and not yet expired: expiring soon and not \
             yet refreshed. Normally 0 (tokens are refreshed a little ahead of that point); \
             read from the store when /metrics is scraped",
            tokens_in_refresh_window.clone(),
        );
        let tokens_expired = Gauge::default();
        registry.register(
            "credmgr_tokens_expired",
            "Stored tokens past their expiry: not refreshed in time (the provider failed, or \
             a user must consent again); read from the store when /metrics is scraped",
            tokens_expired.clone(),
        );
        let store_gauges_updated = Gauge::default();
        registry.register(
            "credmgr_store_gauges_updated_timestamp_seconds",
            "When credmgr_connections and the token gauges were last read from the store (Unix \
             time); it stops moving while the store does not answer",
            store_gauges_updated.clone(),
        );
        let scheduler_backlog = Gauge::default();
        registry.register(
            "credmgr_refresh_scheduler_backlog",
            "Refreshes the background scheduler found due at its last run (past their \
             scheduled point and not backing off after a failure), on this replica",
            scheduler_backlog.clone(),
        );
        let scheduler_lag = Gauge::<f64, AtomicU64>::default();
        registry.register_with_unit(
            "credmgr_refresh_scheduler_lag",
            "The worst lateness at the scheduler's last run: how long after its scheduled point \
             a refresh that went to the provider started, on this replica",
            Unit::Seconds,
            scheduler_lag.clone(),
        );
        let scheduler_last_run = Gauge::default();
        registry.register(
            "credmgr_refresh_scheduler_last_run_timestamp_seconds",
            "When the background scheduler last finished a run (Unix time); it stops moving \
             when the scheduler is stuck or off",
            scheduler_last_run.clone(),
        );
        let events = EventCounters::register(&mut registry);
        Metrics {
            events,
            registry,
            provider_token_requests,
            provider_request_duration,
            runtime_token_requests,
            runtime_request_duration,
            connections,
            connection_labels: Mutex::default(),
            tokens_in_refresh_window,
            tokens_expired,
            store_gauges_updated,
            store_read_at: Mutex::default(),
            scheduler_backlog,
            scheduler_lag,
            scheduler_last_run,
        }
    }

    /// Counts and times one request to a provider's token endpoint.
    pub fn provider_token_request(
        &self,
        provider: &str,
        grant_type: &str,
        outcome: &str,
        took: Duration,
    ) {
        self.provider_token_requests
            .get_or_create(&ProviderLabels {
                grant_type: grant_type.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.provider_request_duration
            .get_or_create(&ProviderDurationLabels {
                provider: provider.into(),
                grant_type: grant_type.into(),
                outcome: outcome.into(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one runtime token request.
    pub fn runtime_token_request(&self, outcome: &str) {
        self.runtime_token_requests
            .get_or_create(&RuntimeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Times one answer of the runtime API.
    pub fn runtime_request(&self, route: &str, status: u16, took: Duration) {
        self.runtime_request_duration
            .get_or_create(&RuntimeHttpLabels {
                route: route.into(),
                code: status.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// The store's connections by status and error code, and its tokens past their refresh
    /// point (`in_refresh_window`: still valid; `expired`), as read at `now`.
    pub fn set_store_gauges(
        &self,
        connections: &[ConnectionCount],
        in_refresh_window: i64,
        expired: i64,
        now: i64,
    ) {
        let mut seen = self
            .connection_labels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut now_set = HashSet::new();
        for c in connections {
            let labels = ConnectionLabels {
                status: c.status.clone(),
                error_code: c.error_code.clone().unwrap_or_else(|| "none".into()),
            };
            self.connections.get_or_create(&labels).set(c.count);
            now_set.insert(labels.clone());
            seen.insert(labels);
        }
        for gone in seen.difference(&now_set) {
            self.connections.get_or_create(gone).set(0);
        }
        self.tokens_in_refresh_window.set(in_refresh_window);
        self.tokens_expired.set(expired);
        self.store_gauges_updated.set(now);
    }

    /// Whether the store's gauges are older than `every`; if so, the caller reads them and
    /// others do not meanwhile (they serve the values already there).
    pub fn claim_store_read(&self, every: Duration) -> bool {
        let mut at = self
            .store_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if at.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        *at = Some(Instant::now());
        true
    }

    /// Makes the next scrape read the store's gauges again (tests: a scrape right after an
    /// action sees it).
    pub fn expire_store_gauges(&self) {
        *self
            .store_read_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }

    /// What the refresh scheduler's run at `now` found: `backlog` refreshes due, the worst
    /// of them started `worst_lag` after its scheduled point.
    pub fn scheduler_run(&self, backlog: usize, worst_lag: Duration, now: i64) {
        self.scheduler_backlog
            .set(i64::try_from(backlog).unwrap_or(i64::MAX));
        self.scheduler_lag.set(worst_lag.as_secs_f64());
        self.scheduler_last_run.set(now);
    }

    /// Counts a failed webhook delivery attempt: `retrying` or `gave_up`.
    pub fn webhook_delivery_failure(&self, outcome: &str) {
        self.events
            .webhook_delivery_failures
            .get_or_create(&RuntimeLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts audit entries that were not recorded.
    pub fn audit_dropped(&self, n: u64) {
        self.events.audit_dropped.inc_by(n);
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_their_labels() {
        let m = Metrics::new();
        m.provider_token_request(
            "p1",
            "client_credentials",
            "success",
            Duration::from_millis(30),
        );
        m.runtime_token_request("hit");
        m.runtime_token_request("hit");
        let text = m.encode().unwrap();
        assert!(text.contains(
            r#"credmgr_provider_token_requests_total{grant_type="client_credentials",outcome="success"} 1"#
        ), "{text}");
        assert!(
            text.contains(r#"credmgr_runtime_token_requests_total{outcome="hit"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"credmgr_runtime_token_requests_total{outcome="error"} 0"#),
            "{text}"
        );
        assert!(text.contains(
            r#"credmgr_provider_token_request_duration_seconds_bucket{le="0.05",provider="p1",grant_type="client_credentials",outcome="success"} 1"#
        ), "{text}");
        assert!(
            text.contains(&format!(
                r#"credmgr_build_info{{version="{}"}} 1"#,
                env!("CARGO_PKG_VERSION")
            )),
            "{text}"
        );
    }

    #[test]
    fn a_status_gone_from_the_store_goes_to_zero() {
        let m = Metrics::new();
        let row = |status: &str, code: Option<&str>, count| ConnectionCount {
            status: status.into(),
            error_code: code.map(Into::into),
            count,
        };
        m.set_store_gauges(
            &[
                row("connected", None, 3),
                row("error", Some("refresh_token_invalid"), 1),
            ],
            0,
            1,
            1_000,
        );
        m.set_store_gauges(&[row("connected", None, 4)], 0, 0, 1_010);
        let text = m.encode().unwrap();
        assert!(
            text.contains(r#"credmgr_connections{status="connected",error_code="none"} 4"#),
            "{text}"
        );
        assert!(
            text.contains(
                r#"credmgr_connections{status="error",error_code="refresh_token_invalid"} 0"#
            ),
            "{text}"
        );
        assert!(text.contains("credmgr_tokens_expired 0"), "{text}");
    }
}
