//! Writes a trace store in the current format into `tests/fixtures/new/traces/`: traces 1–3 cut into a
//! block, trace 4 only in the WAL. Commit it as `tests/fixtures/vN/traces/` when the format version
//! changes; never regenerate an old one.

#[path = "../tests/trace_fixture_content/mod.rs"]
mod trace_fixture_content;

use strata_store::traces::{TraceStore, TracesConfig};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/new/traces");
    let _ = std::fs::remove_dir_all(&dir);
    let store = TraceStore::open(&dir, TracesConfig::default()).expect("open");
    for t in 1..=3 {
        store
            .append(trace_fixture_content::trace(t))
            .expect("append");
    }
    store.cut(i64::MAX, true).expect("cut");
    store
        .append(trace_fixture_content::trace(4))
        .expect("append");
    // Left without close: trace 4 stays in the WAL only.
    std::mem::forget(store);
    println!("wrote {}", dir.display());
}
