//! credmgr's benchmarks: `make bench-quick` (the data-plane comparison) and `make bench` (that,
//! the cold path, the control plane's runtime API, refresh under load and the scale run). See
//! the Performance section of the README for what each figure means and how it is measured.
//!
//! One Envoy (`--concurrency 1`) runs on the server core, `wrk` on the load core; the OAuth
//! server and the control plane fill the caches once and then sit idle while Envoy is measured.
//! Results go to `bench/results/latest.json` and `bench/results/dataplane-ratios.png`.

mod bare;
mod chart;
mod cold;
mod controlplane;
mod dataplane;
mod instructions;
mod own_work;
mod refresh;
mod report;
mod scale;
mod schedule;
mod stack;
mod token_endpoint;
mod wrk;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

#[derive(Parser)]
#[command(about = "credmgr's benchmarks: the filter against native Envoy, side by side")]
struct Cli {
    #[command(subcommand)]
    command: Option<Sub>,
    /// Only the data-plane comparison (make bench-quick).
    #[arg(long)]
    quick: bool,
    /// Rounds; each runs every variant once, interleaved.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds of load per variant and round.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Seconds of warm-up load per variant before the rounds.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Core of Envoy (and of the control plane when its runtime API is measured).
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// Core of the load generator.
    #[arg(long, default_value_t = 1)]
    load_cpu: usize,
    /// Where latest.json and the chart go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
}

#[derive(Subcommand)]
enum Sub {
    /// Only the refresh-under-load run, printed, not written to latest.json.
    Refresh {
        /// Lifetime of the OAuth server's tokens, in seconds.
        #[arg(long, default_value_t = 10)]
        ttl: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 26)]
        seconds: u64,
    },
    /// Only the scale run (connections created through the management API, memory, the
    /// proactive scheduler's lag), printed; with --record, also written to latest.json's
    /// `scale` key, the rest of the file kept.
    Scale {
        /// Client-credentials connections to create.
        #[arg(long, default_value_t = 100_000)]
        connections: usize,
        /// Seconds over which the refreshes planned for the window come due.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// Create calls in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Multiplies the steady-state refresh rate of the window (1: what the connections'
        /// one-hour tokens produce, connections / 2880 s).
        #[arg(long, default_value_t = 1.0)]
        rate_factor: f64,
        /// How long the token endpoint takes to answer a refresh, in milliseconds.
        #[arg(long, default_value_t = 100)]
        refresh_latency_ms: u64,
        /// sqlite, postgresql or both.
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// Write the figures into <out>/latest.json under `scale`.
        #[arg(long)]
        record: bool,
    },
    /// Only the instruction counts (Envoy under callgrind), printed; with --record, also
    /// written to latest.json's `dataplane_instructions`, the rest of the file kept.
    Instructions {
        /// Measured requests per repeat.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Warm-up requests per variant before the repeats.
        #[arg(long, default_value_t = 2000)]
        warmup: usize,
        /// Repeats per variant (their spread shows the method's precision).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Only these rows, comma-separated (and the rows their ratios are to).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Where the run's processes keep their files, under the repository.
        #[arg(long, default_value = "run/bench-instructions")]
        run_dir: String,
        /// Write the figures into <out>/latest.json.
        #[arg(long)]
        record: bool,
    },
    /// Only the runtime API part (SQLite, PostgreSQL, bare handler), printed, not written to
    /// latest.json.
    Runtime,
    /// Only the hot-path profile (the probe filter's steps against the baseline, the empty
    /// filter and credmgr), printed, not written to latest.json.
    Profile,
    /// Draw the chart of an existing latest.json again, without measuring.
    Chart {
        /// The directory holding latest.json; the chart is written next to it.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Serve the bare axum handler the runtime API is compared with (used by the benchmark
    /// itself; the gateway key comes from CREDMGR_BENCH_GATEWAY_KEY).
    BareRuntime {
        #[arg(long)]
        listen: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Sub::BareRuntime { listen }) => bare::serve(listen),
        Some(Sub::Chart { out }) => redraw(out),
        Some(Sub::Refresh { ttl, seconds }) => refresh_only(*ttl, *seconds),
        Some(Sub::Runtime) => runtime_only(&cli),
        Some(Sub::Instructions {
            requests,
            warmup,
            repeats,
            only,
            run_dir,
            record,
        }) => instructions_only(
            &cli,
            &instructions::Settings {
                requests: *requests,
                warmup: *warmup,
                repeats: *repeats,
                only: only.clone(),
            },
            run_dir,
            *record,
        ),
        Some(Sub::Profile) => profile_only(&cli),
        Some(Sub::Scale {
            connections,
            window,
            concurrency,
            rate_factor,
            refresh_latency_ms,
            store,
            record,
        }) => scale_only(
            &cli,
            scale::Settings {
                connections: *connections,
                window_s: *window as f64,
                concurrency: *concurrency,
                rate_factor: *rate_factor,
                refresh_latency_ms: *refresh_latency_ms,
                server_cpu: cli.server_cpu,
                load_cpu: cli.load_cpu,
            },
            store,
            *record,
        ),
        None => bench(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("credmgr-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn require(tool: &str, hint: &str) -> Result<()> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        bail!("{tool} not found: {hint}");
    }
    Ok(())
}

fn envoy_version() -> String {
    let bin = credmgr_e2e::artifact("CREDMGR_ENVOY", ".venv/bin/envoy");
    Command::new(bin)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .ok()
        .and_then(|s| {
            let line = s.lines().rev().find(|l| !l.is_empty())?.to_owned();
            Some(match line.split_once("version: ") {
                Some((_, v)) => v.trim().to_owned(),
                None => line,
            })
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The runtime API's figures: 3 rounds on SQLite, on PostgreSQL where it answers, and a bare
/// axum handler for scale.
fn runtime_api(
    cli: &Cli,
    stack: &stack::Stack,
    load: &wrk::Load,
    warmup: &wrk::Load,
) -> Result<controlplane::Outcome> {
    let pg = controlplane::postgres_control_plane(stack);
    controlplane::run(
        stack,
        pg.as_ref().map(|(cp, _)| cp),
        cli.server_cpu,
        load,
        3,
        warmup,
    )
}

/// The instruction counts' settings: `make bench` 2,000 requests x 3 repeats, the quick run
/// 500 x 2 of the variants alone (about 5 minutes).
fn instruction_settings(quick: bool) -> instructions::Settings {
    if quick {
        instructions::Settings {
            requests: 500,
            warmup: 500,
            repeats: 2,
            // The variants' Envoy only: the host-call probes' second Envoy is for make bench.
            only: instructions::VARIANTS
                .iter()
                .map(|(n, _, _)| (*n).to_owned())
                .collect(),
        }
    } else {
        instructions::Settings {
            requests: 2000,
            warmup: 2000,
            repeats: 3,
            only: Vec::new(),
        }
    }
}

fn instructions_only(
    cli: &Cli,
    s: &instructions::Settings,
    run_dir: &str,
    record: bool,
) -> Result<()> {
    require("valgrind", "apt-get install valgrind")?;
    let root = credmgr_e2e::repo_root();
    let dir = root.canonicalize().unwrap_or(root).join(run_dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let counts = instructions::run(&dir, &cli.server_cpu.to_string(), s)?;
    instructions::print(&counts, s);
    if record {
        let path = cli.out.join("latest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run make bench first)", path.display()))?;
        let mut results: serde_json::Value = serde_json::from_str(&text)?;
        // Merged: rows measured by another run (e.g. --only) are kept.
        let fresh = instructions::json(&counts, s);
        match (results["dataplane_instructions"].as_object_mut(), fresh) {
            (Some(old), serde_json::Value::Object(new)) => {
                for (k, v) in new {
                    if k != "native" || !old.contains_key("native") {
                        old.insert(k, v);
                    }
                }
            }
            (_, fresh) => results["dataplane_instructions"] = fresh,
        }
        std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
        println!("wrote the instruction counts into {}", path.display());
    }
    Ok(())
}

fn runtime_only(cli: &Cli) -> Result<()> {
    let (_dir, stack, load, warmup) = dataplane_stack(cli, "run/bench-runtime")?;
    let r = runtime_api(cli, &stack, &load, &warmup)?;
    report::print_runtime(&r);
    Ok(())
}

fn bench(cli: &Cli) -> Result<()> {
    let machine = report::machine(&envoy_version());
    let started = time::OffsetDateTime::now_utc();
    let (dir, stack, load, warmup) = dataplane_stack(cli, "run/bench")?;
    let settings = format!(
        "{} rounds x {} s per variant, wrk 1 thread {} connections on core {}, Envoy --concurrency 1 on core {}",
        cli.rounds, cli.seconds, cli.connections, cli.load_cpu, cli.server_cpu
    );
    let dp = dataplane::run(&stack, &load, cli.rounds, &warmup)?;
    let profile_load = wrk::Load {
        duration: Duration::from_secs(cli.seconds.min(3)),
        ..load.clone()
    };
    let profile_settings = format!(
        "3 rounds x {} s per variant, same load",
        profile_load.duration.as_secs()
    );
    let (profile, own, cold, runtime) = if cli.quick {
        (None, None, None, None)
    } else {
        eprintln!("hot path profile: the probe filter with a growing set of credmgr's host calls");
        let p = dataplane::profile(&stack, &profile_load, 3, &warmup)?;
        eprintln!("hot path without Envoy: the filter's logic, native and in V8");
        let o = own_work::run(&credmgr_e2e::repo_root(), cli.server_cpu, 3)?;
        eprintln!("cold path: sequential requests, hot and cold alternating");
        let c = cold::run(&stack, 300, cli.load_cpu)?;
        let r = runtime_api(cli, &stack, &load, &warmup)?;
        (Some(p), Some(o), Some(c), Some(r))
    };
    drop(stack);
    let instr_settings = instruction_settings(cli.quick);
    let instr = instructions::run(
        &dir.join("instructions"),
        &cli.server_cpu.to_string(),
        &instr_settings,
    )?;
    let refresh = if cli.quick {
        None
    } else {
        eprintln!("refresh under load: tokens of 10 s, 26 s of load through Envoy with 2 workers");
        let dir = dir.join("refresh");
        std::fs::create_dir_all(&dir)?;
        Some(refresh::run(&dir, 10, Duration::from_secs(26))?)
    };
    let scale = if cli.quick {
        None
    } else {
        eprintln!("scale: 100,000 connections, the scheduler's lag over a 60 s window");
        let settings = scale::Settings {
            connections: 100_000,
            window_s: 60.0,
            concurrency: 32,
            rate_factor: 1.0,
            refresh_latency_ms: 100,
            server_cpu: cli.server_cpu,
            load_cpu: cli.load_cpu,
        };
        let dir = dir.join("scale");
        let outcome = scale::run(&dir, &settings, scale::StoreKind::Sqlite)?;
        Some((outcome, settings))
    };

    report::print_dataplane(&dp, &settings);
    instructions::print(&instr, &instr_settings);
    if let Some(p) = &profile {
        report::print_profile(p, &profile_settings);
    }
    if let Some(o) = &own {
        own_work::print(o);
    }
    if let Some(c) = &cold {
        report::print_cold(c);
    }
    if let Some(r) = &runtime {
        report::print_runtime(r);
    }
    if let Some(r) = &refresh {
        report::print_refresh(r);
    }
    if let Some((s, settings)) = &scale {
        report::print_scale(std::slice::from_ref(s), settings);
    }
    report::print_not_measured(&dp, cli.quick);

    let date = started
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let scale_json = scale
        .as_ref()
        .map(|(s, settings)| report::scale_json(std::slice::from_ref(s), settings, "make bench"));
    let results = json!({
        "date": date,
        "command": if cli.quick { "make bench-quick" } else { "make bench" },
        "machine": machine,
        "settings": {
            "rounds": cli.rounds,
            "seconds_per_run": cli.seconds,
            "warmup_seconds": cli.warmup_seconds,
            "connections": cli.connections,
            "load_generator": "wrk, 1 thread",
            "envoy_concurrency": 1,
            "server_cpu": cli.server_cpu,
            "load_cpu": cli.load_cpu,
        },
        "dataplane": report::dataplane_json(&dp),
        "dataplane_targets": report::targets_json(&dp),
        "dataplane_evidence": dp.evidence,
        "dataplane_instructions": instructions::json(&instr, &instr_settings),
        "hot_path_profile": profile.as_deref().map(report::profile_json),
        "hot_path_own_work": own,
        "cold_path": cold,
        "runtime_api": runtime.map(|r| json!({
            "sqlite": r.sqlite,
            "bare_axum": r.bare_axum,
            "postgresql": r.postgresql,
            "oauth_tokens_issued_during_runs": r.oauth_tokens_issued_during_runs,
        })),
        "refresh_under_load": refresh,
        "scale": scale_json,
        "not_measured": report::not_measured(&dp, cli.quick),
    });
    std::fs::create_dir_all(&cli.out)?;
    let json_path = cli.out.join("latest.json");
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)? + "\n")?;
    println!();
    println!("wrote {}", json_path.display());
    draw_chart(&results, &cli.out);
    Ok(())
}

/// Draws `dataplane-ratios.png` in `out` from the results; a missing font is reported, not
/// fatal: the numbers are in latest.json.
fn draw_chart(results: &serde_json::Value, out: &std::path::Path) {
    let png = out.join("dataplane-ratios.png");
    let title = format!(
        "credmgr data plane vs baseline ({}, {})",
        results["machine"]["cpu_model"].as_str().unwrap_or("?"),
        results["date"]
            .as_str()
            .and_then(|d| d.get(..10))
            .unwrap_or("?")
    );
    let (bars, unavailable) = chart::from_json(results);
    match chart::draw(&bars, &unavailable, &title, &png) {
        Ok(()) => println!("wrote {}", png.display()),
        Err(e) => println!("no chart: {e:#}"),
    }
}

fn scale_only(cli: &Cli, settings: scale::Settings, store: &str, record: bool) -> Result<()> {
    require("taskset", "install util-linux")?;
    let stores = match store {
        "sqlite" => vec![scale::StoreKind::Sqlite],
        "postgresql" => vec![scale::StoreKind::Postgresql],
        "both" => vec![scale::StoreKind::Sqlite, scale::StoreKind::Postgresql],
        other => bail!("--store {other}: use sqlite, postgresql or both"),
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cli.server_cpu >= cores || cli.load_cpu >= cores {
        bail!("this machine has {cores} core(s): choose --server-cpu and --load-cpu below {cores}");
    }
    let root = credmgr_e2e::repo_root();
    let dir = root.canonicalize().unwrap_or(root).join("run/bench-scale");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // Each store on its own: one failing does not lose the other's figures.
    let mut outcomes = Vec::new();
    let mut failed = Vec::new();
    for kind in stores {
        match scale::run(&dir, &settings, kind) {
            Ok(o) => outcomes.push(o),
            Err(e) => {
                eprintln!("scale on {}: {e:#}", kind.name());
                failed.push((kind.name(), format!("{e:#}")));
            }
        }
    }
    report::print_scale(&outcomes, &settings);
    for (store, why) in &failed {
        println!("  {store}: not measured: {why}");
    }
    if outcomes.is_empty() {
        bail!("the scale run measured nothing");
    }
    if record {
        let path = cli.out.join("latest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {} (run make bench first)", path.display()))?;
        let mut results: serde_json::Value = serde_json::from_str(&text)?;
        let command = format!("credmgr-bench scale --store {store}");
        results["scale"] = report::scale_json(&outcomes, &settings, &command);
        for (store, why) in failed {
            results["scale"][store] = json!({ "error": why });
        }
        if let Some(m) = results["not_measured"].as_object_mut() {
            m.retain(|k, _| !k.starts_with("scale"));
        }
        std::fs::write(&path, serde_json::to_string_pretty(&results)? + "\n")?;
        println!("wrote the scale figures into {}", path.display());
    }
    Ok(())
}

fn profile_only(cli: &Cli) -> Result<()> {
    let (_dir, stack, load, warmup) = dataplane_stack(cli, "run/bench-profile")?;
    let p = dataplane::profile(&stack, &load, cli.rounds, &warmup)?;
    report::print_profile(
        &p,
        &format!(
            "{} rounds x {} s per variant, wrk 1 thread {} connections on core {}, Envoy on core {}",
            cli.rounds, cli.seconds, cli.connections, cli.load_cpu, cli.server_cpu
        ),
    );
    own_work::print(&own_work::run(
        &credmgr_e2e::repo_root(),
        cli.server_cpu,
        3,
    )?);
    Ok(())
}

/// The OAuth server, the control plane and Envoy on `envoy/bench.yaml`, started in `dir`
/// (under the repository, made anew), with the load and warm-up of `cli`.
fn dataplane_stack(
    cli: &Cli,
    dir: &str,
) -> Result<(std::path::PathBuf, stack::Stack, wrk::Load, wrk::Load)> {
    require(
        "wrk",
        "run `make bench`, which installs the Debian package wrk",
    )?;
    require("taskset", "install util-linux")?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cli.server_cpu >= cores || cli.load_cpu >= cores {
        bail!("this machine has {cores} core(s): choose --server-cpu and --load-cpu below {cores}");
    }
    let root = credmgr_e2e::repo_root();
    let dir = root.canonicalize().unwrap_or(root).join(dir);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let load = wrk::Load {
        connections: cli.connections,
        duration: Duration::from_secs(cli.seconds),
        cpu: cli.load_cpu,
    };
    let warmup = wrk::Load {
        duration: Duration::from_secs(cli.warmup_seconds),
        ..load.clone()
    };
    eprintln!(
        "starting the OAuth server, the control plane and Envoy (logs in {})",
        dir.display()
    );
    // Tokens live an hour: none expires or is refreshed during the runs.
    let stack = stack::Stack::start(&dir, &cli.server_cpu.to_string(), 1, 3600)?;
    Ok((dir, stack, load, warmup))
}

fn refresh_only(ttl: u32, seconds: u64) -> Result<()> {
    let root = credmgr_e2e::repo_root();
    let dir = root
        .canonicalize()
        .unwrap_or(root)
        .join("run/bench-refresh");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let r = refresh::run(&dir, ttl, Duration::from_secs(seconds))?;
    report::print_refresh(&r);
    Ok(())
}

fn redraw(out: &std::path::Path) -> Result<()> {
    let path = out.join("latest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: serde_json::Value = serde_json::from_str(&text)?;
    draw_chart(&results, out);
    Ok(())
}
