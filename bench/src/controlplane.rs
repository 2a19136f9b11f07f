//! The control plane's runtime API under load: token fetches served from the store (tokens
//! live an hour, so none is refreshed), on SQLite and (where a server answers) on PostgreSQL,
//! against the bare axum handler of `bare.rs`, all pinned to the server core, interleaved over
//! rounds like the data-plane variants.

use crate::stack::{Stack, CONNECTION, PROVIDER};
use crate::wrk::{self, median, Load, Run};
use anyhow::{bail, Result};
use credmgr_e2e::pg::TestDatabase;
use credmgr_e2e::{free_port, ControlPlane, Process};
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
    /// `None` when PostgreSQL was not reachable.
    pub postgresql: Option<Summary>,
    pub bare_axum: Summary,
    /// Tokens the OAuth server issued during the runs: 0 shows every fetch came from the store.
    pub oauth_tokens_issued_during_runs: u64,
}

/// Pins every thread of process `pid` to core `cpu`.
pub fn pin(pid: u32, cpu: usize) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", &cpu.to_string(), &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        bail!("taskset could not pin process {pid} to core {cpu}");
    }
    Ok(())
}

/// A second control plane, on a PostgreSQL database of its own (dropped afterwards), with the
/// same connection as the stack's; `None` (saying why) when no PostgreSQL server answers.
pub fn postgres_control_plane(
    stack: &Stack,
) -> Option<(ControlPlane, std::sync::Arc<TestDatabase>)> {
    if let Err(why) = credmgr_e2e::pg::reachable() {
        eprintln!("runtime API on PostgreSQL not measured: {why}");
        return None;
    }
    let db = std::sync::Arc::new(TestDatabase::create());
    let dir = stack.dir.join("postgresql");
    std::fs::create_dir_all(&dir).ok()?;
    // The same gateway key as the SQLite control plane: wrk sends one header to both.
    let gateway_keys = format!("test-gateway={}", stack.control_plane.gateway_key);
    let cp = ControlPlane::start_with(
        &dir,
        free_port(),
        &[
            ("RUST_LOG", "info"),
            ("CREDMGR_DATABASE_URL", db.url.as_str()),
            ("CREDMGR_GATEWAY_KEYS", gateway_keys.as_str()),
        ],
    );
    cp.create_client_credentials_connection(&stack.oauth, PROVIDER, CONNECTION);
    Some((cp, db))
}

pub fn run(
    stack: &Stack,
    postgres: Option<&ControlPlane>,
    server_cpu: usize,
    load: &Load,
    rounds: usize,
    warmup: &Load,
) -> Result<Outcome> {
    let cp = &stack.control_plane;
    pin(cp.process.pid(), server_cpu)?;
    if let Some(pg) = postgres {
        pin(pg.process.pid(), server_cpu)?;
        // Its first fetch asks the provider; every later one is served from the store.
        pg.runtime_token(PROVIDER, CONNECTION);
    }
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
    let mut targets = vec![
        ("sqlite", format!("{}{path}", cp.url)),
        ("bare_axum", format!("{bare_url}{path}")),
    ];
    if let Some(pg) = postgres {
        targets.push(("postgresql", format!("{}{path}", pg.url)));
    }
    let n = targets.len();
    let tokens_before = stack.oauth.tokens_issued();
    eprintln!("runtime API warm-up: {} s each", warmup.duration.as_secs());
    for (_, url) in &targets {
        wrk::run(url, &headers, warmup)?;
    }
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); n];
    for round in 0..rounds {
        eprintln!("runtime API round {}/{rounds}", round + 1);
        for i in 0..n {
            let v = (i + round) % n;
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
        postgresql: runs.get(2).map(summarize),
        bare_axum: summarize(&runs[1]),
        oauth_tokens_issued_during_runs: tokens_issued,
    })
}
