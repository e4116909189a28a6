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

use super::placeholder;
use super::scrub::Scrubber;
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
/// response head's scrubbing.
#[derive(Debug, Default)]
pub struct Injected<'s> {
    pub secrets: Vec<String>,
    pub scrub: Scrubber<'s>,
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
    })
}

/// The opened values, each decrypted at most once per request.
struct Values<'s, 'v> {
    vault: &'v Vault,
    secrets: Vec<&'s SecretRecord>,
    opened: Vec<Option<Plaintext>>,
}

impl Values<'_, '_> {
    fn get(&mut self, index: usize) -> Result<&[u8], InjectError> {
        let secret = self.secrets[index];
        let slot = &mut self.opened[index];
        if slot.is_none() {
            *slot = Some(secret.open(self.vault).map_err(|e| InjectError::Vault {
                name: secret.name.to_string(),
                reason: e.to_string(),
            })?);
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
}

/// Checks the request's placeholders and injects every applying secret
/// into `parts`.
pub fn inject<'s>(
    parts: &mut Parts,
    dest: &Destination<'_>,
    agent: &AgentRecord,
    snap: &'s Snapshot,
    vault: &Vault,
) -> Result<Injected<'s>, InjectError> {
    let secrets = applicable(snap, agent, dest, parts.uri.path());

    // 1. Placeholders, before anything is opened.
    check_placeholders(parts, |name, at| {
        let reason = match at {
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
            _ => match secrets.iter().find(|s| s.name.as_str() == name) {
                Some(secret) => misplaced(secret, at),
                None => Some(why_not(name, snap, agent, dest, &secrets)),
            },
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(InjectError::Exfiltration {
                name: name.to_owned(),
                reason,
            }),
        }
    })?;

    // 2. Configured injections; SigV4 last, over the final request.
    let mut values = Values {
        vault,
        opened: secrets.iter().map(|_| None).collect(),
        secrets,
    };
    let mut injected = Injected::default();
    let mut aws = None;
    for index in 0..values.secrets.len() {
        let secret = values.secrets[index];
        injected.secrets.push(secret.name.to_string());
        match &secret.injection {
            Injection::Header { name, template } => {
                let header =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|_| InjectError::Vault {
                        name: secret.name.to_string(),
                        reason: format!("its header name {name:?} is not valid"),
                    })?;
                let value = filled(template, values.get(index)?)?;
                parts.headers.insert(header, value);
            }
            Injection::Query { param } => {
                let value = values.text(index)?;
                let pq = with_query_param(parts.uri.path(), parts.uri.query(), param, value)?;
                set_path_and_query(&mut parts.uri, pq)?;
            }
            Injection::AwsSigv4 { region, service } => {
                aws.get_or_insert((index, region.as_str(), service.as_str()));
            }
        }
    }
    let mut akid_len = None;
    if let Some((index, region, service)) = aws {
        let record = values.secrets[index];
        let creds = values.text(index)?;
        let (akid, secret) = creds.split_once(':').ok_or_else(|| InjectError::Vault {
            name: record.name.to_string(),
            reason: "its value is not ACCESS_KEY_ID:SECRET_ACCESS_KEY".into(),
        })?;
        akid_len = Some((index, akid.len()));
        super::sigv4::sign(
            parts,
            dest,
            region,
            service,
            akid,
            secret,
            SystemTime::now(),
        )?;
    }

    // 3. What went out, to take out of the response head. Only the access
    // key id of a SigV4 pair is ever on the wire.
    for (index, plain) in values.opened.into_iter().enumerate() {
        let Some(plain) = plain else { continue };
        let secret: &'s SecretRecord = values.secrets[index];
        let sent = match (&secret.injection, akid_len) {
            (Injection::AwsSigv4 { .. }, Some((i, len))) if i == index => 0..len,
            (Injection::AwsSigv4 { .. }, _) => continue,
            _ => 0..plain.expose().len(),
        };
        injected.scrub.add(&secret.name, plain, sent);
    }
    Ok(injected)
}

/// The reason a placeholder cannot be resolved, for the agent and the audit.
fn why_not(
    name: &str,
    snap: &Snapshot,
    agent: &AgentRecord,
    dest: &Destination<'_>,
    applying: &[&SecretRecord],
) -> String {
    let Some(secret) = snap.secrets.iter().find(|s| s.name.as_str() == name) else {
        return "no secret has that name".into();
    };
    if !agent.grants.contains(&secret.name) {
        return format!("agent {} is not granted it", agent.name);
    }
    if !dest.tls {
        return "secrets are never sent over plain HTTP".into();
    }
    if !secret.host.matches(dest.host, dest.port) {
        return format!("it belongs to {}, not {}", secret.host, dest.host);
    }
    if applying.iter().all(|s| s.name.as_str() != name) {
        return format!("it applies only to paths matching {}", secret.path);
    }
    "it cannot be used here".into()
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
mod tests {
    use super::*;
    use crate::model::{AgentName, SecretName};
    use crate::policy::{HostPattern, PathGlob};
    use crate::store::secrets::{self, SealFormat};
    use crate::token::TokenHash;
    use crate::vault::MasterKey;

    #[test]
    fn templates_are_filled_once_and_marked_sensitive() {
        let v = filled("Bearer {value}", b"sk-1").unwrap();
        assert_eq!(v, "Bearer sk-1");
        assert!(v.is_sensitive());
        assert_eq!(filled("{value}", b"k").unwrap(), "k");
        assert_eq!(filled("a {value} b", b"k").unwrap(), "a k b");
        assert!(filled("Bearer {value}", b"bad\nvalue").is_err());
    }

    #[test]
    fn query_params_are_replaced_not_duplicated() {
        let pq = |q, v| with_query_param("/p", q, "key", v).unwrap().to_string();
        assert_eq!(
            pq(Some("a=1&key=x&b=2&key=y"), "s3cr t"),
            "/p?a=1&b=2&key=s3cr%20t"
        );
        assert_eq!(pq(None, "v"), "/p?key=v");
        assert_eq!(pq(Some("k%65y=old"), "v"), "/p?key=v");
        assert_eq!(pq(Some("&&"), "v"), "/p?key=v");
    }

    struct Fixture {
        vault: Vault,
        snap: Snapshot,
        agent: AgentRecord,
    }

    const HOST: &str = "api.example.com";
    /// The SigV4 secret's host: signing replaces `Authorization`.
    const S3: &str = "s3.example.com";

    /// Three secrets for [`HOST`], one per way of injecting, and a SigV4
    /// one for [`S3`], all granted.
    fn fixture() -> Fixture {
        let vault = Vault::new(&MasterKey::from_bytes([7; 32]));
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let mut snap = Snapshot::default();
        let specs = [
            (
                "hdr",
                Injection::header_from_spec("x-api-key").unwrap(),
                "hdr-VALUE",
            ),
            (
                "auth",
                Injection::header_from_spec("Authorization").unwrap(),
                "auth-VALUE",
            ),
            (
                "q",
                Injection::Query {
                    param: "key".into(),
                },
                "q VALUE/+",
            ),
            (
                "aws",
                Injection::aws_from_spec("us-east-1/s3").unwrap(),
                "AKIDVALUE:KEYVALUE",
            ),
        ];
        for (i, (name, injection, value)) in specs.into_iter().enumerate() {
            let mut record = SecretRecord {
                id: uuid::Uuid::from_u128(i as u128 + 1),
                name: SecretName::parse(name).unwrap(),
                host: HostPattern::parse(if name == "aws" { S3 } else { HOST }).unwrap(),
                path: PathGlob::parse("/**").unwrap(),
                injection,
                sealed: vault.seal(b"", b"").unwrap(),
                seal_format: SealFormat::Bound,
                key_id: vault.key_id().to_owned(),
                version: 1,
                created_at: epoch,
                updated_at: epoch,
            };
            record.sealed = vault.seal(&record.aad(), value.as_bytes()).unwrap();
            snap.secrets.push(record);
        }
        let agent = AgentRecord {
            id: uuid::Uuid::from_u128(99),
            name: AgentName::parse("a").unwrap(),
            token_hash: TokenHash::of("t"),
            cgroup: String::new(),
            grants: snap.secrets.iter().map(|s| s.name.clone()).collect(),
            created_at: epoch,
        };
        Fixture { vault, snap, agent }
    }

    impl Fixture {
        fn run(
            &self,
            uri: &str,
            host: &str,
            headers: &[(&str, &str)],
        ) -> Result<Parts, InjectError> {
            let mut req = http::Request::get(uri);
            for (n, v) in headers {
                req = req.header(*n, *v);
            }
            let (mut parts, ()) = req.body(()).unwrap().into_parts();
            let dest = Destination {
                host,
                port: 443,
                tls: true,
            };
            inject(&mut parts, &dest, &self.agent, &self.snap, &self.vault)?;
            Ok(parts)
        }

        #[track_caller]
        fn refused(&self, uri: &str, headers: &[(&str, &str)], reason: &str) {
            let host = if reason.contains("SigV4") { S3 } else { HOST };
            match self.run(uri, host, headers) {
                Err(e @ InjectError::Exfiltration { .. }) => {
                    assert!(e.to_string().contains(reason), "{uri} {headers:?}: {e}");
                }
                other => panic!("{uri} {headers:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn placeholders_pass_only_where_their_secret_goes() {
        let fx = fixture();
        let p = fx
            .run(
                "/v1?key=airlock:q",
                HOST,
                &[
                    ("x-api-key", "airlock:hdr"),
                    ("authorization", "Bearer airlock:auth"),
                ],
            )
            .unwrap();
        assert_eq!(p.headers["x-api-key"], "hdr-VALUE");
        assert_eq!(p.headers["authorization"], "Bearer auth-VALUE");
        assert!(
            p.uri.to_string().ends_with("?key=q%20VALUE%2F%2B"),
            "{}",
            p.uri
        );
        // However the query spells the name and the placeholder.
        let p = fx.run("/v1?k%65y=%61irlock%3Aq&x=1", HOST, &[]).unwrap();
        assert_eq!(p.uri.query(), Some("x=1&key=q%20VALUE%2F%2B"));
    }

    /// Issue #15, item 2: a placeholder in another header or query value
    /// (which an API may echo back) resolved to the plaintext.
    #[test]
    fn a_placeholder_anywhere_else_is_refused() {
        let fx = fixture();
        let header = "may be used only in the x-api-key header";
        let query = "may be used only as the value of query parameter key";
        let aws = "AWS SigV4 key pair, which is never placed in a request";
        fx.refused("/v1", &[("x-echo", "airlock:hdr")], header);
        fx.refused(
            "/v1",
            &[("x-echo", "Bearer airlock:auth")],
            "only in the authorization header",
        );
        fx.refused("/v1?q=airlock:q", &[], query);
        fx.refused("/v1?key=airlock:q&q=%61irlock%3Aq", &[], query);
        fx.refused("/v1?q=airlock:hdr", &[], header);
        // Another secret's position.
        fx.refused("/v1", &[("x-api-key", "airlock:q")], query);
        fx.refused("/v1?key=airlock:hdr", &[], header);
        fx.refused("/v1", &[("authorization", "airlock:hdr")], header);
        // A SigV4 pair, anywhere.
        fx.refused("/v1", &[("x-amz-meta-n", "airlock:aws")], aws);
        fx.refused(
            "/v1",
            &[("authorization", "AWS4-HMAC-SHA256 Credential=airlock:aws/x")],
            aws,
        );
        fx.refused("/v1?X-Amz-Credential=airlock:aws", &[], aws);
        // The refusals that were there before.
        fx.refused("/v1/%61irlock%3Aq", &[], "not in the URL path");
        fx.refused("/v1?airlock:q=1", &[], "not in query parameter names");
        fx.refused(
            "/v1",
            &[("x-api-key", "airlock:nosuch")],
            "no secret has that name",
        );
        assert!(matches!(
            fx.run("/v1?key=%61irlock%3Aq", "evil.test", &[]),
            Err(InjectError::Exfiltration { .. })
        ));
    }

    /// Issue #15, item 8: a row pointed at another host by a database
    /// writer no longer opens; a row in the old format never opens here.
    #[test]
    fn a_row_changed_outside_airlock_is_never_injected() {
        let mut fx = fixture();
        fx.snap.secrets[0].host = HostPattern::parse("evil.test").unwrap();
        let out = fx.run("/v1", "evil.test", &[]);
        assert!(
            matches!(&out, Err(InjectError::Vault { name, .. }) if name == "hdr"),
            "{out:?}"
        );
        let mut fx = fixture();
        if let Injection::Header { name, .. } = &mut fx.snap.secrets[0].injection {
            *name = "x-echo".into();
        }
        assert!(matches!(
            fx.run("/v1", HOST, &[]),
            Err(InjectError::Vault { .. })
        ));
        let mut fx = fixture();
        let legacy = &mut fx.snap.secrets[1];
        legacy.seal_format = SealFormat::IdOnly;
        legacy.sealed = fx.vault.seal(legacy.id.as_bytes(), b"auth-VALUE").unwrap();
        let out = fx.run("/v1", HOST, &[]);
        assert!(
            matches!(&out, Err(e @ InjectError::Vault { .. }) if e.to_string().contains("old format")),
            "{out:?}"
        );
    }

    #[test]
    fn the_aad_binds_every_field() {
        let fx = fixture();
        let s = &fx.snap.secrets[0];
        let base = s.aad();
        let other = |f: &dyn Fn(&mut SecretRecord)| {
            let mut c = s.clone();
            f(&mut c);
            c.aad()
        };
        assert_ne!(other(&|c| c.id = uuid::Uuid::from_u128(77)), base);
        assert_ne!(
            other(&|c| c.name = SecretName::parse("hdr2").unwrap()),
            base
        );
        assert_ne!(
            other(&|c| c.host = HostPattern::parse("*.example.com").unwrap()),
            base
        );
        assert_ne!(
            other(&|c| c.path = PathGlob::parse("/v1/**").unwrap()),
            base
        );
        assert_ne!(
            other(&|c| c.injection = Injection::Query {
                param: "x-api-key".into()
            }),
            base
        );
        // Same spelling, another split between fields.
        let a = secrets::aad(
            &s.id,
            &s.name,
            &s.host,
            &s.path,
            &Injection::Header {
                name: "ab".into(),
                template: "c{value}".into(),
            },
        );
        let b = secrets::aad(
            &s.id,
            &s.name,
            &s.host,
            &s.path,
            &Injection::Header {
                name: "a".into(),
                template: "bc{value}".into(),
            },
        );
        assert_ne!(a, b);
        assert_eq!(
            other(&|c| c.host = HostPattern::parse("API.Example.com").unwrap()),
            base
        );
    }

    /// Issue #15, item 3: what was injected is what the scrubber removes
    /// from the response head (for SigV4, the access key id only).
    #[test]
    fn the_injected_values_are_scrubbed_from_the_response_head() {
        let fx = fixture();
        let (mut parts, ()) = http::Request::get("/v1?key=airlock:q")
            .body(())
            .unwrap()
            .into_parts();
        let dest = Destination {
            host: HOST,
            port: 443,
            tls: true,
        };
        let injected = inject(&mut parts, &dest, &fx.agent, &fx.snap, &fx.vault).unwrap();
        assert_eq!(injected.secrets, ["hdr", "auth", "q"]);
        let mut head = http::HeaderMap::new();
        let location = format!("https://{HOST}/next?{}", parts.uri.query().unwrap());
        head.insert("location", HeaderValue::from_str(&location).unwrap());
        head.insert(
            "x-echo",
            HeaderValue::from_static("Bearer auth-VALUE, hdr-VALUE"),
        );
        head.insert("x-raw", HeaderValue::from_static("q VALUE/+"));
        assert_eq!(injected.scrub.response_head(&mut head), 3);
        assert_eq!(
            head["location"],
            format!("https://{HOST}/next?key=airlock:q")
        );
        assert_eq!(head["x-echo"], "Bearer airlock:auth, airlock:hdr");
        assert_eq!(head["x-raw"], "airlock:q");

        let (mut parts, ()) = http::Request::put("/bucket/object")
            .body(())
            .unwrap()
            .into_parts();
        let dest = Destination { host: S3, ..dest };
        let injected = inject(&mut parts, &dest, &fx.agent, &fx.snap, &fx.vault).unwrap();
        assert_eq!(injected.secrets, ["aws"]);
        let mut head = http::HeaderMap::new();
        head.insert("x-aws", HeaderValue::from_static("AKIDVALUE KEYVALUE"));
        assert_eq!(injected.scrub.response_head(&mut head), 1);
        assert_eq!(head["x-aws"], "airlock:aws KEYVALUE");
    }
}
