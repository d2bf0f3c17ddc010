//! Writes the current on-disk formats' fixtures into `tests/fixtures/new/` (a block and a WAL directory
//! holding `tests/fixture_content`), to be committed under the new format version's name when a format
//! changes. Run: `cargo run -p strata-store --example write_format_fixtures`.

#[path = "../tests/fixture_content/mod.rs"]
mod fixture_content;

use std::path::Path;

use fixture_content::{series, wal_records};
use strata_store::block::BlockWriter;
use strata_store::wal::{self, Wal, WalOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/new");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(out.join("blocks"))?;
    let mut w = BlockWriter::create(
        &out.join("blocks"),
        1_699_999_200_000,
        1_700_006_400_000,
        1,
        vec![],
    )?;
    for (l, s) in series() {
        w.add_series(&l, &s)?;
    }
    let e = w.finish()?.ok_or("empty block")?;
    std::fs::rename(out.join("blocks").join(&e.id), out.join("block"))?;
    std::fs::remove_dir(out.join("blocks"))?;
    let wal = Wal::open(&out.join("wal"), 0, vec![], WalOptions::default())?;
    for r in wal_records() {
        wal.log(wal::encode_record(&r), 0)?.wait()?;
    }
    println!("wrote {}", out.display());
    Ok(())
}
