//! The signed assertions of signed-JWT grants: an RS256 JWT over a few
//! claims, signed with the secret's private key (issue #18, item 3).
//!
//! - GitHub App: `iss` = the app id, `iat` 60 s in the past (GitHub's
//!   advice against clock drift), `exp` under GitHub's 10-minute cap.
//! - RFC 7523 (Google service accounts): the same plus `aud` = the token
//!   URL and `scope`; Google caps the assertion at an hour.
//!
//! An assertion is made for one token request and used once, so both get
//! the same short life. The key is parsed for each signing and dropped
//! with it: the PEM text comes from a zeroizing buffer, but
//! `jsonwebtoken`'s own copy of the DER (inside `EncodingKey`) is freed
//! without being zeroized — the window is one signing, once per token
//! lifetime.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use zeroize::Zeroizing;

use crate::model::{GrantType, OAuth2Grant};

/// `iat` is this far in the past.
const BACKDATE_SECS: i64 = 60;
/// `exp` is this far in the future: with the backdated `iat`, ten minutes
/// of validity, GitHub's maximum.
const EXPIRES_IN_SECS: i64 = 9 * 60;

/// Why a private key is refused. Never carries any of the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error(
        "the private key is not an RSA private key in PEM form (a file that starts with \
         -----BEGIN RSA PRIVATE KEY----- or -----BEGIN PRIVATE KEY-----)"
    )]
    NotRsaPem,
    #[error(
        "the private key is encrypted: give the decrypted key (e.g. `openssl pkey -in KEY -out \
         PLAIN`)"
    )]
    Encrypted,
    #[error("the private key cannot sign RS256: it must be an RSA key of 2048 to 8192 bits")]
    Unusable,
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// The assertion for one token request of `grant`, signed with `pem`.
pub fn assertion(
    grant: &OAuth2Grant,
    pem: &str,
    now: DateTime<Utc>,
) -> Result<Zeroizing<String>, KeyError> {
    let iat = now.timestamp() - BACKDATE_SECS;
    let claims = Claims {
        iss: &grant.client_id,
        iat,
        exp: now.timestamp() + EXPIRES_IN_SECS,
        aud: (grant.grant == GrantType::JwtBearer).then_some(grant.token_url.as_str()),
        scope: match grant.grant {
            GrantType::JwtBearer => grant.scope_param(),
            _ => None,
        },
    };
    let mut header = Header::new(Algorithm::RS256);
    header.kid = grant.key_id.clone();
    sign(&header, &claims, pem)
}

/// Checks that `pem` is an RSA private key that can sign RS256, by
/// signing an empty claim set: what `secret add` runs before storing it.
pub fn check_private_key(pem: &str) -> Result<(), KeyError> {
    sign(&Header::new(Algorithm::RS256), &serde_json::Map::new(), pem).map(drop)
}

fn sign(
    header: &Header,
    claims: &impl Serialize,
    pem: &str,
) -> Result<Zeroizing<String>, KeyError> {
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || pem.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(KeyError::Encrypted);
    }
    let labelled = pem.contains("-----BEGIN RSA PRIVATE KEY-----")
        || pem.contains("-----BEGIN PRIVATE KEY-----");
    if !labelled {
        return Err(KeyError::NotRsaPem);
    }
    // The error texts of jsonwebtoken and ring name no key material, but
    // they are not passed on anyway: the kind is enough.
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| KeyError::NotRsaPem)?;
    jsonwebtoken::encode(header, claims, &key)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Unusable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_not_an_rsa_private_key_is_refused() {
        assert_eq!(check_private_key("hello"), Err(KeyError::NotRsaPem));
        let public = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkq\n-----END PUBLIC KEY-----\n";
        assert_eq!(check_private_key(public), Err(KeyError::NotRsaPem));
        let garbage =
            "-----BEGIN RSA PRIVATE KEY-----\nbm90IGEga2V5\n-----END RSA PRIVATE KEY-----\n";
        assert!(check_private_key(garbage).is_err());
        let encrypted =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nbm90\n-----END ENCRYPTED PRIVATE KEY-----\n";
        assert_eq!(check_private_key(encrypted), Err(KeyError::Encrypted));
    }
}
