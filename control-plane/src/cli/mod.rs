//! The client commands of `credmgr` (`provider`, `connection`, `policy`, `issuer`,
//! `login-link`, `keys`, `status`): a command line over a running control plane's REST API,
//! with the admin token. Tables for people, `--output json` for scripts, exit codes scripts
//! can branch on ([`args::exit`]), and the API's own error message when it refuses.
//!
//! `args.rs` holds the flags, `client.rs` the HTTP client and the error-to-exit-code
//! mapping, `output.rs` the printing; one file per group of commands.

mod access;
pub mod args;
mod client;
mod connections;
mod misc;
mod output;
mod providers;

pub use args::{ClientCommand, EXIT_CODES};

/// Runs one client command; prints its result, or the reason it failed on stderr. Returns
/// the exit code.
pub fn run(command: ClientCommand) -> u8 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("credmgr: error: starting the runtime: {e}");
            return args::exit::UNAVAILABLE;
        }
    };
    let outcome = runtime.block_on(async {
        match command {
            ClientCommand::Provider(a) => providers::run(&a.opts, a.command).await,
            ClientCommand::Connection(a) => connections::run(&a.opts, a.command).await,
            ClientCommand::Policy(a) => access::policy(&a.opts, a.command).await,
            ClientCommand::Issuer(a) => access::issuer(&a.opts, a.command).await,
            ClientCommand::LoginLink(a) => misc::login_link(a).await,
            ClientCommand::Keys(a) => misc::keys(a).await,
            ClientCommand::Status(a) => misc::status(a).await,
        }
    });
    match outcome {
        Ok(code) => code,
        Err(f) => {
            eprintln!("credmgr: error: {f}");
            f.code
        }
    }
}
