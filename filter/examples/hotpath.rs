//! credmgr's own work on a cache hit, without Envoy: what the filter's Rust code costs per
//! request, apart from the host calls it makes and from Envoy's Wasm plumbing.
//!
//! It drives the filter's [`Worker`] through the same steps `wasm.rs` makes for each request
//! (request headers, the response's status, the end of the request) with the configuration of
//! the `managed` listener of `envoy/bench.yaml`, against a host that answers from memory at
//! almost no cost. The first request fetches the token; the rest are timed. The host counts
//! its calls: each is, in Envoy, one crossing out of the Wasm VM.
//!
//! `make bench` runs it twice: natively, and built for `wasm32-wasip1` under Node's V8 (the
//! Wasm engine of the Envoy the benchmarks use). Usage: `hotpath [requests]` (default 2,000,000).
//! It prints one JSON object.

use credmgr_filter::config::FilterConfig;
use credmgr_filter::host::{CallResponse, Host, HostError, Level, SetSharedError};
use credmgr_filter::worker::{Flow, Worker};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::Instant;

const CONFIG: &str = r#"{
  "control_plane": {"cluster": "credmgr_control_plane", "gateway_key": "gw-key"},
  "default_policy": "bench",
  "policies": {
    "bench": [
      {"get-authorization-context": {"provider-id": "demo", "authorization-id": "demo",
                                     "context-variable-name": "auth", "identity-type": "managed"}},
      {"set-header": {"name": "Authorization", "exists-action": "override",
                      "value": "Bearer {{auth.AccessToken}}"}}
    ]
  }
}"#;

/// An Envoy reduced to what a cache hit touches, each call counted.
#[derive(Default)]
struct MemoryHost {
    now_ms: Cell<u64>,
    calls: Cell<u64>,
    shared: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    /// The value the last request's `Authorization` header was set to.
    authorization: RefCell<String>,
    dispatched: Cell<u32>,
    counters: RefCell<Vec<i64>>,
}

impl MemoryHost {
    fn call(&self) {
        self.calls.set(self.calls.get() + 1);
    }
}

impl Host for MemoryHost {
    fn now_ms(&self) -> u64 {
        self.call();
        self.now_ms.get()
    }
    fn log(&self, _level: Level, message: &str) {
        self.call();
        eprintln!("filter log: {message}");
    }
    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        self.call();
        Ok(match self.shared.borrow().get(key) {
            Some((v, cas)) => (Some(v.clone()), Some(*cas)),
            None => (None, None),
        })
    }
    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError> {
        self.call();
        let mut shared = self.shared.borrow_mut();
        let current = shared.get(key).map(|(_, c)| *c);
        if cas.is_some() && current.is_some() && cas != current {
            return Err(SetSharedError::CasMismatch);
        }
        shared.insert(key.to_owned(), (value.to_vec(), current.unwrap_or(0) + 1));
        Ok(())
    }
    fn dispatch_http_call(
        &self,
        _cluster: &str,
        _headers: &[(&str, &str)],
        _timeout_ms: u64,
    ) -> Result<u32, HostError> {
        self.call();
        self.dispatched.set(self.dispatched.get() + 1);
        Ok(self.dispatched.get())
    }
    fn property(&self, _path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        // The route names no policy set: the default one applies, as on the bench listener.
        self.call();
        Ok(None)
    }
    fn request_header(&self, _name: &str) -> Result<Option<String>, HostError> {
        self.call();
        Ok(None)
    }
    fn set_request_header(&self, _name: &str, value: &str) -> Result<(), HostError> {
        self.call();
        value.clone_into(&mut self.authorization.borrow_mut());
        Ok(())
    }
    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        self.set_request_header(name, value)
    }
    fn remove_request_header(&self, _name: &str) -> Result<(), HostError> {
        self.call();
        Ok(())
    }
    fn set_effective_context(&self, _context_id: u32) -> Result<(), HostError> {
        self.call();
        Ok(())
    }
    fn resume_request(&self) -> Result<(), HostError> {
        self.call();
        Ok(())
    }
    fn define_counter(&self, _name: &str) -> Result<u32, HostError> {
        self.call();
        let mut counters = self.counters.borrow_mut();
        counters.push(0);
        Ok(u32::try_from(counters.len() - 1).unwrap_or(u32::MAX))
    }
    fn increment(&self, counter: u32, by: i64) -> Result<(), HostError> {
        self.call();
        if let Some(c) = self.counters.borrow_mut().get_mut(counter as usize) {
            *c += by;
        }
        Ok(())
    }
    fn send_response(
        &self,
        status: u16,
        _headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        self.call();
        eprintln!(
            "filter answered locally: {status} {}",
            String::from_utf8_lossy(body)
        );
        Ok(())
    }
}

/// One request as `wasm.rs` runs it: headers, then (when it carried a token) the response's
/// status, then its end. `false` if the filter did not let it through.
fn request(worker: &Worker, host: &MemoryHost, ctx: u32) -> bool {
    let flow = worker.on_request_headers(host, ctx);
    if worker.carried_token(ctx) {
        host.call(); // reading the response's `:status`
        worker.on_response_status(host, ctx, 200);
    }
    worker.on_done(ctx);
    flow == Flow::Continue
}

fn main() -> ExitCode {
    let requests: u32 = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 2_000_000,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => {
            eprintln!("usage: hotpath [requests], a positive number");
            return ExitCode::from(2);
        }
    };
    let config = match FilterConfig::parse(CONFIG.as_bytes()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("the bench configuration is refused: {e}");
            return ExitCode::FAILURE;
        }
    };
    let worker = Worker::new(config);
    let host = MemoryHost::default();
    host.now_ms.set(1_800_000_000_000);
    let now_s = i64::try_from(host.now_ms.get() / 1000).unwrap_or(i64::MAX);

    // The first request waits for the token the control plane hands out.
    if worker.on_request_headers(&host, 1) != Flow::Pause || host.dispatched.get() != 1 {
        eprintln!("the first request did not fetch the token");
        return ExitCode::FAILURE;
    }
    let body = serde_json::json!({"access_token": "bench-token", "token_type": "Bearer",
        "expires_at": now_s + 3600, "refresh_at": now_s + 3000});
    let answer = CallResponse {
        status: Some(200),
        body: body.to_string().into_bytes(),
    };
    worker.on_call_response(&host, 1, 1, answer);
    worker.on_done(1);

    // Timed: cache hits. Envoy's clock moves on 1 ms every 10 requests (10,000 requests/s),
    // so the worker's copy is checked against shared data at its usual interval; the tick
    // that flushes counters runs once a simulated second.
    let calls_before = host.calls.get();
    let started = Instant::now();
    let mut passed = 0u32;
    for i in 0..requests {
        if i % 10 == 0 {
            host.now_ms.set(host.now_ms.get() + 1);
        }
        if i % 10_000 == 0 {
            worker.on_tick(&host, 0);
        }
        let ctx = i.wrapping_add(2);
        passed += u32::from(request(&worker, &host, ctx));
    }
    let elapsed = started.elapsed();
    let calls = host.calls.get() - calls_before;

    if passed != requests || *host.authorization.borrow() != "Bearer bench-token" {
        eprintln!(
            "{} of {requests} requests passed with the token (last header {:?})",
            passed,
            host.authorization.borrow()
        );
        return ExitCode::FAILURE;
    }
    if host.dispatched.get() != 1 {
        eprintln!(
            "{} control-plane calls; a cache hit makes none",
            host.dispatched.get()
        );
        return ExitCode::FAILURE;
    }
    let ns = elapsed.as_secs_f64() * 1e9 / f64::from(requests);
    println!(
        "{}",
        serde_json::json!({
            "target": std::env::consts::ARCH,
            "requests": requests,
            "ns_per_request": (ns * 10.0).round() / 10.0,
            "host_calls_per_request": (calls as f64 / f64::from(requests) * 1000.0).round() / 1000.0,
        })
    );
    ExitCode::SUCCESS
}
