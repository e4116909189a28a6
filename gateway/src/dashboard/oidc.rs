//! Optional OpenID Connect login: the authorization code flow with PKCE,
//! state and nonce, ending in the same session as a password login.
//!
//! Discovery (and the issuer's JWKS) is fetched on the first login, not at
//! start-up, so an issuer that is down never stops the daemon; a failed
//! discovery is retried on the next attempt. The pending logins (PKCE
//! verifier, nonce) stay in memory, keyed by the state, and the state is
//! also put in a cookie so a callback only completes in the browser that
//! started it (no login CSRF).

use std::time::Duration;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse as _, reqwest,
};
use tokio::sync::OnceCell;

use crate::config::OidcSettings;
use crate::dashboard::pending::Pending;
use crate::dashboard::public_url::PublicUrl;

/// The cookie carrying the state between the redirect and the callback.
pub const OIDC_COOKIE: &str = "airlock_oidc";
/// How long the operator has at the issuer.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(600);
/// Bounds memory against someone clicking "Sign in" in a loop.
const MAX_PENDING: usize = 64;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// Why an OpenID Connect login failed.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the OpenID Connect configuration is invalid: {0}")]
    Config(String),
    #[error("cannot reach the OpenID Connect issuer: {0}")]
    Discovery(String),
    #[error("the login expired or was started in another browser; please try again")]
    UnknownState,
    #[error("the issuer refused the login: {0}")]
    Issuer(String),
    #[error("exchanging the authorization code failed: {0}")]
    Exchange(String),
    #[error("the issuer returned no ID token")]
    NoIdToken,
    #[error("the ID token is invalid: {0}")]
    IdToken(String),
    #[error("the ID token carries no e-mail address")]
    NoEmail,
    #[error("the e-mail address {0} is not verified at the issuer")]
    Unverified(String),
    #[error("{0} is not allowed to log in to this dashboard")]
    NotAllowed(String),
}

/// What a started login remembers until its callback.
struct Login {
    verifier: PkceCodeVerifier,
    nonce: Nonce,
}

/// The OIDC login's configuration and state, shared by the handlers.
pub struct Oidc {
    settings: OidcSettings,
    redirect_url: String,
    http: reqwest::Client,
    client: OnceCell<Client>,
    pending: Pending<Login>,
}

impl Oidc {
    /// `origin` (where browsers reach the dashboard) gives the default
    /// redirect URL.
    pub fn new(settings: OidcSettings, origin: &PublicUrl) -> Result<Oidc, OidcError> {
        let redirect_url = settings
            .redirect_url
            .clone()
            .unwrap_or_else(|| origin.join("/login/oidc/callback"));
        // The crate's advice: no redirects, so a hostile issuer cannot
        // bounce the daemon's requests to internal addresses.
        let http = reqwest::ClientBuilder::new()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| OidcError::Config(e.to_string()))?;
        Ok(Oidc {
            settings,
            redirect_url,
            http,
            client: OnceCell::new(),
            pending: Pending::new(PENDING_LIFETIME, MAX_PENDING),
        })
    }

    /// The issuer's host, for the "Sign in with ..." button.
    pub fn issuer_host(&self) -> String {
        url_host(&self.settings.issuer).unwrap_or_else(|| self.settings.issuer.clone())
    }

    pub fn issuer(&self) -> &str {
        &self.settings.issuer
    }

    async fn client(&self) -> Result<&Client, OidcError> {
        self.client
            .get_or_try_init(|| async {
                let issuer = IssuerUrl::new(self.settings.issuer.clone())
                    .map_err(|e| OidcError::Config(format!("issuer URL: {e}")))?;
                let redirect = RedirectUrl::new(self.redirect_url.clone())
                    .map_err(|e| OidcError::Config(format!("redirect URL: {e}")))?;
                // Also fetches the JWKS; `iss` in the document must equal
                // the configured issuer (checked by the crate).
                let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
                    .await
                    .map_err(|e| OidcError::Discovery(error_chain(&e)))?;
                Ok(CoreClient::from_provider_metadata(
                    metadata,
                    ClientId::new(self.settings.client_id.clone()),
                    self.settings.client_secret.clone().map(ClientSecret::new),
                )
                .set_redirect_uri(redirect))
            })
            .await
    }

    /// Starts a login: the issuer's authorization URL and the state to put
    /// in the cookie.
    pub async fn start(&self) -> Result<(String, String), OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .add_scope(Scope::new("email".into()))
            .set_pkce_challenge(challenge)
            .url();
        self.pending
            .insert(state.secret().clone(), Login { verifier, nonce });
        Ok((url.to_string(), state.secret().clone()))
    }

    /// Completes a login: the allowed, verified e-mail address.
    /// `cookie_state` is the state cookie the browser sent.
    pub async fn finish(
        &self,
        state: &str,
        cookie_state: Option<&str>,
        code: &str,
    ) -> Result<String, OidcError> {
        if !cookie_state.is_some_and(|c| crate::dashboard::session::same_token(c, state)) {
            return Err(OidcError::UnknownState);
        }
        // Removed before use: a state (and its code) works once.
        let pending = self.pending.take(state).ok_or(OidcError::UnknownState)?;
        let client = self.client().await?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| OidcError::Exchange(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| OidcError::Exchange(error_chain(&e)))?;
        let id_token = response.id_token().ok_or(OidcError::NoIdToken)?;
        // Signature against the JWKS, iss, aud, exp and nonce.
        let claims = id_token
            .claims(&client.id_token_verifier(), &pending.nonce)
            .map_err(|e| OidcError::IdToken(error_chain(&e)))?;
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .ok_or(OidcError::NoEmail)?;
        if claims.email_verified() != Some(true) {
            return Err(OidcError::Unverified(email));
        }
        if !self.allowed(&email) {
            return Err(OidcError::NotAllowed(email));
        }
        Ok(email)
    }

    fn allowed(&self, email: &str) -> bool {
        if self.settings.allowed_emails.iter().any(|a| a == email) {
            return true;
        }
        match (&self.settings.allowed_domain, email.rsplit_once('@')) {
            (Some(domain), Some((local, host))) => !local.is_empty() && host == domain,
            _ => false,
        }
    }
}

fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    (!host.is_empty()).then(|| host.to_owned())
}

/// The error and its causes on one line: the crate's top-level messages
/// alone ("Request failed") do not say what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc(emails: &[&str], domain: Option<&str>) -> Oidc {
        Oidc::new(
            OidcSettings {
                issuer: "https://login.example.com/tenant".into(),
                client_id: "airlock".into(),
                client_secret: None,
                redirect_url: None,
                allowed_emails: emails.iter().map(|e| e.to_string()).collect(),
                allowed_domain: domain.map(str::to_owned),
            },
            &PublicUrl::of_listener("127.0.0.1:10254".parse().unwrap()),
        )
        .unwrap()
    }

    #[test]
    fn allow_list_and_domain() {
        let o = oidc(&["ops@other.org"], Some("example.com"));
        assert!(o.allowed("ops@other.org"));
        assert!(o.allowed("alice@example.com"));
        assert!(!o.allowed("alice@evil-example.com"));
        assert!(!o.allowed("alice@sub.example.com"));
        assert!(!o.allowed("@example.com"));
        assert!(!o.allowed("eve@other.org"));
        assert_eq!(o.issuer_host(), "login.example.com");
        assert_eq!(o.redirect_url, "http://127.0.0.1:10254/login/oidc/callback");
    }
}
