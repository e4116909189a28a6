//! The vault: AES-256-GCM sealing of secret values under one master key.
//!
//! Each value is sealed with a fresh random 96-bit nonce and associated data
//! chosen by the caller: for a secret, its id, name, host pattern, path glob
//! and injection (`store::secrets::aad`), so a ciphertext copied onto another
//! row, or a row pointed at another host, fails to open.
//! Plaintext only ever lives in [`Plaintext`], which zeroizes on drop and
//! never prints. The master key comes from `SECRET_ENCRYPTION_KEY` or from a
//! key file generated on first start (see [`key`]); a stored check value
//! detects a wrong key at start rather than as garbage later.

mod key;

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

pub use key::{
    KEY_ENV, KeyError, KeySource, MASTER_KEY_FILE, MasterKey, load_master_key, persist_new_key,
};

/// A nonce and ciphertext (with its 16-byte tag), as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub nonce: [u8; NONCE_LEN],
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

pub const NONCE_LEN: usize = 12;

/// A decrypted secret value: zeroized on drop, redacted in `Debug`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    pub fn new(bytes: Vec<u8>) -> Self {
        Plaintext(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Plaintext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Plaintext(<redacted>)")
    }
}

/// Why a value could not be sealed or opened. None of these carry the
/// plaintext or the key.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "a stored value could not be decrypted: it was tampered with, moved to another row, \
         or sealed under another key"
    )]
    Open,
    #[error("a stored nonce is {0} bytes, expected 12: the row is corrupt")]
    BadNonce(usize),
    #[error("encryption failed")]
    Seal,
}

/// The associated data of the stored key check: a fixed label, so the check
/// ciphertext cannot be confused with any secret's.
const KEY_CHECK_AAD: &[u8] = b"airlock:key-check:v1";
const KEY_CHECK_PLAINTEXT: &[u8] = b"airlock master key check";

/// Seals and opens values under the master key.
pub struct Vault {
    cipher: Aes256Gcm,
    key_id: String,
}

impl Vault {
    pub fn new(key: &MasterKey) -> Self {
        Vault {
            cipher: Aes256Gcm::new(key.as_aes_key()),
            key_id: key.id(),
        }
    }

    /// A short public fingerprint of the master key, stored beside each
    /// ciphertext so a key change is visible.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `plaintext` with a fresh random nonce; `aad` binds it to its row.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Sealed, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| VaultError::Seal)?;
        Ok(Sealed { nonce, ciphertext })
    }

    /// Opens a sealed value; fails on any change to nonce, ciphertext or `aad`.
    pub fn open(&self, aad: &[u8], sealed: &Sealed) -> Result<Plaintext, VaultError> {
        self.cipher
            .decrypt(
                Nonce::from_slice(&sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad,
                },
            )
            .map(Plaintext::new)
            .map_err(|_| VaultError::Open)
    }

    /// The value stored once per database to recognise this key later.
    pub fn key_check(&self) -> Result<Sealed, VaultError> {
        self.seal(KEY_CHECK_AAD, KEY_CHECK_PLAINTEXT)
    }

    /// Does `sealed` (from the database) open under this key?
    pub fn verify_key_check(&self, sealed: &Sealed) -> bool {
        self.open(KEY_CHECK_AAD, sealed)
            .is_ok_and(|p| p.expose() == KEY_CHECK_PLAINTEXT)
    }
}

impl Sealed {
    /// Rebuilds a sealed value from its stored columns.
    pub fn from_parts(nonce: &[u8], ciphertext: Vec<u8>) -> Result<Self, VaultError> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| VaultError::BadNonce(nonce.len()))?;
        Ok(Sealed { nonce, ciphertext })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(byte: u8) -> Vault {
        Vault::new(&MasterKey::from_bytes([byte; 32]))
    }

    #[test]
    fn round_trip() {
        let v = vault(1);
        let sealed = v.seal(b"row-1", b"sk-live-123").unwrap();
        assert_eq!(v.open(b"row-1", &sealed).unwrap().expose(), b"sk-live-123");
    }

    #[test]
    fn every_seal_has_a_fresh_nonce() {
        let v = vault(1);
        let a = v.seal(b"row", b"same").unwrap();
        let b = v.seal(b"row", b"same").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
    }

    #[test]
    fn wrong_key_fails() {
        let sealed = vault(1).seal(b"row", b"value").unwrap();
        assert!(matches!(
            vault(2).open(b"row", &sealed),
            Err(VaultError::Open)
        ));
    }

    #[test]
    fn tampered_ciphertext_fails() {
        let v = vault(1);
        let mut sealed = v.seal(b"row", b"value").unwrap();
        sealed.ciphertext[0] ^= 1;
        assert!(v.open(b"row", &sealed).is_err());
        let mut sealed = v.seal(b"row", b"value").unwrap();
        sealed.nonce[0] ^= 1;
        assert!(v.open(b"row", &sealed).is_err());
    }

    #[test]
    fn ciphertext_moved_to_another_row_fails() {
        let v = vault(1);
        let sealed = v.seal(b"row-a", b"value").unwrap();
        assert!(v.open(b"row-b", &sealed).is_err());
    }

    #[test]
    fn key_check_recognises_the_key() {
        let check = vault(1).key_check().unwrap();
        assert!(vault(1).verify_key_check(&check));
        assert!(!vault(2).verify_key_check(&check));
    }

    #[test]
    fn debug_never_shows_values() {
        let v = vault(1);
        let p = v.open(b"r", &v.seal(b"r", b"hunter2").unwrap()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    #[test]
    fn bad_nonce_length_is_corruption() {
        assert!(matches!(
            Sealed::from_parts(&[0; 5], vec![]),
            Err(VaultError::BadNonce(5))
        ));
    }
}
