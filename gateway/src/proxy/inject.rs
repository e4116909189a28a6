//! Credential injection: the one place a secret's plaintext is handled.
//!
//! A secret applies to a request when the agent is granted it and the
//! request's host and path match the secret's pattern and glob, over TLS.
//! Then:
//! 1. Every `airlock:NAME` placeholder the request carries must sit in the
//!    one position its secret declares: its header (any part of that
//!    header's value), or the value of its query parameter. Those are the
//!    positions the configured injection overwrites, so a placeholder is
//!    never substituted as text: the agent's value is simply replaced by
//!    the injected one. A placeholder anywhere else is an exfiltration
//!    attempt (an API can echo another header, a query value or S3
//!    metadata back to the agent): the request is refused and nothing is
//!    opened. That covers another header or query parameter, a parameter's
//!    name, the URL path, another secret's position, any position for an
//!    AWS SigV4 secret (its plaintext is the whole key pair; Airlock signs
//!    with it and it never appears in a request), and a secret that does
//!    not apply (another host or path, not granted, plain HTTP).
//! 2. Each applying secret is injected as configured: a header is set
//!    (replacing the agent's), a query parameter replaced (never a second
//!    `key=`), or the request signed with AWS SigV4.
//!
//! Request bodies are never read: they stream through untouched.
//! Plaintext is opened from the vault per request into zeroizing buffers
//! and copied only into its destination (the outgoing header value or
//! URL, marked sensitive so HTTP/2 never indexes a header); the opened
//! buffers then move into the [`Scrubber`] that takes the injected values
//! out of the response head (see [`super::scrub`]) and are zeroized when
//! it is dropped.

use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::inject_oauth2::Tokens;
use super::placeholder;
use super::scrub::Scrubber;
use crate::credentials::AccessToken;
use crate::model::Injection;
use crate::snapshot::Snapshot;
use crate::store::agents::AgentRecord;
use crate::store::secrets::SecretRecord;
use crate::vault::{Plaintext, Vault};

/// Why a request may not have its credentials.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A placeholder that may not be resolved here: refuse, audit as exfiltration.
    #[error("placeholder airlock:{name} is not allowed here: {reason}")]
    Exfiltration { name: String, reason: String },
    #[error("secret {name} cannot be used: {reason}")]
    Vault { name: String, reason: String },
    #[error("signing the request for AWS failed: {0}")]
    Sign(String),
}

/// Where the request goes, as far as injection cares.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub host: &'a str,
    pub port: u16,
    /// False for plain HTTP: no secret is ever sent in the clear.
    pub tls: bool,
}

/// What was injected: the names for the audit trail, the values for the
/// response head's scrubbing, the OAuth2 tokens sent (a 401 retires them).
#[derive(Debug, Default)]
pub struct Injected<'s> {
    pub secrets: Vec<String>,
    pub scrub: Scrubber<'s>,
    pub oauth2: Vec<(&'s SecretRecord, AccessToken)>,
}

/// Characters left as they are in a query value we write.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// The secrets that apply to this request, in name order.
pub fn applicable<'s>(
    snap: &'s Snapshot,
    agent: &AgentRecord,
    dest: &Destination<'_>,
    path: &str,
) -> Vec<&'s SecretRecord> {
    if !dest.tls {
        return Vec::new();
    }
    snap.secrets
        .iter()
        .filter(|s| {
            agent.grants.contains(&s.name)
                && s.host.matches(dest.host, dest.port)
                && s.path.matches(path)
        })
        .collect()
}

/// Where in a request a placeholder was found.
#[derive(Debug, Clone, Copy)]
enum Position<'a> {
    Path,
    QueryName,
    /// The value of the query parameter with this (decoded) name.
    QueryValue(&'a str),
    Header(&'a HeaderName),
}

/// Every placeholder the request carries, each with its position: the
/// first one its secret does not allow there refuses the request.
fn check_placeholders(
    parts: &Parts,
    mut judge: impl FnMut(&str, Position<'_>) -> Result<(), InjectError>,
) -> Result<(), InjectError> {
    // The server sees the path decoded, so `%61irlock%3A...` is one too.
    let path = percent_decode_str(parts.uri.path()).decode_utf8_lossy();
    for f in placeholder::find_all(&path) {
        judge(f.name, Position::Path)?;
    }
    for (name, value) in &parts.headers {
        if placeholder::may_contain(value.as_bytes()) {
            for f in placeholder::find_all(&String::from_utf8_lossy(value.as_bytes())) {
                judge(f.name, Position::Header(name))?;
            }
        }
    }
    let Some(query) = parts
        .uri
        .query()
        .filter(|q| placeholder::may_contain_encoded(q))
    else {
        return Ok(());
    };
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode_str(k).decode_utf8_lossy();
        for f in placeholder::find_all(&key) {
            judge(f.name, Position::QueryName)?;
        }
        for f in placeholder::find_all(&percent_decode_str(v).decode_utf8_lossy()) {
            judge(f.name, Position::QueryValue(&key))?;
        }
    }
    Ok(())
}

/// Where `secret`'s placeholder may go, for the agent and the audit; `None`
/// when `at` is that position.
fn misplaced(secret: &SecretRecord, at: Position<'_>) -> Option<String> {
    let placed = match (&secret.injection, at) {
        (Injection::Header { name, .. }, Position::Header(h)) => h.as_str() == name.as_str(),
        (Injection::OAuth2(_), Position::Header(h)) => h == http::header::AUTHORIZATION,
        (Injection::Query { param }, Position::QueryValue(k)) => k == param.as_str(),
        _ => false,
    };
    if placed {
        return None;
    }
    Some(match &secret.injection {
        Injection::Header { name, .. } => {
            format!("it may be used only in the {name} header, which Airlock sets for you")
        }
        Injection::Query { param } => format!(
            "it may be used only as the value of query parameter {param}, which Airlock sets \
             for you"
        ),
        Injection::AwsSigv4 { .. } => "it is an AWS SigV4 key pair, which is never placed in \
                                       a request: Airlock signs the request itself (send it \
                                       unsigned, or signed with any dummy key)"
            .into(),
        Injection::OAuth2(_) => "it is an OAuth2 secret: its access token goes only in the \
                                 Authorization header, which Airlock sets for you"
            .into(),
    })
}

/// The opened values, each decrypted at most once per request. An
/// OAuth2 secret's value here is its access token (from [`Tokens`]),
/// never its client secret.
struct Values<'s, 'v> {
    vault: &'v Vault,
    secrets: &'v [&'s SecretRecord],
    tokens: &'v Tokens,
    opened: Vec<Option<Plaintext>>,
}

impl<'s> Values<'s, '_> {
    fn get(&mut self, index: usize) -> Result<&[u8], InjectError> {
        let secret = self.secrets[index];
        let slot = &mut self.opened[index];
        if slot.is_none() {
            let value = match &secret.injection {
                Injection::OAuth2(_) => self.tokens.plaintext(secret)?,
                _ => secret.open(self.vault).map_err(|e| InjectError::Vault {
                    name: secret.name.to_string(),
                    reason: e.to_string(),
                })?,
            };
            *slot = Some(value);
        }
        Ok(slot.as_ref().map_or(&[][..], Plaintext::expose))
    }

    fn text(&mut self, index: usize) -> Result<&str, InjectError> {
        let secret = self.secrets[index];
        std::str::from_utf8(self.get(index)?).map_err(|_| InjectError::Vault {
            name: secret.name.to_string(),
            reason: "its value is not UTF-8 text".into(),
        })
    }

    /// Step 4: the names for the audit, and what went out, to take out of
    /// the response head. A SigV4 pair's secret key never leaves: only
    /// the access key id of the one that signed is scrubbed.
    fn into_injected(self, signed: Option<Signed>) -> Injected<'s> {
        let mut injected = Injected {
            secrets: self.secrets.iter().map(|s| s.name.to_string()).collect(),
            scrub: Scrubber::default(),
            oauth2: self.tokens.sent(self.secrets),
        };
        let opened = self.secrets.iter().copied().zip(self.opened);
        for (index, (secret, plain)) in opened.enumerate() {
            let Some(plain) = plain else { continue };
            let sent = match (&secret.injection, &signed) {
                (Injection::AwsSigv4 { .. }, Some(s)) if s.index == index => 0..s.akid_len,
                (Injection::AwsSigv4 { .. }, _) => continue,
                _ => 0..plain.expose().len(),
            };
            injected.scrub.add(&secret.name, plain, sent);
        }
        injected
    }
}

/// Checks the request's placeholders and injects every applying secret
/// into `parts`: [`check`] then [`Applying::apply`], for a request that
/// needs no OAuth2 token (one that does fails here).
pub fn inject<'s>(
    parts: &mut Parts,
    dest: &Destination<'_>,
    agent: &AgentRecord,
    snap: &'s Snapshot,
    vault: &Vault,
) -> Result<Injected<'s>, InjectError> {
    check(parts, dest, agent, snap)?.apply(parts, dest, vault, &Tokens::default())
}

/// The secrets that apply to a request whose placeholders all sit where
/// they may: what [`Applying::apply`] injects, once the OAuth2 tokens
/// among them are had ([`super::inject_oauth2::obtain`]).
#[derive(Debug)]
pub struct Applying<'s> {
    pub secrets: Vec<&'s SecretRecord>,
}

/// Step 1 ([`refuse_misplaced`]) and the secrets that apply: nothing is
/// opened yet, and an OAuth2 token is requested only after this passed.
pub fn check<'s>(
    parts: &Parts,
    dest: &Destination<'_>,
    agent: &AgentRecord,
    snap: &'s Snapshot,
) -> Result<Applying<'s>, InjectError> {
    let secrets = applicable(snap, agent, dest, parts.uri.path());
    let scope = Scope {
        snap,
        agent,
        dest,
        applying: &secrets,
    };
    refuse_misplaced(parts, &scope)?;
    Ok(Applying { secrets })
}

impl<'s> Applying<'s> {
    /// Steps 2 to 4: every applying secret injected into `parts`.
    pub fn apply(
        self,
        parts: &mut Parts,
        dest: &Destination<'_>,
        vault: &Vault,
        tokens: &Tokens,
    ) -> Result<Injected<'s>, InjectError> {
        apply(parts, dest, vault, tokens, &self.secrets)
    }
}

fn apply<'s>(
    parts: &mut Parts,
    dest: &Destination<'_>,
    vault: &Vault,
    tokens: &Tokens,
    secrets: &[&'s SecretRecord],
) -> Result<Injected<'s>, InjectError> {
    let mut values = Values {
        vault,
        tokens,
        opened: secrets.iter().map(|_| None).collect(),
        secrets,
    };
    let mut aws = None;
    for (index, secret) in secrets.iter().copied().enumerate() {
        match &secret.injection {
            Injection::Header { name, template } => {
                set_header(parts, secret, name, template, values.get(index)?)?;
            }
            Injection::Query { param } => set_query(parts, param, values.text(index)?)?,
            Injection::OAuth2(_) => {
                set_header(
                    parts,
                    secret,
                    "authorization",
                    "Bearer {value}",
                    values.get(index)?,
                )?;
            }
            Injection::AwsSigv4 { region, service } => {
                aws.get_or_insert(AwsSigning {
                    index,
                    region,
                    service,
                });
            }
        }
    }
    let signed = aws
        .map(|aws| sign_aws(parts, dest, &mut values, aws))
        .transpose()?;
    Ok(values.into_injected(signed))
}

/// What the placeholder check needs to know about the request to say why
/// a placeholder is refused.
struct Scope<'a, 's> {
    snap: &'s Snapshot,
    agent: &'a AgentRecord,
    dest: &'a Destination<'a>,
    /// The secrets that apply ([`applicable`]): only theirs may be placed.
    applying: &'a [&'s SecretRecord],
}

/// Step 1, before anything is opened: a placeholder outside its secret's
/// own position is an exfiltration attempt, so the request is refused
/// with no plaintext decrypted.
fn refuse_misplaced(parts: &Parts, scope: &Scope<'_, '_>) -> Result<(), InjectError> {
    check_placeholders(parts, |name, at| match scope.misplacement(name, at) {
        None => Ok(()),
        Some(reason) => Err(InjectError::Exfiltration {
            name: name.to_owned(),
            reason,
        }),
    })
}

impl Scope<'_, '_> {
    /// Why the placeholder `name` may not sit at `at`; `None` when it may.
    /// The path and parameter names are never a secret's position, so no
    /// secret needs looking up for them.
    fn misplacement(&self, name: &str, at: Position<'_>) -> Option<String> {
        match at {
            Position::Path => Some(
                "placeholders are resolved only in their secret's header or query parameter, \
                 not in the URL path"
                    .into(),
            ),
            Position::QueryName => Some(
                "placeholders are resolved only in their secret's header or query parameter, \
                 not in query parameter names"
                    .into(),
            ),
            _ => match self.applying.iter().find(|s| s.name.as_str() == name) {
                Some(secret) => misplaced(secret, at),
                None => Some(self.why_not(name)),
            },
        }
    }

    /// The reason a placeholder cannot be resolved, for the agent and the
    /// audit.
    fn why_not(&self, name: &str) -> String {
        let Some(secret) = self.snap.secrets.iter().find(|s| s.name.as_str() == name) else {
            return "no secret has that name".into();
        };
        if !self.agent.grants.contains(&secret.name) {
            return format!("agent {} is not granted it", self.agent.name);
        }
        if !self.dest.tls {
            return "secrets are never sent over plain HTTP".into();
        }
        if !secret.host.matches(self.dest.host, self.dest.port) {
            return format!("it belongs to {}, not {}", secret.host, self.dest.host);
        }
        if self.applying.iter().all(|s| s.name.as_str() != name) {
            return format!("it applies only to paths matching {}", secret.path);
        }
        "it cannot be used here".into()
    }
}

/// Step 2 for a header secret: set (not append) the header, so whatever
/// the agent sent there, placeholder or not, is replaced.
fn set_header(
    parts: &mut Parts,
    secret: &SecretRecord,
    name: &str,
    template: &str,
    value: &[u8],
) -> Result<(), InjectError> {
    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| InjectError::Vault {
        name: secret.name.to_string(),
        reason: format!("its header name {name:?} is not valid"),
    })?;
    parts.headers.insert(header, filled(template, value)?);
    Ok(())
}

/// Step 2 for a query secret: replace the parameter (never a second
/// `key=`, which servers resolve differently).
fn set_query(parts: &mut Parts, param: &str, value: &str) -> Result<(), InjectError> {
    let pq = with_query_param(parts.uri.path(), parts.uri.query(), param, value)?;
    set_path_and_query(&mut parts.uri, pq)
}

/// The AWS SigV4 secret to sign with: the first that applies, if any.
struct AwsSigning<'s> {
    /// Its place in [`Values`].
    index: usize,
    region: &'s str,
    service: &'s str,
}

/// What SigV4 put on the wire: only the access key id of the pair.
struct Signed {
    /// The secret's place in [`Values`].
    index: usize,
    /// How many leading bytes of its value (`AKID:SECRET`) went out.
    akid_len: usize,
}

/// Step 3, after the header and query injections: the signature covers
/// the request as it will be sent, so signing comes last.
fn sign_aws(
    parts: &mut Parts,
    dest: &Destination<'_>,
    values: &mut Values<'_, '_>,
    aws: AwsSigning<'_>,
) -> Result<Signed, InjectError> {
    let record = values.secrets[aws.index];
    let creds = values.text(aws.index)?;
    let (akid, secret) = creds.split_once(':').ok_or_else(|| InjectError::Vault {
        name: record.name.to_string(),
        reason: "its value is not ACCESS_KEY_ID:SECRET_ACCESS_KEY".into(),
    })?;
    let signed = Signed {
        index: aws.index,
        akid_len: akid.len(),
    };
    super::sigv4::sign(
        parts,
        dest,
        aws.region,
        aws.service,
        akid,
        secret,
        SystemTime::now(),
    )?;
    Ok(signed)
}

/// `template` with its `{value}` replaced by `value`, written straight
/// into the header value's own buffer: no intermediate copy of the
/// plaintext is left behind in freed memory.
fn filled(template: &str, value: &[u8]) -> Result<HeaderValue, InjectError> {
    let (before, after) = template.split_once("{value}").unwrap_or((template, ""));
    let mut buf = Vec::with_capacity(before.len() + value.len() + after.len());
    buf.extend_from_slice(before.as_bytes());
    buf.extend_from_slice(value);
    buf.extend_from_slice(after.as_bytes());
    let mut v = HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
        .map_err(|_| InjectError::Sign("a resolved value is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `path?query` with `param` set to `value`: every existing `param=`
/// removed, one appended. Like [`filled`], written straight into the
/// buffer the URL keeps (sized up front, so it never reallocates and
/// leaves no copy of the value in freed memory).
fn with_query_param(
    path: &str,
    query: Option<&str>,
    param: &str,
    value: &str,
) -> Result<PathAndQuery, InjectError> {
    let kept = || {
        query
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                percent_decode_str(key).decode_utf8_lossy() != param
            })
    };
    let encoded = || utf8_percent_encode(value, QUERY_VALUE);
    let len = path.len()
        + kept().map(|p| p.len() + 1).sum::<usize>()
        + 1
        + param.len()
        + 1
        + encoded().map(str::len).sum::<usize>();
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(path.as_bytes());
    let mut sep = b'?';
    for pair in kept() {
        buf.push(sep);
        buf.extend_from_slice(pair.as_bytes());
        sep = b'&';
    }
    buf.push(sep);
    buf.extend_from_slice(param.as_bytes());
    buf.push(b'=');
    for chunk in encoded() {
        buf.extend_from_slice(chunk.as_bytes());
    }
    PathAndQuery::from_maybe_shared(bytes::Bytes::from(buf))
        .map_err(|_| InjectError::Sign("the rebuilt URL is invalid".into()))
}

fn set_path_and_query(uri: &mut Uri, pq: PathAndQuery) -> Result<(), InjectError> {
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(pq);
    *uri = Uri::from_parts(parts)
        .map_err(|_| InjectError::Sign("the rebuilt URL is invalid".into()))?;
    Ok(())
}

#[cfg(test)]
#[path = "inject_tests.rs"]
mod tests;
