//! Why a credential could not be had. None of these carries a token, a
//! client secret or a provider's response body: only the secret's name,
//! the provider's error code and what the operator must do.

/// What went wrong at the token endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    #[error("the token endpoint could not be reached: {0}")]
    Unreachable(String),
    #[error("the token endpoint did not answer within {0}s")]
    Timeout(u64),
    /// The provider refused the grant or the client for good
    /// (`invalid_grant`, `invalid_client`, `unauthorized_client`):
    /// retrying cannot help.
    #[error("the provider refused the grant ({code}, HTTP {status})")]
    Refused { code: String, status: u16 },
    /// Any other error answer (`invalid_request`, `invalid_scope`, a 5xx
    /// page): may pass.
    #[error("the token endpoint answered HTTP {status}{}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Failed { status: u16, code: Option<String> },
    #[error("the token endpoint's answer is not a usable token response: {0}")]
    Malformed(String),
}

impl EndpointError {
    /// A refusal that only the operator can end: the secret is marked as
    /// needing reconnection.
    pub fn is_refusal(&self) -> bool {
        matches!(self, EndpointError::Refused { .. })
    }
}

/// Why a request's OAuth2 secret has no access token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CredentialError {
    #[error(
        "OAuth2 secret {secret} needs reconnection: {detail}. The operator must give it a new \
         grant: `airlock secret rotate {secret} --refresh-token-stdin` (client secret, then a \
         new refresh token, on standard input), or `--client-credentials` with a valid client \
         secret"
    )]
    NeedsReconnection { secret: String, detail: String },
    #[error(
        "OAuth2 secret {secret} has no access token: {reason}; requests that need it fail \
         until the token endpoint answers (retried after {retry_secs}s)"
    )]
    Endpoint {
        secret: String,
        reason: EndpointError,
        retry_secs: u64,
    },
    #[error("OAuth2 secret {secret} cannot be used: {reason}")]
    Internal { secret: String, reason: String },
}

impl CredentialError {
    pub fn secret(&self) -> &str {
        match self {
            CredentialError::NeedsReconnection { secret, .. }
            | CredentialError::Endpoint { secret, .. }
            | CredentialError::Internal { secret, .. } => secret,
        }
    }

    pub fn needs_reconnection(&self) -> bool {
        matches!(self, CredentialError::NeedsReconnection { .. })
    }
}
