//! A request's context variables (what its `get-authorization-context` steps set) and the
//! values its templates are rendered against: those variables, its headers, and the verified
//! claims of the current step's caller.

use crate::config::StepIds;
use crate::host::Host;
use crate::template::Values;
use credmgr_common::RuntimeToken;
use std::rc::Rc;

/// A context variable: the token it holds (`None`: null, after an ignored error) and the ids
/// (with their cache key) it came from. Every part is shared, nothing copied.
pub(crate) struct Var {
    pub name: Rc<str>,
    pub ids: Option<Rc<StepIds>>,
    pub token: Option<Rc<RuntimeToken>>,
}

/// Template values of one request: its context variables, headers, and the verified claims
/// of the current step's caller (none outside the ids of a `jwt` step).
pub(crate) struct Vars<'a, H> {
    pub vars: &'a [Var],
    pub host: &'a H,
    pub claims: &'a [(String, String)],
}

impl<H> Vars<'_, H> {
    fn get(&self, var: &str) -> Option<&RuntimeToken> {
        self.vars
            .iter()
            .rev()
            .find(|v| &*v.name == var)
            .and_then(|v| v.token.as_deref())
    }
}

impl<H: Host> Values for Vars<'_, H> {
    fn access_token(&self, var: &str) -> Option<&str> {
        self.get(var).map(|t| t.access_token.as_str())
    }

    fn claim(&self, var: &str, name: &str) -> Option<String> {
        let token = self.get(var)?;
        Some(match token.claims.get(name) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.host.request_header(name).ok().flatten()
    }

    fn identity_claim(&self, name: &str) -> Option<&str> {
        self.claims
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}
