//! What a token endpoint hands out, as every grant's client reads it
//! ([`super::oauth2`], [`super::github`]): the access token, checked to be
//! header-safe, with its lifetime and a rotated refresh token.

use std::time::Duration;

use zeroize::Zeroizing;

use super::error::EndpointError;

/// Access tokens go into a header: a bound well above real tokens (JWTs
/// of a few KiB).
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Checks that a token the endpoint handed out can go into a header.
pub(super) fn check_token(token: &str) -> Result<(), EndpointError> {
    let valid = !token.is_empty()
        && token.len() <= MAX_TOKEN_LEN
        && token.bytes().all(|b| (0x21..0x7f).contains(&b));
    if valid {
        Ok(())
    } else {
        Err(EndpointError::Malformed(
            "its token is empty, too long, or not header-safe text".into(),
        ))
    }
}

/// What a successful token request returned.
pub struct TokenResponse {
    pub access_token: Zeroizing<String>,
    /// How long the access token lives, from `expires_in`.
    pub lifetime: Duration,
    /// Whether the provider said so (`expires_in`), or `lifetime` is the
    /// default: a token without either a lifetime or a refresh token
    /// (GitHub OAuth Apps) is one that lives until it is revoked.
    pub lifetime_stated: bool,
    /// A rotated refresh token, when the provider sent one.
    pub refresh_token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("lifetime", &self.lifetime)
            .field("lifetime_stated", &self.lifetime_stated)
            .field("rotated", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}
