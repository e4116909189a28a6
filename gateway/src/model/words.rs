//! Enums that are stored and sent as a word (`rate_limited`, `pending`).
//!
//! `word_enum!` writes the enum, `ALL`, `as_str`,
//! `FromStr`, `Display` and serde from one list of variants and words, so
//! the word is spelled once and every list of them derives from `ALL`.

use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

/// A word that names none of an enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{word:?} is not a {what}")]
pub struct UnknownWord {
    /// What the word should have named ("decision"), for the message.
    pub what: &'static str,
    pub word: String,
}

/// Writes a `Copy` enum whose values are words:
///
/// ```ignore
/// word_enum! {
///     /// Docs.
///     pub enum Colour as "colour" {
///         /// Docs.
///         Red => "red",
///     }
/// }
/// ```
macro_rules! word_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $( $(#[$attr:meta])* $variant:ident => $word:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$attr])* $variant, )+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored and serialized form.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownWord;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::model::words::parse(s, $what, $name::ALL, |v| v.as_str())
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str($crate::model::words::Visitor::<$name>::new($what))
            }
        }
    };
}
pub(crate) use word_enum;

/// `FromStr` for `word_enum!`: the value whose word is `s`.
pub fn parse<T: Copy>(
    s: &str,
    what: &'static str,
    all: &[T],
    word: impl Fn(T) -> &'static str,
) -> Result<T, UnknownWord> {
    all.iter()
        .copied()
        .find(|v| word(*v) == s)
        .ok_or_else(|| UnknownWord {
            what,
            word: s.to_owned(),
        })
}

/// Deserializes a `word_enum!` from a string without copying it.
pub struct Visitor<T> {
    what: &'static str,
    _value: PhantomData<T>,
}

impl<T> Visitor<T> {
    pub fn new(what: &'static str) -> Self {
        Visitor {
            what,
            _value: PhantomData,
        }
    }
}

impl<T: FromStr<Err = UnknownWord>> serde::de::Visitor<'_> for Visitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} word", self.what)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}
