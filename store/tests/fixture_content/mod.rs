//! What the committed format fixtures hold, shared by the test that reads them
//! (`tests/format_fixtures.rs`) and the example that writes a new version's
//! (`examples/write_format_fixtures.rs`).

use strata_store::wal::WalRecord;
use strata_store::{stale_nan, Exemplar, Labels, Metadata, MetricType, Sample};

/// The content both fixtures hold: a few series with regular, irregular, constant and special values.
pub fn series() -> Vec<(Labels, Vec<Sample>)> {
    let mut out: Vec<(Labels, Vec<Sample>)> = (0..4)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "fixture_requests_total".to_string()),
                ("instance", format!("host-{i}:9100")),
                ("job", "node".to_string()),
            ]);
            let samples = (0..50)
                .map(|k| {
                    let t = 1_700_000_000_000 + k * 15_000 + if k % 7 == 3 { 4 } else { 0 };
                    let v = match i {
                        0 => (k * 3) as f64,
                        1 => 0.25 * k as f64,
                        2 => 42.0,
                        _ if k == 10 => stale_nan(),
                        _ if k == 11 => f64::INFINITY,
                        _ => (k as f64).sqrt(),
                    };
                    Sample::new(t, v)
                })
                .collect();
            (labels, samples)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

pub fn wal_records() -> Vec<WalRecord> {
    let s = series();
    vec![
        WalRecord::Series(
            s.iter()
                .enumerate()
                .map(|(i, (l, _))| (i as u32 + 1, l.clone()))
                .collect(),
        ),
        WalRecord::Samples(
            s.iter()
                .enumerate()
                .flat_map(|(i, (_, xs))| xs.iter().map(move |x| (i as u32 + 1, x.t, x.v)))
                .collect(),
        ),
        WalRecord::Exemplars(vec![(
            1,
            Exemplar {
                labels: Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")]),
                value: 3.0,
                t: 1_700_000_015_000,
            },
        )]),
        WalRecord::Metadata(vec![(
            "fixture_requests_total".into(),
            Metadata {
                metric_type: MetricType::Counter,
                help: "Requests.".into(),
                unit: String::new(),
            },
        )]),
    ]
}
