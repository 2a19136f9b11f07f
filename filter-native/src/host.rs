//! [`Host`] over the dynamic modules ABI, and what one worker thread keeps to implement it:
//! its requests' Envoy pointers by context id (the filter's logic names requests by id, as
//! Proxy-Wasm does), its callouts in flight, the context host calls act on, and its
//! [`Worker`] per configuration. A module's hooks for one request all run on that request's
//! worker thread, so this state is thread-local and needs no lock; only the token cache
//! (`shared.rs`) and the calls made by the main thread (`root_calls.rs`) are shared.

use crate::abi::{self, ModuleBuffer, ModuleHttpHeader};
use crate::config::NativeConfig;
use crate::root_calls::{self, RootCall};
use crate::shared;
use credmgr_filter::host::{Host, HostError, Level, SetSharedError};
use credmgr_filter::worker::Worker;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Hashes the small integer keys of a thread's maps by one multiplication (Fibonacci hashing):
/// they are context and configuration ids Envoy never chooses, so SipHash's protection
/// against chosen keys buys nothing, and it cost hundreds of instructions per request.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// The context id of a worker's own work, bound to no request (Proxy-Wasm's root context).
pub const ROOT: u32 = 0;

/// One worker thread's state.
pub struct Thread {
    /// This thread, for the main thread's answers (`root_calls`).
    pub key: u64,
    /// Per configuration id: the worker, its configuration, its next tick (ms since the epoch).
    pub workers: IdMap<u64, (Rc<Worker>, *const NativeConfig, u64)>,
    filters: IdMap<u32, abi::FilterEnvoyPtr>,
    next_ctx: u32,
    /// (context, Envoy's callout id) → the call's token, as the worker knows it.
    calls: IdMap<(u32, u64), u32>,
    next_token: u32,
    /// The context host calls act on, and its request (null for the root or an ended one).
    effective: (u32, abi::FilterEnvoyPtr),
}

thread_local! {
    pub static THREAD: RefCell<Thread> = RefCell::new(Thread::new());
}

impl Thread {
    fn new() -> Thread {
        static KEYS: AtomicU64 = AtomicU64::new(1);
        Thread {
            key: KEYS.fetch_add(1, Ordering::Relaxed),
            workers: IdMap::default(),
            filters: IdMap::default(),
            next_ctx: ROOT,
            calls: IdMap::default(),
            next_token: 0,
            effective: (ROOT, std::ptr::null_mut()),
        }
    }

    /// A new request: its context id.
    pub fn register(&mut self, filter: abi::FilterEnvoyPtr) -> u32 {
        self.next_ctx = self.next_ctx.wrapping_add(1);
        if self.next_ctx == ROOT {
            self.next_ctx = 1;
        }
        self.filters.insert(self.next_ctx, filter);
        self.next_ctx
    }

    /// Request `ctx` ended; whether it had a callout in flight (which Envoy cancels with it).
    pub fn unregister(&mut self, ctx: u32) -> bool {
        self.filters.remove(&ctx);
        if self.effective.0 == ctx {
            self.effective = (ctx, std::ptr::null_mut());
        }
        let before = self.calls.len();
        self.calls.retain(|(c, _), _| *c != ctx);
        self.calls.len() != before
    }

    /// The token of the callout `id` that request `ctx` made.
    pub fn take_call(&mut self, ctx: u32, id: u64) -> Option<u32> {
        self.calls.remove(&(ctx, id))
    }
}

/// Makes `ctx` the context the next host calls act on.
pub fn set_effective(ctx: u32) {
    THREAD.with(|t| {
        let mut t = t.borrow_mut();
        let filter = t.filters.get(&ctx).copied().unwrap_or(std::ptr::null_mut());
        t.effective = (ctx, filter);
    });
}

/// Makes request `ctx`, whose Envoy filter the caller holds, the effective context.
pub fn set_effective_request(ctx: u32, filter: abi::FilterEnvoyPtr) {
    THREAD.with(|t| t.borrow_mut().effective = (ctx, filter));
}

fn effective_filter() -> Result<(u32, abi::FilterEnvoyPtr), HostError> {
    let (ctx, filter) = THREAD.with(|t| t.borrow().effective);
    if filter.is_null() {
        return Err(HostError(format!("context {ctx} has no request")));
    }
    Ok((ctx, filter))
}

/// [`Host`] for one configuration, on the current worker thread.
pub struct NativeHost<'a> {
    pub config: &'a NativeConfig,
}

impl Host for NativeHost<'_> {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Trace => abi::LOG_TRACE,
            Level::Debug => abi::LOG_DEBUG,
            Level::Info => abi::LOG_INFO,
            Level::Warn => abi::LOG_WARN,
            Level::Error => abi::LOG_ERROR,
            Level::Critical => abi::LOG_CRITICAL,
        };
        log(level, message);
    }

    fn get_shared(&self, key: &str) -> Result<(Option<Vec<u8>>, Option<u32>), HostError> {
        Ok(shared::get(key))
    }

    fn set_shared(&self, key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError> {
        shared::set(key, value, cas)
    }

    fn dispatch_http_call(
        &self,
        cluster: &str,
        headers: &[(&str, &str)],
        timeout_ms: u64,
    ) -> Result<u32, HostError> {
        let (effective, key, token) = THREAD.with(|t| {
            let mut t = t.borrow_mut();
            t.next_token = t.next_token.wrapping_add(1);
            (t.effective.0, t.key, t.next_token)
        });
        if effective == ROOT {
            root_calls::submit(
                RootCall {
                    config_id: self.config.id,
                    thread: key,
                    token,
                    cluster: cluster.to_owned(),
                    headers: headers
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                    timeout_ms,
                },
                self.config.scheduler,
            );
            return Ok(token);
        }
        let (ctx, filter) = effective_filter()?;
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader::of(k, v))
            .collect();
        let mut id = 0u64;
        // SAFETY: `filter` is a live request of this thread; the buffers outlive the call.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_http_callout(
                filter,
                &mut id,
                ModuleBuffer::of(cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::NULL,
                timeout_ms,
            )
        };
        if result != abi::CALLOUT_INIT_SUCCESS {
            return Err(HostError(format!("http_callout: init result {result}")));
        }
        THREAD.with(|t| t.borrow_mut().calls.insert((ctx, id), token));
        Ok(token)
    }

    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
        // The one property the filter reads: a key of the route's filter metadata.
        let [_, "route_metadata", "filter_metadata", namespace, key] = path else {
            return Err(HostError(format!(
                "property {path:?} is not available natively"
            )));
        };
        let (_, filter) = effective_filter()?;
        let mut value = abi::EnvoyBuffer::NULL;
        // SAFETY: `filter` is a live request of this thread; Envoy's buffer is copied at once.
        let found = unsafe {
            abi::envoy_dynamic_module_callback_http_get_metadata_string(
                filter,
                abi::METADATA_ROUTE,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                &mut value,
            )
        };
        // SAFETY: as above.
        Ok(found.then(|| unsafe { value.bytes() }.to_vec()))
    }

    fn request_header(&self, name: &str) -> Result<Option<String>, HostError> {
        let (_, filter) = effective_filter()?;
        Ok(header(filter, abi::REQUEST_HEADER, name))
    }

    fn set_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        let (_, filter) = effective_filter()?;
        // SAFETY: `filter` is a live request of this thread; the buffers outlive the call.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        };
        ok.then_some(())
            .ok_or_else(|| HostError("set_header failed".to_owned()))
    }

    fn add_request_header(&self, name: &str, value: &str) -> Result<(), HostError> {
        let (_, filter) = effective_filter()?;
        // SAFETY: as in `set_request_header`.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_add_header(
                filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value.as_bytes()),
            )
        };
        ok.then_some(())
            .ok_or_else(|| HostError("add_header failed".to_owned()))
    }

    fn remove_request_header(&self, name: &str) -> Result<(), HostError> {
        let (_, filter) = effective_filter()?;
        // SAFETY: as in `set_request_header`; a null value removes the header.
        let ok = unsafe {
            abi::envoy_dynamic_module_callback_http_set_header(
                filter,
                abi::REQUEST_HEADER,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::NULL,
            )
        };
        ok.then_some(())
            .ok_or_else(|| HostError("remove header failed".to_owned()))
    }

    fn set_effective_context(&self, context_id: u32) -> Result<(), HostError> {
        set_effective(context_id);
        Ok(())
    }

    fn resume_request(&self) -> Result<(), HostError> {
        let (_, filter) = effective_filter()?;
        // SAFETY: `filter` is a live request of this thread.
        unsafe { abi::envoy_dynamic_module_callback_http_filter_continue_decoding(filter) };
        Ok(())
    }

    fn define_counter(&self, name: &str) -> Result<u32, HostError> {
        self.config
            .counters
            .iter()
            .position(|(n, _)| n == name)
            .and_then(|i| u32::try_from(i).ok())
            .ok_or_else(|| HostError(format!("counter {name} is not defined natively")))
    }

    fn increment(&self, counter: u32, by: i64) -> Result<(), HostError> {
        let Some((_, id)) = self.config.counters.get(counter as usize) else {
            return Err(HostError(format!("no counter {counter}")));
        };
        // SAFETY: the configuration outlives its filters; Envoy's counters are atomic.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_increment_counter(
                self.config.envoy,
                *id,
                std::ptr::null(),
                0,
                u64::try_from(by).unwrap_or(0),
            )
        };
        (result == abi::METRICS_SUCCESS)
            .then_some(())
            .ok_or_else(|| HostError(format!("increment_counter: {result}")))
    }

    fn send_response(
        &self,
        status: u16,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<(), HostError> {
        let (_, filter) = effective_filter()?;
        let headers: Vec<ModuleHttpHeader> = headers
            .iter()
            .map(|(k, v)| ModuleHttpHeader::of(k, v))
            .collect();
        // SAFETY: `filter` is a live request of this thread; the buffers outlive the call.
        unsafe {
            abi::envoy_dynamic_module_callback_http_send_response(
                filter,
                u32::from(status),
                headers.as_ptr(),
                headers.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(b"credmgr"),
            )
        };
        Ok(())
    }
}

/// The first value of a header of `filter`'s request or response.
pub fn header(filter: abi::FilterEnvoyPtr, kind: u32, name: &str) -> Option<String> {
    let mut value = abi::EnvoyBuffer::NULL;
    let mut count = 0usize;
    // SAFETY: `filter` is a live request of this thread; Envoy's buffer is copied at once.
    let ok = unsafe {
        abi::envoy_dynamic_module_callback_http_get_header(
            filter,
            kind,
            ModuleBuffer::of(name.as_bytes()),
            &mut value,
            0,
            &mut count,
        )
    };
    if !ok || count == 0 {
        return None;
    }
    // SAFETY: as above.
    Some(String::from_utf8_lossy(unsafe { value.bytes() }).into_owned())
}

/// Logs under Envoy's `dynamic_modules` logger.
pub fn log(level: u32, message: &str) {
    // SAFETY: the message outlives the call.
    unsafe { abi::envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) };
}
