//! The ClientHello SNI reader (`airlock::tls::parse_client_hello_sni`) on
//! arbitrary first bytes of a connection.
//!
//! Checks: a name is non-empty printable ASCII and `LeafName::parse` judges
//! it without panicking; "need more" is only answered while the hello could
//! still fit in `MAX_CLIENT_HELLO_LEN`; a final answer does not change with
//! bytes after it, and every prefix of the input is either "need more" or
//! that same answer. Against rustls's own parser: a hello rustls accepts is
//! never refused when it names a valid host, and that name is the name the
//! gateway reads
//! (record versions beyond TLS 3.4 aside, which the gateway refuses by
//! design).

#![no_main]

use std::io::Read;

use airlock::tls::{LeafName, MAX_CLIENT_HELLO_LEN, Sni, parse_client_hello_sni};
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::ServerName;
use rustls::server::Acceptor;

fuzz_target!(|data: &[u8]| {
    let answer = parse_client_hello_sni(data);
    if let Sni::Name(name) = &answer {
        assert!(
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
            "{name:?} is not printable ASCII"
        );
        let _ = LeafName::parse(name);
    }
    if answer == Sni::Incomplete {
        assert!(
            data.len() < MAX_CLIENT_HELLO_LEN,
            "asks for more after {} bytes",
            data.len()
        );
    }
    if matches!(answer, Sni::Name(_) | Sni::Absent) {
        let mut more = data.to_vec();
        more.extend_from_slice(b"\x17\x03\x03\x00\x05junk!");
        assert_eq!(
            parse_client_hello_sni(&more),
            answer,
            "bytes after the hello changed it"
        );
        for eighth in 0..8 {
            let cut = data.len() * eighth / 8;
            let early = parse_client_hello_sni(&data[..cut]);
            assert!(
                early == Sni::Incomplete || early == answer,
                "the first {cut} bytes give {early:?}, all {} give {answer:?}",
                data.len()
            );
        }
    }
    against_rustls(data, &answer);
});

/// What rustls's server makes of the same bytes, where it reaches a verdict.
fn against_rustls(data: &[u8], answer: &Sni) {
    if !versions_the_gateway_reads(data) {
        return;
    }
    let mut acceptor = Acceptor::default();
    let mut rest: &[u8] = data;
    while !rest.is_empty() {
        match acceptor.read_tls(&mut rest as &mut dyn Read) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let Ok(Some(accepted)) = acceptor.accept() else {
        return;
    };
    let hello = accepted.client_hello();
    let normal = |n: &str| n.trim_end_matches('.').to_ascii_lowercase();
    match (hello.server_name(), answer) {
        (Some(theirs), Sni::Name(ours)) => assert_eq!(normal(theirs), normal(ours)),
        (Some(theirs), ours) => panic!("rustls reads {theirs:?}, the gateway {ours:?}"),
        // rustls takes a hello whose name is invalid as one without a name;
        // the gateway may refuse it instead.
        (None, Sni::Absent | Sni::NotTls) => {}
        // rustls drops IP literals and invalid names; the gateway passes them
        // on to LeafName, which decides.
        (None, Sni::Name(ours)) => assert!(
            !matches!(
                ServerName::try_from(ours.as_str()),
                Ok(ServerName::DnsName(_))
            ),
            "rustls reads no name where the gateway reads the DNS name {ours:?}"
        ),
        (None, Sni::Incomplete) => panic!("rustls accepts a hello the gateway waits on"),
    }
}

/// Whether every record header in `data` says TLS 3.0 to 3.4. rustls takes
/// any 3.x; the gateway refuses the rest at once, by design
/// (`other_protocols_are_not_tls` in `gateway/src/tls/sni_tests.rs`).
fn versions_the_gateway_reads(data: &[u8]) -> bool {
    let mut at = 0;
    while let Some(header) = data.get(at..at + 5) {
        if header[1] != 3 || header[2] > 4 {
            return false;
        }
        at += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    true
}
