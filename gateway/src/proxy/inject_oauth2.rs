//! The OAuth2 step of injection: before [`super::inject::Applying::apply`]
//! runs (it is synchronous), the access token of every applying OAuth2
//! secret is had from [`Credentials`]: cached, or renewed once for all
//! the requests waiting on it. The token goes into `Authorization:
//! Bearer`, like a header secret's value, and is scrubbed from the
//! response head like one.

use uuid::Uuid;

use super::inject::{Applying, InjectError};
use crate::credentials::{AccessToken, CredentialError, Credentials};
use crate::model::Injection;
use crate::store::secrets::SecretRecord;
use crate::vault::Plaintext;

/// The access tokens of a request's OAuth2 secrets, by secret id.
#[derive(Debug, Default)]
pub struct Tokens(Vec<(Uuid, AccessToken)>);

impl Tokens {
    /// The token for `secret`, copied into a zeroizing buffer of its own
    /// (it ends up in the scrubber, like any injected value).
    pub(super) fn plaintext(&self, secret: &SecretRecord) -> Result<Plaintext, InjectError> {
        self.get(secret)
            .map(|t| Plaintext::new(t.expose().as_bytes().to_vec()))
            .ok_or_else(|| InjectError::Vault {
                name: secret.name().to_string(),
                reason: "no access token was obtained for it".into(),
            })
    }

    fn get(&self, secret: &SecretRecord) -> Option<&AccessToken> {
        self.0
            .iter()
            .find(|(id, _)| *id == secret.id())
            .map(|(_, t)| t)
    }

    /// The tokens that went out, with their secrets.
    pub(super) fn sent<'s>(
        &self,
        secrets: &[&'s SecretRecord],
    ) -> Vec<(&'s SecretRecord, AccessToken)> {
        secrets
            .iter()
            .filter_map(|s| self.get(s).map(|t| (*s, t.clone())))
            .collect()
    }
}

/// Gets the access token of every OAuth2 secret in `applying`. The first
/// that cannot be had fails the request (its error names the secret).
pub async fn obtain(
    credentials: &Credentials,
    applying: &Applying<'_>,
) -> Result<Tokens, CredentialError> {
    let mut tokens = Vec::new();
    for secret in &applying.secrets {
        if let Injection::OAuth2(_) = secret.injection() {
            tokens.push((secret.id(), credentials.access_token(secret).await?));
        }
    }
    Ok(Tokens(tokens))
}

/// Whether the request needs a token at all: most requests do not, and
/// skip the call.
pub fn needs_tokens(applying: &Applying<'_>) -> bool {
    applying
        .secrets
        .iter()
        .any(|s| matches!(s.injection(), Injection::OAuth2(_)))
}
