//! What the exporter did, per signal, for the agent's own `/metrics`. Counters only grow;
//! `queued_*` are gauges. An item is a log record, a metric data point or a span.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::signal::SignalKind;

#[derive(Debug, Default)]
pub struct ExporterStats {
    pub logs: SignalStats,
    pub metrics: SignalStats,
    pub spans: SignalStats,
}

impl ExporterStats {
    pub fn signal(&self, kind: SignalKind) -> &SignalStats {
        match kind {
            SignalKind::Logs => &self.logs,
            SignalKind::Metrics => &self.metrics,
            SignalKind::Spans => &self.spans,
        }
    }
}

/// Why items were dropped, for a `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    QueueFull,
    Refused,
    GaveUp,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::QueueFull,
        DropReason::Refused,
        DropReason::GaveUp,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Refused => "refused",
            DropReason::GaveUp => "gave_up",
        }
    }
}

#[derive(Debug, Default)]
pub struct SignalStats {
    /// Items in requests the store answered OK (including any it then reported as rejected).
    pub sent_items: AtomicU64,
    /// Requests the store answered OK.
    pub sent_requests: AtomicU64,
    /// Items of the oldest batches dropped because the queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Items of requests refused with a status not worth retrying (e.g. `INVALID_ARGUMENT`).
    pub dropped_refused: AtomicU64,
    /// Items given up: still failing after `retry.max_elapsed`, left when shutdown's deadline
    /// passed, or offered after the exporter stopped.
    pub dropped_gave_up: AtomicU64,
    /// Items the store accepted the request of but refused itself (OTLP `partial_success`).
    pub rejected_items: AtomicU64,
    /// Failed export attempts, retried or not.
    pub export_errors: AtomicU64,
    /// Attempts after the first, over all batches.
    pub retries: AtomicU64,
    /// Full batches waiting to be sent.
    pub queued_batches: AtomicU64,
    /// Items waiting, in full batches and the one being filled.
    pub queued_items: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl SignalStats {
    pub fn dropped(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::QueueFull => &self.dropped_queue_full,
            DropReason::Refused => &self.dropped_refused,
            DropReason::GaveUp => &self.dropped_gave_up,
        }
        .load(Ordering::Relaxed)
    }

    /// Items dropped for any reason.
    pub fn dropped_total(&self) -> u64 {
        DropReason::ALL
            .iter()
            .map(|&reason| self.dropped(reason))
            .sum()
    }

    /// The latest failed attempt or partial success, as the store or the transport put it.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub(crate) fn set_last_error(&self, message: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(message);
    }
}
