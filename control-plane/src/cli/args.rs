//! The flags of the client commands (`credmgr provider ...`, `credmgr connection ...`): they
//! talk to a running control plane's REST API. Imports nothing of the crate, so that
//! `config::args` can list these commands beside `serve` without importing the client.

use clap::{Args, Subcommand, ValueEnum};

/// Exit codes of the client commands, for scripts. Printed by `--help` (see [`EXIT_CODES`]).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The control plane refused the request as invalid (HTTP 400, 415, ...); the message
    /// names the field to fix.
    pub const REFUSED: u8 = 1;
    /// Bad command line (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// The provider, connection, policy, issuer or provider type does not exist (404).
    pub const NOT_FOUND: u8 = 3;
    /// It exists already, or was changed meanwhile (409, 412).
    pub const CONFLICT: u8 = 4;
    /// Missing or wrong admin token (401, 403).
    pub const UNAUTHENTICATED: u8 = 5;
    /// The control plane is unreachable, timed out or failed (5xx).
    pub const UNAVAILABLE: u8 = 6;
    /// `status` and `connection show`: a connection needs attention (not connected).
    pub const ATTENTION: u8 = 7;
}

/// The table of exit codes, as `--help` shows it after the commands.
pub const EXIT_CODES: &str = "\
Exit codes of the client commands (provider, connection, policy, issuer, login-link, keys, status):
  0  done
  1  refused as invalid by the control plane (the message names what to fix)
  2  bad command line
  3  not found
  4  exists already, or changed meanwhile (conflict, precondition failed)
  5  missing or wrong admin token
  6  control plane unreachable, timed out, or failed (5xx)
  7  status / connection show: a connection needs attention";

/// The client commands, listed beside `serve` and `gen-key`.
#[derive(Subcommand)]
pub enum ClientCommand {
    /// Credential providers and the provider types (presets) they are made from.
    Provider(ProviderArgs),
    /// Connections under a provider: their status, expiry and why one is broken.
    Connection(ConnectionArgs),
    /// Access policies: who may use a connection.
    Policy(PolicyArgs),
    /// Trusted issuers of callers' JWTs.
    Issuer(IssuerArgs),
    /// Make a single-use login link for an authorization-code connection.
    LoginLink(LoginLinkArgs),
    /// Key-encryption keys: which key wraps how many secrets, and reloading the key file.
    Keys(KeysArgs),
    /// Whether the control plane answers, and which connections need attention.
    Status(StatusArgs),
}

/// How to reach the control plane, and how to print; accepted anywhere after the command.
#[derive(Args, Clone)]
pub struct ClientOpts {
    /// The control plane's URL.
    #[arg(
        long,
        env = "CREDMGR_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The management API's admin token (as given to `credmgr serve`).
    #[arg(
        long,
        env = "CREDMGR_ADMIN_TOKEN",
        hide_env_values = true,
        global = true
    )]
    pub admin_token: Option<String>,
    /// `table` for people, `json` (the API's own JSON) for scripts.
    #[arg(long, short, value_enum, default_value_t = Output::Table, global = true)]
    pub output: Output,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct ProviderArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: ProviderCommand,
}

#[derive(Subcommand)]
pub enum ProviderCommand {
    /// The provider types (presets), or one type's parameters.
    Types {
        /// A type's id, e.g. `entra-id`: shows its parameters, grants and default scopes.
        id: Option<String>,
    },
    /// Every provider, with how many of its connections are connected.
    List,
    /// One provider's configuration (never its client secret).
    Show { id: String },
    /// Create a provider from a provider type and its parameters.
    Create(Box<ProviderCreate>),
    /// Delete a provider with all its connections and their tokens.
    Delete { id: String },
}

#[derive(Args)]
pub struct ProviderCreate {
    /// The new provider's id (letters, digits, `-`, `_`, `.`).
    pub id: String,
    /// The provider type, from `credmgr provider types`, e.g. `entra-id`, `oauth2`.
    #[arg(long = "type", value_name = "TYPE")]
    pub provider_type: String,
    /// A parameter of the type as NAME=VALUE, e.g. `--param tenant=contoso.onmicrosoft.com`;
    /// repeat for each.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// The OAuth client id registered at the provider.
    #[arg(long)]
    pub client_id: String,
    /// The client secret. Prefer the environment variable, or `--client-secret-stdin`: a flag
    /// is visible to other users in the process list.
    #[arg(long, env = "CREDMGR_CLIENT_SECRET", hide_env_values = true)]
    pub client_secret: Option<String>,
    /// Read the client secret from the first line of standard input.
    #[arg(long, conflicts_with = "client_secret")]
    pub client_secret_stdin: bool,
    /// `client_credentials` or `authorization_code`; defaults to the type's first grant.
    #[arg(long)]
    pub grant: Option<String>,
    /// A scope; repeat for each. Defaults to the type's default scopes.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// The token endpoint (generic types; overrides a preset's).
    #[arg(long)]
    pub token_url: Option<String>,
    /// The authorization endpoint (generic types with the authorization-code grant).
    #[arg(long)]
    pub authorization_url: Option<String>,
    /// Where a login link may send the user after consent; repeat for each.
    #[arg(long = "redirect-url", value_name = "URL")]
    pub redirect_urls: Vec<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Replace the provider if it exists (without it, an existing id exits 4).
    #[arg(long)]
    pub replace: bool,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct ConnectionArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: ConnectionCommand,
}

#[derive(Subcommand)]
pub enum ConnectionCommand {
    /// Connections with status, token expiry and last error; every provider's without one.
    List { provider: Option<String> },
    /// One connection, why it is not connected and what to do (exit 7 when not connected).
    Show {
        provider: String,
        connection: String,
    },
    /// Create a connection (client credentials: a token is fetched at once).
    Create {
        provider: String,
        connection: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Delete a connection and its tokens.
    Delete {
        provider: String,
        connection: String,
    },
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct PolicyArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: PolicyCommand,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// A connection's access policies.
    List {
        provider: String,
        connection: String,
    },
    /// Allow one identity to use a connection: give exactly one of --gateway, --user,
    /// --application, --group (the last three with --issuer).
    Add(Box<PolicyAdd>),
    /// Remove a policy (a connection without policies is usable by nobody).
    Delete {
        provider: String,
        connection: String,
        policy: String,
    },
}

#[derive(Args)]
pub struct PolicyAdd {
    pub provider: String,
    pub connection: String,
    /// The policy's id.
    pub policy: String,
    /// A gateway, by the name of its gateway key or certificate.
    #[arg(long, group = "identity")]
    pub gateway: Option<String>,
    /// A user, by object id (the `sub`/`oid` claim).
    #[arg(long, group = "identity", requires = "issuer")]
    pub user: Option<String>,
    /// An application (service principal), by client id.
    #[arg(long, group = "identity", requires = "issuer")]
    pub application: Option<String>,
    /// Members of a group, by group id (the groups claim).
    #[arg(long, group = "identity", requires = "issuer")]
    pub group: Option<String>,
    /// The issuer (`iss`) of the user's, application's or group's tokens.
    #[arg(long)]
    pub issuer: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct IssuerArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    #[command(subcommand)]
    pub command: IssuerCommand,
}

#[derive(Subcommand)]
pub enum IssuerCommand {
    /// Trusted issuers, with the state of their keys.
    List,
    /// One issuer.
    Show { id: String },
    /// Trust an issuer's JWTs (keys from its JWKS URI).
    Add {
        id: String,
        /// `iss` exactly as the issuer writes it.
        #[arg(long)]
        issuer: String,
        /// An audience a token must name; repeat for each.
        #[arg(long = "audience", required = true)]
        audiences: Vec<String>,
        /// Where the issuer publishes its keys.
        #[arg(long)]
        jwks_uri: String,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// Stop trusting an issuer.
    Delete { id: String },
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct LoginLinkArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    pub provider: String,
    pub connection: String,
    /// Where the user's browser goes after consent: one of the provider's redirect URLs
    /// (defaults to its only one).
    #[arg(long)]
    pub redirect_url: Option<String>,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct KeysArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
    /// Read the key file again (after adding a key or naming another active) instead of
    /// showing the usage.
    #[arg(long)]
    pub reload: bool,
}

#[derive(Args)]
#[command(after_help = EXIT_CODES)]
pub struct StatusArgs {
    #[command(flatten)]
    pub opts: ClientOpts,
}
