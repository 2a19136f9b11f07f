//! One load run with `wrk`, pinned to the load generator's core, read through the `done` hook
//! in `bench/wrk-report.lua`.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How load is generated: a closed loop of `connections` keep-alive connections from one wrk
/// thread on core `cpu`.
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub connections: u32,
    pub duration: Duration,
    pub cpu: usize,
}

/// What one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub requests: u64,
    /// Answers other than 2xx: the benchmark backend answers 401 to a request that arrived
    /// without an Authorization header, so any count here means lost credentials.
    pub non_2xx: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// CPU time the server used per request during the run, when it was measured: unlike
    /// throughput, it does not depend on how much of its core the server got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_cpu_us_per_request: Option<f64>,
}

#[derive(Deserialize)]
struct Report {
    requests: u64,
    duration_us: u64,
    p50_us: f64,
    p99_us: f64,
    non_2xx: u64,
    socket_errors: u64,
}

/// Runs wrk against `url` with extra request `headers`.
pub fn run(url: &str, headers: &[(&str, &str)], load: &Load) -> Result<Run> {
    let script = credmgr_e2e::repo_root().join("bench/wrk-report.lua");
    run_script(url, headers, load, &script, &[])
}

/// Runs wrk against `url`, each request presenting the next of the JWTs in `jwt_file` (one a
/// line) as its bearer token, round the list (`bench/wrk-per-user.lua`).
pub fn run_rotating(url: &str, load: &Load, jwt_file: &Path) -> Result<Run> {
    let root = credmgr_e2e::repo_root();
    let report = root.join("bench/wrk-report.lua");
    let env = [
        ("CREDMGR_BENCH_JWTS", jwt_file.as_os_str()),
        ("CREDMGR_BENCH_REPORT", report.as_os_str()),
    ];
    run_script(url, &[], load, &root.join("bench/wrk-per-user.lua"), &env)
}

fn run_script(
    url: &str,
    headers: &[(&str, &str)],
    load: &Load,
    script: &Path,
    env: &[(&str, &OsStr)],
) -> Result<Run> {
    let mut cmd = Command::new("taskset");
    cmd.envs(env.iter().copied());
    cmd.arg("-c")
        .arg(load.cpu.to_string())
        .arg("wrk")
        .args(["-t", "1", "-c"])
        .arg(load.connections.to_string())
        .arg("-d")
        .arg(format!("{}s", load.duration.as_secs().max(1)))
        .arg("-s")
        .arg(script);
    for (name, value) in headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(url);
    let out = cmd
        .output()
        .context("running wrk (is it installed? `make bench` installs the Debian package)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("credmgr-bench "))
        .with_context(|| format!("no report line in wrk's output:\n{stdout}"))?;
    let r: Report = serde_json::from_str(line).with_context(|| format!("wrk report {line}"))?;
    if r.duration_us == 0 || r.requests == 0 {
        bail!("wrk made no requests against {url}:\n{stdout}");
    }
    Ok(Run {
        rps: r.requests as f64 / (r.duration_us as f64 / 1e6),
        p50_us: r.p50_us,
        p99_us: r.p99_us,
        requests: r.requests,
        non_2xx: r.non_2xx,
        socket_errors: r.socket_errors,
        server_cpu_us_per_request: None,
    })
}

/// The median of `values` (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
