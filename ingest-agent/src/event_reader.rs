//! Drains the kernel's event ring buffer into a bounded channel of decoded [`Event`]s, sent in
//! batches. Wakes on the ring's epoll readiness (which the kernel signals only past a fill
//! threshold) and on a tick, so records written without a wakeup still arrive within one tick.
//! Knows the ring and the decoder, not what consumers do with events.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::events::{self, Event};

/// Most events one batch carries. A batch costs the reader one send and the consumer at most one
/// wake-up, where an event each cost both: at 128 the wake-ups (a context switch each) still
/// took a tenth of the agent's time at 20k requests/s, at 1024 a drain of a 50 ms tick at 40k
/// events/s is two batches. The bound keeps the consumer's work per batch under a millisecond
/// and a batch under 300 KiB (it grows by doubling, so a small one stays small).
pub const BATCH_EVENTS: usize = 1024;

#[derive(Clone, Debug)]
pub struct EventReaderConfig {
    /// Longest a record may wait in the ring when the kernel did not wake us.
    pub tick: Duration,
    /// Decoded events waiting for the consumer, counted one by one however they are batched.
    pub channel_capacity: usize,
}

impl Default for EventReaderConfig {
    fn default() -> Self {
        EventReaderConfig {
            tick: Duration::from_millis(50),
            channel_capacity: 8192,
        }
    }
}

/// What the reader saw, for the agent's own metrics.
#[derive(Debug, Default)]
pub struct EventReaderStats {
    pub delivered: AtomicU64,
    /// Events dropped because the channel was full.
    pub dropped_channel_full: AtomicU64,
    /// Records that did not decode (a kernel/user ABI mismatch if ever non-zero).
    pub decode_errors: AtomicU64,
}

/// The reader's end of the event channel: batches go in whole or cut to the room left.
///
/// Channel: `capacity` events (not batches), tracked in `queued`, which the sender raises before a
/// batch goes in and the receiver lowers when it takes one out; when full: the newest events are
/// dropped, each counted in `dropped_channel_full`. One sender only, so the room it reads can
/// only grow before it uses it. The tokio channel under it holds as many batches as there may be
/// events, so with every batch holding at least one event it is never the one that is full.
#[derive(Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Vec<Event>>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

/// The consumer's end of the event channel.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Vec<Event>>,
    queued: Arc<AtomicUsize>,
}

/// A channel for at most `capacity` decoded events.
pub fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let queued = Arc::new(AtomicUsize::new(0));
    let sender = EventSender {
        tx,
        queued: Arc::clone(&queued),
        capacity,
    };
    (sender, EventReceiver { rx, queued })
}

impl EventSender {
    /// Queues `batch`, or as much of it as there is room for, dropping and counting the rest.
    pub fn offer(&self, mut batch: Vec<Event>, stats: &EventReaderStats) {
        let room = self
            .capacity
            .saturating_sub(self.queued.load(Ordering::Acquire));
        if batch.len() > room {
            let dropped = batch.len() - room;
            stats
                .dropped_channel_full
                .fetch_add(dropped as u64, Ordering::Relaxed);
            batch.truncate(room);
        }
        let offered = batch.len();
        if offered == 0 {
            return;
        }
        self.queued.fetch_add(offered, Ordering::AcqRel);
        match self.tx.try_send(batch) {
            Ok(()) => {
                stats.delivered.fetch_add(offered as u64, Ordering::Relaxed);
            }
            // Closed: nobody consumes any more, the events are lost all the same.
            Err(_) => {
                self.queued.fetch_sub(offered, Ordering::AcqRel);
                stats
                    .dropped_channel_full
                    .fetch_add(offered as u64, Ordering::Relaxed);
            }
        }
    }

    /// Completes once the receiver is gone.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl EventReceiver {
    /// The next batch, never empty; `None` once the reader stopped and everything was taken.
    pub async fn recv(&mut self) -> Option<Vec<Event>> {
        let batch = self.rx.recv().await?;
        self.queued.fetch_sub(batch.len(), Ordering::AcqRel);
        Some(batch)
    }

    /// Events waiting in the channel.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Decodes `records` and offers them to the channel in batches of at most [`BATCH_EVENTS`].
/// The ring must keep draining whatever the consumer does, or the kernel starts dropping at the
/// source, where loss is coarser: so a full channel drops, never waits.
pub fn deliver<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    tx: &EventSender,
    stats: &EventReaderStats,
) {
    let mut batch = Batch::default();
    for record in records {
        batch.decode(record, tx, stats);
    }
    batch.send(tx, stats);
}

/// The batch the reader is filling.
#[derive(Default)]
struct Batch(Vec<Event>);

impl Batch {
    /// Adds the event of `record`, sending the batch once it is full.
    fn decode(&mut self, record: &[u8], tx: &EventSender, stats: &EventReaderStats) {
        match events::decode(record) {
            Ok(event) => {
                // Grown by doubling, not reserved whole: a batch holding a few events (a quiet
                // tick) takes no more than twice their room while it waits in the channel.
                self.0.push(event);
                if self.0.len() >= BATCH_EVENTS {
                    self.send(tx, stats);
                }
            }
            Err(err) => {
                let seen = stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                if seen == 0 {
                    tracing::error!(error = %err, "undecodable event record; further ones counted only");
                }
            }
        }
    }

    fn send(&mut self, tx: &EventSender, stats: &EventReaderStats) {
        if !self.0.is_empty() {
            tx.offer(std::mem::take(&mut self.0), stats);
        }
    }
}

struct RingFd(RingBuf<MapData>);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.0.as_raw_fd()
    }
}

/// Starts the reader on the current tokio runtime. It stops when the receiver is dropped.
pub fn spawn(
    ring: RingBuf<MapData>,
    config: &EventReaderConfig,
) -> Result<(EventReceiver, Arc<EventReaderStats>, JoinHandle<()>)> {
    let (tx, rx) = channel(config.channel_capacity);
    let stats = Arc::new(EventReaderStats::default());
    // SAFETY: the ring buffer's map fd is owned by the `RingBuf` inside the `AsyncFd`, stays open
    // until the `AsyncFd` drops it, and `as_raw_fd` always returns that same fd.
    let fd = unsafe { AsyncFd::register_with_interest(RingFd(ring), Interest::READABLE) }
        .map_err(|err| Error::io("ring buffer fd", err.into()))?;
    let handle = tokio::spawn(run(fd, tx, Arc::clone(&stats), config.tick));
    Ok((rx, stats, handle))
}

async fn run(
    mut fd: AsyncFd<RingFd>,
    tx: EventSender,
    stats: Arc<EventReaderStats>,
    tick: Duration,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => drain(&mut fd.get_mut().0, &tx, &stats),
            guard = fd.readable_mut() => match guard {
                Ok(mut guard) => {
                    drain(&mut guard.get_inner_mut().0, &tx, &stats);
                    guard.clear_ready();
                }
                Err(err) => {
                    tracing::error!(error = %err, "ring buffer poll failed; reading on the tick only");
                    // Without readiness the tick alone keeps the ring drained.
                    loop {
                        tokio::select! {
                            () = tx.closed() => return,
                            _ = ticker.tick() => drain(&mut fd.get_mut().0, &tx, &stats),
                        }
                    }
                }
            },
        }
    }
}

fn drain(ring: &mut RingBuf<MapData>, tx: &EventSender, stats: &EventReaderStats) {
    let mut batch = Batch::default();
    while let Some(item) = ring.next() {
        batch.decode(&item, tx, stats);
    }
    batch.send(tx, stats);
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_ebpf::abi::{self, plain_bytes};

    fn closed_record(sock_id: u64) -> Vec<u8> {
        let mut raw = abi::ConnClosed::default();
        raw.header.kind = abi::event_kind::CONN_CLOSED;
        raw.sock_id = sock_id;
        plain_bytes(&raw).to_vec()
    }

    fn closes(sock_ids: std::ops::RangeInclusive<u64>) -> Vec<Vec<u8>> {
        sock_ids.map(closed_record).collect()
    }

    fn sock_ids(batch: &[Event]) -> Vec<u64> {
        batch
            .iter()
            .map(|event| match event {
                Event::ConnectionClosed(closed) => closed.sock_id,
                other => panic!("expected a close: {other:?}"),
            })
            .collect()
    }

    fn counts(stats: &EventReaderStats) -> (u64, u64) {
        (
            stats.delivered.load(Ordering::Relaxed),
            stats.dropped_channel_full.load(Ordering::Relaxed),
        )
    }

    #[tokio::test]
    async fn a_full_channel_drops_the_newest_and_counts() {
        let (tx, mut rx) = channel(2);
        let stats = EventReaderStats::default();
        deliver(closes(1..=3).iter().map(Vec::as_slice), &tx, &stats);
        assert_eq!(counts(&stats), (2, 1));
        let batch = rx.recv().await.expect("a batch");
        assert_eq!(sock_ids(&batch), [1, 2]);
    }

    #[tokio::test]
    async fn every_event_dropped_is_counted_whatever_the_batches() {
        let batch = BATCH_EVENTS as u64;
        let capacity = 2 * batch + 44;
        let (tx, mut rx) = channel(capacity as usize);
        let stats = EventReaderStats::default();
        let offered = 4 * batch;
        deliver(closes(1..=offered).iter().map(Vec::as_slice), &tx, &stats);
        assert_eq!(counts(&stats), (capacity, offered - capacity));
        assert_eq!(rx.queued() as u64, capacity);

        // Taking a batch out makes room for as many events, and no more.
        let first = rx.recv().await.expect("a batch");
        assert_eq!(sock_ids(&first), (1..=batch).collect::<Vec<_>>());
        let again = offered + 1..=offered + batch + 200;
        deliver(closes(again).iter().map(Vec::as_slice), &tx, &stats);
        let (delivered, dropped) = counts(&stats);
        assert_eq!(delivered, capacity + batch);
        assert_eq!(
            delivered + dropped,
            offered + batch + 200,
            "each event delivered or counted"
        );

        // What was queued is the oldest of each offer, in order.
        let mut received = sock_ids(&first);
        while rx.queued() > 0 {
            let batch = rx.recv().await.expect("a batch");
            assert!(!batch.is_empty() && batch.len() <= BATCH_EVENTS);
            received.extend(sock_ids(&batch));
        }
        let expected: Vec<u64> = (1..=capacity)
            .chain(offered + 1..=offered + batch)
            .collect();
        assert_eq!(received, expected);
    }

    #[tokio::test]
    async fn events_for_a_consumer_that_left_are_counted_as_dropped() {
        let (tx, rx) = channel(16);
        drop(rx);
        let stats = EventReaderStats::default();
        deliver(closes(1..=5).iter().map(Vec::as_slice), &tx, &stats);
        assert_eq!(counts(&stats), (0, 5));
        tx.closed().await;
    }

    #[tokio::test]
    async fn undecodable_records_are_counted_not_delivered() {
        let (tx, rx) = channel(4);
        let stats = EventReaderStats::default();
        deliver([&[0xee, 0, 0, 0, 0, 0, 0, 0][..]], &tx, &stats);
        assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);
        assert_eq!((counts(&stats), rx.queued()), ((0, 0), 0));
    }
}
