//! The trace stores of earlier versions (`tests/fixtures/vN/traces/`: a block with traces 1–3, a WAL
//! segment with trace 4, written by `cargo run -p strata-store --example write_trace_fixtures` when
//! that version was current) open and read back exactly, and their blocks compact with a block of the
//! current version into one of the current version. Version 1 kept spans row-wise; version 2 wrote
//! attribute keys as lists.

mod fixture_copy;
mod trace_fixture_content;

use strata_store::traces::block::BLOCK_FORMAT_VERSION;
use strata_store::traces::{TraceReader, TraceStore, TracesConfig};

#[test]
fn v1_trace_store_reads_back() {
    reads_back_and_compacts(1);
}

#[test]
fn v2_trace_store_reads_back() {
    reads_back_and_compacts(2);
}

fn reads_back_and_compacts(version: u32) {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/v{version}/traces"));
    // Opening may repair a WAL tail and cuts at close, so it works on a copy.
    let dir = tempfile::tempdir().unwrap();
    fixture_copy::copy_dir(&src, dir.path());
    let store = TraceStore::open(dir.path(), TracesConfig::default()).expect("the old store opens");
    assert_eq!(store.blocks().len(), 1);
    assert_eq!(store.blocks()[0].meta.format_version, version);
    assert_eq!(store.head_traces(), 1);
    assert_reads_back(&store);
    // The head (trace 4) is cut into a block of the current version at close.
    store.close();
    let cfg = TracesConfig {
        compact_min_blocks: 2,
        ..TracesConfig::default()
    };
    let store = TraceStore::open(dir.path(), cfg).unwrap();
    let versions: Vec<u32> = store
        .blocks()
        .iter()
        .map(|b| b.meta.format_version)
        .collect();
    assert_eq!(versions, [version, BLOCK_FORMAT_VERSION]);
    assert_reads_back(&store);
    assert_eq!(store.compact().unwrap(), 2);
    let versions: Vec<u32> = store
        .blocks()
        .iter()
        .map(|b| b.meta.format_version)
        .collect();
    assert_eq!(versions, [BLOCK_FORMAT_VERSION]);
    assert_reads_back(&store);
}

fn assert_reads_back(store: &TraceStore) {
    for t in 1..=4u8 {
        let got = store
            .trace_by_id(&[t; 16], None)
            .unwrap()
            .expect("trace present");
        assert_eq!(got.batches, trace_fixture_content::trace(t), "trace {t}");
    }
}
