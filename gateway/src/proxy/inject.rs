//! Credential injection: the one place a secret's plaintext is handled.
//!
//! A secret applies to a request when the agent is granted it and the
//! request's host and path match the secret's pattern and glob, over TLS.
//! Then:
//! 1. `airlock:NAME` placeholders in header values and query values are
//!    replaced by the value of NAME, which must be one of the applying
//!    secrets. Any other placeholder (another host or path, a secret not
//!    granted, plain HTTP, or in the URL path) is an exfiltration attempt:
//!    the request is refused and nothing is resolved.
//! 2. Each applying secret is injected as configured: a header is set
//!    (replacing the agent's), a query parameter replaced (never a second
//!    `key=`), or the request signed with AWS SigV4.
//!
//! Request bodies are never read: they stream through untouched.
//! Plaintext is opened from the vault per request into zeroizing buffers;
//! the copies inside the outgoing header values are marked sensitive so
//! HTTP/2 never indexes them.

use std::borrow::Cow;
use std::time::SystemTime;

use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use http::uri::{PathAndQuery, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use super::placeholder;
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
    #[error("secret {0} cannot be decrypted; rotate it (`airlock secret rotate {0}`)")]
    Vault(String),
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

/// What was injected, by secret name, for the audit trail.
#[derive(Debug, Default)]
pub struct Injected {
    pub secrets: Vec<String>,
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

/// Opened values, each decrypted at most once per request.
struct Values<'s, 'v> {
    vault: &'v Vault,
    secrets: Vec<&'s SecretRecord>,
    opened: Vec<(usize, Plaintext)>,
}

impl<'s> Values<'s, '_> {
    fn get(&mut self, index: usize) -> Result<&str, InjectError> {
        if !self.opened.iter().any(|(i, _)| *i == index) {
            let secret = self.secrets[index];
            let plain = self
                .vault
                .open(&SecretRecord::aad(&secret.id), &secret.sealed)
                .map_err(|_| InjectError::Vault(secret.name.to_string()))?;
            self.opened.push((index, plain));
        }
        let (_, plain) = self
            .opened
            .iter()
            .find(|(i, _)| *i == index)
            .ok_or_else(|| InjectError::Vault(self.secrets[index].name.to_string()))?;
        std::str::from_utf8(plain.expose())
            .map_err(|_| InjectError::Vault(self.secrets[index].name.to_string()))
    }

    fn by_name(&mut self, name: &str) -> Option<Result<&str, InjectError>> {
        let index = self.secrets.iter().position(|s| s.name.as_str() == name)?;
        Some(self.get(index))
    }
}

/// Resolves placeholders and injects every applying secret into `parts`.
pub fn inject(
    parts: &mut Parts,
    dest: &Destination<'_>,
    agent: &AgentRecord,
    snap: &Snapshot,
    vault: &Vault,
) -> Result<Injected, InjectError> {
    let secrets = applicable(snap, agent, dest, parts.uri.path());
    let mut values = Values {
        vault,
        secrets,
        opened: Vec::new(),
    };
    let refuse = |name: &str, values: &Values<'_, '_>| {
        Err::<(), _>(InjectError::Exfiltration {
            name: name.to_owned(),
            reason: why_not(name, snap, agent, dest, &values.secrets),
        })
    };

    // 1. Placeholders in the URL path are never resolved. The server sees
    // the path decoded, so `%61irlock%3A...` is one too.
    let path = percent_decode_str(parts.uri.path()).decode_utf8_lossy();
    if let Some(f) = placeholder::find_all(&path).first() {
        return Err(InjectError::Exfiltration {
            name: f.name.to_owned(),
            reason:
                "placeholders are resolved only in header and query values, not in the URL path"
                    .into(),
        });
    }
    // 2. Placeholders in header values.
    let names: Vec<HeaderName> = parts
        .headers
        .iter()
        .filter(|(_, v)| placeholder::may_contain(v.as_bytes()))
        .map(|(n, _)| n.clone())
        .collect();
    for name in names {
        let old: Vec<HeaderValue> = parts.headers.get_all(&name).iter().cloned().collect();
        let mut new = Vec::with_capacity(old.len());
        for v in &old {
            let text = String::from_utf8_lossy(v.as_bytes());
            let mut missing = None;
            let replaced = placeholder::replace_all(&text, |n| match values.by_name(n) {
                Some(Ok(value)) => Some(value.to_owned()),
                _ => {
                    missing.get_or_insert_with(|| n.to_owned());
                    None
                }
            });
            match replaced {
                Ok(text) => new.push(sensitive(&text)?),
                Err(n) => {
                    refuse(missing.as_deref().unwrap_or(n), &values)?;
                }
            }
        }
        parts.headers.remove(&name);
        for v in new {
            parts.headers.append(name.clone(), v);
        }
    }
    // 3. Placeholders in query values.
    if let Some(query) = parts
        .uri
        .query()
        .filter(|q| placeholder::may_contain_encoded(q))
    {
        let mut pairs: Vec<(String, Cow<'_, str>)> = Vec::new();
        let mut replaced_any = false;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // A name is not where a key goes: like one in the path, a
            // placeholder there is an attempt, not text.
            if let Some(f) =
                placeholder::find_all(&percent_decode_str(k).decode_utf8_lossy()).first()
            {
                return Err(InjectError::Exfiltration {
                    name: f.name.to_owned(),
                    reason: "placeholders are resolved only in header and query values, not in \
                             query parameter names"
                        .into(),
                });
            }
            let decoded = percent_decode_str(v).decode_utf8_lossy();
            if placeholder::find_all(&decoded).is_empty() {
                pairs.push((k.to_owned(), Cow::Owned(v.to_owned())));
                continue;
            }
            let mut missing = None;
            match placeholder::replace_all(&decoded, |n| match values.by_name(n) {
                Some(Ok(value)) => Some(value.to_owned()),
                _ => {
                    missing.get_or_insert_with(|| n.to_owned());
                    None
                }
            }) {
                Ok(text) => {
                    replaced_any = true;
                    pairs.push((
                        k.to_owned(),
                        Cow::Owned(utf8_percent_encode(&text, QUERY_VALUE).to_string()),
                    ));
                }
                Err(n) => refuse(missing.as_deref().unwrap_or(n), &values)?,
            }
        }
        if replaced_any {
            let query = pairs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&");
            set_query(&mut parts.uri, Some(&query))?;
        }
    }

    // 4. Configured injections; SigV4 last, over the final request.
    let mut injected = Injected::default();
    let mut aws = None;
    for index in 0..values.secrets.len() {
        let secret = values.secrets[index];
        injected.secrets.push(secret.name.to_string());
        match &secret.injection {
            Injection::Header { name, template } => {
                let value = filled(template, values.get(index)?)?;
                let header = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| InjectError::Vault(secret.name.to_string()))?;
                parts.headers.insert(header, value);
            }
            Injection::Query { param } => {
                let value = values.get(index)?.to_owned();
                let query = replace_query_param(parts.uri.query(), param, &value);
                set_query(&mut parts.uri, Some(&query))?;
            }
            Injection::AwsSigv4 { region, service } => {
                aws.get_or_insert((index, region.clone(), service.clone()));
            }
        }
    }
    if let Some((index, region, service)) = aws {
        let creds = values.get(index)?.to_owned();
        let creds = zeroize::Zeroizing::new(creds);
        let (akid, secret) = creds
            .split_once(':')
            .ok_or_else(|| InjectError::Vault(values.secrets[index].name.to_string()))?;
        super::sigv4::sign(
            parts,
            dest,
            &region,
            &service,
            akid,
            secret,
            SystemTime::now(),
        )?;
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
fn filled(template: &str, value: &str) -> Result<HeaderValue, InjectError> {
    let (before, after) = template.split_once("{value}").unwrap_or((template, ""));
    let mut buf = Vec::with_capacity(before.len() + value.len() + after.len());
    buf.extend_from_slice(before.as_bytes());
    buf.extend_from_slice(value.as_bytes());
    buf.extend_from_slice(after.as_bytes());
    let mut v = HeaderValue::from_maybe_shared(bytes::Bytes::from(buf))
        .map_err(|_| InjectError::Sign("a resolved value is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

fn sensitive(text: &str) -> Result<HeaderValue, InjectError> {
    let mut v = HeaderValue::from_str(text)
        .map_err(|_| InjectError::Sign("a resolved value is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// `query` with `param` set to `value`: every existing `param=` removed,
/// one appended.
fn replace_query_param(query: Option<&str>, param: &str, value: &str) -> String {
    let mut out: Vec<Cow<'_, str>> = query
        .unwrap_or("")
        .split('&')
        .filter(|pair| !pair.is_empty())
        .filter(|pair| {
            let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
            percent_decode_str(key).decode_utf8_lossy() != param
        })
        .map(Cow::Borrowed)
        .collect();
    out.push(Cow::Owned(format!(
        "{param}={}",
        utf8_percent_encode(value, QUERY_VALUE)
    )));
    out.join("&")
}

fn set_query(uri: &mut Uri, query: Option<&str>) -> Result<(), InjectError> {
    let pq = match query {
        Some(q) if !q.is_empty() => format!("{}?{q}", uri.path()),
        _ => uri.path().to_owned(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        PathAndQuery::try_from(pq)
            .map_err(|_| InjectError::Sign("the rebuilt URL is invalid".into()))?,
    );
    *uri = Uri::from_parts(parts)
        .map_err(|_| InjectError::Sign("the rebuilt URL is invalid".into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_filled_once_and_marked_sensitive() {
        let v = filled("Bearer {value}", "sk-1").unwrap();
        assert_eq!(v, "Bearer sk-1");
        assert!(v.is_sensitive());
        assert_eq!(filled("{value}", "k").unwrap(), "k");
        assert_eq!(filled("a {value} b", "k").unwrap(), "a k b");
        assert!(filled("Bearer {value}", "bad\nvalue").is_err());
    }

    #[test]
    fn query_params_are_replaced_not_duplicated() {
        assert_eq!(
            replace_query_param(Some("a=1&key=x&b=2&key=y"), "key", "s3cr t"),
            "a=1&b=2&key=s3cr%20t"
        );
        assert_eq!(replace_query_param(None, "key", "v"), "key=v");
        assert_eq!(replace_query_param(Some("k%65y=old"), "key", "v"), "key=v");
    }

    /// Found by the `inject` fuzz target: a percent-encoded placeholder in
    /// the query (`%61irlock%3Aopenai`) went upstream unscanned, neither
    /// resolved nor refused; the path had the same gap.
    #[test]
    fn encoded_placeholders_are_refused_or_resolved() {
        use crate::model::{AgentName, SecretName};
        use crate::policy::{HostPattern, PathGlob};
        use crate::token::TokenHash;
        use crate::vault::MasterKey;

        let vault = Vault::new(&MasterKey::from_bytes([7; 32]));
        let id = uuid::Uuid::from_u128(1);
        let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
        let mut snap = Snapshot::default();
        snap.secrets.push(SecretRecord {
            id,
            name: SecretName::parse("openai").unwrap(),
            host: HostPattern::parse("api.example.com").unwrap(),
            path: PathGlob::parse("/**").unwrap(),
            injection: Injection::Query {
                param: "other".into(),
            },
            sealed: vault.seal(&SecretRecord::aad(&id), b"s3cret").unwrap(),
            key_id: vault.key_id().to_owned(),
            version: 1,
            created_at: epoch,
            updated_at: epoch,
        });
        let agent = AgentRecord {
            id: uuid::Uuid::from_u128(2),
            name: AgentName::parse("a").unwrap(),
            token_hash: TokenHash::of("t"),
            cgroup: String::new(),
            grants: vec![SecretName::parse("openai").unwrap()],
            created_at: epoch,
        };
        let run = |uri: &str, host: &str| {
            let (mut parts, ()) = http::Request::get(uri).body(()).unwrap().into_parts();
            let dest = Destination {
                host,
                port: 443,
                tls: true,
            };
            inject(&mut parts, &dest, &agent, &snap, &vault).map(|_| parts.uri.to_string())
        };
        let resolved = run("/v1/x?q=%61irlock%3Aopenai", "api.example.com").unwrap();
        assert!(resolved.starts_with("/v1/x?q=s3cret&"), "{resolved}");
        for (uri, host) in [
            ("/v1/x?q=%61irlock%3Aopenai", "evil.test"),
            ("/v1/%61irlock%3Aopenai", "api.example.com"),
            // In a parameter's name, with or without a value.
            ("/v1/x?airlock:openai=1", "api.example.com"),
            ("/v1/x?a=1&%61irlock%3Aopenai", "api.example.com"),
        ] {
            assert!(
                matches!(run(uri, host), Err(InjectError::Exfiltration { .. })),
                "{uri} to {host}"
            );
        }
    }
}
