//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), each a thin translation into a
//! call on the thread's [`Worker`], as `filter/src/wasm.rs` is for Proxy-Wasm. Nothing here
//! decides anything.
//!
//! Envoy may call a hook from inside a callback the module made (a local reply sent for one
//! request runs that request's response hooks at once). The worker's state is borrowed while it
//! works, so such a nested event is queued and handled as soon as the outer one returns
//! ([`guarded`]).

use crate::abi::{self, EnvoyBuffer, EnvoyHttpHeader, FilterConfigEnvoyPtr, FilterEnvoyPtr};
use crate::config::NativeConfig;
use crate::host::{self, set_effective, set_effective_request, NativeHost, ROOT, THREAD};
use crate::root_calls;
use credmgr_common::error::codes;
use credmgr_common::ErrorBody;
use credmgr_filter::config::FilterConfig;
use credmgr_filter::host::{CallResponse, Host};
use credmgr_filter::worker::{Flow, Worker};
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::{c_char, c_void};
use std::rc::Rc;

/// One request's filter, as the module keeps it.
struct Filter {
    ctx: u32,
    config: *const NativeConfig,
    envoy: FilterEnvoyPtr,
    /// A scheduler that wakes this request's thread for the main thread's answers, made when
    /// the request is paused.
    waker: Cell<bool>,
}

thread_local! {
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static DEFERRED: RefCell<VecDeque<Box<dyn FnOnce()>>> = RefCell::new(VecDeque::new());
}

/// Runs `event` now, or after the event being handled on this thread if there is one (only
/// then is it boxed: the common case allocates nothing).
fn guarded(event: impl FnOnce() + 'static) {
    if BUSY.with(Cell::get) {
        DEFERRED.with(|d| d.borrow_mut().push_back(Box::new(event)));
        return;
    }
    exclusive(event);
}

/// Runs `event` with this thread marked busy, then the events that arrived meanwhile.
fn exclusive<R>(event: impl FnOnce() -> R) -> R {
    BUSY.with(|b| b.set(true));
    let result = event();
    while let Some(next) = DEFERRED.with(|d| d.borrow_mut().pop_front()) {
        next();
    }
    BUSY.with(|b| b.set(false));
    result
}

/// This thread's worker for `config`, made on its first request.
fn worker_for(config: &NativeConfig) -> Option<Rc<Worker>> {
    if let Some((worker, _, _)) = THREAD.with(|t| t.borrow().workers.get(&config.id).cloned()) {
        return Some(worker);
    }
    let parsed = FilterConfig::parse(&config.json).ok()?;
    let worker = Rc::new(Worker::new(parsed));
    THREAD.with(|t| {
        t.borrow_mut().workers.insert(
            config.id,
            (Rc::clone(&worker), config as *const NativeConfig, 0),
        )
    });
    Some(worker)
}

/// Hands this thread's answers from the main thread to their workers.
fn deliver_mail() {
    let key = THREAD.with(|t| t.borrow().key);
    for delivery in root_calls::take_mail(key) {
        let found = THREAD.with(|t| t.borrow().workers.get(&delivery.config_id).cloned());
        let Some((worker, config, _)) = found else {
            continue;
        };
        // SAFETY: a configuration outlives the callouts made for it (Envoy cancels them first).
        let host = NativeHost {
            config: unsafe { &*config },
        };
        set_effective(ROOT);
        worker.on_call_response(&host, ROOT, delivery.token, delivery.response);
        worker.view.stats.flush(&host);
    }
}

/// The worker's tick (background refreshes, calls made again, the trusted issuers), run when
/// a request starts after its period: Envoy gives a module no timer on its worker threads.
fn tick_if_due(worker: &Worker, host: &NativeHost) {
    let now = host.now_ms();
    let due = THREAD.with(|t| {
        let mut t = t.borrow_mut();
        match t.workers.get_mut(&host.config.id) {
            Some(entry) if entry.2 <= now => {
                entry.2 = now.saturating_add(host.config.tick_ms);
                true
            }
            _ => false,
        }
    });
    if due {
        set_effective(ROOT);
        worker.on_tick(host, ROOT);
    }
}

fn request_headers(filter: &Filter) -> Flow {
    // SAFETY: Envoy keeps a configuration alive as long as its filters.
    let config = unsafe { &*filter.config };
    let host = NativeHost { config };
    deliver_mail();
    let Some(worker) = worker_for(config) else {
        set_effective_request(filter.ctx, filter.envoy);
        let body =
            ErrorBody::new(codes::INTERNAL, "the credmgr filter is not configured").to_json();
        let _ = host.send_response(
            503,
            &[("content-type", "application/json")],
            body.as_bytes(),
        );
        return Flow::Respond;
    };
    tick_if_due(&worker, &host);
    set_effective_request(filter.ctx, filter.envoy);
    let flow = worker.on_request_headers(&host, filter.ctx);
    worker.view.stats.flush(&host);
    if flow == Flow::Pause && !filter.waker.get() {
        // SAFETY: `filter.envoy` is this live request; the scheduler is deleted when it ends.
        let scheduler =
            unsafe { abi::envoy_dynamic_module_callback_http_filter_scheduler_new(filter.envoy) };
        if !scheduler.is_null() {
            let key = THREAD.with(|t| t.borrow().key);
            root_calls::add_waker(key, filter.ctx, scheduler);
            filter.waker.set(true);
        }
    }
    flow
}

/// # Safety
/// Called by Envoy once, when it loads the module.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    abi::ABI_VERSION.as_ptr()
}

/// # Safety
/// Called by Envoy on the main thread with buffers valid for the call.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    envoy: FilterConfigEnvoyPtr,
    _name: EnvoyBuffer,
    config: EnvoyBuffer,
) -> *const c_void {
    // SAFETY: Envoy's buffer is valid for this hook; `NativeConfig::new` copies it.
    let json = unsafe { config.bytes() };
    match NativeConfig::new(envoy, json) {
        Ok(config) => {
            host::log(abi::LOG_INFO, &config.describe());
            Box::into_raw(Box::new(config)) as *const c_void
        }
        Err(message) => {
            // Envoy refuses the configuration when this returns null; the log line says why.
            host::log(abi::LOG_CRITICAL, &message);
            std::ptr::null()
        }
    }
}

/// # Safety
/// `config` is a pointer returned by `on_http_filter_config_new`, destroyed once.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    if !config.is_null() {
        // SAFETY: made by `Box::into_raw` in `on_http_filter_config_new`.
        drop(unsafe { Box::from_raw(config as *mut NativeConfig) });
    }
}

/// Per-route configuration is not supported: a route chooses its policy set through its
/// metadata (`filter_metadata.credmgr.policy`), as with the Wasm filter.
///
/// # Safety
/// Called by Envoy on the main thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    host::log(
        abi::LOG_CRITICAL,
        "the credmgr filter takes no per-route configuration: name a policy set in the route's \
         metadata (filter_metadata.credmgr.policy)",
    );
    std::ptr::null()
}

/// # Safety
/// Never given a pointer: `per_route_config_new` makes none.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

/// # Safety
/// `config` is a live configuration made by `on_http_filter_config_new`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    envoy: FilterEnvoyPtr,
) -> *const c_void {
    let ctx = THREAD.with(|t| t.borrow_mut().register(envoy));
    Box::into_raw(Box::new(Filter {
        ctx,
        config: config as *const NativeConfig,
        envoy,
        waker: Cell::new(false),
    })) as *const c_void
}

/// # Safety
/// `filter` is a live filter made by `on_http_filter_new`, on its thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    _envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    let filter = filter as *const Filter;
    if BUSY.with(Cell::get) {
        // Nested in another event (not expected for a new request): decided right after it.
        guarded(move || {
            // SAFETY: the filter lives until `on_http_filter_destroy`, which is also queued.
            let filter = unsafe { &*filter };
            if request_headers(filter) == Flow::Continue {
                // SAFETY: as above.
                unsafe {
                    abi::envoy_dynamic_module_callback_http_filter_continue_decoding(filter.envoy)
                };
            }
        });
        return abi::HEADERS_STOP_ALL_ITERATION_AND_WATERMARK;
    }
    // SAFETY: as above.
    let flow = exclusive(|| request_headers(unsafe { &*filter }));
    match flow {
        Flow::Continue => abi::HEADERS_CONTINUE,
        Flow::Respond => abi::HEADERS_STOP_ITERATION,
        Flow::Pause => abi::HEADERS_STOP_ALL_ITERATION_AND_WATERMARK,
    }
}

/// # Safety
/// As `on_http_filter_request_headers`.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterEnvoyPtr,
    filter: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    // SAFETY: live until `on_http_filter_destroy`.
    let f = unsafe { &*(filter as *const Filter) };
    let (ctx, config) = (f.ctx, f.config);
    let carried = THREAD
        .with(|t| {
            t.borrow()
                .workers
                // SAFETY: the configuration outlives its filters.
                .get(&unsafe { &*config }.id)
                .map(|(w, _, _)| Rc::clone(w))
        })
        .filter(|w| w.carried_token(ctx));
    let Some(worker) = carried else {
        return abi::HEADERS_CONTINUE;
    };
    let status = host::header(envoy, abi::RESPONSE_HEADER, ":status").and_then(|s| s.parse().ok());
    if let Some(status) = status {
        guarded(move || {
            // SAFETY: the configuration outlives its filters.
            let host = NativeHost {
                config: unsafe { &*config },
            };
            set_effective(ctx);
            worker.on_response_status(&host, ctx, status);
            worker.view.stats.flush(&host);
        });
    }
    abi::HEADERS_CONTINUE
}

/// # Safety
/// `filter` was made by `on_http_filter_new`; Envoy destroys it once, on its thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_destroy(filter: *const c_void) {
    let filter = filter as *mut Filter;
    guarded(move || {
        // SAFETY: made by `Box::into_raw` in `on_http_filter_new`, freed here once.
        let filter = unsafe { Box::from_raw(filter) };
        // SAFETY: the configuration outlives its filters.
        let config = unsafe { &*filter.config };
        let had_call = THREAD.with(|t| t.borrow_mut().unregister(filter.ctx));
        if filter.waker.get() {
            let key = THREAD.with(|t| t.borrow().key);
            root_calls::forget_waker(key, filter.ctx);
        }
        let worker = THREAD.with(|t| {
            t.borrow()
                .workers
                .get(&config.id)
                .map(|(w, _, _)| Rc::clone(w))
        });
        if let Some(worker) = worker {
            worker.on_done(filter.ctx);
            if had_call {
                // Its call died with it: others waiting for the same token get it called again
                // now, from the main thread, rather than at the next request's tick.
                let host = NativeHost { config };
                set_effective(ROOT);
                worker.on_tick(&host, ROOT);
            }
        }
    });
}

/// # Safety
/// As `on_http_filter_request_headers`; the headers and chunks are valid for the call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    _envoy: FilterEnvoyPtr,
    filter: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: live until `on_http_filter_destroy`; Envoy's buffers are copied at once.
    let f = unsafe { &*(filter as *const Filter) };
    let response =
        unsafe { response(result, headers, headers_size, body_chunks, body_chunks_size) };
    let (ctx, config) = (f.ctx, f.config);
    guarded(move || {
        let Some(token) = THREAD.with(|t| t.borrow_mut().take_call(ctx, callout_id)) else {
            return;
        };
        // SAFETY: the configuration outlives its filters.
        let config = unsafe { &*config };
        let Some(worker) = worker_for(config) else {
            return;
        };
        let host = NativeHost { config };
        set_effective(ctx);
        worker.on_call_response(&host, ctx, token, response);
        worker.view.stats.flush(&host);
    });
}

/// Envoy reports a failed callout (reset, overflow) by its result, with no headers.
///
/// # Safety
/// The pointers are Envoy's, valid for the hook.
unsafe fn response(
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) -> CallResponse {
    if result != abi::CALLOUT_SUCCESS {
        return CallResponse {
            status: None,
            body: Vec::new(),
        };
    }
    CallResponse {
        // SAFETY: the caller's guarantee.
        status: unsafe { abi::status_of(headers, headers_size) },
        // SAFETY: the caller's guarantee.
        body: unsafe { abi::join_chunks(body_chunks, body_chunks_size) },
    }
}

/// A paused request's scheduler woke this thread: answers from the main thread are waiting.
///
/// # Safety
/// Called by Envoy on the request's thread.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterEnvoyPtr,
    _filter: *const c_void,
    _event_id: u64,
) {
    guarded(deliver_mail);
}

/// The main thread's turn: make the calls workers queued for configuration `config`.
///
/// # Safety
/// Called by Envoy on the main thread with a live configuration.
#[no_mangle]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    _event_id: u64,
) {
    // SAFETY: a live configuration made by `on_http_filter_config_new`.
    let config = unsafe { &*(config as *const NativeConfig) };
    root_calls::dispatch_queued(config.id, envoy);
}

/// # Safety
/// Called by Envoy on the main thread; the headers and chunks are valid for the call.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    _envoy: FilterConfigEnvoyPtr,
    config: *const c_void,
    callout_id: u64,
    result: u32,
    headers: *const EnvoyHttpHeader,
    headers_size: usize,
    body_chunks: *const EnvoyBuffer,
    body_chunks_size: usize,
) {
    // SAFETY: a live configuration; Envoy's buffers are copied at once.
    let config = unsafe { &*(config as *const NativeConfig) };
    let response =
        unsafe { response(result, headers, headers_size, body_chunks, body_chunks_size) };
    root_calls::complete(config.id, callout_id, response);
}
