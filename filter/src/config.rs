//! The filter's configuration: JSON in Envoy's `configuration` field, parsed and checked once in
//! `on_configure`, then compiled into a [`FilterConfig`] that requests only look things up in.
//!
//! ```json
//! {
//!   "control_plane": {"cluster": "credmgr_control_plane", "gateway_key": "..."},
//!   "default_policy": "github",
//!   "policies": {
//!     "github": [
//!       {"get-authorization-context": {"provider-id": "github", "authorization-id": "alice",
//!                                      "context-variable-name": "auth", "identity-type": "managed"}},
//!       {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
//!     ]
//!   }
//! }
//! ```
//!
//! Step attributes are spelled as in Azure API Management's policies (`provider-id`, ...), so an
//! APIM policy translates line by line.
//!
//! This module holds the compiled form, what requests read; `config_raw.rs` holds the JSON as
//! written (serde structs that refuse unknown fields), and `config_compile.rs` the step from
//! one to the other ([`FilterConfig::parse`]).

use crate::matching::Rules;
use crate::template::Template;
use credmgr_common::RuntimeToken;
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

/// Whose identity is presented to the control plane when asking for the token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IdentityType {
    /// The gateway's own identity (its gateway key).
    #[default]
    Managed,
    /// A caller's JWT (the `identity` template), verified locally against the issuers the
    /// control plane trusts; the connection's access policies must allow its holder.
    Jwt,
}

/// What `set-header` does when the header is already on the request (APIM semantics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExistsAction {
    /// Replace every existing value.
    #[default]
    Override,
    /// Leave an existing header alone; set it only when absent.
    Skip,
    /// Add the value(s) next to the existing ones.
    Append,
    /// Remove the header.
    Delete,
}

/// The compiled configuration, built once by [`FilterConfig::parse`] (in `config_compile.rs`).
#[derive(Debug)]
pub struct FilterConfig {
    pub control_plane: ControlPlane,
    pub expiry_margin_ms: u64,
    pub refresh_tick_ms: u64,
    pub denial_ttl_ms: u64,
    /// At most one refresh forced by backend 401s per key per this interval.
    pub forced_refresh_interval_ms: u64,
    pub revalidate_ms: u64,
    /// Most tokens of templated ids cached (`cache.max_entries`): shared-data slots, and the
    /// most copies, refusals and queued refreshes each worker keeps.
    pub max_entries: u32,
    pub default_policy: Option<Rc<PolicySet>>,
    pub policies: BTreeMap<String, Rc<PolicySet>>,
    /// Some step verifies callers' JWTs: the trusted issuers are fetched and kept fresh.
    pub uses_jwt: bool,
    /// The verified claims that id templates use (`{{identity.Claims.<name>}}`): kept with
    /// each verified JWT, nothing else of its content is.
    pub identity_claims: Vec<String>,
    /// Rules that choose a policy set by matching the request, tried in order.
    pub rules: Rules<Rc<PolicySet>>,
    /// The route's metadata is read (a host call on every request) and wins over the rules.
    pub route_metadata: bool,
    /// A backend's 401 retires the token the request carried; off, responses are not looked
    /// at (no request is kept past its headers, no `:status` read).
    pub retire_on_backend_401: bool,
}

#[derive(Debug)]
pub struct ControlPlane {
    pub cluster: String,
    pub authority: String,
    pub timeout_ms: u64,
    /// `None`: the cluster authenticates the gateway with a client certificate.
    pub gateway_key: Option<String>,
}

/// An ordered list of steps, run on each request of the routes that use it.
#[derive(Debug)]
pub struct PolicySet {
    pub name: String,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub enum Step {
    GetAuthorizationContext(GetAuthorizationContext),
    SetHeader(SetHeader),
}

#[derive(Debug)]
pub struct GetAuthorizationContext {
    /// Where the step is in the configuration (`policies.<set>[<i>].get-authorization-context`),
    /// for answers about its templates.
    pub place: String,
    pub ids: Ids,
    /// Shared with the request's variables, which name it without a copy.
    pub variable: Rc<str>,
    pub identity_type: IdentityType,
    /// The caller's JWT (identity-type `jwt`): a template of request values, such as
    /// `{{request.headers.authorization}}`; a leading `Bearer ` is dropped.
    pub identity: Option<Template>,
    pub ignore_error: bool,
}

/// A step's provider and connection ids: literal, checked and keyed once at load, or
/// templates rendered per request.
#[derive(Debug)]
pub enum Ids {
    Literal(Rc<StepIds>),
    Templated {
        provider_id: Template,
        authorization_id: Template,
        /// The templates as written, for answers that name them.
        provider_text: String,
        authorization_text: String,
    },
}

/// The ids one run of a step uses, and the cache key they make.
#[derive(Debug, PartialEq, Eq)]
pub struct StepIds {
    pub provider_id: String,
    pub authorization_id: String,
    /// Cache key of the connection's token for this identity type (see [`crate::cache`]).
    pub cache_key: String,
}

#[derive(Debug)]
pub struct SetHeader {
    /// Lower-cased, as Envoy stores header names.
    pub name: String,
    pub exists_action: ExistsAction,
    pub values: Vec<Template>,
    /// The one context variable the step's single value depends on, when it depends on
    /// nothing else (literals and that variable's access token, as `Bearer
    /// {{auth.AccessToken}}`): its rendering is then kept for the token it was made from.
    pub token_only: Option<String>,
    /// The last value rendered for `token_only`, and the token it was rendered from: a cache
    /// hit serving the same token sets the header without rendering or allocating.
    pub rendered: RefCell<Option<(Rc<RuntimeToken>, Rc<str>)>>,
}

/// A configuration error; the message names where in the configuration it is.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid credmgr filter configuration: {}", self.0)
    }
}
