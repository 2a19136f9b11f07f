//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    grant_type: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    outcome: String,
}

/// The control plane's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    provider_token_requests: Family<ProviderLabels, Counter>,
    runtime_token_requests: Family<RuntimeLabels, Counter>,
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

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let provider_token_requests = Family::<ProviderLabels, Counter>::default();
        registry.register(
            // The `_total` suffix is added by the encoder, as OpenMetrics requires for counters.
            "credmgr_provider_token_requests",
            "Token requests sent to providers' token endpoints, by grant type and outcome \
             (success, provider_unreachable, client_secret_rejected, provider_error)",
            provider_token_requests.clone(),
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
        let events = EventCounters::register(&mut registry);
        Metrics {
            events,
            registry,
            provider_token_requests,
            runtime_token_requests,
        }
    }

    /// Counts one request to a provider's token endpoint.
    pub fn provider_token_request(&self, grant_type: &str, outcome: &str) {
        self.provider_token_requests
            .get_or_create(&ProviderLabels {
                grant_type: grant_type.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts one runtime token request.
    pub fn runtime_token_request(&self, outcome: &str) {
        self.runtime_token_requests
            .get_or_create(&RuntimeLabels {
                outcome: outcome.into(),
            })
            .inc();
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
        m.provider_token_request("client_credentials", "success");
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
    }
}
