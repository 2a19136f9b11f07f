//! One filter configuration (one `DynamicModuleFilter` in Envoy's configuration), made on the
//! main thread and shared read-only by every worker: the configuration's JSON (each worker
//! compiles its own [`FilterConfig`], whose policy sets are not `Send`), the counters defined
//! in Envoy, and the scheduler that reaches the main thread.

use crate::abi;
use credmgr_common::error::codes;
use credmgr_filter::config::FilterConfig;
use credmgr_filter::stats;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct NativeConfig {
    /// Unique for the process's lifetime (an address could be reused by a later configuration).
    pub id: u64,
    pub json: Vec<u8>,
    pub envoy: abi::FilterConfigEnvoyPtr,
    pub scheduler: abi::SchedulerPtr,
    pub tick_ms: u64,
    /// Counter names and their ids in Envoy.
    pub counters: Vec<(String, usize)>,
}

// SAFETY: the Envoy pointers are only handed back to Envoy, whose configuration object and
// scheduler may be used from any thread for the calls made with them (counters, scheduler
// commits); everything else is immutable after creation.
unsafe impl Send for NativeConfig {}
// SAFETY: as above.
unsafe impl Sync for NativeConfig {}

/// The counters the filter can count. Envoy defines a module's counters when the configuration
/// is loaded, so those with a reason in their name (`<counter>.<reason>`) are defined for every
/// reason the filter gives: the error codes of the control plane's answers, and the statuses
/// the filter answers with.
fn counter_names() -> Vec<String> {
    let failures = [
        codes::INVALID_REQUEST,
        codes::UNAUTHENTICATED,
        codes::FORBIDDEN,
        codes::NOT_FOUND,
        codes::CONFLICT,
        codes::CONSENT_REQUIRED,
        codes::CLIENT_SECRET_REJECTED,
        codes::REFRESH_TOKEN_INVALID,
        codes::REFRESH_TOKEN_EXPIRED,
        codes::PROVIDER_UNREACHABLE,
        codes::PROVIDER_ERROR,
        codes::CONTROL_PLANE_UNAVAILABLE,
        codes::UNKNOWN_POLICY,
        codes::STORE_UNAVAILABLE,
        codes::RATE_LIMITED,
        codes::INTERNAL,
        "dispatch_failed",
    ];
    let statuses = [
        "400", "401", "403", "404", "409", "429", "500", "502", "503", "504",
    ];
    let mut names: Vec<String> = stats::Counter::all().map(|c| c.name().to_owned()).collect();
    names.extend(
        failures
            .iter()
            .map(|r| format!("{}.{r}", stats::CONTROL_PLANE_FAILURE.name())),
    );
    names.extend(
        statuses
            .iter()
            .map(|s| format!("{}.{s}", stats::REQUEST_REJECTED.name())),
    );
    names
}

impl NativeConfig {
    /// Checks and keeps a configuration; on the main thread, from `on_http_filter_config_new`.
    pub fn new(envoy: abi::FilterConfigEnvoyPtr, json: &[u8]) -> Result<NativeConfig, String> {
        static IDS: AtomicU64 = AtomicU64::new(1);
        let config = FilterConfig::parse(json).map_err(|e| e.to_string())?;
        let mut counters = Vec::new();
        for name in counter_names() {
            let mut id = 0usize;
            // SAFETY: `envoy` is the configuration Envoy is creating; the name outlives the call.
            let result = unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_define_counter(
                    envoy,
                    abi::ModuleBuffer::of(name.as_bytes()),
                    std::ptr::null(),
                    0,
                    &mut id,
                )
            };
            if result == abi::METRICS_SUCCESS {
                counters.push((name, id));
            }
        }
        // SAFETY: as above; deleted in `Drop`.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_new(envoy) };
        Ok(NativeConfig {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            json: json.to_vec(),
            envoy,
            scheduler,
            tick_ms: config.refresh_tick_ms.max(1),
            counters,
        })
    }

    /// The summary the Wasm build logs when configured, for the same configuration.
    pub fn describe(&self) -> String {
        match FilterConfig::parse(&self.json) {
            Ok(config) => format!(
                "filter configured (native) with {} policy set(s), {} request rule(s), route \
                 metadata {}, control plane cluster {}",
                config.policies.len(),
                config.rules.len(),
                if config.route_metadata {
                    "read"
                } else {
                    "not read"
                },
                config.control_plane.cluster
            ),
            Err(e) => e.to_string(),
        }
    }
}

impl Drop for NativeConfig {
    fn drop(&mut self) {
        if !self.scheduler.is_null() {
            // SAFETY: created in `new`, deleted once.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
                    self.scheduler,
                )
            };
        }
    }
}
