//! Key-encryption keys from the configuration: the `ID:BASE64` entries of CREDMGR_KEYS, the
//! key file of CREDMGR_KEY_FILE (read at start and again on each reload), the keyring they
//! make, and the line `credmgr gen-key` prints.
//!
//! Errors name the entry or line that is wrong, never its key, and say how to make a good one.

use anyhow::{bail, Context as _};
use credmgr_common::ids::validate_id;
use secrecy::SecretString;

use super::GenKeyArgs;
use crate::crypto::{KeyEncryptionKey, Keyring};

const FIX_KEYS: &str = "run `credmgr gen-key` and set CREDMGR_KEYS to the line it prints \
                        (or put the line in a file named by CREDMGR_KEY_FILE)";

pub(super) fn parse_key_entries(
    entries: &[String],
    source: &str,
) -> anyhow::Result<Vec<KeyEncryptionKey>> {
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

pub(super) fn keyring(
    keys: Vec<KeyEncryptionKey>,
    active: Option<&str>,
) -> anyhow::Result<Keyring> {
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
    parse_key_file(&text, &path.display().to_string())
}

/// The keys and `active=ID` line of a key file's text; errors name the line and `file`.
fn parse_key_file(
    text: &str,
    file: &str,
) -> anyhow::Result<(Vec<KeyEncryptionKey>, Option<String>)> {
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
                "line {} of the key file {file} is malformed: {err}; {FIX_KEYS}",
                i + 1
            )
        })?);
    }
    Ok((keys, active))
}

/// For the fuzz targets in `fuzz/` (not an API): a key file's text read into a keyring, as
/// [`load_key_file`] reads the file.
#[doc(hidden)]
pub fn fuzz_key_file(text: &str, active_env: Option<&str>) -> anyhow::Result<Keyring> {
    let (keys, active_in_file) = parse_key_file(text, "fuzz")?;
    keyring(keys, active_in_file.as_deref().or(active_env))
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
pub(super) mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    /// A new key as the `ID:BASE64` line `credmgr gen-key` prints.
    pub(in crate::config) fn key_line(id: &str) -> String {
        gen_key_line(&GenKeyArgs {
            id: Some(id.into()),
        })
        .unwrap()
        .expose_secret()
        .to_owned()
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
