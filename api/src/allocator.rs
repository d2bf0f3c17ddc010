//! Settings of mimalloc, the allocator of the `strata` binaries.

use std::ffi::{c_int, c_long};

/// `mi_option_purge_delay`: its place in `mi_option_e` (`mimalloc.h`, mimalloc 2 and 3), between
/// `mi_option_eager_commit_delay` (14) and `mi_option_use_numa_nodes` (16), which the bindings name;
/// they predate this option's name.
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// How long memory freed by the process stays committed before mimalloc returns it to the OS.
///
/// Ingest allocates a few large, short-lived buffers per request (the body, the decoded records, the
/// WAL payload, several MiB each). With mimalloc's default, their pages went back to the OS between
/// requests and every request faulted fresh, zeroed pages in again: up to a fifth of the flow store's
/// ingest CPU in a profile, and five times the page faults. Ten seconds keeps them while requests
/// keep coming; an idle server still gives the memory back.
const PURGE_DELAY_MS: c_long = 10_000;

/// Applies the settings; call first thing in `main`.
pub fn configure() {
    // SAFETY: `mi_option_set` stores a value in mimalloc's option table; any option number and value
    // is accepted at any time (mimalloc reads the option each time it schedules a purge).
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) }
}
