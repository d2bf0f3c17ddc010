//! Drains the kernel's event ring buffer into a bounded channel of decoded [`Event`]s. Wakes on
//! the ring's epoll readiness (which the kernel signals only past a fill threshold) and on a
//! tick, so records written without a wakeup still arrive within one tick. Knows the ring and
//! the decoder, not what consumers do with events.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::events::{self, Event};

#[derive(Clone, Debug)]
pub struct EventReaderConfig {
    /// Longest a record may wait in the ring when the kernel did not wake us.
    pub tick: Duration,
    /// Decoded events waiting for the consumer.
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

/// Decodes records and offers them to the channel.
///
/// Channel: `EventReaderConfig::channel_capacity` events; when full: drop the newest event and
/// count `dropped_channel_full`. The ring must keep draining whatever the consumer does, or the
/// kernel starts dropping at the source, where loss is coarser.
pub fn deliver<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    tx: &mpsc::Sender<Event>,
    stats: &EventReaderStats,
) {
    for record in records {
        match events::decode(record) {
            Ok(event) => match tx.try_send(event) {
                Ok(()) => {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    stats.dropped_channel_full.fetch_add(1, Ordering::Relaxed);
                }
            },
            Err(err) => {
                let seen = stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                if seen == 0 {
                    tracing::error!(error = %err, "undecodable event record; further ones counted only");
                }
            }
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
) -> Result<(mpsc::Receiver<Event>, Arc<EventReaderStats>, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel(config.channel_capacity);
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
    tx: mpsc::Sender<Event>,
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

fn drain(ring: &mut RingBuf<MapData>, tx: &mpsc::Sender<Event>, stats: &EventReaderStats) {
    while let Some(item) = ring.next() {
        deliver([&*item], tx, stats);
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

    #[test]
    fn a_full_channel_drops_the_newest_and_counts() {
        let (tx, mut rx) = mpsc::channel(2);
        let stats = EventReaderStats::default();
        let records: Vec<Vec<u8>> = (1..=3).map(closed_record).collect();
        deliver(records.iter().map(Vec::as_slice), &tx, &stats);
        assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
        assert_eq!(stats.dropped_channel_full.load(Ordering::Relaxed), 1);
        let Ok(Event::ConnectionClosed(first)) = rx.try_recv() else {
            panic!("expected a close");
        };
        assert_eq!(first.sock_id, 1);
    }

    #[test]
    fn undecodable_records_are_counted_not_delivered() {
        let (tx, mut rx) = mpsc::channel(4);
        let stats = EventReaderStats::default();
        deliver([&[0xee, 0, 0, 0, 0, 0, 0, 0][..]], &tx, &stats);
        assert_eq!(stats.decode_errors.load(Ordering::Relaxed), 1);
        assert!(rx.try_recv().is_err());
    }
}
