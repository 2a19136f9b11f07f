//! Choosing a policy set by matching the request: the `rules` of the filter configuration, an
//! ordered list whose first rule that matches names the set. This is how a deployment that
//! cannot set Envoy route metadata (Istio's `WasmPlugin`, Envoy Gateway's
//! `EnvoyExtensionPolicy`) picks a set per host, path, method or header.
//!
//! ```json
//! "rules": [
//!   {"match": {"host": "*.example.com", "path_prefix": "/github/", "methods": ["GET", "POST"],
//!              "headers": [{"name": "x-tenant", "value": "a"}, {"name": "x-flag", "present": true}]},
//!    "policy": "github"}
//! ]
//! ```
//!
//! The rules are compiled once, in `on_configure` ([`Rules::compile`]); a request only compares
//! strings. Host calls are what a request pays for, so a request reads only the headers some
//! rule looks at (`:authority`, `:path` and `:method` included), each at most once, and only when
//! a rule being tried needs it.
//!
//! This module imports nothing from the crate: the compiled rules are generic over what a rule
//! chooses (`P`, the policy set in [`crate::config`]).

use serde::Deserialize;

/// One rule as written: conditions, all of which must hold, and the policy set they choose.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub matches: RawMatch,
    pub policy: String,
}

/// The conditions of one rule. Every one given must hold; at least one must be given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    /// `api.example.com` or `*.example.com`: `:authority` without its port, any case.
    #[serde(default)]
    pub host: Option<String>,
    /// The whole path, without the query string.
    #[serde(default)]
    pub path: Option<String>,
    /// A prefix of the path (the query string left out).
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Any of these methods, compared exactly.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Vec<RawHeaderMatch>,
}

/// A request header that must be present (`present: true`), absent (`present: false`), or
/// carry exactly `value`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaderMatch {
    pub name: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub present: Option<bool>,
}

/// How a request value is made comparable once it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Normalize {
    /// `:authority`: the port dropped, lower-cased.
    Host,
    /// `:path`: the query string (and a fragment, should one arrive) dropped.
    Path,
    /// As Envoy hands it over.
    None,
}

/// A request value some rule reads: a header or pseudo-header.
#[derive(Debug)]
struct Slot {
    name: String,
    normalize: Normalize,
}

#[derive(Debug, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// `*.example.com`, kept as `.example.com`: one or more labels before it.
    Suffix(String),
}

#[derive(Debug, PartialEq, Eq)]
enum Test {
    Host(HostPattern),
    PathExact(String),
    PathPrefix(String),
    Method(Vec<String>),
    Present(bool),
    Value(String),
}

/// One condition: a test on the value in slot `slot`.
#[derive(Debug)]
struct Condition {
    slot: usize,
    test: Test,
}

#[derive(Debug)]
struct Rule<P> {
    conditions: Vec<Condition>,
    policy: P,
}

/// The compiled rules, in order.
#[derive(Debug)]
pub struct Rules<P> {
    rules: Vec<Rule<P>>,
    /// Every request value some rule reads, each once.
    slots: Vec<Slot>,
}

impl<P> Default for Rules<P> {
    fn default() -> Self {
        Rules {
            rules: Vec::new(),
            slots: Vec::new(),
        }
    }
}

impl<P: Clone> Rules<P> {
    /// Compiles `raw`; `policy` resolves a rule's policy name. An error names its field, as
    /// `at rules[2].match.host: ...`.
    pub fn compile(
        raw: Vec<RawRule>,
        policy: impl Fn(&str) -> Option<P>,
    ) -> Result<Rules<P>, String> {
        let mut rules = Rules::default();
        for (i, r) in raw.into_iter().enumerate() {
            let at = |field: &str| format!("at rules[{i}].{field}");
            let chosen = policy(&r.policy).ok_or_else(|| {
                format!(
                    "{}: no policy set named {:?} in policies",
                    at("policy"),
                    r.policy
                )
            })?;
            let conditions = rules.compile_match(r.matches, &at("match"))?;
            rules.rules.push(Rule {
                conditions,
                policy: chosen,
            });
        }
        Ok(rules)
    }

    /// The conditions of one rule; `base` names its `match` (`at rules[2].match`).
    fn compile_match(&mut self, m: RawMatch, base: &str) -> Result<Vec<Condition>, String> {
        let at = |field: &str| format!("{base}.{field}");
        let mut conditions = Vec::new();
        if let Some(host) = m.host {
            let pattern = parse_host(&host).map_err(|e| format!("{}: {e}", at("host")))?;
            let slot = self.slot(":authority", Normalize::Host);
            conditions.push(Condition {
                slot,
                test: Test::Host(pattern),
            });
        }
        let path = match (m.path, m.path_prefix) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{}: give path or path_prefix, not both",
                    at("path_prefix")
                ))
            }
            (Some(p), None) => Some(Test::PathExact(check_path(&p, &at("path"))?)),
            (None, Some(p)) => Some(Test::PathPrefix(check_path(&p, &at("path_prefix"))?)),
            (None, None) => None,
        };
        if let Some(test) = path {
            let slot = self.slot(":path", Normalize::Path);
            conditions.push(Condition { slot, test });
        }
        if let Some(methods) = m.methods {
            if methods.is_empty() {
                return Err(format!(
                    "{}: must name at least one method (leave it out to match any)",
                    at("methods")
                ));
            }
            for (j, method) in methods.iter().enumerate() {
                if method.is_empty() || !method.bytes().all(is_token_byte) {
                    return Err(format!(
                        "{}: {method:?} is not an HTTP method (a token such as \"GET\")",
                        at(&format!("methods[{j}]"))
                    ));
                }
            }
            let slot = self.slot(":method", Normalize::None);
            conditions.push(Condition {
                slot,
                test: Test::Method(methods),
            });
        }
        for (j, h) in m.headers.into_iter().enumerate() {
            let field = |f: &str| at(&format!("headers[{j}].{f}"));
            if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
                return Err(format!(
                    "{}: {:?} is not an HTTP header name (pseudo-headers are matched by host, \
                     path, path_prefix and methods)",
                    field("name"),
                    h.name
                ));
            }
            let test = match (h.value, h.present) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "{}: give value or present, not both",
                        field("present")
                    ))
                }
                (Some(v), None) => Test::Value(v),
                (None, Some(p)) => Test::Present(p),
                (None, None) => {
                    return Err(format!(
                        "{}: missing; a header condition needs a value or present",
                        field("value")
                    ))
                }
            };
            let slot = self.slot(&h.name.to_ascii_lowercase(), Normalize::None);
            conditions.push(Condition { slot, test });
        }
        if conditions.is_empty() {
            return Err(format!(
                "{}: no condition; a rule needs at least one of host, path, path_prefix, methods, \
                 headers (default_policy is the catch-all)",
                base
            ));
        }
        Ok(conditions)
    }

    /// The slot that holds request value `name`, added if no rule read it yet.
    fn slot(&mut self, name: &str, normalize: Normalize) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.name == name) {
            return i;
        }
        self.slots.push(Slot {
            name: name.to_owned(),
            normalize,
        });
        self.slots.len() - 1
    }

    /// No rule is configured.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// How many rules are configured.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// The request headers the rules may read, pseudo-headers included.
    pub fn headers_read(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// The policy of the first rule that matches; `header` reads a request header (`None`:
    /// absent or unreadable). Each header is read at most once, and only if a rule tried needs it.
    pub fn select(&self, mut header: impl FnMut(&str) -> Option<String>) -> Option<P> {
        if self.rules.is_empty() {
            return None;
        }
        // Read on first need: a rule that fails on the host never reads the path.
        let mut values: Vec<Option<Option<String>>> = Vec::new();
        values.resize_with(self.slots.len(), || None);
        'rules: for rule in &self.rules {
            for c in &rule.conditions {
                let (Some(cell), Some(slot)) = (values.get_mut(c.slot), self.slots.get(c.slot))
                else {
                    continue 'rules;
                };
                let value = cell.get_or_insert_with(|| {
                    header(&slot.name).map(|v| normalize(slot.normalize, v))
                });
                if !c.test.holds(value.as_deref()) {
                    continue 'rules;
                }
            }
            return Some(rule.policy.clone());
        }
        None
    }
}

impl Test {
    fn holds(&self, value: Option<&str>) -> bool {
        match (self, value) {
            (Test::Present(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Test::Host(HostPattern::Exact(h)), Some(v)) => v == h,
            // At least one character before the suffix: `*.example.com` is not `example.com`.
            (Test::Host(HostPattern::Suffix(s)), Some(v)) => v.len() > s.len() && v.ends_with(s),
            (Test::PathExact(p), Some(v)) => v == p,
            (Test::PathPrefix(p), Some(v)) => v.starts_with(p.as_str()),
            (Test::Method(ms), Some(v)) => ms.iter().any(|m| m == v),
            (Test::Value(want), Some(v)) => v == want,
        }
    }
}

fn normalize(how: Normalize, value: String) -> String {
    match how {
        Normalize::None => value,
        Normalize::Path => match value.find(['?', '#']) {
            Some(end) => value.get(..end).unwrap_or_default().to_owned(),
            None => value,
        },
        Normalize::Host => {
            // `[::1]:8080` keeps its brackets; `host:8080` loses the port.
            let host = if value.starts_with('[') {
                match value.find(']') {
                    Some(end) => value.get(..=end).unwrap_or_default(),
                    None => value.as_str(),
                }
            } else {
                value.split(':').next().unwrap_or_default()
            };
            // A fully qualified `example.com.` is `example.com`.
            host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
        }
    }
}

/// A host pattern: a name, or `*.` and a name. Lower-cased; no port, no other `*`.
fn parse_host(text: &str) -> Result<HostPattern, String> {
    let lower = text.to_ascii_lowercase();
    let (wildcard, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if name.is_empty() {
        return Err(format!(
            "{text:?}: must name a host, such as \"api.example.com\""
        ));
    }
    if name.contains('*') {
        return Err(format!(
            "{text:?}: a wildcard is only allowed as the whole first label, as in \"*.example.com\""
        ));
    }
    if name.contains(':') {
        return Err(format!(
            "{text:?}: leave the port out; the request's port is not compared"
        ));
    }
    let labels_ok = name.split('.').all(|l| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if !labels_ok {
        return Err(format!(
            "{text:?}: not a host name (dot-separated labels of letters, digits, '-' and '_')"
        ));
    }
    Ok(if wildcard {
        HostPattern::Suffix(format!(".{name}"))
    } else {
        HostPattern::Exact(name.to_owned())
    })
}

fn check_path(path: &str, at: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("{at}: {path:?} must start with '/'"));
    }
    if path.contains(['?', '#']) {
        return Err(format!(
            "{at}: {path:?} must not hold a query string or fragment; the path is compared without them"
        ));
    }
    Ok(path.to_owned())
}

/// RFC 9110 §5.6.2 `tchar`: header names and methods are tokens.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
