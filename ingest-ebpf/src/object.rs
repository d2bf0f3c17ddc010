//! The compiled kernel object embedded in the binary, the names inside it that the loader looks
//! up, and where it came from (built here with clang, or the committed prebuilt).

/// An 8-byte-aligned home for `include_bytes!`: the ELF parser reads headers in place.
#[repr(C, align(8))]
struct Aligned<Bytes: ?Sized> {
    bytes: Bytes,
}

static OBJECT: &Aligned<[u8]> = &Aligned {
    bytes: *include_bytes!(concat!(env!("OUT_DIR"), "/strata.bpf.o")),
};

/// The ELF object with every program and map, CO-RE relocations and BTF included.
pub fn object() -> &'static [u8] {
    &OBJECT.bytes
}

/// Hash of `bpf/` sources and compiler flags in this tree.
pub const SOURCE_HASH: &str = env!("STRATA_BPF_SOURCE_HASH");
/// Hash recorded beside `prebuilt/strata.bpf.o` when it was last refreshed.
pub const PREBUILT_SOURCE_HASH: &str = env!("STRATA_BPF_PREBUILT_HASH");

/// Where the embedded object came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectOrigin {
    /// Compiled from `bpf/` by this build.
    Clang,
    /// Copied from `prebuilt/` because no clang was found.
    Prebuilt,
}

pub const OBJECT_ORIGIN: ObjectOrigin =
    if matches!(env!("STRATA_BPF_OBJECT_ORIGIN").as_bytes(), b"clang") {
        ObjectOrigin::Clang
    } else {
        ObjectOrigin::Prebuilt
    };

/// Program names (the C function names) in the object.
pub mod program {
    pub const INET_SOCK_SET_STATE: &str = "strata_inet_sock_set_state";
    pub const TCP_RETRANSMIT_SKB: &str = "strata_tcp_retransmit_skb";
    pub const CGROUP_INGRESS: &str = "strata_cgroup_ingress";
    pub const CGROUP_EGRESS: &str = "strata_cgroup_egress";
    /// Iterator over `sock_stats` (`iter/bpf_map_elem`) that refreshes each live socket's
    /// counters from the socket; run before each read of the map.
    pub const SOCK_STATS_REFRESH: &str = "strata_sock_stats_refresh";
}

/// Map names in the object.
pub mod map {
    /// Ring buffer of events (`abi::ConnClosed`, `abi::HttpExchange`, `abi::DnsMessage`).
    pub const EVENTS: &str = "events";
    /// LRU hash: `u64` socket id → `abi::SockStats`.
    pub const SOCK_STATS: &str = "sock_stats";
    /// LRU hash: `abi::DnsKey` → query time.
    pub const DNS_PENDING: &str = "dns_pending";
    /// Per-CPU array of `u64`, indexed by `abi::Counter::slot`.
    pub const COUNTERS: &str = "counters";
    /// Array of one `u32`: the epoch of the HTTP slots' latency maximum, advanced by user space
    /// after each read of `sock_stats`.
    pub const HTTP_EPOCH: &str = "http_epoch";
}

/// `.rodata` tunables the loader may set before load.
pub mod global {
    /// `u64`: unread ring-buffer bytes past which a write wakes the reader.
    pub const RINGBUF_WAKEUP_BYTES: &str = "ringbuf_wakeup_bytes";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn require_all() -> bool {
        std::env::var("STRATA_REQUIRE_ALL").as_deref() == Ok("1")
    }

    /// Straight to the process's stderr: libtest captures eprintln! of passing tests.
    fn say_skipped(why: &str) {
        use std::io::Write;
        let _ = std::io::stderr().write_all(format!("\n*** SKIPPED: {why} ***\n").as_bytes());
    }

    #[test]
    fn embedded_object_is_an_aligned_bpf_elf() {
        let bytes = object();
        assert_eq!(bytes.as_ptr() as usize % 8, 0);
        assert_eq!(&bytes[..4], b"\x7fELF");
        // e_machine at offset 18 (little endian): 247 is EM_BPF.
        assert_eq!(u16::from_le_bytes([bytes[18], bytes[19]]), 247);
        let text = String::from_utf8_lossy(bytes);
        for section in [".BTF", ".BTF.ext", "license"] {
            assert!(text.contains(section), "object lacks {section}");
        }
        assert!(
            !text.contains(".debug_info"),
            "DWARF should be stripped, BTF kept"
        );
    }

    #[test]
    fn object_names_every_program_and_map() {
        let text = String::from_utf8_lossy(object());
        for name in [
            program::INET_SOCK_SET_STATE,
            program::TCP_RETRANSMIT_SKB,
            program::CGROUP_INGRESS,
            program::CGROUP_EGRESS,
            program::SOCK_STATS_REFRESH,
            map::EVENTS,
            map::SOCK_STATS,
            map::DNS_PENDING,
            map::COUNTERS,
            map::HTTP_EPOCH,
            global::RINGBUF_WAKEUP_BYTES,
        ] {
            assert!(text.contains(name), "object lacks symbol {name}");
        }
    }

    #[test]
    fn clang_is_present_when_everything_is_required() {
        if OBJECT_ORIGIN == ObjectOrigin::Prebuilt {
            assert!(
                !require_all(),
                "STRATA_REQUIRE_ALL=1 but no clang-14 was found: install clang-14 and llvm-14"
            );
            say_skipped("no clang-14 on this machine; the committed prebuilt object is embedded");
        }
    }

    #[test]
    fn committed_object_is_built_from_these_sources() {
        if SOURCE_HASH == PREBUILT_SOURCE_HASH {
            return;
        }
        let fix = "run `STRATA_UPDATE_PREBUILT=1 cargo build -p strata-ebpf` and commit \
                   ingest-ebpf/prebuilt/";
        match OBJECT_ORIGIN {
            ObjectOrigin::Clang => {
                panic!("prebuilt/strata.bpf.o is stale (sources {SOURCE_HASH}, prebuilt {PREBUILT_SOURCE_HASH}): {fix}")
            }
            ObjectOrigin::Prebuilt => {
                assert!(
                    !require_all(),
                    "prebuilt object is stale and no clang: {fix}"
                );
                say_skipped(&format!(
                    "prebuilt object is stale and no clang here to prove it: {fix}"
                ));
            }
        }
    }
}
