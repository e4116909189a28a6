//! Airlock's eBPF programs, loaded and attached by the daemon (`gateway`,
//! module `intercept`). Names shared with userspace live in `gateway-common`.
//!
//! For now there is one program: a `cgroup/connect4` hook that allows every
//! connect. The transparent-interception logic comes later.
#![no_std]
#![no_main]

use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};

/// Allow the connect to proceed (the cgroup sock_addr verdict).
const ALLOW: i32 = 1;

// The function name is the program name the daemon looks up; it must equal
// `gateway_common::PROG_CONNECT4` (checked at compile time below).
const _: () = assert!(const_str_eq(
    gateway_common::PROG_CONNECT4,
    "airlock_connect4"
));

#[cgroup_sock_addr(connect4)]
pub fn airlock_connect4(ctx: SockAddrContext) -> i32 {
    match try_airlock_connect4(&ctx) {
        Ok(verdict) => verdict,
        // Never break an agent's networking on an internal error.
        Err(_) => ALLOW,
    }
}

fn try_airlock_connect4(_ctx: &SockAddrContext) -> Result<i32, i64> {
    Ok(ALLOW)
}

const fn const_str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
