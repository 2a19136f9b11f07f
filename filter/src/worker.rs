//! One Envoy worker's filter instance: the [`View`] its requests' pipelines use (configuration,
//! token cache, counters, issuers, refusals, refresh queue), and what only the worker does
//! with it: the requests it keeps, the calls to the control plane in flight, and the root
//! context's tick. Envoy's events come in here ([`Worker::on_request_headers`] and the rest);
//! a request's [`Progress`] says what to do with it, decided in one place (`settle`).
//!
//! Requests are kept here by context id, not inside their Envoy contexts, so that one fetch
//! can resume every request that waited for it: a miss makes one call to the control plane
//! per key on this worker, however many requests need that key. Tokens past their refresh
//! point are fetched again from the tick (see [`crate::refresh`]): a call made by the root
//! context is not cancelled when a request ends.

use crate::cache::{freshness, Freshness};
use crate::config::{FilterConfig, PolicySet};
use crate::control_plane::{self, parse_answer, parse_issuers, Need, TokenNeed};
use crate::failure::Failure;
use crate::host::{CallResponse, Host, Level};
use crate::identity::ISSUERS_KEY;
use crate::pipeline::{Answer, Progress, Request};
use crate::refresh;
use crate::refused;
use crate::route;
use crate::stats;
use crate::view::View;
use credmgr_common::error::codes;
use credmgr_common::{ErrorBody, RuntimeToken};
use rustc_hash::FxHashMap as HashMap;
use std::cell::RefCell;
use std::rc::Rc;

/// What Envoy should do with a request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Forward it (or resume it, if it was paused).
    Continue,
    /// Keep it paused: a call to the control plane is in flight.
    Pause,
    /// A local reply was sent; the request goes no further.
    Respond,
}

/// A call to the control plane in flight for one token, or for the trusted issuers.
struct Fetch {
    need: Need,
    call: u32,
    /// The context that made the call; Envoy cancels the call when that context ends.
    dispatcher: u32,
    /// Requests waiting for the answer.
    waiters: Vec<u32>,
    /// The dispatching request ended while others still wait: call again from the root.
    orphaned: bool,
    /// The call was made once more after the control plane did not answer the first.
    retried: bool,
}

/// One worker's filter state.
pub struct Worker {
    /// What the requests' pipelines see: configuration, cache, counters, issuers, refusals,
    /// refresh queue.
    pub view: View,
    requests: RefCell<HashMap<u32, Request>>,
    fetches: RefCell<HashMap<String, Fetch>>,
    calls: RefCell<HashMap<u32, String>>,
}

impl Worker {
    pub fn new(config: FilterConfig) -> Worker {
        Worker {
            view: View::new(config),
            requests: RefCell::default(),
            fetches: RefCell::default(),
            calls: RefCell::default(),
        }
    }

    /// The request's policy set: the one its route's metadata names (when `route_metadata`
    /// is on), else the first rule that matches the request, else the default (none: the
    /// request passes untouched). A name in route metadata that the configuration does not
    /// define is an error: failing closed beats forwarding a request without the credential it
    /// needs. Without `route_metadata` no property is read: that is a host call per request.
    pub fn policy_for_route(&self, host: &impl Host) -> Result<Option<Rc<PolicySet>>, String> {
        route::policy_for(&self.view.config, host)
    }

    /// A request's headers arrived on context `ctx`.
    pub fn on_request_headers(&self, host: &impl Host, ctx: u32) -> Flow {
        match self.policy_for_route(host) {
            Ok(policy) => {
                let mut request = Request::new(policy);
                let progress = request.advance(host, &self.view);
                self.settle(host, ctx, request, progress)
            }
            Err(message) => {
                host.log(Level::Error, &message);
                let body = ErrorBody::new(codes::UNKNOWN_POLICY, message);
                self.settle(host, ctx, Request::new(None), Progress::Respond(500, body))
            }
        }
    }

    /// Whether the response to request `ctx` matters: the request carried a token, which a
    /// 401 would retire. Other responses are not looked at (reading a header is a host call).
    pub fn carried_token(&self, ctx: u32) -> bool {
        self.requests.borrow().contains_key(&ctx)
    }

    /// The backend answered request `ctx` with `status`. A 401 to a request that carried a
    /// token retires that token, so the next request gets a fresh one, and records it, so
    /// that the control plane replaces it first; at most once per key per
    /// `cache.forced_refresh_interval_ms` (a backend that refuses every token would otherwise
    /// cost a provider refresh per request).
    pub fn on_response_status(&self, host: &impl Host, ctx: u32, status: u16) {
        if status != 401 {
            return;
        }
        let injected = match self.requests.borrow().get(&ctx) {
            Some(request) => request.injected.clone(),
            None => return,
        };
        for (ids, token) in injected {
            refused::by_backend(host, &self.view, &ids.cache_key, &token);
        }
    }

    /// Request `ctx` ended. If it had made a call that others wait for, the call dies with
    /// it; the next tick makes it again from the root context.
    pub fn on_done(&self, ctx: u32) {
        self.requests.borrow_mut().remove(&ctx);
        let mut calls = self.calls.borrow_mut();
        self.fetches.borrow_mut().retain(|_, f| {
            f.waiters.retain(|w| *w != ctx);
            if f.dispatcher == ctx {
                f.orphaned = true;
            }
            let keep = !(f.orphaned && f.waiters.is_empty());
            if !keep {
                calls.remove(&f.call);
            }
            keep
        });
    }

    /// Asks for `need` to be fetched again on the next tick.
    pub fn refresh_in_background(&self, need: TokenNeed) {
        self.view.refreshes.ask(need);
    }

    /// The root context's periodic tick: calls again for orphaned fetches, and fetches the
    /// tokens that requests found past their refresh point.
    pub fn on_tick(&self, host: &impl Host, root_ctx: u32) {
        self.view.tick(host);
        self.view.stats.flush(host);
        let orphaned: Vec<String> = self
            .fetches
            .borrow()
            .iter()
            .filter(|(_, f)| f.orphaned)
            .map(|(k, _)| k.clone())
            .collect();
        for key in orphaned {
            let Some(need) = self.fetches.borrow().get(&key).map(|f| f.need.clone()) else {
                continue;
            };
            match control_plane::dispatch(
                host,
                &self.view.config.control_plane,
                &self.view.stats,
                &need,
            ) {
                Ok(call) => {
                    let mut fetches = self.fetches.borrow_mut();
                    if let Some(f) = fetches.get_mut(&key) {
                        let mut calls = self.calls.borrow_mut();
                        calls.remove(&f.call);
                        calls.insert(call, key.clone());
                        f.call = call;
                        f.dispatcher = root_ctx;
                        f.orphaned = false;
                    }
                }
                Err(failure) => {
                    let fetch = self.fetches.borrow_mut().remove(&key);
                    if let Some(fetch) = fetch {
                        self.calls.borrow_mut().remove(&fetch.call);
                        let answer = self.answer_failure(host, &fetch.need, failure);
                        self.resume_waiters(host, root_ctx, fetch.waiters, answer);
                    }
                }
            }
        }

        let due = self.view.refreshes.take();
        for (fetch_key, need) in due {
            if self.fetches.borrow().contains_key(&fetch_key) {
                continue;
            }
            let now = host.now_ms();
            let fresh = self.view.cache.get(host, &need.key, now).is_some_and(|t| {
                freshness(&t, now, self.view.config.expiry_margin_ms) == Freshness::Fresh
            });
            if fresh
                || !refresh::claim(
                    host,
                    &need.location,
                    self.view.config.control_plane.timeout_ms,
                )
            {
                continue;
            }
            self.view.stats.inc(stats::REFRESH_AHEAD);
            // A failure is logged and counted by dispatch; the next request past the refresh
            // point asks again.
            let _ = self.start_fetch(host, Need::Token(need), root_ctx, Vec::new());
        }

        // The trusted issuers, before the first request needs them and again when the
        // control plane says they are due (their keys rotate).
        if self.view.config.uses_jwt
            && !self.fetches.borrow().contains_key(ISSUERS_KEY)
            && self.view.identities.due(host)
            && refresh::claim(host, ISSUERS_KEY, self.view.config.control_plane.timeout_ms)
        {
            let _ = self.start_fetch(host, Need::Issuers(None), root_ctx, Vec::new());
        }
    }

    /// The control plane answered call `call`; `current_ctx` is the context Envoy delivered
    /// the answer to. Stores the token and resumes every request that waited for it.
    pub fn on_call_response(
        &self,
        host: &impl Host,
        current_ctx: u32,
        call: u32,
        response: CallResponse,
    ) {
        let Some(key) = self.calls.borrow_mut().remove(&call) else {
            return;
        };
        if control_plane::worth_retrying(&response) && self.retry(host, current_ctx, &key) {
            return;
        }
        let Some(fetch) = self.fetches.borrow_mut().remove(&key) else {
            return;
        };
        let answer = match &fetch.need {
            Need::Token(need) => match parse_answer(&response, need.caller_token.is_some()) {
                Ok(token) => {
                    self.view.cache.put(host, &need.key, &token);
                    Answer::Token(Ok(Rc::new(token)))
                }
                Err(failure) => {
                    self.view
                        .stats
                        .inc_by_reason(stats::CONTROL_PLANE_FAILURE, &failure.body.error.code);
                    self.answer_failure(host, &fetch.need, failure)
                }
            },
            Need::Issuers(_) => {
                match parse_issuers(&response) {
                    Ok(document) => self.view.identities.store(host, document),
                    Err(failure) => {
                        self.view
                            .stats
                            .inc_by_reason(stats::CONTROL_PLANE_FAILURE, &failure.body.error.code);
                        host.log(
                            Level::Warn,
                            &format!(
                                "cannot get the trusted issuers: {}",
                                failure.body.error.message
                            ),
                        );
                    }
                }
                Answer::Issuers
            }
        };
        self.resume_waiters(host, current_ctx, fetch.waiters, answer);
    }

    /// The control plane did not answer the call for `key`: makes it once more (Envoy's
    /// cluster picks the host again, so a dead replica costs no request), from the context
    /// the answer came to. Whether a new call is on its way.
    fn retry(&self, host: &impl Host, current_ctx: u32, key: &str) -> bool {
        let need = match self.fetches.borrow().get(key) {
            Some(f) if !f.retried => f.need.clone(),
            _ => return false,
        };
        let Ok(call) = control_plane::dispatch(
            host,
            &self.view.config.control_plane,
            &self.view.stats,
            &need,
        ) else {
            return false;
        };
        self.view.stats.inc(stats::CONTROL_PLANE_RETRY);
        let mut fetches = self.fetches.borrow_mut();
        let Some(f) = fetches.get_mut(key) else {
            return false;
        };
        f.call = call;
        f.dispatcher = current_ctx;
        f.retried = true;
        self.calls.borrow_mut().insert(call, key.to_owned());
        true
    }

    /// Hands `result` to each waiting request and resumes those whose pipeline completes.
    /// Host calls act on the effective context, so it is switched to each waiter in turn.
    fn resume_waiters(
        &self,
        host: &impl Host,
        current_ctx: u32,
        waiters: Vec<u32>,
        answer: Answer,
    ) {
        let mut switched = false;
        for waiter in waiters {
            let Some(mut request) = self.requests.borrow_mut().remove(&waiter) else {
                continue;
            };
            if waiter != current_ctx {
                if let Err(e) = host.set_effective_context(waiter) {
                    host.log(Level::Debug, &format!("request {waiter} is gone: {e}"));
                    continue;
                }
                switched = true;
            }
            let progress = request.resume(host, &self.view, answer.clone());
            if self.settle(host, waiter, request, progress) == Flow::Continue {
                if let Err(e) = host.resume_request() {
                    host.log(
                        Level::Error,
                        &format!("cannot resume request {waiter}: {e}"),
                    );
                }
            }
        }
        if switched {
            let _ = host.set_effective_context(current_ctx);
        }
    }

    /// What the requests waiting for a failed call get.
    fn answer_failure(&self, host: &impl Host, need: &Need, failure: Failure) -> Answer {
        match need {
            Need::Token(need) => Answer::Token(self.after_failure(host, need, failure)),
            Need::Issuers(_) => Answer::Issuers,
        }
    }

    /// After a failed fetch: a token another worker cached meanwhile, or one still valid,
    /// beats failing the request, when the control plane could not be asked. A refusal is
    /// final: the caller gets it, and a token cached for a caller now denied stops serving.
    fn after_failure(
        &self,
        host: &impl Host,
        need: &TokenNeed,
        failure: Failure,
    ) -> Result<Rc<RuntimeToken>, Failure> {
        if failure.status == 403 {
            self.view.cache.expire(host, &need.key);
            self.view.denials.remember(host, &need.fetch_key, &failure);
        }
        if !failure.is_unavailable() {
            return Err(failure);
        }
        let key = need.key.as_str();
        let now = host.now_ms();
        match self.view.cache.get(host, key, now) {
            Some(token)
                if freshness(&token, now, self.view.config.expiry_margin_ms)
                    != Freshness::Expired =>
            {
                self.view.stats.inc(stats::STALE_SERVED);
                host.log(
                    Level::Warn,
                    &format!(
                        "token fetch for {key} failed ({}); using the cached token until it expires",
                        failure.body.error.code
                    ),
                );
                Ok(token)
            }
            _ => Err(failure),
        }
    }

    /// Acts on where a request's pipeline stands: forward it, keep it waiting for a token
    /// (joining a fetch in flight, or starting one), or answer it.
    fn settle(&self, host: &impl Host, ctx: u32, request: Request, progress: Progress) -> Flow {
        match progress {
            Progress::Done => {
                if !request.injected.is_empty() {
                    // Kept until the response, to recognise a 401 for the token it carried.
                    self.requests.borrow_mut().insert(ctx, request);
                }
                Flow::Continue
            }
            Progress::Respond(status, body) => {
                self.view
                    .stats
                    .inc_by_reason(stats::REQUEST_REJECTED, &status.to_string());
                let json = body.to_json();
                let headers = crate::failure::reply_headers(status, &body);
                let headers: Vec<(&str, &str)> =
                    headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                if let Err(e) = host.send_response(status, &headers, json.as_bytes()) {
                    host.log(Level::Critical, &format!("cannot send local reply: {e}"));
                }
                Flow::Respond
            }
            Progress::NeedToken(need) => self.wait(host, ctx, request, Need::Token(need)),
            Progress::NeedIssuers(hint) => self.wait(host, ctx, request, Need::Issuers(hint)),
        }
    }

    /// Keeps request `ctx` paused until `need` is fetched (or answers it at once if the call
    /// cannot be made).
    fn wait(&self, host: &impl Host, ctx: u32, mut request: Request, need: Need) -> Flow {
        match self.join_or_fetch(host, ctx, need.clone()) {
            Ok(()) => {
                self.requests.borrow_mut().insert(ctx, request);
                Flow::Pause
            }
            Err(failure) => {
                let answer = self.answer_failure(host, &need, failure);
                let progress = request.resume(host, &self.view, answer);
                self.settle(host, ctx, request, progress)
            }
        }
    }

    fn join_or_fetch(&self, host: &impl Host, ctx: u32, need: Need) -> Result<(), Failure> {
        if let Some(fetch) = self.fetches.borrow_mut().get_mut(need.key()) {
            fetch.waiters.push(ctx);
            return Ok(());
        }
        self.start_fetch(host, need, ctx, vec![ctx])
    }

    /// Calls for `need` from context `dispatcher` and records the fetch with its waiters.
    fn start_fetch(
        &self,
        host: &impl Host,
        need: Need,
        dispatcher: u32,
        waiters: Vec<u32>,
    ) -> Result<(), Failure> {
        // Bounded like the cache: token calls in flight per worker, however many callers miss
        // (the trusted issuers are always fetched).
        if matches!(need, Need::Token(_))
            && self.fetches.borrow().len() >= self.view.config.max_entries as usize
        {
            return Err(Failure::unavailable(
                "the gateway has too many token fetches in flight; try again shortly".into(),
            ));
        }
        let call = control_plane::dispatch(
            host,
            &self.view.config.control_plane,
            &self.view.stats,
            &need,
        )?;
        let key = need.key().to_owned();
        self.calls.borrow_mut().insert(call, key.clone());
        self.fetches.borrow_mut().insert(
            key,
            Fetch {
                need,
                call,
                dispatcher,
                waiters,
                orphaned: false,
                retried: false,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
#[path = "worker_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "worker_jwt_tests.rs"]
mod jwt_tests;

#[cfg(test)]
#[path = "worker_peruser_tests.rs"]
mod peruser_tests;

#[cfg(test)]
#[path = "worker_rules_tests.rs"]
mod rules_tests;

#[cfg(test)]
#[path = "worker_refusal_tests.rs"]
mod refusal_tests;

#[cfg(test)]
#[path = "worker_hotpath_tests.rs"]
mod hotpath_tests;
