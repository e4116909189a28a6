//! The validated vocabulary shared by the store, the service layer and the
//! request path: names that are known to be well formed, the ways a
//! secret can be injected into a request, and the addresses and cgroup
//! ids an agent connection carries ([`net`]).

mod injection;
mod names;
pub mod net;

pub use injection::{Injection, InjectionError};
pub use names::{AgentName, NameError, SecretName};
