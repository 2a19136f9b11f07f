//! The `credmgr` binary: parses the command line and runs the control plane, or one of the
//! client commands over its REST API (`credmgr_control_plane::cli`).

use std::io::IsTerminal as _;
use std::process::ExitCode;

use clap::Parser as _;
use credmgr_control_plane::config::{gen_key_line, Cli, Command};
use credmgr_control_plane::{serve, Config};
use secrecy::ExposeSecret as _;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::GenKey(args) => {
            gen_key_line(&args).map(|line| println!("{}", line.expose_secret()))
        }
        Command::Serve(args) => {
            init_logging();
            run(*args)
        }
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

fn run(args: credmgr_control_plane::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(config))
}

/// Logs go to stderr (stdout carries the "listening" line); RUST_LOG filters, default info.
fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
