//! The processes a benchmark run needs, started with the end-to-end fixtures: the OAuth server,
//! the control plane with one client-credentials connection, and one Envoy running
//! `envoy/bench.yaml` with `--concurrency 1`, pinned to the server core. Each is stopped when
//! the stack is dropped, also when the run fails.

use anyhow::{bail, Result};
use credmgr_e2e::issuer::Issuer;
use credmgr_e2e::{free_port, http, wait_for, ControlPlane, OAuthServer, Process};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub const PROVIDER: &str = "bench";
pub const CONNECTION: &str = "bench";
/// The audience of the OAuth server's JWT access tokens, which the jwt variant's callers
/// present.
pub const CALLER_AUDIENCE: &str = "api://credmgr-bench";

/// Makes the OAuth server a trusted issuer and lets its `credmgr-demo` client (the jwt
/// variant's caller) use the connection.
fn trust_callers(cp: &ControlPlane, oauth: &OAuthServer) -> Result<()> {
    let (status, body) = cp.admin(
        "PUT",
        "/v1/trusted-issuers/bench",
        Some(serde_json::json!({
            "issuer": oauth.url, "audiences": [CALLER_AUDIENCE],
            "jwks_uri": format!("{}/jwks", oauth.url),
        })),
    );
    if status != 201 {
        bail!("creating the trusted issuer: {status} {body}");
    }
    cp.allow(
        PROVIDER,
        CONNECTION,
        "bench-caller",
        serde_json::json!({"kind": "application", "issuer": oauth.url, "client_id": "credmgr-demo"}),
    );
    Ok(())
}

/// The listeners of `envoy/bench.yaml`, by the variant they serve.
#[derive(Debug, Clone)]
pub struct Ports {
    pub baseline: u16,
    pub managed: u16,
    pub jwt: u16,
    pub credential_injector: u16,
    /// credmgr choosing its policy set by request matching, no route metadata.
    pub matched: u16,
    /// credmgr with `authorization-id` templated from the caller's verified `sub`.
    pub per_user: u16,
    pub empty_wasm: u16,
    /// The empty filter with every callback the SDK exports (see the Makefile's `wasm`).
    pub empty_sdk: u16,
    /// credmgr with `retire_on_backend_401` off, from the lean module.
    pub managed_lean: u16,
    /// credmgr with the route naming its policy set in metadata.
    pub managed_named: u16,
    /// The probe filter setting the header only, without a response callback.
    pub header_only: u16,
    /// The probe filter's one-host-call listeners: set, status, code, clock, meta.
    pub probe_one: [u16; 5],
    pub cold: u16,
    /// The probe filter's listeners: lookup, inject, all, shared (see dataplane::PROFILE).
    pub probe: [u16; 4],
    pub backend: u16,
    pub admin: u16,
}

/// How many users the per_user variant rotates through.
pub const PER_USER_USERS: usize = 300;

/// The per_user variant's callers: a trusted issuer of the harness's own (its JWKS served
/// here), and for each of its users a connection `u-<sub>` that only this user may use.
pub struct PerUser {
    /// Held so that its JWKS server keeps answering the control plane.
    _issuer: Issuer,
    /// One JWT per user.
    pub jwts: Vec<String>,
    /// The same, one a line, for wrk (`bench/wrk-per-user.lua`).
    pub jwt_file: PathBuf,
}

impl PerUser {
    fn start(cp: &ControlPlane, dir: &Path) -> Result<PerUser> {
        let issuer = Issuer::start();
        issuer.trusted_by(cp);
        let mut jwts = Vec::with_capacity(PER_USER_USERS);
        for i in 0..PER_USER_USERS {
            let sub = format!("user{i:04}");
            issuer.connect_user(cp, PROVIDER, &sub);
            jwts.push(issuer.jwt(&sub));
        }
        let jwt_file = dir.join("per-user-jwts.txt");
        std::fs::write(&jwt_file, jwts.join("\n"))?;
        Ok(PerUser {
            _issuer: issuer,
            jwts,
            jwt_file,
        })
    }
}

pub struct Stack {
    // Field order is drop order: Envoy stops first, the OAuth server last. Envoy is only
    // held to be stopped; it is reached through its ports.
    _envoy: Process,
    envoy_pid: u32,
    pub per_user: PerUser,
    pub control_plane: ControlPlane,
    pub oauth: OAuthServer,
    pub ports: Ports,
    pub dir: PathBuf,
}

impl Stack {
    /// Starts everything in `dir`, Envoy with `concurrency` workers pinned to the cores
    /// `cpus` (a taskset list, e.g. "0" or "0,1"); the OAuth server's tokens live
    /// `token_ttl_s` seconds.
    pub fn start(dir: &Path, cpus: &str, concurrency: u32, token_ttl_s: u32) -> Result<Stack> {
        Stack::start_under(dir, cpus, concurrency, token_ttl_s, &[], None)
    }

    /// As [`Stack::start`], Envoy run by the command `wrapper` (e.g. valgrind and its
    /// options; empty: Envoy itself), with only the `listeners` named (all: `None`). A
    /// wrapper runs the Envoy binary, not the virtualenv's launcher script. (Under valgrind,
    /// V8's address-space reservations for every Wasm VM of envoy/bench.yaml do not fit.)
    pub fn start_under(
        dir: &Path,
        cpus: &str,
        concurrency: u32,
        token_ttl_s: u32,
        wrapper: &[String],
        listeners: Option<&[&str]>,
    ) -> Result<Stack> {
        // JWT access tokens (RFC 9068): the jwt variant's callers present one of this server's
        // tokens, so it is also the callers' trusted issuer.
        let oauth = OAuthServer::start(
            dir,
            &[
                ("ACCESS_TOKEN_TTL", &token_ttl_s.to_string()),
                ("JWT_AUDIENCE", CALLER_AUDIENCE),
            ],
        );
        // Info level, as in production: the tests' debug level logs every token handed out.
        // The refresh run uses tokens of seconds: a skew of a second keeps the control plane's
        // refresh point at 80 % of their lifetime, as it is for hour-long tokens with the
        // default skew of a minute (a skew longer than the lifetime moves it to half-life).
        // Under a wrapper (callgrind), gateways are not asked to fetch access decisions again
        // during the run: those background fetches (20 a second for per_user's 300 users)
        // are idle work whose bursts would blur the subtraction.
        let access_refresh = if wrapper.is_empty() { "30s" } else { "120m" };
        let control_plane = ControlPlane::start_with(
            dir,
            free_port(),
            &[
                ("RUST_LOG", "info"),
                ("CREDMGR_REFRESH_SKEW", "1s"),
                ("CREDMGR_ACCESS_REFRESH", access_refresh),
            ],
        );
        control_plane.create_client_credentials_connection(&oauth, PROVIDER, CONNECTION);
        trust_callers(&control_plane, &oauth)?;
        let per_user = PerUser::start(&control_plane, dir)?;
        let oauth_port = oauth
            .url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or(0);
        let ports = Ports {
            baseline: free_port(),
            managed: free_port(),
            jwt: free_port(),
            credential_injector: free_port(),
            matched: free_port(),
            per_user: free_port(),
            empty_wasm: free_port(),
            empty_sdk: free_port(),
            managed_lean: free_port(),
            managed_named: free_port(),
            header_only: free_port(),
            probe_one: [
                free_port(),
                free_port(),
                free_port(),
                free_port(),
                free_port(),
            ],
            cold: free_port(),
            probe: [free_port(), free_port(), free_port(), free_port()],
            backend: free_port(),
            admin: 0,
        };
        let empty_wasm = credmgr_e2e::artifact(
            "CREDMGR_BENCH_EMPTY_WASM",
            "target/wasm32-wasip1/wasm/credmgr_bench_empty_filter.wasm",
        );
        let empty_sdk_wasm = credmgr_e2e::artifact(
            "CREDMGR_BENCH_EMPTY_SDK_WASM",
            "target/wasm32-wasip1/wasm/credmgr_bench_empty_filter_sdk.wasm",
        );
        let probe_wasm = credmgr_e2e::artifact(
            "CREDMGR_BENCH_PROBE_WASM",
            "target/wasm32-wasip1/wasm/credmgr_bench_probe_filter.wasm",
        );
        let lean_wasm = credmgr_e2e::artifact(
            "CREDMGR_LEAN_WASM",
            "target/wasm32-wasip1/wasm/credmgr_filter_lean.wasm",
        );
        let header_only_wasm = credmgr_e2e::artifact(
            "CREDMGR_BENCH_HEADER_ONLY_WASM",
            "target/wasm32-wasip1/wasm/credmgr_bench_header_only.wasm",
        );
        // Under a wrapper (callgrind), ticks and stats flushes are rarer: they are idle work.
        let (tick_ms, stats_flush) = if wrapper.is_empty() {
            ("200", "5s")
        } else {
            ("5000", "60s")
        };
        let vars = vec![
            ("BENCH_TICK_MS", tick_ms.to_owned()),
            ("BENCH_STATS_FLUSH", stats_flush.to_owned()),
            ("CREDMGR_LEAN_WASM", lean_wasm.display().to_string()),
            (
                "BENCH_HEADER_ONLY_WASM",
                header_only_wasm.display().to_string(),
            ),
            ("BENCH_MANAGED_LEAN_PORT", ports.managed_lean.to_string()),
            ("BENCH_MANAGED_NAMED_PORT", ports.managed_named.to_string()),
            ("BENCH_HEADER_ONLY_PORT", ports.header_only.to_string()),
            ("BENCH_PROBE_SET_PORT", ports.probe_one[0].to_string()),
            ("BENCH_PROBE_STATUS_PORT", ports.probe_one[1].to_string()),
            ("BENCH_PROBE_CODE_PORT", ports.probe_one[2].to_string()),
            ("BENCH_PROBE_CLOCK_PORT", ports.probe_one[3].to_string()),
            ("BENCH_PROBE_META_PORT", ports.probe_one[4].to_string()),
            ("BENCH_PROBE_LOOKUP_PORT", ports.probe[0].to_string()),
            ("BENCH_PROBE_INJECT_PORT", ports.probe[1].to_string()),
            ("BENCH_PROBE_ALL_PORT", ports.probe[2].to_string()),
            ("BENCH_PROBE_SHARED_PORT", ports.probe[3].to_string()),
            ("BENCH_PROBE_WASM", probe_wasm.display().to_string()),
            ("BENCH_BASELINE_PORT", ports.baseline.to_string()),
            ("BENCH_MANAGED_PORT", ports.managed.to_string()),
            ("BENCH_JWT_PORT", ports.jwt.to_string()),
            ("BENCH_INJECTOR_PORT", ports.credential_injector.to_string()),
            ("BENCH_MATCHED_PORT", ports.matched.to_string()),
            ("BENCH_PER_USER_PORT", ports.per_user.to_string()),
            ("BENCH_EMPTY_WASM_PORT", ports.empty_wasm.to_string()),
            ("BENCH_COLD_PORT", ports.cold.to_string()),
            ("BENCH_BACKEND_PORT", ports.backend.to_string()),
            ("BENCH_EMPTY_WASM", empty_wasm.display().to_string()),
            ("BENCH_EMPTY_SDK_PORT", ports.empty_sdk.to_string()),
            ("BENCH_EMPTY_SDK_WASM", empty_sdk_wasm.display().to_string()),
            ("OAUTH_SERVER_PORT", oauth_port.to_string()),
            ("CONTROL_PLANE_PORT", control_plane.port.to_string()),
            ("CREDMGR_GATEWAY_KEY", control_plane.gateway_key.clone()),
            ("CREDMGR_PROVIDER_ID", PROVIDER.to_owned()),
            ("CREDMGR_CONNECTION_ID", CONNECTION.to_owned()),
        ];
        let (config, _, admin) = credmgr_e2e::Envoy::render(dir, "bench.yaml", &vars);
        if let Some(keep) = listeners {
            let text = std::fs::read_to_string(&config)?;
            std::fs::write(&config, only_listeners(&text, keep))?;
        }
        let ports = Ports { admin, ..ports };
        let mut envoy_bin = credmgr_e2e::artifact("CREDMGR_ENVOY", ".venv/bin/envoy");
        if !wrapper.is_empty() {
            envoy_bin = envoy_binary(&envoy_bin);
        }
        let mut cmd = Command::new("taskset");
        cmd.arg("-c")
            .arg(cpus)
            .args(wrapper)
            .arg(envoy_bin)
            .arg("-c")
            .arg(&config)
            .arg("--disable-hot-restart")
            .arg("--concurrency")
            .arg(concurrency.to_string())
            .args(["--log-level", "warn"]);
        let mut envoy = Process::spawn("envoy", cmd, dir);
        let admin_url = format!("http://127.0.0.1:{admin}");
        let client = http();
        // Under valgrind, Envoy starts its Wasm VMs many times slower.
        let ready_within = Duration::from_secs(if wrapper.is_empty() { 60 } else { 600 });
        wait_for("Envoy to be ready", ready_within, || {
            if let Some(code) = envoy.exited() {
                panic!(
                    "Envoy exited ({code}) while starting; its log:\n{}",
                    envoy.log_text()
                );
            }
            let ready = client.get(format!("{admin_url}/ready")).send().ok()?;
            (ready.status().as_u16() == 200).then_some(())
        });
        let stack = Stack {
            envoy_pid: envoy.pid(),
            _envoy: envoy,
            per_user,
            control_plane,
            oauth,
            ports,
            dir: dir.to_path_buf(),
        };
        if !stack.has_listener("backend")? {
            bail!("envoy/bench.yaml has no backend listener");
        }
        Ok(stack)
    }

    /// Envoy's process id (also when a wrapper such as valgrind runs it: each execs).
    pub fn envoy_pid(&self) -> u32 {
        self.envoy_pid
    }

    pub fn url(port: u16) -> String {
        format!("http://127.0.0.1:{port}/")
    }

    /// CPU time Envoy has used so far, all threads, user and system, in microseconds (from
    /// /proc; `taskset` and the virtualenv's launcher exec Envoy, so the pid is Envoy's).
    pub fn envoy_cpu_us(&self) -> Option<f64> {
        cpu_time_us(self.envoy_pid)
    }

    /// Does the running Envoy have a listener named `name`?
    pub fn has_listener(&self, name: &str) -> Result<bool> {
        let text = http()
            .get(format!("http://127.0.0.1:{}/listeners", self.ports.admin))
            .send()?
            .text()?;
        let prefix = format!("{name}::");
        Ok(text.lines().any(|l| l.starts_with(&prefix)))
    }

    /// Envoy's counters whose names end with `suffix`, summed (0 when none exists yet).
    pub fn counter(&self, suffix: &str) -> u64 {
        // The filter hands its counts to Envoy on its tick (every 200 ms by default): wait
        // longer than that, so the figure includes every request made before this call.
        std::thread::sleep(Duration::from_millis(500));
        let text = http()
            .get(format!("http://127.0.0.1:{}/stats", self.ports.admin))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(name, _)| name.ends_with(suffix))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum()
    }

    /// Sends requests to `url` until one is answered 200 (a variant's token is fetched on
    /// its first request, or right after Envoy starts for credential_injector), within 30 s.
    pub fn wait_until_served(&self, url: &str, headers: &[(&str, &str)]) -> Result<()> {
        let client = http();
        let mut last = String::new();
        for _ in 0..150 {
            let mut req = client.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            match req.send() {
                Ok(r) if r.status().as_u16() == 200 => return Ok(()),
                Ok(r) => last = format!("{} {}", r.status(), r.text().unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "{url} never answered 200 (last: {last}); see the logs in {}",
            self.dir.display()
        )
    }
}

/// The rendered `envoy/bench.yaml` with only the listeners named `keep` (and `backend`).
fn only_listeners(config: &str, keep: &[&str]) -> String {
    const START: &str = "  listeners:\n";
    const END: &str = "  clusters:\n";
    let (Some(a), Some(b)) = (config.find(START), config.find(END)) else {
        return config.to_owned();
    };
    let (head, rest) = config.split_at(a + START.len());
    let (section, tail) = rest.split_at(b - a - START.len());
    let kept: Vec<String> = section
        .split_inclusive('\n')
        .fold(Vec::<String>::new(), |mut blocks, line| {
            match blocks.last_mut() {
                Some(block) if !line.starts_with("  - name: ") => block.push_str(line),
                _ => blocks.push(line.to_owned()),
            }
            blocks
        })
        .into_iter()
        .filter(|block| {
            let name = block
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("  - name: "))
                .unwrap_or("")
                .trim();
            name == "backend" || keep.contains(&name)
        })
        .collect();
    format!("{head}{}{tail}", kept.concat())
}

/// The Envoy binary behind `launcher`: the virtualenv's `envoy` is a Python script that execs
/// `site-packages/envoy/_bin/envoy`, which a wrapper such as valgrind must run itself.
fn envoy_binary(launcher: &Path) -> PathBuf {
    let is_script = std::fs::read(launcher).is_ok_and(|b| b.starts_with(b"#!"));
    if !is_script {
        return launcher.to_path_buf();
    }
    let lib = launcher
        .parent()
        .and_then(Path::parent)
        .map(|venv| venv.join("lib"));
    let found = lib
        .and_then(|lib| std::fs::read_dir(lib).ok())
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| launcher.to_path_buf())
}

/// CPU time (user + system, all threads) of process `pid`, in microseconds.
pub fn cpu_time_us(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces:
    // state(3) ... utime(14) stime(15).
    let rest = stat.rsplit_once(") ")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks <= 0 {
        return None;
    }
    Some((utime + stime) * 1e6 / ticks as f64)
}
