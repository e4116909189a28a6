//! Credential injection: the one place a secret's plaintext is handled.
//!
//! A secret applies to a request when the agent is granted it and the
//! request's host and path match the secret's pattern and glob, over TLS.
//! Then:
//! 1. Every `airlock:NAME` placeholder the request carries must sit in the
//!    one position its secret declares: its header (any part of that
//!    header's value), the value of its query parameter, or, for the
//!    kinds the agent places ([`Injection::is_placed_by_agent`]), where
//!    its path template puts it ([`super::inject_path`]) or in a JSON or
//!    form body ([`super::inject_body`], judged as the body streams). A
//!    header or query position is overwritten by the injection anyway, so
//!    there the placeholder is not substituted as text: the agent's value
//!    is replaced by the injected one. A placeholder anywhere else is an
//!    exfiltration attempt (an API can echo another header, a query value
//!    or S3 metadata back to the agent): the request is refused and
//!    nothing is opened. That covers another header or query parameter, a
//!    parameter's name, the URL path (but a path secret's own spot), the
//!    body (but a body secret's), another secret's position, any position
//!    for an AWS SigV4 secret (its plaintext is the whole key pair;
//!    Airlock signs with it and it never appears in a request), and a
//!    secret that does not apply (another host or path, not granted,
//!    plain HTTP).
//! 2. Each applying secret is injected as configured: a header is set
//!    (replacing the agent's; HTTP Basic as `Basic base64(USER:VALUE)`), a
//!    query parameter replaced (never a second `key=`), the path's
//!    placeholder replaced by the value percent-encoded as segment data,
//!    or the request signed with AWS SigV4. A body secret's value is
//!    copied for the body's substituter when the body is JSON or a form.
//!
//! Bodies of other types (and compressed ones) are never read: they
//! stream through untouched, a placeholder in them left as text.
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
use super::scrub::Scrubber;
use super::substitute::Encoding;
use super::{inject_path, placeholder};
use crate::credentials::AccessToken;
use crate::model::Injection;
use crate::snapshot::Snapshot;
use crate::store::agents::AgentRecord;
use crate::store::secrets::SecretRecord;
use crate::vault::{Plaintext, Vault};
use zeroize::Zeroizing;

/// Why a request may not have its credentials.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// A placeholder that may not be resolved here: refuse, audit as
    /// exfiltration. `ungranted`: because the agent is not granted the
    /// secret it names, which an access request can answer with a grant.
    #[error("placeholder airlock:{name} is not allowed here: {reason}")]
    Exfiltration {
        name: String,
        reason: String,
        ungranted: bool,
    },
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
    /// With a JSON or form body: how to read it, and the body secrets'
    /// values to put where their placeholders are ([`super::inject_body`]).
    pub body: Option<BodyValues>,
}

/// The values a request body may have substituted: copies of their own,
/// zeroizing, since the body outlives the injection step.
#[derive(Debug)]
pub struct BodyValues {
    pub encoding: Encoding,
    pub values: Vec<(String, Plaintext)>,
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
            agent.grants.contains(s.name())
                && s.host().matches(dest.host, dest.port)
                && s.path().matches(path)
        })
        .collect()
}

/// Where in a request a placeholder was found.
#[derive(Debug, Clone, Copy)]
pub(super) enum Position<'a> {
    /// In the URL path; with where it is in the canonical path when its
    /// raw spelling was found ([`inject_path::find`]).
    Path(Option<(&'a str, usize, usize)>),
    QueryName,
    /// The value of the query parameter with this (decoded) name.
    QueryValue(&'a str),
    Header(&'a HeaderName),
    /// In a JSON or form request body, or a WebSocket text message.
    Body,
}

/// Every placeholder the request carries, each with its position: the
/// first one its secret does not allow there refuses the request.
fn check_placeholders(
    parts: &Parts,
    mut judge: impl FnMut(&str, Position<'_>) -> Result<(), InjectError>,
) -> Result<(), InjectError> {
    // The server sees the path decoded, so `%61irlock%3A...` is one too.
    let raw_path = parts.uri.path();
    let path = percent_decode_str(raw_path).decode_utf8_lossy();
    let found = placeholder::find_all(&path);
    if !found.is_empty() {
        // Where each sits in the path as forwarded, for a path secret's
        // template; a path whose raw spelling reads otherwise (not
        // canonical) places none.
        let raw = inject_path::find(raw_path);
        let same =
            raw.len() == found.len() && raw.iter().zip(&found).all(|(r, f)| r.name == f.name);
        for (i, f) in found.iter().enumerate() {
            let at = raw
                .get(i)
                .filter(|_| same)
                .map(|r| (raw_path, r.span.start, r.span.end));
            judge(f.name, Position::Path(at))?;
        }
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
pub(super) fn misplaced(secret: &SecretRecord, at: Position<'_>) -> Option<String> {
    let placed = match (secret.injection(), at) {
        (Injection::Header { name, .. }, Position::Header(h)) => h.as_str() == name.as_str(),
        (Injection::OAuth2(_) | Injection::Basic { .. }, Position::Header(h)) => {
            h == http::header::AUTHORIZATION
        }
        (Injection::Path { template }, Position::Path(Some((path, start, end)))) => {
            inject_path::placed(template, path, &(start..end))
        }
        (Injection::Body, Position::Body) => true,
        (Injection::Query { param }, Position::QueryValue(k)) => k == param.as_str(),
        _ => false,
    };
    if placed {
        return None;
    }
    Some(match secret.injection() {
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
        Injection::Path { template } => {
            format!("it may be used only in the URL path, where its template {template} puts it")
        }
        Injection::Basic { .. } => "it is an HTTP Basic secret: it goes only in the \
                                    Authorization header, which Airlock sets for you"
            .into(),
        Injection::Body => "it may be used only in a JSON or form-encoded request body or a \
                            WebSocket text message"
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
            let value = match secret.injection() {
                Injection::OAuth2(_) => self.tokens.plaintext(secret)?,
                _ => secret.open(self.vault).map_err(|e| InjectError::Vault {
                    name: secret.name().to_string(),
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
            name: secret.name().to_string(),
            reason: "its value is not UTF-8 text".into(),
        })
    }

    /// Step 4: the names for the audit, and what went out, to take out of
    /// the response head. A SigV4 pair's secret key never leaves: only
    /// the access key id of the one that signed is scrubbed.
    fn into_injected(self, signed: Option<Signed>) -> Injected<'s> {
        // A path or body secret is used only where the agent placed it:
        // it is named when it was opened for that.
        let secrets = self
            .secrets
            .iter()
            .zip(&self.opened)
            .filter(|(s, opened)| !s.injection().is_placed_by_agent() || opened.is_some())
            .map(|(s, _)| s.name().as_str().to_owned())
            .collect();
        let mut injected = Injected {
            secrets,
            scrub: Scrubber::default(),
            oauth2: self.tokens.sent(self.secrets),
            body: None,
        };
        let opened = self.secrets.iter().copied().zip(self.opened);
        for (index, (secret, plain)) in opened.enumerate() {
            let Some(plain) = plain else { continue };
            // What went out is the encoded pair: that is what an echo
            // of the header would show.
            if let Injection::Basic { template } = secret.injection() {
                let encoded = basic_credentials(template, plain.expose());
                let len = encoded.len();
                let mut encoded = encoded;
                let encoded = Plaintext::new(std::mem::take(&mut *encoded));
                injected.scrub.add(secret.name(), encoded, 0..len);
            }
            let sent = match (secret.injection(), &signed) {
                (Injection::AwsSigv4 { .. }, Some(s)) if s.index == index => 0..s.akid_len,
                (Injection::AwsSigv4 { .. }, _) => continue,
                _ => 0..plain.expose().len(),
            };
            injected.scrub.add(secret.name(), plain, sent);
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
    // A WebSocket handshake has no body: its text messages are read.
    let body = match super::headers::wants_websocket(&parts.headers) {
        true => Some(Encoding::Text),
        false => body_encoding(&parts.headers),
    };
    let mut body_values = Vec::new();
    for (index, secret) in secrets.iter().copied().enumerate() {
        match secret.injection() {
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
            Injection::Basic { template } => {
                let encoded = basic_credentials(template, values.get(index)?);
                set_header(parts, secret, "authorization", "Basic {value}", &encoded)?;
            }
            Injection::Path { .. } => set_path(parts, secret, &mut values, index)?,
            Injection::Body => {
                if body.is_some() {
                    let value = Plaintext::new(values.get(index)?.to_vec());
                    body_values.push((secret.name().to_string(), value));
                }
            }
        }
    }
    let signed = aws
        .map(|aws| sign_aws(parts, dest, &mut values, aws))
        .transpose()?;
    let mut injected = values.into_injected(signed);
    injected.body = body.map(|encoding| BodyValues {
        encoding,
        values: body_values,
    });
    Ok(injected)
}

/// How a request body is read for placeholders: JSON (`application/json`
/// or any `application/...+json`) and forms; `None` for every other type,
/// and for a body with a `Content-Encoding` (compressed: its text cannot
/// be read on the way), which stream through untouched.
pub fn body_encoding(headers: &http::HeaderMap) -> Option<Encoding> {
    let coded = headers
        .get_all(http::header::CONTENT_ENCODING)
        .iter()
        .any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if coded {
        return None;
    }
    let ct = headers.get(http::header::CONTENT_TYPE)?.to_str().ok()?;
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-www-form-urlencoded" => Some(Encoding::Form),
        "application/json" => Some(Encoding::Json),
        m if m.starts_with("application/") && m.ends_with("+json") => Some(Encoding::Json),
        _ => None,
    }
}

/// `base64(template with {value} filled)`, in zeroizing buffers only.
fn basic_credentials(template: &str, value: &[u8]) -> Zeroizing<Vec<u8>> {
    use base64::Engine as _;
    let (before, after) = template.split_once("{value}").unwrap_or((template, ""));
    let mut filled = Zeroizing::new(Vec::with_capacity(before.len() + value.len() + after.len()));
    filled.extend_from_slice(before.as_bytes());
    filled.extend_from_slice(value);
    filled.extend_from_slice(after.as_bytes());
    let engine = &base64::engine::general_purpose::STANDARD;
    let mut encoded = Zeroizing::new(vec![
        0;
        base64::encoded_len(filled.len(), true).unwrap_or(0)
    ]);
    let n = engine
        .encode_slice(&filled[..], &mut encoded[..])
        .unwrap_or(0);
    encoded.truncate(n);
    encoded
}

/// Step 2 for a path secret: its placeholder (already judged placed)
/// replaced by the value; a request without one gets nothing.
fn set_path(
    parts: &mut Parts,
    secret: &SecretRecord,
    values: &mut Values<'_, '_>,
    index: usize,
) -> Result<(), InjectError> {
    let path = parts.uri.path();
    let Some(span) = inject_path::find(path)
        .into_iter()
        .find(|f| f.name == secret.name().as_str())
        .map(|f| f.span)
    else {
        return Ok(());
    };
    let pq = inject_path::substituted(path, parts.uri.query(), &span, values.text(index)?)?;
    set_path_and_query(&mut parts.uri, pq)
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
            // Only where the refusal says "not granted" (the position
            // refusals come first and a grant would not answer them).
            ungranted: !matches!(at, Position::Path(None) | Position::QueryName)
                && not_granted(scope.snap, scope.agent, name),
        }),
    })
}

impl Scope<'_, '_> {
    /// Why the placeholder `name` may not sit at `at`; `None` when it may.
    /// Parameter names are never a secret's position, so no secret needs
    /// looking up for them.
    fn misplacement(&self, name: &str, at: Position<'_>) -> Option<String> {
        match at {
            Position::Path(None) => Some(
                "placeholders in the URL path are resolved only for a path-template secret, \
                 spelled airlock:NAME or airlock%3ANAME"
                    .into(),
            ),
            Position::QueryName => Some(
                "placeholders are resolved only in their secret's header or query parameter, \
                 not in query parameter names"
                    .into(),
            ),
            _ => match self.applying.iter().find(|s| s.name().as_str() == name) {
                Some(secret) => misplaced(secret, at),
                None => Some(self.why_not(name)),
            },
        }
    }

    /// The reason a placeholder cannot be resolved, for the agent and the
    /// audit.
    fn why_not(&self, name: &str) -> String {
        why_not(self.snap, self.agent, self.dest, self.applying, name)
    }
}

/// Whether `name` is a secret that `agent` is not granted: the one reason
/// for a refused placeholder that a grant would answer.
pub(super) fn not_granted(snap: &Snapshot, agent: &AgentRecord, name: &str) -> bool {
    snap.secrets
        .iter()
        .any(|s| s.name().as_str() == name && !agent.grants.contains(s.name()))
}

/// Why the placeholder `name` does not resolve for this request at all
/// (no such secret, not granted, plain HTTP, another host or path).
pub(super) fn why_not(
    snap: &Snapshot,
    agent: &AgentRecord,
    dest: &Destination<'_>,
    applying: &[&SecretRecord],
    name: &str,
) -> String {
    let Some(secret) = snap.secrets.iter().find(|s| s.name().as_str() == name) else {
        return "no secret has that name".into();
    };
    if not_granted(snap, agent, name) {
        return format!("agent {} is not granted it", agent.name);
    }
    if !dest.tls {
        return "secrets are never sent over plain HTTP".into();
    }
    if !secret.host().matches(dest.host, dest.port) {
        return format!("it belongs to {}, not {}", secret.host(), dest.host);
    }
    if applying.iter().all(|s| s.name().as_str() != name) {
        return format!("it applies only to paths matching {}", secret.path());
    }
    "it cannot be used here".into()
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
        name: secret.name().to_string(),
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
        name: record.name().to_string(),
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
