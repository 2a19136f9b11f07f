//! The configuration as the operator writes it: serde structs that mirror the JSON field by
//! field, with their defaults. Every struct refuses unknown fields, so a typo is an error at
//! load time, not a silently ignored setting. [`FilterConfig::parse`](crate::config::FilterConfig::parse)
//! reads these and compiles them into the [`crate::config`] types that requests use.

use crate::config::{ExistsAction, IdentityType};
use crate::matching::RawRule;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The configuration as written by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub control_plane: RawControlPlane,
    #[serde(default)]
    pub cache: RawCache,
    /// Policy set applied to requests whose route names none. Absent: such requests pass
    /// through untouched.
    #[serde(default)]
    pub default_policy: Option<String>,
    pub policies: BTreeMap<String, Vec<RawStep>>,
    /// Ordered rules that choose a policy set by matching the request; the first that
    /// matches wins (see [`crate::matching`]).
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Whether a route's metadata (`filter_metadata.credmgr.policy`) is read, and wins over
    /// the rules. Absent: read when no rules are configured, not read when some are.
    #[serde(default)]
    pub route_metadata: Option<bool>,
    /// Whether a backend's 401 to a request that carried a token retires that token. On,
    /// each request that carried a token is kept until its response and the response's
    /// `:status` is read (a host call); off, the filter does no work on responses at all.
    #[serde(default = "default_retire_on_backend_401")]
    pub retire_on_backend_401: bool,
}

fn default_retire_on_backend_401() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawControlPlane {
    /// Envoy cluster that reaches the control plane's runtime API.
    pub cluster: String,
    /// `:authority` sent to the control plane; defaults to the cluster name.
    #[serde(default)]
    pub authority: Option<String>,
    /// How long a token fetch may take before the request is answered without it.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// The gateway key this Envoy presents to the runtime API. Absent for a gateway that
    /// proves itself with a client certificate on the cluster (mTLS): no Authorization
    /// header is sent then.
    #[serde(default)]
    pub gateway_key: Option<String>,
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    /// A cached token is not used within this margin of its expiry: it would likely expire on
    /// its way to the backend.
    #[serde(default = "default_expiry_margin_ms")]
    pub expiry_margin_ms: u64,
    /// How often each worker fetches, in the background, the tokens that requests found past
    /// their refresh point.
    #[serde(default = "default_refresh_tick_ms")]
    pub refresh_tick_ms: u64,
    /// A caller the control plane refused (403) is refused here, without asking again, for
    /// this long: a denied caller's traffic does not become the control plane's load.
    #[serde(default = "default_denial_ttl_ms")]
    pub denial_ttl_ms: u64,
    /// A backend's 401 retires the token it refused and has the control plane replace it, at
    /// most once per key in this interval: more 401s within it (for the token fetched since)
    /// leave the token in use, so a backend refusing every token does not become a refresh
    /// per request at the provider.
    #[serde(default = "default_forced_refresh_interval_ms")]
    pub forced_refresh_interval_ms: u64,
    /// How long a worker serves its own copy of a fresh token before it checks Envoy's shared
    /// data again for a token another worker replaced or retired (0: check on every request).
    #[serde(default = "default_revalidate_ms")]
    pub revalidate_ms: u64,
    /// Most tokens of templated ids (per-user connections) kept: the number of shared-data
    /// slots they share, and the most copies, refusals and queued refreshes per worker.
    #[serde(default = "default_max_entries")]
    pub max_entries: u32,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            expiry_margin_ms: default_expiry_margin_ms(),
            refresh_tick_ms: default_refresh_tick_ms(),
            denial_ttl_ms: default_denial_ttl_ms(),
            forced_refresh_interval_ms: default_forced_refresh_interval_ms(),
            revalidate_ms: default_revalidate_ms(),
            max_entries: default_max_entries(),
        }
    }
}

/// 16,384 tokens of a few KB each: tens of MB of shared data at most, room for thousands of
/// active users with few slot collisions.
pub const DEFAULT_MAX_ENTRIES: u32 = 16_384;

/// The largest `cache.max_entries` accepted.
pub const MAX_MAX_ENTRIES: u32 = 1 << 20;

fn default_max_entries() -> u32 {
    DEFAULT_MAX_ENTRIES
}

fn default_denial_ttl_ms() -> u64 {
    2_000
}

fn default_forced_refresh_interval_ms() -> u64 {
    10_000
}

fn default_revalidate_ms() -> u64 {
    1_000
}

fn default_refresh_tick_ms() -> u64 {
    200
}

fn default_expiry_margin_ms() -> u64 {
    1_000
}

/// One step, named as the APIM policy it mirrors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum RawStep {
    #[serde(rename = "get-authorization-context")]
    GetAuthorizationContext(RawGetAuthorizationContext),
    #[serde(rename = "set-header")]
    SetHeader(RawSetHeader),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawGetAuthorizationContext {
    pub provider_id: String,
    pub authorization_id: String,
    pub context_variable_name: String,
    #[serde(default)]
    pub identity_type: IdentityType,
    #[serde(default)]
    pub identity: Option<String>,
    #[serde(default)]
    pub ignore_error: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSetHeader {
    pub name: String,
    #[serde(default)]
    pub exists_action: ExistsAction,
    /// One value or several; `delete` takes none.
    #[serde(default)]
    pub value: OneOrMany,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}
