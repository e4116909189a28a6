use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::{ClientConfig, ClientConnection, RootCertStore};
use rustls_pki_types::ServerName;

use super::*;
use crate::tls::crypto_provider;

/// The first flight of a real rustls client dialling `server_name`.
fn rustls_hello(server_name: &str, tls12_only: bool) -> Vec<u8> {
    let builder = ClientConfig::builder_with_provider(crypto_provider());
    let builder = if tls12_only {
        builder.with_protocol_versions(&[&rustls::version::TLS12])
    } else {
        builder.with_safe_default_protocol_versions()
    };
    let mut config = builder
        .unwrap()
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let mut conn = ClientConnection::new(Arc::new(config), name).unwrap();
    let mut out = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut out).unwrap();
    }
    out
}

/// The same hello re-framed as records of at most `size` bytes each.
fn fragmented(hello: &[u8], size: usize) -> Vec<u8> {
    let payload = &hello[RECORD_HEADER_LEN..];
    let mut out = Vec::new();
    for chunk in payload.chunks(size) {
        out.extend_from_slice(&[0x16, 0x03, 0x01]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[test]
fn reads_the_name_from_a_real_hello() {
    let hello = rustls_hello("api.example.test", false);
    assert_eq!(hello[0], 0x16);
    assert_eq!(
        parse_client_hello_sni(&hello),
        Sni::Name("api.example.test".into())
    );
    let tls12 = rustls_hello("legacy.example.test", true);
    assert_eq!(
        parse_client_hello_sni(&tls12),
        Sni::Name("legacy.example.test".into())
    );
}

#[test]
fn trailing_bytes_after_the_hello_are_ignored() {
    let mut hello = rustls_hello("example.test", false);
    hello.extend_from_slice(&[0x17, 0x03, 0x03, 0x00, 0x10, 1, 2, 3]);
    assert_eq!(
        parse_client_hello_sni(&hello),
        Sni::Name("example.test".into())
    );
}

#[test]
fn a_hello_to_an_ip_has_no_name() {
    assert_eq!(
        parse_client_hello_sni(&rustls_hello("127.0.0.1", false)),
        Sni::Absent
    );
    assert_eq!(
        parse_client_hello_sni(&rustls_hello("::1", false)),
        Sni::Absent
    );
}

#[test]
fn every_truncation_of_a_hello_is_incomplete() {
    for hello in [
        rustls_hello("example.test", false),
        fragmented(&rustls_hello("example.test", false), 7),
    ] {
        assert_eq!(
            parse_client_hello_sni(&hello),
            Sni::Name("example.test".into())
        );
        for end in 0..hello.len() {
            assert_eq!(
                parse_client_hello_sni(&hello[..end]),
                Sni::Incomplete,
                "prefix of {end} bytes"
            );
        }
    }
}

#[test]
fn a_hello_split_over_records_is_reassembled() {
    let hello = rustls_hello("split.example.test", false);
    for size in [1, 2, 3, 4, 5, 40, 100] {
        assert_eq!(
            parse_client_hello_sni(&fragmented(&hello, size)),
            Sni::Name("split.example.test".into()),
            "records of {size} bytes"
        );
    }
}

#[test]
fn other_protocols_are_not_tls() {
    for input in [
        &b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n"[..],
        b"CONNECT example.test:443 HTTP/1.1\r\n",
        b"PRI * HTTP/2.0\r\n",
        b"SSH-2.0-OpenSSH_9.6\r\n",
        &[0x80, 0x2e, 0x01, 0x03, 0x01], // SSLv2-compatible hello
        &[0x16, 0x02],                   // handshake with a bad major version
        &[0x16, 0x03, 0x09],             // unknown minor version
        &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28], // an alert
        &[0x16, 0x03, 0x03, 0x00, 0x04, 0x02, 0x00, 0x00, 0x00], // a ServerHello
        &[0x16, 0x03, 0x01, 0x00, 0x00], // an empty record
        &[0x16, 0x03, 0x01, 0x40, 0x01], // a record over 2^14
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0xff, 0xff, 0xff], // a hello claiming 16 MiB
    ] {
        assert_eq!(parse_client_hello_sni(input), Sni::NotTls, "{input:?}");
    }
}

#[test]
fn a_malformed_hello_is_not_tls() {
    let mut hello = rustls_hello("example.test", false);
    // Break the extensions length so it no longer matches the body.
    let ext_len_at = RECORD_HEADER_LEN + HANDSHAKE_HEADER_LEN + 2 + 32;
    let sid_len = usize::from(hello[ext_len_at]);
    let suites_at = ext_len_at + 1 + sid_len;
    let suites_len = usize::from(u16::from_be_bytes([hello[suites_at], hello[suites_at + 1]]));
    let comp_at = suites_at + 2 + suites_len;
    let exts_at = comp_at + 1 + usize::from(hello[comp_at]);
    hello[exts_at + 1] ^= 0x01;
    assert_eq!(parse_client_hello_sni(&hello), Sni::NotTls);
}

#[test]
fn short_prefixes_are_judged_early() {
    assert_eq!(parse_client_hello_sni(&[]), Sni::Incomplete);
    assert_eq!(parse_client_hello_sni(&[0x16]), Sni::Incomplete);
    assert_eq!(
        parse_client_hello_sni(&[0x16, 0x03, 0x01, 0x02]),
        Sni::Incomplete
    );
    assert_eq!(
        parse_client_hello_sni(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01]),
        Sni::Incomplete
    );
    assert_eq!(
        parse_client_hello_sni(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x02]),
        Sni::NotTls
    );
    assert_eq!(parse_client_hello_sni(b"G"), Sni::NotTls);
}

/// Property-style: random bytes, random mutations and random truncations
/// of a real hello never panic, and never ask for more than the limit.
#[test]
fn never_panics_on_random_input() {
    let mut rng = StdRng::seed_from_u64(0x5eed_a1b1);
    let mut buf = vec![0u8; 2048];
    for i in 0..20_000 {
        let len = rng.random_range(0..buf.len());
        rng.fill(&mut buf[..len]);
        if i % 2 == 0 && len >= 6 {
            // Look like a handshake record so the deeper code is reached.
            let header = [0x16, 0x03, 0x01, buf[3] & 0x07, buf[4], 0x01];
            buf[..6].copy_from_slice(&header);
        }
        let _ = parse_client_hello_sni(&buf[..len]);
    }

    let hello = rustls_hello("mutated.example.test", false);
    for at in 0..hello.len() {
        for _ in 0..8 {
            let mut mutated = hello.clone();
            mutated[at] = rng.random();
            let end = rng.random_range(0..=mutated.len());
            let _ = parse_client_hello_sni(&mutated);
            let _ = parse_client_hello_sni(&mutated[..end]);
        }
    }

    // A record sequence longer than the limit is refused, not waited on.
    let huge = fragmented(
        &[
            vec![0x16, 3, 1, 0, 0],
            vec![0x01, 0x00, 0x7f, 0xff],
            vec![0; 0x7fff],
        ]
        .concat(),
        1,
    );
    assert_eq!(parse_client_hello_sni(&huge), Sni::NotTls);
}

/// A minimal ClientHello (one suite, no compression) whose only extension
/// is a server_name with `list` as its ServerNameList.
fn hello_with_name_list(list: &[u8]) -> Vec<u8> {
    let with_len16 = |bytes: &[u8]| {
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(bytes);
        out
    };
    let mut extension = EXTENSION_SERVER_NAME.to_be_bytes().to_vec();
    extension.extend(with_len16(&with_len16(list)));
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x11; 32]); // random
    body.push(0); // legacy_session_id
    body.extend(with_len16(&[0x13, 0x01])); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[1, 0]); // compression: null
    body.extend(with_len16(&extension));
    let mut handshake = vec![HANDSHAKE_CLIENT_HELLO];
    handshake.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![CONTENT_TYPE_HANDSHAKE, 0x03, 0x01];
    record.extend(with_len16(&handshake));
    record
}

/// Found by the `sni` fuzz target: a host_name followed by an entry of an
/// unknown name type (here the bytes `.test`) was refused, though rustls
/// reads the name and stops there, as RFC 6066 leaves it no other way.
#[test]
fn an_unknown_name_type_ends_the_list() {
    let mut list = vec![NAME_TYPE_HOST_NAME, 0, 11];
    list.extend_from_slice(b"api.example");
    assert_eq!(
        parse_client_hello_sni(&hello_with_name_list(&list)),
        Sni::Name("api.example".into())
    );
    list.extend_from_slice(b".test");
    assert_eq!(
        parse_client_hello_sni(&hello_with_name_list(&list)),
        Sni::Name("api.example".into())
    );
    // Unknown first: no name can be read.
    assert_eq!(
        parse_client_hello_sni(&hello_with_name_list(b"\x2etest")),
        Sni::Absent
    );
}
