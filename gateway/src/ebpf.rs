//! The eBPF object embedded in the binary, so `airlock` is self-contained.
//!
//! `cargo xtask build-ebpf` builds `gateway-ebpf` with nightly and leaves
//! the object at `target/ebpf/airlock.bpf.o`; `build.rs` embeds it when it
//! is there. A plain `cargo build` without it still works (for editing and
//! for hosts without eBPF) and the daemon then says the transparent path
//! is unavailable in this build.

#[cfg(airlock_ebpf)]
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/airlock.bpf.o"));

/// The embedded object, if this build has one.
pub fn object() -> Option<&'static [u8]> {
    #[cfg(airlock_ebpf)]
    {
        Some(OBJECT)
    }
    #[cfg(not(airlock_ebpf))]
    {
        None
    }
}

#[cfg(test)]
mod tests {
    #[cfg(airlock_ebpf)]
    #[test]
    fn the_embedded_object_is_an_elf_for_bpf() {
        let obj = super::object().unwrap();
        assert_eq!(&obj[..4], b"\x7fELF");
        // e_machine at offset 18: EM_BPF = 247, little endian.
        assert_eq!(u16::from_le_bytes([obj[18], obj[19]]), 247);
    }
}
