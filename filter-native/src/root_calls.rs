//! Calls to the control plane that belong to no request: background refreshes, and calls made
//! again for requests whose dispatching request ended (what a Proxy-Wasm filter makes from its
//! root context).
//!
//! The dynamic modules ABI binds a worker thread's callouts to a request
//! (`http_filter_http_callout`: cancelled when that request ends); the only callout not bound
//! to a request is the filter configuration's (`http_filter_config_http_callout`), which runs
//! on the main thread, reached from a worker through the configuration's scheduler. So a
//! worker hands such a call over here; the main thread makes it; its answer goes to the
//! worker's mailbox. The worker empties its mailbox at the start of its next request, or at
//! once when one of its requests is paused (waiting for a token): each paused request has a
//! scheduler that wakes it on its own thread.

use crate::abi;
use credmgr_filter::host::CallResponse;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// A call a worker asked the main thread to make.
pub struct RootCall {
    pub config_id: u64,
    pub thread: u64,
    pub token: u32,
    pub cluster: String,
    pub headers: Vec<(String, String)>,
    pub timeout_ms: u64,
}

/// An answer waiting in a worker's mailbox.
pub struct Delivery {
    pub config_id: u64,
    pub token: u32,
    pub response: CallResponse,
}

#[derive(Default)]
struct State {
    /// Calls waiting for the main thread, per configuration.
    queued: Vec<RootCall>,
    /// The main thread's callouts in flight: (configuration, Envoy's callout id) → the call.
    in_flight: HashMap<(u64, u64), (u64, u32)>,
    /// Answers per worker thread.
    mailboxes: HashMap<u64, Vec<Delivery>>,
    /// Schedulers of paused requests, per worker thread: any one wakes that thread.
    wakers: HashMap<u64, Vec<(u32, usize)>>,
}

fn state() -> MutexGuard<'static, State> {
    static STATE: OnceLock<Mutex<State>> = OnceLock::new();
    match STATE.get_or_init(Mutex::default).lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// How many answers wait in all mailboxes: a request's start reads only this when none do.
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Queues `call` for the main thread and wakes it through the configuration's scheduler.
pub fn submit(call: RootCall, scheduler: abi::SchedulerPtr) {
    state().queued.push(call);
    // SAFETY: the scheduler lives as long as the configuration, which outlives its filters.
    unsafe { abi::envoy_dynamic_module_callback_http_filter_config_scheduler_commit(scheduler, 0) };
}

/// On the main thread: makes the queued calls of configuration `config_id`.
pub fn dispatch_queued(config_id: u64, config: abi::FilterConfigEnvoyPtr) {
    let calls: Vec<RootCall> = {
        let mut state = state();
        let (mine, others) = std::mem::take(&mut state.queued)
            .into_iter()
            .partition(|c| c.config_id == config_id);
        state.queued = others;
        mine
    };
    for call in calls {
        let headers: Vec<abi::ModuleHttpHeader> = call
            .headers
            .iter()
            .map(|(k, v)| abi::ModuleHttpHeader::of(k, v))
            .collect();
        let mut id = 0u64;
        // SAFETY: every buffer outlives the call; Envoy copies what it keeps.
        let result = unsafe {
            abi::envoy_dynamic_module_callback_http_filter_config_http_callout(
                config,
                &mut id,
                abi::ModuleBuffer::of(call.cluster.as_bytes()),
                headers.as_ptr(),
                headers.len(),
                abi::ModuleBuffer::NULL,
                call.timeout_ms,
            )
        };
        if result == abi::CALLOUT_INIT_SUCCESS {
            state()
                .in_flight
                .insert((config_id, id), (call.thread, call.token));
        } else {
            // Answered as a call the control plane did not answer: the worker retries or fails.
            deliver(
                call.thread,
                Delivery {
                    config_id,
                    token: call.token,
                    response: CallResponse {
                        status: None,
                        body: Vec::new(),
                    },
                },
            );
        }
    }
}

/// On the main thread: the answer to callout `id` of configuration `config_id` arrived.
pub fn complete(config_id: u64, id: u64, response: CallResponse) {
    let Some((thread, token)) = state().in_flight.remove(&(config_id, id)) else {
        return;
    };
    deliver(
        thread,
        Delivery {
            config_id,
            token,
            response,
        },
    );
}

fn deliver(thread: u64, delivery: Delivery) {
    let mut state = state();
    state.mailboxes.entry(thread).or_default().push(delivery);
    WAITING.fetch_add(1, Ordering::Release);
    if let Some((_, scheduler)) = state.wakers.get(&thread).and_then(|w| w.first()) {
        // SAFETY: a waker is deleted only under this lock (`forget_waker`), after its removal.
        unsafe {
            abi::envoy_dynamic_module_callback_http_filter_scheduler_commit(
                *scheduler as abi::SchedulerPtr,
                0,
            )
        };
    }
}

/// The answers waiting for worker thread `thread`, if any.
pub fn take_mail(thread: u64) -> Vec<Delivery> {
    if WAITING.load(Ordering::Acquire) == 0 {
        return Vec::new();
    }
    let mail = state().mailboxes.remove(&thread).unwrap_or_default();
    WAITING.fetch_sub(mail.len(), Ordering::AcqRel);
    mail
}

/// Request `ctx` on `thread`, paused, can be woken through `scheduler`.
pub fn add_waker(thread: u64, ctx: u32, scheduler: abi::SchedulerPtr) {
    state()
        .wakers
        .entry(thread)
        .or_default()
        .push((ctx, scheduler as usize));
}

/// Request `ctx` on `thread` ended: its scheduler, if it had one, is deleted.
pub fn forget_waker(thread: u64, ctx: u32) {
    let mut state = state();
    let Some(wakers) = state.wakers.get_mut(&thread) else {
        return;
    };
    wakers.retain(|(c, scheduler)| {
        if *c == ctx {
            // SAFETY: created by `scheduler_new` for this request, deleted once, under the lock.
            unsafe {
                abi::envoy_dynamic_module_callback_http_filter_scheduler_delete(
                    *scheduler as abi::SchedulerPtr,
                )
            };
            false
        } else {
            true
        }
    });
}
