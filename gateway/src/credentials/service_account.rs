//! A Google service account's JSON key file, read into a JWT bearer grant
//! (RFC 7523) and its private key.
//!
//! The file is read as a JSON value and its fields taken out by name, so
//! no error can quote any of it (serde's type errors repeat the value they
//! met); the private key is moved out into a zeroizing string.

use serde_json::Value;
use zeroize::Zeroizing;

use super::jwt::{KeyError, check_private_key};
use crate::model::{GrantType, InjectionError, OAuth2Grant};

/// A key file larger than this is not one (real ones are about 2.3 KiB).
pub const MAX_FILE_LEN: usize = 64 * 1024;

/// Why a file is not a usable service-account key. Never carries any of
/// the file.
#[derive(Debug, thiserror::Error)]
pub enum ServiceAccountError {
    #[error("it is not JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    #[error("it is larger than {MAX_FILE_LEN} bytes")]
    TooLarge,
    #[error(
        "its \"type\" is not \"service_account\": is it a service account's JSON key (IAM → \
         Service accounts → Keys → Add key → JSON)?"
    )]
    WrongType,
    #[error("it has no \"{0}\" (a text field every service-account key file has)")]
    Missing(&'static str),
    #[error("its token_uri: {0}")]
    TokenUri(InjectionError),
    #[error("its client_email or private_key_id: {0}")]
    Field(InjectionError),
    #[error("its private_key: {0}")]
    Key(KeyError),
}

/// A key file's grant and private key.
pub struct ServiceAccount {
    pub grant: OAuth2Grant,
    pub private_key: Zeroizing<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("grant", &self.grant)
            .finish_non_exhaustive()
    }
}

/// Reads a key file: `type` must be `service_account`; `client_email`,
/// `private_key` and `token_uri` must be there, the token URI `https://`,
/// the key an RSA key that signs. `scopes` go into each assertion.
pub fn parse(raw: &[u8], scopes: Vec<String>) -> Result<ServiceAccount, ServiceAccountError> {
    if raw.len() > MAX_FILE_LEN {
        return Err(ServiceAccountError::TooLarge);
    }
    let value: Value = serde_json::from_slice(raw).map_err(|e| ServiceAccountError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    let Value::Object(mut fields) = value else {
        return Err(ServiceAccountError::WrongType);
    };
    if fields.get("type").and_then(Value::as_str) != Some("service_account") {
        return Err(ServiceAccountError::WrongType);
    }
    let mut text = |name: &'static str| match fields.remove(name) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(ServiceAccountError::Missing(name)),
    };
    let private_key = Zeroizing::new(text("private_key")?);
    let client_email = text("client_email")?;
    let token_url = text("token_uri")?;
    // Optional: without it the assertion has no `kid`, and the endpoint
    // tries the account's keys.
    let key_id = text("private_key_id").ok();
    let grant = OAuth2Grant {
        key_id,
        ..OAuth2Grant::new(GrantType::JwtBearer, token_url, client_email, scopes)
    };
    grant.validate().map_err(|e| match e {
        InjectionError::BadTokenUrl(_) => ServiceAccountError::TokenUri(e),
        InjectionError::BadScope(_) => ServiceAccountError::Field(e),
        e => ServiceAccountError::Field(e),
    })?;
    check_private_key(&private_key).map_err(ServiceAccountError::Key)?;
    Ok(ServiceAccount { grant, private_key })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(v: Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn what_is_not_a_key_file_is_refused_without_quoting_it() {
        let secretish = "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
        let cases = [
            (b"{not json".to_vec(), "not JSON"),
            (
                file(serde_json::json!({"type": "authorized_user", "private_key": secretish})),
                "service_account",
            ),
            (
                file(
                    serde_json::json!({"type": "service_account", "private_key": secretish,
                    "token_uri": "https://oauth2.googleapis.com/token"}),
                ),
                "client_email",
            ),
            (
                file(
                    serde_json::json!({"type": "service_account", "private_key": secretish,
                    "client_email": "a@b.iam.gserviceaccount.com",
                    "token_uri": "http://oauth2.googleapis.com/token"}),
                ),
                "https://",
            ),
            (
                file(
                    serde_json::json!({"type": "service_account", "private_key": secretish,
                    "client_email": "a@b.iam.gserviceaccount.com",
                    "token_uri": "https://oauth2.googleapis.com/token"}),
                ),
                "private_key",
            ),
            (
                file(
                    serde_json::json!({"type": "service_account", "private_key": 5,
                    "client_email": "a@b", "token_uri": "https://x/token"}),
                ),
                "no \"private_key\"",
            ),
        ];
        for (raw, says) in cases {
            let e = parse(&raw, vec![]).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert!(!e.contains("c2VjcmV0"), "{e}");
        }
    }
}
