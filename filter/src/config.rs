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
//! APIM policy translates line by line. Every struct refuses unknown fields: a typo is an error
//! at load time, not a silently ignored setting.

use crate::template::{Segment, Template};
use credmgr_common::ids::validate_id;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::rc::Rc;

/// The configuration as written by the operator.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    control_plane: RawControlPlane,
    #[serde(default)]
    cache: RawCache,
    /// Policy set applied to requests whose route names none. Absent: such requests pass
    /// through untouched.
    #[serde(default)]
    default_policy: Option<String>,
    policies: BTreeMap<String, Vec<RawStep>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControlPlane {
    /// Envoy cluster that reaches the control plane's runtime API.
    cluster: String,
    /// `:authority` sent to the control plane; defaults to the cluster name.
    #[serde(default)]
    authority: Option<String>,
    /// How long a token fetch may take before the request is answered without it.
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
    /// The gateway key this Envoy presents to the runtime API. Absent for a gateway that
    /// proves itself with a client certificate on the cluster (mTLS): no Authorization
    /// header is sent then.
    #[serde(default)]
    gateway_key: Option<String>,
}

fn default_timeout_ms() -> u64 {
    5_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCache {
    /// A cached token is not used within this margin of its expiry: it would likely expire on
    /// its way to the backend.
    #[serde(default = "default_expiry_margin_ms")]
    expiry_margin_ms: u64,
    /// How often each worker fetches, in the background, the tokens that requests found past
    /// their refresh point.
    #[serde(default = "default_refresh_tick_ms")]
    refresh_tick_ms: u64,
    /// A caller the control plane refused (403) is refused here, without asking again, for
    /// this long: a denied caller's traffic does not become the control plane's load.
    #[serde(default = "default_denial_ttl_ms")]
    denial_ttl_ms: u64,
    /// How long a worker serves its own copy of a fresh token before it checks Envoy's shared
    /// data again for a token another worker replaced or retired (0: check on every request).
    #[serde(default = "default_revalidate_ms")]
    revalidate_ms: u64,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            expiry_margin_ms: default_expiry_margin_ms(),
            refresh_tick_ms: default_refresh_tick_ms(),
            denial_ttl_ms: default_denial_ttl_ms(),
            revalidate_ms: default_revalidate_ms(),
        }
    }
}

fn default_denial_ttl_ms() -> u64 {
    2_000
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
enum RawStep {
    #[serde(rename = "get-authorization-context")]
    GetAuthorizationContext(RawGetAuthorizationContext),
    #[serde(rename = "set-header")]
    SetHeader(RawSetHeader),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGetAuthorizationContext {
    provider_id: String,
    authorization_id: String,
    context_variable_name: String,
    #[serde(default)]
    identity_type: IdentityType,
    #[serde(default)]
    identity: Option<String>,
    #[serde(default)]
    ignore_error: bool,
}

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawSetHeader {
    name: String,
    #[serde(default)]
    exists_action: ExistsAction,
    /// One value or several; `delete` takes none.
    #[serde(default)]
    value: OneOrMany,
}

#[derive(Debug, Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
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

/// The compiled configuration.
#[derive(Debug)]
pub struct FilterConfig {
    pub control_plane: ControlPlane,
    pub expiry_margin_ms: u64,
    pub refresh_tick_ms: u64,
    pub denial_ttl_ms: u64,
    pub revalidate_ms: u64,
    pub default_policy: Option<Rc<PolicySet>>,
    pub policies: BTreeMap<String, Rc<PolicySet>>,
    /// Some step verifies callers' JWTs: the trusted issuers are fetched and kept fresh.
    pub uses_jwt: bool,
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

#[derive(Debug, Clone)]
pub struct GetAuthorizationContext {
    /// Shared-data key of the connection's token for this identity type.
    pub cache_key: String,
    pub provider_id: String,
    pub authorization_id: String,
    pub variable: String,
    pub identity_type: IdentityType,
    /// The caller's JWT (identity-type `jwt`): a template of request values, such as
    /// `{{request.headers.authorization}}`; a leading `Bearer ` is dropped.
    pub identity: Option<Template>,
    pub ignore_error: bool,
}

#[derive(Debug)]
pub struct SetHeader {
    /// Lower-cased, as Envoy stores header names.
    pub name: String,
    pub exists_action: ExistsAction,
    pub values: Vec<Template>,
}

/// A configuration error; the message names where in the configuration it is.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid credmgr filter configuration: {}", self.0)
    }
}

impl FilterConfig {
    /// Parses and checks the JSON configuration.
    pub fn parse(json: &[u8]) -> Result<FilterConfig, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ConfigError(inner.to_string())
            } else {
                ConfigError(format!("at {path}: {inner}"))
            }
        })?;
        compile(raw)
    }
}

fn compile(raw: RawConfig) -> Result<FilterConfig, ConfigError> {
    let cp = raw.control_plane;
    if cp.cluster.trim().is_empty() {
        return Err(ConfigError(
            "at control_plane.cluster: must not be empty".into(),
        ));
    }
    if cp.gateway_key.as_deref().is_some_and(str::is_empty) {
        return Err(ConfigError(
            "at control_plane.gateway_key: must not be empty (leave it out for a gateway that \
             authenticates with a client certificate on the cluster)"
                .into(),
        ));
    }
    if raw.cache.refresh_tick_ms == 0 {
        return Err(ConfigError(
            "at cache.refresh_tick_ms: must be greater than 0".into(),
        ));
    }
    if cp.timeout_ms == 0 {
        return Err(ConfigError(
            "at control_plane.timeout_ms: must be greater than 0".into(),
        ));
    }
    let mut policies = BTreeMap::new();
    for (name, steps) in raw.policies {
        let set = compile_policy_set(&name, steps)?;
        policies.insert(name, Rc::new(set));
    }
    let uses_jwt = policies.values().any(|set| {
        set.steps.iter().any(|s| {
            matches!(s, Step::GetAuthorizationContext(g) if g.identity_type == IdentityType::Jwt)
        })
    });
    let default_policy = match raw.default_policy {
        None => None,
        Some(name) => match policies.get(&name) {
            Some(set) => Some(Rc::clone(set)),
            None => {
                return Err(ConfigError(format!(
                    "at default_policy: no policy set named {name:?} in policies"
                )))
            }
        },
    };
    Ok(FilterConfig {
        control_plane: ControlPlane {
            authority: cp.authority.unwrap_or_else(|| cp.cluster.clone()),
            cluster: cp.cluster,
            timeout_ms: cp.timeout_ms,
            gateway_key: cp.gateway_key,
        },
        expiry_margin_ms: raw.cache.expiry_margin_ms,
        refresh_tick_ms: raw.cache.refresh_tick_ms,
        denial_ttl_ms: raw.cache.denial_ttl_ms,
        revalidate_ms: raw.cache.revalidate_ms,
        default_policy,
        policies,
        uses_jwt,
    })
}

fn compile_policy_set(name: &str, raw_steps: Vec<RawStep>) -> Result<PolicySet, ConfigError> {
    let mut steps = Vec::with_capacity(raw_steps.len());
    // Context variables defined by earlier steps: a template may only use those.
    let mut variables: Vec<String> = Vec::new();
    for (i, raw) in raw_steps.into_iter().enumerate() {
        let step = match raw {
            RawStep::GetAuthorizationContext(g) => {
                let at = |field: &str| {
                    format!("at policies.{name}[{i}].get-authorization-context.{field}")
                };
                validate_id(&g.provider_id)
                    .map_err(|e| ConfigError(format!("{}: {e}", at("provider-id"))))?;
                validate_id(&g.authorization_id)
                    .map_err(|e| ConfigError(format!("{}: {e}", at("authorization-id"))))?;
                let var = g.context_variable_name;
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ConfigError(format!(
                        "{}: {var:?} must be non-empty ASCII letters, digits or '_'",
                        at("context-variable-name")
                    )));
                }
                if var == "request" {
                    return Err(ConfigError(format!(
                        "{}: \"request\" is reserved for request values in templates",
                        at("context-variable-name")
                    )));
                }
                let identity = match (g.identity_type, g.identity) {
                    (IdentityType::Jwt, Some(text)) => {
                        let t = Template::parse(&text)
                            .map_err(|e| ConfigError(format!("{}: {e}", at("identity"))))?;
                        let only_request = t
                            .segments()
                            .iter()
                            .all(|s| matches!(s, Segment::Literal(_) | Segment::RequestHeader(_)));
                        if !only_request || t.segments().is_empty() {
                            return Err(ConfigError(format!(
                                "{}: must be made of request values, such as \
                                 \"{{{{request.headers.authorization}}}}\"",
                                at("identity")
                            )));
                        }
                        Some(t)
                    }
                    (IdentityType::Jwt, None) => {
                        return Err(ConfigError(format!(
                            "{}: missing; identity-type \"jwt\" needs the caller's JWT, such as \
                             \"{{{{request.headers.authorization}}}}\"",
                            at("identity")
                        )))
                    }
                    (IdentityType::Managed, Some(_)) => {
                        return Err(ConfigError(format!(
                            "{}: only used with identity-type \"jwt\"; the managed identity is the gateway's own",
                            at("identity")
                        )))
                    }
                    (IdentityType::Managed, None) => None,
                };
                variables.push(var.clone());
                Step::GetAuthorizationContext(GetAuthorizationContext {
                    cache_key: crate::cache::token_key(
                        &g.provider_id,
                        &g.authorization_id,
                        match g.identity_type {
                            IdentityType::Managed => "managed",
                            IdentityType::Jwt => "jwt",
                        },
                    ),
                    provider_id: g.provider_id,
                    authorization_id: g.authorization_id,
                    variable: var,
                    identity_type: g.identity_type,
                    identity,
                    ignore_error: g.ignore_error,
                })
            }
            RawStep::SetHeader(s) => {
                let at = |field: &str| format!("at policies.{name}[{i}].set-header.{field}");
                if s.name.is_empty()
                    || s.name.starts_with(':')
                    || !s.name.bytes().all(is_header_name_byte)
                {
                    return Err(ConfigError(format!(
                        "{}: {:?} is not a valid HTTP header name",
                        at("name"),
                        s.name
                    )));
                }
                let raw_values = match s.value {
                    OneOrMany::None => vec![],
                    OneOrMany::One(v) => vec![v],
                    OneOrMany::Many(v) => v,
                };
                if s.exists_action == ExistsAction::Delete && !raw_values.is_empty() {
                    return Err(ConfigError(format!(
                        "{}: exists-action \"delete\" takes no value",
                        at("value")
                    )));
                }
                if s.exists_action != ExistsAction::Delete && raw_values.is_empty() {
                    return Err(ConfigError(format!(
                        "{}: missing; set-header needs at least one value unless exists-action is \"delete\"",
                        at("value")
                    )));
                }
                let mut values = Vec::with_capacity(raw_values.len());
                for (j, v) in raw_values.iter().enumerate() {
                    let field = if raw_values.len() == 1 {
                        "value".to_owned()
                    } else {
                        format!("value[{j}]")
                    };
                    let t = Template::parse(v)
                        .map_err(|e| ConfigError(format!("{}: {e}", at(&field))))?;
                    for seg in t.segments() {
                        let used = match seg {
                            Segment::AccessToken(var) | Segment::Claim(var, _) => Some(var),
                            _ => None,
                        };
                        if let Some(var) = used {
                            if !variables.iter().any(|v| v == var) {
                                return Err(ConfigError(format!(
                                    "{}: context variable {var:?} is not set by an earlier get-authorization-context step",
                                    at(&field)
                                )));
                            }
                        }
                    }
                    values.push(t);
                }
                Step::SetHeader(SetHeader {
                    name: s.name.to_ascii_lowercase(),
                    exists_action: s.exists_action,
                    values,
                })
            }
        };
        steps.push(step);
    }
    Ok(PolicySet {
        name: name.to_owned(),
        steps,
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> serde_json::Value {
        json!({
            "control_plane": {"cluster": "cp", "gateway_key": "k"},
            "default_policy": "p",
            "policies": {"p": [
                {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                    "context-variable-name": "auth", "identity-type": "managed"}},
                {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
            ]}
        })
    }

    fn err(v: serde_json::Value) -> String {
        FilterConfig::parse(v.to_string().as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_the_documented_example() {
        let c = FilterConfig::parse(base().to_string().as_bytes()).unwrap();
        assert_eq!(c.control_plane.authority, "cp");
        assert_eq!(c.control_plane.timeout_ms, 5000);
        let p = c.default_policy.unwrap();
        assert_eq!(p.steps.len(), 2);
        match &p.steps[1] {
            Step::SetHeader(s) => {
                assert_eq!(s.name, "authorization");
                assert_eq!(s.exists_action, ExistsAction::Override);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_missing_required_field_is_named_with_its_place() {
        let mut v = base();
        v["policies"]["p"][0]["get-authorization-context"]
            .as_object_mut()
            .unwrap()
            .remove("provider-id");
        let e = err(v);
        assert!(e.contains("policies.p[0].get-authorization-context"), "{e}");
        assert!(e.contains("provider-id"), "{e}");
    }

    #[test]
    fn unknown_steps_fields_and_actions_are_refused() {
        let mut v = base();
        v["policies"]["p"][1] = json!({"set-cookie": {}});
        assert!(err(v).contains("set-cookie"));

        let mut v = base();
        v["policies"]["p"][1]["set-header"]["colour"] = json!("red");
        let e = err(v);
        assert!(
            e.contains("colour") && e.contains("policies.p[1].set-header"),
            "{e}"
        );

        let mut v = base();
        v["policies"]["p"][1]["set-header"]["exists-action"] = json!("replace");
        let e = err(v);
        assert!(e.contains("exists-action") && e.contains("replace"), "{e}");

        let mut v = base();
        v["control_plane"]["gateway_key"] = json!("");
        let e = err(v);
        assert!(e.contains("control_plane.gateway_key"), "{e}");
    }

    #[test]
    fn the_gateway_key_is_optional_for_mtls_gateways() {
        let config = FilterConfig::parse(base().to_string().as_bytes()).unwrap();
        assert_eq!(config.control_plane.gateway_key.as_deref(), Some("k"));
        let mut v = base();
        v["control_plane"]
            .as_object_mut()
            .unwrap()
            .remove("gateway_key");
        let config = FilterConfig::parse(v.to_string().as_bytes()).unwrap();
        assert_eq!(config.control_plane.gateway_key, None);
    }

    #[test]
    fn jwt_identities_need_an_identity_template_of_request_values() {
        let mut v = base();
        v["policies"]["p"][0]["get-authorization-context"]["identity-type"] = json!("jwt");
        let e = err(v.clone());
        assert!(
            e.contains("get-authorization-context.identity") && e.contains("missing"),
            "{e}"
        );

        v["policies"]["p"][0]["get-authorization-context"]["identity"] =
            json!("{{request.headers.authorization}}");
        let c = FilterConfig::parse(v.to_string().as_bytes()).unwrap();
        assert!(c.uses_jwt);

        v["policies"]["p"][0]["get-authorization-context"]["identity"] =
            json!("{{auth.AccessToken}}");
        assert!(err(v).contains("request values"));

        let mut v = base();
        v["policies"]["p"][0]["get-authorization-context"]["identity"] =
            json!("{{request.headers.authorization}}");
        assert!(err(v).contains("only used with identity-type"));
        assert!(
            !FilterConfig::parse(base().to_string().as_bytes())
                .unwrap()
                .uses_jwt
        );
    }

    #[test]
    fn templates_are_checked_against_earlier_steps() {
        let mut v = base();
        v["policies"]["p"][1]["set-header"]["value"] = json!("Bearer {{other.AccessToken}}");
        let e = err(v);
        assert!(
            e.contains("\"other\"") && e.contains("set-header.value"),
            "{e}"
        );

        let mut v = base();
        v["policies"]["p"][1]["set-header"]["value"] = json!("Bearer {{auth.AccessToken");
        assert!(err(v).contains("set-header.value"));
    }

    #[test]
    fn default_policy_must_exist_and_ids_must_be_valid() {
        let mut v = base();
        v["default_policy"] = json!("nope");
        assert!(err(v).contains("default_policy"));

        let mut v = base();
        v["policies"]["p"][0]["get-authorization-context"]["provider-id"] = json!("a/b");
        assert!(err(v).contains("provider-id"));
    }

    #[test]
    fn delete_takes_no_value_and_others_need_one() {
        let mut v = base();
        v["policies"]["p"][1] = json!({"set-header": {"name": "x-a", "exists-action": "delete"}});
        assert!(FilterConfig::parse(v.to_string().as_bytes()).is_ok());

        let mut v = base();
        v["policies"]["p"][1] = json!({"set-header": {"name": "x-a"}});
        assert!(err(v).contains("value"));
    }

    #[test]
    fn malformed_json_is_reported() {
        let e = FilterConfig::parse(b"{not json").unwrap_err().to_string();
        assert!(e.contains("invalid credmgr filter configuration"), "{e}");
    }
}
