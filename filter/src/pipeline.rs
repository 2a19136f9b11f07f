//! The policy pipeline of one request: its `get-authorization-context` and `set-header` steps,
//! run in order. A step that needs a token the cache cannot give stops the pipeline with
//! [`Progress::NeedToken`]; the [`Worker`](crate::worker::Worker) fetches it (once for every
//! request that needs it) and hands the answer back through [`Request::token_ready`].

use crate::cache::{freshness, token_key, Freshness};
use crate::config::{ExistsAction, GetAuthorizationContext, PolicySet, SetHeader, Step};
use crate::host::{CallResponse, Host, HostError, Level};
use crate::stats;
use crate::template::{Segment, Values};
use crate::worker::Worker;
use credmgr_common::error::codes;
use credmgr_common::{ErrorBody, RuntimeToken};
use std::rc::Rc;

/// Where a request's pipeline stands after a step.
#[derive(Debug)]
pub enum Progress {
    /// Every step ran: forward the request.
    Done,
    /// A token must be fetched first.
    NeedToken(TokenNeed),
    /// Answer the request locally with this status and body.
    Respond(u16, ErrorBody),
}

/// A token to fetch from the control plane.
#[derive(Debug, Clone)]
pub struct TokenNeed {
    /// Shared-data key of the token.
    pub key: String,
    pub provider_id: String,
    pub connection_id: String,
}

/// Why no token could be had, as answered to the caller.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: ErrorBody,
}

impl Failure {
    pub fn unavailable(message: String) -> Failure {
        Failure {
            status: 503,
            body: ErrorBody::new(codes::CONTROL_PLANE_UNAVAILABLE, message),
        }
    }
}

/// A context variable: the token it holds (`None`: null, after an ignored error) and the
/// cache key it came from.
struct Var {
    name: String,
    key: String,
    token: Option<Rc<RuntimeToken>>,
}

/// One request's run through its policy set.
pub struct Request {
    policy: Option<Rc<PolicySet>>,
    next_step: usize,
    vars: Vec<Var>,
    /// Tokens written into the request (cache key, token), to recognise a backend's 401.
    pub injected: Vec<(String, Rc<RuntimeToken>)>,
}

impl Request {
    /// A request that runs `policy` (none: it passes untouched).
    pub fn new(policy: Option<Rc<PolicySet>>) -> Request {
        Request {
            policy,
            next_step: 0,
            vars: Vec::new(),
            injected: Vec::new(),
        }
    }

    /// Runs steps until the pipeline is done, needs a token, or must answer.
    pub fn advance(&mut self, host: &impl Host, worker: &Worker) -> Progress {
        let Some(policy) = self.policy.clone() else {
            return Progress::Done;
        };
        while let Some(step) = policy.steps.get(self.next_step) {
            match step {
                Step::GetAuthorizationContext(g) => {
                    if let Some(need) = self.use_cached(host, worker, g) {
                        return Progress::NeedToken(need);
                    }
                }
                Step::SetHeader(s) => match self.set_header(host, s) {
                    Ok(injected) => {
                        if injected {
                            worker.stats.inc(stats::TOKEN_INJECTED);
                        }
                    }
                    Err(e) => {
                        host.log(Level::Error, &format!("set-header {}: {e}", s.name));
                        let body = ErrorBody::new(
                            codes::INTERNAL,
                            "the gateway could not set a request header",
                        );
                        return Progress::Respond(500, body);
                    }
                },
            }
            self.next_step += 1;
        }
        Progress::Done
    }

    /// The token this request waited for arrived, or could not be had; continues the pipeline.
    pub fn token_ready(
        &mut self,
        host: &impl Host,
        worker: &Worker,
        result: Result<Rc<RuntimeToken>, Failure>,
    ) -> Progress {
        let Some(Step::GetAuthorizationContext(step)) = self.current_step() else {
            return Progress::Done;
        };
        let step = step.clone();
        let key = token_key(&step.provider_id, &step.authorization_id, "managed");
        match result {
            Ok(token) => self.vars.push(Var {
                name: step.variable.clone(),
                key,
                token: Some(token),
            }),
            Err(failure) if step.ignore_error => {
                host.log(
                    Level::Info,
                    &format!(
                        "no token for {}/{} ({}); continuing without it (ignore-error)",
                        step.provider_id, step.authorization_id, failure.body.error.code
                    ),
                );
                self.vars.push(Var {
                    name: step.variable.clone(),
                    key,
                    token: None,
                });
            }
            Err(failure) => {
                let body = failure
                    .body
                    .with_detail("provider_id", step.provider_id.as_str())
                    .with_detail("authorization_id", step.authorization_id.as_str());
                host.log(
                    Level::Warn,
                    &format!(
                        "no usable token for {}/{}: {}",
                        step.provider_id, step.authorization_id, body.error.message
                    ),
                );
                return Progress::Respond(failure.status, body);
            }
        }
        self.next_step += 1;
        self.advance(host, worker)
    }

    fn current_step(&self) -> Option<&Step> {
        self.policy.as_ref()?.steps.get(self.next_step)
    }

    /// Sets the step's context variable from the cache; `Some` when a fetch is needed.
    fn use_cached(
        &mut self,
        host: &impl Host,
        worker: &Worker,
        step: &GetAuthorizationContext,
    ) -> Option<TokenNeed> {
        let key = token_key(&step.provider_id, &step.authorization_id, "managed");
        let need = TokenNeed {
            key: key.clone(),
            provider_id: step.provider_id.clone(),
            connection_id: step.authorization_id.clone(),
        };
        let cached = worker.cache.get(host, &key);
        let usable = match &cached {
            Some(token) => freshness(token, host.now_ms(), worker.config.expiry_margin_ms),
            None => Freshness::Expired,
        };
        match (usable, cached) {
            (Freshness::Fresh, Some(token)) => {
                worker.stats.inc(stats::CACHE_HIT);
                self.vars.push(Var {
                    name: step.variable.clone(),
                    key,
                    token: Some(token),
                });
                None
            }
            // Past its refresh point but valid: serve it, and have it fetched again in the
            // background, so no request waits for the refresh.
            (Freshness::Refresh, Some(token)) => {
                worker.stats.inc(stats::CACHE_HIT);
                worker.refresh_in_background(need);
                self.vars.push(Var {
                    name: step.variable.clone(),
                    key,
                    token: Some(token),
                });
                None
            }
            _ => {
                worker.stats.inc(stats::CACHE_MISS);
                Some(need)
            }
        }
    }

    /// Applies a `set-header` step; `Ok(true)` when it wrote an access token.
    fn set_header(&mut self, host: &impl Host, step: &SetHeader) -> Result<bool, HostError> {
        let values = Vars {
            vars: &self.vars,
            host,
        };
        let mut rendered = Vec::with_capacity(step.values.len());
        for t in &step.values {
            match t.render(&values) {
                Some(v) => rendered.push(v),
                // A null context (ignored error): leave the header alone.
                None => return Ok(false),
            }
        }
        match step.exists_action {
            ExistsAction::Delete => return host.remove_request_header(&step.name).map(|()| false),
            ExistsAction::Skip if host.request_header(&step.name)?.is_some() => return Ok(false),
            ExistsAction::Override | ExistsAction::Skip => {
                let mut it = rendered.iter();
                if let Some(first) = it.next() {
                    host.set_request_header(&step.name, first)?;
                }
                it.try_for_each(|v| host.add_request_header(&step.name, v))?;
            }
            ExistsAction::Append => rendered
                .iter()
                .try_for_each(|v| host.add_request_header(&step.name, v))?,
        }
        // Remember which tokens went out, so a 401 from the backend can retire them.
        let mut wrote_token = false;
        for t in &step.values {
            for seg in t.segments() {
                if let Segment::AccessToken(var) = seg {
                    if let Some(v) = self.vars.iter().rev().find(|v| &v.name == var) {
                        if let Some(token) = &v.token {
                            self.injected.push((v.key.clone(), Rc::clone(token)));
                            wrote_token = true;
                        }
                    }
                }
            }
        }
        Ok(wrote_token)
    }
}

/// Reads the control plane's answer: a token, or the failure to report.
pub fn parse_answer(response: &CallResponse) -> Result<RuntimeToken, Failure> {
    match response.status {
        None => Err(Failure::unavailable(
            "the credmgr control plane did not answer (connection failed or timed out)".into(),
        )),
        Some(200) => serde_json::from_slice(&response.body).map_err(|e| {
            Failure::unavailable(format!(
                "the credmgr control plane sent an unreadable token answer: {e}"
            ))
        }),
        Some(status) => {
            let body = serde_json::from_slice::<ErrorBody>(&response.body).unwrap_or_else(|_| {
                // Not the control plane's own answer: Envoy's (no healthy upstream, connect
                // failure) or a proxy's in between. Its first line says what happened.
                let text = String::from_utf8_lossy(&response.body);
                let first: String = text
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .chars()
                    .take(200)
                    .collect();
                ErrorBody::new(
                    codes::CONTROL_PLANE_UNAVAILABLE,
                    format!(
                        "the credmgr control plane could not be reached (HTTP {status}: {first})"
                    ),
                )
            });
            // The caller may see 403 (policy denied) as is; every other failure means the
            // gateway has no usable token for it.
            let status = if status == 403 { 403 } else { 503 };
            Err(Failure { status, body })
        }
    }
}

/// Template values of one request: its context variables and headers.
struct Vars<'a, H> {
    vars: &'a [Var],
    host: &'a H,
}

impl<H> Vars<'_, H> {
    fn get(&self, var: &str) -> Option<&RuntimeToken> {
        self.vars
            .iter()
            .rev()
            .find(|v| v.name == var)
            .and_then(|v| v.token.as_deref())
    }
}

impl<H: Host> Values for Vars<'_, H> {
    fn access_token(&self, var: &str) -> Option<&str> {
        self.get(var).map(|t| t.access_token.as_str())
    }

    fn claim(&self, var: &str, name: &str) -> Option<String> {
        let token = self.get(var)?;
        Some(match token.claims.get(name) {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        })
    }

    fn request_header(&self, name: &str) -> Option<String> {
        self.host.request_header(name).ok().flatten()
    }
}
