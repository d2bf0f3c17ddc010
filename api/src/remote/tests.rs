use proptest::prelude::*;
use prost::Message;
use strata_store::{
    is_stale_nan, stale_nan, Exemplar, Labels, MatchOp, Metadata, MetricType, Sample,
    SeriesSamples, SeriesWrite, WriteBatch,
};

use super::*;

const V1: Option<&str> = Some("application/x-protobuf");
const V2: Option<&str> = Some(CONTENT_TYPE_V2);
const SNAPPY: Option<&str> = Some("snappy");

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn label(name: &str, value: &str) -> prompb::Label {
    prompb::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series_v1(labels: &[(&str, &str)]) -> prompb::TimeSeries {
    prompb::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: vec![prompb::Sample {
            value: 1.0,
            timestamp: 1000,
        }],
        exemplars: vec![],
        histograms: vec![],
    }
}

fn body_v1(series: Vec<prompb::TimeSeries>) -> Vec<u8> {
    snappy(
        &prompb::WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec(),
    )
}

fn body_v2(symbols: &[&str], series: Vec<write_v2::TimeSeries>) -> Vec<u8> {
    let req = write_v2::Request {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        timeseries: series,
    };
    snappy(&req.encode_to_vec())
}

fn series_v2(labels_refs: Vec<u32>) -> write_v2::TimeSeries {
    write_v2::TimeSeries {
        labels_refs,
        samples: vec![write_v2::Sample {
            value: 1.0,
            timestamp: 1000,
            start_timestamp: 0,
        }],
        ..Default::default()
    }
}

/// The borrowing decoder as an owned batch, for comparison with [`decode_write`].
fn borrowed_v1(body: &[u8], limits: &DecodeLimits) -> Result<DecodedWrite, RemoteError> {
    let raw = decompress(body, limits)?;
    let w = decode_write_v1_borrowed(&raw, limits)?;
    Ok(DecodedWrite {
        version: WriteVersion::V1,
        batch: WriteBatch {
            series: w
                .series
                .iter()
                .map(|s| SeriesWrite {
                    labels: strata_store::SeriesLabels::to_labels(&w.labels_of(s)),
                    samples: s.samples.clone(),
                    exemplars: s.exemplars.clone(),
                })
                .collect(),
            metadata: w.metadata.clone(),
        },
        samples: w.samples,
        exemplars: w.exemplars,
        histograms: 0,
    })
}

/// Decodes a 1.0 body with both decoders (the borrowing one the server uses for ingest, and prost's),
/// asserts they agree, and returns the borrowing decoder's answer.
fn decode_v1(body: &[u8]) -> Result<DecodedWrite, RemoteError> {
    let limits = DecodeLimits::default();
    let owned = decode_write(body, V1, SNAPPY, &limits);
    let borrowed = borrowed_v1(body, &limits);
    match (&owned, &borrowed) {
        (Ok(a), Ok(b)) => {
            assert_eq!(bits(&a.batch), bits(&b.batch));
            assert_eq!(a.batch.metadata, b.batch.metadata);
            assert_eq!((a.samples, a.exemplars), (b.samples, b.exemplars));
        }
        (Err(a), Err(b)) => assert_eq!(a.status(), b.status(), "{a} vs {b}"),
        _ => panic!("decoders disagree: prost {owned:?}, borrowing {borrowed:?}"),
    }
    borrowed
}

/// Asserts the error's status and that its message contains `needle`.
fn assert_err(res: Result<DecodedWrite, RemoteError>, status: u16, needle: &str) {
    match res {
        Ok(w) => panic!("expected {status} error containing {needle:?}, got Ok({w:?})"),
        Err(e) => {
            let msg = e.to_string();
            assert_eq!(e.status(), status, "status of {msg:?}");
            assert!(msg.contains(needle), "{msg:?} does not contain {needle:?}");
        }
    }
}

/// Float bits, with -0.0 folded into 0.0: prost, like proto3 in general, does not send a field equal
/// to its default, and -0.0 == 0.0, so our encoders cannot carry the sign of zero.
fn fbits(v: f64) -> u64 {
    if v == 0.0 {
        0
    } else {
        v.to_bits()
    }
}

/// A comparable form of a batch: floats as bits, so NaNs (and the staleness marker) compare exactly.
type SeriesBits = (String, Vec<(i64, u64)>, Vec<(String, u64, i64)>);

fn bits(batch: &WriteBatch) -> Vec<SeriesBits> {
    batch
        .series
        .iter()
        .map(|s| {
            (
                s.labels.to_string(),
                s.samples.iter().map(|x| (x.t, fbits(x.v))).collect(),
                s.exemplars
                    .iter()
                    .map(|e| (e.labels.to_string(), fbits(e.value), e.t))
                    .collect(),
            )
        })
        .collect()
}

fn label_name() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9_]{0,6}"
}

fn labels_strategy() -> impl Strategy<Value = Labels> {
    (
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,10}",
        prop::collection::vec((label_name(), "\\PC{1,8}"), 0..5),
    )
        .prop_map(|(name, rest)| {
            Labels::from_pairs(
                std::iter::once(("__name__".to_string(), name))
                    .chain(rest.into_iter().filter(|(n, _)| n != "__name__")),
            )
        })
}

fn value_strategy() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(stale_nan()),
        Just(f64::INFINITY),
        Just(f64::NAN)
    ]
}

fn batch_strategy() -> impl Strategy<Value = WriteBatch> {
    let series = (
        labels_strategy(),
        prop::collection::vec((any::<i64>(), value_strategy()), 0..4),
        prop::collection::vec(
            (
                prop::collection::vec((label_name(), "[a-f0-9]{1,16}"), 0..3),
                any::<f64>(),
                any::<i64>(),
            ),
            0..2,
        ),
        any::<bool>(),
        (0..8i32, ".{0,20}", "[a-z]{0,6}"),
    );
    prop::collection::vec(series, 0..6).prop_map(|series| {
        let mut batch = WriteBatch::default();
        for (labels, samples, exemplars, with_metadata, (ty, help, unit)) in series {
            let name = labels.metric_name().unwrap_or_default().to_string();
            // One metadata entry per family, in order of first appearance: the shape both versions carry.
            if with_metadata && !batch.metadata.iter().any(|(f, _)| *f == name) {
                let metadata = Metadata {
                    metric_type: MetricType::from_i32(ty),
                    help,
                    unit,
                };
                if metadata != Metadata::default() {
                    batch.metadata.push((name, metadata));
                }
            }
            batch.series.push(SeriesWrite {
                labels,
                samples: samples
                    .into_iter()
                    .map(|(t, v)| Sample::new(t, v))
                    .collect(),
                exemplars: exemplars
                    .into_iter()
                    .map(|(l, value, t)| Exemplar {
                        labels: Labels::from_pairs(l),
                        value,
                        t,
                    })
                    .collect(),
            });
        }
        batch
    })
}

proptest! {
    #[test]
    fn v1_and_v2_round_trip_to_the_same_batch(batch in batch_strategy()) {
        let limits = DecodeLimits::default();
        let v1 = decode_write(&encode_write_v1(&batch).unwrap(), V1, SNAPPY, &limits).unwrap();
        let v2 = decode_write(&encode_write_v2(&batch).unwrap(), V2, SNAPPY, &limits).unwrap();
        prop_assert_eq!(v1.version, WriteVersion::V1);
        prop_assert_eq!(v2.version, WriteVersion::V2);
        prop_assert_eq!(bits(&v1.batch), bits(&batch));
        prop_assert_eq!(bits(&v2.batch), bits(&batch));
        // 2.0 carries metadata per series, so families come back in series order: compare as sets.
        let sorted = |m: &[(String, Metadata)]| {
            let mut m = m.to_vec();
            m.sort_by(|a, b| a.0.cmp(&b.0));
            m
        };
        prop_assert_eq!(&v1.batch.metadata, &batch.metadata);
        prop_assert_eq!(sorted(&v2.batch.metadata), sorted(&batch.metadata));
        let exemplars: usize = batch.series.iter().map(|s| s.exemplars.len()).sum();
        for d in [&v1, &v2] {
            prop_assert_eq!(d.samples, batch.sample_count());
            prop_assert_eq!(d.exemplars, exemplars);
            prop_assert_eq!(d.histograms, 0);
        }
    }

    #[test]
    fn borrowing_decoder_agrees_with_prost(batch in batch_strategy()) {
        let d = decode_v1(&encode_write_v1(&batch).unwrap()).unwrap();
        prop_assert_eq!(bits(&d.batch), bits(&batch));
    }

    #[test]
    fn borrowing_decoder_never_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = DecodeLimits::default();
        // Whatever it accepts, prost accepts identically (the reverse may differ only for inputs no
        // sender writes, such as protobuf groups).
        if let Ok(b) = borrowed_v1(&snappy(&body), &limits) {
            let a = decode_write(&snappy(&body), V1, SNAPPY, &limits);
            prop_assert!(a.is_ok(), "prost refused what the borrowing decoder took: {:?}", a);
            prop_assert_eq!(bits(&a.unwrap().batch), bits(&b.batch));
        } else if let Err(e) = borrowed_v1(&snappy(&body), &limits) {
            prop_assert!(matches!(e.status(), 400 | 413), "{}", e);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = DecodeLimits::default();
        for ct in [V1, V2] {
            // Raw bytes exercise the snappy decoder, compressed bytes the protobuf decoder and validation.
            if let Err(e) = decode_write(&body, ct, SNAPPY, &limits) {
                prop_assert!(matches!(e.status(), 400 | 413), "{}", e);
            }
            if let Err(e) = decode_write(&snappy(&body), ct, SNAPPY, &limits) {
                prop_assert!(matches!(e.status(), 400 | 413), "{}", e);
            }
        }
        let _ = decode_read(&body, &limits);
        let _ = decode_read(&snappy(&body), &limits);
        let _ = decode_chunked_frame(&body, &limits);
    }
}

#[test]
fn stale_marker_keeps_its_bits() {
    let batch = WriteBatch {
        series: vec![SeriesWrite {
            labels: Labels::from_pairs([("__name__", "up")]),
            samples: vec![Sample::new(1, stale_nan()), Sample::new(2, f64::NAN)],
            exemplars: vec![],
        }],
        metadata: vec![],
    };
    let d = decode_v1(&encode_write_v1(&batch).unwrap()).unwrap();
    assert!(is_stale_nan(d.batch.series[0].samples[0].v));
    assert!(!is_stale_nan(d.batch.series[0].samples[1].v));
}

#[test]
fn content_type_picks_the_version() {
    let body = body_v1(vec![series_v1(&[("__name__", "up")])]);
    let limits = DecodeLimits::default();
    for ct in [
        None,
        Some(""),
        V1,
        Some("application/x-protobuf;proto=prometheus.WriteRequest"),
    ] {
        assert_eq!(
            decode_write(&body, ct, SNAPPY, &limits).unwrap().version,
            WriteVersion::V1,
            "{ct:?}"
        );
    }
    let ct = Some("Application/X-Protobuf; proto=\"io.prometheus.write.v2.Request\"");
    let v2 = body_v2(&["", "__name__", "up"], vec![series_v2(vec![1, 2])]);
    assert_eq!(
        decode_write(&v2, ct, None, &limits).unwrap().version,
        WriteVersion::V2
    );
    for ct in [
        "text/plain",
        "application/json",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
    ] {
        assert_err(
            decode_write(&body, Some(ct), SNAPPY, &limits),
            415,
            "unsupported content type",
        );
    }
    assert_err(
        decode_write(&body, V1, Some("gzip"), &limits),
        415,
        "\"gzip\"",
    );
    assert_eq!(
        decode_write(&body, V1, Some("Snappy"), &limits)
            .unwrap()
            .samples,
        1
    );
}

#[test]
fn truncated_snappy_is_a_bad_request() {
    let body = body_v1(vec![series_v1(&[("__name__", "up"), ("job", "node")])]);
    assert_err(decode_v1(&body[..body.len() - 3]), 400, "snappy");
    assert_err(decode_v1(&[]), 400, "snappy");
}

#[test]
fn garbage_protobuf_is_a_bad_request() {
    assert_err(
        decode_v1(&snappy(&[0xff, 0xff, 0xff, 0x01, 0x02])),
        400,
        "cannot decode prometheus.WriteRequest",
    );
    let res = decode_write(&snappy(b"\x22\x05ab"), V2, SNAPPY, &DecodeLimits::default());
    assert_err(res, 400, "cannot decode io.prometheus.write.v2.Request");
}

#[test]
fn invalid_label_sets_are_refused_with_the_series_named() {
    let ok = series_v1(&[("__name__", "up")]);
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("", "x"), ("__name__", "up")],
            "series 1: label name is empty",
        ),
        (
            &[("__name__", "up"), ("1abc", "x")],
            "series 1: label name \"1abc\" is invalid",
        ),
        (
            &[("__name__", "up"), ("a-b", "x")],
            "series 1: label name \"a-b\" is invalid",
        ),
        (
            &[("__name__", "1up")],
            "series 1: metric name \"1up\" is invalid",
        ),
        (
            &[("__name__", "up"), ("job", "a"), ("instance", "b")],
            "series 1: labels are not sorted by name: \"job\" comes before \"instance\"",
        ),
        (
            &[("__name__", "up"), ("a", "1"), ("a", "2")],
            "series 1: duplicate label name \"a\"",
        ),
        (&[("a", "")], "series 1: empty label set"),
        (&[], "series 1: empty label set"),
    ];
    for (labels, want) in cases {
        assert_err(
            decode_v1(&body_v1(vec![ok.clone(), series_v1(labels)])),
            400,
            want,
        );
    }
}

#[test]
fn invalid_utf8_and_bad_metadata_are_refused() {
    // Label { name: "a", value: b"\xff" } inside TimeSeries inside WriteRequest, by hand.
    let label = [0x0a, 0x01, b'a', 0x12, 0x01, 0xff];
    let series = [&[0x0a, label.len() as u8][..], &label].concat();
    let req = [&[0x0a, series.len() as u8][..], &series].concat();
    assert_err(
        decode_v1(&snappy(&req)),
        400,
        "cannot decode prometheus.WriteRequest",
    );

    let metadata = |name: &str| prompb::MetricMetadata {
        r#type: 1,
        metric_family_name: name.into(),
        ..Default::default()
    };
    let req = prompb::WriteRequest {
        timeseries: vec![],
        metadata: vec![metadata("ok_total"), metadata("not ok")],
    };
    assert_err(
        decode_v1(&snappy(&req.encode_to_vec())),
        400,
        "metadata 1: metric family name \"not ok\" is invalid",
    );
}

#[test]
fn huge_label_value_is_refused() {
    let huge = "a".repeat(10 << 20);
    let body = body_v1(vec![series_v1(&[("__name__", "up"), ("blob", &huge)])]);
    assert_err(
        decode_v1(&body),
        400,
        "series 0: label \"blob\" value is 10485760 bytes, over the limit of 4096",
    );
}

#[test]
fn long_label_name_and_too_many_labels_are_refused() {
    let long = "a".repeat(2000);
    let body = body_v1(vec![series_v1(&[("__name__", "up"), (&long, "x")])]);
    assert_err(
        decode_v1(&body),
        400,
        "is 2000 bytes, over the limit of 1024",
    );
    let names: Vec<String> = (0..200).map(|i| format!("l{i:03}")).collect();
    let labels: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "x")).collect();
    assert_err(
        decode_v1(&body_v1(vec![series_v1(&labels)])),
        400,
        "series 0: 200 labels, over the limit of 128",
    );
}

#[test]
fn series_without_metric_name_is_accepted_and_empty_values_dropped() {
    let d = decode_v1(&body_v1(vec![series_v1(&[("job", "node"), ("zone", "")])])).unwrap();
    assert_eq!(
        d.batch.series[0].labels,
        Labels::from_pairs([("job", "node")])
    );
}

#[test]
fn size_limits_are_enforced_before_work() {
    let body = body_v1(vec![series_v1(&[("__name__", "up")]); 10]);
    let limits = DecodeLimits {
        max_body_bytes: body.len() - 1,
        ..DecodeLimits::default()
    };
    assert_err(
        decode_write(&body, V1, SNAPPY, &limits),
        413,
        "over the limit of",
    );

    // A snappy header announcing 1 GiB is refused without allocating it.
    let mut bomb = Vec::new();
    prost::encoding::encode_varint(1 << 30, &mut bomb);
    bomb.extend_from_slice(&[0; 16]);
    assert_err(
        decode_v1(&bomb),
        413,
        "decompressed body would be 1073741824 bytes",
    );

    let limits = DecodeLimits {
        max_series: 5,
        ..DecodeLimits::default()
    };
    assert_err(
        decode_write(&body, V1, SNAPPY, &limits),
        413,
        "request has 10 series, over the limit of 5",
    );
}

#[test]
fn native_histograms_are_refused_clearly() {
    let mut ts = series_v1(&[("__name__", "latency")]);
    ts.histograms.push(prompb::Histogram {
        count: Some(prompb::HistogramCount::CountInt(3)),
        schema: 3,
        positive_spans: vec![prompb::BucketSpan {
            offset: -2,
            length: 2,
        }],
        positive_deltas: vec![1, 1],
        timestamp: 1000,
        ..Default::default()
    });
    assert_err(
        decode_v1(&body_v1(vec![ts])),
        400,
        "series 0: native histograms are not supported yet",
    );

    let mut ts = series_v2(vec![1, 2]);
    ts.histograms.push(prompb::Histogram {
        count: Some(prompb::HistogramCount::CountFloat(1.5)),
        ..Default::default()
    });
    let res = decode_write(
        &body_v2(&["", "__name__", "x"], vec![ts]),
        V2,
        SNAPPY,
        &DecodeLimits::default(),
    );
    assert_err(res, 400, "native histograms are not supported yet");
}

#[test]
fn v2_symbol_errors_are_named() {
    let limits = DecodeLimits::default();
    let decode =
        |symbols: &[&str], series| decode_write(&body_v2(symbols, series), V2, SNAPPY, &limits);
    assert_err(
        decode(&["", "__name__", "up"], vec![series_v2(vec![1, 9])]),
        400,
        "series 0: symbol reference 9 is out of range (3 symbols)",
    );
    assert_err(
        decode(&["x", "__name__", "up"], vec![series_v2(vec![1, 2])]),
        400,
        "symbols[0] must be the empty string, got \"x\"",
    );
    assert_err(
        decode(&["", "__name__", "up"], vec![series_v2(vec![1, 2, 1])]),
        400,
        "labels_refs has odd length 3",
    );
    assert_err(
        decode(
            &["", "__name__", "up", "1abc"],
            vec![series_v2(vec![1, 2, 3, 2])],
        ),
        400,
        "label name \"1abc\" is invalid",
    );
    let mut ts = series_v2(vec![1, 2]);
    ts.metadata = Some(write_v2::Metadata {
        r#type: 1,
        help_ref: 7,
        unit_ref: 0,
    });
    assert_err(
        decode(&["", "__name__", "up"], vec![ts]),
        400,
        "series 0: metadata help: symbol reference 7",
    );
    let mut ts = series_v2(vec![1, 2]);
    ts.exemplars.push(write_v2::Exemplar {
        labels_refs: vec![5, 2],
        value: 1.0,
        timestamp: 1,
    });
    assert_err(
        decode(&["", "__name__", "up"], vec![ts]),
        400,
        "series 0: exemplar 0: symbol reference 5",
    );
    // An empty request is valid.
    assert_eq!(decode(&[], vec![]).unwrap().batch, WriteBatch::default());
}

#[test]
fn v2_metadata_becomes_family_metadata() {
    let mut a = series_v2(vec![1, 2, 3, 4]);
    a.metadata = Some(write_v2::Metadata {
        r#type: 1,
        help_ref: 5,
        unit_ref: 0,
    });
    let mut b = series_v2(vec![1, 2, 3, 6]);
    b.metadata = a.metadata;
    let body = body_v2(
        &[
            "",
            "__name__",
            "http_requests_total",
            "code",
            "200",
            "Requests served.",
            "500",
        ],
        vec![a, b],
    );
    let d = decode_write(&body, V2, SNAPPY, &DecodeLimits::default()).unwrap();
    let want = Metadata {
        metric_type: MetricType::Counter,
        help: "Requests served.".into(),
        unit: String::new(),
    };
    assert_eq!(
        d.batch.metadata,
        vec![("http_requests_total".to_string(), want)]
    );
    assert_eq!((d.samples, d.batch.series.len()), (2, 2));
}

fn read_request(matchers: Vec<prompb::LabelMatcher>, types: Vec<i32>) -> Vec<u8> {
    let req = prompb::ReadRequest {
        queries: vec![prompb::Query {
            start_timestamp_ms: 1000,
            end_timestamp_ms: 2000,
            matchers,
            hints: None,
        }],
        accepted_response_types: types,
    };
    encode_read_request(&req).unwrap()
}

fn matcher(ty: i32, name: &str, value: &str) -> prompb::LabelMatcher {
    prompb::LabelMatcher {
        r#type: ty,
        name: name.into(),
        value: value.into(),
    }
}

#[test]
fn read_request_decodes_matchers_and_response_types() {
    use prompb::matcher_type::*;
    let body = read_request(
        vec![
            matcher(EQ, "__name__", "up"),
            matcher(NEQ, "job", "x"),
            matcher(RE, "i", "a|b"),
            matcher(NRE, "z", "c.*"),
        ],
        vec![
            prompb::response_type::STREAMED_XOR_CHUNKS,
            prompb::response_type::SAMPLES,
        ],
    );
    let req = decode_read(&body, &DecodeLimits::default()).unwrap();
    let q = &req.queries[0];
    assert_eq!((q.start_ms, q.end_ms), (1000, 2000));
    let ops: Vec<MatchOp> = q.matchers.iter().map(|m| m.op).collect();
    assert_eq!(
        ops,
        [
            MatchOp::Equal,
            MatchOp::NotEqual,
            MatchOp::Regex,
            MatchOp::NotRegex
        ]
    );
    assert!(q.matchers[2].matches("b") && !q.matchers[2].matches("ab"));
    assert_eq!(req.response_type(), ResponseType::StreamedXorChunks);

    let req = decode_read(&read_request(vec![], vec![]), &DecodeLimits::default()).unwrap();
    assert_eq!(req.response_type(), ResponseType::Samples);
}

#[test]
fn bad_read_requests_are_refused() {
    let limits = DecodeLimits::default();
    let err =
        decode_read(&read_request(vec![matcher(7, "job", "x")], vec![]), &limits).unwrap_err();
    assert_eq!(
        (err.status(), err.to_string()),
        (
            400,
            "query 0: unknown matcher type 7 for label \"job\"".into()
        )
    );
    let err =
        decode_read(&read_request(vec![matcher(2, "job", "(")], vec![]), &limits).unwrap_err();
    assert!(
        err.status() == 400 && err.to_string().starts_with("query 0: invalid matcher"),
        "{err}"
    );
    let err = decode_read(&read_request(vec![], vec![5]), &limits).unwrap_err();
    assert_eq!(err.status(), 400);
    let err = decode_read(b"\x10garbage", &limits).unwrap_err();
    assert_eq!(err.status(), 400);
}

#[test]
fn read_samples_round_trip() {
    let results = vec![
        vec![SeriesSamples {
            labels: Labels::from_pairs([("__name__", "up"), ("job", "node")]),
            samples: vec![Sample::new(1000, 1.0), Sample::new(2000, 0.0)],
        }],
        vec![],
    ];
    let body = encode_read_samples(&results).unwrap();
    let resp = decode_read_response(&body, &DecodeLimits::default()).unwrap();
    assert_eq!(resp.results.len(), 2);
    let ts = &resp.results[0].timeseries[0];
    assert_eq!(
        ts.labels,
        vec![label("__name__", "up"), label("job", "node")]
    );
    assert_eq!(
        ts.samples,
        vec![
            prompb::Sample {
                value: 1.0,
                timestamp: 1000
            },
            prompb::Sample {
                value: 0.0,
                timestamp: 2000
            }
        ]
    );
    assert!(resp.results[1].timeseries.is_empty());
}

#[test]
fn chunked_frames_round_trip_and_check_crc() {
    let limits = DecodeLimits::default();
    let labels = Labels::from_pairs([("__name__", "up")]);
    let mut stream = Vec::new();
    encode_chunked_frame(
        &mut stream,
        0,
        &[(labels.clone(), vec![(1000, 2000, vec![0, 2, 0xaa, 0xbb])])],
    );
    let first_len = stream.len();
    encode_chunked_frame(&mut stream, 1, &[]);

    let (msg, used) = decode_chunked_frame(&stream, &limits).unwrap().unwrap();
    assert_eq!(used, first_len);
    assert_eq!(msg.query_index, 0);
    let chunk = &msg.chunked_series[0].chunks[0];
    assert_eq!(
        (chunk.min_time_ms, chunk.max_time_ms, chunk.r#type),
        (1000, 2000, prompb::chunk_encoding::XOR)
    );
    assert_eq!(chunk.data, [0, 2, 0xaa, 0xbb]);
    let (msg, used) = decode_chunked_frame(&stream[first_len..], &limits)
        .unwrap()
        .unwrap();
    assert_eq!((msg.query_index, used), (1, stream.len() - first_len));

    // The frame header: uvarint length, then the big-endian CRC32-Castagnoli of the message.
    let len = stream[0] as usize;
    let crc = u32::from_be_bytes(stream[1..5].try_into().unwrap());
    assert_eq!(crc, crc32c::crc32c(&stream[5..5 + len]));

    assert!(decode_chunked_frame(&stream[..first_len - 1], &limits)
        .unwrap()
        .is_none());
    let mut corrupt = stream.clone();
    corrupt[first_len - 1] ^= 1;
    let err = decode_chunked_frame(&corrupt, &limits).unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}

/// A key whose varint exceeds 32 bits is refused by both decoders (found by the property test above).
#[test]
fn keys_wider_than_32_bits_are_refused() {
    // Key 0x1_0000_0059: field 11 with wire type 1 plus bit 32, then a length-delimited payload.
    let body = [0xd9, 0x80, 0x80, 0x80, 0x10, 0x00];
    let limits = DecodeLimits::default();
    assert!(decode_write(&snappy(&body), V1, SNAPPY, &limits).is_err());
    let e = borrowed_v1(&snappy(&body), &limits).unwrap_err();
    assert!(e.to_string().contains("32 bits"), "{e}");
}
