//! How a secret's value is put into a request.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Where a secret goes in a request that it applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Injection {
    /// Set a header, replacing any value the agent sent. `template` holds
    /// `{value}` exactly once, e.g. `Bearer {value}`.
    Header { name: String, template: String },
    /// Set a query parameter, replacing the agent's value if it sent one.
    Query { param: String },
    /// Sign the request with AWS Signature Version 4. The stored value is
    /// `ACCESS_KEY_ID:SECRET_ACCESS_KEY`.
    AwsSigv4 { region: String, service: String },
    /// `Authorization: Bearer` with an access token the gateway obtains
    /// from `token_url` and renews (`crate::credentials`). The stored
    /// value is the client secret; a refresh token, and the access token
    /// once fetched, are sealed beside it (`store::oauth2`).
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Grant),
    /// Put the value into the URL path where the agent wrote its
    /// placeholder, e.g. `/bot{value}/**` (Telegram). `template` is
    /// `PREFIX{value}REST`: the placeholder must follow `PREFIX` (literal
    /// text from the path's start) and what follows it must match `REST`,
    /// a path glob (empty: nothing may follow). See
    /// `proxy::inject_path` for the exact rule.
    Path { template: String },
    /// `Authorization: Basic base64(template)`, `template` holding
    /// `{value}` once, e.g. `api:{value}` or `{value}:`; the gateway
    /// fills and encodes it.
    Basic { template: String },
    /// Replace the secret's placeholder wherever the agent writes it in
    /// a JSON or form-encoded request body (or a WebSocket text message),
    /// escaped for that encoding (`proxy::body_subst`).
    Body,
}

/// Where an OAuth2 secret's access tokens come from. Everything here is
/// public configuration; the client secret and the tokens are sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OAuth2Grant {
    /// The provider's token endpoint: `https://` only.
    pub token_url: String,
    pub client_id: String,
    /// Sent as `scope` (space-separated) with each token request; empty:
    /// none sent, the provider's default.
    #[serde(default)]
    pub scopes: Vec<String>,
    pub grant: GrantType,
    /// A signed-JWT grant's key id, sent as the assertion's `kid` header
    /// (a Google service account's `private_key_id`); absent for GitHub
    /// Apps, which have one key at a time per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// A refresh-token grant that the dashboard's Connect obtains (the
    /// authorization-code flow with PKCE, `dashboard::connect`): where the
    /// operator's browser is sent. `None`: the refresh token is given by
    /// hand (`--refresh-token-stdin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Extra parameters of the authorization request, e.g. Google's
    /// `access_type=offline` (without which it issues no refresh token).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub authorize_params: BTreeMap<String, String>,
}

/// Which grant obtains the access token. The signed-JWT grants hold a
/// private key instead of a client secret (the sealed value is its PEM)
/// and sign a short-lived RS256 assertion for each token request
/// (`crate::credentials::jwt`); caching, renewal and single flight are
/// the same for all four.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// RFC 6749 §6: a refresh token (sealed, rotated when the provider
    /// rotates it) is exchanged for each access token.
    RefreshToken,
    /// RFC 6749 §4.4: the client's own credentials are exchanged.
    ClientCredentials,
    /// A GitHub App installation token: a JWT signed with the app's key
    /// (`iss` = `client_id`, the app id) is sent as `Authorization:
    /// Bearer` to `token_url`, `{api}/app/installations/{id}/access_tokens`.
    GithubApp,
    /// RFC 7523 §2.1, the JWT bearer grant (Google service accounts): the
    /// signed assertion (`iss` = `client_id`, the client email; `aud` =
    /// `token_url`) is the grant.
    JwtBearer,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::RefreshToken => "refresh_token",
            GrantType::ClientCredentials => "client_credentials",
            GrantType::GithubApp => "github_app",
            GrantType::JwtBearer => "jwt_bearer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "refresh_token" => Some(GrantType::RefreshToken),
            "client_credentials" => Some(GrantType::ClientCredentials),
            "github_app" => Some(GrantType::GithubApp),
            "jwt_bearer" => Some(GrantType::JwtBearer),
            _ => None,
        }
    }

    /// Whether the sealed value is a private key that signs assertions
    /// (rather than a client secret).
    pub fn is_signed_jwt(self) -> bool {
        matches!(self, GrantType::GithubApp | GrantType::JwtBearer)
    }

    /// What operators call a secret of this grant, in messages.
    pub fn label(self) -> &'static str {
        match self {
            GrantType::RefreshToken | GrantType::ClientCredentials => "OAuth2",
            GrantType::GithubApp => "GitHub App",
            GrantType::JwtBearer => "service-account",
        }
    }
}

/// Why an injection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InjectionError {
    #[error("header name {0:?} is not a valid HTTP header name")]
    BadHeaderName(String),
    #[error("header {0:?} is managed by the gateway and cannot carry a secret")]
    ReservedHeader(String),
    #[error("header template must contain {{value}} exactly once, e.g. \"Bearer {{value}}\"")]
    BadTemplate,
    #[error("header template has a character that is not allowed in a header value")]
    BadTemplateCharacter,
    #[error("query parameter name {0:?} must be 1-128 characters of A-Z a-z 0-9 - _ . ~")]
    BadQueryParam(String),
    #[error("AWS SigV4 target {0:?} must be REGION/SERVICE, e.g. us-east-1/s3")]
    BadAwsTarget(String),
    #[error(
        "path template {0:?} must start with '/', hold {{value}} exactly once after literal path \
         text (no * ? [ ] {{ }} % or \\ before it), and be a valid glob after it, e.g. \
         \"/bot{{value}}/**\""
    )]
    BadPathTemplate(String),
    #[error(
        "Basic template must hold {{value}} exactly once in printable ASCII, e.g. \"api:{{value}}\" \
         or \"{{value}}:\" (USER:PASSWORD, with the value as either)"
    )]
    BadBasicTemplate,
    #[error("OAuth2 token URL: {0}")]
    BadTokenUrl(String),
    #[error("OAuth2 client id must be 1-255 printable ASCII characters without spaces")]
    BadClientId,
    #[error(
        "GitHub App: the token URL must end with /app/installations/ID/access_tokens (ID \
         digits), the app id be digits or the app's client id, and no --scope be given"
    )]
    BadGithubApp,
    #[error("signed-JWT key id must be 1-255 printable ASCII characters without spaces")]
    BadKeyId,
    #[error(
        "OAuth2 scope {0:?} must be 1-255 printable ASCII characters without spaces, quotes or \\ \
         (give each scope as its own --scope), and at most 64 scopes"
    )]
    BadScope(String),
    #[error("OAuth2 authorization URL: {0}")]
    BadAuthorizeUrl(String),
    #[error(
        "OAuth2 authorization parameter {0:?}: at most 16, each NAME=VALUE of printable ASCII \
         without spaces, and not one the gateway sets itself (response_type, client_id, \
         redirect_uri, scope, state, code_challenge, code_challenge_method)"
    )]
    BadAuthorizeParam(String),
    #[error(
        "only the refresh-token grant can be connected from the dashboard: an authorization URL \
         needs --connect or --refresh-token-stdin"
    )]
    AuthorizeNeedsRefreshGrant,
}

/// Headers that describe the connection or the message framing; a secret
/// in one of them would break the request or leak through a proxy hop.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
];

impl Injection {
    /// A header injection, from `NAME` or `NAME=TEMPLATE` as the CLI takes it.
    /// The default template is `Bearer {value}` for `Authorization` and
    /// `{value}` for any other header.
    pub fn header_from_spec(spec: &str) -> Result<Self, InjectionError> {
        let (name, template) = match spec.split_once('=') {
            Some((name, template)) => (name, Some(template)),
            None => (spec, None),
        };
        let template = template.map(str::to_owned).unwrap_or_else(|| {
            if name.eq_ignore_ascii_case("authorization") {
                "Bearer {value}".to_owned()
            } else {
                "{value}".to_owned()
            }
        });
        let injection = Injection::Header {
            name: name.to_ascii_lowercase(),
            template,
        };
        injection.validate()?;
        Ok(injection)
    }

    /// An AWS SigV4 injection from `REGION/SERVICE`.
    pub fn aws_from_spec(spec: &str) -> Result<Self, InjectionError> {
        let (region, service) = spec
            .split_once('/')
            .ok_or_else(|| InjectionError::BadAwsTarget(spec.to_owned()))?;
        let injection = Injection::AwsSigv4 {
            region: region.to_owned(),
            service: service.to_owned(),
        };
        injection.validate()?;
        Ok(injection)
    }

    /// Checks every field; the service layer calls this on every write.
    pub fn validate(&self) -> Result<(), InjectionError> {
        match self {
            Injection::Header { name, template } => {
                if name.is_empty() || !name.bytes().all(is_token_byte) {
                    return Err(InjectionError::BadHeaderName(name.clone()));
                }
                if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(InjectionError::ReservedHeader(name.clone()));
                }
                if template.matches("{value}").count() != 1 {
                    return Err(InjectionError::BadTemplate);
                }
                if !template
                    .bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                {
                    return Err(InjectionError::BadTemplateCharacter);
                }
                Ok(())
            }
            Injection::Query { param } => {
                let ok = !param.is_empty()
                    && param.len() <= 128
                    && param
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
                if ok {
                    Ok(())
                } else {
                    Err(InjectionError::BadQueryParam(param.clone()))
                }
            }
            Injection::AwsSigv4 { region, service } => {
                let part_ok = |s: &str| {
                    !s.is_empty()
                        && s.len() <= 64
                        && s.bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                };
                if part_ok(region) && part_ok(service) {
                    Ok(())
                } else {
                    Err(InjectionError::BadAwsTarget(format!("{region}/{service}")))
                }
            }
            Injection::OAuth2(grant) => grant.validate(),
            Injection::Path { template } => check_path_template(template),
            Injection::Basic { template } => {
                let ok = template.matches("{value}").count() == 1
                    && template.bytes().all(|b| (0x20..0x7f).contains(&b));
                if ok {
                    Ok(())
                } else {
                    Err(InjectionError::BadBasicTemplate)
                }
            }
            Injection::Body => Ok(()),
        }
    }

    /// True for the kinds whose value goes only where the agent wrote
    /// its placeholder (path, body): a request without one gets nothing.
    pub fn is_placed_by_agent(&self) -> bool {
        matches!(self, Injection::Path { .. } | Injection::Body)
    }

    /// The short kind name stored in the database.
    pub fn kind(&self) -> &'static str {
        match self {
            Injection::Header { .. } => "header",
            Injection::Query { .. } => "query",
            Injection::AwsSigv4 { .. } => "aws_sigv4",
            Injection::OAuth2(_) => "oauth2",
            Injection::Path { .. } => "path",
            Injection::Basic { .. } => "basic",
            Injection::Body => "body",
        }
    }

    /// A one-line human description, e.g. `header authorization: Bearer {value}`.
    pub fn describe(&self) -> String {
        match self {
            Injection::Header { name, template } => format!("header {name}: {template}"),
            Injection::Query { param } => format!("query ?{param}="),
            Injection::AwsSigv4 { region, service } => format!("aws-sigv4 {region}/{service}"),
            Injection::OAuth2(g) => format!("oauth2 {} via {}", g.grant.as_str(), g.token_url),
            Injection::Path { template } => format!("path {template}"),
            Injection::Basic { template } => format!("basic {template}"),
            Injection::Body => "body (JSON, form, WebSocket text)".into(),
        }
    }
}

impl OAuth2Grant {
    /// A grant without a key id or an authorization URL.
    pub fn new(
        grant: GrantType,
        token_url: String,
        client_id: String,
        scopes: Vec<String>,
    ) -> Self {
        OAuth2Grant {
            token_url,
            client_id,
            scopes,
            grant,
            key_id: None,
            authorize_url: None,
            authorize_params: BTreeMap::new(),
        }
    }

    pub fn validate(&self) -> Result<(), InjectionError> {
        check_token_url(&self.token_url)?;
        let printable = |s: &str| {
            !s.is_empty() && s.len() < 256 && s.bytes().all(|b| (0x21..0x7f).contains(&b))
        };
        if !printable(&self.client_id) {
            return Err(InjectionError::BadClientId);
        }
        if self.scopes.len() > 64 {
            return Err(InjectionError::BadScope(format!(
                "{} scopes",
                self.scopes.len()
            )));
        }
        // RFC 6749 §3.3 scope-token: no space, `"` or `\`.
        for scope in &self.scopes {
            if !printable(scope) || scope.contains(['"', '\\']) {
                return Err(InjectionError::BadScope(scope.clone()));
            }
        }
        if self.key_id.as_deref().is_some_and(|k| !printable(k)) {
            return Err(InjectionError::BadKeyId);
        }
        if self.grant == GrantType::GithubApp && !self.is_github_app_shape() {
            return Err(InjectionError::BadGithubApp);
        }
        if let Some(url) = &self.authorize_url {
            if self.grant != GrantType::RefreshToken {
                return Err(InjectionError::AuthorizeNeedsRefreshGrant);
            }
            check_https_url(url, "the operator logs in to the provider there")
                .map_err(InjectionError::BadAuthorizeUrl)?;
        } else if !self.authorize_params.is_empty() {
            return Err(InjectionError::BadAuthorizeUrl(
                "parameters are given but no authorization URL".into(),
            ));
        }
        if self.authorize_params.len() > 16 {
            return Err(InjectionError::BadAuthorizeParam(format!(
                "{} parameters",
                self.authorize_params.len()
            )));
        }
        for (name, value) in &self.authorize_params {
            if !printable(name)
                || !printable(value)
                || RESERVED_AUTHORIZE_PARAMS.contains(&name.as_str())
            {
                return Err(InjectionError::BadAuthorizeParam(name.clone()));
            }
        }
        Ok(())
    }

    /// Can the dashboard's Connect obtain this grant's refresh token?
    pub fn connectable(&self) -> bool {
        self.grant == GrantType::RefreshToken && self.authorize_url.is_some()
    }

    /// A GitHub App grant posts to an installation's token URL, is issued
    /// by an app id (digits) or the app's client id (`Iv1.…`, also
    /// accepted as `iss`), and has no scopes (GitHub takes none).
    fn is_github_app_shape(&self) -> bool {
        let installation = self
            .token_url
            .strip_suffix("/access_tokens")
            .and_then(|u| u.rsplit_once("/app/installations/"))
            .map(|(_, id)| id);
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        let issuer = self
            .client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.');
        installation.is_some_and(digits) && issuer && self.scopes.is_empty()
    }

    /// The installation token URL of a GitHub App under `api` (the REST
    /// API's base, e.g. `https://api.github.com`, or a GitHub Enterprise
    /// Server's `https://HOST/api/v3`).
    pub fn github_token_url(api: &str, installation_id: &str) -> String {
        format!(
            "{}/app/installations/{installation_id}/access_tokens",
            api.trim_end_matches('/')
        )
    }

    /// The `scope` parameter of a token request, if any.
    pub fn scope_param(&self) -> Option<String> {
        (!self.scopes.is_empty()).then(|| self.scopes.join(" "))
    }
}

/// The token endpoint receives the client secret and the refresh token,
/// so it must be `https://` (the gateway verifies its certificate like an
/// upstream's) with a host and no user info or fragment.
/// The authorization request's parameters that the Connect flow sets
/// itself; a preset or flag cannot override them.
const RESERVED_AUTHORIZE_PARAMS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn check_token_url(url: &str) -> Result<(), InjectionError> {
    check_https_url(url, "the client secret and refresh token are sent to it")
        .map_err(InjectionError::BadTokenUrl)
}

/// An `https://` URL with a host, no user info and no fragment; the
/// error quotes the URL (configuration, not a secret).
fn check_https_url(url: &str, why_https: &str) -> Result<(), String> {
    let bad = |why: &str| format!("{url:?} {why}");
    let uri: http::Uri = url.parse().map_err(|_| bad("is not a URL"))?;
    if uri.scheme_str() != Some("https") {
        return Err(bad(&format!("must start with https:// ({why_https})")));
    }
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') || authority.host().is_empty() {
        return Err(bad("must not carry user info"));
    }
    if url.contains('#') || url.len() > 2048 {
        return Err(bad("must have no fragment and be under 2048 characters"));
    }
    Ok(())
}

/// A path template is `PREFIX{value}REST`: `PREFIX` literal path text
/// from the start (so the placeholder's position is exact), `REST` a path
/// glob or nothing.
fn check_path_template(template: &str) -> Result<(), InjectionError> {
    let bad = || InjectionError::BadPathTemplate(template.to_owned());
    if !template.starts_with('/') || template.matches("{value}").count() != 1 {
        return Err(bad());
    }
    let (prefix, rest) = template.split_once("{value}").ok_or_else(bad)?;
    let literal = |b: u8| b.is_ascii_graphic() && !b"*?[]{}%\\".contains(&b);
    if !prefix.bytes().all(literal) || !rest.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    path_rest_glob(rest).map(|_| ()).ok_or_else(bad)
}

/// The matcher of a path template's `REST`; `None` when it is no glob.
/// Empty matches only the empty rest.
pub fn path_rest_glob(rest: &str) -> Option<globset::GlobMatcher> {
    globset::GlobBuilder::new(rest)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .ok()
        .map(|g| g.compile_matcher())
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_defaults_to_bearer() {
        assert_eq!(
            Injection::header_from_spec("Authorization").unwrap(),
            Injection::Header {
                name: "authorization".into(),
                template: "Bearer {value}".into()
            }
        );
        assert_eq!(
            Injection::header_from_spec("x-api-key").unwrap(),
            Injection::Header {
                name: "x-api-key".into(),
                template: "{value}".into()
            }
        );
        assert_eq!(
            Injection::header_from_spec("authorization=token {value}").unwrap(),
            Injection::Header {
                name: "authorization".into(),
                template: "token {value}".into()
            }
        );
    }

    #[test]
    fn refuses_bad_headers_and_templates() {
        assert!(matches!(
            Injection::header_from_spec("bad header"),
            Err(InjectionError::BadHeaderName(_))
        ));
        assert!(matches!(
            Injection::header_from_spec("Host"),
            Err(InjectionError::ReservedHeader(_))
        ));
        assert_eq!(
            Injection::header_from_spec("x=no placeholder"),
            Err(InjectionError::BadTemplate)
        );
        assert_eq!(
            Injection::header_from_spec("x={value}{value}"),
            Err(InjectionError::BadTemplate)
        );
        assert_eq!(
            Injection::header_from_spec("x={value}\r\n"),
            Err(InjectionError::BadTemplateCharacter)
        );
    }

    #[test]
    fn aws_target_is_region_slash_service() {
        assert!(Injection::aws_from_spec("us-east-1/s3").is_ok());
        for bad in ["us-east-1", "/s3", "us-east-1/", "US/s3", "a/b/c"] {
            assert!(Injection::aws_from_spec(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn github_app_grants_have_an_installation_url_and_no_scopes() {
        let check = |url: &str, app: &str, scopes: &[&str]| {
            OAuth2Grant::new(
                GrantType::GithubApp,
                url.into(),
                app.into(),
                scopes.iter().map(|s| s.to_string()).collect(),
            )
            .validate()
        };
        let url = OAuth2Grant::github_token_url("https://api.github.com/", "42");
        assert_eq!(
            url,
            "https://api.github.com/app/installations/42/access_tokens"
        );
        assert!(check(&url, "123456", &[]).is_ok());
        assert!(check(&url, "Iv1.8a61f9b3a7aba766", &[]).is_ok());
        assert!(check(&url, "12 3", &[]).is_err());
        assert!(check(&url, "123456", &["repo"]).is_err());
        let bad = "https://api.github.com/app/installations/4x/access_tokens";
        assert!(check(bad, "123456", &[]).is_err());
        assert!(check(&url.replace("https", "http"), "123456", &[]).is_err());
    }

    #[test]
    fn path_templates_need_value_after_literal_text() {
        for ok in [
            "/bot{value}/**",
            "/file/bot{value}/*",
            "/k/{value}",
            "/x{value}.json",
        ] {
            let i = Injection::Path {
                template: ok.into(),
            };
            assert_eq!(i.validate(), Ok(()), "{ok}");
        }
        for bad in [
            "/bot/**",
            "bot{value}/**",
            "/*/{value}",
            "/a{value}{value}",
            "/%62ot{value}",
            "/bot{value}/[",
            "/bot {value}",
            "",
        ] {
            let i = Injection::Path {
                template: bad.into(),
            };
            assert!(
                matches!(i.validate(), Err(InjectionError::BadPathTemplate(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn basic_templates_hold_value_once() {
        for ok in ["api:{value}", "{value}:", "{value}:X", "{value}"] {
            let i = Injection::Basic {
                template: ok.into(),
            };
            assert_eq!(i.validate(), Ok(()), "{ok}");
        }
        for bad in ["user:pass", "{value}:{value}", "u:\n{value}"] {
            let i = Injection::Basic {
                template: bad.into(),
            };
            assert_eq!(i.validate(), Err(InjectionError::BadBasicTemplate), "{bad}");
        }
    }

    #[test]
    fn query_param_is_checked() {
        assert!(
            Injection::Query {
                param: "api_key".into()
            }
            .validate()
            .is_ok()
        );
        assert!(
            Injection::Query {
                param: "a&b".into()
            }
            .validate()
            .is_err()
        );
        assert!(
            Injection::Query {
                param: String::new()
            }
            .validate()
            .is_err()
        );
    }
}
