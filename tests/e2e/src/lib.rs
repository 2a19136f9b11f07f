//! Fixtures for credmgr's end-to-end tests: each starts one real process (the `oidc-provider`
//! OAuth server, the control plane, the demo backend, Envoy with the filter) on 127.0.0.1 and a
//! free port, waits until it is ready (a line on stdout, or a port that answers), and stops it
//! when dropped, also when the test fails. Their logs are kept in files, so a test can search
//! them for secrets and a failing test can show them.

pub mod cluster;
pub mod consent;
pub mod control_plane;
pub mod fake_saas;
pub mod gate;
pub mod issuer;
pub mod local_server;
pub mod otlp_collector;
pub mod pg;
pub mod process;
pub mod stack;
pub mod traffic;

pub use control_plane::ControlPlane;
pub use process::Process;
pub use stack::{Backend, Deployment, Envoy, OAuthServer};

use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The repository's top directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A path from the environment (set by the Makefile) or its default under the repository;
/// the error says how to get it.
pub fn artifact(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(default));
    assert!(
        path.exists(),
        "{} not found (set {env} or run the tests with `make test`, which builds it)",
        path.display()
    );
    path
}

/// With `CREDMGR_FILTER_BUILD=native`, the tests run the native build of the filter (an Envoy
/// dynamic module) instead of the Wasm one: `scripts/render-envoy` (which Envoy's fixture runs
/// with the test's environment) renders the credmgr filter as the module, and Envoy finds the
/// module in the directory returned here (`CREDMGR_NATIVE_MODULE`, by default the debug build
/// `make native` leaves). `None` for the Wasm build.
pub fn native_module_dir() -> Option<PathBuf> {
    if std::env::var("CREDMGR_FILTER_BUILD").as_deref() != Ok("native") {
        return None;
    }
    let module = artifact(
        "CREDMGR_NATIVE_MODULE",
        "target/debug/libcredmgr_filter_native.so",
    );
    module.parent().map(PathBuf::from)
}

/// A port that was free a moment ago. The process that gets it binds it right away; the
/// short race with other programs is accepted in exchange for fixed, known ports.
///
/// Never the same port twice in one test process: the port is free once its probe socket is
/// closed, so the kernel may offer it again to the next probe, and two servers of one test
/// (Envoy's listener and its admin, say) would then be given the same port and one of them
/// fail to bind (seen in CI).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e}"));
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `check` until it returns `Some`, or fails after `timeout` with `what` in the message.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An HTTP client for tests: short timeouts, no redirects, no proxy from the environment.
pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("building the HTTP client: {e}"))
}

/// Runs `cmd` to its end and returns its stdout; fails, with `what` and the command's stderr
/// in the message, when it cannot start or exits unsuccessfully.
pub fn run_ok(what: &str, cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A response's status and JSON body; a body that is not JSON comes as `{"raw": text}`.
pub fn status_and_json(resp: reqwest::blocking::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text})),
    )
}

/// Wall-clock time, Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Does `haystack` contain `needle`? For searching files' bytes for secrets.
pub fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
