//! `strata import openmetrics` backfills a file into blocks that the server then serves, like
//! `promtool tsdb create-blocks-from openmetrics`.

use std::fmt::Write;
use std::process::Command;

use strata_tests::{http, Strata};

const BIN: &str = env!("CARGO_BIN_EXE_strata-e2e");

#[test]
fn openmetrics_backfill_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backfill.om");
    let mut text = String::from(
        "# HELP backfill_requests_total Requests.\n# TYPE backfill_requests_total counter\n",
    );
    // Two series over 5 hours at 60 s: three 2-hour blocks.
    for host in ["a", "b"] {
        for i in 0..300 {
            let _ = writeln!(
                text,
                "backfill_requests_total{{host=\"{host}\"}} {} {}",
                i * 3,
                1_700_000_000 + i * 60
            );
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&file, text).unwrap();
    let data = dir.path().join("data");
    let out = Command::new(BIN)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&data)
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("imported 600 samples of 2 series into 3 blocks"),
        "{said}"
    );

    let s = Strata::start(BIN, &data, &[]);
    let client = http();
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/series"))
        .query(&[
            ("match[]", "backfill_requests_total"),
            ("start", "1700000000"),
            ("end", "1700018000"),
        ])
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2, "{v}");
    let v: serde_json::Value = client
        .get(s.url("/prometheus/api/v1/metadata"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(
        v["data"]["backfill_requests_total"][0]["type"], "counter",
        "{v}"
    );
    // A malformed file is refused with the line that is wrong.
    std::fs::write(
        &file,
        "backfill_requests_total{host=\"a\" 1 1700000000\n# EOF\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["import", "openmetrics"])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("other"))
        .arg("--quiet")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
