//! The stored form of one encrypted secret.

use std::fmt;

use super::{CryptoError, KEY_LEN};

/// AES-GCM's 96-bit nonce. Random nonces are safe here: each DEK encrypts exactly one
/// message, and each KEK wraps far fewer than the 2^32 messages NIST SP 800-38D allows.
pub(super) const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
pub(super) const WRAPPED_DEK_LEN: usize = KEY_LEN + TAG_LEN;
/// First byte of a serialized [`Envelope`]; a later format gets a new number.
const FORMAT_V1: u8 = 1;

/// One encrypted secret as stored. Serialized with [`Envelope::to_bytes`]:
/// `version(1) | kek_id_len(1) | kek_id | dek_nonce(12) | wrapped_dek(48) | nonce(12) | ciphertext`.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(super) kek_id: String,
    pub(super) dek_nonce: [u8; NONCE_LEN],
    pub(super) wrapped_dek: [u8; WRAPPED_DEK_LEN],
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) ciphertext: Vec<u8>,
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("kek_id", &self.kek_id)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

impl Envelope {
    /// Id of the key-encryption key that wrapped this envelope's data key.
    pub fn kek_id(&self) -> &str {
        &self.kek_id
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            2 + self.kek_id.len() + 2 * NONCE_LEN + WRAPPED_DEK_LEN + self.ciphertext.len(),
        );
        out.push(FORMAT_V1);
        // KEK ids are validated ids: at most 64 bytes.
        out.push(u8::try_from(self.kek_id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.kek_id.as_bytes());
        out.extend_from_slice(&self.dek_nonce);
        out.extend_from_slice(&self.wrapped_dek);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the stored form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        let (&version, rest) = bytes.split_first().ok_or(CryptoError::Malformed("empty"))?;
        if version != FORMAT_V1 {
            return Err(CryptoError::Malformed("unknown format version"));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(CryptoError::Malformed("truncated"))?;
        let (id, rest) = split(rest, usize::from(id_len))?;
        let kek_id = std::str::from_utf8(id)
            .map_err(|_| CryptoError::Malformed("key id is not UTF-8"))?
            .to_owned();
        let (dek_nonce, rest) = split(rest, NONCE_LEN)?;
        let (wrapped_dek, rest) = split(rest, WRAPPED_DEK_LEN)?;
        let (nonce, ciphertext) = split(rest, NONCE_LEN)?;
        if ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed("truncated"));
        }
        Ok(Envelope {
            kek_id,
            dek_nonce: array(dek_nonce)?,
            wrapped_dek: array(wrapped_dek)?,
            nonce: array(nonce)?,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

fn split(bytes: &[u8], at: usize) -> Result<(&[u8], &[u8]), CryptoError> {
    if bytes.len() < at {
        return Err(CryptoError::Malformed("truncated"));
    }
    Ok(bytes.split_at(at))
}

pub(super) fn array<const N: usize>(bytes: &[u8]) -> Result<[u8; N], CryptoError> {
    bytes
        .try_into()
        .map_err(|_| CryptoError::Malformed("bad field length"))
}
