//! A cache hit at the floor: no clock read after a tick, no route metadata read where the
//! configuration leaves nothing to choose, no work on responses without 401 retirement.

use super::*;
use crate::config::Step;
use crate::test_host::*;
use serde_json::json;

fn managed(extra: serde_json::Value) -> Worker {
    let mut config = json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth"}},
            {"set-header": {"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}}
        ]}
    });
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    worker_from(config)
}

#[test]
fn without_401_retirement_no_request_is_kept_and_a_401_retires_nothing() {
    let w = managed(json!({"retire_on_backend_401": false}));
    assert!(!w.view.config.retire_on_backend_401);
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("tok", 3600, 3000));
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    assert_eq!(host.header_values(11, "authorization"), vec!["Bearer tok"]);
    assert!(!w.carried_token(10) && !w.carried_token(11));
    w.on_response_status(host.on(11), 11, 401);
    w.on_done(11);
    assert_eq!(start(&w, &host, 12), Flow::Continue);
    assert_eq!(host.header_values(12, "authorization"), vec!["Bearer tok"]);
    assert_eq!(host.calls(), 1, "the token was not retired");
}

#[test]
fn with_401_retirement_by_default_a_request_that_carried_a_token_is_kept() {
    let w = managed(json!({}));
    assert!(w.view.config.retire_on_backend_401);
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("tok", 3600, 3000));
    assert_eq!(start(&w, &host, 11), Flow::Continue);
    assert!(w.carried_token(11));
    w.on_done(11);
    assert!(!w.carried_token(11));
}

#[test]
fn after_a_tick_a_hit_reads_no_clock_and_the_header_value_is_rendered_once() {
    let w = managed(json!({}));
    let host = FakeHost::default();
    start(&w, &host, 10);
    answer_last(&w, &host, answer("tok", 3600, 3000));
    w.on_tick(host.on(ROOT), ROOT);
    let reads = host.clock_reads.get();
    for ctx in 11..15 {
        assert_eq!(start(&w, &host, ctx), Flow::Continue);
        assert_eq!(host.header_values(ctx, "authorization"), vec!["Bearer tok"]);
    }
    assert_eq!(host.clock_reads.get(), reads, "hits used the tick's clock");
    let Some(Step::SetHeader(step)) = w.view.config.default_policy.as_ref().map(|p| &p.steps[1])
    else {
        panic!("the second step sets the header")
    };
    let kept = step.rendered.borrow();
    assert_eq!(kept.as_ref().map(|(_, v)| &**v), Some("Bearer tok"));
}

#[test]
fn with_one_policy_set_that_is_the_default_the_route_metadata_is_not_read() {
    let w = managed(json!({}));
    assert!(!w.view.config.route_metadata);
    let host = FakeHost::default();
    *host.route_policy.borrow_mut() = Some("p".into());
    start(&w, &host, 10);
    assert!(host.property_reads.borrow().is_empty());
    // Asked for, it is read.
    assert!(
        managed(json!({"route_metadata": true}))
            .view
            .config
            .route_metadata
    );
}

#[test]
fn a_bad_retire_on_backend_401_is_refused_naming_the_field() {
    let config = json!({
        "control_plane": {"cluster": "cp"}, "policies": {}, "retire_on_backend_401": "no"
    });
    let e = FilterConfig::parse(config.to_string().as_bytes())
        .unwrap_err()
        .to_string();
    assert!(e.contains("at retire_on_backend_401"), "{e}");
}
