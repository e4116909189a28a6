//! The stored key check: proves at start that the master key in hand is
//! the one this database's secrets were sealed under.

use sqlx::Row;

use super::{Store, StoreError};
use crate::vault::{Sealed, Vault};

/// The outcome of checking the master key against the database.
#[derive(Debug, thiserror::Error)]
pub enum KeyCheckError {
    #[error(
        "the master key (id {ours}) is not the key this database was encrypted with \
         (id {theirs}): set SECRET_ENCRYPTION_KEY to the original key, or restore \
         <data dir>/master.key"
    )]
    WrongKey { ours: String, theirs: String },
    #[error(
        "the key check for master key {0} does not decrypt: the vault_keys row is corrupt \
         or the key file was altered"
    )]
    CheckFailed(String),
    #[error(
        "this database holds secrets sealed with master key {theirs}, but no key was given: \
         set SECRET_ENCRYPTION_KEY to it, or restore <data dir>/master.key"
    )]
    NoKeyGiven { theirs: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The key ids that have sealed data in this database (none when fresh).
    pub async fn vault_key_ids(&self) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT key_id FROM vault_keys ORDER BY key_id")
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// Records the key on a fresh database, or verifies it on an existing one.
    pub async fn check_master_key(&self, vault: &Vault) -> Result<(), KeyCheckError> {
        let check = vault
            .key_check()
            .map_err(|_| KeyCheckError::CheckFailed(vault.key_id().to_owned()))?;
        // Only the first key to reach an empty table registers itself; a
        // concurrent start with another key then fails the check below.
        sqlx::query(
            "INSERT INTO vault_keys (key_id, check_nonce, check_ciphertext)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM vault_keys)
             ON CONFLICT DO NOTHING",
        )
        .bind(vault.key_id())
        .bind(check.nonce.as_slice())
        .bind(&check.ciphertext)
        .execute(self.pool())
        .await
        .map_err(StoreError::from)?;

        let rows = sqlx::query("SELECT key_id, check_nonce, check_ciphertext FROM vault_keys")
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::from)?;
        let ours = rows
            .iter()
            .find(|r| r.get::<String, _>("key_id") == vault.key_id());
        let Some(row) = ours else {
            let theirs = rows
                .iter()
                .map(|r| r.get::<String, _>("key_id"))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(KeyCheckError::WrongKey {
                ours: vault.key_id().to_owned(),
                theirs,
            });
        };
        let sealed = Sealed::from_parts(
            row.get::<&[u8], _>("check_nonce"),
            row.get::<Vec<u8>, _>("check_ciphertext"),
        )
        .map_err(|_| KeyCheckError::CheckFailed(vault.key_id().to_owned()))?;
        if vault.verify_key_check(&sealed) {
            Ok(())
        } else {
            Err(KeyCheckError::CheckFailed(vault.key_id().to_owned()))
        }
    }
}
