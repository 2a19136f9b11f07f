//! Scale: 100,000 client-credentials connections with one-hour tokens on one control plane.
//! Measures the time to create them through the management API, the control plane's resident
//! memory, and how late the proactive refresh scheduler refreshes the tokens that come due
//! during a measured window.
//!
//! Every connection has client credentials of its own (`c{i}`), so the token endpoint of
//! `token_endpoint.rs` knows which connection each request is for. The connections are created
//! in two batches, with a bounded number of requests in flight:
//! - the first `N - D` get one-hour tokens: none comes due during the run;
//! - the last `D` get a first token just long enough for its refresh point to fall in the
//!   window that follows creation, spread evenly over it. `D = N * window / 2880 s`: with
//!   one-hour tokens refreshed at 80 % of their lifetime, refresh points of `N` connections in
//!   steady state come at `N / 2880` per second, so the window sees the steady-state rate.
//!   Every refresh fetches a one-hour token, like any other.
//!
//! The token endpoint answers refreshes after a set latency (100 ms in `make bench`), as a
//! provider across a network would, and first tokens at once, so that creation measures the
//! control plane. The control plane is pinned to the server core; the token endpoint and the
//! management client share the load core.
//!
//! The control plane's scheduler refreshes a token `lead` seconds before its refresh point
//! (`tokens/scheduler.rs`: a stable hash of the connection and the token, up to a tenth of the
//! lifetime, at most 30 s), when its one-second tick finds `now >= refresh_at - lead`. That
//! instant is the refresh's scheduled point; `schedule.rs` computes it as the control plane
//! does, from the token's `expires_at` (the create call's answer) and its lifetime (the token
//! endpoint's record). Lag = when the refresh reached the token endpoint - the scheduled point;
//! it includes up to a second of tick granularity.

use crate::schedule::{self, quantile, Refresh, GRACE_S, SETTLE_S};
use crate::token_endpoint::{self, DuePlan, Issued, TokenEndpoint};
use anyhow::{bail, Context, Result};
use credmgr_e2e::pg::TestDatabase;
use credmgr_e2e::{free_port, ControlPlane};
use serde::Serialize;
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PROVIDER: &str = "scale";
/// Seconds between refresh points of one connection with one-hour tokens (80 % of 3600).
const STEADY_INTERVAL_S: f64 = 2880.0;
/// Idle time between the end of creation and the first scheduled refresh, when the idle
/// memory is read.
const IDLE_S: f64 = 10.0;

#[derive(Debug, Clone)]
pub struct Settings {
    pub connections: usize,
    /// Seconds over which the planned refresh points are spread.
    pub window_s: f64,
    /// Requests in flight while creating.
    pub concurrency: usize,
    /// Multiplies the steady-state refresh rate (1: what N one-hour tokens produce).
    pub rate_factor: f64,
    /// How long the token endpoint takes to answer a refresh.
    pub refresh_latency_ms: u64,
    pub server_cpu: usize,
    pub load_cpu: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgresql,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgresql => "postgresql",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Creation {
    pub connections: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Connections not created `connected` (after retries).
    pub failures: u64,
    /// Calls answered 503 (`store_unavailable`: the store did not answer in time) and retried.
    pub retried_503: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// Resident set size (VmRSS) with the provider created, before any connection.
    pub rss_before_mib: f64,
    /// After creation, idle (no request, no refresh due) for a few seconds.
    pub rss_idle_after_creation_mib: f64,
    /// At the end of the refresh window.
    pub rss_end_mib: f64,
    /// The process's high-water mark (VmHWM) at the end: the peak of the whole run.
    pub rss_peak_mib: f64,
    /// The store's size on disk at the end, when SQLite: the database file and its
    /// write-ahead log.
    pub sqlite_file_mib: Option<f64>,
    pub sqlite_wal_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub store: &'static str,
    pub creation: Creation,
    pub memory: Memory,
    pub refresh: Refresh,
    /// Requests the token endpoint refused: 0 in a sound run.
    pub token_requests_refused: u64,
    pub load_average_start: String,
    pub load_average_end: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A field of `/proc/<pid>/status` in kB (VmRSS, VmHWM), as MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn pin_self(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0) changes this thread's mask only,
    // and the threads it starts afterwards inherit it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Runs the scale part on one store: its own control plane (pinned to the server core), the
/// token endpoint and the management client on the load core.
pub fn run(dir: &Path, settings: &Settings, store: StoreKind) -> Result<Outcome> {
    let load_average_start = loadavg();
    let dir = dir.join(store.name());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pg = match store {
        StoreKind::Sqlite => None,
        StoreKind::Postgresql => {
            if let Err(why) = credmgr_e2e::pg::reachable() {
                bail!("{why}");
            }
            Some(TestDatabase::create())
        }
    };
    let mut env = vec![
        // Info, as in production: one line per token obtained.
        ("RUST_LOG", "info"),
        // A skew of a second keeps the refresh point at 80 % of the lifetime for the short
        // planned first tokens too; for one-hour tokens it is at 80 % with the default skew
        // of a minute as well.
        ("CREDMGR_REFRESH_SKEW", "1s"),
    ];
    if let Some(db) = &pg {
        env.push(("CREDMGR_DATABASE_URL", db.url.as_str()));
    }
    let cp = ControlPlane::start_with(&dir, free_port(), &env);
    crate::controlplane::pin(cp.process.pid(), settings.server_cpu)?;
    let all: Vec<usize> =
        (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    pin_self(&[settings.load_cpu]);
    let result = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the harness's Tokio runtime")
        .and_then(|rt| rt.block_on(measure(&cp, settings)));
    pin_self(&all);
    let (creation, memory, refresh, refused) = result?;
    let size = |suffix: &str| {
        std::fs::metadata(format!("{}{suffix}", cp.database.display()))
            .map_or(0.0, |m| m.len() as f64 / 1048576.0)
    };
    let (sqlite_file_mib, sqlite_wal_mib) = match store {
        StoreKind::Sqlite => (Some(size("")), Some(size("-wal"))),
        StoreKind::Postgresql => (None, None),
    };
    drop(cp);
    drop(pg);
    Ok(Outcome {
        store: store.name(),
        creation,
        memory: Memory {
            sqlite_file_mib,
            sqlite_wal_mib,
            ..memory
        },
        refresh,
        token_requests_refused: refused,
        load_average_start,
        load_average_end: loadavg(),
    })
}

/// How a connection's creation ended: the token's `expires_at` (`None`: it failed), and when
/// the successful call returned (Unix seconds).
#[derive(Debug, Clone, Copy, Default)]
pub struct Created {
    pub expires_at: Option<i64>,
    pub at: f64,
}

/// Calls answered 503 (the API's "retry shortly") are retried, as a client of the API would,
/// up to this many times per connection.
const RETRIES: u32 = 5;

/// Creates connections `range` with `concurrency` calls in flight; returns the failures and
/// the calls answered 503 and retried.
async fn create(
    client: &reqwest::Client,
    cp: &ControlPlane,
    range: std::ops::Range<usize>,
    concurrency: usize,
    out: &mut [Created],
    latencies_ms: &mut Vec<f64>,
) -> Result<(u64, u64)> {
    let next = Arc::new(AtomicU64::new(range.start as u64));
    let end = range.end as u64;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, next) = (client.clone(), Arc::clone(&next));
        let (url, admin) = (cp.url.clone(), cp.admin_token.clone());
        tasks.push(tokio::spawn(async move {
            let mut done: Vec<(usize, Created, f64)> = Vec::new();
            let (mut failures, mut retried) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let i = i as usize;
                let t0 = Instant::now();
                let mut expires_at = None;
                for attempt in 0..=RETRIES {
                    let resp = client
                        .put(format!("{url}/v1/providers/{PROVIDER}/connections/c{i}"))
                        .bearer_auth(&admin)
                        .json(&json!({
                            "client_id": token_endpoint::client_id(i),
                            "client_secret": token_endpoint::secret(i),
                        }))
                        .send()
                        .await;
                    match resp {
                        // 200: a retry found the connection created by the call that failed.
                        Ok(r) if matches!(r.status().as_u16(), 200 | 201) => {
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            expires_at = (body["status"] == "connected")
                                .then(|| body["token_expires_at"].as_str().and_then(parse_rfc3339))
                                .flatten();
                            break;
                        }
                        Ok(r) if r.status().as_u16() == 503 && attempt < RETRIES => {
                            retried += 1;
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                        Ok(r) => {
                            if failures < 3 {
                                let st = r.status();
                                eprintln!(
                                    "  creating c{i}: {st} {}",
                                    r.text().await.unwrap_or_default()
                                );
                            }
                            break;
                        }
                        Err(e) => {
                            if failures < 3 {
                                eprintln!("  creating c{i}: {e}");
                            }
                            break;
                        }
                    }
                }
                if expires_at.is_none() {
                    failures += 1;
                }
                let created = Created {
                    expires_at,
                    at: now_unix(),
                };
                done.push((i, created, t0.elapsed().as_secs_f64() * 1e3));
            }
            (done, failures, retried)
        }));
    }
    let (mut failures, mut retried) = (0, 0);
    for t in tasks {
        let (done, f, r) = t.await.context("a creating task failed")?;
        failures += f;
        retried += r;
        for (i, created, ms) in done {
            out[i] = created;
            latencies_ms.push(ms);
        }
    }
    Ok((failures, retried))
}

fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

async fn measure(cp: &ControlPlane, s: &Settings) -> Result<(Creation, Memory, Refresh, u64)> {
    let n = s.connections;
    let endpoint = TokenEndpoint::start(Duration::from_millis(s.refresh_latency_ms)).await?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(s.concurrency)
        .build()?;
    let resp = client
        .put(format!("{}/v1/providers/{PROVIDER}", cp.url))
        .bearer_auth(&cp.admin_token)
        .json(&json!({
            "display_name": "Scale benchmark",
            "identity_provider": "oauth2",
            "grant_type": "client_credentials",
            "client_id": "scale-provider",
            "client_secret": "each connection has its own",
            "token_url": endpoint.url,
            "token_endpoint_auth_method": "client_secret_post",
            "scopes": ["api"],
        }))
        .send()
        .await?;
    if resp.status().as_u16() != 201 {
        bail!(
            "creating the provider: {} {}",
            resp.status(),
            resp.text().await?
        );
    }
    let pid = cp.process.pid();
    let rss_before = status_mib(pid, "VmRSS");

    let due = ((n as f64 * s.window_s * s.rate_factor / STEADY_INTERVAL_S).round() as usize).min(n);
    let mut created: Vec<Created> = vec![Created::default(); n];
    let mut latencies = Vec::with_capacity(n);
    eprintln!(
        "scale: creating {} connections with one-hour tokens, {} in flight",
        n - due,
        s.concurrency
    );
    let started = Instant::now();
    let (mut failures, mut retried) = create(
        &client,
        cp,
        0..n - due,
        s.concurrency,
        &mut created,
        &mut latencies,
    )
    .await?;
    let first_batch_s = started.elapsed().as_secs_f64();
    let rate = (n - due) as f64 / first_batch_s.max(1e-3);
    // The planned scheduled points start once the last batch is created (estimated from the
    // first batch's rate, with room to spare) and the control plane has idled for IDLE_S.
    // Each target is the refresh point, so the scheduler's lead is added: at most a tenth of
    // the lifetime, L = (d + pad) / 0.8 for a scheduled point d seconds away, hence
    // pad = (d + pad) / 8, pad = d / 7 (and at most 30 s).
    let now = now_unix();
    let window_start = now + due as f64 / rate * 1.5 + 2.0 + IDLE_S;
    let targets: Vec<f64> = (0..due)
        .map(|k| {
            let at = window_start + (k as f64 + 0.5) / due as f64 * s.window_s;
            at + ((at - now) / 7.0).min(schedule::MAX_LEAD_S as f64)
        })
        .collect();
    endpoint.set_plan(DuePlan {
        first: n - due,
        targets,
    });
    eprintln!(
        "scale: {} created in {first_batch_s:.1} s ({rate:.0}/s); creating {due} whose first token comes due in the window",
        n - due
    );
    let (f, r) = create(
        &client,
        cp,
        n - due..n,
        s.concurrency,
        &mut created,
        &mut latencies,
    )
    .await?;
    failures += f;
    retried += r;
    let creation_s = started.elapsed().as_secs_f64();
    let created_at = now_unix();
    latencies.sort_by(f64::total_cmp);
    let creation = Creation {
        connections: n,
        concurrency: s.concurrency,
        seconds: creation_s,
        per_second: n as f64 / creation_s,
        p50_ms: quantile(&latencies, 0.5),
        p99_ms: quantile(&latencies, 0.99),
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        failures,
        retried_503: retried,
    };
    eprintln!(
        "scale: {n} connections created in {creation_s:.1} s ({:.0}/s, p99 {:.0} ms, {failures} failures, {retried} calls retried after 503)",
        creation.per_second, creation.p99_ms
    );
    if failures > 0 {
        bail!("{failures} connections could not be created; see the control plane's log");
    }

    // What the scheduler will do: each connection's scheduled point, from its stored token:
    // the last one issued before its creation returned (a retried call may have fetched one
    // that was not stored).
    let issued = endpoint.issued();
    let tokens_at_creation = endpoint.count();
    let mut plans = Vec::with_capacity(n);
    let mut stored = Vec::with_capacity(n);
    for (i, c) in created.iter().enumerate() {
        let first = issued
            .get(i)
            .and_then(|v| v.iter().rev().find(|t| t.at <= c.at))
            .copied();
        let (Some(first), Some(exp)) = (first, c.expires_at) else {
            bail!("connection c{i} has no token recorded");
        };
        stored.push(first);
        plans.push(schedule::Point::new(
            PROVIDER,
            &format!("c{i}"),
            exp,
            first.expires_in,
        ));
    }
    let first_point = plans[n - due..]
        .iter()
        .map(|p| p.scheduled_at as f64)
        .fold(f64::INFINITY, f64::min);
    if first_point < created_at {
        eprintln!(
            "scale: warning: creation took longer than planned; the first refreshes fell due {:.1} s before it ended",
            created_at - first_point
        );
    }
    // Idle: no request, and no refresh due yet.
    let idle_until = (first_point - 1.0).max(created_at + 2.0);
    tokio::time::sleep(Duration::from_secs_f64((idle_until - now_unix()).max(0.0))).await;
    let rss_idle = status_mib(pid, "VmRSS");
    eprintln!("scale: idle after creation: RSS {rss_idle:.1} MiB; waiting for {due} refreshes");

    // Until every due connection was refreshed and the last scheduled point is past, or the
    // grace period after it ran out.
    let last_point = plans[n - due..]
        .iter()
        .map(|p| p.scheduled_at as f64)
        .fold(0.0, f64::max);
    let expected_tokens = tokens_at_creation + due;
    loop {
        let now = now_unix();
        if now > last_point + GRACE_S
            || (now > last_point + SETTLE_S && endpoint.count() >= expected_tokens)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let observed_until = now_unix();
    let rss_end = status_mib(pid, "VmRSS");
    let rss_peak = status_mib(pid, "VmHWM");
    // Each connection's stored token, then what came after its creation: the refreshes.
    let seen: Vec<Vec<Issued>> = endpoint
        .issued()
        .into_iter()
        .zip(stored.iter().zip(&created))
        .map(|(tokens, (first, c))| {
            let later = tokens.into_iter().filter(|t| t.at > c.at);
            std::iter::once(*first).chain(later).collect()
        })
        .collect();
    let refresh = schedule::analyse(&plans, &seen, observed_until, created_at);
    Ok((
        creation,
        Memory {
            rss_before_mib: rss_before,
            rss_idle_after_creation_mib: rss_idle,
            rss_end_mib: rss_end,
            rss_peak_mib: rss_peak,
            sqlite_file_mib: None,
            sqlite_wal_mib: None,
        },
        refresh,
        endpoint.refused(),
    ))
}
