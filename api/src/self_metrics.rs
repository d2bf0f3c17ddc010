//! `/metrics`: the server's own metrics in the Prometheus text format, so Strata can be scraped like any
//! other target.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::server::AppState;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

pub async fn render(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let body = tokio::task::spawn_blocking(move || render_text(&state))
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

pub fn render_text(state: &AppState) -> String {
    let mut o = String::with_capacity(4096);
    let s = state.storage.stats();
    let c = &state.counters;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);

    family(
        &mut o,
        "strata_samples_ingested_total",
        "counter",
        "Samples stored by appends.",
    );
    let _ = writeln!(
        o,
        "strata_samples_ingested_total {}",
        load(&s.samples_ingested)
    );
    family(
        &mut o,
        "strata_exemplars_ingested_total",
        "counter",
        "Exemplars stored by appends.",
    );
    let _ = writeln!(
        o,
        "strata_exemplars_ingested_total {}",
        load(&s.exemplars_ingested)
    );
    family(
        &mut o,
        "strata_samples_rejected_total",
        "counter",
        "Samples refused, by reason.",
    );
    for (reason, v) in [
        ("out_of_order", load(&s.samples_rejected_out_of_order)),
        ("duplicate", load(&s.samples_rejected_duplicate)),
        ("out_of_bounds", load(&s.samples_rejected_out_of_bounds)),
    ] {
        let _ = writeln!(
            o,
            "strata_samples_rejected_total{{reason=\"{reason}\"}} {v}"
        );
    }
    let pages = strata_store::page_cache::PageCache::global().stats();
    family(
        &mut o,
        "strata_page_cache_requests_total",
        "counter",
        "Block page reads by queries, by whether the decompressed page was in the cache.",
    );
    for (result, v) in [("hit", pages.hits), ("miss", pages.misses)] {
        let _ = writeln!(
            o,
            "strata_page_cache_requests_total{{result=\"{result}\"}} {v}"
        );
    }
    family(
        &mut o,
        "strata_page_cache_bytes",
        "gauge",
        "Decompressed block pages held in memory.",
    );
    let _ = writeln!(o, "strata_page_cache_bytes {}", pages.bytes);
    family(
        &mut o,
        "strata_page_cache_capacity_bytes",
        "gauge",
        "The page cache's bound (page_cache_bytes).",
    );
    let _ = writeln!(o, "strata_page_cache_capacity_bytes {}", pages.capacity);
    family(
        &mut o,
        "strata_remote_write_requests_total",
        "counter",
        "Remote write requests received.",
    );
    let _ = writeln!(
        o,
        "strata_remote_write_requests_total {}",
        load(&c.remote_write_requests)
    );
    family(
        &mut o,
        "strata_remote_write_failed_requests_total",
        "counter",
        "Remote write requests answered with an error.",
    );
    let _ = writeln!(
        o,
        "strata_remote_write_failed_requests_total {}",
        load(&c.remote_write_errors)
    );
    family(
        &mut o,
        "strata_remote_read_requests_total",
        "counter",
        "Remote read requests received.",
    );
    let _ = writeln!(
        o,
        "strata_remote_read_requests_total {}",
        load(&c.remote_read_requests)
    );
    family(
        &mut o,
        "strata_queries_total",
        "counter",
        "Queries evaluated, by kind.",
    );
    let _ = writeln!(
        o,
        "strata_queries_total{{kind=\"promql\"}} {}",
        load(&c.queries)
    );
    let _ = writeln!(
        o,
        "strata_queries_total{{kind=\"metadata\"}} {}",
        load(&c.metadata_queries)
    );
    family(
        &mut o,
        "strata_query_errors_total",
        "counter",
        "PromQL queries that failed.",
    );
    let _ = writeln!(o, "strata_query_errors_total {}", load(&c.query_errors));
    family(
        &mut o,
        "strata_http_requests_total",
        "counter",
        "HTTP requests received.",
    );
    let _ = writeln!(o, "strata_http_requests_total {}", load(&c.http_requests));
    family(
        &mut o,
        "strata_otlp_requests_total",
        "counter",
        "OTLP export requests received (gRPC and HTTP).",
    );
    let _ = writeln!(o, "strata_otlp_requests_total {}", load(&c.otlp_requests));
    family(
        &mut o,
        "strata_otlp_errors_total",
        "counter",
        "OTLP export requests refused as a whole.",
    );
    let _ = writeln!(o, "strata_otlp_errors_total {}", load(&c.otlp_errors));
    family(
        &mut o,
        "strata_blocks_cut_total",
        "counter",
        "Blocks written from the head.",
    );
    let _ = writeln!(o, "strata_blocks_cut_total {}", load(&s.blocks_cut));
    family(
        &mut o,
        "strata_compactions_total",
        "counter",
        "Block merges.",
    );
    let _ = writeln!(o, "strata_compactions_total {}", load(&s.compactions));
    family(
        &mut o,
        "strata_retention_deleted_blocks_total",
        "counter",
        "Blocks deleted by retention.",
    );
    let _ = writeln!(
        o,
        "strata_retention_deleted_blocks_total {}",
        load(&s.blocks_deleted_by_retention)
    );

    let flow_tenants = state.flows.tenants();
    type FlowCounter = fn(&strata_store::flows::FlowStats) -> &AtomicU64;
    let flow_counters: [(&str, &str, FlowCounter); 6] = [
        (
            "strata_flow_records_appended_total",
            "Flow records stored.",
            |s| &s.records_appended,
        ),
        (
            "strata_flow_records_rejected_total",
            "Flow records refused.",
            |s| &s.records_rejected,
        ),
        (
            "strata_flow_commits_total",
            "Commits of the flow indexes (records become searchable).",
            |s| &s.commits,
        ),
        (
            "strata_flow_partitions_dropped_total",
            "Flow partitions deleted by retention.",
            |s| &s.partitions_dropped,
        ),
        (
            "strata_flow_partitions_merged_total",
            "Closed flow partitions merged into one segment.",
            |s| &s.partitions_merged,
        ),
        (
            "strata_flow_key_tables_unloaded_total",
            "Key tables of flow partitions dropped from memory to stay within flows.key_cache_bytes.",
            |s| &s.key_tables_unloaded,
        ),
    ];
    for (name, help, counter) in flow_counters {
        family(&mut o, name, "counter", help);
        for (t, store) in &flow_tenants {
            let _ = writeln!(
                o,
                "{name}{{tenant=\"{t}\"}} {}",
                load(counter(&store.stats))
            );
        }
    }

    family(
        &mut o,
        "strata_flow_key_tables_bytes",
        "gauge",
        "Memory of the flow partitions' key tables (roughly).",
    );
    for (t, store) in &flow_tenants {
        let _ = writeln!(
            o,
            "strata_flow_key_tables_bytes{{tenant=\"{t}\"}} {}",
            store.key_tables_bytes()
        );
    }

    let tenants = state.storage.tenants();
    family(
        &mut o,
        "strata_wal_fsyncs_total",
        "counter",
        "WAL fsyncs (one per group commit).",
    );
    for (t, m) in &tenants {
        let _ = writeln!(
            o,
            "strata_wal_fsyncs_total{{tenant=\"{t}\"}} {}",
            m.wal_fsyncs()
        );
    }
    family(
        &mut o,
        "strata_head_series",
        "gauge",
        "Series in the in-memory head.",
    );
    for (t, m) in &tenants {
        let _ = writeln!(
            o,
            "strata_head_series{{tenant=\"{t}\"}} {}",
            m.head_series()
        );
    }
    family(
        &mut o,
        "strata_head_bytes",
        "gauge",
        "Approximate bytes held by the head.",
    );
    for (t, m) in &tenants {
        let _ = writeln!(o, "strata_head_bytes{{tenant=\"{t}\"}} {}", m.head_bytes());
    }
    family(
        &mut o,
        "strata_block_series",
        "gauge",
        "Distinct series in the blocks on disk (the catalog's series registry).",
    );
    for (t, m) in &tenants {
        let _ = writeln!(
            o,
            "strata_block_series{{tenant=\"{t}\"}} {}",
            m.registered_series().unwrap_or(0)
        );
    }
    family(&mut o, "strata_blocks", "gauge", "Blocks on disk.");
    for (t, m) in &tenants {
        let _ = writeln!(o, "strata_blocks{{tenant=\"{t}\"}} {}", m.block_count());
    }
    family(
        &mut o,
        "strata_blocks_bytes",
        "gauge",
        "Bytes of blocks on disk.",
    );
    for (t, m) in &tenants {
        let _ = writeln!(
            o,
            "strata_blocks_bytes{{tenant=\"{t}\"}} {}",
            m.blocks_bytes()
        );
    }
    family(
        &mut o,
        "strata_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
    );
    let _ = writeln!(
        o,
        "strata_uptime_seconds {}",
        state.started.elapsed().as_secs()
    );
    o
}
