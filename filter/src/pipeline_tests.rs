use super::*;
use crate::cache::TokenCache;
use crate::host::SetSharedError;
use serde_json::json;
use std::cell::RefCell;
use std::collections::HashMap;

/// An in-memory Envoy: shared data with CAS, request headers, calls out and local replies.
#[derive(Default)]
struct FakeHost {
    now_ms: RefCell<u64>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    headers: RefCell<Vec<(String, String)>>,
    calls: RefCell<Vec<Vec<(String, String)>>>,
    fail_dispatch: bool,
    route_policy: Option<&'static str>,
    reply: RefCell<Option<(u16, String)>>,
    logs: RefCell<Vec<String>>,
}

impl FakeHost {
    fn with_headers(headers: &[(&str, &str)]) -> FakeHost {
        let h = FakeHost::default();
        *h.headers.borrow_mut() = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        h
    }
    fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .borrow()
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    fn calls(&self) -> usize {
        self.calls.borrow().len()
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        *self.now_ms.borrow()
    }
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.to_owned());
    }
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError> {
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if let (Some(want), Some(have)) = (cas, current) {
            if want != have {
                return Err(SetSharedError::CasMismatch);
            }
        }
        shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn dispatch_http_call(
        &self,
        _cluster: &str,
        headers: &[(&str, &str)],
        _timeout_ms: u64,
    ) -> Result<u32, HostError> {
        if self.fail_dispatch {
            return Err(HostError("BadArgument".into()));
        }
        let mut calls = self.calls.borrow_mut();
        calls.push(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        Ok(calls.len() as u32)
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        Ok(match path {
            ["xds", "route_metadata", "filter_metadata", "credmgr", "policy"] => {
                self.route_policy.map(|p| p.as_bytes().to_vec())
            }
            _ => None,
        })
    }
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
        Ok(self.header_values(name).into_iter().next())
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.remove_request_header(name)?;
        self.add_request_header(name, value)
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.headers
            .borrow_mut()
            .push((name.to_owned(), value.to_owned()));
        Ok(())
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        self.headers.borrow_mut().retain(|(k, _)| k != name);
        Ok(())
    }
    fn send_response(
        &self,
        status: u16,
        _headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        *self.reply.borrow_mut() = Some((status, String::from_utf8_lossy(body).into_owned()));
        Ok(())
    }
}

fn worker(set_header: serde_json::Value, ignore_error: bool) -> Rc<Worker> {
    let config = json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth", "ignore-error": ignore_error}},
            {"set-header": set_header}
        ]}
    });
    let config = FilterConfig::parse(config.to_string().as_bytes()).unwrap();
    Rc::new(Worker {
        config: Rc::new(config),
        cache: TokenCache::default(),
    })
}

fn bearer_worker() -> Rc<Worker> {
    worker(
        json!({"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}),
        false,
    )
}

fn request(w: &Rc<Worker>) -> Request {
    Request::new(Rc::clone(w))
}

fn token_answer(token: &str, expires_at: i64, refresh_at: i64) -> CallResponse {
    let body = json!({"access_token": token, "token_type": "Bearer", "expires_at": expires_at,
        "refresh_at": refresh_at, "claims": {"scope": "api:read"}});
    CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    }
}

#[test]
fn a_miss_pauses_fetches_once_then_sets_the_header_and_later_requests_hit_the_cache() {
    let w = bearer_worker();
    let host = FakeHost::with_headers(&[("authorization", "Basic caller-sent-this")]);
    let mut r = request(&w);
    assert_eq!(r.on_request_headers(&host), Flow::Pause);
    let call = host.calls.borrow()[0].clone();
    assert!(call.contains(&(
        ":path".into(),
        "/runtime/v1/providers/gh/connections/alice/token".into()
    )));
    assert!(call.contains(&("authorization".into(), "Bearer gw-key".into())));

    assert_eq!(
        r.on_call_response(&host, 1, token_answer("tok-1", 3600, 3000)),
        Flow::Continue
    );
    assert_eq!(host.header_values("authorization"), vec!["Bearer tok-1"]);

    for _ in 0..10 {
        let host2 = FakeHost {
            shared: RefCell::new(host.shared.borrow().clone()),
            ..FakeHost::default()
        };
        assert_eq!(request(&w).on_request_headers(&host2), Flow::Continue);
        assert_eq!(host2.header_values("authorization"), vec!["Bearer tok-1"]);
        assert_eq!(host2.calls(), 0);
    }
}

#[test]
fn an_expired_token_is_fetched_again() {
    let w = bearer_worker();
    let host = FakeHost::default();
    let mut r = request(&w);
    r.on_request_headers(&host);
    r.on_call_response(&host, 1, token_answer("old", 5, 4));
    *host.now_ms.borrow_mut() = 5_000;
    let mut r = request(&w);
    assert_eq!(r.on_request_headers(&host), Flow::Pause);
    assert_eq!(
        r.on_call_response(&host, 2, token_answer("new", 10, 9)),
        Flow::Continue
    );
    assert_eq!(host.header_values("authorization"), vec!["Bearer new"]);
}

#[test]
fn control_plane_down_serves_a_still_valid_token_and_otherwise_answers_503_json() {
    let w = bearer_worker();
    let host = FakeHost::default();
    let mut r = request(&w);
    r.on_request_headers(&host);
    r.on_call_response(&host, 1, token_answer("cached", 100, 80));

    // Past the refresh point: fetch again; the fetch fails; the cached token still serves.
    *host.now_ms.borrow_mut() = 90_000;
    let mut r = request(&w);
    assert_eq!(r.on_request_headers(&host), Flow::Pause);
    let down = CallResponse {
        status: None,
        body: vec![],
    };
    assert_eq!(r.on_call_response(&host, 2, down.clone()), Flow::Continue);
    assert_eq!(host.header_values("authorization"), vec!["Bearer cached"]);
    assert!(host.reply.borrow().is_none());

    // Expired and the control plane down: 503 with a JSON body, no header forwarded.
    *host.now_ms.borrow_mut() = 100_000;
    let fresh = FakeHost::default();
    *fresh.shared.borrow_mut() = host.shared.borrow().clone();
    *fresh.now_ms.borrow_mut() = 100_000;
    let mut r = request(&w);
    assert_eq!(r.on_request_headers(&fresh), Flow::Pause);
    assert_eq!(r.on_call_response(&fresh, 1, down), Flow::Respond);
    let (status, body) = fresh.reply.borrow().clone().unwrap();
    assert_eq!(status, 503);
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "control_plane_unavailable");
    assert_eq!(body["error"]["details"]["provider_id"], "gh");
    assert_eq!(body["error"]["details"]["authorization_id"], "alice");
    assert!(fresh.header_values("authorization").is_empty());
}

#[test]
fn a_control_plane_error_is_passed_on_and_never_leaks_the_gateway_key() {
    let w = bearer_worker();
    let host = FakeHost::default();
    let mut r = request(&w);
    r.on_request_headers(&host);
    let body = ErrorBody::new(
        "client_secret_rejected",
        "the provider refused the client credentials",
    )
    .to_json();
    let flow = r.on_call_response(
        &host,
        1,
        CallResponse {
            status: Some(503),
            body: body.into_bytes(),
        },
    );
    assert_eq!(flow, Flow::Respond);
    let (status, body) = host.reply.borrow().clone().unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("client_secret_rejected"), "{body}");
    assert!(!body.contains("gw-key"));
    assert!(host.logs.borrow().iter().all(|l| !l.contains("gw-key")));
}

#[test]
fn dispatch_failure_without_a_token_answers_503() {
    let w = bearer_worker();
    let host = FakeHost {
        fail_dispatch: true,
        ..FakeHost::default()
    };
    assert_eq!(request(&w).on_request_headers(&host), Flow::Respond);
    assert_eq!(host.reply.borrow().as_ref().unwrap().0, 503);
}

#[test]
fn ignore_error_continues_with_a_null_context_and_leaves_headers_alone() {
    let w = worker(
        json!({"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}),
        true,
    );
    let host = FakeHost::with_headers(&[("authorization", "Basic mine")]);
    let mut r = request(&w);
    r.on_request_headers(&host);
    let flow = r.on_call_response(
        &host,
        1,
        CallResponse {
            status: None,
            body: vec![],
        },
    );
    assert_eq!(flow, Flow::Continue);
    assert_eq!(host.header_values("authorization"), vec!["Basic mine"]);
    assert!(host.reply.borrow().is_none());
}

fn run_with_cached(set_header: serde_json::Value, headers: &[(&str, &str)]) -> FakeHost {
    let w = worker(set_header, false);
    let host = FakeHost::with_headers(headers);
    let key = crate::cache::token_key("gh", "alice", "managed");
    let t = token_answer("tok", 3600, 3000);
    host.set_shared(&key, &t.body, None).unwrap();
    assert_eq!(request(&w).on_request_headers(&host), Flow::Continue);
    host
}

#[test]
fn exists_actions_follow_apim_semantics() {
    let v = "{{auth.Claims.scope}}";
    let h = run_with_cached(
        json!({"name": "x-scope", "value": v}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values("x-scope"), vec!["api:read"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "skip", "value": v}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values("x-scope"), vec!["old"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "skip", "value": v}),
        &[],
    );
    assert_eq!(h.header_values("x-scope"), vec!["api:read"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "append", "value": [v, "b"]}),
        &[("x-scope", "old")],
    );
    assert_eq!(h.header_values("x-scope"), vec!["old", "api:read", "b"]);
    let h = run_with_cached(
        json!({"name": "x-scope", "exists-action": "delete"}),
        &[("x-scope", "old")],
    );
    assert!(h.header_values("x-scope").is_empty());
    let h = run_with_cached(
        json!({"name": "x-scope", "value": [v, "{{request.headers.x-user}}"]}),
        &[("x-user", "bob")],
    );
    assert_eq!(h.header_values("x-scope"), vec!["api:read", "bob"]);
}

#[test]
fn a_newer_cached_token_is_not_overwritten_by_an_older_answer() {
    let w = bearer_worker();
    let host = FakeHost::default();
    let mut slow = request(&w);
    slow.on_request_headers(&host);
    let mut fast = request(&w);
    fast.on_request_headers(&host);
    fast.on_call_response(&host, 2, token_answer("newer", 200, 160));
    slow.on_call_response(&host, 1, token_answer("older", 100, 80));
    let fresh = FakeHost {
        shared: RefCell::new(host.shared.borrow().clone()),
        ..FakeHost::default()
    };
    request(&w).on_request_headers(&fresh);
    assert_eq!(fresh.header_values("authorization"), vec!["Bearer newer"]);
}

fn worker_from(config: serde_json::Value) -> Rc<Worker> {
    Rc::new(Worker {
        config: Rc::new(FilterConfig::parse(config.to_string().as_bytes()).unwrap()),
        cache: TokenCache::default(),
    })
}

#[test]
fn without_a_policy_the_request_passes_untouched() {
    let w = worker_from(
        json!({"control_plane": {"cluster": "cp", "gateway_key": "k"}, "policies": {"p": []}}),
    );
    let host = FakeHost::with_headers(&[("authorization", "Basic x")]);
    assert_eq!(request(&w).on_request_headers(&host), Flow::Continue);
    assert_eq!(host.header_values("authorization"), vec!["Basic x"]);
    assert_eq!(host.calls(), 0);
}

#[test]
fn the_route_metadata_chooses_the_policy_set_and_an_unknown_one_fails_closed() {
    let w = worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "k"},
        "default_policy": "tag",
        "policies": {
            "tag": [{"set-header": {"name": "x-policy", "value": "tag"}}],
            "other": [{"set-header": {"name": "x-policy", "value": "other"}}]
        }
    }));
    let host = FakeHost::default();
    assert_eq!(request(&w).on_request_headers(&host), Flow::Continue);
    assert_eq!(host.header_values("x-policy"), vec!["tag"]);

    let host = FakeHost {
        route_policy: Some("other"),
        ..FakeHost::default()
    };
    assert_eq!(request(&w).on_request_headers(&host), Flow::Continue);
    assert_eq!(host.header_values("x-policy"), vec!["other"]);

    let host = FakeHost {
        route_policy: Some("missing"),
        ..FakeHost::default()
    };
    assert_eq!(request(&w).on_request_headers(&host), Flow::Respond);
    let (status, body) = host.reply.borrow().clone().unwrap();
    assert_eq!(status, 500);
    assert!(
        body.contains("unknown_policy") && body.contains("missing"),
        "{body}"
    );
}
