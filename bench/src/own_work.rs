//! credmgr's own work on a cache hit, apart from Envoy: `filter/examples/hotpath` runs the
//! filter's logic against an in-memory host, natively and as wasm32 under Node's V8. Envoy's
//! profile rows bound credmgr's own Rust work only to within the machine's noise; this pins it
//! down, and what is left of the `managed` row over `empty_wasm` is then the host calls and
//! Envoy's Wasm plumbing.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

use crate::wrk::median;

/// Requests per run of the example.
const REQUESTS: u32 = 2_000_000;

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Median over the runs, nanoseconds per request.
    pub native_ns: f64,
    pub wasm_v8_ns: f64,
    /// Host calls the filter makes per cache hit (each a crossing out of the VM in Envoy).
    pub host_calls_per_request: f64,
    pub runs: usize,
    pub requests_per_run: u32,
    pub cpu: usize,
}

/// Runs each build `runs` times, alternating, pinned to `cpu`.
pub fn run(root: &Path, cpu: usize, runs: usize) -> Result<Outcome> {
    let native = root.join("target/release/examples/hotpath");
    let wasm = root.join("target/wasm32-wasip1/release/examples/hotpath.wasm");
    let runner = root.join("scripts/wasi-run.mjs");
    for built in [&native, &wasm] {
        if !built.exists() {
            bail!(
                "{} is missing: `make bench-build` builds it",
                built.display()
            );
        }
    }
    let mut native_ns = Vec::new();
    let mut wasm_ns = Vec::new();
    let mut calls = None;
    let pinned = || {
        let mut cmd = Command::new("taskset");
        cmd.arg("-c").arg(cpu.to_string());
        cmd
    };
    for _ in 0..runs {
        let n = once(pinned().arg(&native))?;
        let w = once(
            pinned()
                .args(["node", "--no-warnings"])
                .arg(&runner)
                .arg(&wasm),
        )?;
        native_ns.push(number(&n, "ns_per_request")?);
        wasm_ns.push(number(&w, "ns_per_request")?);
        let (cn, cw) = (
            number(&n, "host_calls_per_request")?,
            number(&w, "host_calls_per_request")?,
        );
        if cn != cw {
            bail!("the native build makes {cn} host calls per request, the wasm32 one {cw}");
        }
        calls = Some(cn);
    }
    Ok(Outcome {
        native_ns: median(&native_ns),
        wasm_v8_ns: median(&wasm_ns),
        host_calls_per_request: calls.unwrap_or(0.0),
        runs,
        requests_per_run: REQUESTS,
        cpu,
    })
}

fn once(cmd: &mut Command) -> Result<Value> {
    let out = cmd
        .arg(REQUESTS.to_string())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).with_context(|| format!("{cmd:?} printed {text:?}"))
}

fn number(v: &Value, key: &str) -> Result<f64> {
    v[key]
        .as_f64()
        .with_context(|| format!("no number `{key}` in {v}"))
}

pub fn print(o: &Outcome) {
    println!();
    println!(
        "credmgr's own work on a cache hit, without Envoy (filter/examples/hotpath, {} runs x {} requests, core {})",
        o.runs, o.requests_per_run, o.cpu
    );
    println!(
        "  native {:.2} us, wasm32 in V8 (Node) {:.2} us per request; {} host calls per request",
        o.native_ns / 1000.0,
        o.wasm_v8_ns / 1000.0,
        o.host_calls_per_request
    );
}
