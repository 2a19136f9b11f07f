//! The command line of `credmgr`: its subcommands and the flags of each, every flag also
//! readable from an environment variable (durations as `duration.rs` parses them).
//!
//! `--help` is made from these doc comments, env names and defaults; the README's
//! configuration table repeats them by hand: change both together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[cfg(doc)]
use super::Config;

use super::duration::parse_duration;

/// credmgr: an OAuth 2.0 credential manager for Envoy.
#[derive(Parser)]
#[command(name = "credmgr", version, about, after_help = crate::cli::EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the control plane: management API, runtime API, token store.
    Serve(Box<ServeArgs>),
    /// Print a new random key-encryption key as `ID:BASE64`, for CREDMGR_KEYS.
    GenKey(GenKeyArgs),
    /// The client commands over a running control plane's REST API (`cli/`).
    #[command(flatten)]
    Client(crate::cli::ClientCommand),
}

/// Flags of `credmgr serve`. Deliberately not `Debug`: it holds secrets in plain text until
/// [`Config::from_args`] wraps them.
#[derive(Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the chosen address is printed).
    #[arg(long, env = "CREDMGR_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Database URL. `sqlite://PATH` (one node; the file is created if missing; WAL mode) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (several replicas on one database; TLS
    /// with `?sslmode=verify-full`, the only mode that checks certificate and host; weaker
    /// modes are warned about at start). The schema is migrated at start-up.
    #[arg(
        long,
        env = "CREDMGR_DATABASE_URL",
        default_value = "sqlite://credmgr.db"
    )]
    pub database_url: String,

    /// Bearer token for the management API (`/v1`). Use 32 random bytes, e.g.
    /// `openssl rand -base64 32`.
    #[arg(long, env = "CREDMGR_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Gateway key for the runtime API as NAME=KEY; repeat the flag, or separate entries
    /// with commas in the environment variable. NAME identifies the gateway in logs.
    /// Without any, the runtime API refuses every request.
    #[arg(
        long = "gateway-key",
        env = "CREDMGR_GATEWAY_KEYS",
        value_name = "NAME=KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub gateway_keys: Vec<String>,

    /// Also serve the runtime API to gateways over TLS on this address, where each gateway
    /// must present a client certificate signed by CREDMGR_GATEWAY_CLIENT_CA that names it by
    /// the URI SAN `spiffe://<trust domain>/gateway/<name>`. Port 0 picks a free port (the
    /// chosen address is printed). Needs --tls-cert, --tls-key and --gateway-client-ca.
    #[arg(long, env = "CREDMGR_GATEWAY_TLS_LISTEN", value_name = "ADDR")]
    pub gateway_tls_listen: Option<SocketAddr>,

    /// PEM file with the control plane's TLS certificate (it must carry the DNS name or IP
    /// address gateways reach it by as a subjectAltName), then any intermediates.
    #[arg(long, env = "CREDMGR_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM file with the private key of --tls-cert (PKCS#8, RSA or EC; unencrypted).
    #[arg(long, env = "CREDMGR_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// PEM file with the CA certificates that sign gateways' client certificates.
    #[arg(long, env = "CREDMGR_GATEWAY_CLIENT_CA", value_name = "PATH")]
    pub gateway_client_ca: Option<PathBuf>,

    /// Key-encryption keys as comma-separated ID:BASE64 entries (32-byte keys, from
    /// `credmgr gen-key`). Keep retired keys listed until nothing is wrapped with them.
    #[arg(
        long,
        env = "CREDMGR_KEYS",
        value_name = "ID:BASE64,...",
        value_delimiter = ',',
        hide_env_values = true,
        conflicts_with = "key_file"
    )]
    pub keys: Vec<String>,

    /// File with one ID:BASE64 key-encryption key per line, and optionally a line
    /// `active=ID` naming the active key (it takes precedence over CREDMGR_ACTIVE_KEY_ID);
    /// blank lines and lines starting with `#` are ignored. Instead of --keys. The file is
    /// read again on SIGHUP and on `POST /v1/keys/reload`, for key rotation without restart.
    #[arg(long, env = "CREDMGR_KEY_FILE", value_name = "PATH")]
    pub key_file: Option<PathBuf>,

    /// Id of the key-encryption key that encrypts new secrets. Needed when several keys
    /// are configured; defaults to the only one otherwise.
    #[arg(long, env = "CREDMGR_ACTIVE_KEY_ID", value_name = "ID")]
    pub active_key_id: Option<String>,

    /// Timeout of each request to a provider's token endpoint, e.g. `10s`, `500ms`, `1m`;
    /// a bare number is seconds.
    #[arg(
        long,
        env = "CREDMGR_PROVIDER_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub provider_timeout: Duration,

    /// The control plane's URL as browsers reach it, e.g. `https://credmgr.example.com`.
    /// Login links point here, and `<public URL>/oauth2/callback` is the redirect URI to
    /// register at each authorization-code provider. Defaults to `http://<listen address>`.
    #[arg(long, env = "CREDMGR_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,

    /// How long a login link stays valid (it is also single-use), e.g. `10m`.
    #[arg(
        long,
        env = "CREDMGR_LOGIN_LINK_TTL",
        default_value = "10m",
        value_parser = parse_duration
    )]
    pub login_link_ttl: Duration,

    /// Login URLs the runtime API makes for one caller of self-service providers per minute
    /// (1 to 10000); beyond it the caller gets 429 `rate_limited` with `Retry-After`.
    #[arg(
        long,
        env = "CREDMGR_SELF_SERVICE_LINKS_PER_CALLER",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub self_service_links_per_caller: u32,

    /// Login URLs the runtime API makes for one self-service connection per minute (1 to
    /// 10000); beyond it the caller gets 429 `rate_limited` with `Retry-After`.
    #[arg(
        long,
        env = "CREDMGR_SELF_SERVICE_LINKS_PER_CONNECTION",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub self_service_links_per_connection: u32,

    /// A token is refreshed at 80 % of its lifetime, and at the latest this long before it
    /// expires (but never before half its lifetime).
    #[arg(
        long,
        env = "CREDMGR_REFRESH_SKEW",
        default_value = "60s",
        value_parser = parse_duration
    )]
    pub refresh_skew: Duration,

    /// A gateway's report that a backend refused the stored token (a 401) replaces it at once,
    /// but at most once per connection per this interval, however many requests a backend
    /// refuses.
    #[arg(
        long,
        env = "CREDMGR_FORCED_REFRESH_INTERVAL",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub forced_refresh_interval: Duration,

    /// How often the background scheduler looks for tokens to refresh before they are due;
    /// `0` turns proactive refresh off (tokens are then refreshed only on runtime requests).
    #[arg(
        long,
        env = "CREDMGR_REFRESH_INTERVAL",
        default_value = "1s",
        value_parser = parse_duration
    )]
    pub refresh_interval: Duration,

    /// How many token refreshes the background scheduler makes at once (1 to 1024). Raise it
    /// when providers answer slowly and many tokens come due together (a bulk import comes
    /// due again at the rate it was created); lower it for a provider that throttles its token
    /// endpoint.
    #[arg(
        long,
        env = "CREDMGR_REFRESH_CONCURRENCY",
        default_value_t = crate::tokens::scheduler::DEFAULT_CONCURRENCY,
        value_parser = clap::value_parser!(u16).range(1..=1024)
    )]
    pub refresh_concurrency: u16,

    /// The longest a gateway goes on deciding from access policies and trusted issuers it was
    /// sent before it asks again: a changed or deleted policy, or a new issuer key, reaches
    /// every gateway within this time. Gateways ask again after half of it.
    #[arg(
        long,
        env = "CREDMGR_ACCESS_REFRESH",
        default_value = "30s",
        value_parser = parse_duration
    )]
    pub access_refresh: Duration,

    /// Export traces over OTLP/HTTP (protobuf) to the OpenTelemetry collector at this base URL,
    /// e.g. `http://otel-collector:4318` (spans are posted to `<URL>/v1/traces`). Without it,
    /// the standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT turns the
    /// export on; with none of them, no trace is exported.
    #[arg(long, env = "CREDMGR_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// The plain listener closes a connection that has not sent a request's headers within
    /// this time (counted from its start, and again while it waits for its next request),
    /// e.g. `10s`: slow or stalled clients cannot hold connections.
    #[arg(
        long,
        env = "CREDMGR_HEADER_READ_TIMEOUT",
        default_value = "10s",
        value_parser = parse_duration
    )]
    pub header_read_timeout: Duration,

    /// Most connections the plain listener holds open at once (1 to 65535). At the cap it
    /// accepts no more until one closes: new ones wait in the kernel's backlog. Keep it below
    /// the process's file-descriptor limit (`ulimit -n`), leaving room for the database and
    /// provider connections.
    #[arg(
        long,
        env = "CREDMGR_MAX_CONNECTIONS",
        default_value_t = 1024,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    pub max_connections: u16,

    /// Webhooks and the audit trail.
    #[command(flatten)]
    pub events: super::events::EventArgs,
}

#[derive(Args)]
pub struct GenKeyArgs {
    /// Id of the new key (letters, digits, `-`, `_`, `.`); defaults to `key-YYYYMMDD`.
    #[arg(long)]
    pub id: Option<String>,
}
