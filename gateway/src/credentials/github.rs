//! GitHub App installation tokens: `POST
//! {api}/app/installations/{id}/access_tokens` with the app's signed JWT
//! as `Authorization: Bearer`, answered `201 {"token", "expires_at"}`
//! (GitHub's REST API, "Create an installation access token for an app").
//! Tokens live an hour; the gateway renews them like any access token.
//!
//! GitHub's errors are `{"message", "documentation_url"}`, not RFC 6749's:
//! the status says what happened, and the message is never repeated.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::error::EndpointError;
use super::token::{TokenResponse, check_token};
use crate::model::OAuth2Grant;

/// The media type and API version GitHub documents for this call.
const ACCEPT: &str = "application/vnd.github+json";
const API_VERSION: &str = "2022-11-28";

/// The request for `grant`'s installation, authenticated by `jwt`.
pub(super) fn request(
    http: &reqwest::Client,
    grant: &OAuth2Grant,
    jwt: &str,
) -> Result<reqwest::RequestBuilder, EndpointError> {
    let mut auth = http::HeaderValue::from_str(&format!("Bearer {jwt}"))
        .map_err(|_| EndpointError::Malformed("the signed JWT cannot be sent".into()))?;
    auth.set_sensitive(true);
    Ok(http
        .post(&grant.token_url)
        .header(http::header::AUTHORIZATION, auth)
        .header(http::header::ACCEPT, ACCEPT)
        .header("x-github-api-version", API_VERSION))
}

#[derive(Deserialize)]
struct Answer {
    token: Option<String>,
    expires_at: Option<String>,
}

/// Reads GitHub's answer. 401 (GitHub could not verify the JWT: wrong
/// key or app id) and 404 (no such installation of this app) are
/// refusals that only the operator can end; anything else (403 and 429
/// are also how GitHub rate-limits, 5xx) may pass.
pub(super) fn read_answer(
    status: u16,
    raw: &[u8],
    now: DateTime<Utc>,
) -> Result<TokenResponse, EndpointError> {
    match status {
        200..=299 => {}
        401 => {
            return Err(EndpointError::Refused {
                code: "bad_credentials".into(),
                status,
            });
        }
        404 => {
            return Err(EndpointError::Refused {
                code: "installation_not_found".into(),
                status,
            });
        }
        _ => return Err(EndpointError::Failed { status, code: None }),
    }
    let answer: Answer = serde_json::from_slice(raw)
        .map_err(|_| EndpointError::Malformed("it is not a JSON object".into()))?;
    let token = Zeroizing::new(
        answer
            .token
            .ok_or_else(|| EndpointError::Malformed("it has no token".into()))?,
    );
    check_token(&token)?;
    let expires_at = answer
        .expires_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .ok_or_else(|| {
            EndpointError::Malformed("its expires_at is missing or not an RFC 3339 time".into())
        })?;
    let lifetime = (expires_at.with_timezone(&Utc) - now)
        .to_std()
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| EndpointError::Malformed("its expires_at is not in the future".into()))?;
    Ok(TokenResponse {
        access_token: token,
        lifetime,
        lifetime_stated: true,
        refresh_token: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read() {
        let now = Utc::now();
        let at = (now + chrono::Duration::seconds(3600)).to_rfc3339();
        let ok = read_answer(
            201,
            format!(r#"{{"token":"ghs_abc","expires_at":"{at}","permissions":{{}}}}"#).as_bytes(),
            now,
        )
        .unwrap();
        assert_eq!(ok.access_token.as_str(), "ghs_abc");
        assert!(ok.lifetime.as_secs() >= 3599);

        let bad = read_answer(
            401,
            br#"{"message":"A JSON web token could not be decoded"}"#,
            now,
        );
        assert!(bad.unwrap_err().is_refusal());
        assert!(read_answer(404, b"{}", now).unwrap_err().is_refusal());
        let limited = read_answer(403, br#"{"message":"rate limit ghs_abc"}"#, now).unwrap_err();
        assert!(!limited.is_refusal());
        assert!(!limited.to_string().contains("ghs_abc"));
        let past = (now - chrono::Duration::seconds(5)).to_rfc3339();
        let stale = format!(r#"{{"token":"ghs_abc","expires_at":"{past}"}}"#);
        assert!(matches!(
            read_answer(201, stale.as_bytes(), now),
            Err(EndpointError::Malformed(_))
        ));
        assert!(matches!(
            read_answer(201, br#"{"expires_at":"x"}"#, now),
            Err(EndpointError::Malformed(_))
        ));
    }
}
