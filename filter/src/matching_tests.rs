//! The rule matcher: what each condition matches, the order of rules, the reads it makes, and
//! how a bad rule is named.

use super::*;
use serde_json::json;
use std::cell::RefCell;

fn rules(v: serde_json::Value) -> Result<Rules<&'static str>, String> {
    let raw: Vec<RawRule> = serde_json::from_value(v).map_err(|e| e.to_string())?;
    Rules::compile(raw, |name| match name {
        "a" => Some("a"),
        "b" => Some("b"),
        "c" => Some("c"),
        _ => None,
    })
}

/// A request: its headers, and the names read from it, in order.
struct Req {
    headers: Vec<(&'static str, &'static str)>,
    reads: RefCell<Vec<String>>,
}

fn req(headers: &[(&'static str, &'static str)]) -> Req {
    Req {
        headers: headers.to_vec(),
        reads: RefCell::default(),
    }
}

impl Req {
    fn select(&self, r: &Rules<&'static str>) -> Option<&'static str> {
        r.select(|name| {
            self.reads.borrow_mut().push(name.to_owned());
            self.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }
}

fn pick(r: &Rules<&'static str>, headers: &[(&'static str, &'static str)]) -> Option<&'static str> {
    req(headers).select(r)
}

#[test]
fn exact_host_ignores_port_and_case() {
    let r = rules(json!([{"match": {"host": "API.example.com"}, "policy": "a"}])).unwrap();
    assert_eq!(pick(&r, &[(":authority", "api.example.com")]), Some("a"));
    assert_eq!(
        pick(&r, &[(":authority", "Api.Example.COM:8443")]),
        Some("a")
    );
    assert_eq!(pick(&r, &[(":authority", "api.example.com.")]), Some("a"));
    assert_eq!(pick(&r, &[(":authority", "x.api.example.com")]), None);
    assert_eq!(pick(&r, &[(":authority", "api.example.co")]), None);
    assert_eq!(pick(&r, &[]), None);
}

#[test]
fn wildcard_host_needs_a_label_before_the_suffix() {
    let r = rules(json!([{"match": {"host": "*.example.com"}, "policy": "a"}])).unwrap();
    assert_eq!(pick(&r, &[(":authority", "api.example.com")]), Some("a"));
    assert_eq!(pick(&r, &[(":authority", "a.b.EXAMPLE.com:80")]), Some("a"));
    assert_eq!(pick(&r, &[(":authority", "example.com")]), None);
    assert_eq!(pick(&r, &[(":authority", ".example.com")]), None);
    assert_eq!(pick(&r, &[(":authority", "badexample.com")]), None);
}

#[test]
fn ipv6_authority_keeps_its_brackets() {
    let r = rules(json!([{"match": {"host": "*.example.com"}, "policy": "a"}])).unwrap();
    assert_eq!(pick(&r, &[(":authority", "[::1]:8080")]), None);
    assert_eq!(normalize(Normalize::Host, "[::1]:8080".into()), "[::1]");
}

#[test]
fn paths_are_compared_without_the_query_string() {
    let r = rules(json!([
        {"match": {"path": "/exact"}, "policy": "a"},
        {"match": {"path_prefix": "/github/"}, "policy": "b"}
    ]))
    .unwrap();
    assert_eq!(pick(&r, &[(":path", "/exact")]), Some("a"));
    assert_eq!(pick(&r, &[(":path", "/exact?x=1")]), Some("a"));
    assert_eq!(pick(&r, &[(":path", "/exact/")]), None);
    assert_eq!(pick(&r, &[(":path", "/EXACT")]), None);
    assert_eq!(pick(&r, &[(":path", "/github/repos?page=2")]), Some("b"));
    assert_eq!(pick(&r, &[(":path", "/github/")]), Some("b"));
    assert_eq!(pick(&r, &[(":path", "/github")]), None);
    // The query string is not part of the path a prefix is compared with.
    assert_eq!(pick(&r, &[(":path", "/x?/github/")]), None);
}

#[test]
fn methods_match_exactly() {
    let r = rules(json!([{"match": {"methods": ["GET", "POST"]}, "policy": "a"}])).unwrap();
    assert_eq!(pick(&r, &[(":method", "GET")]), Some("a"));
    assert_eq!(pick(&r, &[(":method", "POST")]), Some("a"));
    assert_eq!(pick(&r, &[(":method", "get")]), None);
    assert_eq!(pick(&r, &[(":method", "DELETE")]), None);
}

#[test]
fn headers_by_value_presence_and_absence() {
    let r = rules(json!([
        {"match": {"headers": [{"name": "X-Tenant", "value": "a"}]}, "policy": "a"},
        {"match": {"headers": [{"name": "x-flag", "present": true}]}, "policy": "b"},
        {"match": {"headers": [{"name": "x-skip", "present": false}]}, "policy": "c"}
    ]))
    .unwrap();
    assert_eq!(pick(&r, &[("x-tenant", "a"), ("x-skip", "1")]), Some("a"));
    // Values are compared exactly.
    assert_eq!(pick(&r, &[("x-tenant", "A"), ("x-skip", "1")]), None);
    assert_eq!(pick(&r, &[("x-flag", ""), ("x-skip", "1")]), Some("b"));
    assert_eq!(pick(&r, &[]), Some("c"));
}

#[test]
fn every_condition_of_a_rule_must_hold() {
    let r = rules(json!([{"match": {
        "host": "api.example.com", "path_prefix": "/v1/", "methods": ["POST"],
        "headers": [{"name": "x-tenant", "value": "a"}]}, "policy": "a"}]))
    .unwrap();
    let all = [
        (":authority", "api.example.com"),
        (":path", "/v1/x"),
        (":method", "POST"),
        ("x-tenant", "a"),
    ];
    assert_eq!(pick(&r, &all), Some("a"));
    for left_out in 0..all.len() {
        let some: Vec<_> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != left_out)
            .map(|(_, h)| *h)
            .collect();
        assert_eq!(pick(&r, &some), None, "without {:?}", all[left_out]);
    }
}

#[test]
fn first_match_wins_in_order() {
    let r = rules(json!([
        {"match": {"path_prefix": "/api/special"}, "policy": "b"},
        {"match": {"path_prefix": "/api/"}, "policy": "a"},
        {"match": {"path_prefix": "/api/special"}, "policy": "c"}
    ]))
    .unwrap();
    assert_eq!(pick(&r, &[(":path", "/api/special/1")]), Some("b"));
    assert_eq!(pick(&r, &[(":path", "/api/other")]), Some("a"));
    assert_eq!(pick(&r, &[(":path", "/other")]), None);
}

#[test]
fn each_value_is_read_once_and_only_when_needed() {
    let r = rules(json!([
        {"match": {"host": "a.example.com", "path": "/a"}, "policy": "a"},
        {"match": {"host": "b.example.com", "path": "/b"}, "policy": "b"},
        {"match": {"methods": ["GET"]}, "policy": "c"}
    ]))
    .unwrap();
    assert_eq!(
        r.headers_read().collect::<Vec<_>>(),
        [":authority", ":path", ":method"]
    );
    let q = req(&[(":authority", "b.example.com"), (":path", "/b")]);
    assert_eq!(q.select(&r), Some("b"));
    // The first rule fails on the host: its path is not read then; the second reads it.
    assert_eq!(*q.reads.borrow(), [":authority", ":path"]);

    let q = req(&[(":authority", "c.example.com"), (":method", "GET")]);
    assert_eq!(q.select(&r), Some("c"));
    assert_eq!(*q.reads.borrow(), [":authority", ":method"]);
}

#[test]
fn no_rules_read_nothing() {
    let r = rules(json!([])).unwrap();
    assert!(r.is_empty());
    let q = req(&[(":authority", "x")]);
    assert_eq!(q.select(&r), None);
    assert!(q.reads.borrow().is_empty());
}

fn refused(v: serde_json::Value) -> String {
    rules(v).unwrap_err()
}

#[test]
fn bad_rules_are_refused_naming_the_field() {
    let cases = [
        (
            json!([{"match": {"host": "x"}, "policy": "zzz"}]),
            "at rules[0].policy: no policy set named \"zzz\"",
        ),
        (
            json!([{"match": {"host": "a.com"}, "policy": "a"}, {"match": {"host": ""}, "policy": "a"}]),
            "at rules[1].match.host: \"\": must name a host",
        ),
        (
            json!([{"match": {"host": "*."}, "policy": "a"}]),
            "at rules[0].match.host",
        ),
        (
            json!([{"match": {"host": "api.*.com"}, "policy": "a"}]),
            "at rules[0].match.host: \"api.*.com\": a wildcard is only allowed",
        ),
        (
            json!([{"match": {"host": "*api.com"}, "policy": "a"}]),
            "at rules[0].match.host: \"*api.com\": a wildcard",
        ),
        (
            json!([{"match": {"host": "*"}, "policy": "a"}]),
            "at rules[0].match.host",
        ),
        (
            json!([{"match": {"host": "api.com:443"}, "policy": "a"}]),
            "leave the port out",
        ),
        (
            json!([{"match": {"host": "a..com"}, "policy": "a"}]),
            "not a host name",
        ),
        (
            json!([{"match": {"path": "api"}, "policy": "a"}]),
            "at rules[0].match.path: \"api\" must start with '/'",
        ),
        (
            json!([{"match": {"path_prefix": "/a?b"}, "policy": "a"}]),
            "at rules[0].match.path_prefix: \"/a?b\" must not hold a query",
        ),
        (
            json!([{"match": {"path": "/a", "path_prefix": "/a"}, "policy": "a"}]),
            "at rules[0].match.path_prefix: give path or path_prefix, not both",
        ),
        (
            json!([{"match": {"methods": []}, "policy": "a"}]),
            "at rules[0].match.methods: must name at least one",
        ),
        (
            json!([{"match": {"methods": ["GET", "GE T"]}, "policy": "a"}]),
            "at rules[0].match.methods[1]: \"GE T\" is not an HTTP method",
        ),
        (
            json!([{"match": {"headers": [{"name": "", "present": true}]}, "policy": "a"}]),
            "at rules[0].match.headers[0].name: \"\" is not an HTTP header name",
        ),
        (
            json!([{"match": {"headers": [{"name": ":authority", "present": true}]}, "policy": "a"}]),
            "at rules[0].match.headers[0].name",
        ),
        (
            json!([{"match": {"headers": [{"name": "x", "value": "1", "present": true}]}, "policy": "a"}]),
            "at rules[0].match.headers[0].present: give value or present, not both",
        ),
        (
            json!([{"match": {"headers": [{"name": "x"}]}, "policy": "a"}]),
            "at rules[0].match.headers[0].value: missing",
        ),
        (
            json!([{"match": {}, "policy": "a"}]),
            "at rules[0].match: no condition",
        ),
    ];
    for (v, want) in cases {
        let got = refused(v.clone());
        assert!(got.contains(want), "{v}: {got}");
    }
}
