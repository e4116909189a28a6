//! AWS Signature Version 4, with the SDK's own signer (`aws-sigv4`).
//!
//! The agent's request may already carry a signature made with dummy
//! credentials (an AWS SDK configured with placeholders): it is removed
//! and the request signed afresh. The body is never buffered: when the
//! agent declared the payload hash in `x-amz-content-sha256` (the SDKs do
//! for S3), that hash is signed; otherwise the request is signed with
//! `UNSIGNED-PAYLOAD`, which S3 accepts and other services may not.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign as aws_sign,
};
use aws_sigv4::sign::v4;
use http::request::Parts;

use super::inject::{Destination, InjectError};

/// Headers of an earlier signature, replaced by ours.
const DROPPED: &[&str] = &["authorization", "x-amz-date", "x-amz-security-token"];

/// Headers that change between hops and so must not be signed.
const UNSIGNED: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "expect",
];

pub fn sign(
    parts: &mut Parts,
    dest: &Destination<'_>,
    region: &str,
    service: &str,
    access_key_id: &str,
    secret_access_key: &str,
    time: SystemTime,
) -> Result<(), InjectError> {
    for name in DROPPED {
        parts.headers.remove(*name);
    }
    // The session's authority, the very one the upstream receives as
    // `Host` / `:authority` (`proxy::target`), whatever the agent wrote.
    let authority = super::target::outgoing_authority(&super::target::SessionHost {
        host: dest.host,
        port: dest.port,
        transport: if dest.tls {
            super::Transport::Tls
        } else {
            super::Transport::Plain
        },
    });
    let host = http::HeaderValue::from_str(&authority)
        .map_err(|_| InjectError::Sign("bad host".into()))?;
    parts.headers.remove(http::header::HOST);
    parts.headers.insert(http::header::HOST, host);
    let url = format!(
        "https://{authority}{}",
        parts.uri.path_and_query().map_or("/", |pq| pq.as_str())
    );
    let declared = parts
        .headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let has_body = parts.headers.contains_key(http::header::TRANSFER_ENCODING)
        || parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let body = match declared.as_deref() {
        Some("UNSIGNED-PAYLOAD") => SignableBody::UnsignedPayload,
        Some(hash) => SignableBody::Precomputed(hash.to_owned()),
        None if has_body => SignableBody::UnsignedPayload,
        None => SignableBody::Bytes(&[]),
    };
    let mut settings = SigningSettings::default();
    if service == "s3" && declared.is_none() {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let identity = Credentials::new(access_key_id, secret_access_key, None, None, "airlock").into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(service)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| InjectError::Sign(e.to_string()))?
        .into();
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter(|(n, _)| !UNSIGNED.contains(&n.as_str()))
        .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?)))
        .collect();
    let signable = SignableRequest::new(parts.method.as_str(), &url, headers.into_iter(), body)
        .map_err(|e| InjectError::Sign(e.to_string()))?;
    let (instructions, _signature) = aws_sign(signable, &params)
        .map_err(|e| InjectError::Sign(e.to_string()))?
        .into_parts();
    let mut req = http::Request::from_parts(std::mem::replace(parts, empty_parts()), ());
    instructions.apply_to_request_http1x(&mut req);
    *parts = req.into_parts().0;
    if let Some(v) = parts.headers.get_mut(http::header::AUTHORIZATION) {
        v.set_sensitive(true);
    }
    Ok(())
}

fn empty_parts() -> Parts {
    http::Request::new(()).into_parts().0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// AWS's published SigV4 test suite case `get-vanilla`, for a session
    /// to `example.amazonaws.com` whose request carries `Host: host`.
    fn sign_get_vanilla(host: &str) -> Parts {
        let (mut parts, ()) = http::Request::get("/")
            .header("host", host)
            .body(())
            .unwrap()
            .into_parts();
        let dest = Destination {
            host: "example.amazonaws.com",
            port: 443,
            tls: true,
        };
        // 2015-08-30T12:36:00Z
        let time = SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160);
        sign(
            &mut parts,
            &dest,
            "us-east-1",
            "service",
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            time,
        )
        .unwrap();
        parts
    }

    #[test]
    fn matches_the_aws_test_vector() {
        let parts = sign_get_vanilla("example.amazonaws.com");
        let auth = parts.headers["authorization"].to_str().unwrap();
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(parts.headers["x-amz-date"], "20150830T123600Z");
    }

    /// Issue #15, item 1: the signed host is the session's, not a `Host`
    /// the agent wrote (the same request with `Host: evil.tenant` gets the
    /// same signature, over `example.amazonaws.com`).
    #[test]
    fn signs_the_sessions_authority_not_the_agents_host() {
        let parts = sign_get_vanilla("evil.tenant");
        assert_eq!(parts.headers["host"], "example.amazonaws.com");
        assert!(parts.headers["authorization"].to_str().unwrap().ends_with(
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        ));
    }
}
