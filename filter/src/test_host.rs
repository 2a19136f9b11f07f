//! The fake Envoy that the worker's unit tests run against, and their shared helpers.

use crate::config::FilterConfig;
use crate::host::{CallResponse, HostError, SetSharedError};
use crate::host::{Host, Level};
use crate::worker::{Flow, Worker};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// An in-memory Envoy: contexts with their request headers, shared data with CAS, calls out,
/// local replies, resumed requests and counters.
#[derive(Default)]
pub struct FakeHost {
    pub now_ms: Cell<u64>,
    /// Clock reads: each is a host call.
    pub clock_reads: Cell<usize>,
    pub current: Cell<u32>,
    pub shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// Shared-data reads, to tell a worker's own copy from a look-up.
    pub shared_reads: Cell<usize>,
    pub headers: RefCell<HashMap<u32, Vec<(String, String)>>>,
    pub calls: RefCell<Vec<(u32, String)>>,
    /// The headers of each call, in order.
    pub call_headers: RefCell<Vec<Vec<(String, String)>>>,
    pub fail_dispatch: Cell<bool>,
    pub route_policy: RefCell<Option<String>>,
    pub replies: RefCell<HashMap<u32, (u16, String)>>,
    /// The headers of each local reply.
    pub reply_headers: RefCell<HashMap<u32, Vec<(String, String)>>>,
    pub resumed: RefCell<Vec<u32>>,
    pub counters: RefCell<Vec<(String, i64)>>,
    pub logs: RefCell<Vec<String>>,
    /// Every property read, by path: each is a host call on the request path.
    pub property_reads: RefCell<Vec<String>>,
    /// Every request header read, by name.
    pub header_reads: RefCell<Vec<String>>,
}

impl FakeHost {
    pub fn on(&self, ctx: u32) -> &Self {
        self.current.set(ctx);
        self
    }
    pub fn set_headers(&self, ctx: u32, headers: &[(&str, &str)]) {
        let h = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.headers.borrow_mut().insert(ctx, h);
    }
    pub fn header_values(&self, ctx: u32, name: &str) -> Vec<String> {
        let headers = self.headers.borrow();
        let h = headers.get(&ctx).cloned().unwrap_or_default();
        h.into_iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v)
            .collect()
    }
    pub fn calls(&self) -> usize {
        self.calls.borrow().len()
    }
    pub fn last_call_path(&self) -> String {
        self.calls.borrow().last().unwrap().1.clone()
    }
    /// The `authorization` header of each call to the control plane.
    pub fn call_auth(&self) -> Vec<Option<String>> {
        self.call_headers
            .borrow()
            .iter()
            .map(|h| {
                h.iter()
                    .find(|(k, _)| k == "authorization")
                    .map(|(_, v)| v.clone())
            })
            .collect()
    }
    pub fn counter(&self, name: impl AsRef<str>) -> i64 {
        let name = name.as_ref();
        self.counters
            .borrow()
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }
    /// A header of the local reply to `ctx`.
    pub fn reply_header(&self, ctx: u32, name: &str) -> Option<String> {
        self.reply_headers
            .borrow()
            .get(&ctx)?
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
    pub fn reply(&self, ctx: u32) -> Option<(u16, serde_json::Value)> {
        self.replies
            .borrow()
            .get(&ctx)
            .map(|(s, b)| (*s, serde_json::from_str(b).unwrap()))
    }
}

impl Host for FakeHost {
    fn now_ms(&self) -> u64 {
        self.clock_reads.set(self.clock_reads.get() + 1);
        self.now_ms.get()
    }
    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.to_owned());
    }
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.shared_reads.set(self.shared_reads.get() + 1);
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
        if self.fail_dispatch.get() {
            return Err(HostError("BadArgument".into()));
        }
        // The gateway key, when one is configured (without: mTLS on the cluster).
        if let Some((_, auth)) = headers.iter().find(|(k, _)| *k == "authorization") {
            assert_eq!(*auth, "Bearer gw-key");
        }
        let path = headers
            .iter()
            .find(|(k, _)| *k == ":path")
            .unwrap()
            .1
            .to_owned();
        self.call_headers.borrow_mut().push(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        let mut calls = self.calls.borrow_mut();
        calls.push((self.current.get(), path));
        Ok(100 + calls.len() as u32)
    }
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        self.property_reads.borrow_mut().push(path.join("."));
        Ok(match path {
            ["xds", "route_metadata", "filter_metadata", "credmgr", "policy"] => self
                .route_policy
                .borrow()
                .as_ref()
                .map(|p| p.as_bytes().to_vec()),
            _ => None,
        })
    }
    fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
        self.header_reads.borrow_mut().push(name.to_owned());
        Ok(self
            .header_values(self.current.get(), name)
            .into_iter()
            .next())
    }
    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.remove_request_header(name)?;
        self.add_request_header(name, value)
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        let mut headers = self.headers.borrow_mut();
        headers
            .entry(self.current.get())
            .or_default()
            .push((name.to_owned(), value.to_owned()));
        Ok(())
    }
    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        let mut headers = self.headers.borrow_mut();
        headers
            .entry(self.current.get())
            .or_default()
            .retain(|(k, _)| k != name);
        Ok(())
    }
    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        self.current.set(context_id);
        Ok(())
    }
    fn resume_request(&self) -> Result<(), HostError> {
        self.resumed.borrow_mut().push(self.current.get());
        Ok(())
    }
    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        let mut counters = self.counters.borrow_mut();
        if let Some(i) = counters.iter().position(|(n, _)| n == name) {
            return Ok(i as u32);
        }
        counters.push((name.to_owned(), 0));
        Ok(counters.len() as u32 - 1)
    }
    fn increment(&self, counter: u32, by: i64) -> Result<(), HostError> {
        self.counters.borrow_mut()[counter as usize].1 += by;
        Ok(())
    }
    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let body = String::from_utf8_lossy(body).into_owned();
        self.reply_headers.borrow_mut().insert(
            self.current.get(),
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        self.replies
            .borrow_mut()
            .insert(self.current.get(), (status, body));
        Ok(())
    }
}

pub const ROOT: u32 = 1;

pub fn worker_from(config: serde_json::Value) -> Worker {
    Worker::new(FilterConfig::parse(config.to_string().as_bytes()).unwrap())
}

pub fn worker(set_header: serde_json::Value, ignore_error: bool) -> Worker {
    worker_from(json!({
        "control_plane": {"cluster": "cp", "gateway_key": "gw-key"},
        "default_policy": "p",
        "policies": {"p": [
            {"get-authorization-context": {"provider-id": "gh", "authorization-id": "alice",
                "context-variable-name": "auth", "ignore-error": ignore_error}},
            {"set-header": set_header}
        ]}
    }))
}

pub fn bearer_worker() -> Worker {
    worker(
        json!({"name": "Authorization", "value": "Bearer {{auth.AccessToken}}"}),
        false,
    )
}

pub fn answer(token: &str, expires_at: i64, refresh_at: i64) -> CallResponse {
    let body = json!({"access_token": token, "token_type": "Bearer", "expires_at": expires_at,
        "refresh_at": refresh_at, "claims": {"scope": "api:read"}});
    CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    }
}

/// A shared-data cache entry for `key` holding the token of a 200 `answer`.
pub fn cache_entry(key: &str, answer: &CallResponse) -> Vec<u8> {
    let token: serde_json::Value = serde_json::from_slice(&answer.body).unwrap();
    json!({"key": key, "token": token}).to_string().into_bytes()
}

pub const DOWN: CallResponse = CallResponse {
    status: None,
    body: Vec::new(),
};

/// Runs request `ctx` to its first decision.
pub fn start(w: &Worker, host: &FakeHost, ctx: u32) -> Flow {
    w.on_request_headers(host.on(ctx), ctx)
}

/// Delivers the answer to the most recent call, to the context that made it.
pub fn answer_last(w: &Worker, host: &FakeHost, response: CallResponse) {
    let (ctx, call) = {
        let calls = host.calls.borrow();
        (calls.last().unwrap().0, 100 + calls.len() as u32)
    };
    w.on_call_response(host.on(ctx), ctx, call, response);
}
