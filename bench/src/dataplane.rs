//! The data-plane comparison: each variant of `envoy/bench.yaml` under the same load,
//! interleaved over several rounds (round r runs every variant once, in an order rotated by r,
//! so no variant always follows the same neighbour), and compared with the baseline measured
//! in the same round.

use crate::stack::Stack;
use crate::wrk::{self, median, Load, Run};
use anyhow::Result;
use serde::Serialize;

/// The variants of the issue, in the order they are reported.
pub const VARIANTS: [&str; 5] = [
    "baseline",
    "managed",
    "jwt",
    "credential_injector",
    "empty_wasm",
];

/// Why a variant cannot be measured yet, or `None` when it can.
fn unavailable(stack: &Stack, name: &str) -> Result<Option<String>> {
    Ok(match name {
        // The listener joins envoy/bench.yaml with the identity type; from then on it is measured.
        "jwt" if !stack.has_listener("jwt")? => {
            Some("not available yet: needs identity-type jwt (issue 5)".into())
        }
        _ => None,
    })
}

fn port(stack: &Stack, name: &str) -> u16 {
    let p = &stack.ports;
    match name {
        "baseline" => p.baseline,
        "managed" => p.managed,
        "jwt" => p.jwt,
        "credential_injector" => p.credential_injector,
        _ => p.empty_wasm,
    }
}

/// One variant's figures: medians over rounds, and medians of the per-round ratios to the
/// baseline of the same round.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub rps_ratio: f64,
    pub p99_ratio: f64,
    /// Requests answered other than 2xx (lost credentials) and socket errors, over all rounds.
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub rounds: Vec<Run>,
}

pub struct Outcome {
    /// Every variant by name, `None` where it could not be measured.
    pub variants: Vec<(&'static str, Option<Summary>)>,
    pub unavailable: Vec<(&'static str, String)>,
    /// Counters read from Envoy after the runs, as evidence of what was measured.
    pub evidence: serde_json::Value,
}

/// The caller's credential the jwt variant presents: a token of the OAuth server's
/// `credmgr-demo` client (JWT access tokens are the OAuth server's part of issue 5).
fn caller_token(stack: &Stack) -> Result<String> {
    let resp = credmgr_e2e::http()
        .post(stack.oauth.token_url())
        .basic_auth("credmgr-demo", Some("credmgr-demo-secret"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=api%3Aread")
        .send()?
        .error_for_status()?;
    let body: serde_json::Value = resp.json()?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no access_token from the OAuth server: {body}"))
}

pub fn run(stack: &Stack, load: &Load, rounds: usize, warmup: &Load) -> Result<Outcome> {
    let mut measured = Vec::new();
    let mut skipped = Vec::new();
    for name in VARIANTS {
        match unavailable(stack, name)? {
            Some(reason) => skipped.push((name, reason)),
            None => measured.push(name),
        }
    }
    let jwt_auth = if measured.contains(&"jwt") {
        format!("Bearer {}", caller_token(stack)?)
    } else {
        String::new()
    };
    let headers = |name: &str| -> Vec<(&str, &str)> {
        if name == "jwt" {
            vec![("authorization", jwt_auth.as_str())]
        } else {
            vec![]
        }
    };
    // The first request of managed fetches the token (a miss); credential_injector fetches
    // its token at start. After this, every variant serves from its cache.
    for name in &measured {
        stack.wait_until_served(&Stack::url(port(stack, name)), &headers(name))?;
    }
    let tokens_before = stack.oauth.tokens_issued();
    let calls_before = stack.counter("credmgr.control_plane_call");
    eprintln!(
        "warm-up: {} s per variant ({})",
        warmup.duration.as_secs(),
        measured.join(", ")
    );
    for name in &measured {
        let r = wrk::run(&Stack::url(port(stack, name)), &headers(name), warmup)?;
        eprintln!("  {name:<20} {:>9.0} req/s", r.rps);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); measured.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for i in 0..measured.len() {
            let v = (i + round) % measured.len();
            let name = measured[v];
            let r = wrk::run(&Stack::url(port(stack, name)), &headers(name), load)?;
            eprintln!(
                "  {name:<20} {:>9.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us{}",
                r.rps,
                r.p50_us,
                r.p99_us,
                if r.non_2xx + r.socket_errors > 0 {
                    format!(
                        "  ({} non-2xx, {} socket errors)",
                        r.non_2xx, r.socket_errors
                    )
                } else {
                    String::new()
                }
            );
            runs[v].push(r);
        }
    }
    let base = measured
        .iter()
        .position(|n| *n == "baseline")
        .map(|i| runs[i].clone())
        .unwrap_or_default();
    let mut variants = Vec::new();
    for name in VARIANTS {
        let summary = measured.iter().position(|n| *n == name).map(|i| {
            let rs = &runs[i];
            let col = |f: fn(&Run) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            let ratios = |f: fn(&Run) -> f64| {
                median(
                    &rs.iter()
                        .zip(&base)
                        .map(|(r, b)| f(r) / f(b))
                        .collect::<Vec<_>>(),
                )
            };
            Summary {
                rps: col(|r| r.rps),
                p50_us: col(|r| r.p50_us),
                p99_us: col(|r| r.p99_us),
                rps_ratio: ratios(|r| r.rps),
                p99_ratio: ratios(|r| r.p99_us),
                non_2xx: rs.iter().map(|r| r.non_2xx).sum(),
                socket_errors: rs.iter().map(|r| r.socket_errors).sum(),
                rounds: rs.clone(),
            }
        });
        variants.push((name, summary));
    }
    let evidence = serde_json::json!({
        "oauth_tokens_issued_during_runs": stack.oauth.tokens_issued() - tokens_before,
        "credmgr_control_plane_calls_during_runs":
            stack.counter("credmgr.control_plane_call") - calls_before,
        "credmgr_cache_hit": stack.counter("credmgr.cache_hit"),
        "credmgr_cache_miss": stack.counter("credmgr.cache_miss"),
        "credential_injector_token_fetched": stack.counter("credential_injector.oauth2.token_fetched"),
    });
    Ok(Outcome {
        variants,
        unavailable: skipped,
        evidence,
    })
}
