//! The subcommands that run one part of the benchmark alone (instructions, runtime API,
//! scale, profile, refresh) or redraw the chart, printing their figures and, where asked,
//! merging them into an existing latest.json.

use crate::cli::Cli;
use crate::{
    dataplane, dataplane_stack, draw_chart, instructions, own_work, refresh, report, require,
    runtime_api, scale,
};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::time::Duration;

pub(crate) fn instructions_only(
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

pub(crate) fn runtime_only(cli: &Cli) -> Result<()> {
    let (_dir, stack, load, warmup) = dataplane_stack(cli, "run/bench-runtime")?;
    let r = runtime_api(cli, &stack, &load, &warmup)?;
    report::print_runtime(&r);
    Ok(())
}

pub(crate) fn scale_only(
    cli: &Cli,
    settings: scale::Settings,
    store: &str,
    record: bool,
) -> Result<()> {
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

pub(crate) fn profile_only(cli: &Cli) -> Result<()> {
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

pub(crate) fn refresh_only(ttl: u32, seconds: u64) -> Result<()> {
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

pub(crate) fn redraw(out: &std::path::Path) -> Result<()> {
    let path = out.join("latest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let results: serde_json::Value = serde_json::from_str(&text)?;
    draw_chart(&results, out);
    Ok(())
}
