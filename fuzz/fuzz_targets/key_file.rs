//! The control plane's key file (CREDMGR_KEY_FILE: `ID:BASE64` lines, `#` comments, an
//! optional `active=ID`), read into a keyring as at start and on each reload.
//!
//! Checks: a refusal never quotes a key (the base64 part of any line); an accepted file's
//! active key is one of its keys (the `active=` line's, when there is one), and the keyring
//! encrypts and decrypts.
#![no_main]

use credmgr_control_plane::config::fuzz_key_file;
use credmgr_control_plane::crypto::Aad;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let result = fuzz_key_file(text, None);
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    match result {
        Err(e) => {
            let message = format!("{e:#}");
            for line in &lines {
                if line.starts_with('#') || line.starts_with("active=") {
                    continue;
                }
                let Some((_, key)) = line.split_once(':') else {
                    continue;
                };
                let key = key.trim();
                let looks_like_key = key.len() >= 20
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
                if looks_like_key && credmgr_fuzz::occurrences(data, key.as_bytes()) == 1 {
                    assert!(
                        !message.contains(key),
                        "the refusal quotes a key: {message}"
                    );
                }
            }
        }
        Ok(ring) => {
            let active = ring.active_id();
            assert!(
                ring.ids().contains(&active),
                "{active} is not among {:?}",
                ring.ids()
            );
            let named = lines
                .iter()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.strip_prefix("active="))
                .last();
            if let Some(named) = named {
                assert_eq!(active, named.trim());
            }
            let aad = Aad::provider_client_secret("p");
            let envelope = match ring.encrypt(&aad, b"secret") {
                Ok(env) => env,
                Err(e) => panic!("the keyring cannot encrypt: {e}"),
            };
            match ring.decrypt(&aad, &envelope) {
                Ok(plain) => assert_eq!(plain.as_slice(), b"secret"),
                Err(e) => panic!("the keyring cannot decrypt its own envelope: {e}"),
            }
        }
    }
});
