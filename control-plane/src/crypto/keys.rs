//! Key-encryption keys as configured: `ID:BASE64` lines, as `credmgr gen-key` prints them.

use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use base64::alphabet::STANDARD as STANDARD_ALPHABET;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use credmgr_common::ids::validate_id;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::KEY_LEN;

/// Standard base64, with or without the trailing `=`.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD_ALPHABET,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why a key line (`ID:BASE64`) was refused. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyLineError {
    #[error("expected ID:BASE64, found no ':'")]
    NoColon,
    #[error("key id `{id}` is not valid: it {reason}")]
    BadId { id: String, reason: String },
    #[error("key `{0}`: the part after ':' is not valid base64")]
    BadBase64(String),
    #[error("key `{id}`: decodes to {len} bytes, a key must be exactly {KEY_LEN} bytes")]
    BadLength { id: String, len: usize },
}

/// One key-encryption key as read from configuration.
pub struct KeyEncryptionKey {
    pub(super) id: String,
    pub(super) key: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyEncryptionKey({}, [redacted])", self.id)
    }
}

impl KeyEncryptionKey {
    /// Parses `ID:BASE64` (standard base64 of 32 bytes, padding optional).
    pub fn parse(line: &str) -> Result<Self, KeyLineError> {
        let (id, b64) = line.trim().split_once(':').ok_or(KeyLineError::NoColon)?;
        let id = id.trim();
        validate_id(id).map_err(|reason| KeyLineError::BadId {
            id: id.to_owned(),
            reason,
        })?;
        let decoded = Zeroizing::new(
            LENIENT_BASE64
                .decode(b64.trim())
                .map_err(|_| KeyLineError::BadBase64(id.to_owned()))?,
        );
        let key: [u8; KEY_LEN] =
            decoded
                .as_slice()
                .try_into()
                .map_err(|_| KeyLineError::BadLength {
                    id: id.to_owned(),
                    len: decoded.len(),
                })?;
        Ok(KeyEncryptionKey {
            id: id.to_owned(),
            key: Zeroizing::new(key),
        })
    }

    /// A fresh random key, as the line `ID:BASE64` that [`KeyEncryptionKey::parse`] reads.
    pub fn generate_line(id: &str) -> SecretString {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut());
        SecretString::from(format!("{id}:{}", STANDARD.encode(key.as_ref())))
    }

    /// The key's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key(id: &str) -> KeyEncryptionKey {
        KeyEncryptionKey::parse(KeyEncryptionKey::generate_line(id).expose_secret()).unwrap()
    }

    #[test]
    fn key_lines_are_checked_without_echoing_the_key() {
        let line = KeyEncryptionKey::generate_line("k1");
        assert!(KeyEncryptionKey::parse(line.expose_secret()).is_ok());
        assert!(matches!(
            KeyEncryptionKey::parse("no-colon"),
            Err(KeyLineError::NoColon)
        ));
        let err = KeyEncryptionKey::parse("k1:c2hvcnQ=").unwrap_err();
        assert!(err.to_string().contains("5 bytes"), "{err}");
        let err = KeyEncryptionKey::parse("k1:not base64!!secretish").unwrap_err();
        assert!(!err.to_string().contains("secretish"), "{err}");
        assert!(KeyEncryptionKey::parse("bad/id:AAAA").is_err());
        let shown = format!("{:?}", key("k9"));
        assert_eq!(shown, "KeyEncryptionKey(k9, [redacted])");
    }

    #[test]
    fn padding_is_optional() {
        let line = KeyEncryptionKey::generate_line("k1");
        let unpadded = line.expose_secret().trim_end_matches('=');
        assert!(KeyEncryptionKey::parse(unpadded).is_ok());
    }
}
