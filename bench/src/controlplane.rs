//! The control plane's runtime API under load: token fetches served from the store (tokens
//! live an hour, so none is refreshed), against the bare axum handler of `bare.rs`, both
//! pinned to the server core, interleaved over rounds like the data-plane variants.

use crate::stack::{Stack, CONNECTION, PROVIDER};
use crate::wrk::{self, median, Load, Run};
use anyhow::{bail, Result};
use credmgr_e2e::Process;
use serde::Serialize;
use std::process::Command;
use std::time::Duration;

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// Medians of the per-round ratios to the bare handler.
    pub rps_ratio: f64,
    pub p99_ratio: f64,
    pub non_2xx: u64,
    pub socket_errors: u64,
    pub rounds: Vec<Run>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub sqlite: Summary,
    pub bare_axum: Summary,
    /// Tokens the OAuth server issued during the runs: 0 shows every fetch came from the store.
    pub oauth_tokens_issued_during_runs: u64,
}

/// Pins every thread of process `pid` to core `cpu`.
fn pin(pid: u32, cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("taskset could not pin process {pid} to core {cpu}");
    }
    Ok(())
}

pub fn run(
    stack: &Stack,
    server_cpu: usize,
    load: &Load,
    rounds: usize,
    warmup: &Load,
) -> Result<Outcome> {
    let cp = &stack.control_plane;
    pin(cp.process.pid(), server_cpu)?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c")
        .arg(server_cpu.to_string())
        .arg(std::env::current_exe()?)
        .args(["bare-runtime", "--listen", "127.0.0.1:0"])
        .env(crate::bare::KEY_ENV, &cp.gateway_key);
    let mut bare = Process::spawn("bare-runtime", cmd, &stack.dir);
    let bare_url = bare.wait_for_line("bare-runtime listening on ", Duration::from_secs(30));
    let path = credmgr_common::runtime::token_path(PROVIDER, CONNECTION);
    let auth = format!("Bearer {}", cp.gateway_key);
    let headers = [("authorization", auth.as_str())];
    let targets = [
        ("sqlite", format!("{}{path}", cp.url)),
        ("bare_axum", format!("{bare_url}{path}")),
    ];
    let tokens_before = stack.oauth.tokens_issued();
    eprintln!("runtime API warm-up: {} s each", warmup.duration.as_secs());
    for (_, url) in &targets {
        wrk::run(url, &headers, warmup)?;
    }
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        eprintln!("runtime API round {}/{rounds}", round + 1);
        for i in 0..2 {
            let v = (i + round) % 2;
            let (name, url) = &targets[v];
            let r = wrk::run(url, &headers, load)?;
            eprintln!(
                "  {name:<20} {:>9.0} req/s  p50 {:>6.0} us  p99 {:>6.0} us",
                r.rps, r.p50_us, r.p99_us
            );
            runs[v].push(r);
        }
    }
    let tokens_issued = stack.oauth.tokens_issued() - tokens_before;
    bare.stop();
    let summarize = |rs: &Vec<Run>| {
        let col = |f: fn(&Run) -> f64| median(&rs.iter().map(f).collect::<Vec<_>>());
        let ratio = |f: fn(&Run) -> f64| {
            median(
                &rs.iter()
                    .zip(&runs[1])
                    .map(|(r, b)| f(r) / f(b))
                    .collect::<Vec<_>>(),
            )
        };
        Summary {
            rps: col(|r| r.rps),
            p50_us: col(|r| r.p50_us),
            p99_us: col(|r| r.p99_us),
            rps_ratio: ratio(|r| r.rps),
            p99_ratio: ratio(|r| r.p99_us),
            non_2xx: rs.iter().map(|r| r.non_2xx).sum(),
            socket_errors: rs.iter().map(|r| r.socket_errors).sum(),
            rounds: rs.clone(),
        }
    };
    Ok(Outcome {
        sqlite: summarize(&runs[0]),
        bare_axum: summarize(&runs[1]),
        oauth_tokens_issued_during_runs: tokens_issued,
    })
}
