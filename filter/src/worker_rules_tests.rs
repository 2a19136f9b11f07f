//! Choosing the policy set: rules that match the request, route metadata and the default, and
//! the host calls each costs a request.

use super::*;
use crate::config::FilterConfig;
use crate::test_host::*;
use serde_json::json;

/// Three policy sets that only tag the request, so a test sees which one ran.
fn tagging(extra: serde_json::Value) -> serde_json::Value {
    let mut config = json!({
        "control_plane": {"cluster": "cp", "gateway_key": "k"},
        "policies": {
            "a": [{"set-header": {"name": "x-policy", "value": "a"}}],
            "b": [{"set-header": {"name": "x-policy", "value": "b"}}],
            "fallback": [{"set-header": {"name": "x-policy", "value": "fallback"}}]
        }
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
}

/// Runs request `ctx` with `headers`; the policy that tagged it (`None`: untouched).
fn tag(w: &Worker, host: &FakeHost, ctx: u32, headers: &[(&str, &str)]) -> Option<String> {
    host.set_headers(ctx, headers);
    assert_eq!(start(w, host, ctx), Flow::Continue);
    host.header_values(ctx, "x-policy").into_iter().next()
}

fn rules() -> serde_json::Value {
    json!([
        {"match": {"host": "*.a.example", "headers": [{"name": "x-tenant", "value": "a"}]}, "policy": "a"},
        {"match": {"path_prefix": "/b/", "methods": ["POST"]}, "policy": "b"}
    ])
}

#[test]
fn rules_choose_the_set_without_reading_route_metadata() {
    let w = worker_from(tagging(json!({"rules": rules()})));
    let host = FakeHost::default();
    // Route metadata is not read when rules are configured and it is not asked for.
    *host.route_policy.borrow_mut() = Some("fallback".into());

    let a = [(":authority", "api.a.example:443"), ("x-tenant", "a")];
    assert_eq!(tag(&w, &host, 10, &a).as_deref(), Some("a"));
    let b = [
        (":authority", "x.other"),
        (":path", "/b/1?q"),
        (":method", "POST"),
    ];
    assert_eq!(tag(&w, &host, 11, &b).as_deref(), Some("b"));
    let none = [
        (":authority", "x.other"),
        (":path", "/b/1"),
        (":method", "GET"),
    ];
    assert_eq!(tag(&w, &host, 12, &none), None);
    assert!(host.header_values(12, "authorization").is_empty());

    assert!(host.property_reads.borrow().is_empty());
    // Request 10 matched on the first rule: two reads; 11 and 12 tried both rules, reading
    // `:authority` once each (x-tenant is not read after the host failed).
    assert_eq!(
        *host.header_reads.borrow(),
        [
            ":authority",
            "x-tenant",
            ":authority",
            ":path",
            ":method",
            ":authority",
            ":path",
            ":method",
        ]
    );
}

#[test]
fn an_unmatched_request_takes_the_default_policy() {
    let w = worker_from(tagging(
        json!({"rules": rules(), "default_policy": "fallback"}),
    ));
    let host = FakeHost::default();
    assert_eq!(
        tag(&w, &host, 10, &[(":path", "/b/1"), (":method", "GET")]).as_deref(),
        Some("fallback")
    );
    assert_eq!(
        tag(&w, &host, 11, &[(":path", "/b/1"), (":method", "POST")]).as_deref(),
        Some("b")
    );
    assert!(host.property_reads.borrow().is_empty());
}

#[test]
fn route_metadata_when_asked_for_wins_over_the_rules() {
    let w = worker_from(tagging(json!({
        "rules": rules(), "route_metadata": true, "default_policy": "fallback"
    })));
    let host = FakeHost::default();
    let b = [(":path", "/b/"), (":method", "POST")];
    assert_eq!(tag(&w, &host, 10, &b).as_deref(), Some("b"));
    *host.route_policy.borrow_mut() = Some("a".into());
    assert_eq!(tag(&w, &host, 11, &b).as_deref(), Some("a"));
    assert_eq!(host.property_reads.borrow().len(), 2);
    // The metadata decided request 11: the rules read nothing for it.
    assert_eq!(
        *host.header_reads.borrow(),
        [":authority", ":path", ":method"]
    );
}

#[test]
fn without_rules_route_metadata_is_read_unless_switched_off() {
    let w = worker_from(tagging(json!({"default_policy": "fallback"})));
    assert!(w.view.config.route_metadata);
    let host = FakeHost::default();
    *host.route_policy.borrow_mut() = Some("a".into());
    assert_eq!(tag(&w, &host, 10, &[]).as_deref(), Some("a"));
    assert_eq!(host.property_reads.borrow().len(), 1);

    let w = worker_from(tagging(
        json!({"default_policy": "fallback", "route_metadata": false}),
    ));
    let host = FakeHost::default();
    *host.route_policy.borrow_mut() = Some("a".into());
    assert_eq!(tag(&w, &host, 10, &[]).as_deref(), Some("fallback"));
    assert!(host.property_reads.borrow().is_empty());
    assert!(host.header_reads.borrow().is_empty());
}

#[test]
fn route_metadata_defaults_to_off_with_rules() {
    let parse = |v: serde_json::Value| FilterConfig::parse(v.to_string().as_bytes()).unwrap();
    assert!(!parse(tagging(json!({"rules": rules()}))).route_metadata);
    assert!(parse(tagging(json!({"rules": rules(), "route_metadata": true}))).route_metadata);
    assert!(parse(tagging(json!({}))).route_metadata);
    assert!(!parse(tagging(json!({"route_metadata": false}))).route_metadata);
}

#[test]
fn bad_rules_refuse_the_configuration_naming_the_field() {
    let err = |rules: serde_json::Value| {
        FilterConfig::parse(tagging(json!({ "rules": rules })).to_string().as_bytes())
            .unwrap_err()
            .to_string()
    };
    let e = err(json!([{"match": {"host": "a.example"}, "policy": "a"},
                       {"match": {"host": "a.*.example"}, "policy": "b"},
                       {"match": {"host": "a.example"}, "policy": "c"}]));
    assert!(e.contains("at rules[1].match.host"), "{e}");
    let e = err(json!([{"match": {"host": "a.example"}, "policy": "nope"}]));
    assert!(
        e.contains("at rules[0].policy: no policy set named \"nope\""),
        "{e}"
    );
    let e = err(json!([{"match": {"hots": "a.example"}, "policy": "a"}]));
    assert!(
        e.contains("at rules[0].match") && e.contains("unknown field `hots`"),
        "{e}"
    );
    let e = err(json!([{"match": {"headers": [{"name": "x", "vaule": "1"}]}, "policy": "a"}]));
    assert!(
        e.contains("at rules[0].match.headers[0]") && e.contains("unknown field `vaule`"),
        "{e}"
    );
    let e = err(json!([{"match": {"host": "a.example"}, "policy": "a", "priority": 1}]));
    assert!(
        e.contains("at rules[0]") && e.contains("unknown field `priority`"),
        "{e}"
    );
    let e = FilterConfig::parse(
        tagging(json!({"route_metadata": "yes"}))
            .to_string()
            .as_bytes(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("at route_metadata"), "{e}");
}
