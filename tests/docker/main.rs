//! Docker containers as agents, for real (root, eBPF, a real Docker
//! daemon: the running one, else one started for the tests with its
//! iptables and forwarding left alone, stopped after): `airlock docker run
//! --agent NAME` puts a container of an image with no CA certificates and
//! no proxy variables below the agent's cgroup, and curl, wget (GnuTLS)
//! and Python's urllib inside reach a loopback HTTPS upstream through the
//! gateway with the key injected and the audit row naming the agent.
//!
//! The image is `docker import`ed from host files (tests/support/docker.rs;
//! no registry is reachable), tagged by its inputs' digest and kept.
//! Everything else is the test's own: the cgroups and pins of
//! [`harness::Isolation`] (tests/transparent), its containers (`docker rm
//! -f` by id), and the cgroup v1 directories runc makes beside the unified
//! ones on a hybrid host.
//!
//! Host-networked containers share the host's namespace and are
//! intercepted as any process in the agent's cgroup. Bridge-networked
//! ones (Docker's default) have a namespace of their own: their tests
//! skip, saying so, until the daemon reports that it reaches agents'
//! network namespaces (`airlock status`).
//!
//! Without root, an eBPF object or Docker, the tests say SKIPPED and pass.

#[path = "../support/mod.rs"]
mod support;

#[path = "../transparent/harness.rs"]
#[macro_use]
#[allow(dead_code)]
mod harness;

#[macro_use]
mod common;

mod clients;
mod doctor;
mod errors;
mod faults;
