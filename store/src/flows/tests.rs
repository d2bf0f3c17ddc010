use tantivy::collector::Count;
use tantivy::query::AllQuery;

use super::aggregate::{AggFn, AggregateRequest};
use super::filter::{Cmp, Filter, Test};
use super::record::field_index;
use super::search::{SearchRequest, SortOrder};
use super::testdata::sample_records;
use super::*;

const T0: i64 = 1_764_194_400 * NS_PER_SEC; // an hour boundary

fn test_config() -> FlowConfig {
    FlowConfig {
        retention_ns: 0,
        commit_interval: Duration::from_secs(3600),
        writer_heap_bytes: 15_000_000,
        ..FlowConfig::default()
    }
}

fn term(field: &str, value: &str) -> Filter {
    Filter::Cond {
        field: field_index(field).unwrap(),
        test: Test::Text(value.into()),
    }
}

fn at_least(field: &str, v: u64) -> Filter {
    Filter::Cond {
        field: field_index(field).unwrap(),
        test: Test::Uint(Cmp::Ge, v),
    }
}

fn all(store: &FlowStore, filter: &Filter, order: SortOrder) -> Vec<FlowRecord> {
    let mut out = Vec::new();
    store
        .search(
            &SearchRequest {
                filter,
                start_ns: i64::MIN,
                end_ns: i64::MAX,
                limit: 1_000_000,
                order,
            },
            &mut |r| {
                out.push(r);
                true
            },
        )
        .unwrap();
    out
}

#[test]
fn records_read_back_exactly_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    let records = sample_records(300, T0);
    let out = store.append(&records, T0).unwrap();
    assert_eq!(out.accepted, 300);
    // Not searchable before the commit.
    assert!(all(&store, &Filter::All, SortOrder::Desc).is_empty());
    store.commit().unwrap();
    let got = all(&store, &Filter::All, SortOrder::Desc);
    let mut expected = records.clone();
    expected.reverse();
    assert_eq!(got, expected);
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
    // 300 s of records span one hourly partition.
    assert_eq!(store.partition_count(), 1);
}

#[test]
fn filters_select_the_expected_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    let records = sample_records(400, T0);
    store.append(&records, T0).unwrap();
    store.commit().unwrap();
    let q = Filter::And(vec![
        term("dst.workload", "server-1"),
        at_least("http.status", 500),
    ]);
    let got = all(&store, &q, SortOrder::Asc);
    let expected: Vec<_> = records
        .iter()
        .filter(|r| r.dst.workload == "server-1" && r.http.status.iter().any(|s| s.0 >= 500))
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    let got = all(&store, &term("http.methods", "GET"), SortOrder::Asc);
    assert_eq!(
        got.len(),
        records
            .iter()
            .filter(|r| !r.http.methods.is_empty())
            .count()
    );
}

#[test]
fn time_range_and_limit_are_honoured_across_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    // One record every 1000 s: spans several hourly partitions.
    let mut records = sample_records(20, T0);
    for (i, r) in records.iter_mut().enumerate() {
        r.interval_end = T0 + i as i64 * 1000 * NS_PER_SEC;
        r.interval_start = r.interval_end - NS_PER_SEC;
    }
    store.append(&records, T0 + 20_000 * NS_PER_SEC).unwrap();
    store.commit().unwrap();
    assert!(store.partition_count() >= 5);
    let mut got = Vec::new();
    let start = T0 + 3000 * NS_PER_SEC;
    let end = T0 + 15_000 * NS_PER_SEC;
    store
        .search(
            &SearchRequest {
                filter: &Filter::All,
                start_ns: start,
                end_ns: end,
                limit: 4,
                order: SortOrder::Desc,
            },
            &mut |r| {
                got.push(r.interval_end);
                true
            },
        )
        .unwrap();
    let expected: Vec<i64> = (3..=15)
        .rev()
        .map(|i| T0 + i * 1000 * NS_PER_SEC)
        .take(4)
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn aggregation_groups_and_ranks() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    let records = sample_records(500, T0);
    // Two batches, two commits: groups are merged across segments.
    store.append(&records[..200], T0).unwrap();
    store.commit().unwrap();
    store.append(&records[200..], T0).unwrap();
    store.commit().unwrap();
    let req = AggregateRequest::new(
        &["src.workload", "dst.workload"],
        vec![
            AggFn::parse("sum(bytes_tx)").unwrap(),
            AggFn::Count,
            AggFn::parse("max(tcp.srtt_us)").unwrap(),
        ],
        3,
    )
    .unwrap();
    let rows = store
        .aggregate(&Filter::All, i64::MIN, i64::MAX, &req)
        .unwrap();
    let mut model: HashMap<Vec<String>, (u64, u64, u64)> = HashMap::new();
    for r in &records {
        let e = model
            .entry(vec![r.src.workload.clone(), r.dst.workload.clone()])
            .or_default();
        e.0 += r.bytes_tx;
        e.1 += 1;
        e.2 = e.2.max(r.tcp.srtt_us);
    }
    let mut expected: Vec<_> = model.into_iter().collect();
    expected.sort_by(|a, b| b.1 .0.cmp(&a.1 .0).then(a.0.cmp(&b.0)));
    assert_eq!(rows.len(), 3);
    for (row, (key, (sum, count, max))) in rows.iter().zip(expected) {
        assert_eq!(row.key, key);
        assert_eq!(row.values, vec![sum as f64, count as f64, max as f64]);
    }
    assert!(AggFn::parse("sum(src.workload)").is_err());
    assert!(AggregateRequest::new(&["src.ip"], vec![AggFn::Count], 1).is_err());
}

/// Grouping by a number (hash-map groups) and by text (dense table), over time ranges that cover
/// whole partitions (no per-record range check) and parts of them: both agree with a model.
#[test]
fn aggregation_matches_a_model_for_every_key_kind_and_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    // 5000 records one second apart: two hourly partitions.
    let records = sample_records(5000, T0);
    let last = records.last().unwrap().interval_end;
    for chunk in records.chunks(1500) {
        assert_eq!(
            store.append(chunk, last).unwrap().accepted,
            chunk.len() as u64
        );
        store.commit().unwrap();
    }
    assert_eq!(store.partition_count(), 2);
    let aggs = vec![
        AggFn::parse("min(tcp.srtt_us)").unwrap(),
        AggFn::Count,
        AggFn::parse("avg(bytes_rx)").unwrap(),
        // A key field's number, read through the key table.
        AggFn::parse("max(dst.port)").unwrap(),
    ];
    let ranges = [
        (i64::MIN, i64::MAX),
        (T0, last),
        (T0 + 1000 * NS_PER_SEC, T0 + 4000 * NS_PER_SEC),
        (T0 + 3599 * NS_PER_SEC, T0 + 3600 * NS_PER_SEC),
    ];
    // Key fields only (a dense table of their value combinations), key fields mixed with columns,
    // and columns only.
    let keys: [&[&str]; 5] = [
        &["dst.port", "src.namespace"],
        &["src.namespace", "dst.workload", "dns.rcode"],
        &["protocol"],
        &["src.port", "dst.workload"],
        &["tcp.retransmits"],
    ];
    for by in keys {
        let req = AggregateRequest::new(by, aggs.clone(), 1000).unwrap();
        for (start, end) in ranges {
            let rows = store.aggregate(&Filter::All, start, end, &req).unwrap();
            let mut model: HashMap<Vec<String>, (u64, u64, u64, u64)> = HashMap::new();
            for r in records
                .iter()
                .filter(|r| (start..=end).contains(&r.interval_end))
            {
                let key = by
                    .iter()
                    .map(|f| match r.field(field_index(f).unwrap()) {
                        FieldRef::U64(0) => String::new(),
                        FieldRef::U64(n) => n.to_string(),
                        FieldRef::Str(s) => s.to_owned(),
                        other => panic!("{other:?}"),
                    })
                    .collect();
                let e = model.entry(key).or_insert((u64::MAX, 0, 0, 0));
                // Absent numbers are 0 in aggregates.
                e.0 = e.0.min(r.tcp.srtt_us);
                e.1 += 1;
                e.2 += r.bytes_rx;
                e.3 = e.3.max(r.dst.port);
            }
            let mut expected: Vec<_> = model
                .into_iter()
                .map(|(k, (min, n, sum, port))| {
                    (
                        k,
                        vec![min as f64, n as f64, sum as f64 / n as f64, port as f64],
                    )
                })
                .collect();
            expected.sort_by(|a, b| b.1[0].total_cmp(&a.1[0]).then(a.0.cmp(&b.0)));
            expected.truncate(req.top);
            let got: Vec<_> = rows.into_iter().map(|r| (r.key, r.values)).collect();
            assert_eq!(got, expected, "by {by:?} over [{start}, {end}]");
        }
    }
}

#[test]
fn field_values_complete_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    store.append(&sample_records(100, T0), T0).unwrap();
    store.commit().unwrap();
    let v = store
        .field_values("src.workload", "client-", i64::MIN, i64::MAX, 3)
        .unwrap();
    assert_eq!(v, vec!["client-0", "client-1", "client-2"]);
    let v = store
        .field_values("dst.name", "", i64::MIN, i64::MAX, 10)
        .unwrap();
    assert_eq!(v, vec!["api.twilio.com"]);
    assert!(store
        .field_values("bytes_tx", "", i64::MIN, i64::MAX, 10)
        .is_err());
}

#[test]
fn acknowledged_records_survive_a_crash_before_commit() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(250, T0);
    {
        let store = FlowStore::open(dir.path(), test_config()).unwrap();
        store.append(&records[..100], T0).unwrap();
        store.commit().unwrap();
        store.append(&records[100..], T0).unwrap();
        // Dropped without close: the writers' uncommitted documents are lost, as in a crash; only
        // the WAL has the last 150.
    }
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
    drop(store);
    // And a clean reopen replays nothing twice.
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc).len(), 250);
}

#[test]
fn retention_drops_whole_old_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FlowConfig {
        retention_ns: 2 * 3600 * NS_PER_SEC,
        ..test_config()
    };
    let store = FlowStore::open(dir.path(), cfg).unwrap();
    let mut records = sample_records(6, T0);
    for (i, r) in records.iter_mut().enumerate() {
        r.interval_end = T0 + i as i64 * 3600 * NS_PER_SEC + NS_PER_SEC;
        r.interval_start = r.interval_end - NS_PER_SEC;
    }
    let now = T0 + 6 * 3600 * NS_PER_SEC;
    // The first four are older than the retention and refused.
    let out = store.append(&records, now).unwrap();
    assert_eq!((out.accepted, out.rejected), (2, 4));
    assert!(out.first_error.unwrap().contains("retention"));
    store.commit().unwrap();
    assert_eq!(store.partition_count(), 2);
    let dropped = store.apply_retention(now + 3600 * NS_PER_SEC).unwrap();
    assert_eq!(dropped, 1);
    assert_eq!(store.partition_count(), 1);
    assert_eq!(
        all(&store, &Filter::All, SortOrder::Asc),
        records[5..].to_vec()
    );
    let dirs = fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            partition::parse_dir_name(&e.as_ref().unwrap().file_name().to_string_lossy()).is_some()
        })
        .count();
    assert_eq!(dirs, 1);
}

#[test]
fn invalid_records_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    let mut records = sample_records(3, T0);
    records[1].interval_end = 0;
    records[2].src.port = 70_000;
    let out = store.append(&records, T0).unwrap();
    assert_eq!((out.accepted, out.rejected), (1, 2));
    let far = sample_records(1, T0 + 10 * 3600 * NS_PER_SEC);
    assert_eq!(store.append(&far, T0).unwrap().rejected, 1);
}

#[test]
fn tenants_are_isolated() {
    let dir = tempfile::tempdir().unwrap();
    let s = FlowStorage::open(dir.path(), test_config()).unwrap();
    s.for_write("team-a")
        .unwrap()
        .append(&sample_records(10, T0), T0)
        .unwrap();
    s.commit_all().unwrap();
    assert!(s.for_read("team-b").unwrap().is_none());
    assert!(s.for_write("../x").is_err());
    let b = s.for_write("team-b").unwrap();
    assert!(all(&b, &Filter::All, SortOrder::Asc).is_empty());
    s.close();
    drop(s);
    let s = FlowStorage::open(dir.path(), test_config()).unwrap();
    let a = s.for_read("team-a").unwrap().unwrap();
    assert_eq!(all(&a, &Filter::All, SortOrder::Asc).len(), 10);
}

/// Everything the query path answers, for comparing a store with itself before and after a change
/// of layout: records in both orders, a filtered search, aggregations and field values.
fn answers(store: &FlowStore) -> Vec<String> {
    let mut out = vec![
        format!("{:?}", all(store, &Filter::All, SortOrder::Asc)),
        format!("{:?}", all(store, &Filter::All, SortOrder::Desc)),
    ];
    let q = Filter::And(vec![
        term("dst.workload", "server-1"),
        at_least("http.status", 500),
    ]);
    out.push(format!("{:?}", all(store, &q, SortOrder::Desc)));
    let req = AggregateRequest::new(
        &["src.workload", "dst.port"],
        vec![AggFn::parse("sum(bytes_tx)").unwrap(), AggFn::Count],
        100,
    )
    .unwrap();
    for (start, end) in [
        (i64::MIN, i64::MAX),
        (T0 + 600 * NS_PER_SEC, T0 + 4000 * NS_PER_SEC),
    ] {
        let rows = store.aggregate(&Filter::All, start, end, &req).unwrap();
        out.push(format!(
            "{:?}",
            rows.iter().map(|r| (&r.key, &r.values)).collect::<Vec<_>>()
        ));
    }
    for field in ["src.pod", "dns.query", "http.methods"] {
        let values = store
            .field_values(field, "", i64::MIN, i64::MAX, 1000)
            .unwrap();
        out.push(format!("{values:?}"));
    }
    out
}

/// Records over two hourly partitions, appended in `batches` commits: several segments each.
fn store_with_segments(dir: &Path, records: &[FlowRecord], batches: usize) -> FlowStore {
    let store = FlowStore::open(dir, test_config()).unwrap();
    let now = records.last().unwrap().interval_end;
    for chunk in records.chunks(records.len().div_ceil(batches)) {
        assert_eq!(store.append(chunk, now).unwrap().rejected, 0);
        store.commit().unwrap();
    }
    store
}

fn segment_counts(store: &FlowStore) -> Vec<usize> {
    store
        .partitions_overlapping(i64::MIN, i64::MAX)
        .iter()
        .map(|p| p.segment_count().unwrap())
        .collect()
}

#[test]
fn merging_closed_partitions_keeps_every_answer() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(5000, T0);
    let store = store_with_segments(dir.path(), &records, 6);
    assert!(segment_counts(&store).iter().all(|&n| n > 1));
    let before = answers(&store);
    let disk_before = store.disk_bytes();
    // A searcher taken before the merge keeps reading the old segments.
    let old_searcher = store
        .partitions_overlapping(T0, T0)
        .remove(0)
        .reader
        .searcher();
    let old_segments = old_searcher.segment_readers().len();

    // Only the partition whose hour is over is merged.
    let first_hour_over = T0 + 3600 * NS_PER_SEC;
    assert_eq!(store.merge_closed_partitions(first_hour_over).unwrap(), 1);
    let counts = segment_counts(&store);
    assert_eq!(counts[0], 1);
    assert!(counts[1] > 1);
    assert_eq!(answers(&store), before);
    assert_eq!(old_searcher.segment_readers().len(), old_segments);
    assert_eq!(old_searcher.search(&AllQuery, &Count).unwrap(), 3600);

    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 1);
    assert_eq!(segment_counts(&store), vec![1, 1]);
    assert_eq!(answers(&store), before);
    // Nothing left to merge.
    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 0);
    store.commit().unwrap();
    assert!(store.disk_bytes() < disk_before);

    // The merge is what a reopened store sees, and nothing is replayed twice.
    store.close();
    drop(store);
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(segment_counts(&store), vec![1, 1]);
    assert_eq!(answers(&store), before);
}

#[test]
fn a_partition_being_written_is_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(3000, T0);
    let store = store_with_segments(dir.path(), &records[..2000], 4);
    // An append since the last commit keeps the writer open: not closed, not merged.
    store.append(&records[2000..], T0).unwrap();
    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 0);
    store.commit().unwrap();
    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 1);
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
}

/// Appends go on while a partition is merged, and a crash then (the store dropped without closing)
/// loses no acknowledged record and duplicates none: the merge keeps the partition's commit payload,
/// so the WAL replay starts where it did.
#[test]
fn records_appended_during_a_merge_survive_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(6000, T0);
    let (old, late) = records.split_at(5000);
    let store = Arc::new(store_with_segments(dir.path(), old, 8));
    let merger = {
        let store = store.clone();
        std::thread::spawn(move || store.merge_closed_partitions(i64::MAX).unwrap())
    };
    // Late records for both partitions, acknowledged (in the WAL) but never committed.
    let now = records.last().unwrap().interval_end;
    let mut late = late.to_vec();
    for (i, r) in late.iter_mut().enumerate() {
        r.interval_end = T0 + i as i64 * 5 * NS_PER_SEC + NS_PER_SEC / 2;
        r.interval_start = r.interval_end - NS_PER_SEC;
    }
    for chunk in late.chunks(100) {
        assert_eq!(store.append(chunk, now).unwrap().accepted, 100);
    }
    merger.join().unwrap();
    drop(Arc::into_inner(store).expect("the merge thread is done"));

    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    let mut expected: Vec<FlowRecord> = old.iter().chain(&late).cloned().collect();
    expected.sort_by_key(|r| r.interval_end);
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), expected);
}

/// A crash in the middle of a merge: the merged segment's files are written, `meta.json` still
/// names the old segments (tantivy replaces it only once the merge is complete). Simulated by
/// putting the files of a finished merge, done on a copy, beside the unmerged index.
#[test]
fn a_crash_before_the_merge_is_committed_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(3000, T0);
    let store = store_with_segments(dir.path(), &records, 5);
    let before = answers(&store);
    store.close();
    drop(store);
    let copy = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), copy.path());
    {
        let merged = FlowStore::open(copy.path(), test_config()).unwrap();
        assert_eq!(merged.merge_closed_partitions(i64::MAX).unwrap(), 1);
        merged.close();
    }
    let partition = partition::dir_name(T0, 3600 * NS_PER_SEC);
    for e in fs::read_dir(copy.path().join(&partition)).unwrap() {
        let e = e.unwrap();
        let target = dir.path().join(&partition).join(e.file_name());
        if e.file_name() != "meta.json" && !target.exists() {
            fs::copy(e.path(), target).unwrap();
        }
    }
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(answers(&store), before);
    // And merging again from there works.
    assert_eq!(store.merge_closed_partitions(i64::MAX).unwrap(), 1);
    assert_eq!(answers(&store), before);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn retention_waits_for_a_merge_and_drops_the_partition() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FlowConfig {
        retention_ns: 3 * 3600 * NS_PER_SEC,
        ..test_config()
    };
    let records = sample_records(4000, T0);
    let now = records.last().unwrap().interval_end;
    let store = Arc::new(FlowStore::open(dir.path(), cfg).unwrap());
    // Several segments in both partitions.
    for chunk in records.chunks(300) {
        store.append(chunk, now).unwrap();
        store.commit().unwrap();
    }
    let merger = {
        let store = store.clone();
        std::thread::spawn(move || store.merge_closed_partitions(i64::MAX).unwrap())
    };
    // Four hours later the first partition is past the retention.
    let dropped = store.apply_retention(T0 + 4 * 3600 * NS_PER_SEC).unwrap();
    let merged = merger.join().unwrap();
    assert_eq!(dropped, 1);
    assert!((1..=2).contains(&merged));
    assert_eq!(store.partition_count(), 1);
    let kept: Vec<_> = records
        .iter()
        .filter(|r| r.interval_end >= T0 + 3600 * NS_PER_SEC)
        .cloned()
        .collect();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), kept);
    assert!(!dir
        .path()
        .join(partition::dir_name(T0, 3600 * NS_PER_SEC))
        .exists());
}

#[test]
fn an_upgrade_cut_short_by_a_crash_is_finished_or_undone() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(500, T0);
    {
        let store = FlowStore::open(dir.path(), test_config()).unwrap();
        store.append(&records, T0).unwrap();
        store.close();
    }
    let name = partition::dir_name(T0, 3600 * NS_PER_SEC);
    let part = dir.path().join(&name);
    let old = dir.path().join(format!("{name}.old"));
    let upgrade = dir.path().join(format!("{name}.upgrade"));
    // Crash between the two renames: the old layout set aside, the complete new one beside it.
    copy_dir(&part, &upgrade);
    fs::rename(&part, &old).unwrap();
    {
        let store = FlowStore::open(dir.path(), test_config()).unwrap();
        assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
        store.close();
    }
    assert!(part.is_dir() && !old.exists() && !upgrade.exists());
    // Crash while the new layout was being written: it goes, the partition stays.
    fs::create_dir_all(&upgrade).unwrap();
    fs::write(upgrade.join("meta.json"), b"{").unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
    assert!(!upgrade.exists());
}

#[test]
fn an_aggregation_stops_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    store.append(&sample_records(500, T0), T0).unwrap();
    store.commit().unwrap();
    let mut req = AggregateRequest::new(&["src.workload"], vec![AggFn::Count], 10).unwrap();
    req.deadline = Some(std::time::Instant::now() + std::time::Duration::from_secs(60));
    let rows = store
        .aggregate(&Filter::All, i64::MIN, i64::MAX, &req)
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.values[0]).sum::<f64>(), 500.0);
    req.deadline = Some(std::time::Instant::now());
    assert!(matches!(
        store.aggregate(&Filter::All, i64::MIN, i64::MAX, &req),
        Err(Error::DeadlineExceeded)
    ));
}

#[test]
fn key_tables_beyond_the_cache_are_unloaded_and_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let records = sample_records(5000, T0);
    {
        let store = FlowStore::open(dir.path(), test_config()).unwrap();
        store.append(&records, T0 + 5000 * NS_PER_SEC).unwrap();
        store.close();
    }
    // Room for every table: they stay loaded after the queries.
    let store = FlowStore::open(dir.path(), test_config()).unwrap();
    assert_eq!(store.partition_count(), 2);
    assert_eq!(store.key_tables_bytes(), 0, "loaded only when used");
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
    assert!(store.key_tables_bytes() > 0);
    assert_eq!(store.stats.key_tables_unloaded.load(Ordering::Relaxed), 0);
    drop(store);
    // Room for none: each is dropped once the query has moved past it, and the answers hold.
    let cfg = FlowConfig {
        key_cache_bytes: 1,
        ..test_config()
    };
    let store = FlowStore::open(dir.path(), cfg).unwrap();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc), records);
    assert_eq!(
        all(&store, &term("dst.workload", "server-1"), SortOrder::Desc).len(),
        records
            .iter()
            .filter(|r| r.dst.workload == "server-1")
            .count()
    );
    let req = AggregateRequest::new(&["src.workload"], vec![AggFn::Count], 100).unwrap();
    let rows = store
        .aggregate(&Filter::All, i64::MIN, i64::MAX, &req)
        .unwrap();
    assert_eq!(rows.iter().map(|r| r.values[0]).sum::<f64>(), 5000.0);
    assert_eq!(store.key_tables_bytes(), 0);
    assert!(store.stats.key_tables_unloaded.load(Ordering::Relaxed) >= 6);
    // A partition being written keeps its table.
    store
        .append(&sample_records(10, T0), T0 + 5000 * NS_PER_SEC)
        .unwrap();
    store.commit().unwrap();
    assert_eq!(all(&store, &Filter::All, SortOrder::Asc).len(), 5010);
    assert!(store.key_tables_bytes() > 0);
}
