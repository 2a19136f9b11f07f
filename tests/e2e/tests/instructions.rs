//! Instructions per request that Envoy executes with each build of the filter, counted by
//! valgrind's callgrind over the whole Envoy process (`--concurrency 1`): the demo gateway
//! (`envoy/demo.yaml`, a managed identity's token from the cache) with the Wasm build, with the
//! native build, and without the filter, its route adding an `Authorization` header of its own
//! (`request_headers_to_add` of a token the backend accepts, the floor). Slow (Envoy under valgrind) and machine-dependent, so
//! not part of `make test`:
//!
//! ```sh
//! cargo build --release -p credmgr-filter-native
//! CREDMGR_NATIVE_MODULE=$PWD/target/release/libcredmgr_filter_native.so \
//!   cargo test -p credmgr-e2e --test instructions -- --ignored --nocapture
//! ```
//!
//! Each variant: 100 warm-up requests, then callgrind's counters are zeroed, `REQUESTS`
//! sequential keep-alive requests are made, and the counters dumped; the same is done over as
//! long a time without requests, and that idle work is subtracted. `INSTRUCTIONS_VARIANTS`
//! (default `baseline,native,wasm`) chooses the variants; callgrind's dumps stay in
//! `target/instructions/` for `callgrind_annotate`.

use credmgr_e2e::stack::{CONNECTION, PROVIDER};
use credmgr_e2e::{repo_root, Backend, ControlPlane, Deployment, OAuthServer};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const REQUESTS: u64 = 1000;

/// Runs Envoy under callgrind: one worker; for the baseline, the credmgr filter taken out of
/// the rendered configuration and the header added by the route instead.
const WRAPPER: &str = r#"#!/bin/bash
args=("$@")
for i in "${!args[@]}"; do
  [ "${args[$i]}" = "--concurrency" ] && args[$((i+1))]=1
  [ "${args[$i]}" = "-c" ] && config="${args[$((i+1))]}"
done
if [ -n "$INSTRUCTIONS_BASELINE" ]; then
  python3 - "$config" <<'EOF'
import os, sys
lines = open(sys.argv[1]).read().split("\n")
out, skipping = [], False
for line in lines:
    if line.strip() == "- name: credmgr":
        skipping = True
    elif line.strip() == "- name: envoy.filters.http.router":
        skipping = False
    if skipping:
        continue
    out.append(line)
    if line.strip() == "route: { cluster: backend }":
        pad = line[: len(line) - len(line.lstrip())]
        token = os.environ["INSTRUCTIONS_BASELINE"]
        out.append(pad + f'request_headers_to_add: [{{ header: {{ key: authorization, value: "Bearer {token}" }} }}]')
open(sys.argv[1], "w").write("\n".join(out))
EOF
fi
exec valgrind --tool=callgrind --callgrind-out-file="$INSTRUCTIONS_OUT" --dump-instr=no \
  "$INSTRUCTIONS_ENVOY" "${args[@]}"
"#;

/// The instruction total of callgrind's latest dump for `out`.
fn last_dump_total(out: &Path) -> u64 {
    let dir = out.parent().unwrap();
    let stem = out.file_name().unwrap().to_string_lossy().into_owned();
    let mut dumps: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("{stem}.")))
        })
        .collect();
    dumps.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let text = std::fs::read_to_string(dumps.last().expect("a callgrind dump")).unwrap();
    text.lines()
        .find_map(|l| {
            l.strip_prefix("summary: ")
                .or_else(|| l.strip_prefix("totals: "))
        })
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("callgrind's total")
}

fn callgrind_control(flag: &str, pid: u32) {
    let status = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "callgrind_control {flag} {pid}");
}

fn measure(name: &str, build: &str, baseline: bool, work: &Path) -> u64 {
    let out = work.join(format!("callgrind-{name}"));
    std::env::set_var("INSTRUCTIONS_OUT", &out);
    std::env::set_var("CREDMGR_FILTER_BUILD", build);
    std::env::remove_var("INSTRUCTIONS_BASELINE");
    let dir = tempfile::Builder::new()
        .prefix("credmgr-e2e-")
        .tempdir()
        .unwrap();
    let oauth = OAuthServer::start(dir.path(), &[("ACCESS_TOKEN_TTL", "3600")]);
    let control_plane = ControlPlane::start(dir.path());
    let backend = Backend::start(dir.path(), &oauth);
    control_plane.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
    if baseline {
        // The floor adds a token the backend accepts, so that both answers are the same.
        let token = control_plane
            .runtime_token(PROVIDER, CONNECTION)
            .access_token;
        std::env::set_var("INSTRUCTIONS_BASELINE", token);
    }
    let d = Deployment::with_envoy(dir, oauth, control_plane, backend, "demo.yaml");
    let pid = d.envoy.process.pid();
    for _ in 0..100 {
        d.call("/");
    }
    let (status, _) = d.call("/");
    assert_eq!(status, 200, "{name}");

    callgrind_control("-z", pid);
    let start = Instant::now();
    for _ in 0..REQUESTS {
        d.call("/");
    }
    let elapsed = start.elapsed();
    callgrind_control("-d", pid);
    let busy = last_dump_total(&out);

    callgrind_control("-z", pid);
    std::thread::sleep(elapsed);
    callgrind_control("-d", pid);
    let idle = last_dump_total(&out);
    let per_request = busy.saturating_sub(idle) / REQUESTS;
    println!(
        "{name}: {per_request} instructions/request ({busy} in {REQUESTS} requests over \
         {elapsed:?}, {idle} idle over as long)"
    );
    per_request
}

#[test]
#[ignore = "minutes under valgrind; run by hand, see the file's comment"]
fn instructions_per_request_of_each_build() {
    // Callgrind's dumps are kept here, for `callgrind_annotate`.
    let work = repo_root().join("target/instructions");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let wrapper = work.join("envoy-callgrind");
    std::fs::write(&wrapper, WRAPPER).unwrap();
    Command::new("chmod")
        .arg("+x")
        .arg(&wrapper)
        .status()
        .unwrap();
    // The binary itself: `.venv/bin/envoy` is pip's Python launcher, which valgrind would
    // measure instead.
    let lib = repo_root().join(".venv/lib");
    let envoy = std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.exists())
        .expect("Envoy's binary under .venv/lib (make tools)");
    std::env::set_var("INSTRUCTIONS_ENVOY", envoy);
    std::env::set_var("CREDMGR_ENVOY", &wrapper);
    std::env::set_var("CREDMGR_E2E_ENVOY_READY_SECS", "600");
    let variants = std::env::var("INSTRUCTIONS_VARIANTS")
        .unwrap_or_else(|_| "baseline,native,wasm".to_owned());
    let mut baseline = None;
    for variant in variants.split(',') {
        let n = match variant {
            "baseline" => measure("baseline", "wasm", true, &work),
            "native" => measure("native", "native", false, &work),
            "wasm" => measure("wasm", "wasm", false, &work),
            other => panic!("unknown variant {other}"),
        };
        match baseline {
            None if variant == "baseline" => baseline = Some(n),
            Some(b) => println!("{variant}: {:.3} of the baseline", n as f64 / b as f64),
            None => {}
        }
    }
}
