//! The processes of a credmgr deployment, each started for real: the OAuth server, the demo
//! backend, Envoy with the filter, and [`Deployment`], all four with the control plane
//! (`control_plane.rs`).

use crate::control_plane::ControlPlane;
use crate::process::NotReady;
use crate::{artifact, free_port, http, repo_root, run_ok, status_and_json, wait_for, Process};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long Envoy may take to start: `READY_TIMEOUT`, or `CREDMGR_E2E_ENVOY_READY_SECS` (Envoy
/// under valgrind, in `tests/instructions.rs`, loads V8 for minutes).
fn envoy_ready_timeout() -> Duration {
    std::env::var("CREDMGR_E2E_ENVOY_READY_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(READY_TIMEOUT, Duration::from_secs)
}

/// The OAuth server's one stdout line, followed by its issuer.
const READY_PREFIX: &str = "oauth-server listening on ";

/// The OAuth 2.0 server: npm `oidc-provider`, configured by `tests/oauth-server/server.mjs`.
pub struct OAuthServer {
    pub process: Process,
    /// The issuer, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

impl OAuthServer {
    /// Starts the server with extra environment (`ACCESS_TOKEN_TTL`, ...).
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> OAuthServer {
        let script_dir = repo_root().join("tests/oauth-server");
        assert!(
            script_dir.join("node_modules").exists(),
            "tests/oauth-server/node_modules is missing: run `make test` (it runs npm ci there)"
        );
        let command = || {
            let mut cmd = Command::new("node");
            cmd.arg("server.mjs")
                .current_dir(&script_dir)
                .env("PORT", "0");
            for (k, v) in env {
                cmd.env(k, v);
            }
            cmd
        };
        let mut process = Process::spawn("oauth-server", command(), dir);
        // oidc-provider is a fixture, not what is under test: once in 11 CI runs it printed
        // nothing for a minute after its start-up warning, and never again under any load
        // tried here. Such a start is recorded (`oauth-server.stalled.log`, and on stderr)
        // and made once more; a second stall, or any exit, fails the test.
        let url = match process.try_wait_for_line(READY_PREFIX, READY_TIMEOUT) {
            Ok(url) => url,
            Err(NotReady::Exited(why)) => panic!("{why}"),
            Err(NotReady::TimedOut(why)) => {
                eprintln!("{why}\nstarting the OAuth server again");
                let _ = std::fs::write(dir.join("oauth-server.stalled.log"), &why);
                process.kill();
                process = Process::spawn("oauth-server", command(), dir);
                process.wait_for_line(READY_PREFIX, READY_TIMEOUT)
            }
        };
        OAuthServer { process, url }
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.url)
    }

    /// The server's counters (`/test/stats`).
    pub fn stats(&self) -> Value {
        http()
            .get(format!("{}/test/stats", self.url))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("reading the OAuth server's stats: {e}"))
    }

    /// How many tokens the server issued.
    pub fn tokens_issued(&self) -> u64 {
        self.stats()["tokens_issued"]
            .as_u64()
            .unwrap_or_else(|| panic!("no tokens_issued in {}", self.stats()))
    }
}

/// The demo backend: accepts a request only if its bearer token is active at the OAuth server.
pub struct Backend {
    pub process: Process,
    pub url: String,
    pub port: u16,
}

impl Backend {
    pub fn start(dir: &Path, oauth: &OAuthServer) -> Backend {
        Backend::start_introspecting(dir, &format!("{}/token/introspection", oauth.url))
    }

    /// A backend that asks `introspection_url` whether tokens are active.
    pub fn start_introspecting(dir: &Path, introspection_url: &str) -> Backend {
        let bin = artifact(
            "CREDMGR_DEMO_BACKEND_BIN",
            "target/debug/credmgr-demo-backend",
        );
        let mut cmd = Command::new(bin);
        cmd.env("DEMO_BACKEND_LISTEN", "127.0.0.1:0")
            .env("DEMO_BACKEND_INTROSPECTION_URL", introspection_url);
        let mut process = Process::spawn("demo-backend", cmd, dir);
        let url = process.wait_for_line("demo-backend listening on ", READY_TIMEOUT);
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        Backend { process, url, port }
    }
}

/// Envoy with the credmgr filter, from one of the templates in `envoy/`.
pub struct Envoy {
    pub process: Process,
    pub url: String,
    pub admin_url: String,
}

impl Envoy {
    /// Renders `template` (a file name under `envoy/`) with `vars` plus the listener, admin
    /// and filter paths, writes it to `dir`, and returns the rendered file.
    pub fn render(dir: &Path, template: &str, vars: &[(&str, String)]) -> (PathBuf, u16, u16) {
        let listen = free_port();
        let admin = free_port();
        let wasm = artifact(
            "CREDMGR_WASM",
            "target/wasm32-wasip1/wasm/credmgr_filter.wasm",
        );
        let mut all: Vec<(&str, String)> = vec![
            ("ENVOY_LISTEN_PORT", listen.to_string()),
            ("ENVOY_ADMIN_PORT", admin.to_string()),
            ("CREDMGR_WASM", wasm.display().to_string()),
        ];
        all.extend(vars.iter().cloned());
        // The same renderer as `make run` and `make validate-envoy`, so the tests check the
        // templates exactly as shipped.
        let out = dir.join(template);
        let mut cmd = Command::new(repo_root().join("scripts/render-envoy"));
        cmd.arg(repo_root().join("envoy").join(template)).arg(&out);
        for (k, v) in &all {
            cmd.env(k, v);
        }
        run_ok(&format!("scripts/render-envoy {template}"), &mut cmd);
        (out, listen, admin)
    }

    fn command(config: &Path) -> Command {
        let mut cmd = Command::new(artifact("CREDMGR_ENVOY", ".venv/bin/envoy"));
        cmd.arg("-c")
            .arg(config)
            // Tests run several Envoys at once; hot restart's shared memory would collide.
            .arg("--disable-hot-restart")
            .args(["--concurrency", "2", "--log-level", "info"]);
        if let Some(dir) = crate::native_module_dir() {
            cmd.env("ENVOY_DYNAMIC_MODULES_SEARCH_PATH", dir);
        }
        cmd
    }

    /// Starts Envoy and waits until it is ready and its listener accepts connections.
    pub fn start(dir: &Path, template: &str, vars: &[(&str, String)]) -> Envoy {
        let (config, listen, admin) = Envoy::render(dir, template, vars);
        let mut process = Process::spawn("envoy", Envoy::command(&config), dir);
        let admin_url = format!("http://127.0.0.1:{admin}");
        let client = http();
        wait_for("Envoy to be ready", envoy_ready_timeout(), || {
            if let Some(code) = process.exited() {
                panic!(
                    "Envoy exited ({code}) while starting; its log:\n{}",
                    process.log_text()
                );
            }
            let ready = client.get(format!("{admin_url}/ready")).send().ok()?;
            (ready.status().as_u16() == 200).then_some(())
        });
        wait_for("Envoy's listener", envoy_ready_timeout(), || {
            std::net::TcpStream::connect(("127.0.0.1", listen)).ok()
        });
        Envoy {
            process,
            url: format!("http://127.0.0.1:{listen}"),
            admin_url,
        }
    }

    /// The value of the counter whose name ends with `suffix` in Envoy's `/stats` (filter
    /// counters appear as `wasmcustom.credmgr.<name>`); 0 when it is not there yet.
    pub fn stat(&self, suffix: &str) -> u64 {
        let text = http()
            .get(format!("{}/stats", self.admin_url))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("reading Envoy's /stats: {e}"));
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .find(|(name, _)| name.ends_with(suffix))
            .and_then(|(_, v)| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits (a few seconds at most) until the counter whose name ends with `suffix` reaches
    /// `at_least`, and returns it: the filter hands its counts to Envoy on its tick, so they
    /// appear a fraction of a second after the requests.
    pub fn wait_stat(&self, suffix: &str, at_least: u64) -> u64 {
        wait_for(
            &format!("Envoy stat {suffix} to reach {at_least}"),
            Duration::from_secs(10),
            || {
                let v = self.stat(suffix);
                (v >= at_least).then_some(v)
            },
        )
    }

    /// Runs Envoy on a configuration expected to be refused; returns its exit code and log.
    pub fn run_expecting_exit(
        dir: &Path,
        template: &str,
        vars: &[(&str, String)],
        edit: impl Fn(String) -> String,
    ) -> (i32, String) {
        let (config, _, _) = Envoy::render(dir, template, vars);
        let text = std::fs::read_to_string(&config).unwrap_or_default();
        std::fs::write(&config, edit(text))
            .unwrap_or_else(|e| panic!("writing {}: {e}", config.display()));
        let mut process = Process::spawn("envoy-refused", Envoy::command(&config), dir);
        let code = wait_for(
            "Envoy to refuse the configuration and exit",
            READY_TIMEOUT,
            || process.exited(),
        );
        (code, process.log_text())
    }
}

/// 128 random bits as hex, from the OS.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    let ok = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    assert!(ok, "reading /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A whole deployment: OAuth server, control plane, backend, and Envoy running the demo
/// gateway config for one client-credentials connection (`demo`/`demo`).
pub struct Deployment {
    // Field order is drop order: Envoy stops first, the OAuth server last.
    pub envoy: Envoy,
    pub backend: Backend,
    pub control_plane: ControlPlane,
    pub oauth: OAuthServer,
    pub dir: tempfile::TempDir,
}

pub const PROVIDER: &str = "demo";
pub const CONNECTION: &str = "demo";

impl Deployment {
    /// Starts everything with `envoy/demo.yaml`; `access_token_ttl` is the lifetime, in
    /// seconds, of the tokens the OAuth server issues.
    pub fn start(access_token_ttl: u32) -> Deployment {
        Deployment::start_with(access_token_ttl, "demo.yaml")
    }

    /// Starts everything with the Envoy template `template` (under `envoy/`).
    pub fn start_with(access_token_ttl: u32, template: &str) -> Deployment {
        let dir = tempfile::Builder::new()
            .prefix("credmgr-e2e-")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        let oauth = OAuthServer::start(
            dir.path(),
            &[("ACCESS_TOKEN_TTL", &access_token_ttl.to_string())],
        );
        let control_plane = ControlPlane::start(dir.path());
        let backend = Backend::start(dir.path(), &oauth);
        control_plane.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
        Deployment::with_envoy(dir, oauth, control_plane, backend, template)
    }

    /// Starts Envoy from `template` in front of the other three, and holds them all.
    pub fn with_envoy(
        dir: tempfile::TempDir,
        oauth: OAuthServer,
        control_plane: ControlPlane,
        backend: Backend,
        template: &str,
    ) -> Deployment {
        let envoy = Envoy::start(
            dir.path(),
            template,
            &Deployment::envoy_vars(&control_plane, &backend),
        );
        Deployment {
            envoy,
            backend,
            control_plane,
            oauth,
            dir,
        }
    }

    /// The placeholders of `envoy/demo.yaml` other than ports and paths.
    pub fn envoy_vars(cp: &ControlPlane, backend: &Backend) -> Vec<(&'static str, String)> {
        vec![
            ("CONTROL_PLANE_PORT", cp.port.to_string()),
            ("BACKEND_PORT", backend.port.to_string()),
            ("CREDMGR_GATEWAY_KEY", cp.gateway_key.clone()),
            ("CREDMGR_PROVIDER_ID", PROVIDER.to_owned()),
            ("CREDMGR_CONNECTION_ID", CONNECTION.to_owned()),
        ]
    }

    /// A request through Envoy, as a caller with no credentials of its own would send it.
    pub fn call(&self, path: &str) -> (u16, Value) {
        self.call_with(path, &[])
    }

    /// A request through Envoy that the backend must accept, with an active token of the
    /// client `credmgr-demo`; returns what the backend saw.
    pub fn call_accepted(&self, path: &str) -> Value {
        let (status, seen) = self.call(path);
        assert_eq!(
            status, 200,
            "{path}: the backend must accept the token credmgr injected: {seen}"
        );
        assert_eq!(seen["active"], true, "{path}: {seen}");
        assert_eq!(seen["client_id"], "credmgr-demo", "{path}: {seen}");
        seen
    }

    /// A request through Envoy with the given headers.
    pub fn call_with(&self, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = http().get(format!("{}{path}", self.envoy.url));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        status_and_json(
            req.send()
                .unwrap_or_else(|e| panic!("request through Envoy: {e}")),
        )
    }
}
