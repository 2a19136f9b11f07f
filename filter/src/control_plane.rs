//! The filter's calls to the control plane's runtime API: what a call is for ([`Need`]: one
//! token, [`TokenNeed`], or the trusted issuers), making it ([`dispatch`]), and reading its
//! answers into a token, the issuers, or the [`Failure`] that the waiting requests get
//! ([`parse_answer`], [`parse_issuers`]).

use crate::config::ControlPlane;
use crate::denials;
use crate::failure::Failure;
use crate::host::{CallResponse, Host, Level};
use crate::identity::ISSUERS_KEY;
use crate::stats::{self, Stats};
use credmgr_common::error::codes;
use credmgr_common::runtime::{
    TrustedIssuers, CALLER_TOKEN_HEADER, ISSUERS_PATH, REJECTED_FINGERPRINT_PARAM,
};
use credmgr_common::{ErrorBody, RuntimeToken};

/// A token to fetch from the control plane.
#[derive(Debug, Clone)]
pub struct TokenNeed {
    /// Cache key of the token.
    pub key: String,
    /// Where it lives in shared data: the key itself, or its slot (see [`crate::cache`]).
    pub location: String,
    /// Requests with the same fetch key share one call: the cache key, plus the caller for
    /// a JWT identity (the control plane decides for the caller whose JWT it is sent).
    pub fetch_key: String,
    pub provider_id: String,
    pub connection_id: String,
    /// The caller's JWT (identity-type `jwt`), sent to the control plane.
    pub caller_token: Option<String>,
}

/// What a call to the control plane is for.
#[derive(Debug, Clone)]
pub enum Need {
    Token(TokenNeed),
    /// The trusted issuers; with the issuer and key id of a token that names an unknown key.
    Issuers(Option<(String, String)>),
}

impl Need {
    /// Requests whose needs have the same key share one call.
    pub fn key(&self) -> &str {
        match self {
            Need::Token(t) => &t.fetch_key,
            Need::Issuers(_) => ISSUERS_KEY,
        }
    }
}

/// Calls the control plane's runtime API for one token, or for the trusted issuers.
pub fn dispatch(
    host: &impl Host,
    cp: &ControlPlane,
    stats: &Stats,
    need: &Need,
) -> Result<u32, Failure> {
    let mut caller_token = None;
    let path = match need {
        Need::Token(need) => {
            let mut path =
                credmgr_common::runtime::token_path(&need.provider_id, &need.connection_id);
            // The control plane replaces the stored token first if a backend refused it.
            if let Some(r) = denials::rejected(host, &need.location, &need.key) {
                path.push_str(&format!("?{REJECTED_FINGERPRINT_PARAM}={}", r.fingerprint));
            }
            caller_token = need.caller_token.as_deref();
            path
        }
        Need::Issuers(None) => ISSUERS_PATH.to_owned(),
        Need::Issuers(Some((issuer, kid))) => format!(
            "{ISSUERS_PATH}?issuer={}&kid={}",
            percent_encode(issuer),
            percent_encode(kid)
        ),
    };
    let auth = cp.gateway_key.as_ref().map(|key| format!("Bearer {key}"));
    let mut headers = vec![
        (":method", "GET"),
        (":path", path.as_str()),
        (":authority", cp.authority.as_str()),
        ("accept", "application/json"),
    ];
    // No key: the gateway is known by its client certificate on the cluster (mTLS).
    if let Some(auth) = &auth {
        headers.push(("authorization", auth.as_str()));
    }
    if let Some(token) = caller_token {
        headers.push((CALLER_TOKEN_HEADER, token));
    }
    let trace = trace_context(host);
    headers.extend(trace.iter().map(|(name, value)| (*name, value.as_str())));
    stats.inc(match need {
        Need::Token(_) => stats::CONTROL_PLANE_CALL,
        Need::Issuers(_) => stats::ISSUERS_FETCH,
    });
    host.dispatch_http_call(&cp.cluster, &headers, cp.timeout_ms)
        .map_err(|e| {
            stats.inc_by_reason(stats::CONTROL_PLANE_FAILURE, "dispatch_failed");
            host.log(
                Level::Error,
                &format!(
                    "cannot call the control plane through cluster {}: {e}",
                    cp.cluster
                ),
            );
            Failure::unavailable(format!(
                "the gateway cannot reach the credmgr control plane (cluster {})",
                cp.cluster
            ))
        })
}

/// The W3C Trace Context (`traceparent`, `tracestate`) of the request being served, for the
/// call it makes: the control plane's spans then join that request's trace. Read only when a
/// call is made (a cache miss), never on a hit; a call made outside a request (the root
/// context's) reads nothing, and one shared by several requests carries the first one's.
/// Values longer than the specification allows (55 characters for version 00 of `traceparent`,
/// 512 for `tracestate`; later versions may add fields) are not forwarded.
fn trace_context(host: &impl Host) -> Vec<(&'static str, String)> {
    const TRACEPARENT_MAX: usize = 128;
    const TRACESTATE_MAX: usize = 512;
    let Ok(Some(parent)) = host.request_header("traceparent") else {
        return Vec::new();
    };
    if parent.len() > TRACEPARENT_MAX {
        return Vec::new();
    }
    let mut out = vec![("traceparent", parent)];
    if let Ok(Some(state)) = host.request_header("tracestate") {
        if state.len() <= TRACESTATE_MAX {
            out.push(("tracestate", state));
        }
    }
    out
}

/// Whether a failed call is worth making once more: the control plane did not answer it
/// (the connection failed or timed out, or Envoy answered for it: no healthy host, a reset).
/// Envoy's cluster picks the host again, so a replica that died is most likely skipped. An
/// answer of the control plane's own (its JSON error) is final.
pub fn worth_retrying(response: &CallResponse) -> bool {
    match response.status {
        None => true,
        Some(status) if status >= 500 => {
            serde_json::from_slice::<ErrorBody>(&response.body).is_err()
        }
        Some(_) => false,
    }
}

/// Reads the control plane's answer: a token, or the failure to report. `for_caller`: the
/// call was made for one caller's JWT, whose own answers (a login URL made for them, their
/// rate limit) may reach them as they came.
pub fn parse_answer(response: &CallResponse, for_caller: bool) -> Result<RuntimeToken, Failure> {
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
            // The caller may see 403 (policy denied) and a refused JWT (401 `jwt_*`) as
            // they are, and, when the call was made for their JWT, the consent they must give
            // (401 `consent_required` with a login URL made for them) and their rate limit
            // (429). Every other failure, including a 401 for the gateway's own credential,
            // means the gateway has no usable token for it.
            let consent = for_caller
                && body.error.code == codes::CONSENT_REQUIRED
                && body.error.login_url.is_some();
            let status = match status {
                403 => 403,
                401 if body.error.code.starts_with("jwt_") => 401,
                401 if consent => 401,
                429 if for_caller && body.error.code == codes::RATE_LIMITED => 429,
                _ => 503,
            };
            let mut body = body;
            if status == 503 {
                // A login URL is only ever handed to the caller it was made for.
                body.error.login_url = None;
            }
            Err(Failure { status, body })
        }
    }
}

/// Reads the control plane's trusted-issuers document.
pub fn parse_issuers(response: &CallResponse) -> Result<TrustedIssuers, Failure> {
    match response.status {
        Some(200) => serde_json::from_slice(&response.body).map_err(|e| {
            Failure::unavailable(format!(
                "the credmgr control plane sent an unreadable trusted-issuers answer: {e}"
            ))
        }),
        _ => Err(parse_answer(response, false)
            .err()
            .unwrap_or_else(|| Failure::unavailable("unexpected answer".into()))),
    }
}

/// Percent-encodes a query value (RFC 3986 §2.1): everything but unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::test_host::{answer, answer_last, bearer_worker, start, FakeHost};
    use crate::worker::Flow;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn call_header(host: &FakeHost, call: usize, name: &str) -> Option<String> {
        host.call_headers.borrow()[call]
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn a_call_carries_the_trace_context_of_the_request_that_made_it() {
        let w = bearer_worker();
        let host = FakeHost::default();
        host.set_headers(10, &[("traceparent", PARENT), ("tracestate", "vendor=x")]);
        assert_eq!(start(&w, &host, 10), Flow::Pause);
        assert_eq!(
            call_header(&host, 0, "traceparent").as_deref(),
            Some(PARENT)
        );
        assert_eq!(
            call_header(&host, 0, "tracestate").as_deref(),
            Some("vendor=x")
        );
        answer_last(&w, &host, answer("tok-1", 3600, 3000));

        // A hit makes no call and reads no trace header.
        host.header_reads.borrow_mut().clear();
        host.set_headers(11, &[("traceparent", PARENT)]);
        assert_eq!(start(&w, &host, 11), Flow::Continue);
        assert_eq!(host.calls(), 1);
        assert!(!host
            .header_reads
            .borrow()
            .iter()
            .any(|h| h == "traceparent"));
    }

    #[test]
    fn a_request_without_a_trace_sends_none_and_oversized_values_are_dropped() {
        let w = bearer_worker();
        let host = FakeHost::default();
        assert_eq!(start(&w, &host, 10), Flow::Pause);
        assert_eq!(call_header(&host, 0, "traceparent"), None);
        assert_eq!(call_header(&host, 0, "tracestate"), None);

        let w = bearer_worker();
        let host = FakeHost::default();
        let long = "x".repeat(600);
        host.set_headers(10, &[("traceparent", PARENT), ("tracestate", &long)]);
        assert_eq!(start(&w, &host, 10), Flow::Pause);
        assert_eq!(
            call_header(&host, 0, "traceparent").as_deref(),
            Some(PARENT)
        );
        assert_eq!(call_header(&host, 0, "tracestate"), None);
    }
}
