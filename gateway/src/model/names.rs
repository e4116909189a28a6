//! Agent and secret names.
//!
//! Names appear in cgroup paths (`agent-NAME`), in placeholders
//! (`airlock:NAME`), on the command line and in URLs, so they are limited to
//! characters that need no escaping anywhere: lowercase ASCII letters,
//! digits, `-` and `_`, starting with a letter or digit, at most 63 bytes.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("the {kind} name is empty")]
    Empty { kind: &'static str },
    #[error("the {kind} name is longer than 63 characters")]
    TooLong { kind: &'static str },
    #[error(
        "the {kind} name {name:?} has a character other than a-z, 0-9, '-' or '_' \
         (or does not start with a letter or digit)"
    )]
    BadCharacter { kind: &'static str, name: String },
}

const MAX_NAME_LEN: usize = 63;

fn validate(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { kind });
    }
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !first_ok || !rest_ok {
        return Err(NameError::BadCharacter {
            kind,
            name: name.chars().take(80).collect(),
        });
    }
    Ok(())
}

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(name: &str) -> Result<Self, NameError> {
                validate($kind, name)?;
                Ok(Self(name.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $ty {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                validate($kind, &name)?;
                Ok(Self(name))
            }
        }

        impl From<$ty> for String {
            fn from(name: $ty) -> String {
                name.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

name_type!(
    /// The name of an agent: its identity in rules, grants, the audit trail
    /// and its cgroup (`agent-NAME`).
    AgentName,
    "agent"
);
name_type!(
    /// The name of a secret, as used in grants and `airlock:NAME` placeholders.
    SecretName,
    "secret"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["openai", "gh-token", "a", "x_1", "9lives"] {
            assert!(AgentName::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_what_needs_escaping() {
        for bad in ["", "-x", "Upper", "a b", "a/b", "a.b", "é", "_x"] {
            assert!(SecretName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            SecretName::parse(&"a".repeat(64)),
            Err(NameError::TooLong { kind: "secret" })
        );
    }
}
