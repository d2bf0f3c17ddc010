//! Streams the agent's three signals to the store over OTLP gRPC: flow records as log records
//! (`LogsService`), metrics (`MetricsService`) and spans (`TraceService`). Knows the OTLP messages
//! and the collector services, not how the records were made.
//!
//! The path, top-down: the pipeline hands resources to [`Exporter::logs`], [`Exporter::metrics`]
//! or [`Exporter::spans`], which never wait; each signal's `queue` cuts them into batches of at
//! most `max_batch_items` items; one sender task per signal takes the next batch when it is full
//! or `flush_interval` old, and exports it on its own connection, so a slow or failing signal
//! holds up no other. A failed export is retried with backoff (`retry`) until it succeeds, is
//! refused for good, or has failed for `retry.max_elapsed`. Every outcome is counted in
//! [`ExporterStats`]. Connections are made lazily and remade after a failure, so the agent may
//! start before the store.

pub mod config;
mod queue;
mod retry;
pub mod signal;
pub mod stats;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::logs::v1::ResourceLogs;
use opentelemetry_proto::tonic::metrics::v1::ResourceMetrics;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::client::Grpc;
use tonic::codec::CompressionEncoding;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Channel, Endpoint};
use tonic::Status;

pub use config::{ExporterConfig, RetryConfig};
pub use signal::SignalKind;
pub use stats::{DropReason, ExporterStats, SignalStats};

use crate::error::{Error, Result};
use config::Settings;
use queue::{Batch, Queue};
use retry::{Backoff, Verdict};
use signal::{EncodedCodec, Logs, Metrics, Signal, Spans};

/// The running exporter: its queues, its sender tasks and their stats.
///
/// Dropping it stops the senders at once and counts what was queued as given up; call
/// [`shutdown`](Exporter::shutdown) to send it first.
#[derive(Debug)]
pub struct Exporter {
    handle: ExporterHandle,
    senders: Vec<JoinHandle<()>>,
}

/// A cheap, cloneable way for pipeline stages to enqueue into the exporter.
#[derive(Clone)]
pub struct ExporterHandle {
    logs: Arc<Queue<Logs>>,
    metrics: Arc<Queue<Metrics>>,
    spans: Arc<Queue<Spans>>,
    stats: Arc<ExporterStats>,
}

impl std::fmt::Debug for ExporterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExporterHandle")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// Validates `config` and starts one sender per signal on the current tokio runtime. Does
    /// not connect: the first export does.
    pub fn spawn(config: &ExporterConfig) -> Result<Exporter> {
        let settings = Arc::new(config.settings()?);
        let endpoint = Endpoint::from_shared(settings.endpoint.clone())
            .map_err(|err| Error::Config(format!("key `exporter.endpoint`: {err}")))?
            .connect_timeout(settings.timeout)
            .tcp_nodelay(true)
            // Pings find a connection whose peer vanished without a reset, which would
            // otherwise swallow every attempt until its timeout.
            .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(settings.timeout)
            .keep_alive_while_idle(true);
        let stats = Arc::new(ExporterStats::default());
        let handle = ExporterHandle {
            logs: Arc::new(Queue::new(
                settings.max_batch_items,
                settings.queue_capacity,
                Arc::clone(&stats),
            )),
            metrics: Arc::new(Queue::new(
                settings.max_batch_items,
                settings.queue_capacity,
                Arc::clone(&stats),
            )),
            spans: Arc::new(Queue::new(
                settings.max_batch_items,
                settings.queue_capacity,
                Arc::clone(&stats),
            )),
            stats,
        };
        let senders = vec![
            spawn_sender(&handle.logs, &endpoint, &settings),
            spawn_sender(&handle.metrics, &endpoint, &settings),
            spawn_sender(&handle.spans, &endpoint, &settings),
        ];
        Ok(Exporter { handle, senders })
    }

    /// Queues flow records (and any other log records) for export. Never waits.
    pub fn logs(&self, resources: Vec<ResourceLogs>) {
        self.handle.logs(resources);
    }

    /// Queues metrics for export. Never waits.
    pub fn metrics(&self, resources: Vec<ResourceMetrics>) {
        self.handle.metrics(resources);
    }

    /// Queues spans for export. Never waits.
    pub fn spans(&self, resources: Vec<ResourceSpans>) {
        self.handle.spans(resources);
    }

    /// A handle for other tasks to enqueue with; it outlives the exporter harmlessly (what it
    /// offers after the exporter stopped is counted as given up).
    pub fn handle(&self) -> ExporterHandle {
        self.handle.clone()
    }

    pub fn stats(&self) -> Arc<ExporterStats> {
        Arc::clone(&self.handle.stats)
    }

    /// Sends what is queued, retrying within `deadline`, then stops. What is still unsent when
    /// the deadline passes is counted as given up.
    pub async fn shutdown(mut self, deadline: Duration) {
        let deadline = Instant::now() + deadline;
        self.handle.logs.drain(deadline);
        self.handle.metrics.drain(deadline);
        self.handle.spans.drain(deadline);
        for mut sender in std::mem::take(&mut self.senders) {
            if tokio::time::timeout_at(deadline, &mut sender)
                .await
                .is_err()
            {
                sender.abort();
                // Wait for the abort, so the sender cannot count its batch after close() has.
                let _ = sender.await;
            }
        }
        self.handle.close();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        for sender in &self.senders {
            sender.abort();
        }
        self.handle.close();
    }
}

impl ExporterHandle {
    pub fn logs(&self, resources: Vec<ResourceLogs>) {
        self.logs.push(resources);
    }

    pub fn metrics(&self, resources: Vec<ResourceMetrics>) {
        self.metrics.push(resources);
    }

    pub fn spans(&self, resources: Vec<ResourceSpans>) {
        self.spans.push(resources);
    }

    pub fn stats(&self) -> Arc<ExporterStats> {
        Arc::clone(&self.stats)
    }

    /// Stops every queue; what they still held is counted as given up.
    fn close(&self) {
        let left = [
            (&self.stats.logs, self.logs.close()),
            (&self.stats.metrics, self.metrics.close()),
            (&self.stats.spans, self.spans.close()),
        ];
        for (stats, items) in left {
            stats
                .dropped_gave_up
                .fetch_add(items as u64, Ordering::Relaxed);
        }
    }
}

const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// How often each kind of warning is logged per signal; the rest are counted in the next one.
const WARN_EVERY: Duration = Duration::from_secs(30);

fn spawn_sender<S: Signal>(
    queue: &Arc<Queue<S>>,
    endpoint: &Endpoint,
    settings: &Arc<Settings>,
) -> JoinHandle<()> {
    // One connection per signal: a signal stuck on a flow-control window or a slow service
    // does not delay the others.
    let client = Grpc::new(endpoint.connect_lazy())
        .accept_compressed(CompressionEncoding::Gzip)
        .accept_compressed(CompressionEncoding::Zstd);
    let client = match settings.compression {
        Some(encoding) => client.send_compressed(encoding),
        None => client,
    };
    let sender = Sender::<S> {
        queue: Arc::clone(queue),
        client,
        settings: Arc::clone(settings),
        refused_warning: Warning::new(WARN_EVERY),
        gave_up_warning: Warning::new(WARN_EVERY),
        retry_warning: Warning::new(WARN_EVERY),
        rejected_warning: Warning::new(WARN_EVERY),
    };
    tokio::spawn(sender.run())
}

struct Sender<S: Signal> {
    queue: Arc<Queue<S>>,
    client: Grpc<Channel>,
    settings: Arc<Settings>,
    refused_warning: Warning,
    gave_up_warning: Warning,
    retry_warning: Warning,
    rejected_warning: Warning,
}

impl<S: Signal> Sender<S> {
    async fn run(mut self) {
        while let Some(batch) = self.queue.next_batch(self.settings.flush_interval).await {
            self.send(batch).await;
            self.queue.finish_batch();
        }
    }

    /// Exports one batch: retried until it is accepted, refused, or given up.
    async fn send(&mut self, batch: Batch<S>) {
        let signal = S::KIND.as_str();
        let items = batch.items as u64;
        // Encoded once: every attempt sends the same bytes, and they hold far less memory
        // than the resources while the batch waits for a retry.
        let body = S::encode(batch.resources);
        let first_attempt = Instant::now();
        let mut backoff = Backoff::new(self.settings.initial_backoff, self.settings.max_backoff);
        loop {
            let status = match self.attempt(&body).await {
                Ok(rejected) => {
                    let stats = self.queue.stats();
                    stats.sent_requests.fetch_add(1, Ordering::Relaxed);
                    stats.sent_items.fetch_add(items, Ordering::Relaxed);
                    if rejected.items > 0 || !rejected.message.is_empty() {
                        self.partially_rejected(rejected);
                    }
                    return;
                }
                Err(status) => status,
            };
            let stats = self.queue.stats();
            stats.export_errors.fetch_add(1, Ordering::Relaxed);
            stats.set_last_error(describe(&status));
            let delay = match retry::verdict(&status) {
                Verdict::Refuse => {
                    stats.dropped_refused.fetch_add(items, Ordering::Relaxed);
                    if let Some(suppressed) = self.refused_warning.allow() {
                        tracing::warn!(
                            signal,
                            items,
                            code = ?status.code(),
                            error = status.message(),
                            suppressed,
                            "the store refused an export; dropped, not retried"
                        );
                    }
                    return;
                }
                Verdict::Retry { after: Some(delay) } => delay,
                Verdict::Retry { after: None } => backoff.next_delay(retry::random_unit()),
            };
            let retry_at = Instant::now() + delay;
            if retry_at > first_attempt + self.settings.max_elapsed {
                self.give_up(items, &status);
                return;
            }
            if let Some(suppressed) = self.retry_warning.allow() {
                tracing::warn!(
                    signal,
                    code = ?status.code(),
                    error = status.message(),
                    ?delay,
                    suppressed,
                    "export failed; retrying"
                );
            }
            if !wait_for_retry(&self.queue, retry_at).await {
                self.give_up(items, &status);
                return;
            }
            self.queue.stats().retries.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// One export call within the timeout (and within the shutdown deadline, if draining).
    async fn attempt(&mut self, body: &Bytes) -> Result<signal::Rejected, Status> {
        let mut timeout = self.settings.timeout;
        if let Some(deadline) = self.queue.drain_deadline() {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        let mut request = tonic::Request::new(body.clone());
        *request.metadata_mut() = self.settings.metadata.clone();
        let client = &mut self.client;
        let call = async move {
            client
                .ready()
                .await
                .map_err(|err| Status::unavailable(format!("connection not ready: {err}")))?;
            let path = PathAndQuery::from_static(S::PATH);
            let response = client
                .unary(request, path, EncodedCodec::<S::Response>::default())
                .await?;
            Ok(S::rejected(response.into_inner()))
        };
        // No `grpc-timeout` header: tonic would enforce it too, racing this timeout with a
        // CANCELLED of its own, and the store finishes a write it has begun regardless.
        match tokio::time::timeout(timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    /// Drops a batch still failing after `retry.max_elapsed`, or at a shutdown's deadline.
    fn give_up(&mut self, items: u64, status: &Status) {
        self.queue
            .stats()
            .dropped_gave_up
            .fetch_add(items, Ordering::Relaxed);
        if let Some(suppressed) = self.gave_up_warning.allow() {
            tracing::warn!(
                signal = S::KIND.as_str(),
                items,
                code = ?status.code(),
                error = status.message(),
                suppressed,
                "export still failing; batch dropped"
            );
        }
    }

    fn partially_rejected(&mut self, rejected: signal::Rejected) {
        let stats = self.queue.stats();
        let items = u64::try_from(rejected.items).unwrap_or(0);
        stats.rejected_items.fetch_add(items, Ordering::Relaxed);
        stats.set_last_error(format!(
            "partial success: {items} rejected: {}",
            rejected.message
        ));
        if let Some(suppressed) = self.rejected_warning.allow() {
            tracing::warn!(
                signal = S::KIND.as_str(),
                rejected = items,
                error = rejected.message,
                suppressed,
                "the store accepted an export but rejected some of it"
            );
        }
    }
}

/// Sleeps until `retry_at`; false if a shutdown's deadline comes first.
async fn wait_for_retry<S: Signal>(queue: &Queue<S>, retry_at: Instant) -> bool {
    loop {
        if queue
            .drain_deadline()
            .is_some_and(|deadline| retry_at > deadline)
        {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep_until(retry_at) => return true,
            // A shutdown may have started: look at its deadline again.
            () = queue.changed() => {}
        }
    }
}

fn describe(status: &Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

/// Lets one warning through per interval and counts the ones held back.
#[derive(Debug)]
struct Warning {
    every: Duration,
    quiet_until: Option<Instant>,
    suppressed: u64,
}

impl Warning {
    fn new(every: Duration) -> Warning {
        Warning {
            every,
            quiet_until: None,
            suppressed: 0,
        }
    }

    /// `Some(warnings held back since the last one)` when this one may be logged.
    fn allow(&mut self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&mut self, now: Instant) -> Option<u64> {
        if self.quiet_until.is_some_and(|until| now < until) {
            self.suppressed += 1;
            return None;
        }
        self.quiet_until = Some(now + self.every);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_let_through_once_per_interval_with_a_count() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut warning = Warning::new(10 * second);
        assert_eq!(warning.allow_at(start), Some(0));
        assert_eq!(warning.allow_at(start + second), None);
        assert_eq!(warning.allow_at(start + 9 * second), None);
        assert_eq!(warning.allow_at(start + 10 * second), Some(2));
        assert_eq!(warning.allow_at(start + 11 * second), None);
    }
}
