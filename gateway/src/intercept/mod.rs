//! Transparent interception: agents' HTTPS reaches the gateway without any
//! proxy setting, identified by their cgroup.
//!
//! - [`cgroup`]: the cgroup2 and bpffs mounts (from `/proc/self/mountinfo`),
//!   cgroup paths, ids and levels, moving processes.
//! - [`bpf`]: loading the embedded eBPF object (`gateway-ebpf`), attaching
//!   the agent-side programs to the agents' parent cgroup with pinned links
//!   and maps (fail closed across restarts and crashes; adopted, never
//!   duplicated, by the next start), the getsockopt program on the
//!   gateway's own cgroup, [`bpf::release`], listings.
//! - [`nft`]: the nftables fallback's table (REDIRECT by `socket
//!   cgroupv2`), installed atomically with `nft -f -`.
//! - [`redirect`] and [`diag`]: what an accepted connection says about
//!   itself in either mode: original destination and cgroup id.
//! - [`agents`]: cgroup id → agent, rebuilt on each configuration change.
//! - [`netns`] and [`netns_follow`] (eBPF mode): the transparent listener
//!   opened inside each agent network namespace (containers), found by
//!   scanning and watching the agents' tree (docs/containers.md).
//! - [`events`]: the programs' own refusals (UDP, faults) read from their
//!   ring buffer into the audit, rate-limited per cgroup, and their
//!   aya-log diagnostics into the daemon's log.
//! - [`occupancy`]: how full the programs' maps are, walked when
//!   `/metrics` is scraped.
//! - [`run`]: `airlock run --agent NAME -- CMD`; [`agent_user`]: which
//!   user it runs as (by default the agent's own, created on first run);
//!   [`trust_view`]: the system trust store as the agent sees it (the OS
//!   roots plus Airlock's CA, in a mount namespace of its own);
//!   [`docker`]: `airlock docker run|flags`, a container as an agent (its
//!   `--cgroup-parent` under the agent's cgroup, the trust files mounted).
//! - [`settings`]: flags, environment and the `[intercept]` table,
//!   resolved and checked; [`state`]: the state file the CLI reads, and
//!   [`release`].
//!
//! Start-up ([`start()`], in [`mod@start`]): the daemon moves itself into
//! its own cgroup (`airlock-gateway`, outside the agents' parent, so its
//! own sockets are never redirected and the getsockopt program sees its
//! accepted sockets), binds the transparent listener on `127.0.0.1:PORT`
//! and `[::1]:PORT`, then loads the programs. It hands the listeners, the
//! agent map and the [`redirect::Redirector`] to the daemon, which serves
//! them with the gateway's transparent listener (`proxy::transparent`):
//! this module supplies identity and original destinations, and imports
//! nothing of the gateway.
//!
//! Modes (`--transparent`, `AIRLOCK_TRANSPARENT`): `auto` (the default:
//! eBPF when it loads; if it cannot (no BTF, a verifier or attach error,
//! no bpffs), the nftables fallback, saying why; if neither starts, the
//! explicit proxy only, saying why), `off` (the explicit proxy only),
//! `ebpf` (or `--require-ebpf`) and `nftables`: that mechanism or the
//! daemon refuses to start. Whichever mode starts removes the other
//! mode's leftovers of this daemon (its pin directory, its nft table),
//! so switching modes never stacks two redirects.

pub mod agent_user;
pub mod agents;
pub mod bpf;
pub mod cgroup;
pub mod diag;
pub mod docker;
pub mod events;
pub mod netns;
pub mod netns_follow;
pub mod nft;
pub mod occupancy;
pub mod redirect;
pub mod run;
pub mod settings;
pub mod start;
pub mod state;
pub mod trust_view;

pub use settings::{
    DEFAULT_AGENTS_CGROUP, DEFAULT_GATEWAY_CGROUP, DEFAULT_INTERCEPT_PORTS, DEFAULT_PIN_DIR,
    DEFAULT_TRANSPARENT_PORT, FileIntercept, InterceptArgs, InterceptSettings, SettingsError,
    TransparentMode,
};
pub use start::{Attached, InterceptError, StartError, Started, Transparent, start};
pub use state::{Released, STATE_FILE, State, read_state, release};
