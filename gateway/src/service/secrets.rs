//! Secrets: adding, rotating and removing them. A value is checked for
//! where it will be injected before it is sealed ([`check_value`]), and
//! never echoed in the error that refuses it.

use uuid::Uuid;

use chrono::Utc;

use super::types::*;
use super::{Service, ServiceError};
use crate::credentials::{EndpointError, TokenSet};
use crate::model::{GrantType, Injection, OAuth2Grant, SecretName};
use crate::policy::{HostPattern, PathGlob};
use crate::store::oauth2::NewTokens;
use crate::store::secrets::{self as stored, NewSecret, Rotated};

/// Longest secret value accepted: far above any real API key, far below
/// anything that would strain a header.
const MAX_VALUE_LEN: usize = 16 * 1024;

impl Service {
    pub async fn list_secrets(&self) -> Result<Vec<SecretView>, ServiceError> {
        let states = self.store.token_states().await?;
        Ok(self
            .store
            .list_secrets()
            .await?
            .iter()
            .map(|s| {
                let mut view = SecretView::from(s);
                view.oauth2 = states.get(&s.id()).map(OAuth2State::from);
                view
            })
            .collect())
    }

    /// One secret as listed, with its OAuth2 state.
    pub(super) async fn secret_view(&self, name: &SecretName) -> Result<SecretView, ServiceError> {
        let record = self.store.get_secret(name).await?;
        let mut view = SecretView::from(&record);
        if let Injection::OAuth2(_) = record.injection() {
            view.oauth2 = self
                .store
                .token_states()
                .await?
                .get(&record.id())
                .map(OAuth2State::from);
        }
        Ok(view)
    }

    pub async fn add_secret(&self, req: AddSecret) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(&req.name).map_err(|e| ServiceError::invalid("name", e))?;
        let host = HostPattern::parse(&req.host).map_err(|e| ServiceError::invalid("host", e))?;
        if host.is_wildcard_any() {
            return Err(ServiceError::invalid(
                "host",
                "a secret must name the host it belongs to; '*' would send it everywhere",
            ));
        }
        let path = PathGlob::parse(req.path.as_deref().unwrap_or(PathGlob::ANY))
            .map_err(|e| ServiceError::invalid("path", e))?;
        req.injection
            .validate()
            .map_err(|e| ServiceError::invalid("injection", e))?;
        check_value(&req.injection, &req.value)?;
        let id = Uuid::new_v4();
        let aad = stored::aad(&id, &name, &host, &path, &req.injection);
        let sealed = self.vault.seal(&aad, req.value.expose().as_bytes())?;
        let oauth2_tokens = match &req.injection {
            // Connected later from the dashboard: nothing to fetch yet (the
            // client secret is checked by the code exchange).
            Injection::OAuth2(grant) if grant.connectable() && req.refresh_token.is_none() => Some(
                TokenSet::not_connected(&self.vault, &aad, name.as_str())
                    .map_err(|e| ServiceError::Internal(e.to_string()))?,
            ),
            Injection::OAuth2(grant) => Some(
                self.first_tokens(grant, &req.value, req.refresh_token.as_ref(), &aad)
                    .await?,
            ),
            _ => no_refresh_token(req.refresh_token.as_ref())?,
        };
        self.store
            .insert_secret(NewSecret {
                id,
                name: &name,
                host: &host,
                path: &path,
                injection: &req.injection,
                sealed: &sealed,
                key_id: self.vault.key_id(),
                oauth2_tokens: oauth2_tokens.as_ref(),
            })
            .await?;
        self.refresh().await;
        self.secret_view(&name).await
    }

    /// Checks an OAuth2 grant by fetching its first access token, so a
    /// wrong token URL, client secret or refresh token is refused at
    /// `secret add` with nothing stored; the token fetched is kept.
    async fn first_tokens(
        &self,
        grant: &OAuth2Grant,
        client_secret: &SecretValue,
        refresh_token: Option<&SecretValue>,
        aad: &[u8],
    ) -> Result<NewTokens, ServiceError> {
        let refresh_token = match (grant.grant, refresh_token) {
            (GrantType::RefreshToken, Some(t)) if !t.expose().is_empty() => {
                check_token_text(t)?;
                Some(t.expose())
            }
            (GrantType::RefreshToken, _) => {
                return Err(ServiceError::invalid(
                    "refresh_token",
                    "the refresh-token grant needs a refresh token: give it on the second line \
                     of standard input (after the client secret) with --refresh-token-stdin, or \
                     give the provider's authorization URL (--connect with \
                     --oauth2-authorize-url or --preset) and connect it from the dashboard",
                ));
            }
            (GrantType::ClientCredentials | GrantType::GithubApp | GrantType::JwtBearer, None) => {
                None
            }
            (_, Some(_)) => {
                return Err(ServiceError::invalid(
                    "refresh_token",
                    format!("the {} grant takes no refresh token", grant.grant.as_str()),
                ));
            }
        };
        let resp = self
            .credentials
            .token_request(grant, client_secret.expose(), refresh_token)
            .await
            .map_err(|e| first_token_error(grant, &e))?;
        TokenSet::after(&resp, refresh_token)
            .into_new_tokens(&self.vault, aad, Utc::now())
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    pub async fn rotate_secret(
        &self,
        name: &str,
        req: RotateSecret,
    ) -> Result<SecretView, ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        let current = self.store.get_secret(&name).await?;
        check_value(current.injection(), &req.value)?;
        // The first token is fetched before the row is locked: a rotation
        // never holds the row across the network.
        let oauth2_tokens = match current.injection() {
            // A new client secret for a connected grant: its tokens stay
            // (Connect again to replace them).
            Injection::OAuth2(grant) if grant.connectable() && req.refresh_token.is_none() => None,
            Injection::OAuth2(grant) => Some(
                self.first_tokens(
                    grant,
                    &req.value,
                    req.refresh_token.as_ref(),
                    &current.aad(),
                )
                .await?,
            ),
            _ => no_refresh_token(req.refresh_token.as_ref())?,
        };
        self.store
            .rotate_secret(&name, |aad| -> Result<Rotated, ServiceError> {
                if aad != current.aad() {
                    return Err(ServiceError::Conflict(format!(
                        "secret {name} changed while it was being rotated: try again"
                    )));
                }
                let sealed = self.vault.seal(aad, req.value.expose().as_bytes())?;
                Ok(Rotated {
                    sealed,
                    key_id: self.vault.key_id().to_owned(),
                    oauth2_tokens,
                })
            })
            .await?;
        self.refresh().await;
        self.secret_view(&name).await
    }

    pub async fn delete_secret(&self, name: &str) -> Result<(), ServiceError> {
        let name = SecretName::parse(name).map_err(|e| ServiceError::invalid("name", e))?;
        self.store.delete_secret(&name).await?;
        self.refresh().await;
        Ok(())
    }
}

/// Only OAuth2 secrets take a refresh token.
fn no_refresh_token(t: Option<&SecretValue>) -> Result<Option<NewTokens>, ServiceError> {
    match t {
        None => Ok(None),
        Some(_) => Err(ServiceError::invalid(
            "refresh_token",
            "only an OAuth2 secret takes a refresh token",
        )),
    }
}

/// A refresh token is sent in a form body: bounded, no control characters.
fn check_token_text(t: &SecretValue) -> Result<(), ServiceError> {
    let v = t.expose();
    if v.len() > MAX_VALUE_LEN || v.bytes().any(|b| b.is_ascii_control()) {
        return Err(ServiceError::invalid(
            "refresh_token",
            format!(
                "the refresh token must be one line of at most {MAX_VALUE_LEN} bytes without \
                 control characters"
            ),
        ));
    }
    Ok(())
}

/// What `secret add` says when the first token cannot be had: what was
/// wrong and what to do; nothing is stored. Never a token or secret.
fn first_token_error(grant: &OAuth2Grant, e: &EndpointError) -> ServiceError {
    let url = &grant.token_url;
    // Which setting each failure points at, by grant.
    let (url_flag, refused) = match grant.grant {
        GrantType::GithubApp => (
            "--github-api-url",
            "check --github-app-id, --github-installation-id (the app must be installed \
             there) and that the private key is one of the app's current keys",
        ),
        GrantType::JwtBearer => (
            "the key file's token_uri",
            "the service account's key is deleted or disabled, the account is disabled, or \
             this host's clock is off",
        ),
        GrantType::RefreshToken | GrantType::ClientCredentials => ("--oauth2-token-url", ""),
    };
    let what = match e {
        EndpointError::Unreachable(_) | EndpointError::Timeout(_) => format!(
            "the token endpoint {url} could not be reached ({e}): check {url_flag} and that \
             this host can reach it (and trusts its certificate: AIRLOCK_UPSTREAM_CA)"
        ),
        EndpointError::Refused { .. } if grant.grant.is_signed_jwt() => {
            format!("the token endpoint {url} refused the signed JWT ({e}): {refused}")
        }
        EndpointError::Refused { code, .. } if code == "invalid_grant" => format!(
            "the provider refused the refresh token ({e}): it is expired, revoked or issued to \
             another client; obtain a new one"
        ),
        EndpointError::Refused { .. } => format!(
            "the provider refused the client ({e}): check --client-id and the client secret, \
             and that the client may use the {} grant",
            grant.grant.as_str()
        ),
        EndpointError::Failed { .. } => format!(
            "the token endpoint {url} refused the token request ({e}): check {url_flag}, the \
             scopes and the grant"
        ),
        EndpointError::Malformed(_) => format!("{e}: is {url} really a token endpoint?"),
        EndpointError::Key(_) => e.to_string(),
    };
    ServiceError::invalid("oauth2", format!("{what}. Nothing was stored"))
}

/// A value must be non-empty, bounded, and fit where it will be injected.
fn check_value(injection: &Injection, value: &SecretValue) -> Result<(), ServiceError> {
    let v = value.expose();
    if v.is_empty() {
        return Err(ServiceError::invalid(
            "value",
            "the secret value is empty: pipe the value on standard input",
        ));
    }
    if v.len() > MAX_VALUE_LEN {
        return Err(ServiceError::invalid(
            "value",
            format!("the secret value is longer than {MAX_VALUE_LEN} bytes"),
        ));
    }
    // A signed-JWT grant's value is a PEM private key (lines and all).
    if let Injection::OAuth2(grant) = injection
        && grant.grant.is_signed_jwt()
    {
        return crate::credentials::jwt::check_private_key(v)
            .map_err(|e| ServiceError::invalid("value", format!("{e}. Nothing was stored")));
    }
    // Never echo the value: only say what kind of character is wrong.
    if v.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(ServiceError::invalid(
            "value",
            "the secret value contains a line break or control character \
             (a trailing newline is removed for you; others are not allowed)",
        ));
    }
    if let Injection::AwsSigv4 { .. } = injection {
        let ok = v
            .split_once(':')
            .is_some_and(|(id, key)| !id.is_empty() && !key.is_empty());
        if !ok {
            return Err(ServiceError::invalid(
                "value",
                "an AWS SigV4 secret's value must be ACCESS_KEY_ID:SECRET_ACCESS_KEY",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_without_being_echoed() {
        let header = Injection::header_from_spec("authorization").unwrap();
        let err = check_value(&header, &SecretValue::new("sk-abc\r\nX: y".into())).unwrap_err();
        assert!(!err.to_string().contains("sk-abc"));
        assert!(check_value(&header, &SecretValue::new(String::new())).is_err());
        assert!(check_value(&header, &SecretValue::new("sk-abc".into())).is_ok());
        let aws = Injection::aws_from_spec("us-east-1/s3").unwrap();
        assert!(check_value(&aws, &SecretValue::new("AKIA".into())).is_err());
        assert!(check_value(&aws, &SecretValue::new("AKIA:secret".into())).is_ok());
    }
}
