//! The data-plane comparison: each variant of `envoy/bench.yaml` under the same load,
//! interleaved over several rounds (round r runs every variant once, in an order rotated by r,
//! so no variant always follows the same neighbour), and compared with the baseline measured
//! in the same round.

use crate::stack::Stack;
use crate::wrk::{self, median, Load, Run};
use anyhow::Result;
use serde::Serialize;

/// The variants of the issue, in the order they are reported.
pub const VARIANTS: [&str; 7] = [
    "baseline",
    "managed",
    "jwt",
    "credential_injector",
    "empty_wasm",
    "matched",
    "per_user",
];

/// Why a variant cannot be measured yet, or `None` when it can.
fn unavailable(stack: &Stack, name: &str) -> Result<Option<String>> {
    Ok(match name {
        // The listener joins envoy/bench.yaml with the identity type; from then on it is measured.
        "jwt" if !stack.has_listener("jwt")? => {
            Some("not available: envoy/bench.yaml has no jwt listener".into())
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
        "matched" => p.matched,
        "per_user" => p.per_user,
        "probe_lookup" => p.probe[0],
        "probe_inject" => p.probe[1],
        "probe_all" => p.probe[2],
        "probe_shared" => p.probe[3],
        "empty_sdk" => p.empty_sdk,
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
    /// The best round's throughput, and its ratio to the baseline's best round. On a shared
    /// machine, interference only ever slows a run down, so the best rounds are the least
    /// disturbed ones: a second view next to the medians, not a replacement.
    pub rps_best: f64,
    pub rps_best_ratio: f64,
    /// Envoy's CPU time per request (all its threads; the backend listener's share is the
    /// same in every variant), median over rounds, and the median per-round ratio to the
    /// baseline's. The least noisy figure on a shared machine.
    pub cpu_us_per_request: f64,
    pub cpu_ratio: f64,
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

/// The caller's credential the jwt variant presents: a JWT access token of the OAuth
/// server's `credmgr-demo` client, which an access policy of the connection names.
pub fn caller_token(stack: &Stack) -> Result<String> {
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
    // per_user's requests each carry the next user's JWT (`wrk::run_rotating`); where one
    // request is made, it is the first user's.
    let first_user = format!(
        "Bearer {}",
        stack.per_user.jwts.first().map_or("", String::as_str)
    );
    let headers = |name: &str| -> Vec<(&str, &str)> {
        match name {
            "jwt" => vec![("authorization", jwt_auth.as_str())],
            "per_user" => vec![("authorization", first_user.as_str())],
            _ => vec![],
        }
    };
    // The first request of managed fetches its token (a miss): done before the counters are
    // read, so that they show what happened during the measured runs only. per_user: every
    // user's first request, so that all their tokens are cached.
    for name in &measured {
        stack.wait_until_served(&Stack::url(port(stack, name)), &headers(name))?;
    }
    if measured.contains(&"per_user") {
        let url = Stack::url(stack.ports.per_user);
        for jwt in &stack.per_user.jwts {
            stack.wait_until_served(&url, &[("authorization", &format!("Bearer {jwt}"))])?;
        }
    }
    let tokens_before = stack.oauth.tokens_issued();
    let calls_before = stack.counter("credmgr.control_plane_call");
    let results = measure(stack, &measured, &headers, load, rounds, warmup)?;
    let variants = VARIANTS
        .iter()
        .map(|name| {
            let s = results
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, s)| s.clone());
            (*name, s)
        })
        .collect();
    // During the runs, no variant should have called its token endpoint or the control plane.
    let evidence = serde_json::json!({
        "oauth_tokens_issued_during_runs": stack.oauth.tokens_issued() - tokens_before,
        "credmgr_control_plane_calls_during_runs":
            stack.counter("credmgr.control_plane_call") - calls_before,
        "credmgr_cache_hit": stack.counter("credmgr.cache_hit"),
        "credmgr_cache_miss": stack.counter("credmgr.cache_miss"),
        "credential_injector_token_fetched": stack.counter("credential_injector.oauth2.token_fetched"),
        "per_user_users": stack.per_user.jwts.len(),
    });
    Ok(Outcome {
        variants,
        unavailable: skipped,
        evidence,
    })
}

/// The hot-path profile: the empty filter, then the probe filter with a growing set of the
/// host calls credmgr makes on a cache hit, then credmgr itself, all against the baseline;
/// and the shared-data read a hit made before each worker kept its own copy of the token.
/// Each row: name, what it adds, and the row it adds to.
pub const PROFILE: [(&str, &str, &str); 8] = [
    ("baseline", "no Wasm filter", ""),
    (
        "empty_sdk",
        "empty Rust Wasm filter, every SDK callback exported",
        "baseline",
    ),
    (
        "empty_wasm",
        "the same, unused callbacks' exports removed",
        "empty_sdk",
    ),
    ("probe_lookup", "+ route metadata, clock", "empty_wasm"),
    ("probe_inject", "+ set Authorization header", "probe_lookup"),
    (
        "probe_all",
        "+ response :status read (all of credmgr's host calls on a hit)",
        "probe_inject",
    ),
    (
        "probe_shared",
        "+ shared-data read of the token (no longer made on a hit)",
        "probe_all",
    ),
    (
        "managed",
        "credmgr (its host calls + its own Rust work)",
        "probe_all",
    ),
];

pub fn profile(
    stack: &Stack,
    load: &Load,
    rounds: usize,
    warmup: &Load,
) -> Result<Vec<(&'static str, Summary)>> {
    let names: Vec<&'static str> = PROFILE.iter().map(|(n, _, _)| *n).collect();
    measure(stack, &names, &|_| vec![], load, rounds, warmup)
}

/// One wrk run against variant `name`: per_user rotates through its users' JWTs, the others
/// send the same `headers` on every request.
fn load_run(stack: &Stack, name: &str, headers: &[(&str, &str)], load: &Load) -> Result<Run> {
    let url = Stack::url(port(stack, name));
    if name == "per_user" {
        wrk::run_rotating(&url, load, &stack.per_user.jwt_file)
    } else {
        wrk::run(&url, headers, load)
    }
}

/// Runs `names` interleaved over `rounds`, after a warm-up, and summarizes each against the
/// baseline of the same round (`names` must include "baseline").
fn measure<'h>(
    stack: &Stack,
    names: &[&'static str],
    headers: &dyn Fn(&str) -> Vec<(&'h str, &'h str)>,
    load: &Load,
    rounds: usize,
    warmup: &Load,
) -> Result<Vec<(&'static str, Summary)>> {
    // The first request of managed fetches the token (a miss); credential_injector fetches
    // its token at start. After this, every variant serves from its cache.
    for name in names {
        stack.wait_until_served(&Stack::url(port(stack, name)), &headers(name))?;
    }
    eprintln!(
        "warm-up: {} s per variant ({})",
        warmup.duration.as_secs(),
        names.join(", ")
    );
    for name in names {
        let r = load_run(stack, name, &headers(name), warmup)?;
        eprintln!("  {name:<20} {:>9.0} req/s", r.rps);
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); names.len()];
    for round in 0..rounds {
        eprintln!("round {}/{rounds}", round + 1);
        for i in 0..names.len() {
            let v = (i + round) % names.len();
            let name = names[v];
            let cpu_before = stack.envoy_cpu_us();
            let mut r = load_run(stack, name, &headers(name), load)?;
            if let (Some(before), Some(after)) = (cpu_before, stack.envoy_cpu_us()) {
                r.server_cpu_us_per_request = Some((after - before) / r.requests as f64);
            }
            eprintln!(
                "  {name:<20} {:>9.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us  cpu {:>6.1} us/req{}",
                r.rps,
                r.p50_us,
                r.p99_us,
                r.server_cpu_us_per_request.unwrap_or(f64::NAN),
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
    let base = names
        .iter()
        .position(|n| *n == "baseline")
        .map(|i| runs[i].clone())
        .unwrap_or_default();
    Ok(names
        .iter()
        .zip(&runs)
        .map(|(name, rs)| {
            let col = |f: fn(&Run) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
            let ratios = |f: fn(&Run) -> f64| {
                median(
                    &rs.iter()
                        .zip(&base)
                        .map(|(r, b)| f(r) / f(b))
                        .collect::<Vec<_>>(),
                )
            };
            let best = |rs: &[Run]| rs.iter().map(|r| r.rps).fold(f64::NAN, f64::max);
            let cpu = |r: &Run| r.server_cpu_us_per_request.unwrap_or(f64::NAN);
            let summary = Summary {
                cpu_us_per_request: median(&rs.iter().map(cpu).collect::<Vec<_>>()),
                cpu_ratio: median(
                    &rs.iter()
                        .zip(&base)
                        .map(|(r, b)| cpu(r) / cpu(b))
                        .collect::<Vec<_>>(),
                ),
                rps_best: best(rs),
                rps_best_ratio: best(rs) / best(&base),
                rps: col(|r| r.rps),
                p50_us: col(|r| r.p50_us),
                p99_us: col(|r| r.p99_us),
                rps_ratio: ratios(|r| r.rps),
                p99_ratio: ratios(|r| r.p99_us),
                non_2xx: rs.iter().map(|r| r.non_2xx).sum(),
                socket_errors: rs.iter().map(|r| r.socket_errors).sum(),
                rounds: rs.clone(),
            };
            (*name, summary)
        })
        .collect())
}
