//! Transparent interception end to end, for real (root, eBPF or
//! nftables): the daemon attaches its programs to (or installs its nft
//! table for) a test-only agents' parent cgroup, and real clients started
//! with `airlock run --agent NAME -- CMD` — with no proxy variables at all
//! — reach a loopback HTTPS upstream through the gateway, with the
//! credential injected and the agent identified by its cgroup: curl,
//! Python requests, Node's fetch, `git ls-remote`. Each scenario runs in
//! both modes (the nftables fallback forced with `--transparent
//! nftables`).
//!
//! Every test uses its own cgroups (`airlock-test-<random>.slice`, the
//! gateway's `airlock-test-<random>-gw`), its own pin directory
//! (`/sys/fs/bpf/airlock-test-<random>`), its own nft table
//! (`inet airlock_test_<random>`) and intercepts only its own upstream's
//! ports, so it neither sees nor disturbs anything else on the machine.
//! [`Isolation`] removes all of it (pins, links, the table, cgroups and
//! the processes in them) however the test ends.
//!
//! Without root, without an eBPF object in the build (eBPF tests) or
//! without `nft` (nftables tests), the tests say so and pass without
//! checking anything.
//!
//! One module per behaviour; [`harness`] holds what they share.

#[path = "../support/mod.rs"]
mod support;

#[macro_use]
mod harness;

mod agent_rm;
mod clients;
mod escape;
mod fallback;
mod git;
mod kernel_refusals;
mod map_metrics;
mod mcp;
mod netns;
mod stale_records;
mod unknown_cgroups;
