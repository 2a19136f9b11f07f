//! The `credmgr` binary: parses the command line and runs the control plane, or one of the
//! client commands over its REST API (`credmgr_control_plane::cli`).

use std::process::ExitCode;

use clap::Parser as _;
use credmgr_control_plane::config::{gen_key_line, Cli, Command};
use credmgr_control_plane::telemetry::otlp;
use credmgr_control_plane::{serve, Config};
use secrecy::ExposeSecret as _;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::GenKey(args) => {
            gen_key_line(&args).map(|line| println!("{}", line.expose_secret()))
        }
        Command::Serve(args) => run(*args),
        Command::Client(command) => {
            return ExitCode::from(credmgr_control_plane::cli::run(command));
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("credmgr: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (stdout carries the "listening" line); RUST_LOG filters, default info.
/// Traces go to an OTLP collector if one is configured, from the runtime (set up inside it),
/// and the last ones are sent before the process exits.
fn run(args: credmgr_control_plane::config::ServeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let telemetry = {
        let _inside = runtime.enter();
        otlp::init(args.otlp_endpoint.as_deref())?
    };
    let result = Config::from_args(args).and_then(|config| runtime.block_on(serve(config)));
    telemetry.shutdown();
    result
}
