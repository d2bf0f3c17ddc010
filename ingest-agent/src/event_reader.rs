//! Drains the kernel's event ring buffer into a bounded channel of decoded [`Event`]s, sent in
//! batches. Wakes on the ring's epoll readiness (which the kernel signals only past a fill
//! threshold) and on a tick, so records written without a wakeup still arrive within one tick.
//! While the channel is full, records wait in the ring, which holds them compactly (an 8 MiB ring
//! holds several times the channel's events); only a full ring loses records, and the kernel
//! counts each one. Knows the ring and the decoder, not what consumers do with events.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::{mpsc, Notify};
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
    /// Events decoded for a consumer that had stopped. A full channel holds records back in the
    /// ring instead, so while the agent runs this stays 0.
    pub dropped_channel_full: AtomicU64,
    /// Records that did not decode (a kernel/user ABI mismatch if ever non-zero).
    pub decode_errors: AtomicU64,
}

/// The reader's end of the event channel.
///
/// Channel: `capacity` events (not batches), tracked in `queued`, which the sender raises before a
/// batch goes in and the receiver lowers when it takes one out; when full: the reader stops
/// taking records from the ring (see [`drain`]) until the receiver makes room. One sender only,
/// so the room it reads can only grow before it uses it. The tokio channel under it holds as many
/// batches as there may be events, so with every batch holding at least one event it is never the
/// one that is full.
#[derive(Debug)]
pub struct EventSender {
    tx: mpsc::Sender<Vec<Event>>,
    queued: Arc<AtomicUsize>,
    room_made: Arc<Notify>,
    capacity: usize,
}

/// The consumer's end of the event channel.
#[derive(Debug)]
pub struct EventReceiver {
    rx: mpsc::Receiver<Vec<Event>>,
    queued: Arc<AtomicUsize>,
    room_made: Arc<Notify>,
}

/// A channel for at most `capacity` decoded events.
pub fn channel(capacity: usize) -> (EventSender, EventReceiver) {
    let capacity = capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let queued = Arc::new(AtomicUsize::new(0));
    let room_made = Arc::new(Notify::new());
    let sender = EventSender {
        tx,
        queued: Arc::clone(&queued),
        room_made: Arc::clone(&room_made),
        capacity,
    };
    let receiver = EventReceiver {
        rx,
        queued,
        room_made,
    };
    (sender, receiver)
}

impl EventSender {
    /// Events the channel has room for.
    pub fn room(&self) -> usize {
        self.capacity
            .saturating_sub(self.queued.load(Ordering::Acquire))
    }

    /// Completes once the channel has room for an event.
    pub async fn room_made(&self) {
        loop {
            // Created before the check: a batch taken in between leaves its permit for it.
            let made = self.room_made.notified();
            if self.room() > 0 {
                return;
            }
            made.await;
        }
    }

    /// Queues `batch`, which the caller made fit in [`EventSender::room`]; counted as dropped if
    /// the receiver is gone.
    fn offer(&self, batch: Vec<Event>, stats: &EventReaderStats) {
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
        self.room_made.notify_one();
        Some(batch)
    }

    /// Events waiting in the channel.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// Where records come from: the kernel's ring, or a queue in tests. A record handed to `take`
/// is consumed.
trait RecordSource {
    /// Hands the next record to `take`; false when there is none.
    fn next_record(&mut self, take: impl FnOnce(&[u8])) -> bool;
}

impl RecordSource for RingBuf<MapData> {
    fn next_record(&mut self, take: impl FnOnce(&[u8])) -> bool {
        match self.next() {
            Some(item) => {
                take(&item);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
impl RecordSource for std::collections::VecDeque<Vec<u8>> {
    fn next_record(&mut self, take: impl FnOnce(&[u8])) -> bool {
        match self.pop_front() {
            Some(record) => {
                take(&record);
                true
            }
            None => false,
        }
    }
}

/// How a drain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Drained {
    /// The source had no more records.
    Empty,
    /// The channel filled up; the records left stay in the source.
    ChannelFull,
}

/// Decodes records from `source` and sends them in batches of at most [`BATCH_EVENTS`], taking a
/// record only while the channel has room for it: a full channel never drops, it leaves the rest
/// in the ring, where a full ring is the kernel's to count.
fn drain(source: &mut impl RecordSource, tx: &EventSender, stats: &EventReaderStats) -> Drained {
    let mut batch = Batch::default();
    let drained = loop {
        if tx.room() <= batch.0.len() {
            break Drained::ChannelFull;
        }
        if !source.next_record(|record| batch.decode(record, tx, stats)) {
            break Drained::Empty;
        }
    };
    batch.send(tx, stats);
    drained
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
    let mut readiness = true;
    loop {
        tokio::select! {
            () = tx.closed() => return,
            _ = ticker.tick() => {}
            guard = fd.readable_mut(), if readiness => match guard {
                // Cleared before the drain: a wake-up during it is not lost.
                Ok(mut guard) => guard.clear_ready(),
                Err(err) => {
                    // Without readiness the tick alone keeps the ring drained.
                    tracing::error!(error = %err, "ring buffer poll failed; reading on the tick only");
                    readiness = false;
                }
            },
        }
        while drain(&mut fd.get_mut().0, &tx, &stats) == Drained::ChannelFull {
            tokio::select! {
                () = tx.closed() => return,
                () = tx.room_made() => {}
            }
        }
    }
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

    fn ring(records: Vec<Vec<u8>>) -> std::collections::VecDeque<Vec<u8>> {
        records.into()
    }

    #[tokio::test]
    async fn a_full_channel_leaves_the_rest_in_the_ring() {
        let (tx, mut rx) = channel(2);
        let stats = EventReaderStats::default();
        let mut source = ring(closes(1..=3));
        assert_eq!(drain(&mut source, &tx, &stats), Drained::ChannelFull);
        assert_eq!(counts(&stats), (2, 0));
        assert_eq!(source.len(), 1, "the third record stays in the ring");
        let batch = rx.recv().await.expect("a batch");
        assert_eq!(sock_ids(&batch), [1, 2]);
        tx.room_made().await;
        assert_eq!(drain(&mut source, &tx, &stats), Drained::Empty);
        assert_eq!(sock_ids(&rx.recv().await.expect("a batch")), [3]);
        assert_eq!(counts(&stats), (3, 0));
    }

    #[tokio::test]
    async fn a_slow_consumer_gets_every_event_in_order_in_bounded_batches() {
        let batch = BATCH_EVENTS as u64;
        let capacity = 2 * batch + 44;
        let (tx, mut rx) = channel(capacity as usize);
        let stats = EventReaderStats::default();
        let offered = 4 * batch + 7;
        let mut source = ring(closes(1..=offered));

        let reader = async {
            while drain(&mut source, &tx, &stats) == Drained::ChannelFull {
                assert_eq!(tx.room(), 0, "a drain stops only at a full channel");
                tx.room_made().await;
            }
        };
        let consumer = async {
            let mut received = Vec::new();
            while (received.len() as u64) < offered {
                let batch = rx.recv().await.expect("a batch");
                assert!(!batch.is_empty() && batch.len() <= BATCH_EVENTS);
                assert!(rx.queued() as u64 <= capacity);
                received.extend(sock_ids(&batch));
                tokio::task::yield_now().await;
            }
            received
        };
        let ((), received) = tokio::join!(reader, consumer);
        assert_eq!(received, (1..=offered).collect::<Vec<_>>());
        assert_eq!(counts(&stats), (offered, 0));
    }

    #[tokio::test]
    async fn events_for_a_consumer_that_left_are_counted_as_dropped() {
        let (tx, rx) = channel(16);
        drop(rx);
        let stats = EventReaderStats::default();
        assert_eq!(drain(&mut ring(closes(1..=5)), &tx, &stats), Drained::Empty);
        assert_eq!(counts(&stats), (0, 5));
        tx.closed().await;
    }

    #[tokio::test]
    async fn undecodable_records_are_counted_not_delivered() {
        let (tx, rx) = channel(4);
        let stats = EventReaderStats::default();
        drain(
            &mut ring(vec![vec![0xee, 0, 0, 0, 0, 0, 0, 0]]),
            &tx,
            &stats,
        );
        assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);
        assert_eq!((counts(&stats), rx.queued()), ((0, 0), 0));
    }
}
