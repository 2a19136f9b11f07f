//! Instructions per request: the whole Envoy (`--concurrency 1`) run under valgrind's
//! callgrind, one keep-alive client sending one request at a time. Instruction counts do not
//! depend on what else the machine runs, so they show differences of 1 % that wall-clock
//! throughput on a shared machine (±20 % between rounds) hides.
//!
//! Method, per variant: a warm-up on the connection (V8 compiles and tiers up the filter, the
//! caches fill), then, `repeats` times: counters zeroed (`callgrind_control -z`), `requests`
//! requests, a dump (`-d`) read for its total; counters zeroed again, nothing sent for as long
//! as the requests took, a dump: the idle work of that time (timers, the Wasm filters' ticks,
//! stats flushes), subtracted. Counts are per thread: with `--concurrency 1` the worker
//! thread does all of a request's work, so instructions per request = the worker's (busy −
//! idle) / requests; the other threads (main: stats, admin, clusters; V8's platform threads)
//! are reported apart (their busy − idle is idle work's noise, about 0). Envoy starts with
//! instrumentation off (`--instr-atstart=no`), switched on once it is ready.

use crate::callgrind::{wrapper, Control};
use crate::raw_http::Client;
use crate::stack::Stack;
use anyhow::Result;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

/// The data-plane variants: name, what it is, the variant its ratio is taken to.
pub const VARIANTS: [(&str, &str, &str); 11] = [
    ("baseline", "native request_headers_to_add", "baseline"),
    (
        "baseline_jwt",
        "the same, the caller sending the jwt variant's JWT",
        "baseline",
    ),
    (
        "credential_injector",
        "Envoy's native credential_injector",
        "baseline",
    ),
    (
        "empty_wasm",
        "empty Rust Proxy-Wasm filter, trimmed exports",
        "baseline",
    ),
    (
        "header_only",
        "a Wasm filter that only sets the header, no response callback",
        "baseline",
    ),
    (
        "managed",
        "credmgr managed, cache hit, 401 retirement on (the default)",
        "baseline",
    ),
    (
        "managed_lean",
        "the same, retire_on_backend_401 false, lean module",
        "baseline",
    ),
    (
        "managed_named",
        "credmgr managed, the route names its policy set",
        "baseline",
    ),
    (
        "matched",
        "credmgr managed, the set chosen by request-matching rules",
        "baseline",
    ),
    (
        "jwt",
        "credmgr jwt, caller JWT verified and cached",
        "baseline_jwt",
    ),
    (
        "per_user",
        "credmgr jwt, a connection per user, 300 users in turn",
        "baseline_jwt",
    ),
    // The native build (an Envoy dynamic module) joins here as
    // ("native", "credmgr as an Envoy dynamic module, managed", "baseline"),
    // with its listener in envoy/bench.yaml and its port in `port` below.
];

/// What each host call of a hit costs: the probe filter with one host call more than
/// `probe_set` each. Name, what it adds, the row it adds to.
pub const HOST_CALLS: [(&str, &str, &str); 5] = [
    (
        "probe_set",
        "sets the header; the response callback exported, idle",
        "header_only",
    ),
    (
        "probe_status",
        "+ response :status from the header map (get_map_value)",
        "probe_set",
    ),
    (
        "probe_code",
        "+ response.code property instead (get_property)",
        "probe_set",
    ),
    ("probe_clock", "+ the clock (get_current_time)", "probe_set"),
    (
        "probe_meta",
        "+ route metadata, absent (get_property)",
        "probe_set",
    ),
];

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub requests: usize,
    pub warmup: usize,
    pub repeats: usize,
    /// Only these rows (empty: every one); the rows they take their ratios to are added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub only: Vec<String>,
}

/// One variant's count.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    /// Median of the repeats.
    pub instructions_per_request: f64,
    /// To `ratio_to`'s count of the same run.
    pub ratio: f64,
    pub ratio_to: &'static str,
    /// Instructions per request more than `ratio_to`'s.
    pub over: f64,
    pub what: &'static str,
    /// Each repeat's figure, and (max − min) / median over them.
    pub repeats: Vec<f64>,
    pub spread: f64,
    /// The worker's idle instructions subtracted (median), as a share of its busy count.
    pub idle_share: f64,
    /// The other threads' instructions per request, busy − idle (median): idle work only,
    /// about 0, reported, not added.
    pub other_threads: f64,
    /// Answers other than 2xx during the measured requests.
    pub non_2xx: u64,
}

/// The listener (in envoy/bench.yaml) of a variant or probe row.
fn listener(name: &str) -> &str {
    match name {
        "baseline_jwt" => "baseline",
        other => other,
    }
}

/// The port of a variant or probe row.
fn port(stack: &Stack, name: &str) -> Option<u16> {
    let p = &stack.ports;
    Some(match name {
        "baseline" | "baseline_jwt" => p.baseline,
        "credential_injector" => p.credential_injector,
        "empty_wasm" => p.empty_wasm,
        "header_only" => p.header_only,
        "managed" => p.managed,
        "managed_lean" => p.managed_lean,
        "managed_named" => p.managed_named,
        "matched" => p.matched,
        "jwt" => p.jwt,
        "per_user" => p.per_user,
        "probe_set" => p.probe_one[0],
        "probe_status" => p.probe_one[1],
        "probe_code" => p.probe_one[2],
        "probe_clock" => p.probe_one[3],
        "probe_meta" => p.probe_one[4],
        _ => return None,
    })
}

/// The caller credentials of a variant: none, the same JWT on every request, or the per_user
/// users' JWTs in turn.
fn callers(stack: &Stack, name: &str, jwt: &str) -> Vec<String> {
    match name {
        "jwt" | "baseline_jwt" => vec![format!("Bearer {jwt}")],
        "per_user" => stack
            .per_user
            .jwts
            .iter()
            .map(|j| format!("Bearer {j}"))
            .collect(),
        _ => Vec::new(),
    }
}

/// What counting one variant found.
struct Counted {
    /// The worker thread's instructions per request, each repeat.
    per_request: Vec<f64>,
    /// The worker's idle count as a share of its busy count (median).
    idle_share: f64,
    /// The other threads' busy − idle per request (median): should be about 0.
    other_threads: f64,
    non_2xx: u64,
}

/// Counts one variant.
fn count(control: &Control, port: u16, callers: &[String], s: &Settings) -> Result<Counted> {
    let mut client = Client::connect(port)?;
    let mut turn = 0usize;
    let mut send = |client: &mut Client, n: usize| -> Result<u64> {
        let mut bad = 0;
        for _ in 0..n {
            let caller = callers.get(turn % callers.len().max(1)).map(String::as_str);
            turn += 1;
            if !(200..300).contains(&client.get(caller)?) {
                bad += 1;
            }
        }
        Ok(bad)
    };
    send(&mut client, s.warmup)?;
    let mut per_request = Vec::new();
    let mut idle_shares = Vec::new();
    let mut other_threads = Vec::new();
    let mut non_2xx = 0;
    for _ in 0..s.repeats {
        control.run("-z")?;
        let started = Instant::now();
        non_2xx += send(&mut client, s.requests)?;
        let busy = control.dump_threads()?;
        let took = started.elapsed();
        control.run("-z")?;
        std::thread::sleep(took);
        let idle = control.dump_threads()?;
        // The worker (--concurrency 1) does every request's work: the thread with the most.
        // The others (main: stats, admin, clusters; V8's platform threads) only idle work.
        let worker = |t: &[u64]| t.first().copied().unwrap_or(0);
        let others = |t: &[u64]| t.iter().skip(1).sum::<u64>();
        let n = s.requests as f64;
        per_request.push(worker(&busy).saturating_sub(worker(&idle)) as f64 / n);
        other_threads.push((others(&busy) as f64 - others(&idle) as f64) / n);
        idle_shares.push(worker(&idle) as f64 / worker(&busy).max(1) as f64);
    }
    Ok(Counted {
        per_request,
        idle_share: crate::wrk::median(&idle_shares),
        other_threads: crate::wrk::median(&other_threads),
        non_2xx,
    })
}

/// Counts every variant, then every host-call row, each group with its own Envoy under
/// callgrind (in `dir`/variants and `dir`/host-calls): under valgrind, V8's address-space
/// reservations for the Wasm VMs of all rows at once do not fit. Ratios are to rows of the
/// same Envoy.
pub fn run(dir: &Path, cpus: &str, s: &Settings) -> Result<Vec<(&'static str, Count)>> {
    let wanted = |name: &str, group: &[(&'static str, &'static str, &'static str)]| {
        s.only.is_empty()
            || s.only.iter().any(|o| o == name)
            || group
                .iter()
                .any(|(n, _, to)| *to == name && s.only.iter().any(|o| o == n))
    };
    let variants: Vec<_> = VARIANTS
        .iter()
        .copied()
        .filter(|(n, _, _)| wanted(n, &VARIANTS))
        .collect();
    // The host-call rows add to header_only, which is measured with them.
    let base = VARIANTS
        .iter()
        .copied()
        .filter(|(n, _, _)| *n == "header_only");
    let host_calls: Vec<_> = base
        .chain(HOST_CALLS.iter().copied())
        .filter(|(n, _, _)| wanted(n, &HOST_CALLS))
        .collect();
    let mut counts = Vec::new();
    if !variants.is_empty() {
        counts.extend(run_group(&dir.join("variants"), cpus, s, &variants)?);
    }
    if host_calls.iter().any(|(n, _, _)| n.starts_with("probe_")) {
        let more = run_group(&dir.join("host-calls"), cpus, s, &host_calls)?;
        counts.extend(more.into_iter().filter(|(n, _)| n.starts_with("probe_")));
    }
    Ok(counts)
}

/// Starts the stack with Envoy under callgrind in `dir`, with the listeners of `rows` only,
/// and counts each row.
fn run_group(
    dir: &Path,
    cpus: &str,
    s: &Settings,
    rows: &[(&'static str, &'static str, &'static str)],
) -> Result<Vec<(&'static str, Count)>> {
    let dumps = dir.join("callgrind");
    std::fs::create_dir_all(&dumps)?;
    eprintln!(
        "instructions: starting Envoy under callgrind (logs in {})",
        dir.display()
    );
    let listeners: Vec<&str> = rows.iter().map(|(name, _, _)| listener(name)).collect();
    let stack = Stack::start_under(dir, cpus, 1, 3600, &wrapper(&dumps), Some(&listeners))?;
    let control = Control {
        pid: stack.envoy_pid(),
        dir: dumps,
    };
    control.run("-i on")?;
    let jwt = crate::dataplane::caller_token(&stack)?;
    let mut counts: Vec<(&'static str, Count)> = Vec::new();
    for &(name, what, ratio_to) in rows {
        let Some(port) = port(&stack, name) else {
            continue;
        };
        let callers = callers(&stack, name, &jwt);
        // The first request of a credmgr variant fetches its token; per_user, each user's.
        let url = Stack::url(port);
        let first: Vec<&String> = if name == "per_user" {
            callers.iter().collect()
        } else {
            callers.iter().take(1).collect()
        };
        if first.is_empty() {
            stack.wait_until_served(&url, &[])?;
        }
        for c in first {
            stack.wait_until_served(&url, &[("authorization", c)])?;
        }
        let Counted {
            per_request: repeats,
            idle_share,
            other_threads,
            non_2xx,
        } = count(&control, port, &callers, s)?;
        let ipr = crate::wrk::median(&repeats);
        let spread = repeats.iter().copied().fold(f64::MIN, f64::max)
            - repeats.iter().copied().fold(f64::MAX, f64::min);
        eprintln!(
            "  {name:<20} {ipr:>10.0} instructions/request  repeats {:?}  idle {:.1} %  other threads {other_threads:+.0}{}",
            repeats.iter().map(|r| r.round()).collect::<Vec<_>>(),
            idle_share * 100.0,
            if non_2xx > 0 {
                format!("  ({non_2xx} non-2xx)")
            } else {
                String::new()
            }
        );
        counts.push((
            name,
            Count {
                instructions_per_request: ipr,
                ratio: f64::NAN,
                ratio_to,
                over: f64::NAN,
                what,
                spread: spread / ipr,
                repeats,
                idle_share,
                other_threads,
                non_2xx,
            },
        ));
    }
    let of = |n: &str, counts: &[(&str, Count)]| {
        counts
            .iter()
            .find(|(c, _)| *c == n)
            .map(|(_, c)| c.instructions_per_request)
    };
    let bases: Vec<Option<f64>> = counts
        .iter()
        .map(|(_, c)| of(c.ratio_to, &counts))
        .collect();
    for ((_, c), base) in counts.iter_mut().zip(bases) {
        c.ratio = base.map_or(f64::NAN, |b| c.instructions_per_request / b);
        c.over = base.map_or(f64::NAN, |b| c.instructions_per_request - b);
    }
    Ok(counts)
}

/// `dataplane_instructions` of latest.json: each variant and host-call row by name, and
/// where the native build's figure goes until it is measured.
pub fn json(counts: &[(&'static str, Count)], s: &Settings) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (name, c) in counts {
        map.insert(
            (*name).to_owned(),
            serde_json::to_value(c).unwrap_or_default(),
        );
    }
    map.entry("native").or_insert(serde_json::json!({
        "unavailable": "the native build (an Envoy dynamic module) is not in this tree yet",
    }));
    map.insert(
        "method".into(),
        serde_json::json!({
            "tool": "valgrind --tool=callgrind, whole Envoy, --concurrency 1",
            "client": "one keep-alive HTTP/1.1 connection, one request at a time",
            "requests": s.requests,
            "warmup_requests": s.warmup,
            "repeats": s.repeats,
            "threads": "counted per thread (--separate-threads=yes); the figure is the worker's (--concurrency 1: it does all of a request's work); the other threads' busy - idle per request is reported as other_threads",
            "idle": "after each measured window, the same time again with no request: its count is subtracted",
            "figure": "median of the repeats; spread = (max - min) / median",
        }),
    );
    serde_json::Value::Object(map)
}

/// Prints the table.
pub fn print(counts: &[(&'static str, Count)], s: &Settings) {
    println!();
    println!(
        "Instructions per request (callgrind, whole Envoy, {} requests x {} repeats after {} warm-up, idle subtracted)",
        s.requests, s.repeats, s.warmup
    );
    println!(
        "  {:<20} {:>14} {:>8}  {:<13} {:>9} {:>8}  what",
        "variant", "instr/request", "ratio", "to", "over", "spread"
    );
    for (name, c) in counts {
        println!(
            "  {name:<20} {:>14.0} {:>8.3}  {:<13} {:>+9.0} {:>7.3}%  {}",
            c.instructions_per_request,
            c.ratio,
            c.ratio_to,
            c.over,
            c.spread * 100.0,
            c.what
        );
    }
}
