use std::net::IpAddr;

use strata_store::flows::search::{SearchRequest, SortOrder};
use strata_store::flows::{FlowConfig, FlowRecord, FlowStore};

use super::*;

const T0: i64 = 1_764_194_400_000_000_000;

/// Golden records: each has a distinct `src.pod`, which the assertions name.
fn golden() -> Vec<FlowRecord> {
    let mut out = Vec::new();
    let mut r = FlowRecord::default();
    r.src.pod = "jobs-1".into();
    r.src.namespace = "tenant-jobs".into();
    r.src.workload = "report-builder".into();
    r.src.ip = Some(IpAddr::from([10, 0, 1, 7]));
    r.dst.namespace = "prod".into();
    r.dst.workload = "core-api".into();
    r.dst.ip = Some(IpAddr::from([10, 0, 4, 2]));
    r.dst.port = 8080;
    r.protocol = "tcp".into();
    r.http.status = vec![(200, 2), (503, 1)];
    r.http.methods = vec!["GET".into(), "POST".into()];
    r.bytes_tx = 1834;
    r.interval_end = T0 + 1_000_000_000;
    out.push(r);

    let mut r = FlowRecord::default();
    r.src.pod = "jobs-2".into();
    r.src.namespace = "tenant-jobs".into();
    r.src.workload = "report-builder".into();
    r.src.ip = Some(IpAddr::from([10, 0, 1, 8]));
    r.dst.namespace = "prod".into();
    r.dst.workload = "core-api".into();
    r.dst.port = 8080;
    r.protocol = "tcp".into();
    r.http.status = vec![(200, 5)];
    r.http.methods = vec!["GET".into()];
    r.bytes_tx = 99;
    r.interval_end = T0 + 2_000_000_000;
    out.push(r);

    let mut r = FlowRecord::default();
    r.src.pod = "notify-1".into();
    r.src.namespace = "prod".into();
    r.src.workload = "notifier".into();
    r.dst.name = "api.twilio.com".into();
    r.dst.ip = Some("2001:db8::5".parse().unwrap());
    r.dst.port = 443;
    r.protocol = "tcp".into();
    r.tcp.retransmits = 3;
    r.bytes_tx = 5000;
    r.interval_end = T0 + 3_000_000_000;
    out.push(r);

    let mut r = FlowRecord::default();
    r.src.pod = "web-1".into();
    r.src.namespace = "prod".into();
    r.src.workload = "web".into();
    r.dst.namespace = "kube-system".into();
    r.dst.workload = "coredns".into();
    r.dst.port = 53;
    r.protocol = "udp".into();
    r.dns.query = "nope.example.com".into();
    r.dns.rcode = "NXDOMAIN".into();
    r.interval_end = T0 + 4_000_000_000;
    out.push(r);
    out
}

/// A store holding the golden records, committed.
fn golden_store() -> (tempfile::TempDir, FlowStore) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FlowConfig {
        retention_ns: 0,
        writer_heap_bytes: 15_000_000,
        ..FlowConfig::default()
    };
    let store = FlowStore::open(dir.path(), cfg).unwrap();
    store.append(&golden(), T0).unwrap();
    store.commit().unwrap();
    (dir, store)
}

fn pods(store: &FlowStore, filter: &str) -> Vec<String> {
    let q = super::filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let mut out = Vec::new();
    store
        .search(
            &SearchRequest {
                filter: &q,
                start_ns: 0,
                end_ns: i64::MAX,
                limit: 100,
                order: SortOrder::Asc,
            },
            &mut |r| {
                out.push(r.src.pod);
                true
            },
        )
        .unwrap();
    out
}

#[test]
fn every_operator_selects_the_golden_records() {
    let (_dir, store) = golden_store();
    let cases: &[(&str, &[&str])] = &[
        ("", &["jobs-1", "jobs-2", "notify-1", "web-1"]),
        (
            r#"src.namespace="tenant-jobs" and dst.workload="core-api" and http.status>=500"#,
            &["jobs-1"],
        ),
        (r#"dst.name=~".*twilio.*""#, &["notify-1"]),
        (r#"dst.name!~".*twilio.*""#, &["jobs-1", "jobs-2", "web-1"]),
        (
            r#"tcp.retransmits>0 or dns.rcode="NXDOMAIN""#,
            &["notify-1", "web-1"],
        ),
        (r#"not src.namespace="prod""#, &["jobs-1", "jobs-2"]),
        (r#"src.namespace!="prod""#, &["jobs-1", "jobs-2"]),
        ("protocol=udp", &["web-1"]),
        ("dst.port=8080", &["jobs-1", "jobs-2"]),
        ("dst.port!=8080", &["notify-1", "web-1"]),
        ("bytes_tx>1834", &["notify-1"]),
        ("bytes_tx>=1834", &["jobs-1", "notify-1"]),
        ("bytes_tx<99", &["web-1"]),
        ("bytes_tx<=99", &["jobs-2", "web-1"]),
        ("http.status=200", &["jobs-1", "jobs-2"]),
        ("http.status!=503", &["jobs-2", "notify-1", "web-1"]),
        ("http.methods=POST", &["jobs-1"]),
        (r#"http.methods=~"P.*""#, &["jobs-1"]),
        ("src.ip=10.0.1.7", &["jobs-1"]),
        ("src.ip=10.0.0.0/16", &["jobs-1", "jobs-2"]),
        (r#"dst.ip="2001:db8::/32""#, &["notify-1"]),
        ("dst.ip!=10.0.4.2", &["jobs-2", "notify-1", "web-1"]),
        (
            &format!("interval.end>{}", T0 + 2_000_000_000),
            &["notify-1", "web-1"],
        ),
        (
            r#"interval.end<="2025-11-26T22:00:02Z""#,
            &["jobs-1", "jobs-2"],
        ),
        (
            r#"(src.workload="notifier" or src.workload="web") and not protocol="udp""#,
            &["notify-1"],
        ),
        (
            r#"NOT (dst.workload = "core-api" OR dst.port = 53)"#,
            &["notify-1"],
        ),
        // Key fields and per-record columns mixed under and, or and not.
        (
            r#"dst.workload="core-api" and not bytes_tx>1834"#,
            &["jobs-1", "jobs-2"],
        ),
        (
            r#"not (bytes_tx>99 and src.namespace="prod")"#,
            &["jobs-1", "jobs-2", "web-1"],
        ),
        (
            r#"src.namespace="prod" or bytes_tx=99"#,
            &["jobs-2", "notify-1", "web-1"],
        ),
        (r#"src.workload="""#, &[]),
        (
            r#"dst.name!="""#,
            &["jobs-1", "jobs-2", "notify-1", "web-1"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(pods(&store, filter), *expected, "{filter}");
    }
}

fn err(filter: &str) -> FilterError {
    super::filter(filter)
        .err()
        .unwrap_or_else(|| panic!("{filter} should not compile"))
}

#[test]
fn errors_name_the_position_and_what_was_expected() {
    let e = err(r#"src.namespace="a" and"#);
    assert_eq!(e.position, 21);
    assert!(e.expected.contains("field name"), "{e}");
    assert_eq!(e.found, "end of filter");

    let e = err(r#"src.namespace "a""#);
    assert_eq!(e.position, 14);
    assert!(e.expected.contains("operator"), "{e}");

    let e = err(r#"(src.namespace="a""#);
    assert_eq!(e.position, 18);
    assert!(e.expected.contains("`)`"), "{e}");

    let e = err(r#"src.nope="a""#);
    assert_eq!(e.position, 0);
    assert!(e.found.contains("src.nope"), "{e}");

    let e = err(r#"bytes_tx="many""#);
    assert_eq!(e.position, 9);
    assert!(e.expected.contains("unsigned integer"), "{e}");

    let e = err(r#"src.workload>"a""#);
    assert_eq!(e.position, 12);
    assert!(e.expected.contains("operator"), "{e}");

    let e = err(r#"dst.name=~"(""#);
    assert_eq!(e.position, 10);
    assert!(e.expected.contains("regular expression"), "{e}");

    let e = err(r#"src.ip=300.1.1.1"#);
    assert_eq!(e.position, 7);

    let e = err(r#"dst.name="unterminated"#);
    assert!(e.expected.contains("closing"), "{e}");

    let e = err("src.pod=a src.pod=b");
    assert_eq!(e.position, 10);
    assert!(e.expected.contains("`and`"), "{e}");

    let e = err("http.trace_ids=x");
    assert!(e.expected.contains("searchable"), "{e}");

    let e = err("src.pod ! a");
    assert_eq!(e.position, 8);

    let e = err("ünïcode=1");
    assert_eq!(e.position, 0);
}

proptest::proptest! {
    /// Any input is parsed or refused with a position inside it; never a panic.
    #[test]
    fn arbitrary_input_never_panics(src in "[ a-z_.=!~<>()\"0-9/:\\\\-]{0,40}") {
        if let Err(e) = super::filter(&src) {
            proptest::prop_assert!(e.position <= src.chars().count(), "{e}");
        }
    }
}

#[test]
fn absent_numbers_compare_as_zero() {
    let (_dir, store) = golden_store();
    // Only notify-1 retransmitted; the others have no value, which is 0.
    let cases: &[(&str, &[&str])] = &[
        ("tcp.retransmits=0", &["jobs-1", "jobs-2", "web-1"]),
        ("tcp.retransmits!=3", &["jobs-1", "jobs-2", "web-1"]),
        ("tcp.retransmits!=0", &["notify-1"]),
        ("tcp.retransmits<3", &["jobs-1", "jobs-2", "web-1"]),
        (
            "tcp.retransmits<=3",
            &["jobs-1", "jobs-2", "notify-1", "web-1"],
        ),
        (
            "tcp.retransmits>=0",
            &["jobs-1", "jobs-2", "notify-1", "web-1"],
        ),
        ("tcp.retransmits>0", &["notify-1"]),
        ("http.status<300", &["jobs-1", "jobs-2"]),
    ];
    for (filter, expected) in cases {
        assert_eq!(pods(&store, filter), *expected, "{filter}");
    }
}
