//! The cold path: what a cache miss adds to a request through Envoy. Requests are sent one at
//! a time (no coalescing, no queueing), alternating between the managed listener (a cached
//! token: hot) and the cold listener, whose filter counts every cached token as expired, so
//! each of its requests pauses for one call to the control plane, which serves the stored
//! token. The client thread runs pinned to the load core.

use crate::stack::Stack;
use crate::wrk::median;
use anyhow::{bail, Result};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub samples: usize,
    pub hot_p50_us: f64,
    pub hot_p99_us: f64,
    pub cold_p50_us: f64,
    pub cold_p99_us: f64,
    /// Cold minus hot, at the median and at p99.
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    /// Calls the filter made to the control plane during the cold requests (one each).
    pub control_plane_calls: u64,
}

/// The `q`-quantile (0..=1) of `v`, nearest rank.
fn quantile(v: &[f64], q: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
    v.get(rank - 1).copied().unwrap_or(f64::NAN)
}

/// Pins the calling thread to core `cpu`.
fn pin_current_thread(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it, and
    // sched_setaffinity(0, ...) only changes this thread's affinity.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

pub fn run(stack: &Stack, samples: usize, load_cpu: usize) -> Result<Outcome> {
    let hot_url = Stack::url(stack.ports.managed);
    let cold_url = Stack::url(stack.ports.cold);
    stack.wait_until_served(&cold_url, &[])?;
    let result = std::thread::scope(|s| {
        s.spawn(|| -> Result<(Vec<f64>, Vec<f64>, u64)> {
            pin_current_thread(load_cpu);
            let client = credmgr_e2e::http();
            let time = |url: &str| -> Result<f64> {
                let start = Instant::now();
                let resp = client.get(url).send()?;
                let status = resp.status().as_u16();
                resp.bytes()?;
                let us = start.elapsed().as_secs_f64() * 1e6;
                if status != 200 {
                    bail!("{url} answered {status} during the cold-path run");
                }
                Ok(us)
            };
            // Warm both connections and the JIT first.
            for _ in 0..50 {
                time(&hot_url)?;
                time(&cold_url)?;
            }
            let calls_before = stack.counter("credmgr.control_plane_call");
            let (mut hot, mut cold) = (Vec::new(), Vec::new());
            for _ in 0..samples {
                hot.push(time(&hot_url)?);
                cold.push(time(&cold_url)?);
            }
            let calls = stack.counter("credmgr.control_plane_call") - calls_before;
            Ok((hot, cold, calls))
        })
        .join()
    });
    let (hot, cold, calls) = match result {
        Ok(r) => r?,
        Err(_) => bail!("the cold-path client thread panicked"),
    };
    let (hot_p50, cold_p50) = (median(&hot), median(&cold));
    let (hot_p99, cold_p99) = (quantile(&hot, 0.99), quantile(&cold, 0.99));
    Ok(Outcome {
        samples,
        hot_p50_us: hot_p50,
        hot_p99_us: hot_p99,
        cold_p50_us: cold_p50,
        cold_p99_us: cold_p99,
        added_p50_us: cold_p50 - hot_p50,
        added_p99_us: cold_p99 - hot_p99,
        control_plane_calls: calls,
    })
}
