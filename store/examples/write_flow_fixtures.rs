//! Writes a flow store in the current format into `tests/fixtures/new/flows/`: one hourly partition of
//! two segments holding records 0–39 of `tests/flow_fixture_content`, records 40–59 only in the WAL.
//! Commit it as `tests/fixtures/vN/flows/` when the partition or WAL format changes; never regenerate
//! an old one. Run: `cargo run -p strata-store --example write_flow_fixtures`.

#[path = "../tests/flow_fixture_content/mod.rs"]
mod flow_fixture_content;

use flow_fixture_content::{record, COMMITTED, RECORDS, T0};
use strata_store::flows::{FlowConfig, FlowRecord, FlowStore};

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/new/flows");
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = FlowConfig {
        retention_ns: 0,
        ..FlowConfig::default()
    };
    let store = FlowStore::open(&dir, cfg).expect("open");
    let now = T0 + 3_600_000_000_000;
    let mut from = 0;
    for to in COMMITTED.into_iter().chain([RECORDS]) {
        let records: Vec<FlowRecord> = (from..to).map(record).collect();
        store.append(&records, now).expect("append");
        if to != RECORDS {
            store.commit().expect("commit");
        }
        from = to;
    }
    // Left without close: the last records stay in the WAL only.
    std::mem::forget(store);
    println!("wrote {}", dir.display());
}
