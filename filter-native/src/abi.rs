//! The part of Envoy's dynamic modules ABI (`source/extensions/dynamic_modules/abi/abi.h` in
//! envoyproxy/envoy) that the filter uses, written from the header's documented interface: the
//! types, and the callbacks Envoy implements (`envoy_dynamic_module_callback_*`, resolved from
//! the Envoy binary when the module is loaded). The event hooks the module exports
//! (`envoy_dynamic_module_on_*`) are in `hooks.rs`.
//!
//! The header's text at the v1.40.0 tag was not at hand when this was written: the
//! declarations follow the header of envoyproxy/envoy commit 0199da4a (whose version string
//! still read `v0.1.0`), and were checked against Envoy 1.40.0 itself: every symbol the module
//! imports or exports is in its binary, Envoy logs `Dynamic module ABI version v0.2.0
//! matched` for [`ABI_VERSION`], and the end-to-end tests exercise every callback declared
//! here. A C signature cannot be read from a binary, so check these against the header of the
//! Envoy release you build for (the ABI changes with each release).

#![allow(non_camel_case_types, dead_code)]

use std::ffi::c_void;

/// The ABI version this module was written against. Envoy compares it with its own and logs a
/// warning on a mismatch (it loads the module either way).
pub const ABI_VERSION: &std::ffi::CStr = c"v0.2.0";

pub type FilterConfigEnvoyPtr = *mut c_void;
pub type FilterEnvoyPtr = *mut c_void;
pub type SchedulerPtr = *mut c_void;

/// A buffer owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl EnvoyBuffer {
    pub const NULL: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };

    /// The bytes, valid for the event hook in which Envoy handed them over.
    ///
    /// # Safety
    /// `ptr` must point to `length` readable bytes (or be null).
    pub unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.length == 0 {
            &[]
        } else {
            // SAFETY: the caller guarantees Envoy's buffer is valid for this hook.
            unsafe { std::slice::from_raw_parts(self.ptr, self.length) }
        }
    }
}

/// A buffer owned by the module, borrowed by Envoy for one call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub length: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            length: bytes.len(),
        }
    }

    pub const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        length: 0,
    };
}

/// A header owned by the module.
#[repr(C)]
pub struct ModuleHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

impl ModuleHttpHeader {
    pub fn of(key: &str, value: &str) -> ModuleHttpHeader {
        ModuleHttpHeader {
            key_ptr: key.as_ptr(),
            key_length: key.len(),
            value_ptr: value.as_ptr(),
            value_length: value.len(),
        }
    }
}

/// A header owned by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyHttpHeader {
    pub key_ptr: *const u8,
    pub key_length: usize,
    pub value_ptr: *const u8,
    pub value_length: usize,
}

// `envoy_dynamic_module_type_http_header_type`
pub const REQUEST_HEADER: u32 = 0;
pub const RESPONSE_HEADER: u32 = 2;

// `envoy_dynamic_module_type_log_level`
pub const LOG_TRACE: u32 = 0;
pub const LOG_DEBUG: u32 = 1;
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
pub const LOG_CRITICAL: u32 = 5;

// `envoy_dynamic_module_type_http_callout_init_result`
pub const CALLOUT_INIT_SUCCESS: u32 = 0;

// `envoy_dynamic_module_type_http_callout_result`
pub const CALLOUT_SUCCESS: u32 = 0;

// `envoy_dynamic_module_type_metrics_result`
pub const METRICS_SUCCESS: u32 = 0;

// `envoy_dynamic_module_type_metadata_source`
pub const METADATA_ROUTE: u32 = 1;

// `envoy_dynamic_module_type_on_http_filter_request_headers_status` (and the response's,
// which has the same values)
pub const HEADERS_CONTINUE: u32 = 0;
pub const HEADERS_STOP_ITERATION: u32 = 1;
/// What a Proxy-Wasm filter's `Action::Pause` on request headers becomes in Envoy: the body
/// waits with the headers (under the watermark) until `continue_decoding`.
pub const HEADERS_STOP_ALL_ITERATION_AND_WATERMARK: u32 = 4;

// The body and trailer statuses' `Continue`, and `onLocalReply`'s.
pub const CONTINUE: u32 = 0;

extern "C" {
    pub fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    pub fn envoy_dynamic_module_callback_log_enabled(level: u32) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        config: FilterConfigEnvoyPtr,
        name: ModuleBuffer,
        label_names: *const ModuleBuffer,
        label_names_length: usize,
        counter_id: *mut usize,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        config: FilterConfigEnvoyPtr,
        id: usize,
        label_values: *const ModuleBuffer,
        label_values_length: usize,
        value: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
        index: usize,
        optional_size: *mut usize,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    pub fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterEnvoyPtr,
        header_type: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterEnvoyPtr,
        status_code: u32,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );

    pub fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterEnvoyPtr,
        source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        result: *mut EnvoyBuffer,
    ) -> bool;

    pub fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterEnvoyPtr);

    pub fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterEnvoyPtr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;
    pub fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: FilterConfigEnvoyPtr,
        callout_id: *mut u64,
        cluster_name: ModuleBuffer,
        headers: *const ModuleHttpHeader,
        headers_size: usize,
        body: ModuleBuffer,
        timeout_milliseconds: u64,
    ) -> u32;

    pub fn envoy_dynamic_module_callback_http_filter_scheduler_new(
        filter: FilterEnvoyPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_scheduler_delete(scheduler: SchedulerPtr);

    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: FilterConfigEnvoyPtr,
    ) -> SchedulerPtr;
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event_id: u64,
    );
    pub fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(
        scheduler: SchedulerPtr,
    );
}

/// Concatenates the chunks of a callout's body.
///
/// # Safety
/// `chunks` must point to `count` valid buffers (or be null).
pub unsafe fn join_chunks(chunks: *const EnvoyBuffer, count: usize) -> Vec<u8> {
    if chunks.is_null() || count == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `count` buffers at `chunks`, valid for this hook.
    let chunks = unsafe { std::slice::from_raw_parts(chunks, count) };
    let mut body = Vec::new();
    for chunk in chunks {
        // SAFETY: as above.
        body.extend_from_slice(unsafe { chunk.bytes() });
    }
    body
}

/// The `:status` of a callout's answer.
///
/// # Safety
/// `headers` must point to `count` valid headers (or be null).
pub unsafe fn status_of(headers: *const EnvoyHttpHeader, count: usize) -> Option<u16> {
    if headers.is_null() || count == 0 {
        return None;
    }
    // SAFETY: the caller guarantees `count` headers at `headers`, valid for this hook.
    let headers = unsafe { std::slice::from_raw_parts(headers, count) };
    headers.iter().find_map(|h| {
        // SAFETY: as above.
        let key = unsafe {
            EnvoyBuffer {
                ptr: h.key_ptr,
                length: h.key_length,
            }
            .bytes()
        };
        if key != b":status" {
            return None;
        }
        // SAFETY: as above.
        let value = unsafe {
            EnvoyBuffer {
                ptr: h.value_ptr,
                length: h.value_length,
            }
            .bytes()
        };
        std::str::from_utf8(value).ok()?.parse().ok()
    })
}
