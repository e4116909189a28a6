//! Explicit-proxy authentication: `Proxy-Authorization` carries the
//! agent's token, as the password of Basic credentials (any user name:
//! `HTTPS_PROXY=http://agent:TOKEN@host:10255`) or as a Bearer token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

/// The token in a `Proxy-Authorization` value, if it has one.
pub fn token_from_header(value: &[u8]) -> Option<Zeroizing<String>> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!rest.is_empty()).then(|| Zeroizing::new(rest.to_owned()));
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = Zeroizing::new(STANDARD.decode(rest).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (_user, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| Zeroizing::new(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_and_bearer() {
        let basic = format!("Basic {}", STANDARD.encode("agent:alk_tok"));
        assert_eq!(
            token_from_header(basic.as_bytes()).unwrap().as_str(),
            "alk_tok"
        );
        assert_eq!(
            token_from_header(b"Bearer alk_tok").unwrap().as_str(),
            "alk_tok"
        );
        assert_eq!(
            token_from_header(b"bearer   alk_tok ").unwrap().as_str(),
            "alk_tok"
        );
    }

    #[test]
    fn garbage_is_no_token() {
        for bad in [
            &b""[..],
            b"Basic",
            b"Basic !!!",
            b"Digest x",
            b"Bearer ",
            b"\xff\xfe",
            format!("Basic {}", STANDARD.encode("nocolon")).as_bytes(),
            format!("Basic {}", STANDARD.encode("user:")).as_bytes(),
        ] {
            assert!(token_from_header(bad).is_none(), "{bad:?}");
        }
    }
}
