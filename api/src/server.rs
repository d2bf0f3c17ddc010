//! The HTTP server: shared state, the router (built in a function so tests call it in-process), tenancy
//! from `X-Scope-OrgID`, operations endpoints, the background maintenance loop, and graceful shutdown
//! that flushes the stores on SIGTERM.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use strata_store::flows::FlowStorage;
use strata_store::{Storage, DEFAULT_TENANT};

use crate::config::Config;
use crate::otlp;
use crate::prometheus;
use crate::remote::DecodeLimits;
use crate::self_metrics;

/// Request counters for self-monitoring.
#[derive(Debug, Default)]
pub struct ServerCounters {
    pub remote_write_requests: AtomicU64,
    pub remote_write_errors: AtomicU64,
    pub remote_read_requests: AtomicU64,
    pub queries: AtomicU64,
    pub query_errors: AtomicU64,
    pub metadata_queries: AtomicU64,
    pub http_requests: AtomicU64,
    pub otlp_requests: AtomicU64,
    pub otlp_errors: AtomicU64,
}

pub struct AppState {
    pub storage: Arc<Storage>,
    pub flows: Arc<FlowStorage>,
    pub engine: Arc<strata_query::Engine>,
    pub cfg: Arc<Config>,
    pub limits: DecodeLimits,
    pub counters: ServerCounters,
    pub ready: AtomicBool,
    pub started: std::time::Instant,
    pub span_metrics: crate::tempo::span_metrics::Registry,
    /// Slots for flow queries (`flows.max_concurrent_queries`).
    pub flow_queries: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(storage: Arc<Storage>, cfg: Config) -> Arc<AppState> {
        let engine = strata_query::Engine::new(strata_query::EngineOptions {
            max_samples: cfg.limits.max_samples_per_query,
            timeout: Duration::from_secs(cfg.limits.query_timeout_secs),
            max_concurrency: cfg.limits.max_concurrent_queries,
            ..Default::default()
        });
        let flows = FlowStorage::new(storage.data_dir(), cfg.flows.store_config());
        let flow_queries = Arc::new(tokio::sync::Semaphore::new(
            cfg.flows.max_concurrent_queries.max(1),
        ));
        Arc::new(AppState {
            flow_queries,
            flows,
            engine: Arc::new(engine),
            limits: cfg.decode_limits(),
            storage,
            cfg: Arc::new(cfg),
            counters: ServerCounters::default(),
            ready: AtomicBool::new(true),
            started: std::time::Instant::now(),
            span_metrics: Default::default(),
        })
    }
}

/// The tenant a request acts for: `X-Scope-OrgID`, else `default`.
pub fn tenant(headers: &HeaderMap) -> Result<String, String> {
    let id = match headers.get("x-scope-orgid") {
        None => return Ok(DEFAULT_TENANT.to_owned()),
        Some(v) => v
            .to_str()
            .map_err(|_| "X-Scope-OrgID is not valid ASCII".to_owned())?
            .trim()
            .to_owned(),
    };
    strata_store::validate_tenant(&id).map_err(|e| e.to_string())?;
    Ok(id)
}

async fn count_requests(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    state.counters.http_requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
}

pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.limits.max_body_bytes;
    let prom = Router::new()
        .route(
            "/api/v1/query",
            get(prometheus::query).post(prometheus::query),
        )
        .route(
            "/api/v1/query_range",
            get(prometheus::query_range).post(prometheus::query_range),
        )
        .route(
            "/api/v1/format_query",
            get(prometheus::format_query_handler).post(prometheus::format_query_handler),
        )
        .route("/api/v1/write", post(prometheus::remote_write))
        .route(
            "/api/v1/otlp/v1/metrics",
            post(otlp::http::prometheus_otlp_metrics),
        )
        .route("/api/v1/read", post(prometheus::remote_read))
        .route(
            "/api/v1/series",
            get(prometheus::series).post(prometheus::series),
        )
        .route(
            "/api/v1/labels",
            get(prometheus::labels).post(prometheus::labels),
        )
        .route("/api/v1/label/{name}/values", get(prometheus::label_values))
        .route("/api/v1/metadata", get(prometheus::metadata))
        .route(
            "/api/v1/query_exemplars",
            get(prometheus::query_exemplars).post(prometheus::query_exemplars),
        )
        .route("/api/v1/status/buildinfo", get(prometheus::buildinfo))
        .route("/api/v1/status/config", get(prometheus::status_config))
        .route("/api/v1/rules", get(prometheus::rules))
        .route("/api/v1/admin/tsdb/flush", post(prometheus::admin_flush))
        .route(
            "/api/v1/admin/tsdb/compact",
            post(prometheus::admin_compact),
        );
    Router::new()
        .nest("/prometheus", prom)
        .nest("/tempo", crate::tempo::router())
        .merge(crate::flows::routes())
        .merge(crate::diagnose::routes())
        .route("/-/healthy", get(|| async { "Strata is Healthy.\n" }))
        .route("/-/ready", get(ready))
        .route("/metrics", get(self_metrics::render))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn ready(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "Strata is Ready.\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Strata is not ready.\n")
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Periodically cuts heads into blocks, compacts and applies retention for every tenant.
async fn maintenance_loop(storage: Arc<Storage>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        let storage = storage.clone();
        let result = tokio::task::spawn_blocking(move || {
            for (tenant, store) in storage.tenants() {
                if let Err(e) = store.maintain(now_ms()) {
                    tracing::error!(tenant, error = %e, "maintenance failed");
                }
            }
            for (tenant, store) in storage.trace_tenants() {
                if let Err(e) = store.maintain(now_ms()) {
                    tracing::error!(tenant, error = %e, "trace store maintenance failed");
                }
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "maintenance task panicked");
        }
    }
}

/// Binds `addr` for the listener named by config `key`.
async fn bind(addr: &str, key: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} ({key}): {e}"))
}

/// Runs the server until `shutdown` resolves, then drains requests and closes the stores. The HTTP
/// listener always runs; each OTLP listener runs unless its address is empty.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let data_dir = cfg.data_dir.clone();
    let mcfg = cfg.metrics_config();
    let tcfg = cfg.traces_config();
    let storage =
        tokio::task::spawn_blocking(move || Storage::open_with_traces(&data_dir, mcfg, tcfg))
            .await??;
    let storage = Arc::new(storage);
    let listener = bind(&cfg.server.listen, "server.listen").await?;
    let grpc = match cfg.server.otlp_grpc_listen.as_str() {
        "" => None,
        a => Some(bind(a, "server.otlp_grpc_listen").await?),
    };
    let otlp_http = match cfg.server.otlp_http_listen.as_str() {
        "" => None,
        a => Some(bind(a, "server.otlp_http_listen").await?),
    };
    tracing::info!(addr = %listener.local_addr()?, data_dir = %cfg.data_dir.display(), "Strata listening");
    let every = Duration::from_secs(cfg.server.maintenance_interval_secs);
    let state = AppState::new(storage.clone(), cfg);
    let flows = state.flows.clone();
    tokio::task::spawn_blocking(move || flows.start()).await??;
    let maintenance = tokio::spawn(maintenance_loop(storage.clone(), every));
    let span_metrics = tokio::spawn(span_metrics_loop(state.clone()));
    let flush_state = state.clone();

    // One shutdown signal fans out to every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut servers = tokio::task::JoinSet::new();
    if let Some(l) = grpc {
        tracing::info!(addr = %l.local_addr()?, "OTLP gRPC listening");
        servers.spawn(otlp::grpc::serve(l, state.clone(), stopped()));
    }
    if let Some(l) = otlp_http {
        tracing::info!(addr = %l.local_addr()?, "OTLP HTTP listening");
        let app = otlp::http::router(state.clone());
        let stop = stopped();
        servers.spawn(async move {
            axum::serve(l, app).with_graceful_shutdown(stop).await?;
            Ok(())
        });
    }
    let state_flows = state.flows.clone();
    let app = router(state);
    let stop = stopped();
    servers.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
        Ok(())
    });
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // Listeners end together at shutdown; one that fails stops the others.
    let mut result = Ok(());
    while let Some(done) = servers.join_next().await {
        let r = done.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = r {
            tracing::error!(error = %e, "listener failed");
            result = Err(e);
            servers.abort_all();
        }
    }
    maintenance.abort();
    span_metrics.abort();
    tokio::task::spawn_blocking(move || {
        crate::tempo::span_metrics::flush(&flush_state, crate::tempo::now_ms())
    })
    .await?;
    tracing::info!("shutting down: flushing stores");
    let flows = state_flows;
    tokio::task::spawn_blocking(move || {
        storage.close();
        flows.close();
    })
    .await?;
    tracing::info!("shutdown complete");
    result
}

/// Writes the span metrics generated from traces into the metrics store, like a scrape.
async fn span_metrics_loop(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(crate::tempo::span_metrics::FLUSH_INTERVAL);
    tick.tick().await;
    loop {
        tick.tick().await;
        let state = state.clone();
        let flushed = tokio::task::spawn_blocking(move || {
            crate::tempo::span_metrics::flush(&state, crate::tempo::now_ms())
        })
        .await;
        if let Err(e) = flushed {
            tracing::error!(error = %e, "span metrics flush panicked");
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("signal received");
}
