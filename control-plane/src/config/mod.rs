//! Command line and configuration: every flag can also come from the environment.
//!
//! Secrets (admin token, gateway keys, key-encryption keys) are read as plain strings by clap
//! and turned into redacting types at once in [`Config::from_args`], whose errors never echo
//! them. Prefer the environment variables to the flags for secrets: command lines are
//! visible to every user of the machine.
//!
//! This file holds [`Config`] and its validation at start; the flags themselves are in
//! `args.rs`.

mod args;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use credmgr_common::ids::validate_id;
use secrecy::{ExposeSecret, SecretString};

pub use self::args::{parse_duration, Cli, Command, GenKeyArgs, ServeArgs};
use crate::auth::GatewayKey;
use crate::crypto::{KeyEncryptionKey, Keyring};
use crate::gateway_tls;
use crate::store::DatabaseUrl;

/// Shortest admin token or gateway key accepted without a warning.
const MIN_SECRET_LEN: usize = 16;

const FIX_KEYS: &str = "run `credmgr gen-key` and set CREDMGR_KEYS to the line it prints \
                        (or put the line in a file named by CREDMGR_KEY_FILE)";

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
    pub refresh_skew: Duration,
    /// Zero: no proactive refresh.
    pub refresh_interval: Duration,
    /// Refreshes the scheduler makes at once.
    pub refresh_concurrency: u16,
    /// How stale a gateway's access decisions may get.
    pub access_refresh: Duration,
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
        Ok(Config {
            access_refresh: args.access_refresh,
            public_url,
            login_link_ttl: args.login_link_ttl,
            refresh_skew: args.refresh_skew,
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

fn parse_key_entries(entries: &[String], source: &str) -> anyhow::Result<Vec<KeyEncryptionKey>> {
    entries
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .enumerate()
        .map(|(i, e)| {
            KeyEncryptionKey::parse(e).map_err(|err| {
                anyhow::anyhow!(
                    "entry {} of {source} is malformed: {err}; {FIX_KEYS}",
                    i + 1
                )
            })
        })
        .collect()
}

fn keyring(keys: Vec<KeyEncryptionKey>, active: Option<&str>) -> anyhow::Result<Keyring> {
    if keys.is_empty() {
        bail!("no key-encryption key is configured: {FIX_KEYS}");
    }
    Keyring::new(keys, active).with_context(|| "the key-encryption keys cannot be used".to_owned())
}

/// Reads a key file into a keyring: at start-up, and again on each reload. The file's
/// `active=ID` line, if any, wins over `active_env` (CREDMGR_ACTIVE_KEY_ID).
pub fn load_key_file(path: &std::path::Path, active_env: Option<&str>) -> anyhow::Result<Keyring> {
    let (keys, active_in_file) = read_key_file(path)?;
    keyring(keys, active_in_file.as_deref().or(active_env))
}

fn read_key_file(
    path: &std::path::Path,
) -> anyhow::Result<(Vec<KeyEncryptionKey>, Option<String>)> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).with_context(|| {
        format!(
            "could not read the key file {} named by CREDMGR_KEY_FILE (--key-file)",
            path.display()
        )
    })?);
    let mut keys = Vec::new();
    let mut active = None;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(id) = line.strip_prefix("active=") {
            active = Some(id.trim().to_owned());
            continue;
        }
        keys.push(KeyEncryptionKey::parse(line).map_err(|err| {
            anyhow::anyhow!(
                "line {} of the key file {} is malformed: {err}; {FIX_KEYS}",
                i + 1,
                path.display()
            )
        })?);
    }
    Ok((keys, active))
}

/// The line `credmgr gen-key` prints.
pub fn gen_key_line(args: &GenKeyArgs) -> anyhow::Result<SecretString> {
    let id = match &args.id {
        Some(id) => id.clone(),
        None => {
            let today = time::OffsetDateTime::now_utc().date();
            format!(
                "key-{:04}{:02}{:02}",
                today.year(),
                u8::from(today.month()),
                today.day()
            )
        }
    };
    validate_id(&id).map_err(|why| anyhow::anyhow!("--id `{id}` {why}"))?;
    Ok(KeyEncryptionKey::generate_line(&id))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

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

    fn key_line(id: &str) -> String {
        gen_key_line(&GenKeyArgs {
            id: Some(id.into()),
        })
        .unwrap()
        .expose_secret()
        .to_owned()
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
    fn the_key_file_can_name_the_active_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("keys");
        std::fs::write(
            &file,
            format!("{}\n{}\nactive=b\n", key_line("a"), key_line("b")),
        )
        .unwrap();
        let ring = load_key_file(&file, Some("a")).unwrap();
        assert_eq!(ring.active_id(), "b", "the file wins over the environment");
        std::fs::write(&file, format!("{}\nactive=zz\n", key_line("a"))).unwrap();
        assert!(load_key_file(&file, None).is_err());
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

    #[test]
    fn gen_key_lines_parse() {
        let line = gen_key_line(&GenKeyArgs { id: None }).unwrap();
        let key = KeyEncryptionKey::parse(line.expose_secret()).unwrap();
        assert!(key.id().starts_with("key-"));
        assert!(gen_key_line(&GenKeyArgs {
            id: Some("a:b".into())
        })
        .is_err());
    }
}
