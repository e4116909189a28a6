//! The validated vocabulary shared by the store, the service layer and the
//! request path: names that are known to be well formed, and the ways a
//! secret can be injected into a request, and the enums stored as words.

mod injection;
mod names;
pub(crate) mod words;

pub use injection::{Injection, InjectionError};
pub use names::{AgentName, NameError, SecretName};
pub use words::UnknownWord;
pub(crate) use words::word_enum;
