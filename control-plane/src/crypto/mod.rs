//! Encryption at rest: envelope encryption with AES-256-GCM.
//!
//! Every stored secret (a client secret, an access token) gets its own random 256-bit data key
//! (DEK). The secret is encrypted under the DEK; the DEK is encrypted ("wrapped") under the
//! active key-encryption key (KEK), whose id is recorded next to it. Both encryptions carry
//! associated data naming the record and field ([`Aad`]), so a ciphertext copied into another
//! row, or into another field of the same row, fails to decrypt.
//!
//! Key rotation re-wraps the DEKs under a new KEK ([`Keyring::rewrap`]) and leaves the
//! secret's ciphertext untouched. KEKs never reach the database; they come from configuration.

mod envelope;
mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use secrecy::SecretString;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use envelope::Envelope;
use envelope::{array, NONCE_LEN, WRAPPED_DEK_LEN};
pub use keys::{KeyEncryptionKey, KeyLineError};

/// Length of a key-encryption key and of a data key, in bytes (AES-256).
pub const KEY_LEN: usize = 32;

/// Associated data binding a ciphertext to one field of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(String);

impl Aad {
    /// The client secret of a provider.
    pub fn provider_client_secret(provider_id: &str) -> Self {
        Aad(format!("credmgr/v1/provider/{provider_id}/client_secret"))
    }

    /// The client secret with which a connection overrides its provider's.
    pub fn connection_client_secret(provider_id: &str, connection_id: &str) -> Self {
        Aad(format!(
            "credmgr/v1/connection/{provider_id}/{connection_id}/client_secret"
        ))
    }

    /// The access token stored for a connection.
    pub fn connection_access_token(provider_id: &str, connection_id: &str) -> Self {
        Aad(format!(
            "credmgr/v1/connection/{provider_id}/{connection_id}/access_token"
        ))
    }

    /// The refresh token stored for a connection.
    pub fn connection_refresh_token(provider_id: &str, connection_id: &str) -> Self {
        Aad(format!(
            "credmgr/v1/connection/{provider_id}/{connection_id}/refresh_token"
        ))
    }

    /// The signing secret of a webhook endpoint.
    pub fn webhook_secret(webhook_id: &str) -> Self {
        Aad(format!("credmgr/v1/webhook/{webhook_id}/secret"))
    }

    /// The PKCE code verifier of one authorization request, named by its state's hash (hex).
    pub fn consent_code_verifier(state_hash_hex: &str) -> Self {
        Aad(format!("credmgr/v1/consent/{state_hash_hex}/code_verifier"))
    }

    /// Ids are validated (no `/`), so each record and field has exactly one string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The associated data of the DEK wrapping: the record and the KEK id, so a wrapped DEK
    /// is only accepted for the record it belongs to and under the KEK the envelope names.
    fn for_wrapping(&self, kek_id: &str) -> Vec<u8> {
        format!("{}#dek/{kek_id}", self.0).into_bytes()
    }
}

/// Why a secret could not be encrypted or decrypted. Never contains key material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "a stored secret is wrapped with key-encryption key `{0}`, which is not configured: \
         add it back to CREDMGR_KEYS or CREDMGR_KEY_FILE (retired keys must stay configured \
         until every secret is re-wrapped)"
    )]
    UnknownKek(String),
    #[error(
        "key-encryption key `{kek_id}` could not unwrap the data key of {aad}: the key \
         configured under that id is not the one that wrapped it, or the record was altered"
    )]
    Unwrap { kek_id: String, aad: String },
    #[error("the ciphertext of {0} does not belong to that record or was altered")]
    Decrypt(String),
    #[error("a stored envelope is malformed ({0})")]
    Malformed(&'static str),
    #[error("encryption failed")]
    Encrypt,
}

/// The configured key-encryption keys: one active (wraps new data keys), the others kept to
/// unwrap what they wrapped before a rotation. The set can be swapped while the control plane
/// runs ([`Keyring::replace_with`]): each operation works on the set current when it starts.
pub struct Keyring {
    current: RwLock<Arc<KeySet>>,
}

struct KeySet {
    active: String,
    keys: BTreeMap<String, Aes256Gcm>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = self.set();
        f.debug_struct("Keyring")
            .field("active", &set.active)
            .field("ids", &set.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Why a set of keys cannot form a keyring. The messages say how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("no key-encryption key is configured")]
    Empty,
    #[error("key id `{0}` appears twice")]
    Duplicate(String),
    #[error(
        "{0} key-encryption keys are configured ({1}): set CREDMGR_ACTIVE_KEY_ID \
         (--active-key-id) to the one that encrypts new secrets"
    )]
    NoActive(usize, String),
    #[error("the active key id `{0}` is none of the configured keys ({1})")]
    UnknownActive(String, String),
}

impl Keyring {
    /// Builds the keyring. `active` may be omitted when there is exactly one key.
    pub fn new(keys: Vec<KeyEncryptionKey>, active: Option<&str>) -> Result<Self, KeyringError> {
        let mut map = BTreeMap::new();
        for k in keys {
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(k.key.as_ref()));
            if map.insert(k.id.clone(), cipher).is_some() {
                return Err(KeyringError::Duplicate(k.id));
            }
        }
        let ids = || map.keys().cloned().collect::<Vec<_>>().join(", ");
        let active = match active {
            Some(a) if map.contains_key(a) => a.to_owned(),
            Some(a) => return Err(KeyringError::UnknownActive(a.to_owned(), ids())),
            None => match map.len() {
                0 => return Err(KeyringError::Empty),
                1 => ids(),
                n => return Err(KeyringError::NoActive(n, ids())),
            },
        };
        Ok(Keyring {
            current: RwLock::new(Arc::new(KeySet { active, keys: map })),
        })
    }

    fn set(&self) -> Arc<KeySet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes over `other`'s keys and active key (key rotation without a restart).
    pub fn replace_with(&self, other: Keyring) {
        let new = other.set();
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = new;
    }

    /// Id of the key that wraps new data keys.
    pub fn active_id(&self) -> String {
        self.set().active.clone()
    }

    /// Ids of all configured keys.
    pub fn ids(&self) -> Vec<String> {
        self.set().keys.keys().cloned().collect()
    }

    /// Encrypts `plaintext` under a fresh data key wrapped by the active KEK.
    pub fn encrypt(&self, aad: &Aad, plaintext: &[u8]) -> Result<Envelope, CryptoError> {
        self.set().encrypt(aad, plaintext)
    }

    /// Decrypts an envelope made for `aad`.
    pub fn decrypt(&self, aad: &Aad, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        self.set().decrypt(aad, env)
    }

    /// Decrypts an envelope whose plaintext is text (client secrets, tokens).
    pub fn decrypt_string(&self, aad: &Aad, env: &Envelope) -> Result<SecretString, CryptoError> {
        let bytes = self.decrypt(aad, env)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| CryptoError::Decrypt(aad.as_str().to_owned()))?;
        Ok(SecretString::from(text))
    }

    /// Whether `env` holds exactly `candidate`; the comparison takes constant time.
    pub fn holds(&self, aad: &Aad, env: &Envelope, candidate: &[u8]) -> Result<bool, CryptoError> {
        let plaintext = self.decrypt(aad, env)?;
        Ok(bool::from(plaintext.as_slice().ct_eq(candidate)))
    }

    /// The same envelope with its data key wrapped by the active KEK: what key rotation
    /// writes back. The secret's ciphertext and nonce are kept as they are.
    pub fn rewrap(&self, aad: &Aad, env: &Envelope) -> Result<Envelope, CryptoError> {
        self.set().rewrap(aad, env)
    }
}

impl KeySet {
    fn kek(&self, id: &str) -> Result<&Aes256Gcm, CryptoError> {
        self.keys
            .get(id)
            .ok_or_else(|| CryptoError::UnknownKek(id.to_owned()))
    }

    fn encrypt(&self, aad: &Aad, plaintext: &[u8]) -> Result<Envelope, CryptoError> {
        let mut dek = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(dek.as_mut());
        let nonce = random_nonce();
        let ciphertext = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(dek.as_ref()))
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_str().as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let (dek_nonce, wrapped_dek) = self.wrap(aad, &self.active, &dek)?;
        Ok(Envelope {
            kek_id: self.active.clone(),
            dek_nonce,
            wrapped_dek,
            nonce,
            ciphertext,
        })
    }

    fn decrypt(&self, aad: &Aad, env: &Envelope) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let dek = self.unwrap_dek(aad, env)?;
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(dek.as_ref()))
            .decrypt(
                Nonce::from_slice(&env.nonce),
                Payload {
                    msg: &env.ciphertext,
                    aad: aad.as_str().as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Decrypt(aad.as_str().to_owned()))
    }

    fn rewrap(&self, aad: &Aad, env: &Envelope) -> Result<Envelope, CryptoError> {
        let dek = self.unwrap_dek(aad, env)?;
        let (dek_nonce, wrapped_dek) = self.wrap(aad, &self.active, &dek)?;
        Ok(Envelope {
            kek_id: self.active.clone(),
            dek_nonce,
            wrapped_dek,
            nonce: env.nonce,
            ciphertext: env.ciphertext.clone(),
        })
    }

    fn wrap(
        &self,
        aad: &Aad,
        kek_id: &str,
        dek: &[u8; KEY_LEN],
    ) -> Result<([u8; NONCE_LEN], [u8; WRAPPED_DEK_LEN]), CryptoError> {
        let nonce = random_nonce();
        let wrapped = self
            .kek(kek_id)?
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: dek,
                    aad: &aad.for_wrapping(kek_id),
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        Ok((nonce, array(&wrapped).map_err(|_| CryptoError::Encrypt)?))
    }

    fn unwrap_dek(
        &self,
        aad: &Aad,
        env: &Envelope,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        let unwrap_error = || CryptoError::Unwrap {
            kek_id: env.kek_id.clone(),
            aad: aad.as_str().to_owned(),
        };
        let dek = Zeroizing::new(
            self.kek(&env.kek_id)?
                .decrypt(
                    Nonce::from_slice(&env.dek_nonce),
                    Payload {
                        msg: &env.wrapped_dek,
                        aad: &aad.for_wrapping(&env.kek_id),
                    },
                )
                .map_err(|_| unwrap_error())?,
        );
        Ok(Zeroizing::new(array(&dek).map_err(|_| unwrap_error())?))
    }
}

fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    OsRng.fill_bytes(&mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn key(id: &str) -> KeyEncryptionKey {
        KeyEncryptionKey::parse(KeyEncryptionKey::generate_line(id).expose_secret()).unwrap()
    }

    fn ring(ids: &[&str], active: &str) -> Keyring {
        Keyring::new(ids.iter().map(|id| key(id)).collect(), Some(active)).unwrap()
    }

    const SECRET: &[u8] = b"the-client-secret-0123456789";

    #[test]
    fn roundtrips_through_the_stored_form() {
        let ring = ring(&["k1"], "k1");
        let aad = Aad::provider_client_secret("gh");
        let env = ring.encrypt(&aad, SECRET).unwrap();
        let stored = Envelope::from_bytes(&env.to_bytes()).unwrap();
        assert_eq!(stored, env);
        assert_eq!(ring.decrypt(&aad, &stored).unwrap().as_slice(), SECRET);
        assert_eq!(stored.kek_id(), "k1");
        assert!(ring.holds(&aad, &stored, SECRET).unwrap());
        assert!(!ring.holds(&aad, &stored, b"other").unwrap());
    }

    #[test]
    fn the_plaintext_never_appears_in_the_envelope() {
        let ring = ring(&["k1"], "k1");
        let bytes = ring
            .encrypt(&Aad::provider_client_secret("gh"), SECRET)
            .unwrap()
            .to_bytes();
        assert!(!bytes.windows(8).any(|w| SECRET.windows(8).any(|s| s == w)));
    }

    #[test]
    fn each_encryption_uses_fresh_randomness() {
        let ring = ring(&["k1"], "k1");
        let aad = Aad::provider_client_secret("gh");
        let a = ring.encrypt(&aad, SECRET).unwrap();
        let b = ring.encrypt(&aad, SECRET).unwrap();
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_ne!(a.wrapped_dek, b.wrapped_dek);
    }

    #[test]
    fn a_ciphertext_moved_to_another_record_or_field_fails() {
        let ring = ring(&["k1"], "k1");
        let env = ring
            .encrypt(&Aad::connection_access_token("gh", "alice"), SECRET)
            .unwrap();
        for other in [
            Aad::connection_access_token("gh", "bob"),
            Aad::connection_access_token("gl", "alice"),
            Aad::connection_client_secret("gh", "alice"),
        ] {
            let err = ring.decrypt(&other, &env).unwrap_err();
            assert!(matches!(err, CryptoError::Unwrap { .. }), "{err}");
        }
    }

    #[test]
    fn a_tampered_ciphertext_fails() {
        let ring = ring(&["k1"], "k1");
        let aad = Aad::provider_client_secret("gh");
        let mut env = ring.encrypt(&aad, SECRET).unwrap();
        if let Some(b) = env.ciphertext.first_mut() {
            *b ^= 1;
        }
        let err = ring.decrypt(&aad, &env).unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt(_)), "{err}");
    }

    #[test]
    fn an_unknown_kek_id_says_which_key_to_configure() {
        let aad = Aad::provider_client_secret("gh");
        let env = ring(&["old"], "old").encrypt(&aad, SECRET).unwrap();
        let err = ring(&["new"], "new").decrypt(&aad, &env).unwrap_err();
        assert!(matches!(err, CryptoError::UnknownKek(ref id) if id == "old"));
        assert!(err.to_string().contains("`old`") && err.to_string().contains("CREDMGR_KEYS"));
    }

    #[test]
    fn a_wrong_key_under_the_same_id_fails_clearly() {
        let aad = Aad::provider_client_secret("gh");
        let env = ring(&["k1"], "k1").encrypt(&aad, SECRET).unwrap();
        let err = ring(&["k1"], "k1").decrypt(&aad, &env).unwrap_err();
        assert!(matches!(err, CryptoError::Unwrap { .. }), "{err}");
        assert!(err.to_string().contains("`k1`"), "{err}");
    }

    #[test]
    fn rewrap_changes_the_kek_and_keeps_the_ciphertext() {
        let aad = Aad::connection_access_token("gh", "alice");
        let old = ring(&["k1"], "k1").encrypt(&aad, SECRET).unwrap();
        let both = Keyring::new(vec![key("k2")], None).unwrap();
        assert!(matches!(
            both.rewrap(&aad, &old),
            Err(CryptoError::UnknownKek(_))
        ));
        // The real rotation case: both keys configured, the new one active.
        let k1 = key("k1");
        let ring1 = Keyring::new(vec![clone_key(&k1)], None).unwrap();
        let env = ring1.encrypt(&aad, SECRET).unwrap();
        let ring2 = Keyring::new(vec![k1, key("k2")], Some("k2")).unwrap();
        let rewrapped = ring2.rewrap(&aad, &env).unwrap();
        assert_eq!(rewrapped.kek_id(), "k2");
        assert_eq!(rewrapped.ciphertext, env.ciphertext);
        assert_eq!(rewrapped.nonce, env.nonce);
        assert_eq!(ring2.decrypt(&aad, &rewrapped).unwrap().as_slice(), SECRET);
    }

    fn clone_key(k: &KeyEncryptionKey) -> KeyEncryptionKey {
        KeyEncryptionKey {
            id: k.id.clone(),
            key: k.key.clone(),
        }
    }

    #[test]
    fn malformed_envelopes_are_refused() {
        assert!(Envelope::from_bytes(&[]).is_err());
        assert!(Envelope::from_bytes(&[9, 0]).is_err());
        let ring = ring(&["k1"], "k1");
        let bytes = ring
            .encrypt(&Aad::provider_client_secret("gh"), SECRET)
            .unwrap()
            .to_bytes();
        assert!(Envelope::from_bytes(&bytes[..bytes.len() - SECRET.len() - 1]).is_err());
    }

    #[test]
    fn keyring_needs_an_active_key_when_there_are_several() {
        assert!(matches!(
            Keyring::new(vec![], None),
            Err(KeyringError::Empty)
        ));
        assert!(matches!(
            Keyring::new(vec![key("a"), key("b")], None),
            Err(KeyringError::NoActive(2, _))
        ));
        assert!(matches!(
            Keyring::new(vec![key("a"), key("a")], None),
            Err(KeyringError::Duplicate(_))
        ));
        assert!(matches!(
            Keyring::new(vec![key("a")], Some("b")),
            Err(KeyringError::UnknownActive(..))
        ));
        let ring = Keyring::new(vec![key("a"), key("b")], Some("b")).unwrap();
        assert_eq!(ring.active_id(), "b");
        assert!(!format!("{ring:?}").contains("Aes"));
    }
}
