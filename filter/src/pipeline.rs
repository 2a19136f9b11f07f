//! The policy pipeline of one request: `get-authorization-context` and `set-header` steps run
//! in order. A step that must wait for the control plane leaves a [`Pending`] record keyed by
//! its call token; the answer resumes the pipeline where it stopped. Whether the request
//! continues, waits or is answered locally is decided in one place: the [`Flow`] returned.

use crate::cache::{freshness, token_key, Freshness, TokenCache};
use crate::config::{
    ExistsAction, FilterConfig, GetAuthorizationContext, PolicySet, SetHeader, Step,
};
use crate::host::{CallResponse, Host, HostError, Level};
use crate::template::Values;
use credmgr_common::error::codes;
use credmgr_common::{ErrorBody, RuntimeToken};
use std::rc::Rc;

/// What Envoy should do with the request now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Forward it (or resume it, if it was paused).
    Continue,
    /// Keep it paused: a call to the control plane is in flight.
    Pause,
    /// A local reply was sent; the request goes no further.
    Respond,
}

/// State shared by every request on one worker.
pub struct Worker {
    pub config: Rc<FilterConfig>,
    pub cache: TokenCache,
}

/// Where a route names its policy set: `filter_metadata.credmgr.policy` in its metadata.
const ROUTE_POLICY: [&str; 5] = [
    "xds",
    "route_metadata",
    "filter_metadata",
    "credmgr",
    "policy",
];

impl Worker {
    /// The policy set of the request's route: the one its metadata names, else the default
    /// (none: the request passes untouched). A name the configuration does not define is an
    /// error: failing closed beats forwarding a request without the credential it needs.
    pub fn policy_for_route(&self, host: &impl Host) -> Result<Option<Rc<PolicySet>>, String> {
        let named = match host.property(&ROUTE_POLICY) {
            Ok(v) => v,
            Err(e) => {
                host.log(
                    Level::Warn,
                    &format!("cannot read the route's metadata: {e}"),
                );
                None
            }
        };
        let Some(name) = named else {
            return Ok(self.config.default_policy.clone());
        };
        let name = String::from_utf8_lossy(&name);
        match self.config.policies.get(name.as_ref()) {
            Some(set) => Ok(Some(Rc::clone(set))),
            None => Err(format!(
                "the route names policy set {name:?} (filter_metadata.credmgr.policy), which the credmgr filter configuration does not define"
            )),
        }
    }
}

/// A step waiting for the control plane's answer.
#[derive(Debug)]
struct Pending {
    token_id: u32,
    key: String,
    /// The cached token past its refresh point, used if the fetch fails.
    fallback: Option<Rc<RuntimeToken>>,
}

/// One request's run through its policy set.
pub struct Request {
    worker: Rc<Worker>,
    policy: Option<Rc<PolicySet>>,
    next_step: usize,
    /// Context variables set so far; `None` is the null context left by an ignored error.
    vars: Vec<(String, Option<Rc<RuntimeToken>>)>,
    pending: Option<Pending>,
}

impl Request {
    /// A request; its policy set is chosen from its route when its headers arrive.
    pub fn new(worker: Rc<Worker>) -> Request {
        Request {
            worker,
            policy: None,
            next_step: 0,
            vars: Vec::new(),
            pending: None,
        }
    }

    /// Chooses the policy set and runs the pipeline from the request headers.
    pub fn on_request_headers(&mut self, host: &impl Host) -> Flow {
        match self.worker.policy_for_route(host) {
            Ok(policy) => self.policy = policy,
            Err(message) => {
                host.log(Level::Error, &message);
                let body = ErrorBody::new(codes::UNKNOWN_POLICY, message);
                return self.respond(host, 500, &body);
            }
        }
        self.run(host)
    }

    /// Handles the control plane's answer to call `token_id` and runs the rest of the pipeline.
    pub fn on_call_response(
        &mut self,
        host: &impl Host,
        token_id: u32,
        response: CallResponse,
    ) -> Flow {
        let pending = match self.pending.take() {
            Some(p) if p.token_id == token_id => p,
            other => {
                // Not ours (cannot happen with one call per request); stay as we are.
                self.pending = other;
                return Flow::Pause;
            }
        };
        let Some(policy) = self.policy.clone() else {
            return Flow::Continue;
        };
        let Some(Step::GetAuthorizationContext(step)) = policy.steps.get(self.next_step) else {
            return Flow::Continue;
        };
        let outcome = match parse_answer(&response) {
            Ok(token) => {
                self.worker.cache.put(host, &pending.key, &token);
                Ok(Rc::new(token))
            }
            Err(failure) => match pending.fallback {
                // A token past its refresh point is still valid: serve it while the control
                // plane is unavailable, rather than fail the request.
                Some(stale)
                    if freshness(&stale, host.now_ms(), self.worker.config.expiry_margin_ms)
                        != Freshness::Expired =>
                {
                    host.log(
                        Level::Warn,
                        &format!(
                            "token fetch for {}/{} failed ({}); using the cached token until it expires",
                            step.provider_id, step.authorization_id, failure.body.error.code
                        ),
                    );
                    Ok(stale)
                }
                _ => Err(failure),
            },
        };
        match outcome {
            Ok(token) => {
                let var = step.variable.clone();
                self.vars.push((var, Some(token)));
                self.next_step += 1;
                self.run(host)
            }
            Err(failure) => self.fail(host, failure),
        }
    }

    fn run(&mut self, host: &impl Host) -> Flow {
        let Some(policy) = self.policy.clone() else {
            return Flow::Continue;
        };
        while let Some(step) = policy.steps.get(self.next_step) {
            match step {
                Step::GetAuthorizationContext(g) => match self.authorization_context(host, g) {
                    StepOutcome::Done => {}
                    StepOutcome::Wait => return Flow::Pause,
                    StepOutcome::Failed(f) => return self.fail(host, f),
                },
                Step::SetHeader(s) => {
                    if let Err(e) = self.set_header(host, s) {
                        host.log(Level::Error, &format!("set-header {}: {e}", s.name));
                        let body = ErrorBody::new(
                            codes::INTERNAL,
                            "the gateway could not set a request header",
                        );
                        return self.respond(host, 500, &body);
                    }
                }
            }
            self.next_step += 1;
        }
        Flow::Continue
    }

    fn authorization_context(
        &mut self,
        host: &impl Host,
        step: &GetAuthorizationContext,
    ) -> StepOutcome {
        let key = token_key(&step.provider_id, &step.authorization_id, "managed");
        let cached = self.worker.cache.get(host, &key);
        let fallback = match cached {
            Some(token) => {
                match freshness(&token, host.now_ms(), self.worker.config.expiry_margin_ms) {
                    Freshness::Fresh => {
                        self.vars.push((step.variable.clone(), Some(token)));
                        return StepOutcome::Done;
                    }
                    Freshness::Refresh => Some(token),
                    Freshness::Expired => None,
                }
            }
            None => None,
        };
        let cp = &self.worker.config.control_plane;
        let path = credmgr_common::runtime::token_path(&step.provider_id, &step.authorization_id);
        let auth = format!("Bearer {}", cp.gateway_key);
        let headers = [
            (":method", "GET"),
            (":path", path.as_str()),
            (":authority", cp.authority.as_str()),
            ("accept", "application/json"),
            ("authorization", auth.as_str()),
        ];
        match host.dispatch_http_call(&cp.cluster, &headers, cp.timeout_ms) {
            Ok(token_id) => {
                self.pending = Some(Pending {
                    token_id,
                    key,
                    fallback,
                });
                StepOutcome::Wait
            }
            Err(e) => {
                host.log(
                    Level::Error,
                    &format!(
                        "cannot call the control plane through cluster {}: {e}",
                        cp.cluster
                    ),
                );
                match fallback {
                    Some(token) => {
                        self.vars.push((step.variable.clone(), Some(token)));
                        StepOutcome::Done
                    }
                    None => StepOutcome::Failed(Failure::unavailable(format!(
                        "the gateway cannot reach the credmgr control plane (cluster {})",
                        cp.cluster
                    ))),
                }
            }
        }
    }

    /// A `get-authorization-context` step failed: with `ignore-error` the request goes on with a
    /// null context; otherwise it is answered with the error.
    fn fail(&mut self, host: &impl Host, failure: Failure) -> Flow {
        let policy = self.policy.clone();
        let Some(Step::GetAuthorizationContext(step)) =
            policy.as_ref().and_then(|p| p.steps.get(self.next_step))
        else {
            return self.respond(host, failure.status, &failure.body);
        };
        if step.ignore_error {
            host.log(
                Level::Info,
                &format!(
                    "no token for {}/{} ({}); continuing without it (ignore-error)",
                    step.provider_id, step.authorization_id, failure.body.error.code
                ),
            );
            let var = step.variable.clone();
            self.vars.push((var, None));
            self.next_step += 1;
            return self.run(host);
        }
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
        self.respond(host, failure.status, &body)
    }

    fn respond(&self, host: &impl Host, status: u16, body: &ErrorBody) -> Flow {
        let json = body.to_json();
        if let Err(e) = host.send_response(
            status,
            &[("content-type", "application/json")],
            json.as_bytes(),
        ) {
            host.log(Level::Critical, &format!("cannot send local reply: {e}"));
        }
        Flow::Respond
    }

    fn set_header(&self, host: &impl Host, step: &SetHeader) -> Result<(), HostError> {
        let values = Vars {
            vars: &self.vars,
            host,
        };
        let mut rendered = Vec::with_capacity(step.values.len());
        for t in &step.values {
            match t.render(&values) {
                Some(v) => rendered.push(v),
                // A null context (ignored error): leave the header alone.
                None => return Ok(()),
            }
        }
        match step.exists_action {
            ExistsAction::Delete => host.remove_request_header(&step.name),
            ExistsAction::Skip if host.request_header(&step.name)?.is_some() => Ok(()),
            ExistsAction::Override | ExistsAction::Skip => {
                let mut it = rendered.iter();
                if let Some(first) = it.next() {
                    host.set_request_header(&step.name, first)?;
                }
                it.try_for_each(|v| host.add_request_header(&step.name, v))
            }
            ExistsAction::Append => rendered
                .iter()
                .try_for_each(|v| host.add_request_header(&step.name, v)),
        }
    }
}

enum StepOutcome {
    Done,
    Wait,
    Failed(Failure),
}

/// Why no token could be had, as answered to the caller.
#[derive(Debug)]
struct Failure {
    status: u16,
    body: ErrorBody,
}

impl Failure {
    fn unavailable(message: String) -> Failure {
        Failure {
            status: 503,
            body: ErrorBody::new(codes::CONTROL_PLANE_UNAVAILABLE, message),
        }
    }
}

/// Reads the control plane's answer: a token, or the failure to report.
fn parse_answer(response: &CallResponse) -> Result<RuntimeToken, Failure> {
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
    vars: &'a [(String, Option<Rc<RuntimeToken>>)],
    host: &'a H,
}

impl<H> Vars<'_, H> {
    fn get(&self, var: &str) -> Option<&RuntimeToken> {
        self.vars
            .iter()
            .rev()
            .find(|(name, _)| name == var)
            .and_then(|(_, t)| t.as_deref())
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

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
