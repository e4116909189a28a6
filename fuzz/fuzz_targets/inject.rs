//! Credential injection (`airlock::proxy::inject::inject`) on arbitrary
//! requests, with secrets for a few hosts, paths and ways of injecting, and
//! an agent granted some of them.
//!
//! Checks, for every outcome: a secret that does not apply to the request
//! (not granted, another host or path, plain HTTP) never appears anywhere
//! in it. A placeholder is accepted only in its secret's declared position
//! (the secret applies, and the placeholder is in its header, or in the
//! value of its query parameter; never for SigV4): any other placeholder
//! refuses the request, and a request whose placeholders are all in place
//! is never refused as exfiltration. When the request goes through: no
//! placeholder is left in a header or query value, a secret's value
//! appears only in its own position (its header, its query parameter's
//! value; for SigV4 only the access key id, in `Authorization`), and every
//! header carrying a secret is marked sensitive.

#![no_main]

use std::sync::LazyLock;

use airlock::model::{AgentName, Injection, SecretName};
use airlock::policy::{HostPattern, PathGlob};
use airlock::proxy::inject::{self, Destination, InjectError};
use airlock::proxy::placeholder;
use airlock::snapshot::Snapshot;
use airlock::store::agents::AgentRecord;
use airlock::store::secrets::{Binding, SealFormat, SecretRecord};
use airlock::token::TokenHash;
use airlock::vault::{MasterKey, Vault};
use chrono::{DateTime, Utc};
use http::header::{HeaderName, HeaderValue};
use http::request::Parts;
use libfuzzer_sys::fuzz_target;
use percent_encoding::percent_decode_str;
use uuid::Uuid;

const SECRET_NAMES: [&str; 4] = ["openai", "github", "aws", "stripe-2"];
const SECRET_HOSTS: [&str; 5] = [
    "api.example.com",
    "*.example.com",
    "other.test:8443",
    "127.0.0.1",
    "[::1]",
];
const SECRET_PATHS: [&str; 4] = ["/**", "/v1/**", "/v1/*", "/admin"];
const DEST_HOSTS: [&str; 7] = [
    "api.example.com",
    "API.Example.com.",
    "a.example.com",
    "other.test",
    "127.0.0.1",
    "::1",
    "evil.test",
];
/// In every secret value; an input that holds it already is skipped, so
/// finding it in the output means the gateway put it there.
const MARKER: &str = "FUZZ";

static VAULT: LazyLock<Vault> = LazyLock::new(|| Vault::new(&MasterKey::from_bytes([7; 32])));
/// Parsed once: compiling globs would otherwise take most of each run.
static PATTERNS: LazyLock<(Vec<HostPattern>, Vec<PathGlob>)> = LazyLock::new(|| {
    let hosts = SECRET_HOSTS
        .iter()
        .map(|h| HostPattern::parse(h).unwrap_or_else(|e| panic!("{e}")));
    let paths = SECRET_PATHS
        .iter()
        .map(|p| PathGlob::parse(p).unwrap_or_else(|e| panic!("{e}")));
    (hosts.collect(), paths.collect())
});

/// A request and the configuration it meets, from text:
///
/// ```text
/// CONTROL            one character per setting, see `Input::parse`
/// /path?query        the request target
/// name: value        headers, one a line
/// ```
#[derive(Debug)]
struct Input<'a> {
    method: u8,
    /// Origin form (`/path?query`); sent as an absolute URL when `absolute`.
    path_and_query: &'a str,
    absolute: bool,
    headers: Vec<(&'a str, &'a str)>,
    host: u8,
    port_8443: bool,
    tls: bool,
    /// Bit i: the agent is granted secret i.
    grants: u8,
    secrets: Vec<SecretSpec>,
}

#[derive(Debug)]
struct SecretSpec {
    host: u8,
    path: u8,
    how: u8,
}

impl<'a> Input<'a> {
    /// CONTROL's characters, `0` being 0, `1` being 1 and so on: the
    /// destination host, 8443 (else 443), TLS, absolute URL, the method, the
    /// grants (a bit mask), then per secret (up to four) its host, path glob
    /// and kind (0 Authorization, 1 x-api-key, 2 query `key`, 3 AWS SigV4).
    fn parse(data: &'a [u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.split('\n');
        let control: Vec<u8> = lines
            .next()?
            .bytes()
            .map(|b| b.wrapping_sub(b'0'))
            .collect();
        let c = |i: usize| control.get(i).copied().unwrap_or(0);
        let secrets = control
            .get(6..)
            .unwrap_or_default()
            .chunks(3)
            .take(SECRET_NAMES.len())
            .map(|s| SecretSpec {
                host: s[0],
                path: s.get(1).copied().unwrap_or(0),
                how: s.get(2).copied().unwrap_or(0),
            })
            .collect();
        Some(Input {
            host: c(0),
            port_8443: c(1) & 1 == 1,
            tls: c(2) & 1 == 1,
            absolute: c(3) & 1 == 1,
            method: c(4),
            grants: c(5),
            secrets,
            path_and_query: lines.next().unwrap_or("/"),
            headers: lines
                .take(16)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim(), v.trim_start()))
                .collect(),
        })
    }
}

fn pick<T: Copy>(list: &[T], i: u8) -> T {
    *pick_ref(list, i)
}

fn pick_ref<T>(list: &[T], i: u8) -> &T {
    &list[usize::from(i) % list.len()]
}

/// What a secret's value is, and the parts of it that must never show
/// where the secret does not apply.
fn value_of(index: usize, injection: &Injection) -> (String, Vec<String>) {
    match injection {
        Injection::AwsSigv4 { .. } => {
            let (akid, key) = (
                format!("AKID{MARKER}{index}"),
                format!("KEY{MARKER}{index}X"),
            );
            (format!("{akid}:{key}"), vec![akid, key])
        }
        _ => {
            let v = format!("VALUE{MARKER}{index}X");
            (v.clone(), vec![v])
        }
    }
}

fn injection(how: u8) -> Injection {
    let made = match how % 4 {
        0 => Injection::header_from_spec("authorization"),
        1 => Injection::header_from_spec("x-api-key"),
        2 => Ok(Injection::Query {
            param: "key".into(),
        }),
        _ => Injection::aws_from_spec("us-east-1/s3"),
    };
    made.unwrap_or_else(|e| panic!("fixture injection refused: {e}"))
}

struct Fixture {
    snapshot: Snapshot,
    agent: AgentRecord,
    /// Per secret index: what must not leak.
    markers: Vec<Vec<String>>,
}

fn fixture(specs: &[SecretSpec], grants: u8) -> Fixture {
    let epoch = DateTime::<Utc>::UNIX_EPOCH;
    let mut snapshot = Snapshot::default();
    let mut markers = Vec::new();
    let mut granted = Vec::new();
    for (i, spec) in specs.iter().take(SECRET_NAMES.len()).enumerate() {
        let id = Uuid::from_u128(i as u128 + 1);
        let name = SecretName::parse(SECRET_NAMES[i]).unwrap_or_else(|e| panic!("{e}"));
        let injection = injection(spec.how);
        let (value, leak) = value_of(i, &injection);
        if grants & (1 << i) != 0 {
            granted.push(name.clone());
        }
        let mut record = SecretRecord {
            binding: Binding::new(
                id,
                name,
                pick_ref(&PATTERNS.0, spec.host).clone(),
                pick_ref(&PATTERNS.1, spec.path).clone(),
                injection,
            ),
            sealed: airlock::vault::Sealed {
                nonce: [0; 12],
                ciphertext: Vec::new(),
            },
            seal_format: SealFormat::Bound,
            key_id: VAULT.key_id().to_owned(),
            version: 1,
            created_at: epoch,
            updated_at: epoch,
        };
        record.sealed = VAULT
            .seal(&record.aad(), value.as_bytes())
            .unwrap_or_else(|e| panic!("sealing: {e}"));
        snapshot.secrets.push(record);
        markers.push(leak);
    }
    let agent = AgentRecord {
        id: Uuid::from_u128(99),
        name: AgentName::parse("fuzz-agent").unwrap_or_else(|e| panic!("{e}")),
        token_hash: TokenHash::of("alk_fuzz"),
        cgroup: String::new(),
        grants: granted,
        default: None,
        created_at: epoch,
    };
    Fixture {
        snapshot,
        agent,
        markers,
    }
}

fn request(input: &Input<'_>, host: &str) -> Option<Parts> {
    let method = pick(&["GET", "POST", "PUT", "DELETE"], input.method);
    let uri = if input.absolute {
        let authority = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        format!("https://{authority}{}", input.path_and_query)
    } else {
        input.path_and_query.to_owned()
    };
    let (mut parts, ()) = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .ok()?
        .into_parts();
    for (name, value) in &input.headers {
        let name = HeaderName::from_bytes(name.as_bytes()).ok()?;
        parts
            .headers
            .append(name, HeaderValue::from_bytes(value.as_bytes()).ok()?);
    }
    Some(parts)
}

/// Everything of the request that goes upstream, as text: the URL (also
/// percent-decoded) and each header value.
fn visible(parts: &Parts) -> Vec<String> {
    let uri = parts.uri.to_string();
    let mut out = vec![
        percent_decode_str(&uri).decode_utf8_lossy().into_owned(),
        uri,
    ];
    out.extend(
        parts
            .headers
            .values()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    );
    out
}

/// Where a placeholder (or a secret's value) sits in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    Path,
    QueryName,
    QueryValue(String),
    Header(String),
}

/// Every piece of the request an upstream sees, with its position: the
/// decoded path, each decoded query name and value, each header value.
fn pieces(parts: &Parts) -> Vec<(Position, String)> {
    let decode = |t: &str| percent_decode_str(t).decode_utf8_lossy().into_owned();
    let mut out = vec![(Position::Path, decode(parts.uri.path()))];
    for pair in parts.uri.query().unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k);
        out.push((Position::QueryName, key.clone()));
        out.push((Position::QueryValue(key), decode(v)));
    }
    for (name, v) in &parts.headers {
        out.push((
            Position::Header(name.as_str().to_owned()),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    out
}

/// The placeholders in the request, each with its position.
fn placeholders(parts: &Parts) -> Vec<(String, Position)> {
    pieces(parts)
        .into_iter()
        .flat_map(|(at, text)| {
            placeholder::find_all(&text)
                .iter()
                .map(|f| (f.name.to_owned(), at.clone()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The rule, restated: the one position a secret's value may take.
fn declared(secret: &SecretRecord, at: &Position) -> bool {
    match (secret.injection(), at) {
        (Injection::Header { name, .. }, Position::Header(h)) => h == name,
        (Injection::Query { param }, Position::QueryValue(k)) => k == param,
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let host = pick(&DEST_HOSTS, input.host);
    let Some(mut parts) = request(&input, host) else {
        return;
    };
    if visible(&parts)
        .iter()
        .any(|t| t.to_ascii_uppercase().contains(MARKER))
    {
        return;
    }
    let fx = fixture(&input.secrets, input.grants);
    let dest = Destination {
        host,
        port: if input.port_8443 { 8443 } else { 443 },
        tls: input.tls,
    };
    let applying: Vec<String> =
        inject::applicable(&fx.snapshot, &fx.agent, &dest, parts.uri.path())
            .iter()
            .map(|s| s.name().to_string())
            .collect();
    let asked = placeholders(&parts);
    let before = format!("{parts:?}");

    let result = inject::inject(&mut parts, &dest, &fx.agent, &fx.snapshot, &VAULT);
    let result = result.map(|injected| injected.secrets);

    let seen = visible(&parts);
    for (secret, markers) in fx.snapshot.secrets.iter().zip(&fx.markers) {
        if applying.contains(&secret.name().to_string()) {
            continue;
        }
        for marker in markers {
            assert!(
                !seen.iter().any(|t| t.contains(marker.as_str())),
                "secret {} leaked ({result:?}) into {seen:?}, from {before}",
                secret.name()
            );
        }
    }
    let misplaced = asked.iter().find(|(name, at)| {
        !fx.snapshot
            .secrets
            .iter()
            .any(|s| s.name().as_str() == name && applying.contains(name) && declared(s, at))
    });
    match (&misplaced, &result) {
        (Some(_), Err(InjectError::Exfiltration { .. })) | (None, _) => {}
        (Some((name, at)), _) => {
            panic!(
                "placeholder airlock:{name} in {at:?} is not its secret's position, yet {result:?} for {before}"
            )
        }
    }
    if misplaced.is_none() {
        assert!(
            !matches!(result, Err(InjectError::Exfiltration { .. })),
            "every placeholder was in place, yet {result:?} for {before}"
        );
    }
    if result.is_err() {
        return;
    }
    let left = placeholders(&parts);
    assert!(
        left.is_empty(),
        "placeholders {left:?} left in {parts:?}, from {before}"
    );
    // Each value only in its own position (SigV4: the key id, signed).
    for (at, text) in pieces(&parts) {
        for (secret, markers) in fx.snapshot.secrets.iter().zip(&fx.markers) {
            for marker in markers.iter().filter(|m| text.contains(m.as_str())) {
                let sigv4_id = matches!(secret.injection(), Injection::AwsSigv4 { .. })
                    && at == Position::Header("authorization".into())
                    && marker.starts_with("AKID");
                assert!(
                    declared(secret, &at) || sigv4_id,
                    "secret {}'s {marker} is in {at:?}: {parts:?}, from {before}",
                    secret.name()
                );
            }
        }
    }
    for (name, v) in &parts.headers {
        let text = String::from_utf8_lossy(v.as_bytes());
        if fx
            .markers
            .iter()
            .flatten()
            .any(|m| text.contains(m.as_str()))
        {
            assert!(
                v.is_sensitive(),
                "header {name} carries a secret but is not sensitive"
            );
        }
    }
});
