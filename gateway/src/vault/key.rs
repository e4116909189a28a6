//! The master key: from `SECRET_ENCRYPTION_KEY` (base64 of 32 bytes) or from
//! `<data dir>/master.key`, generated on first start with mode 0600.
//!
//! The key file holds the same base64 text as the variable would, so an
//! operator who moves to a shared database can copy it into
//! `SECRET_ENCRYPTION_KEY` on every gateway host.

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use aes_gcm::{Aes256Gcm, Key};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

pub const KEY_ENV: &str = "SECRET_ENCRYPTION_KEY";
const KEY_LEN: usize = 32;

/// The key file in the data directory (mode 0600, root).
pub const MASTER_KEY_FILE: &str = "master.key";

/// The 256-bit master key; zeroized on drop, never printed.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id {})", self.id())
    }
}

/// Where the key came from, for the start-up log and `airlock status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Environment => write!(f, "{KEY_ENV}"),
            KeySource::File(p) => write!(f, "key file {}", p.display()),
            KeySource::Generated(p) => write!(f, "new key file {}", p.display()),
        }
    }
}

/// Why the key could not be had. Messages never include key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "{KEY_ENV} is not valid base64: set it to the base64 of 32 random bytes (e.g. `openssl rand -base64 32`)"
    )]
    EnvNotBase64,
    #[error(
        "{KEY_ENV} decodes to {0} bytes, but the key must be exactly 32 bytes (`openssl rand -base64 32`)"
    )]
    EnvWrongLength(usize),
    #[error(
        "key file {path} is not the base64 of 32 bytes: restore it from backup or set {KEY_ENV}"
    )]
    FileCorrupt { path: PathBuf },
    #[error("key file {path} is readable by other users (mode {mode:o}): run `chmod 600 {path}`")]
    FileTooOpen { path: PathBuf, mode: u32 },
    #[error("cannot read key file {path}: {source}")]
    FileRead { path: PathBuf, source: io::Error },
    #[error("cannot create key file {path}: {source}")]
    FileCreate { path: PathBuf, source: io::Error },
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey(Zeroizing::new(bytes))
    }

    fn from_base64(text: &str) -> Result<Self, Option<usize>> {
        let decoded = Zeroizing::new(STANDARD.decode(text.trim()).map_err(|_| None)?);
        let bytes: [u8; KEY_LEN] = decoded
            .as_slice()
            .try_into()
            .map_err(|_| Some(decoded.len()))?;
        Ok(MasterKey::from_bytes(bytes))
    }

    pub(super) fn as_aes_key(&self) -> &Key<Aes256Gcm> {
        Key::<Aes256Gcm>::from_slice(self.0.as_slice())
    }

    /// A public fingerprint: the first 8 bytes of SHA-256 over a label and
    /// the key, in hex. It identifies the key without revealing it.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"airlock:key-id:v1");
        h.update(self.0.as_slice());
        hex::encode(&h.finalize()[..8])
    }
}

/// Loads the key from the environment value if given, else from the key
/// file in `data_dir`, generating that file on first start.
pub fn load_master_key(
    env_value: Option<&str>,
    data_dir: &Path,
) -> Result<(MasterKey, KeySource), KeyError> {
    if let Some(text) = env_value {
        let key = MasterKey::from_base64(text).map_err(|len| match len {
            None => KeyError::EnvNotBase64,
            Some(len) => KeyError::EnvWrongLength(len),
        })?;
        return Ok((key, KeySource::Environment));
    }
    let path = data_dir.join(MASTER_KEY_FILE);
    match fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(KeyError::FileTooOpen { path, mode });
            }
            let text =
                Zeroizing::new(
                    fs::read_to_string(&path).map_err(|source| KeyError::FileRead {
                        path: path.clone(),
                        source,
                    })?,
                );
            let key = MasterKey::from_base64(&text)
                .map_err(|_| KeyError::FileCorrupt { path: path.clone() })?;
            Ok((key, KeySource::File(path)))
        }
        // Not written yet: the caller first checks that the database holds
        // no secrets sealed under another key, then calls `persist_new_key`.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Ok((new_key(), KeySource::Generated(path)))
        }
        Err(source) => Err(KeyError::FileRead { path, source }),
    }
}

fn new_key() -> MasterKey {
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(bytes.as_mut_slice());
    MasterKey::from_bytes(*bytes)
}

/// Writes a newly generated key to `path` through a temporary file (0600,
/// fsynced) renamed into place, so a crash never leaves half a key.
pub fn persist_new_key(key: &MasterKey, path: &Path) -> Result<(), KeyError> {
    let create = |source| KeyError::FileCreate {
        path: path.to_owned(),
        source,
    };
    let mut text = Zeroizing::new(STANDARD.encode(key.0.as_slice()));
    text.push('\n');
    crate::datadir::write_atomically(path, text.as_bytes(), 0o600).map_err(create)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_key_must_be_32_bytes_of_base64() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_master_key(Some("not base64!"), dir.path()),
            Err(KeyError::EnvNotBase64)
        ));
        assert!(matches!(
            load_master_key(Some(&STANDARD.encode([0u8; 16])), dir.path()),
            Err(KeyError::EnvWrongLength(16))
        ));
        let (key, source) = load_master_key(Some(&STANDARD.encode([7u8; 32])), dir.path()).unwrap();
        assert_eq!(source, KeySource::Environment);
        assert_eq!(key.id(), MasterKey::from_bytes([7u8; 32]).id());
    }

    #[test]
    fn key_file_is_generated_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = load_master_key(None, dir.path()).unwrap();
        let KeySource::Generated(path) = source else {
            panic!("expected a generated key")
        };
        assert!(!path.exists(), "nothing is written before persist_new_key");
        persist_new_key(&first, &path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (second, source) = load_master_key(None, dir.path()).unwrap();
        assert!(matches!(source, KeySource::File(_)));
        assert_eq!(first.id(), second.id());
    }

    #[test]
    fn open_or_corrupt_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "garbage").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            load_master_key(None, dir.path()),
            Err(KeyError::FileCorrupt { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_master_key(None, dir.path()),
            Err(KeyError::FileTooOpen { mode: 0o644, .. })
        ));
    }

    #[test]
    fn debug_shows_only_the_id() {
        let key = MasterKey::from_bytes([9u8; 32]);
        assert_eq!(format!("{key:?}"), format!("MasterKey(id {})", key.id()));
    }
}
