//! The policy pipeline of one request: its `get-authorization-context` and `set-header` steps,
//! run in order with what its worker lends it (a [`View`]: configuration, cache, counters,
//! issuers, refusals, refresh queue). A step that needs a token the cache cannot give, or the
//! trusted issuers, stops the pipeline and says so as data ([`Progress::NeedToken`],
//! [`Progress::NeedIssuers`]); the worker fetches it (once for every request that needs it)
//! and hands the answer back through [`Request::resume`].

use crate::cache::{fnv1a, freshness, Freshness};
use crate::config::{GetAuthorizationContext, IdentityType, PolicySet, Step, StepIds};
use crate::control_plane::TokenNeed;
use crate::failure::Failure;
use crate::host::{Host, Level};
use crate::identity::bearer_token;
use crate::stats;
use crate::step_ids;
use crate::vars::{Var, Vars};
use crate::view::View;
use credmgr_common::access::{allowed, Caller};
use credmgr_common::error::codes;
use credmgr_common::jwt::{peek_issuer_and_kid, JwtError, Verified};
use credmgr_common::{ErrorBody, RuntimeToken};
use set_header::SetHeaderFailure;
use std::rc::Rc;

mod set_header;

/// Where a request's pipeline stands after a step.
#[derive(Debug)]
pub enum Progress {
    /// Every step ran: forward the request.
    Done,
    /// A token must be fetched first.
    NeedToken(TokenNeed),
    /// The trusted issuers must be fetched first (none yet, or a token names an unknown key:
    /// then the issuer and key id, for the control plane to fetch that issuer's keys again).
    NeedIssuers(Option<(String, String)>),
    /// Answer the request locally with this status and body.
    Respond(u16, ErrorBody),
}

/// What a paused request was waiting for.
#[derive(Debug, Clone)]
pub enum Answer {
    Token(Result<Rc<RuntimeToken>, Failure>),
    /// The trusted issuers were fetched (or could not be).
    Issuers,
}

/// One request's run through its policy set.
pub struct Request {
    policy: Option<Rc<PolicySet>>,
    next_step: usize,
    vars: Vec<Var>,
    /// The verified caller of the current step (identity-type `jwt`).
    caller: Option<Caller>,
    /// The verified claims of that caller that id templates use.
    claims: Vec<(String, String)>,
    /// The ids of the current step, literal or rendered for this request.
    ids: Option<Rc<StepIds>>,
    /// The current step already asked for the issuers (none yet, or an unknown key).
    hinted: bool,
    /// Tokens written into the request (the ids they came from, the token), to recognise a
    /// backend's 401; only recorded when `retire_on_backend_401` is on.
    pub injected: Vec<(Rc<StepIds>, Rc<RuntimeToken>)>,
}

impl Request {
    /// A request that runs `policy` (none: it passes untouched).
    pub fn new(policy: Option<Rc<PolicySet>>) -> Request {
        Request {
            policy,
            next_step: 0,
            vars: Vec::new(),
            caller: None,
            claims: Vec::new(),
            ids: None,
            hinted: false,
            injected: Vec::new(),
        }
    }

    /// Runs steps until the pipeline is done, needs a token, or must answer.
    pub fn advance(&mut self, host: &impl Host, view: &View) -> Progress {
        let Some(policy) = self.policy.clone() else {
            return Progress::Done;
        };
        while let Some(step) = policy.steps.get(self.next_step) {
            match step {
                Step::GetAuthorizationContext(g) => {
                    if let Some(progress) = self.get_context(host, view, g) {
                        return progress;
                    }
                }
                Step::SetHeader(s) => {
                    match self.set_header(host, s, view.config.retire_on_backend_401) {
                        Ok(injected) => {
                            if injected {
                                view.stats.inc(stats::TOKEN_INJECTED);
                            }
                        }
                        Err(SetHeaderFailure::Unsafe) => {
                            host.log(
                                Level::Warn,
                                &format!(
                                    "set-header {}: the value would hold a control character (CR, \
                                 LF, ...) from the provider's token or claims; not sent",
                                    s.name
                                ),
                            );
                            let body = ErrorBody::new(
                                codes::PROVIDER_ERROR,
                                "the provider's token or claims hold characters not allowed in an \
                             HTTP header (CR, LF or another control character); the request \
                             was not sent to the backend",
                            )
                            .with_detail("header", s.name.as_str());
                            return Progress::Respond(502, body);
                        }
                        Err(SetHeaderFailure::Host(e)) => {
                            host.log(Level::Error, &format!("set-header {}: {e}", s.name));
                            let body = ErrorBody::new(
                                codes::INTERNAL,
                                "the gateway could not set a request header",
                            );
                            return Progress::Respond(500, body);
                        }
                    }
                }
            }
            self.next_step += 1;
        }
        Progress::Done
    }

    /// What the request waited for arrived; continues the pipeline.
    pub fn resume(&mut self, host: &impl Host, view: &View, answer: Answer) -> Progress {
        match answer {
            // The step runs again, now with the issuers (or without them, and fails).
            Answer::Issuers => self.advance(host, view),
            Answer::Token(result) => self.token_ready(host, view, result),
        }
    }

    /// The token this request waited for arrived, or could not be had; continues the pipeline.
    pub fn token_ready(
        &mut self,
        host: &impl Host,
        view: &View,
        result: Result<Rc<RuntimeToken>, Failure>,
    ) -> Progress {
        let Some(policy) = self.policy.clone() else {
            return Progress::Done;
        };
        let Some(Step::GetAuthorizationContext(step)) = policy.steps.get(self.next_step) else {
            return Progress::Done;
        };
        match result.and_then(|token| self.check_access(token)) {
            Ok(token) => self.set_var(step, Some(token)),
            Err(failure) => {
                if let Some(progress) = self.fail(host, step, failure) {
                    return progress;
                }
            }
        }
        self.next_step += 1;
        self.advance(host, view)
    }

    fn set_var(&mut self, step: &GetAuthorizationContext, token: Option<Rc<RuntimeToken>>) {
        self.vars.push(Var {
            name: Rc::clone(&step.variable),
            ids: self.ids.clone(),
            token,
        });
        self.caller = None;
        self.claims.clear();
        self.ids = None;
        self.hinted = false;
    }

    /// A step failed: the request is answered with the failure, or, with ignore-error, the
    /// context is null and the pipeline goes on (`None`).
    fn fail(
        &mut self,
        host: &impl Host,
        step: &GetAuthorizationContext,
        failure: Failure,
    ) -> Option<Progress> {
        let what = match &self.ids {
            Some(ids) => format!("{}/{}", ids.provider_id, ids.authorization_id),
            None => step.place.clone(),
        };
        if step.ignore_error {
            host.log(
                Level::Info,
                &format!(
                    "no token for {what} ({}); continuing without it (ignore-error)",
                    failure.body.error.code
                ),
            );
            self.set_var(step, None);
            return None;
        }
        let mut body = failure.body;
        if let Some(ids) = &self.ids {
            body = body
                .with_detail("provider_id", ids.provider_id.as_str())
                .with_detail("authorization_id", ids.authorization_id.as_str());
        }
        let level = if failure.status == 503 {
            Level::Warn
        } else {
            Level::Debug
        };
        // The message only: a login URL travels in its own field, never logged.
        host.log(
            level,
            &format!("no token for {what}: {}", body.error.message),
        );
        self.caller = None;
        self.claims.clear();
        self.ids = None;
        Some(Progress::Respond(failure.status, body))
    }

    /// The ids of `step` for this request (see [`crate::step_ids`]).
    fn step_ids(
        &self,
        host: &impl Host,
        step: &GetAuthorizationContext,
    ) -> Result<Rc<StepIds>, Failure> {
        let values = Vars {
            vars: &self.vars,
            host,
            claims: &self.claims,
        };
        let policy = self.policy.as_ref().map_or("", |p| p.name.as_str());
        step_ids::resolve(step, policy, &values)
    }

    /// For a JWT caller: the access policies that came with the token must allow it. The
    /// control plane decided for whoever asked first; every caller is decided here with the
    /// same rules.
    fn check_access(&self, token: Rc<RuntimeToken>) -> Result<Rc<RuntimeToken>, Failure> {
        match (&self.caller, &self.ids) {
            (Some(caller), Some(ids)) if !allowed(&token.access_policies, caller) => Err(Failure {
                status: 403,
                body: ErrorBody::new(
                    codes::FORBIDDEN,
                    format!(
                        "the caller may not use connection {} of provider {}: none of its \
                         access policies names the caller",
                        ids.authorization_id, ids.provider_id
                    ),
                ),
            }),
            _ => Ok(token),
        }
    }

    /// Runs a `get-authorization-context` step with what this worker has. `None`: the
    /// context variable is set (or null, after an ignored error) and the next step is due.
    fn get_context(
        &mut self,
        host: &impl Host,
        view: &View,
        step: &GetAuthorizationContext,
    ) -> Option<Progress> {
        // The tick's clock (no host call): expiry margins and leeways are seconds.
        let now = view.now(host);
        let caller_token = match (step.identity_type, &step.identity) {
            (IdentityType::Jwt, Some(identity)) => {
                let values = Vars {
                    vars: &self.vars,
                    host,
                    claims: &[],
                };
                let rendered = identity.render(&values).unwrap_or_default();
                let token = bearer_token(&rendered).to_owned();
                match self.verify_caller(host, view, &token, now) {
                    Ok(verified) => {
                        self.caller = Some(Caller::Jwt(verified.identity));
                        self.claims = verified.claims;
                    }
                    Err(progress) => match *progress {
                        Progress::Respond(status, body) => {
                            return self.fail(host, step, Failure { status, body })
                        }
                        other => return Some(other),
                    },
                }
                Some(token)
            }
            _ => None,
        };
        // Only now, after the caller's JWT was verified, may its claims make ids.
        let ids = match self.step_ids(host, step) {
            Ok(ids) => ids,
            Err(failure) => return self.fail(host, step, failure),
        };
        self.ids = Some(Rc::clone(&ids));
        let key = &ids.cache_key;
        let cached = view.cache.get(host, key, now);
        let usable = match &cached {
            Some(token) => freshness(token, now, view.config.expiry_margin_ms),
            None => Freshness::Expired,
        };
        let need = || TokenNeed {
            key: key.clone(),
            fetch_key: match &caller_token {
                Some(t) => format!("{key}#{:016x}", fnv1a(t.as_bytes())),
                None => key.clone(),
            },
            location: view.cache.location(key).into_owned(),
            provider_id: ids.provider_id.clone(),
            connection_id: ids.authorization_id.clone(),
            caller_token: caller_token.clone(),
        };
        match (usable, cached) {
            (Freshness::Fresh | Freshness::Refresh, Some(token)) => {
                view.stats.inc(stats::CACHE_HIT);
                // Past its refresh point but valid: serve it, and have it fetched again in
                // the background, so no request waits for the refresh.
                if usable == Freshness::Refresh {
                    view.refreshes.ask(need());
                }
                match self.check_access(token) {
                    Ok(token) => {
                        self.set_var(step, Some(token));
                        None
                    }
                    Err(failure) => self.fail(host, step, failure),
                }
            }
            _ => {
                let need = need();
                // Refused a moment ago: refused again without asking.
                if let Some(failure) = view.denials.recent(host, &need.fetch_key) {
                    return self.fail(host, step, failure);
                }
                view.stats.inc(stats::CACHE_MISS);
                Some(Progress::NeedToken(need))
            }
        }
    }

    /// Verifies the caller's JWT with the trusted issuers at `now` (milliseconds); `Err` says
    /// what to do instead (boxed: it is the rare path, and the answer is large).
    fn verify_caller(
        &mut self,
        host: &impl Host,
        view: &View,
        token: &str,
        now: u64,
    ) -> Result<Verified, Box<Progress>> {
        let refuse = |e: JwtError| {
            let f = Failure::unauthenticated(&e);
            Box::new(Progress::Respond(f.status, f.body))
        };
        if token.is_empty() {
            return Err(refuse(JwtError::Malformed(
                "the request carries no caller JWT".into(),
            )));
        }
        let Some(issuers) = view.identities.issuers(host, now) else {
            if self.hinted {
                return Err(Box::new(Progress::Respond(
                    503,
                    ErrorBody::new(
                        codes::CONTROL_PLANE_UNAVAILABLE,
                        "the gateway could not get the trusted issuers from the credmgr \
                         control plane",
                    ),
                )));
            }
            self.hinted = true;
            return Err(Box::new(Progress::NeedIssuers(None)));
        };
        let now_s = i64::try_from(now / 1000).unwrap_or(i64::MAX);
        let before = view.identities.verifications();
        let result = view.identities.verify(&issuers, token, now_s);
        if view.identities.verifications() > before {
            view.stats.inc(stats::JWT_VERIFIED);
        }
        match result {
            Ok(v) => Ok(v),
            Err(JwtError::UnknownKey(Some(kid)))
                if !self.hinted && view.identities.may_hint(host) =>
            {
                // The issuer may have rotated its keys: ask once, then decide.
                self.hinted = true;
                let issuer = peek_issuer_and_kid(token)
                    .map(|(iss, _)| iss)
                    .unwrap_or_default();
                Err(Box::new(Progress::NeedIssuers(Some((issuer, kid)))))
            }
            Err(e) => Err(refuse(e)),
        }
    }
}
