//! AWS requests are signed with SigV4, checked against a reference
//! signature.

use crate::support::gw::Gw;

#[test]
fn signs_aws_requests_with_sigv4() {
    let gw = Gw::start();
    let host = gw.host();
    gw.add_secret(
        "aws",
        &["--path", "/echo/s3/**", "--aws-sigv4", "us-east-1/s3"],
        "AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    let out = gw.curl(&[
        "-H",
        "Authorization: AWS4-HMAC-SHA256 Credential=dummy",
        &gw.up.url("/echo/s3/bucket/key"),
    ]);
    assert_eq!(Gw::code(&out), 200, "{out:#?}");
    let seen = gw.up.last_request().unwrap();
    let auth = seen.header("authorization").unwrap().to_owned();
    assert!(
        auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
        "{auth}"
    );
    // Recompute the signature as AWS would, from what the upstream received.
    let amz_date = seen.header("x-amz-date").unwrap();
    let signed: Vec<&str> = auth
        .split("SignedHeaders=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .split(';')
        .collect();
    let headers: Vec<(&str, &str)> = signed
        .iter()
        .map(|h| {
            (
                *h,
                if *h == "host" {
                    host.as_str()
                } else {
                    seen.header(h).unwrap()
                },
            )
        })
        .collect();
    let expected = sigv4_reference(
        "GET",
        &format!("https://{host}{}", seen.path),
        &headers,
        amz_date,
        "AKIDEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    );
    assert!(
        auth.ends_with(&format!("Signature={expected}")),
        "{auth} vs {expected}"
    );
}

/// AWS's signer, fed what the upstream saw: the same signature means the
/// gateway signed exactly this request.
fn sigv4_reference(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    amz_date: &str,
    akid: &str,
    secret: &str,
) -> String {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let time = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ")
        .unwrap()
        .and_utc();
    let identity = aws_credential_types::Credentials::new(akid, secret, None, None, "test").into();
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = aws_sigv4::http_request::PayloadChecksumKind::XAmzSha256;
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(time.into())
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let unsigned: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(n, _)| *n != "x-amz-date" && *n != "x-amz-content-sha256")
        .copied()
        .collect();
    let req =
        SignableRequest::new(method, url, unsigned.into_iter(), SignableBody::Bytes(&[])).unwrap();
    let (_, signature) = sign(req, &params).unwrap().into_parts();
    signature
}
