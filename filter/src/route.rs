//! Which policy set a request runs: the one its route's metadata names (when the
//! configuration reads route metadata), else the first request-matching rule that matches,
//! else the default; none, and the request passes untouched.

use crate::config::{FilterConfig, PolicySet};
use crate::host::{Host, Level};
use std::rc::Rc;

/// Where a route names its policy set: `filter_metadata.credmgr.policy` in its metadata.
const ROUTE_POLICY: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "credmgr",
    "policy",
];

/// The request's policy set: the one its route's metadata names (when `route_metadata`
/// is on), else the first rule that matches the request, else the default (none: the
/// request passes untouched). A name in route metadata that the configuration does not
/// define is an error: failing closed beats forwarding a request without the credential it
/// needs. Without `route_metadata` no property is read: that is a host call per request.
pub fn policy_for(
    config: &FilterConfig,
    host: &impl Host,
) -> Result<Option<Rc<PolicySet>>, String> {
    if config.route_metadata {
        if let Some(named) = policy_in_route_metadata(config, host)? {
            return Ok(Some(named));
        }
    }
    let matched = config.rules.select(|name| match host.request_header(name) {
        Ok(value) => value,
        Err(e) => {
            host.log(
                Level::Warn,
                &format!("cannot read request header {name} to match the rules: {e}"),
            );
            None
        }
    });
    Ok(matched.or_else(|| config.default_policy.clone()))
}

/// The policy set the route's metadata names, if it names one.
fn policy_in_route_metadata(
    config: &FilterConfig,
    host: &impl Host,
) -> Result<Option<Rc<PolicySet>>, String> {
    let named = match host.property(&ROUTE_POLICY) {
        Ok(v) => v,
        Err(e) => {
            host.log(
                Level::Warn,
                &format!("cannot read the route's metadata: {e}"),
            );
            None
        }
    };
    let Some(name) = named else {
        return Ok(None);
    };
    let name = String::from_utf8_lossy(&name);
    match config.policies.get(name.as_ref()) {
        Some(set) => Ok(Some(Rc::clone(set))),
        None => Err(format!(
            "the route names policy set {name:?} (filter_metadata.credmgr.policy), which the credmgr filter configuration does not define"
        )),
    }
}
