//! Keeps the pod and node indexes current from the Kubernetes API: one list-then-watch of all
//! Pods and one of all Nodes, through `kube`'s watcher (pages of 500, bookmarks, resume from the
//! last resource version, relist on 410 Gone, backoff on errors).
//!
//! Pods are watched cluster-wide, not only this node's: the remote end of a connection is any
//! pod of the cluster, found by address, and a node-scoped watch on top would only repeat a
//! subset of the same stream. Objects are reduced to small records as they arrive; no copy of
//! the objects is kept.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource};
use parking_lot::RwLock;
use serde::de::DeserializeOwned;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

use super::pods::{NodeIndex, NodeRecord, PodIndex, PodRecord};

/// An index a watch keeps: how to read an object into a record, and how to apply records.
pub(crate) trait Watched: Default + Send + Sync + 'static {
    type Object: Resource<DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned
        + Send
        + Sync
        + 'static;
    type Record: Send + 'static;
    const KIND: &'static str;

    fn record(object: &Self::Object) -> Option<Self::Record>;
    /// The key a delete names: a pod's UID, a node's name.
    fn key(object: &Self::Object) -> Option<String>;
    fn from_records(records: Vec<Self::Record>) -> Self;
    fn upsert(&mut self, record: Self::Record);
    fn remove(&mut self, key: &str);
}

impl Watched for PodIndex {
    type Object = Pod;
    type Record = PodRecord;
    const KIND: &'static str = "Pod";

    fn record(pod: &Pod) -> Option<PodRecord> {
        PodRecord::from_pod(pod)
    }
    fn key(pod: &Pod) -> Option<String> {
        pod.metadata.uid.clone()
    }
    fn from_records(records: Vec<PodRecord>) -> Self {
        PodIndex::from_records(records)
    }
    fn upsert(&mut self, record: PodRecord) {
        PodIndex::upsert(self, record)
    }
    fn remove(&mut self, uid: &str) {
        PodIndex::remove(self, uid)
    }
}

impl Watched for NodeIndex {
    type Object = Node;
    type Record = NodeRecord;
    const KIND: &'static str = "Node";

    fn record(node: &Node) -> Option<NodeRecord> {
        NodeRecord::from_node(node)
    }
    fn key(node: &Node) -> Option<String> {
        node.metadata.name.clone()
    }
    fn from_records(records: Vec<NodeRecord>) -> Self {
        NodeIndex::from_records(records)
    }
    fn upsert(&mut self, record: NodeRecord) {
        NodeIndex::upsert(self, record)
    }
    fn remove(&mut self, name: &str) {
        NodeIndex::remove(self, name)
    }
}

/// One watched index, shared between its watch task and the readers.
pub(crate) struct Feed<I> {
    pub(crate) index: RwLock<I>,
    /// Becomes true when the first complete list has been applied.
    pub(crate) synced: signal::Sender<bool>,
    pub(crate) errors: AtomicU64,
}

impl<I: Watched> Feed<I> {
    pub(crate) fn new() -> Arc<Feed<I>> {
        Arc::new(Feed {
            index: RwLock::new(I::default()),
            synced: signal::channel(false).0,
            errors: AtomicU64::new(0),
        })
    }

    /// Applies one watcher event. A relist is collected in `pending` and swapped in whole at
    /// its end, so that objects deleted while the watch was down disappear and readers never
    /// see a half-built index.
    pub(crate) fn apply(&self, event: Event<I::Object>, pending: &mut Option<Vec<I::Record>>) {
        match event {
            Event::Init => *pending = Some(Vec::new()),
            Event::InitApply(object) => {
                if let (Some(records), Some(record)) = (pending.as_mut(), I::record(&object)) {
                    records.push(record);
                }
            }
            Event::InitDone => {
                let fresh = I::from_records(pending.take().unwrap_or_default());
                *self.index.write() = fresh;
                self.synced.send_replace(true);
            }
            Event::Apply(object) => {
                if let Some(record) = I::record(&object) {
                    self.index.write().upsert(record);
                }
            }
            Event::Delete(object) => {
                if let Some(key) = I::key(&object) {
                    self.index.write().remove(&key);
                }
            }
        }
    }
}

/// Starts the watch of `I`'s objects on the current runtime. It runs until aborted.
pub(crate) fn spawn<I: Watched>(client: Client, feed: Arc<Feed<I>>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<I::Object> = Api::all(client);
        let mut events = watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed();
        let mut pending = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => feed.apply(event, &mut pending),
                Err(err) => {
                    feed.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(kind = I::KIND, error = %err, "kubernetes watch failed; retrying");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, ip: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": { "name": format!("p-{uid}"), "namespace": "ns", "uid": uid },
            "status": { "podIP": ip, "phase": "Running" }
        }))
        .unwrap()
    }

    #[test]
    fn a_relist_replaces_the_index_at_its_end() {
        let feed = Feed::<PodIndex>::new();
        let mut pending = None;
        let mut synced = feed.synced.subscribe();
        feed.apply(Event::Init, &mut pending);
        feed.apply(Event::InitApply(pod("a", "10.0.0.1")), &mut pending);
        assert!(
            feed.index.read().is_empty(),
            "nothing visible before the list ends"
        );
        feed.apply(Event::InitDone, &mut pending);
        assert!(*synced.borrow_and_update());
        feed.apply(Event::Apply(pod("b", "10.0.0.2")), &mut pending);
        assert_eq!(feed.index.read().len(), 2);

        // The watch was down while `a` was deleted: the relist drops it.
        feed.apply(Event::Init, &mut pending);
        feed.apply(Event::InitApply(pod("b", "10.0.0.2")), &mut pending);
        assert_eq!(
            feed.index.read().len(),
            2,
            "old index serves during the relist"
        );
        feed.apply(Event::InitDone, &mut pending);
        let index = feed.index.read();
        assert_eq!(index.len(), 1);
        assert!(index.by_uid("a").is_none());
        drop(index);

        feed.apply(Event::Delete(pod("b", "10.0.0.2")), &mut pending);
        assert!(feed.index.read().is_empty());
    }
}
