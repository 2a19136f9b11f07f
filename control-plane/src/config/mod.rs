//! Command line and configuration: every flag can also come from the environment.
//!
//! Secrets (admin token, gateway keys, key-encryption keys) are read as plain strings by clap
//! and turned into redacting types at once in [`Config::from_args`], whose errors never echo
//! them. Prefer the environment variables to the flags for secrets: command lines are
//! visible to every user of the machine.
//!
//! This file holds [`Config`] and its validation at start; the flags themselves are in
//! `args.rs`, the key-encryption keys' parsing in `keys.rs`.

mod args;
mod duration;
mod events;
mod keys;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use credmgr_common::ids::validate_id;
use secrecy::{ExposeSecret, SecretString};

use crate::auth::credentials::GatewayKey;
use crate::crypto::Keyring;
use crate::gateway_tls;
use crate::store::{DatabaseUrl, LinkLimits};

pub use args::{Cli, Command, GenKeyArgs, ServeArgs};
pub use duration::parse_duration;
pub use events::EventSettings;
#[doc(hidden)]
pub use keys::fuzz_key_file;
pub use keys::{gen_key_line, load_key_file};
use keys::{keyring, parse_key_entries};

/// Shortest admin token or gateway key accepted without a warning.
const MIN_SECRET_LEN: usize = 16;

/// The validated configuration of `credmgr serve`.
#[derive(Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub admin_token: SecretString,
    pub gateway_keys: Vec<GatewayKey>,
    /// The gateways' TLS listener, if any.
    pub gateway_tls: Option<gateway_tls::Settings>,
    pub keyring: Keyring,
    /// Where the keys come from when they are reloaded (`None`: CREDMGR_KEYS, not reloadable).
    pub key_file: Option<PathBuf>,
    /// CREDMGR_ACTIVE_KEY_ID, for reloads.
    pub active_key_id: Option<String>,
    pub provider_timeout: Duration,
    /// `None`: `http://<listen address>` (with the port actually bound).
    pub public_url: Option<url::Url>,
    pub login_link_ttl: Duration,
    /// Self-service login URLs per caller and per connection, per minute.
    pub self_service_limits: LinkLimits,
    pub refresh_skew: Duration,
    /// At most one refresh forced by backend refusals per connection per this interval.
    pub forced_refresh_interval: Duration,
    /// Zero: no proactive refresh.
    pub refresh_interval: Duration,
    /// Refreshes the scheduler makes at once.
    pub refresh_concurrency: u16,
    /// How stale a gateway's access decisions may get.
    pub access_refresh: Duration,
    /// The plain listener's header-read timeout and connection cap.
    pub http: crate::http_server::Limits,
    /// Webhooks and the audit trail.
    pub events: EventSettings,
}

impl Config {
    /// Validates the flags. Errors say what to change; none contains a secret.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Config> {
        let admin_token = SecretString::from(args.admin_token.trim().to_owned());
        if admin_token.expose_secret().is_empty() {
            bail!(
                "CREDMGR_ADMIN_TOKEN (--admin-token) is empty: set it to a random secret, \
                 e.g. the output of `openssl rand -base64 32`"
            );
        }
        if admin_token.expose_secret().len() < MIN_SECRET_LEN {
            tracing::warn!(
                "CREDMGR_ADMIN_TOKEN is shorter than {MIN_SECRET_LEN} characters; use a long \
                 random value in production"
            );
        }
        let gateway_keys = parse_gateway_keys(&args.gateway_keys)?;
        let gateway_tls = gateway_tls_settings(&args)?;
        let keyring = match &args.key_file {
            Some(path) => load_key_file(path, args.active_key_id.as_deref())?,
            None => {
                let keys = parse_key_entries(&args.keys, "CREDMGR_KEYS (--keys)")?;
                keyring(keys, args.active_key_id.as_deref())?
            }
        };
        if args.provider_timeout.is_zero() {
            bail!("CREDMGR_PROVIDER_TIMEOUT (--provider-timeout) must be more than 0");
        }
        let public_url = args
            .public_url
            .as_deref()
            .map(parse_public_url)
            .transpose()?;
        if args.login_link_ttl.is_zero() {
            bail!("CREDMGR_LOGIN_LINK_TTL (--login-link-ttl) must be more than 0");
        }
        if args.access_refresh < Duration::from_secs(2) {
            bail!(
                "CREDMGR_ACCESS_REFRESH (--access-refresh) must be at least 2s: gateways ask \
                 again after half of it"
            );
        }
        if args.header_read_timeout < Duration::from_millis(100) {
            bail!(
                "CREDMGR_HEADER_READ_TIMEOUT (--header-read-timeout) must be at least 100ms: \
                 clients need time to send a request's headers"
            );
        }
        let events = args.events.settings()?;
        Ok(Config {
            events,
            http: crate::http_server::Limits {
                header_read_timeout: args.header_read_timeout,
                max_connections: usize::from(args.max_connections),
            },
            access_refresh: args.access_refresh,
            public_url,
            login_link_ttl: args.login_link_ttl,
            self_service_limits: LinkLimits {
                per_caller: args.self_service_links_per_caller,
                per_connection: args.self_service_links_per_connection,
            },
            refresh_skew: args.refresh_skew,
            forced_refresh_interval: args.forced_refresh_interval,
            refresh_interval: args.refresh_interval,
            refresh_concurrency: args.refresh_concurrency,
            listen: args.listen,
            database_url: DatabaseUrl::new(args.database_url),
            admin_token,
            gateway_keys,
            gateway_tls,
            keyring,
            key_file: args.key_file,
            active_key_id: args.active_key_id,
            provider_timeout: args.provider_timeout,
        })
    }
}

/// An absolute http(s) URL with no query or fragment; a trailing `/` is dropped.
fn parse_public_url(raw: &str) -> anyhow::Result<url::Url> {
    let fix = "set CREDMGR_PUBLIC_URL (--public-url) to the control plane's URL as browsers \
               reach it, e.g. https://credmgr.example.com";
    let url = url::Url::parse(raw.trim().trim_end_matches('/'))
        .map_err(|e| anyhow::anyhow!("`{raw}` is not a URL ({e}): {fix}"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host_str().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        bail!("`{raw}` must be an http or https URL without query or fragment: {fix}");
    }
    Ok(url)
}

/// The TLS listener's flags come together or not at all: a certificate path without the
/// listener would be silently unused, and a listener without one of them cannot start.
fn gateway_tls_settings(args: &ServeArgs) -> anyhow::Result<Option<gateway_tls::Settings>> {
    let files = [
        ("CREDMGR_TLS_CERT (--tls-cert)", &args.tls_cert),
        ("CREDMGR_TLS_KEY (--tls-key)", &args.tls_key),
        (
            "CREDMGR_GATEWAY_CLIENT_CA (--gateway-client-ca)",
            &args.gateway_client_ca,
        ),
    ];
    let Some(listen) = args.gateway_tls_listen else {
        if let Some((name, _)) = files.iter().find(|(_, v)| v.is_some()) {
            bail!(
                "{name} is set but CREDMGR_GATEWAY_TLS_LISTEN (--gateway-tls-listen) is not: \
                 set the address of the gateways' TLS listener, or unset {name}"
            );
        }
        return Ok(None);
    };
    let missing: Vec<&str> = files
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        bail!(
            "CREDMGR_GATEWAY_TLS_LISTEN (--gateway-tls-listen) also needs {}: the control \
             plane's certificate and key, and the CA that signs gateways' client certificates \
             (PEM files)",
            missing.join(", ")
        );
    }
    let path = |v: &Option<PathBuf>| v.clone().unwrap_or_default();
    Ok(Some(gateway_tls::Settings {
        listen,
        cert: path(&args.tls_cert),
        key: path(&args.tls_key),
        client_ca: path(&args.gateway_client_ca),
    }))
}

fn parse_gateway_keys(entries: &[String]) -> anyhow::Result<Vec<GatewayKey>> {
    let mut names = BTreeSet::new();
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let n = i + 1;
        let Some((name, key)) = entry.split_once('=') else {
            bail!("gateway key entry {n} of CREDMGR_GATEWAY_KEYS (--gateway-key) is not NAME=KEY");
        };
        let (name, key) = (name.trim(), key.trim());
        validate_id(name).map_err(|why| {
            anyhow::anyhow!("gateway name `{name}` (entry {n} of CREDMGR_GATEWAY_KEYS) {why}")
        })?;
        if key.is_empty() {
            bail!("gateway `{name}` has an empty key in CREDMGR_GATEWAY_KEYS");
        }
        if key.len() < MIN_SECRET_LEN {
            tracing::warn!(
                gateway = name,
                "gateway key is shorter than {MIN_SECRET_LEN} characters; use a long random \
                 value in production"
            );
        }
        if !names.insert(name.to_owned()) {
            bail!("gateway `{name}` appears twice in CREDMGR_GATEWAY_KEYS");
        }
        keys.push(GatewayKey {
            name: name.to_owned(),
            key: SecretString::from(key.to_owned()),
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::keys::tests::key_line;
    use super::*;

    fn args(extra: &[&str]) -> Result<ServeArgs, clap::Error> {
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let mut argv = vec!["credmgr", "--admin-token", "admin-token-0123456789"];
        argv.extend_from_slice(extra);
        T::try_parse_from(argv).map(|t| t.serve)
    }

    #[test]
    fn a_missing_key_refuses_to_start_and_says_how_to_fix_it() {
        let err = Config::from_args(args(&[]).unwrap()).unwrap_err();
        assert!(format!("{err:#}").contains("credmgr gen-key"), "{err:#}");
    }

    #[test]
    fn a_malformed_key_is_refused_without_echoing_it() {
        let err =
            Config::from_args(args(&["--keys", "k1:tooshortsecretish"]).unwrap()).unwrap_err();
        let text = format!("{err:#}");
        assert!(
            text.contains("gen-key") && !text.contains("tooshortsecretish"),
            "{text}"
        );
    }

    #[test]
    fn several_keys_need_an_active_one() {
        let keys = format!("{},{}", key_line("a"), key_line("b"));
        let err = Config::from_args(args(&["--keys", &keys]).unwrap()).unwrap_err();
        assert!(
            format!("{err:#}").contains("CREDMGR_ACTIVE_KEY_ID"),
            "{err:#}"
        );
        let config =
            Config::from_args(args(&["--keys", &keys, "--active-key-id", "b"]).unwrap()).unwrap();
        assert_eq!(config.keyring.active_id(), "b");
    }

    #[test]
    fn a_full_configuration_parses_and_never_shows_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(&file, format!("# comment\n\n{}\n", key_line("k1"))).unwrap();
        let config = Config::from_args(
            args(&[
                "--listen",
                "127.0.0.1:0",
                "--key-file",
                file.to_str().unwrap(),
                "--gateway-key",
                "edge-1=gateway-key-one-0123",
                "--gateway-key",
                "edge-2=gateway-key-two-0123",
                "--provider-timeout",
                "1500ms",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(config.gateway_keys.len(), 2);
        assert_eq!(config.provider_timeout, Duration::from_millis(1500));
        assert_eq!(config.keyring.active_id(), "k1");
        let shown = format!("{config:?}");
        for secret in [
            "admin-token-0123456789",
            "gateway-key-one",
            &key_line("k1")[3..],
        ] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn self_service_link_limits_default_and_are_bounded() {
        let keys = key_line("k1");
        let config = Config::from_args(args(&["--keys", &keys]).unwrap()).unwrap();
        assert_eq!(
            config.self_service_limits,
            LinkLimits {
                per_caller: 10,
                per_connection: 5
            }
        );
        let config = Config::from_args(
            args(&[
                "--keys",
                &keys,
                "--self-service-links-per-caller",
                "30",
                "--self-service-links-per-connection",
                "2",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(config.self_service_limits.per_caller, 30);
        assert_eq!(config.self_service_limits.per_connection, 2);
        assert!(args(&["--self-service-links-per-connection", "0"]).is_err());
    }

    #[test]
    fn bad_gateway_keys_are_refused() {
        let keys = key_line("k1");
        for bad in ["no-equals", "bad/name=key", "edge=", "a=k1k1k1,a=k2k2k2"] {
            let parsed = args(&["--keys", &keys, "--gateway-key", bad]).unwrap();
            assert!(Config::from_args(parsed).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_gateway_tls_flags_come_together() {
        let keys = key_line("k1");
        let base = ["--keys", keys.as_str()];
        let parse = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            Config::from_args(args(&all).unwrap())
        };
        assert!(parse(&[]).unwrap().gateway_tls.is_none());
        let err = parse(&["--tls-cert", "c.pem"]).unwrap_err();
        assert!(
            format!("{err}").contains("CREDMGR_GATEWAY_TLS_LISTEN"),
            "{err}"
        );
        let err =
            parse(&["--gateway-tls-listen", "127.0.0.1:0", "--tls-cert", "c.pem"]).unwrap_err();
        let text = format!("{err}");
        assert!(
            text.contains("CREDMGR_TLS_KEY") && text.contains("CREDMGR_GATEWAY_CLIENT_CA"),
            "{text}"
        );
        let config = parse(&[
            "--gateway-tls-listen",
            "127.0.0.1:0",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--gateway-client-ca",
            "ca.pem",
        ])
        .unwrap();
        let tls = config.gateway_tls.unwrap();
        assert_eq!(tls.listen.port(), 0);
        assert_eq!(tls.client_ca, PathBuf::from("ca.pem"));
    }
}
