//! The token endpoint client: one token request, bounded in time and
//! size, its answer read into a [`TokenResponse`] or an [`EndpointError`]
//! that never carries a token. RFC 6749's grants and RFC 7523's JWT
//! bearer grant are here; GitHub's installation tokens in [`super::github`].
//!
//! The client authenticates with `client_secret_basic` (RFC 6749 §2.3.1,
//! the method every provider must support; a JWT bearer grant's signed
//! assertion is its own authentication), verifies the endpoint's
//! certificate against the same roots as upstreams (OS store plus
//! `AIRLOCK_UPSTREAM_CA`), and follows no redirect (a redirect would carry
//! the refresh token to wherever it points).

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::BytesMut;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use rustls::ClientConfig;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::error::EndpointError;
use super::token::{TokenResponse, check_token};
use super::{github, jwt};
use crate::model::{GrantType, OAuth2Grant};

/// RFC 7523 §2.1's `grant_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Connecting (TCP and TLS) to the token endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The whole token request, connect to last byte: what a request waiting
/// for a token waits at most.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A token response is a small JSON object; anything larger is refused.
const MAX_RESPONSE: usize = 64 * 1024;
/// Used when the provider omits `expires_in` (RFC 6749 makes it
/// optional): short enough that a token the provider expires sooner is
/// renewed on its first 401.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// `token_type`s whose tokens are bound to a key the client proves with
/// each request (RFC 9449 DPoP, the MAC drafts, PoP).
const BOUND_TOKEN_TYPES: &[&str] = &["mac", "dpop", "pop"];

/// What the authorization-code exchange sends: the code, the redirect URI
/// it was issued for, and the PKCE verifier of its challenge.
pub struct AuthorizationCode<'a> {
    pub code: &'a str,
    pub redirect_uri: &'a str,
    pub verifier: &'a str,
}

/// The HTTP client for token endpoints, shared by every secret.
#[derive(Clone)]
pub struct TokenClient {
    http: reqwest::Client,
}

/// The JSON of a token or error response (RFC 6749 §5.1, §5.2). Unknown
/// fields (`id_token`, `scope`, ...) are ignored.
#[derive(Deserialize)]
struct Answer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
}

impl TokenClient {
    /// A client trusting `tls`'s roots, HTTP/1.1 only (the gateway's
    /// upstream config also offers h2, which this client does not build
    /// in).
    pub fn new(tls: &Arc<ClientConfig>) -> Result<Self, EndpointError> {
        let mut config = ClientConfig::clone(tls);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::ClientBuilder::new()
            .use_preconfigured_tls(config)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .https_only(true)
            // GitHub's API refuses requests without one.
            .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                EndpointError::Unreachable(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(TokenClient { http })
    }

    /// One token request for `grant`. `secret` is the client secret, or
    /// a signed-JWT grant's private key (PEM); `refresh_token` is the
    /// refresh-token grant's.
    pub async fn request(
        &self,
        grant: &OAuth2Grant,
        secret: &str,
        refresh_token: Option<&str>,
    ) -> Result<TokenResponse, EndpointError> {
        let send = match grant.grant {
            GrantType::RefreshToken | GrantType::ClientCredentials => {
                self.client_post(grant, secret, form(grant, refresh_token)?)?
            }
            GrantType::JwtBearer => {
                let assertion = jwt::assertion(grant, secret, chrono::Utc::now())
                    .map_err(EndpointError::Key)?;
                let pairs = [
                    ("grant_type", JWT_BEARER),
                    ("assertion", assertion.as_str()),
                ];
                let body = Zeroizing::new(
                    serde_urlencoded::to_string(pairs)
                        .map_err(|e| EndpointError::Malformed(format!("cannot encode: {e}")))?
                        .into_bytes(),
                );
                self.form_post(grant, body)
            }
            GrantType::GithubApp => {
                let jwt = jwt::assertion(grant, secret, chrono::Utc::now())
                    .map_err(EndpointError::Key)?;
                let (status, raw) = self.send(github::request(&self.http, grant, &jwt)?).await?;
                return github::read_answer(status, &raw, chrono::Utc::now());
            }
        };
        let (status, raw) = self.send(send).await?;
        read_answer(status, &raw)
    }

    /// RFC 6749 §4.1.3 with RFC 7636's verifier: the authorization code
    /// that the dashboard's Connect received, exchanged for the grant's
    /// first tokens.
    pub async fn exchange_code(
        &self,
        grant: &OAuth2Grant,
        client_secret: &str,
        code: &AuthorizationCode<'_>,
    ) -> Result<TokenResponse, EndpointError> {
        let pairs = [
            ("grant_type", "authorization_code"),
            ("code", code.code),
            ("redirect_uri", code.redirect_uri),
            ("code_verifier", code.verifier),
        ];
        let body = Zeroizing::new(
            serde_urlencoded::to_string(pairs)
                .map_err(|e| EndpointError::Malformed(format!("cannot encode: {e}")))?
                .into_bytes(),
        );
        let (status, raw) = self
            .send(self.client_post(grant, client_secret, body)?)
            .await?;
        read_answer(status, &raw)
    }

    /// A form POST authenticated as the client (`client_secret_basic`).
    fn client_post(
        &self,
        grant: &OAuth2Grant,
        client_secret: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<reqwest::RequestBuilder, EndpointError> {
        let auth = basic_auth(&grant.client_id, client_secret);
        let mut auth = http::HeaderValue::from_str(&auth)
            .map_err(|_| EndpointError::Malformed("the client id cannot be sent".into()))?;
        auth.set_sensitive(true);
        Ok(self
            .form_post(grant, body)
            .header(http::header::AUTHORIZATION, auth))
    }

    /// A form POST to the token endpoint; the caller adds authentication.
    fn form_post(&self, grant: &OAuth2Grant, body: Zeroizing<Vec<u8>>) -> reqwest::RequestBuilder {
        self.http
            .post(&grant.token_url)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_vec())
    }

    /// Sends a token request and reads its answer, bounded; the body (it
    /// may hold tokens) in a zeroizing buffer.
    async fn send(
        &self,
        send: reqwest::RequestBuilder,
    ) -> Result<(u16, Zeroizing<Vec<u8>>), EndpointError> {
        let mut resp = send.send().await.map_err(transport_error)?;
        let status = resp.status().as_u16();
        let mut buf = BytesMut::new();
        while let Some(chunk) = resp.chunk().await.map_err(transport_error)? {
            if buf.len() + chunk.len() > MAX_RESPONSE {
                return Err(EndpointError::Malformed(format!(
                    "it is larger than {MAX_RESPONSE} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        let raw = Zeroizing::new(buf.to_vec());
        buf.fill(0);
        Ok((status, raw))
    }
}

/// The form body, in a zeroizing buffer (it may hold the refresh token).
fn form(
    grant: &OAuth2Grant,
    refresh_token: Option<&str>,
) -> Result<Zeroizing<Vec<u8>>, EndpointError> {
    let mut pairs: Vec<(&str, &str)> = vec![("grant_type", grant.grant.as_str())];
    if grant.grant == GrantType::RefreshToken {
        let token = refresh_token.ok_or_else(|| {
            EndpointError::Malformed("no refresh token is stored for this grant".into())
        })?;
        pairs.push(("refresh_token", token));
    }
    let scope = grant.scope_param();
    if let Some(scope) = &scope {
        pairs.push(("scope", scope));
    }
    let encoded = serde_urlencoded::to_string(&pairs)
        .map_err(|e| EndpointError::Malformed(format!("cannot encode the request: {e}")))?;
    Ok(Zeroizing::new(encoded.into_bytes()))
}

/// `Basic base64(urlencode(id):urlencode(secret))`, RFC 6749 §2.3.1.
fn basic_auth(client_id: &str, client_secret: &str) -> String {
    let pair = Zeroizing::new(format!(
        "{}:{}",
        utf8_percent_encode(client_id, NON_ALPHANUMERIC),
        utf8_percent_encode(client_secret, NON_ALPHANUMERIC)
    ));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair.as_bytes())
    )
}

/// reqwest's errors name the URL; the token URL is configuration, not a
/// secret, so that is fine, and they never carry the body.
fn transport_error(e: reqwest::Error) -> EndpointError {
    if e.is_timeout() {
        EndpointError::Timeout(REQUEST_TIMEOUT.as_secs())
    } else {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        EndpointError::Unreachable(text)
    }
}

/// Reads a token endpoint's answer (status and body).
fn read_answer(status: u16, raw: &[u8]) -> Result<TokenResponse, EndpointError> {
    let answer: Option<Answer> = serde_json::from_slice(raw).ok();
    if !(200..300).contains(&status) {
        let code = answer.and_then(|a| a.error).filter(|c| is_error_code(c));
        return Err(match code {
            Some(code) if is_refusal_code(&code) => EndpointError::Refused { code, status },
            code => EndpointError::Failed { status, code },
        });
    }
    let answer =
        answer.ok_or_else(|| EndpointError::Malformed("it is not a JSON object".into()))?;
    if let Some(code) = answer.error.filter(|c| is_error_code(c)) {
        return Err(EndpointError::Failed {
            status,
            code: Some(code),
        });
    }
    let access_token = Zeroizing::new(
        answer
            .access_token
            .ok_or_else(|| EndpointError::Malformed("it has no access_token".into()))?,
    );
    check_token(&access_token)?;
    // Token types that need more than the token in a Bearer header (a
    // MAC or a DPoP proof) are refused; any other is used as a bearer
    // token, as the provider's own clients do (Slack's `bot` and `user`).
    if let Some(kind) = answer.token_type.as_deref()
        && BOUND_TOKEN_TYPES
            .iter()
            .any(|t| kind.eq_ignore_ascii_case(t))
    {
        return Err(EndpointError::Malformed(format!(
            "its token_type is {kind:?}, which needs a proof the gateway cannot send, not Bearer"
        )));
    }
    let lifetime_stated = answer.expires_in.is_some();
    // Some providers send expires_in as a string.
    let lifetime = match answer.expires_in {
        None => DEFAULT_LIFETIME,
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().map(Duration::from_secs).ok_or_else(|| {
                EndpointError::Malformed("its expires_in is not a whole number of seconds".into())
            })?
        }
        Some(serde_json::Value::String(s)) => s.parse().map(Duration::from_secs).map_err(|_| {
            EndpointError::Malformed("its expires_in is not a whole number of seconds".into())
        })?,
        Some(_) => {
            return Err(EndpointError::Malformed(
                "its expires_in is not a number".into(),
            ));
        }
    };
    let refresh_token = answer
        .refresh_token
        .filter(|t| !t.is_empty())
        .map(Zeroizing::new);
    Ok(TokenResponse {
        access_token,
        lifetime,
        lifetime_stated,
        refresh_token,
    })
}

/// RFC 6749 error codes are short ASCII words; anything else is not
/// repeated (it could be a page quoting the request).
fn is_error_code(code: &str) -> bool {
    !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// The codes after which only the operator can help.
fn is_refusal_code(code: &str) -> bool {
    matches!(
        code,
        "invalid_grant" | "invalid_client" | "unauthorized_client"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        let ok = read_answer(
            200,
            br#"{"access_token":"at-1","token_type":"Bearer","expires_in":"60","refresh_token":"rt-2"}"#,
        )
        .unwrap();
        assert_eq!(ok.access_token.as_str(), "at-1");
        assert_eq!(ok.lifetime, Duration::from_secs(60));
        assert_eq!(
            ok.refresh_token.as_deref().map(String::as_str),
            Some("rt-2")
        );
        assert!(!format!("{ok:?}").contains("at-1"));

        let revoked = read_answer(400, br#"{"error":"invalid_grant"}"#).unwrap_err();
        assert!(revoked.is_refusal());
        let other = read_answer(503, b"<html>down</html>").unwrap_err();
        assert!(matches!(
            other,
            EndpointError::Failed {
                status: 503,
                code: None
            }
        ));
        let missing = read_answer(200, br#"{"token_type":"bearer"}"#).unwrap_err();
        assert!(matches!(missing, EndpointError::Malformed(_)));
        let mac = read_answer(200, br#"{"access_token":"x","token_type":"mac"}"#).unwrap_err();
        assert!(matches!(mac, EndpointError::Malformed(_)));
        let crlf = read_answer(200, b"{\"access_token\":\"a\\r\\nX: y\"}").unwrap_err();
        assert!(matches!(crlf, EndpointError::Malformed(_)));
    }

    #[test]
    fn error_text_is_never_repeated() {
        let e = read_answer(400, br#"{"error":"see rt-secret-123"}"#).unwrap_err();
        assert!(!e.to_string().contains("rt-secret"));
    }

    #[test]
    fn basic_auth_encodes_both_parts() {
        let h = basic_auth("a:b", "c d");
        let raw = base64::engine::general_purpose::STANDARD
            .decode(h.trim_start_matches("Basic "))
            .unwrap();
        assert_eq!(raw, b"a%3Ab:c%20d");
    }
}
