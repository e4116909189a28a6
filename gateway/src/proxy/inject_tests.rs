use super::*;
use crate::model::{AgentName, SecretName};
use crate::policy::{HostPattern, PathGlob};
use crate::store::secrets::{self, Binding, SealFormat};
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
/// The Basic secret's host: it sets `Authorization`.
const BASIC: &str = "basic.example.com";

/// Three secrets for [`HOST`], one per way of injecting, and a SigV4
/// one for [`S3`], all granted.
fn fixture() -> Fixture {
    fixture_of(vec![
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
    ])
}

/// Secrets `(name, injection, value)` for [`HOST`] (`aws` for [`S3`],
/// `basic` for [`BASIC`]), all granted to one agent.
fn fixture_of(specs: Vec<(&str, Injection, &str)>) -> Fixture {
    let vault = Vault::new(&MasterKey::from_bytes([7; 32]));
    let epoch = chrono::DateTime::<chrono::Utc>::UNIX_EPOCH;
    let mut snap = Snapshot::default();
    for (i, (name, injection, value)) in specs.into_iter().enumerate() {
        let mut record = SecretRecord {
            binding: Binding::new(
                uuid::Uuid::from_u128(i as u128 + 1),
                SecretName::parse(name).unwrap(),
                HostPattern::parse(match name {
                    "aws" => S3,
                    "basic" => BASIC,
                    _ => HOST,
                })
                .unwrap(),
                PathGlob::parse("/**").unwrap(),
                injection,
            ),
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
        grants: snap.secrets.iter().map(|s| s.name().clone()).collect(),
        default: None,
        created_at: epoch,
    };
    Fixture { vault, snap, agent }
}

impl Fixture {
    fn run(&self, uri: &str, host: &str, headers: &[(&str, &str)]) -> Result<Parts, InjectError> {
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
    fx.refused(
        "/v1/%61irlock%3Aq",
        &[],
        "resolved only for a path-template secret",
    );
    fx.refused("/v1/airlock%3Aq", &[], query);
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
/// The fields a [`Binding`] hashes, to change one of them in a test.
struct Fields {
    id: uuid::Uuid,
    name: SecretName,
    host: HostPattern,
    path: PathGlob,
    injection: Injection,
}

/// `s` with its binding changed by `f` and hashed anew: what reading a
/// row changed in the database gives.
fn rebind(s: &mut SecretRecord, f: impl FnOnce(&mut Fields)) {
    let mut b = Fields {
        id: s.id(),
        name: s.name().clone(),
        host: s.host().clone(),
        path: s.path().clone(),
        injection: s.injection().clone(),
    };
    f(&mut b);
    s.binding = Binding::new(b.id, b.name, b.host, b.path, b.injection);
}

#[test]
fn a_row_changed_outside_airlock_is_never_injected() {
    let mut fx = fixture();
    rebind(&mut fx.snap.secrets[0], |b| {
        b.host = HostPattern::parse("evil.test").unwrap();
    });
    let out = fx.run("/v1", "evil.test", &[]);
    assert!(
        matches!(&out, Err(InjectError::Vault { name, .. }) if name == "hdr"),
        "{out:?}"
    );
    let mut fx = fixture();
    rebind(&mut fx.snap.secrets[0], |b| {
        if let Injection::Header { name, .. } = &mut b.injection {
            *name = "x-echo".into();
        }
    });
    assert!(matches!(
        fx.run("/v1", HOST, &[]),
        Err(InjectError::Vault { .. })
    ));
    let mut fx = fixture();
    let legacy = &mut fx.snap.secrets[1];
    legacy.seal_format = SealFormat::IdOnly;
    legacy.sealed = fx
        .vault
        .seal(legacy.id().as_bytes(), b"auth-VALUE")
        .unwrap();
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
    let other = |f: &dyn Fn(&mut Fields)| {
        let mut c = s.clone();
        rebind(&mut c, f);
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
        &s.id(),
        s.name(),
        s.host(),
        s.path(),
        &Injection::Header {
            name: "ab".into(),
            template: "c{value}".into(),
        },
    );
    let b = secrets::aad(
        &s.id(),
        s.name(),
        s.host(),
        s.path(),
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

/// Issue #18, item 4: a path template puts the value where the agent
/// wrote the placeholder (and only there), HTTP Basic encodes the pair,
/// a body secret is opened only for a JSON or form body.
#[test]
fn path_basic_and_body_secrets_go_where_they_are_placed() {
    let fx = fixture_of(vec![
        (
            "tg",
            Injection::Path {
                template: "/bot{value}/**".into(),
            },
            "123:AB/c",
        ),
        (
            "basic",
            Injection::Basic {
                template: "api:{value}".into(),
            },
            "b-VALUE",
        ),
        ("form", Injection::Body, "f VALUE"),
    ]);
    for spelled in [
        "/botairlock:tg/sendMessage?x=1",
        "/botairlock%3Atg/sendMessage?x=1",
    ] {
        let p = fx.run(spelled, HOST, &[]).unwrap();
        assert_eq!(p.uri, "/bot123:AB%2Fc/sendMessage?x=1");
    }
    // Without its placeholder the path is left alone.
    assert_eq!(fx.run("/v1", HOST, &[]).unwrap().uri, "/v1");
    let template = "only in the URL path, where its template /bot{value}/** puts it";
    fx.refused("/x/botairlock:tg/sendMessage", &[], template);
    fx.refused("/botairlock:tg", &[], template);
    fx.refused("/v1", &[("x-echo", "airlock:tg")], template);
    fx.refused("/v1?q=airlock:tg", &[], template);

    let p = fx
        .run("/v1", BASIC, &[("authorization", "Basic airlock:basic")])
        .unwrap();
    // base64("api:b-VALUE")
    assert_eq!(p.headers["authorization"], "Basic YXBpOmItVkFMVUU=");
    assert!(p.headers["authorization"].is_sensitive());
    match fx.run("/v1", BASIC, &[("x-echo", "airlock:basic")]) {
        Err(e) => assert!(e.to_string().contains("HTTP Basic secret"), "{e}"),
        Ok(p) => panic!("{p:?}"),
    }

    fx.refused(
        "/v1",
        &[("x-echo", "airlock:form")],
        "only in a JSON or form-encoded request body",
    );
    let with_type = |ct: &str| {
        let (mut parts, ()) = http::Request::post("/v1")
            .header("content-type", ct)
            .body(())
            .unwrap()
            .into_parts();
        let dest = Destination {
            host: HOST,
            port: 443,
            tls: true,
        };
        inject(&mut parts, &dest, &fx.agent, &fx.snap, &fx.vault).unwrap()
    };
    let json = with_type("application/json; charset=utf-8");
    let body = json.body.expect("a JSON body is read");
    assert_eq!(body.encoding, Encoding::Json);
    assert_eq!(body.values.len(), 1);
    assert_eq!(body.values[0].1.expose(), b"f VALUE");
    assert_eq!(json.secrets, ["form"]);
    assert_eq!(
        with_type("application/x-www-form-urlencoded")
            .body
            .map(|b| b.encoding),
        Some(Encoding::Form)
    );
    assert_eq!(
        with_type("application/vnd.api+json")
            .body
            .map(|b| b.encoding),
        Some(Encoding::Json)
    );
    let other = with_type("text/plain");
    assert!(other.body.is_none());
    assert!(other.secrets.is_empty(), "{:?}", other.secrets);
}

/// Issue 21, item 5: a placeholder refused because its agent is not
/// granted the secret says so (an access request asks for the grant);
/// one refused for its position, or for another host, does not.
#[test]
fn only_a_missing_grant_marks_a_refusal_ungranted() {
    let mut fx = fixture();
    fx.agent.grants.retain(|g| g.as_str() != "hdr");
    let ungranted = |fx: &Fixture, uri: &str, host: &str, headers: &[(&str, &str)]| match fx
        .run(uri, host, headers)
    {
        Err(InjectError::Exfiltration { ungranted, .. }) => ungranted,
        other => panic!("{uri} {headers:?}: {other:?}"),
    };
    assert!(ungranted(&fx, "/v1", HOST, &[("x-api-key", "airlock:hdr")]));
    // Not granted, and elsewhere than its header: still the grant that is
    // missing first.
    assert!(ungranted(&fx, "/v1?key=airlock:hdr", HOST, &[]));
    // A position no secret may take (a query parameter's name): the grant
    // would not answer it.
    assert!(!ungranted(&fx, "/v1?airlock:hdr=1", HOST, &[]));
    // Granted, but sent to another host: no grant is missing.
    assert!(!ungranted(
        &fx,
        "/v1",
        "evil.test",
        &[("x-api-key", "airlock:q")]
    ));
    // No secret has that name.
    assert!(!ungranted(
        &fx,
        "/v1",
        HOST,
        &[("x-api-key", "airlock:nosuch")]
    ));
}
