//! The compile step of the configuration: JSON parsed into the [`crate::config_raw`] structs,
//! checked, and turned into a [`FilterConfig`] once, in `on_configure`: templates parsed,
//! context variables resolved against earlier steps, cache keys and header names computed. A
//! mistake is a [`ConfigError`] that names its place (`at policies.p[0].set-header.value`).

use crate::config::{
    ConfigError, ControlPlane, ExistsAction, FilterConfig, GetAuthorizationContext, IdentityType,
    Ids, PolicySet, SetHeader, Step, StepIds,
};
use crate::config_raw::{OneOrMany, RawConfig, RawStep, MAX_MAX_ENTRIES};
use crate::matching::Rules;
use crate::template::{Segment, Template};
use credmgr_common::ids::validate_id;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

impl FilterConfig {
    /// Parses and checks the JSON configuration.
    pub fn parse(json: &[u8]) -> Result<FilterConfig, ConfigError> {
        let de = &mut serde_json::Deserializer::from_slice(json);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            if path == "." || path.is_empty() {
                ConfigError(inner.to_string())
            } else {
                ConfigError(format!("at {path}: {inner}"))
            }
        })?;
        // Nothing but whitespace may follow the object (found by fuzz/: `{...}x` was accepted).
        de.end()
            .map_err(|e| ConfigError(format!("after the configuration object: {e}")))?;
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
    if raw.cache.max_entries == 0 || raw.cache.max_entries > MAX_MAX_ENTRIES {
        return Err(ConfigError(format!(
            "at cache.max_entries: must be between 1 and {MAX_MAX_ENTRIES}"
        )));
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
    let mut identity_claims: Vec<String> = Vec::new();
    for set in policies.values() {
        for step in &set.steps {
            if let Step::GetAuthorizationContext(GetAuthorizationContext {
                ids:
                    Ids::Templated {
                        provider_id,
                        authorization_id,
                        ..
                    },
                ..
            }) = step
            {
                for name in provider_id
                    .identity_claims()
                    .chain(authorization_id.identity_claims())
                {
                    if !identity_claims.iter().any(|n| n == name) {
                        identity_claims.push(name.to_owned());
                    }
                }
            }
        }
    }
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
    let rules =
        Rules::compile(raw.rules, |name| policies.get(name).cloned()).map_err(ConfigError)?;
    // Today's configurations name their sets in route metadata; with rules, reading it (a
    // host call per request) is asked for explicitly. With one policy set that is also the
    // default, a route has nothing to choose: the read is skipped unless asked for.
    let only_the_default = policies.len() == 1 && default_policy.is_some();
    let route_metadata = raw
        .route_metadata
        .unwrap_or(rules.is_empty() && !only_the_default);
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
        forced_refresh_interval_ms: raw.cache.forced_refresh_interval_ms,
        revalidate_ms: raw.cache.revalidate_ms,
        max_entries: raw.cache.max_entries,
        default_policy,
        policies,
        uses_jwt,
        identity_claims,
        rules,
        route_metadata,
        retire_on_backend_401: raw.retire_on_backend_401,
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
                let ids = compile_ids(&g.provider_id, &g.authorization_id, g.identity_type, &at)?;
                let var = g.context_variable_name;
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(ConfigError(format!(
                        "{}: {var:?} must be non-empty ASCII letters, digits or '_'",
                        at("context-variable-name")
                    )));
                }
                if var == "request" || var == "identity" {
                    return Err(ConfigError(format!(
                        "{}: {var:?} is reserved for request values and the caller's claims \
                         in templates",
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
                    place: format!("policies.{name}[{i}].get-authorization-context"),
                    ids,
                    variable: Rc::from(var),
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
                    if t.uses_identity() {
                        return Err(ConfigError(format!(
                            "{}: {{{{identity.Claims.<name>}}}} is only usable in the provider-id \
                             and authorization-id of a get-authorization-context step with \
                             identity-type \"jwt\"",
                            at(&field)
                        )));
                    }
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
                let token_only = match values.as_slice() {
                    [only] => only.token_only().map(str::to_owned),
                    _ => None,
                };
                Step::SetHeader(SetHeader {
                    name: s.name.to_ascii_lowercase(),
                    exists_action: s.exists_action,
                    values,
                    token_only,
                    rendered: RefCell::default(),
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

/// A step's ids: literal ids checked and keyed now; templates parsed, and refused if they use
/// anything but literal text, request headers and (with identity-type `jwt`) verified claims.
fn compile_ids(
    provider: &str,
    authorization: &str,
    identity_type: IdentityType,
    at: &dyn Fn(&str) -> String,
) -> Result<Ids, ConfigError> {
    let identity = match identity_type {
        IdentityType::Managed => "managed",
        IdentityType::Jwt => "jwt",
    };
    let mut parsed = Vec::with_capacity(2);
    for (field, text) in [
        ("provider-id", provider),
        ("authorization-id", authorization),
    ] {
        let t = Template::parse(text).map_err(|e| ConfigError(format!("{}: {e}", at(field))))?;
        for seg in t.segments() {
            match seg {
                Segment::Literal(_) | Segment::RequestHeader(_) => {}
                Segment::IdentityClaim(_) if identity_type == IdentityType::Jwt => {}
                Segment::IdentityClaim(_) => {
                    return Err(ConfigError(format!(
                        "{}: {{{{identity.Claims.<name>}}}} needs identity-type \"jwt\" (the \
                         claims of the caller's verified JWT)",
                        at(field)
                    )))
                }
                Segment::AccessToken(_) | Segment::Claim(..) => {
                    return Err(ConfigError(format!(
                        "{}: an id may use request headers and {{{{identity.Claims.<name>}}}}, \
                         not a context variable",
                        at(field)
                    )))
                }
            }
        }
        if let Some(id) = t.literal() {
            validate_id(&id).map_err(|e| ConfigError(format!("{}: {e}", at(field))))?;
        }
        parsed.push(t);
    }
    let (Some(a), Some(p)) = (parsed.pop(), parsed.pop()) else {
        return Err(ConfigError(format!("{}: missing", at("provider-id"))));
    };
    Ok(match (p.literal(), a.literal()) {
        (Some(provider_id), Some(authorization_id)) => Ids::Literal(Rc::new(StepIds {
            cache_key: crate::cache::token_key(&provider_id, &authorization_id, identity),
            provider_id,
            authorization_id,
        })),
        _ => Ids::Templated {
            provider_id: p,
            authorization_id: a,
            provider_text: provider.to_owned(),
            authorization_text: authorization.to_owned(),
        },
    })
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
