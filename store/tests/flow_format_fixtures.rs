//! Every flow store format we have written stays readable: `tests/fixtures/vN/flows/` (one hourly
//! partition of two segments, and records only in the WAL, written by `cargo run -p strata-store
//! --example write_flow_fixtures`) opens and reads back exactly, before and after its partition is
//! merged, and takes new records. Versions 1 and 2 are rewritten into the current format at open.

mod fixture_copy;
mod flow_fixture_content;

use std::path::Path;

use flow_fixture_content::{record, COMMITTED, RECORDS, T0};
use strata_store::flows::filter::Filter;
use strata_store::flows::search::{SearchRequest, SortOrder};
use strata_store::flows::{FlowConfig, FlowRecord, FlowStore};

fn config() -> FlowConfig {
    FlowConfig {
        retention_ns: 0,
        ..FlowConfig::default()
    }
}

fn all(store: &FlowStore) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    store
        .search(
            &SearchRequest {
                filter: &Filter::All,
                start_ns: i64::MIN,
                end_ns: i64::MAX,
                limit: 1000,
                order: SortOrder::Asc,
            },
            &mut |r| {
                out.push(r);
                true
            },
        )
        .unwrap();
    out
}

fn reads_back(version: &str) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(version)
        .join("flows");
    // Opening replays the WAL and commits, so it works on a copy.
    let dir = tempfile::tempdir().unwrap();
    fixture_copy::copy_dir(&src, dir.path());
    let mut expected: Vec<FlowRecord> = (0..RECORDS).map(record).collect();
    let store = FlowStore::open(dir.path(), config()).expect("the flow store opens");
    assert_eq!(all(&store), expected, "{version} as written");
    // The two committed segments (one once rewritten), and one of the records replayed from the WAL.
    let partition = store.partitions_overlapping(T0, T0).remove(0);
    let committed = if version < "v3" { 1 } else { COMMITTED.len() };
    assert_eq!(partition.segment_count().unwrap(), committed + 1);
    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 1);
    assert_eq!(all(&store), expected, "{version} merged");
    // New records go into the old partition.
    let mut late = record(RECORDS);
    late.interval_end = T0 + 1_999_000_000_000;
    store.append(std::slice::from_ref(&late), T0).unwrap();
    store.close();
    drop(store);
    expected.push(late);
    let store = FlowStore::open(dir.path(), config()).unwrap();
    assert_eq!(all(&store), expected, "{version} with a new record");
}

/// Version 1 kept the blob of the stored-only fields in tantivy's document store.
#[test]
fn v1_flow_store_reads_back() {
    reads_back("v1");
}

/// Version 2 keeps it in a bytes column.
#[test]
fn v2_flow_store_reads_back() {
    reads_back("v2");
}

/// Version 3 keeps each partition's distinct keys in a key table (`keys`), records their numbers.
#[test]
fn v3_flow_store_reads_back() {
    reads_back("v3");
}
