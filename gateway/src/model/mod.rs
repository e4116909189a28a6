//! The validated vocabulary shared by the store, the service layer and the
//! request path: names that are known to be well formed, the ways a
//! secret can be injected into a request, the addresses and cgroup ids an
//! agent connection carries ([`net`]), and the enums stored as words.

mod injection;
mod names;
pub mod net;
pub(crate) mod words;

pub use injection::{GrantType, Injection, InjectionError, OAuth2Grant, path_rest_glob};
pub use names::{AgentName, NameError, SecretName};
pub use words::UnknownWord;
pub(crate) use words::word_enum;
