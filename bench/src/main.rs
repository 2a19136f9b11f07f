//! credmgr's benchmarks: `make bench-quick` (the data-plane comparison) and `make bench` (that,
//! the cold path, the control plane's runtime API, refresh under load and the scale run). See
//! the Performance section of the README for what each figure means and how it is measured.
//!
//! One Envoy (`--concurrency 1`) runs on the server core, `wrk` on the load core; the OAuth
//! server and the control plane fill the caches once and then sit idle while Envoy is measured.
//! Results go to `bench/results/latest.json` and `bench/results/dataplane-ratios.png`.

mod bare;
mod callgrind;
mod chart;
mod cli;
mod cold;
mod controlplane;
mod dataplane;
mod instructions;
mod only;
mod own_work;
mod raw_http;
mod refresh;
mod report;
mod scale;
mod schedule;
mod stack;
mod token_endpoint;
mod wrk;

use anyhow::{bail, Context, Result};
use clap::Parser;
use cli::{Cli, Sub};
use only::{instructions_only, profile_only, redraw, refresh_only, runtime_only, scale_only};
use serde_json::json;
use std::process::{Command, ExitCode};
use std::time::Duration;

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
