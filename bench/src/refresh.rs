//! Refresh under load: steady load through Envoy while tokens live a few seconds, so several
//! refreshes happen during the run. Its own stack (the OAuth server's token lifetime is set at
//! start) with two Envoy workers, so that a refresh made per worker rather than per connection
//! would show. Each request's start, latency and status are recorded, and the OAuth server's
//! token count is polled to find when the provider issued a token: the refresh windows.
//!
//! The control plane's scheduler refreshes each token ahead of its refresh point, so a
//! gateway's background fetch finds the new token already stored.

use crate::stack::Stack;
use crate::wrk::median;
use anyhow::{bail, Result};
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub token_ttl_s: u32,
    pub duration_s: u64,
    pub client_threads: usize,
    pub envoy_concurrency: u32,
    pub requests: usize,
    pub non_2xx: usize,
    pub transport_errors: usize,
    /// Tokens the provider issued to credmgr during the run, and the most one connection should
    /// need: one per refresh interval (80 % of the lifetime), plus one.
    pub tokens_issued: u64,
    /// Tokens the OAuth server issued to anyone (credential_injector included).
    pub oauth_tokens_issued_all_clients: u64,
    pub tokens_expected_at_most: u64,
    /// Seconds from the start of the load at which credmgr obtained a token from the provider.
    pub refresh_times_s: Vec<f64>,
    /// Requests started within `window_ms` of a token being issued, and the others.
    pub window_ms: u64,
    pub in_window_requests: usize,
    pub p50_in_window_us: f64,
    pub p99_in_window_us: f64,
    pub p50_outside_us: f64,
    pub p99_outside_us: f64,
    pub p99_ratio: f64,
    /// Envoy's counters: calls to the control plane and background refreshes, all workers.
    pub control_plane_calls: u64,
    pub refresh_ahead: u64,
}

/// Tokens credmgr's control plane obtained from the provider so far (its Prometheus counter).
/// The OAuth server's own count would also include credential_injector's tokens: that
/// listener is part of the same Envoy and refreshes its own token.
fn provider_tokens(stack: &Stack) -> u64 {
    let text = credmgr_e2e::http()
        .get(format!("{}/metrics", stack.control_plane.url))
        .send()
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .filter(|l| {
            l.starts_with("credmgr_provider_token_requests_total{")
                && l.contains("outcome=\"success\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

pub fn run(dir: &std::path::Path, token_ttl_s: u32, duration: Duration) -> Result<Outcome> {
    const THREADS: usize = 8;
    const CONCURRENCY: u32 = 2;
    const WINDOW_MS: u64 = 500;
    let stack = Stack::start(dir, "0,1", CONCURRENCY, token_ttl_s)?;
    let url = Stack::url(stack.ports.managed);
    stack.wait_until_served(&url, &[])?;
    let tokens_before = provider_tokens(&stack);
    let all_before = stack.oauth.tokens_issued();
    let calls_before = stack.counter("credmgr.control_plane_call");
    let ahead_before = stack.counter("credmgr.refresh_ahead");
    let start = Instant::now();
    let deadline = start + duration;
    let done = AtomicBool::new(false);
    let (samples, issued) = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            let mut times = Vec::new();
            let mut last = tokens_before;
            while !done.load(Ordering::Relaxed) {
                let now = provider_tokens(&stack);
                if now > last {
                    for _ in last..now {
                        times.push(start.elapsed().as_secs_f64());
                    }
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            times
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    let client = credmgr_e2e::http();
                    let mut out: Vec<(f64, f64, u16)> = Vec::new();
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let status = match client.get(&url).send() {
                            Ok(r) => {
                                let st = r.status().as_u16();
                                let _ = r.bytes();
                                st
                            }
                            Err(_) => 0,
                        };
                        out.push((
                            t0.duration_since(start).as_secs_f64(),
                            t0.elapsed().as_secs_f64() * 1e6,
                            status,
                        ));
                    }
                    out
                })
            })
            .collect();
        let mut samples = Vec::new();
        for w in workers {
            samples.extend(w.join().unwrap_or_default());
        }
        done.store(true, Ordering::Relaxed);
        let issued = monitor.join().unwrap_or_default();
        (samples, issued)
    });
    if samples.is_empty() {
        bail!("no request completed during the refresh-under-load run");
    }
    let window = WINDOW_MS as f64 / 1000.0;
    let in_window = |t: f64| issued.iter().any(|e| (t - e).abs() <= window);
    let ok: Vec<&(f64, f64, u16)> = samples.iter().filter(|x| x.2 != 0).collect();
    let inside: Vec<f64> = ok.iter().filter(|x| in_window(x.0)).map(|x| x.1).collect();
    let outside: Vec<f64> = ok.iter().filter(|x| !in_window(x.0)).map(|x| x.1).collect();
    let tokens_issued = provider_tokens(&stack) - tokens_before;
    let all_clients = stack.oauth.tokens_issued() - all_before;
    let interval = f64::from(token_ttl_s) * 0.8;
    let expected = (duration.as_secs_f64() / interval).ceil() as u64 + 1;
    let p99_in = quantile(&inside, 0.99);
    let p99_out = quantile(&outside, 0.99);
    Ok(Outcome {
        token_ttl_s,
        duration_s: duration.as_secs(),
        client_threads: THREADS,
        envoy_concurrency: CONCURRENCY,
        requests: samples.len(),
        non_2xx: samples
            .iter()
            .filter(|x| x.2 != 0 && !(200..300).contains(&x.2))
            .count(),
        transport_errors: samples.iter().filter(|x| x.2 == 0).count(),
        tokens_issued,
        oauth_tokens_issued_all_clients: all_clients,
        tokens_expected_at_most: expected,
        refresh_times_s: issued.iter().map(|t| (t * 100.0).round() / 100.0).collect(),
        window_ms: WINDOW_MS,
        in_window_requests: inside.len(),
        p50_in_window_us: median(&inside),
        p99_in_window_us: p99_in,
        p50_outside_us: median(&outside),
        p99_outside_us: p99_out,
        p99_ratio: p99_in / p99_out,
        control_plane_calls: stack.counter("credmgr.control_plane_call") - calls_before,
        refresh_ahead: stack.counter("credmgr.refresh_ahead") - ahead_before,
    })
}
