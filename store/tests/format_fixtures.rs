//! Every on-disk format we have written stays readable: a block and a WAL directory written by format
//! version 1 are committed under `tests/fixtures/v1/` and must open and read back exactly. When a format
//! changes, add a `v2` fixture beside them (`cargo run -p strata-store --example
//! write_format_fixtures` writes the current version's into `tests/fixtures/new/`); never regenerate an
//! old one.

use std::path::{Path, PathBuf};

mod fixture_content;

use fixture_content::{series, wal_records};
use strata_store::block::Block;
use strata_store::wal;
use strata_store::{Labels, Sample};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn v1_block_reads_back() {
    let block = Block::open(&fixtures().join("v1/block")).expect("the v1 block opens");
    let got: Vec<(Labels, Vec<Sample>)> = block.all_series().collect::<Result<_, _>>().unwrap();
    let want = series();
    assert_eq!(got.len(), want.len());
    for ((gl, gs), (wl, ws)) in got.iter().zip(&want) {
        assert_eq!(gl, wl);
        let bits = |s: &[Sample]| s.iter().map(|x| (x.t, x.v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(gs), bits(ws), "{gl}");
    }
}

#[test]
fn v1_wal_replays() {
    // Replay may repair a torn tail in place, so it reads a copy.
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures().join("v1/wal")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    let replay = wal::replay(dir.path()).expect("the v1 WAL replays");
    assert_eq!(replay.damaged_segments, 0);
    let got: Vec<Vec<u8>> = replay.records.iter().map(wal::encode_record).collect();
    let want: Vec<Vec<u8>> = wal_records().iter().map(wal::encode_record).collect();
    assert_eq!(got, want);
}
