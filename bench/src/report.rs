//! What a run prints and writes: the terminal table, `bench/results/latest.json`, and the
//! machine the figures were measured on.

use crate::dataplane::{self, VARIANTS};
use crate::{cold, controlplane, scale};
use serde_json::{json, Value};

/// The machine: cores, CPU model, memory, kernel, load when the run started (the machine may
/// be shared; a high load makes the figures noisy), and the Envoy version.
pub fn machine(envoy_version: &str) -> Value {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = read("/proc/meminfo");
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    json!({
        "nproc": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": cpu_model,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": read("/proc/sys/kernel/osrelease").trim(),
        "load_average_at_start": read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "),
        "envoy": envoy_version,
    })
}

fn num(x: f64, digits: usize) -> Value {
    if x.is_finite() {
        let scale = 10f64.powi(digits as i32);
        json!((x * scale).round() / scale)
    } else {
        Value::Null
    }
}

pub fn dataplane_json(out: &dataplane::Outcome) -> Value {
    let mut map = serde_json::Map::new();
    for (name, summary) in &out.variants {
        let v = match summary {
            None => Value::Null,
            Some(s) => json!({
                "rps": num(s.rps, 0),
                "p50_us": num(s.p50_us, 0),
                "p99_us": num(s.p99_us, 0),
                "rps_ratio": num(s.rps_ratio, 3),
                "p99_ratio": num(s.p99_ratio, 3),
                "cpu_us_per_request": num(s.cpu_us_per_request, 2),
                "cpu_ratio": num(s.cpu_ratio, 3),
                "rps_best": num(s.rps_best, 0),
                "rps_best_ratio": num(s.rps_best_ratio, 3),
                "non_2xx": s.non_2xx,
                "socket_errors": s.socket_errors,
                "rounds": s.rounds.iter().map(|r| json!({
                    "rps": num(r.rps, 0), "p50_us": r.p50_us, "p99_us": r.p99_us,
                    "cpu_us_per_request": r.server_cpu_us_per_request.map(|c| num(c, 2)),
                    "requests": r.requests, "non_2xx": r.non_2xx, "socket_errors": r.socket_errors,
                })).collect::<Vec<_>>(),
            }),
        };
        map.insert((*name).to_owned(), v);
    }
    Value::Object(map)
}

/// The targets, checked against the medians: (name, target, measured, met).
pub fn targets(out: &dataplane::Outcome) -> Vec<(String, String, String, Option<bool>)> {
    let get = |n: &str| {
        out.variants
            .iter()
            .find(|(name, _)| *name == n)
            .and_then(|(_, s)| s.as_ref())
    };
    let mut t = Vec::new();
    match get("managed") {
        Some(m) => {
            t.push((
                "managed throughput".into(),
                ">= 0.95 x baseline".into(),
                format!("{:.3}", m.rps_ratio),
                Some(m.rps_ratio >= 0.95),
            ));
            t.push((
                "managed p99".into(),
                "<= 1.10 x baseline".into(),
                format!("{:.3}", m.p99_ratio),
                Some(m.p99_ratio <= 1.10),
            ));
            if let Some(ci) = get("credential_injector") {
                t.push((
                    "managed vs credential_injector".into(),
                    "managed rps >= credential_injector rps".into(),
                    format!("{:.3}", m.rps_ratio / ci.rps_ratio),
                    Some(m.rps_ratio >= ci.rps_ratio),
                ));
            }
        }
        None => t.push(("managed".into(), "measured".into(), "missing".into(), None)),
    }
    match get("jwt") {
        Some(j) => t.push((
            "jwt throughput".into(),
            ">= 0.90 x baseline".into(),
            format!("{:.3}", j.rps_ratio),
            Some(j.rps_ratio >= 0.90),
        )),
        None => t.push((
            "jwt throughput".into(),
            ">= 0.90 x baseline".into(),
            "not measured".into(),
            None,
        )),
    }
    t
}

pub fn targets_json(out: &dataplane::Outcome) -> Value {
    Value::Array(
        targets(out)
            .into_iter()
            .map(|(name, target, measured, met)| {
                json!({"name": name, "target": target, "measured": measured, "met": met})
            })
            .collect(),
    )
}

pub fn print_dataplane(out: &dataplane::Outcome, settings: &str) {
    println!();
    println!("Data plane ({settings})");
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>10} {:>11} {:>9}  notes",
        "variant",
        "req/s",
        "p50 us",
        "p99 us",
        "rps ratio",
        "p99 ratio",
        "best rps",
        "best ratio",
        "cpu us/req",
        "cpu ratio"
    );
    for name in VARIANTS {
        let summary = out
            .variants
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, s)| s.as_ref());
        match summary {
            Some(s) => {
                let notes = if s.non_2xx + s.socket_errors > 0 {
                    format!("{} non-2xx, {} socket errors", s.non_2xx, s.socket_errors)
                } else {
                    String::new()
                };
                println!(
                    "{:<22} {:>8.0} {:>8.0} {:>8.0} {:>9.3} {:>9.3} {:>8.0} {:>10.3} {:>11.1} {:>9.3}  {}",
                    name,
                    s.rps,
                    s.p50_us,
                    s.p99_us,
                    s.rps_ratio,
                    s.p99_ratio,
                    s.rps_best,
                    s.rps_best_ratio,
                    s.cpu_us_per_request,
                    s.cpu_ratio,
                    notes
                );
            }
            None => {
                let reason = out
                    .unavailable
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, r)| r.as_str())
                    .unwrap_or("not measured");
                println!("{name:<22} {reason}");
            }
        }
    }
    println!("(req/s, p50, p99: medians over rounds; ratios: medians of per-round ratios to the baseline;");
    println!(" best: the best round of each, less disturbed by other load on a shared machine;");
    println!(
        " cpu: Envoy's CPU time per request, which does not depend on how much of its core it got)"
    );
    println!();
    println!("Targets (on the medians)");
    for (name, target, measured, met) in targets(out) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        };
        println!("  {name:<32} {target:<40} {measured:<10} {verdict}");
    }
}

pub fn print_cold(c: &cold::Outcome) {
    println!();
    println!(
        "Cold path ({} sequential requests each, one at a time)",
        c.samples
    );
    println!(
        "  hot (cached token)      p50 {:>7.0} us   p99 {:>7.0} us",
        c.hot_p50_us, c.hot_p99_us
    );
    println!(
        "  cold (cache miss)       p50 {:>7.0} us   p99 {:>7.0} us",
        c.cold_p50_us, c.cold_p99_us
    );
    println!(
        "  added by a miss         p50 {:>7.0} us   p99 {:>7.0} us   ({} control-plane calls)",
        c.added_p50_us, c.added_p99_us, c.control_plane_calls
    );
}

pub fn print_refresh(r: &crate::refresh::Outcome) {
    println!();
    println!(
        "Refresh under load (tokens of {} s, {} s of load, {} client threads, Envoy {} workers)",
        r.token_ttl_s, r.duration_s, r.client_threads, r.envoy_concurrency
    );
    println!(
        "  requests {}   non-2xx {}   transport errors {}",
        r.requests, r.non_2xx, r.transport_errors
    );
    println!(
        "  tokens the provider issued to credmgr {} (at most {} expected: one per refresh interval, plus one), at {:?} s",
        r.tokens_issued, r.tokens_expected_at_most, r.refresh_times_s
    );
    println!(
        "  (the OAuth server issued {} in all, credential_injector's included)",
        r.oauth_tokens_issued_all_clients
    );
    println!(
        "  within {} ms of a refresh: {} requests, p50 {:.0} us, p99 {:.0} us",
        r.window_ms, r.in_window_requests, r.p50_in_window_us, r.p99_in_window_us
    );
    println!(
        "  outside:                       p50 {:.0} us, p99 {:.0} us   p99 ratio {:.3} (target <= 1.10)",
        r.p50_outside_us, r.p99_outside_us, r.p99_ratio
    );
    println!(
        "  Envoy: {} control-plane calls, {} background refreshes (all workers)",
        r.control_plane_calls, r.refresh_ahead
    );
}

pub fn print_runtime(r: &controlplane::Outcome) {
    println!();
    println!("Control plane runtime API (token served from the store, no refresh)");
    println!(
        "{:<22} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}",
        "server", "req/s", "p50 us", "p99 us", "rps ratio", "p99 ratio", "non-2xx"
    );
    let mut rows = vec![("credmgr, SQLite", &r.sqlite)];
    if let Some(pg) = &r.postgresql {
        rows.push(("credmgr, PostgreSQL", pg));
    }
    rows.push(("bare axum handler", &r.bare_axum));
    for (name, s) in rows {
        println!(
            "{:<22} {:>10.0} {:>9.0} {:>9.0} {:>10.3} {:>10.3} {:>8}",
            name, s.rps, s.p50_us, s.p99_us, s.rps_ratio, s.p99_ratio, s.non_2xx
        );
    }
    if r.postgresql.is_none() {
        println!(
            "{:<22} not measured: PostgreSQL was not reachable",
            "credmgr, PostgreSQL"
        );
    }
}

/// The parts of the issue this harness cannot measure yet, with what they wait for.
pub fn not_measured(out: &dataplane::Outcome, quick: bool) -> Value {
    let mut m = serde_json::Map::new();
    let full_only = json!("not run by bench-quick: run make bench");
    if quick {
        for part in [
            "hot_path_profile",
            "hot_path_own_work",
            "cold_path",
            "runtime_api",
            "refresh_under_load",
            "scale",
        ] {
            m.insert(part.into(), full_only.clone());
        }
    }
    for (name, reason) in &out.unavailable {
        m.insert(format!("dataplane.{name}"), json!(reason));
    }
    Value::Object(m)
}

pub fn print_not_measured(out: &dataplane::Outcome, quick: bool) {
    println!();
    println!("Not measured");
    if let Value::Object(m) = not_measured(out, quick) {
        for (k, v) in m {
            println!("  {k:<26} {}", v.as_str().unwrap_or_default());
        }
    }
}

/// The hot-path profile as rows: (name, description, summary, Envoy's CPU microseconds per
/// request, microseconds added by this step over the row it adds to).
pub fn profile_rows(
    rows: &[(&'static str, dataplane::Summary)],
) -> Vec<(&'static str, &'static str, dataplane::Summary, f64, f64)> {
    let cpu = |name: &str| {
        rows.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, s)| s.cpu_us_per_request)
    };
    rows.iter()
        .map(|(name, summary)| {
            let (desc, base) = dataplane::PROFILE
                .iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, d, b)| (*d, *b))
                .unwrap_or(("", ""));
            let us = summary.cpu_us_per_request;
            let added = cpu(base).map(|b| us - b).unwrap_or(0.0);
            (*name, desc, summary.clone(), us, added)
        })
        .collect()
}

pub fn profile_json(rows: &[(&'static str, dataplane::Summary)]) -> Value {
    Value::Array(
        profile_rows(rows)
            .into_iter()
            .map(|(name, desc, s, us, added)| {
                json!({
                    "variant": name,
                    "what": desc,
                    "rps": num(s.rps, 0),
                    "p99_us": num(s.p99_us, 0),
                    "rps_ratio": num(s.rps_ratio, 3),
                    "p99_ratio": num(s.p99_ratio, 3),
                    "cpu_us_per_request": num(us, 2),
                    "cpu_ratio": num(s.cpu_ratio, 3),
                    "added_us_per_request": num(added, 2),
                    "non_2xx": s.non_2xx,
                })
            })
            .collect(),
    )
}

pub fn print_profile(rows: &[(&'static str, dataplane::Summary)], settings: &str) {
    println!();
    println!("Hot path profile ({settings})");
    println!(
        "{:<15} {:<64} {:>9} {:>10} {:>11} {:>9}",
        "variant", "what", "req/s", "rps ratio", "cpu us/req", "added us"
    );
    println!("(cpu us/req: Envoy's CPU time per request, median over rounds)");
    for (name, desc, s, us, added) in profile_rows(rows) {
        println!(
            "{name:<15} {desc:<64} {:>9.0} {:>10.3} {:>11.2} {:>+9.2}",
            s.rps, s.rps_ratio, us, added
        );
    }
}

/// The scale run's figures; `command` says what produced them (its date is its own: it may be
/// recorded apart from the rest of latest.json).
pub fn scale_json(outcomes: &[scale::Outcome], s: &scale::Settings, command: &str) -> Value {
    let mut m = serde_json::Map::new();
    let date = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    m.insert("date".into(), json!(date));
    m.insert("command".into(), json!(command));
    m.insert(
        "settings".into(),
        json!({
            "connections": s.connections,
            "window_s": s.window_s,
            "create_calls_in_flight": s.concurrency,
            "rate_factor": s.rate_factor,
            "provider_refresh_latency_ms": s.refresh_latency_ms,
            "steady_state_refreshes_per_second": num(s.connections as f64 / 2880.0 * s.rate_factor, 1),
            "control_plane_cpu": s.server_cpu,
            "harness_cpu": s.load_cpu,
            "token_lifetime_s": crate::token_endpoint::HOUR_S,
            "refresh_skew_s": crate::schedule::SKEW_S,
        }),
    );
    for o in outcomes {
        m.insert(o.store.into(), json!(o));
    }
    Value::Object(m)
}

pub fn print_scale(outcomes: &[scale::Outcome], s: &scale::Settings) {
    println!();
    println!(
        "Scale ({} client-credentials connections, one-hour tokens; control plane on core {}, harness on core {}; \
         {:.0} s window at {:.1} refreshes/s; the provider answers refreshes in {} ms)",
        s.connections,
        s.server_cpu,
        s.load_cpu,
        s.window_s,
        s.connections as f64 / 2880.0 * s.rate_factor,
        s.refresh_latency_ms
    );
    for o in outcomes {
        let c = &o.creation;
        let m = &o.memory;
        let r = &o.refresh;
        println!(
            "  {} (load average {} at the start, {} at the end)",
            o.store, o.load_average_start, o.load_average_end
        );
        println!(
            "    create   {:.1} s ({:.0}/s, {} in flight), call p50 {:.1} ms p99 {:.1} ms max {:.0} ms, {} failures, {} calls retried after 503",
            c.seconds, c.per_second, c.concurrency, c.p50_ms, c.p99_ms, c.max_ms, c.failures, c.retried_503
        );
        let file = match (m.sqlite_file_mib, m.sqlite_wal_mib) {
            (Some(f), Some(w)) => format!("; SQLite file {f:.0} MiB, WAL {w:.0} MiB"),
            _ => String::new(),
        };
        println!(
            "    memory   RSS {:.1} MiB before, {:.1} MiB idle after creation, {:.1} MiB at the end, peak {:.1} MiB{file}",
            m.rss_before_mib, m.rss_idle_after_creation_mib, m.rss_end_mib, m.rss_peak_mib
        );
        println!(
            "    refresh  {} due over {:.0}..{:.0} s after creation ({:.1}/s): {} refreshed once, {} missed, {} more than once, {} not due",
            r.due, r.window_from_s, r.window_to_s, r.refreshes_per_second, r.refreshed_once, r.missed,
            r.refreshed_more_than_once, r.refreshed_not_due
        );
        println!(
            "    lag      p50 {:.0} ms, p99 {:.0} ms, worst {:.0} ms after the scheduled point; {} after refresh_at, {} after expiry, {} early",
            r.lag_p50_ms, r.lag_p99_ms, r.lag_max_ms, r.after_refresh_point, r.after_expiry, r.earlier_than_scheduled
        );
    }
    println!("  (lag: when the refresh reached the token endpoint minus refresh_at - lead, the instant the");
    println!("   scheduler's one-second tick may first refresh it; it includes up to a second of tick granularity)");
}
