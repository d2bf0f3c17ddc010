//! One signal's queue between the pipeline and its sender task: an open batch being filled up to
//! `max_batch_items`, and a bounded list of full batches waiting to be sent.
//!
//! Waiting batches: `queue_capacity`; when full: the oldest waiting batch is dropped and its
//! items counted in `dropped_queue_full`, because during an outage the newest data is the most
//! useful once the store is back. Together with the open batch and the one the sender holds, a
//! signal keeps at most `(queue_capacity + 2) × max_batch_items` items.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::signal::Signal;
use super::stats::{ExporterStats, SignalStats};

/// Resources to send in one request, and how many items they hold.
pub(crate) struct Batch<S: Signal> {
    pub resources: Vec<S::Resource>,
    pub items: usize,
}

impl<S: Signal> Batch<S> {
    fn empty() -> Batch<S> {
        Batch {
            resources: Vec::new(),
            items: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }
}

/// The batching logic, without locking or waking: pure, so tested directly.
pub(crate) struct Batcher<S: Signal> {
    max_batch_items: usize,
    capacity: usize,
    open: Batch<S>,
    /// When the first item entered the open batch.
    open_since: Option<Instant>,
    full: VecDeque<Batch<S>>,
}

/// What one [`Batcher::push`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pushed {
    /// Batches that became full.
    pub sealed: usize,
    /// Items of the oldest batches dropped to make room.
    pub dropped_items: usize,
}

impl<S: Signal> Batcher<S> {
    pub fn new(max_batch_items: usize, capacity: usize) -> Batcher<S> {
        debug_assert!(max_batch_items > 0 && capacity > 0);
        Batcher {
            max_batch_items,
            capacity,
            open: Batch::empty(),
            open_since: None,
            full: VecDeque::new(),
        }
    }

    /// Adds resources to the open batch, splitting them where a batch fills.
    pub fn push(&mut self, resources: Vec<S::Resource>, now: Instant) -> Pushed {
        let mut pushed = Pushed::default();
        for mut resource in resources {
            loop {
                let items = S::items(&resource);
                let room = self.max_batch_items - self.open.items;
                let rest = (items > room).then(|| S::split_off(&mut resource, room));
                self.open.items += items.min(room);
                self.open.resources.push(resource);
                self.open_since.get_or_insert(now);
                if self.open.items == self.max_batch_items {
                    pushed.dropped_items += self.seal();
                    pushed.sealed += 1;
                }
                match rest {
                    Some(rest) => resource = rest,
                    None => break,
                }
            }
        }
        debug_assert!(self.full.len() <= self.capacity);
        debug_assert!(self.open.items < self.max_batch_items);
        pushed
    }

    /// Moves the open batch to the waiting ones; returns the items dropped to make room.
    fn seal(&mut self) -> usize {
        let batch = std::mem::replace(&mut self.open, Batch::empty());
        self.open_since = None;
        let mut dropped = 0;
        if self.full.len() == self.capacity {
            dropped = self.full.pop_front().map_or(0, |oldest| oldest.items);
        }
        self.full.push_back(batch);
        dropped
    }

    /// The next batch to send: the oldest full one, else the open one once it is `flush_after`
    /// old (or at once when `flush_now`). `Err` says when the open batch will be due, if any.
    pub fn next_due(
        &mut self,
        now: Instant,
        flush_after: Duration,
        flush_now: bool,
    ) -> Result<Batch<S>, Option<Instant>> {
        if let Some(batch) = self.full.pop_front() {
            return Ok(batch);
        }
        if self.open.is_empty() {
            return Err(None);
        }
        let due = self.open_since.unwrap_or(now) + flush_after;
        if flush_now || now >= due {
            self.open_since = None;
            return Ok(std::mem::replace(&mut self.open, Batch::empty()));
        }
        Err(Some(due))
    }

    pub fn waiting_batches(&self) -> usize {
        self.full.len()
    }

    pub fn queued_items(&self) -> usize {
        self.open.items + self.full.iter().map(|batch| batch.items).sum::<usize>()
    }

    /// Empties the queue, returning the items it held.
    pub fn clear(&mut self) -> usize {
        let items = self.queued_items();
        self.full.clear();
        self.open = Batch::empty();
        self.open_since = None;
        items
    }
}

/// The batcher shared by the pipeline (push) and the sender task (take), with its wakeup.
pub(crate) struct Queue<S: Signal> {
    state: Mutex<QueueState<S>>,
    wake: Notify,
    stats: Arc<ExporterStats>,
}

pub(crate) struct QueueState<S: Signal> {
    pub batcher: Batcher<S>,
    /// No more pushes are taken: the exporter stopped.
    pub closed: bool,
    /// Send everything now and stop by then: the exporter is shutting down.
    pub drain_deadline: Option<Instant>,
    /// Items of the batch the sender holds, counted as dropped if the sender is stopped.
    pub in_flight_items: usize,
}

impl<S: Signal> Queue<S> {
    pub fn new(max_batch_items: usize, capacity: usize, stats: Arc<ExporterStats>) -> Queue<S> {
        Queue {
            state: Mutex::new(QueueState {
                batcher: Batcher::new(max_batch_items, capacity),
                closed: false,
                drain_deadline: None,
                in_flight_items: 0,
            }),
            wake: Notify::new(),
            stats,
        }
    }

    pub fn stats(&self) -> &SignalStats {
        self.stats.signal(S::KIND)
    }

    pub fn lock(&self) -> MutexGuard<'_, QueueState<S>> {
        // A panic under the lock must not wedge the pipeline's pushes; the state it leaves is at
        // worst short of the batch being moved.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Never waits. Queue: `queue_capacity` full batches; when full: drop the oldest, count its
    /// items in `dropped_queue_full`.
    pub fn push(&self, resources: Vec<S::Resource>) {
        let items: usize = resources.iter().map(S::items).sum();
        let mut state = self.lock();
        if state.closed {
            drop(state);
            self.stats()
                .dropped_gave_up
                .fetch_add(items as u64, Ordering::Relaxed);
            return;
        }
        let was_idle = state.batcher.queued_items() == 0;
        let pushed = state.batcher.push(resources, Instant::now());
        self.publish_depth(&state);
        drop(state);
        if pushed.dropped_items > 0 {
            self.stats()
                .dropped_queue_full
                .fetch_add(pushed.dropped_items as u64, Ordering::Relaxed);
        }
        // The sender needs waking for a full batch, or to start the open batch's flush timer.
        if pushed.sealed > 0 || was_idle {
            self.wake.notify_one();
        }
    }

    /// Waits for the next batch due; `None` once draining and empty, or closed.
    pub async fn next_batch(&self, flush_after: Duration) -> Option<Batch<S>> {
        loop {
            let notified = self.wake.notified();
            let due = {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                let draining = state.drain_deadline.is_some();
                match state
                    .batcher
                    .next_due(Instant::now(), flush_after, draining)
                {
                    Ok(batch) => {
                        state.in_flight_items = batch.items;
                        self.publish_depth(&state);
                        return Some(batch);
                    }
                    Err(_) if draining => return None,
                    Err(due) => due,
                }
            };
            match due {
                Some(due) => {
                    tokio::select! {
                        () = notified => {}
                        () = tokio::time::sleep_until(due) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// The sender is done with its batch (sent, refused or given up).
    pub fn finish_batch(&self) {
        self.lock().in_flight_items = 0;
    }

    pub fn drain_deadline(&self) -> Option<Instant> {
        self.lock().drain_deadline
    }

    /// Sends what is queued by `deadline`, then lets the sender stop.
    pub fn drain(&self, deadline: Instant) {
        self.lock().drain_deadline = Some(deadline);
        self.wake.notify_one();
    }

    /// Resolves on the next push, drain or close (or at once if one came since the last wait).
    pub async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Stops taking and sending; returns the items still queued or in flight.
    pub fn close(&self) -> usize {
        let mut state = self.lock();
        state.closed = true;
        let items = state.batcher.clear() + std::mem::take(&mut state.in_flight_items);
        self.publish_depth(&state);
        drop(state);
        self.wake.notify_one();
        items
    }

    fn publish_depth(&self, state: &QueueState<S>) {
        self.stats()
            .queued_batches
            .store(state.batcher.waiting_batches() as u64, Ordering::Relaxed);
        self.stats()
            .queued_items
            .store(state.batcher.queued_items() as u64, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::super::signal::tests::{logs, numbers};
    use super::super::signal::Logs;
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn sizes(batch: &Batch<Logs>) -> Vec<usize> {
        batch.resources.iter().map(Logs::items).collect()
    }

    #[test]
    fn small_pushes_share_one_batch_until_it_is_due() {
        let start = Instant::now();
        let mut batcher = Batcher::<Logs>::new(10, 4);
        batcher.push(vec![logs(0, &[3])], start);
        batcher.push(vec![logs(3, &[4])], start + SECOND / 2);
        assert_eq!(batcher.waiting_batches(), 0);
        assert_eq!(batcher.queued_items(), 7);
        // Due one interval after its first item, not its last.
        let Err(Some(due)) = batcher.next_due(start + SECOND / 2, SECOND, false) else {
            panic!("not due yet");
        };
        assert_eq!(due, start + SECOND);
        let batch = batcher.next_due(due, SECOND, false).expect("due");
        assert_eq!((batch.items, sizes(&batch)), (7, vec![3, 4]));
        assert!(matches!(batcher.next_due(due, SECOND, false), Err(None)));
    }

    #[test]
    fn a_large_push_is_split_into_full_batches() {
        let start = Instant::now();
        let mut batcher = Batcher::<Logs>::new(10, 4);
        batcher.push(vec![logs(0, &[4])], start);
        let pushed = batcher.push(vec![logs(4, &[12, 9])], start);
        assert_eq!(pushed.sealed, 2);
        assert_eq!(pushed.dropped_items, 0);
        let first = batcher.next_due(start, SECOND, false).expect("full");
        assert_eq!(sizes(&first), [4, 6]);
        let second = batcher.next_due(start, SECOND, false).expect("full");
        assert_eq!(second.items, 10);
        // The remaining 5 wait in the open batch; a flush takes them at once.
        assert!(batcher.next_due(start, SECOND, false).is_err());
        let rest = batcher.next_due(start, SECOND, true).expect("flushed");
        assert_eq!(rest.items, 5);
        assert_eq!(batcher.queued_items(), 0);
    }

    #[test]
    fn a_full_queue_drops_its_oldest_batch() {
        let start = Instant::now();
        let mut batcher = Batcher::<Logs>::new(2, 2);
        let mut dropped = 0;
        for n in 0..5 {
            dropped += batcher.push(vec![logs(2 * n, &[2])], start).dropped_items;
        }
        assert_eq!(dropped, 6, "batches 0, 1 and 2 made room");
        assert_eq!(batcher.waiting_batches(), 2);
        let first = batcher.next_due(start, SECOND, false).expect("waiting");
        assert_eq!(
            numbers(&first.resources[0])[0],
            6,
            "the oldest kept is batch 3"
        );
    }

    #[test]
    fn resources_without_items_travel_with_the_next_batch() {
        let start = Instant::now();
        let mut batcher = Batcher::<Logs>::new(10, 4);
        batcher.push(vec![logs(0, &[])], start);
        let batch = batcher.next_due(start, Duration::ZERO, false).ok();
        assert_eq!(batch.map(|b| (b.items, b.resources.len())), Some((0, 1)));
    }
}
