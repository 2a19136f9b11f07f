//! The thin glue between Envoy and the filter's logic: the Proxy-Wasm root and HTTP contexts,
//! and [`Host`] implemented over `proxy_wasm::hostcalls`. Nothing here decides anything; it
//! translates host events into calls on the [`Worker`] and its [`Flow`] back into actions.

use crate::config::FilterConfig;
use crate::host::{CallResponse, Host, HostError, Level, SetSharedError};
use crate::worker::{Flow, Worker};
use credmgr_common::error::codes;
use credmgr_common::ErrorBody;
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType, Status};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

proxy_wasm::main! {{
    // A panic aborts the VM and every request on this worker with it; at least say why.
    std::panic::set_hook(Box::new(|info| {
        let _ = hostcalls::log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|id| -> Box<dyn RootContext> { Box::new(Root { id, worker: None }) });
}}

/// Whether this module exports `proxy_on_response_headers`: `make wasm` builds the lean
/// module without it, and tools/wasm-trim then turns the last byte of this mark into `0`.
static RESPONSE_CALLBACK: [u8; 27] = *b"credmgr-response-callback=1";

fn has_response_callback() -> bool {
    // Read through black_box: the compiler must load the byte, not fold the constant.
    std::hint::black_box(&RESPONSE_CALLBACK).last() == Some(&b'1')
}

struct Root {
    id: u32,
    worker: Option<Rc<Worker>>,
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        call: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        in_root(|| {
            deliver(
                self.worker.as_deref(),
                self.id,
                call,
                num_headers,
                body_size,
            )
        });
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                WasmHost.log(
                    Level::Critical,
                    "invalid credmgr filter configuration: the configuration is empty",
                );
                return false;
            }
            Err(status) => {
                WasmHost.log(
                    Level::Critical,
                    &format!("cannot read the filter configuration: {status:?}"),
                );
                return false;
            }
        };
        match FilterConfig::parse(&bytes) {
            Ok(config) if config.retire_on_backend_401 && !has_response_callback() => {
                WasmHost.log(
                    Level::Critical,
                    "invalid credmgr filter configuration: at retire_on_backend_401: this is \
                     the lean module (credmgr_filter_lean.wasm), which has no response \
                     callback; set retire_on_backend_401 to false, or load credmgr_filter.wasm",
                );
                false
            }
            Ok(config) => {
                WasmHost.log(
                    Level::Info,
                    &format!(
                        "filter configured with {} policy set(s), {} request rule(s), route \
                         metadata {}, control plane cluster {}",
                        config.policies.len(),
                        config.rules.len(),
                        if config.route_metadata {
                            "read"
                        } else {
                            "not read"
                        },
                        config.control_plane.cluster
                    ),
                );
                let tick = Duration::from_millis(config.refresh_tick_ms);
                if let Err(status) = hostcalls::set_tick_period(tick) {
                    WasmHost.log(
                        Level::Warn,
                        &format!("no background refresh: set_tick_period: {status:?}"),
                    );
                }
                self.worker = Some(Rc::new(Worker::new(config)));
                true
            }
            Err(e) => {
                // Returning false makes Envoy reject the configuration; this line says why.
                WasmHost.log(Level::Critical, &e.to_string());
                false
            }
        }
    }

    fn on_tick(&mut self) {
        if let Some(worker) = &self.worker {
            in_root(|| worker.on_tick(&WasmHost, self.id));
        }
    }

    fn create_http_context(&self, id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id,
            worker: self.worker.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Hands the answer to call `call`, delivered to context `id` (root or request), to the worker.
fn deliver(worker: Option<&Worker>, id: u32, call: u32, num_headers: usize, body_size: usize) {
    if let Some(worker) = worker {
        worker.on_call_response(&WasmHost, id, call, call_response(num_headers, body_size));
    }
}

/// Reads the answer to an HTTP call. Envoy reports a failed call (connect error, timeout,
/// reset) with no headers at all.
fn call_response(num_headers: usize, body_size: usize) -> CallResponse {
    let status = if num_headers == 0 {
        None
    } else {
        hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u16>().ok())
    };
    let body = if body_size == 0 {
        Vec::new()
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    CallResponse { status, body }
}

struct Http {
    id: u32,
    worker: Option<Rc<Worker>>,
}

impl Context for Http {
    fn on_http_call_response(
        &mut self,
        call: u32,
        num_headers: usize,
        body_size: usize,
        _trailers: usize,
    ) {
        deliver(
            self.worker.as_deref(),
            self.id,
            call,
            num_headers,
            body_size,
        );
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(worker) = &self.worker else {
            // Envoy does not start a filter whose configuration failed; this is belt and braces.
            let body =
                ErrorBody::new(codes::INTERNAL, "the credmgr filter is not configured").to_json();
            let _ = WasmHost.send_response(
                503,
                &[("content-type", "application/json")],
                body.as_bytes(),
            );
            return Action::Pause;
        };
        match worker.on_request_headers(&WasmHost, self.id) {
            Flow::Continue => Action::Continue,
            Flow::Pause | Flow::Respond => Action::Pause,
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Without 401 retirement no request is kept and the response is not looked at (the
        // lean module, `credmgr_filter_lean.wasm`, does not even export this callback).
        if let Some(worker) = self.worker.as_ref().filter(|w| w.carried_token(self.id)) {
            let status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u16>().ok());
            if let Some(status) = status {
                worker.on_response_status(&WasmHost, self.id, status);
            }
        }
        Action::Continue
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if let Some(worker) = &self.worker {
            worker.on_done(self.id);
        }
    }
}

/// [`Host`] over the Proxy-Wasm ABI of the current context.
struct WasmHost;

thread_local! {
    /// Whether the callback running is the root context's (a tick, a call answered there):
    /// there are no request headers to read then, and the SDK panics on the status Envoy
    /// answers such a read, which would take the VM down with every request after it.
    static IN_ROOT: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as a root context's callback (see [`IN_ROOT`]).
fn in_root<T>(f: impl FnOnce() -> T) -> T {
    IN_ROOT.with(|r| r.set(true));
    let out = f();
    IN_ROOT.with(|r| r.set(false));
    out
}

fn host_err(call: &str, status: Status) -> HostError {
    HostError(format!("{call}: {status:?}"))
}

impl Host for WasmHost {
    fn now_ms(&self) -> u64 {
        let now = hostcalls::get_current_time().unwrap_or_else(|_| SystemTime::now());
        now.duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
            Level::Critical => LogLevel::Critical,
        };
        let _ = hostcalls::log(level, message);
    }

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        hostcalls::get_shared_data(key).map_err(|s| host_err("get_shared_data", s))
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError> {
        match hostcalls::set_shared_data(key, Some(value), cas) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetSharedError::CasMismatch),
            Err(s) => Err(SetSharedError::Host(host_err("set_shared_data", s))),
        }
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        hostcalls::dispatch_http_call(
            cluster,
            headers.to_vec(),
            None,
            vec![],
            Duration::from_millis(timeout_ms),
        )
        .map_err(|s| host_err("dispatch_http_call", s))
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        hostcalls::get_property(path.to_vec()).map_err(|s| host_err("get_property", s))
    }

    fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
        if IN_ROOT.with(Cell::get) {
            return Ok(None);
        }
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .map_err(|s| host_err("get_header", s))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            .map_err(|s| host_err("set_header", s))
    }

    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
            .map_err(|s| host_err("add_header", s))
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
            .map_err(|s| host_err("remove_header", s))
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        hostcalls::set_effective_context(context_id)
            .map_err(|s| host_err("set_effective_context", s))
    }

    fn resume_request(&self) -> Result<(), HostError> {
        hostcalls::resume_http_request().map_err(|s| host_err("resume_http_request", s))
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        hostcalls::define_metric(MetricType::Counter, name)
            .map_err(|s| host_err("define_metric", s))
    }

    fn increment(&self, counter: u32, by: i64) -> Result<(), HostError> {
        hostcalls::increment_metric(counter, by).map_err(|s| host_err("increment_metric", s))
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        hostcalls::send_http_response(u32::from(status), headers.to_vec(), Some(body))
            .map_err(|s| host_err("send_http_response", s))
    }
}
