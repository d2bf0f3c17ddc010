use proptest::prelude::*;
use strata_store::{Exemplar, Labels, Metadata, MetricType};

use super::*;

const NODE_EXPORTER: &str = include_str!("../../tests/fixtures/node_exporter_1.5.prom");
const BACKFILL: &str = include_str!("../../tests/fixtures/backfill.om.txt");

fn parse_all(input: &str, dialect: Dialect) -> Result<Vec<Entry>, ParseError> {
    entries(input, dialect).collect()
}

fn samples(entries: &[Entry]) -> Vec<(&Labels, Option<i64>, f64, Option<&Exemplar>)> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Sample {
                labels,
                t_ms,
                v,
                exemplar,
            } => Some((labels, *t_ms, *v, exemplar.as_ref())),
            Entry::Metadata { .. } => None,
        })
        .collect()
}

fn metadata(entries: &[Entry]) -> Vec<(&str, &Metadata)> {
    entries
        .iter()
        .filter_map(|e| match e {
            Entry::Metadata { family, metadata } => Some((family.as_str(), metadata)),
            Entry::Sample { .. } => None,
        })
        .collect()
}

fn sample(line: &str, dialect: Dialect) -> Entry {
    let mut all = parse_all(line, dialect).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn err(input: &str, dialect: Dialect) -> ParseError {
    parse_all(input, dialect).expect_err("expected a parse error")
}

#[test]
fn node_exporter_capture_parses_completely() {
    assert_eq!(Dialect::detect(NODE_EXPORTER), Dialect::PrometheusText);
    let all = parse_all(NODE_EXPORTER, Dialect::PrometheusText).unwrap();
    let samples = samples(&all);
    let sample_lines = NODE_EXPORTER
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count();
    assert_eq!(samples.len(), sample_lines);
    assert!(samples
        .iter()
        .all(|(_, t, _, e)| t.is_none() && e.is_none()));
    let meta = metadata(&all);
    assert_eq!(meta.len(), 283);
    assert!(meta.contains(&(
        "go_gc_duration_seconds",
        &Metadata {
            metric_type: MetricType::Summary,
            help: "A summary of the pause duration of garbage collection cycles.".into(),
            unit: String::new()
        }
    )));
    let cpu = meta
        .iter()
        .find(|(f, _)| *f == "node_cpu_seconds_total")
        .unwrap();
    assert_eq!(cpu.1.metric_type, MetricType::Counter);

    let idle = samples
        .iter()
        .find(|(l, ..)| {
            l.metric_name() == Some("node_cpu_seconds_total")
                && l.get("cpu") == Some("0")
                && l.get("mode") == Some("idle")
        })
        .unwrap();
    assert_eq!(idle.2, 243.14);
    // Empty values (duplex="", ifalias="") are absent labels.
    let lo = samples
        .iter()
        .find(|(l, ..)| {
            l.metric_name() == Some("node_network_info") && l.get("device") == Some("lo")
        })
        .unwrap();
    assert_eq!(lo.0.get("duplex"), None);
    assert_eq!(lo.0.get("operstate"), Some("unknown"));
    let uname = samples
        .iter()
        .find(|(l, ..)| l.metric_name() == Some("node_uname_info"))
        .unwrap();
    assert_eq!(uname.0.get("version"), Some("#1 SMP PREEMPT_DYNAMIC @0"));
}

#[test]
fn streaming_lines_match_whole_input() {
    let mut parser = Parser::new(Dialect::PrometheusText);
    let mut out = Vec::new();
    for line in NODE_EXPORTER.lines() {
        parser.parse_line(line, &mut out).unwrap();
    }
    parser.finish(&mut out).unwrap();
    assert_eq!(
        out,
        parse_all(NODE_EXPORTER, Dialect::PrometheusText).unwrap()
    );
}

#[test]
fn openmetrics_backfill_file() {
    assert_eq!(Dialect::detect(BACKFILL), Dialect::OpenMetrics);
    let all = parse_all(BACKFILL, Dialect::OpenMetrics).unwrap();
    let meta = metadata(&all);
    let families: Vec<&str> = meta.iter().map(|(f, _)| *f).collect();
    assert_eq!(
        families,
        [
            "http_requests",
            "request_duration_seconds",
            "temperature_celsius",
            "build",
            "feature"
        ]
    );
    assert_eq!(meta[1].1.unit, "seconds");
    assert_eq!(meta[1].1.metric_type, MetricType::Histogram);
    assert_eq!(
        meta[2].1.help,
        "Room temperature, \"quoted\" and a \\ backslash\nsecond line."
    );
    assert_eq!(
        (meta[3].1.metric_type, meta[4].1.metric_type),
        (MetricType::Info, MetricType::StateSet)
    );
    // Each family's metadata comes before its first sample.
    assert!(matches!(&all[0], Entry::Metadata { family, .. } if family == "http_requests"));

    let s = samples(&all);
    assert_eq!(s.len(), 16);
    assert_eq!(s[0].1, Some(1_700_000_000_000));
    assert_eq!(s[1].1, Some(1_700_000_015_001));
    let ex = s[1].3.unwrap();
    assert_eq!(
        ex.labels,
        Labels::from_pairs([("trace_id", "4bf92f3577b34da6a3ce929d0e0e4736")])
    );
    assert_eq!((ex.value, ex.t), (0.043, 1_700_000_014_500));
    assert_eq!(s[2].1, Some(1_700_000_000_000));
    assert_eq!(s[3].2, 1_699_990_000.5);
    // An exemplar without a timestamp takes the sample's.
    assert_eq!(s[5].3.unwrap().t, 1_700_000_000_250);
    assert_eq!(s[6].0.get("le"), Some("+Inf"));

    let t = s[9].0;
    assert_eq!(t.get("room"), Some("lab \"A\""));
    assert_eq!(t.get("note"), Some("line1\nline2"));
    assert_eq!(t.get("path"), Some("C:\\tmp"));
    assert_eq!((s[9].1, s[9].2), (Some(1_700_000_000_123), -35.0));
    assert!(s[10].2.is_nan() && !strata_store::is_stale_nan(s[10].2));
    assert_eq!((s[11].2, s[12].2), (f64::INFINITY, f64::NEG_INFINITY));
}

#[test]
fn dialect_from_content_type() {
    assert_eq!(
        Dialect::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        Some(Dialect::OpenMetrics)
    );
    assert_eq!(
        Dialect::from_content_type("text/plain; version=0.0.4"),
        Some(Dialect::PrometheusText)
    );
    assert_eq!(Dialect::from_content_type("application/json"), None);
}

#[test]
fn leading_blanks_are_tolerated() {
    let all = parse_all(
        "  # TYPE m gauge\n\t m{a=\"b\"} 1\n",
        Dialect::PrometheusText,
    )
    .unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn prometheus_text_tokens() {
    let Entry::Sample {
        labels,
        t_ms,
        v,
        exemplar,
    } = sample(
        "rpc_calls{ method = \"Get\" , code=\"ok\", }  1e3\t-1700000000123  ",
        Dialect::PrometheusText,
    )
    else {
        panic!()
    };
    assert_eq!(
        labels,
        Labels::from_pairs([("__name__", "rpc_calls"), ("code", "ok"), ("method", "Get")])
    );
    assert_eq!(
        (t_ms, v, exemplar),
        (Some(-1_700_000_000_123), 1000.0, None)
    );
    let Entry::Sample { labels, t_ms, .. } = sample("up{} 1", Dialect::PrometheusText) else {
        panic!()
    };
    assert_eq!(
        (labels, t_ms),
        (Labels::from_pairs([("__name__", "up")]), None)
    );
    let Entry::Sample { labels, .. } = sample(r#"x{a="\\\"\n\t"} 1"#, Dialect::PrometheusText)
    else {
        panic!()
    };
    assert_eq!(labels.get("a"), Some("\\\"\n\\t"));
    for (text, want) in [
        ("NaN", f64::NAN),
        ("+Inf", f64::INFINITY),
        ("-Inf", f64::NEG_INFINITY),
        ("-0.5", -0.5),
    ] {
        let Entry::Sample { v, .. } = sample(&format!("m {text}"), Dialect::PrometheusText) else {
            panic!()
        };
        assert_eq!(v.to_bits(), want.to_bits(), "{text}");
    }
    // Comments other than HELP/TYPE and blank lines yield nothing; HELP escapes are resolved
    // (only `\\` and `\n` in Prometheus text).
    let all = parse_all(
        "# a comment\n#nospace\n\n# HELP m a\\nb \\\\ c \\\"\nm 1\n",
        Dialect::PrometheusText,
    )
    .unwrap();
    assert_eq!(metadata(&all)[0].1.help, "a\nb \\ c \\\"");
    // `# EOF` is only a comment in Prometheus text.
    assert_eq!(
        parse_all("m 1\n# EOF\nm 2\n", Dialect::PrometheusText)
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn openmetrics_timestamps_are_seconds() {
    for (ts, want) in [
        ("1", 1000),
        ("1.5", 1500),
        ("0.001", 1),
        ("1.0019", 1001),
        ("-1.5", -1500),
        ("1e3", 1_000_000),
        ("1700000000.789", 1_700_000_000_789),
    ] {
        let Entry::Sample { t_ms, .. } =
            sample(&format!("m 1 {ts}\n# EOF\n"), Dialect::OpenMetrics)
        else {
            panic!()
        };
        assert_eq!(t_ms, Some(want), "{ts}");
    }
}

#[test]
fn errors_carry_line_numbers() {
    let cases: &[(&str, Dialect, usize, &str)] = &[
        (
            "m 1\nm{1a=\"x\"} 1\n",
            Dialect::PrometheusText,
            2,
            "invalid label name",
        ),
        (
            "m{a=\"x} 1\n",
            Dialect::PrometheusText,
            1,
            "unterminated value of label \"a\"",
        ),
        (
            "m{a=\"x\" 1\n",
            Dialect::PrometheusText,
            1,
            "expected ',' or '}'",
        ),
        ("m{a=x} 1\n", Dialect::PrometheusText, 1, "expected '\"'"),
        (
            "\n\nm abc\n",
            Dialect::PrometheusText,
            3,
            "invalid value \"abc\"",
        ),
        ("m\n", Dialect::PrometheusText, 1, "missing value for m"),
        (
            "m 1 1.5\n",
            Dialect::PrometheusText,
            1,
            "invalid timestamp \"1.5\"",
        ),
        (
            "m 1 2 3\n",
            Dialect::PrometheusText,
            1,
            "unexpected \"3\" after the timestamp",
        ),
        (
            "m{a=\"1\",a=\"2\"} 1\n",
            Dialect::PrometheusText,
            1,
            "duplicate label name \"a\"",
        ),
        (
            "# TYPE m bogus\n",
            Dialect::PrometheusText,
            1,
            "invalid metric type \"bogus\"",
        ),
        (
            "# TYPE m info\n",
            Dialect::PrometheusText,
            1,
            "invalid metric type \"info\"",
        ),
        (
            "# HELP 1m x\n",
            Dialect::PrometheusText,
            1,
            "invalid metric name \"1m\"",
        ),
        ("1m 1\n", Dialect::PrometheusText, 1, "invalid metric name"),
        ("m 1\n", Dialect::OpenMetrics, 2, "does not end with # EOF"),
        (
            "m 1\n# EOF\nm 2\n",
            Dialect::OpenMetrics,
            3,
            "unexpected data after # EOF",
        ),
        (
            "m 1 # 1\n# EOF\n",
            Dialect::OpenMetrics,
            1,
            "exemplar must start with a label set",
        ),
        (
            "m 1 # {a=\"b\"}\n# EOF\n",
            Dialect::OpenMetrics,
            1,
            "missing exemplar value",
        ),
        (
            "m 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            Dialect::OpenMetrics,
            1,
            "after the exemplar timestamp",
        ),
        (
            "m 1 # {a=\"b\"} 1\n",
            Dialect::PrometheusText,
            1,
            "exemplars are only valid in OpenMetrics",
        ),
        (
            "m 1 NaN\n# EOF\n",
            Dialect::OpenMetrics,
            1,
            "invalid timestamp \"NaN\"",
        ),
    ];
    for (input, dialect, line, needle) in cases {
        let e = err(input, *dialect);
        assert_eq!(e.line, *line, "{input:?}: {e}");
        assert!(
            e.message.contains(needle),
            "{input:?}: {e} does not contain {needle:?}"
        );
        assert_eq!(e.status(), 400);
    }
    let long = format!("m 1 # {{trace_id=\"{}\"}} 1\n# EOF\n", "a".repeat(130));
    assert!(err(&long, Dialect::OpenMetrics)
        .message
        .contains("over the limit of 128"));
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

proptest! {
    #[test]
    fn arbitrary_text_never_panics(input in "(\\PC|[#{}=\",\\\\ \n])*") {
        for dialect in [Dialect::PrometheusText, Dialect::OpenMetrics] {
            for entry in entries(&input, dialect) {
                if entry.is_err() {
                    break;
                }
            }
        }
    }

    #[test]
    fn rendered_samples_parse_back(
        name in "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        pairs in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,6}", "\\PC{0,10}", 0..5),
        v in any::<f64>(),
        t in prop::option::of(-1_000_000_000_000i64..4_000_000_000_000),
    ) {
        let pairs: Vec<(String, String)> = pairs.into_iter().filter(|(n, _)| n != "__name__").collect();
        let rendered: Vec<String> = pairs.iter().map(|(n, val)| format!("{n}=\"{}\"", escape(val))).collect();
        let value = if v.is_nan() { "NaN".to_string() } else if v.is_infinite() { format!("{}Inf", if v > 0.0 { "+" } else { "-" }) } else { format!("{v:?}") };
        let mut line = format!("{name}{{{}}} {value}", rendered.join(","));
        if let Some(t) = t {
            line.push_str(&format!(" {t}"));
        }
        let Entry::Sample { labels, t_ms, v: got, .. } = sample(&line, Dialect::PrometheusText) else {
            panic!("not a sample");
        };
        let want = Labels::from_pairs(std::iter::once(("__name__".to_string(), name)).chain(pairs));
        prop_assert_eq!(labels, want);
        prop_assert_eq!(t_ms, t);
        prop_assert!(got == v || (got.is_nan() && v.is_nan()));
    }
}
