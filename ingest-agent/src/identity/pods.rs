//! The Kubernetes side of identity: what a Pod or Node object says about who is behind a UID, a
//! container id or an address, in indexes small enough to hold every pod of a cluster. Objects
//! are read once into records and dropped; the watch that feeds them lives in `watch`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::Identity;

/// The label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet's name is
/// `<deployment>-<hash>`.
const POD_TEMPLATE_HASH: &str = "pod-template-hash";
/// On a mirror pod: the UID the kubelet gave the static pod, which names its cgroup.
const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

/// What we keep of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRecord {
    pub uid: String,
    /// namespace, workload, workload_kind, pod, node.
    pub identity: Identity,
    /// `status.podIPs`; empty for host-network pods, whose address is their node's, and for
    /// finished pods, whose address may already belong to another pod.
    pub ips: Vec<IpAddr>,
    /// Container ids without the runtime scheme, of every container, init and ephemeral too.
    pub container_ids: Vec<String>,
    /// The static pod's UID, for a mirror pod.
    pub mirror_uid: Option<String>,
}

impl PodRecord {
    pub fn from_pod(pod: &Pod) -> Option<PodRecord> {
        let meta = &pod.metadata;
        let uid = meta.uid.clone().filter(|uid| !uid.is_empty())?;
        let name = meta.name.clone().unwrap_or_default();
        let (workload_kind, workload) = workload_of(meta, &name);
        let spec = pod.spec.as_ref();
        let status = pod.status.as_ref();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        let finished = matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        );
        let ips = if host_network || finished {
            Vec::new()
        } else {
            pod_ips(pod)
        };
        let container_ids = status
            .into_iter()
            .flat_map(|s| {
                [
                    &s.container_statuses,
                    &s.init_container_statuses,
                    &s.ephemeral_container_statuses,
                ]
            })
            .flatten()
            .flatten()
            .filter_map(|c| c.container_id.as_deref().and_then(strip_runtime_scheme))
            .collect();
        Some(PodRecord {
            identity: Identity {
                namespace: meta.namespace.clone().unwrap_or_default(),
                workload,
                workload_kind,
                pod: name,
                node: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
                ..Identity::default()
            },
            uid,
            ips,
            container_ids,
            mirror_uid: meta
                .annotations
                .as_ref()
                .and_then(|a| a.get(CONFIG_MIRROR).cloned()),
        })
    }
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .map(|p| p.ip.as_str())
        .chain(status.pod_ip.as_deref())
        .filter_map(|text| text.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
        .collect();
    ips.sort_unstable();
    ips.dedup();
    ips
}

/// `containerd://<id>`, `cri-o://<id>`, `docker://<id>` → `<id>`.
fn strip_runtime_scheme(container_id: &str) -> Option<String> {
    let id = container_id
        .split_once("://")
        .map_or(container_id, |(_, id)| id);
    (!id.is_empty()).then(|| id.to_ascii_lowercase())
}

/// (kind, name) of the workload owning a pod: the controller owner, with a Deployment's
/// ReplicaSet read as the Deployment; a pod without owner is its own workload.
///
/// A Job is reported as itself even when a CronJob made it: only the Job object names the
/// CronJob, and its name suffix (the scheduled minute) cannot be told apart from a hand-made
/// Job's name.
pub fn workload_of(meta: &ObjectMeta, pod_name: &str) -> (String, String) {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    let Some(owner) = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or(owners.first())
    else {
        return ("Pod".into(), pod_name.into());
    };
    if owner.kind == "ReplicaSet" {
        let hash = meta.labels.as_ref().and_then(|l| l.get(POD_TEMPLATE_HASH));
        if let Some(deployment) = hash.and_then(|hash| {
            owner
                .name
                .strip_suffix(hash.as_str())
                .and_then(|rest| rest.strip_suffix('-'))
                .filter(|name| !name.is_empty())
        }) {
            return ("Deployment".into(), deployment.into());
        }
    }
    (owner.kind.clone(), owner.name.clone())
}

/// Pods by UID, container id and address. Records are shared, so every key of a pod points to
/// one allocation.
#[derive(Debug, Default)]
pub struct PodIndex {
    by_uid: HashMap<String, Arc<PodRecord>>,
    by_container: HashMap<String, String>,
    by_mirror_uid: HashMap<String, String>,
    /// Pod UIDs by address, the latest holder last. Addresses are reused; while two live pods
    /// claim one (a delete not yet seen), the newer claim answers.
    by_ip: HashMap<IpAddr, Vec<String>>,
}

impl PodIndex {
    pub fn from_records(records: impl IntoIterator<Item = PodRecord>) -> PodIndex {
        let mut index = PodIndex::default();
        for record in records {
            index.upsert(record);
        }
        index
    }

    pub fn upsert(&mut self, record: PodRecord) {
        self.remove(&record.uid);
        let record = Arc::new(record);
        let uid = &record.uid;
        for id in &record.container_ids {
            self.by_container.insert(id.clone(), uid.clone());
        }
        if let Some(mirror) = &record.mirror_uid {
            self.by_mirror_uid.insert(mirror.clone(), uid.clone());
        }
        for ip in &record.ips {
            self.by_ip.entry(*ip).or_default().push(uid.clone());
        }
        self.by_uid.insert(uid.clone(), record);
    }

    pub fn remove(&mut self, uid: &str) {
        let Some(record) = self.by_uid.remove(uid) else {
            return;
        };
        for id in &record.container_ids {
            if self.by_container.get(id).is_some_and(|owner| owner == uid) {
                self.by_container.remove(id);
            }
        }
        if let Some(mirror) = &record.mirror_uid {
            if self
                .by_mirror_uid
                .get(mirror)
                .is_some_and(|owner| owner == uid)
            {
                self.by_mirror_uid.remove(mirror);
            }
        }
        for ip in &record.ips {
            if let Some(holders) = self.by_ip.get_mut(ip) {
                holders.retain(|holder| holder != uid);
                if holders.is_empty() {
                    self.by_ip.remove(ip);
                }
            }
        }
    }

    /// By the UID a cgroup path names: the pod's own, or a static pod's.
    pub fn by_uid(&self, uid: &str) -> Option<&Arc<PodRecord>> {
        self.by_uid.get(uid).or_else(|| {
            self.by_mirror_uid
                .get(uid)
                .and_then(|mirror| self.by_uid.get(mirror))
        })
    }

    pub fn by_container(&self, container_id: &str) -> Option<&Arc<PodRecord>> {
        self.by_container
            .get(container_id)
            .and_then(|uid| self.by_uid.get(uid))
    }

    pub fn by_ip(&self, ip: IpAddr) -> Option<&Arc<PodRecord>> {
        self.by_ip
            .get(&ip)
            .and_then(|holders| holders.last())
            .and_then(|uid| self.by_uid.get(uid))
    }

    pub fn len(&self) -> usize {
        self.by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_uid.is_empty()
    }

    pub fn ips(&self) -> usize {
        self.by_ip.len()
    }
}

/// What we keep of a node: its name and internal addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

impl NodeRecord {
    /// `status.addresses` of type `InternalIP`: the addresses nodes and pods reach each other
    /// by. External addresses are left to CIDR labels, since they may be shared behind NAT.
    pub fn from_node(node: &Node) -> Option<NodeRecord> {
        let name = node.metadata.name.clone().filter(|n| !n.is_empty())?;
        let mut ips: Vec<IpAddr> = node
            .status
            .iter()
            .flat_map(|s| s.addresses.iter().flatten())
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .collect();
        ips.sort_unstable();
        ips.dedup();
        Some(NodeRecord { name, ips })
    }
}

#[derive(Debug, Default)]
pub struct NodeIndex {
    by_name: HashMap<String, Vec<IpAddr>>,
    by_ip: HashMap<IpAddr, String>,
}

impl NodeIndex {
    pub fn from_records(records: impl IntoIterator<Item = NodeRecord>) -> NodeIndex {
        let mut index = NodeIndex::default();
        for record in records {
            index.upsert(record);
        }
        index
    }

    pub fn upsert(&mut self, record: NodeRecord) {
        self.remove(&record.name);
        for ip in &record.ips {
            self.by_ip.insert(*ip, record.name.clone());
        }
        self.by_name.insert(record.name, record.ips);
    }

    pub fn remove(&mut self, name: &str) {
        for ip in self.by_name.remove(name).unwrap_or_default() {
            if self.by_ip.get(&ip).is_some_and(|owner| owner == name) {
                self.by_ip.remove(&ip);
            }
        }
    }

    pub fn by_ip(&self, ip: IpAddr) -> Option<&str> {
        self.by_ip.get(&ip).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).expect("a valid Pod")
    }

    fn deployment_pod(uid: &str, ip: &str, phase: &str) -> Pod {
        pod(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "checkout-7d9f8b6c5d-x2v9q",
                "namespace": "shop",
                "uid": uid,
                "labels": { "app": "checkout", "pod-template-hash": "7d9f8b6c5d" },
                "ownerReferences": [{
                    "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "checkout-7d9f8b6c5d",
                    "uid": "0b1c", "controller": true, "blockOwnerDeletion": true
                }]
            },
            "spec": { "nodeName": "node-a", "containers": [{ "name": "app", "image": "shop/checkout:1" }] },
            "status": {
                "phase": phase,
                "podIP": ip,
                "podIPs": [{ "ip": ip }, { "ip": "fd00:10:244::5" }],
                "hostIP": "10.0.0.11",
                "containerStatuses": [{
                    "name": "app", "image": "shop/checkout:1", "imageID": "", "ready": true,
                    "restartCount": 0,
                    "containerID": "containerd://AB12cd0000000000000000000000000000000000000000000000000000000000"
                }],
                "initContainerStatuses": [{
                    "name": "migrate", "image": "shop/migrate:1", "imageID": "", "ready": false,
                    "restartCount": 0, "containerID": "cri-o://ef56"
                }]
            }
        }))
    }

    #[test]
    fn a_deployment_pod_is_named_by_its_deployment() {
        let record = PodRecord::from_pod(&deployment_pod("u1", "10.244.1.5", "Running")).unwrap();
        assert_eq!(record.uid, "u1");
        assert_eq!(record.identity.namespace, "shop");
        assert_eq!(record.identity.workload, "checkout");
        assert_eq!(record.identity.workload_kind, "Deployment");
        assert_eq!(record.identity.pod, "checkout-7d9f8b6c5d-x2v9q");
        assert_eq!(record.identity.node, "node-a");
        assert_eq!(
            record.ips,
            vec![
                "10.244.1.5".parse::<IpAddr>().unwrap(),
                "fd00:10:244::5".parse().unwrap()
            ]
        );
        assert_eq!(
            record.container_ids,
            vec![
                "ab12cd0000000000000000000000000000000000000000000000000000000000".to_owned(),
                "ef56".to_owned()
            ]
        );
    }

    fn owned(kind: &str, name: &str, labels: serde_json::Value) -> (String, String) {
        let meta: ObjectMeta = serde_json::from_value(json!({
            "name": "p",
            "labels": labels,
            "ownerReferences": [
                { "apiVersion": "v1", "kind": "Other", "name": "not-the-controller", "uid": "x" },
                { "apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "y", "controller": true }
            ]
        }))
        .unwrap();
        workload_of(&meta, "p")
    }

    #[test]
    fn workloads_follow_the_controller_owner() {
        let none = json!({});
        assert_eq!(
            owned("StatefulSet", "db", none.clone()),
            ("StatefulSet".into(), "db".into())
        );
        assert_eq!(
            owned("DaemonSet", "agent", none.clone()),
            ("DaemonSet".into(), "agent".into())
        );
        assert_eq!(
            owned("Job", "report-28999440", none.clone()),
            ("Job".into(), "report-28999440".into())
        );
        // A ReplicaSet made by hand, or whose name does not end in the hash, stays itself.
        assert_eq!(
            owned("ReplicaSet", "legacy", none),
            ("ReplicaSet".into(), "legacy".into())
        );
        assert_eq!(
            owned(
                "ReplicaSet",
                "web-abc",
                json!({ "pod-template-hash": "xyz" })
            ),
            ("ReplicaSet".into(), "web-abc".into())
        );
        assert_eq!(
            owned(
                "ReplicaSet",
                "web-abc",
                json!({ "pod-template-hash": "abc" })
            ),
            ("Deployment".into(), "web".into())
        );
        let bare: ObjectMeta = serde_json::from_value(json!({ "name": "debug" })).unwrap();
        assert_eq!(workload_of(&bare, "debug"), ("Pod".into(), "debug".into()));
    }

    #[test]
    fn finished_and_host_network_pods_claim_no_address() {
        let done = PodRecord::from_pod(&deployment_pod("u1", "10.244.1.5", "Succeeded")).unwrap();
        assert!(done.ips.is_empty());
        assert!(!done.container_ids.is_empty());
        let mut host = deployment_pod("u2", "10.0.0.11", "Running");
        host.spec.as_mut().unwrap().host_network = Some(true);
        assert!(PodRecord::from_pod(&host).unwrap().ips.is_empty());
        let mut no_uid = deployment_pod("", "10.0.0.1", "Running");
        assert!(PodRecord::from_pod(&no_uid).is_none());
        no_uid.metadata.uid = None;
        assert!(PodRecord::from_pod(&no_uid).is_none());
    }

    fn record(uid: &str, ip: &str) -> PodRecord {
        PodRecord {
            uid: uid.into(),
            identity: Identity {
                pod: format!("pod-{uid}"),
                ..Identity::default()
            },
            ips: vec![ip.parse().unwrap()],
            container_ids: vec![format!("c-{uid}")],
            mirror_uid: None,
        }
    }

    #[test]
    fn the_index_follows_updates_deletes_and_address_reuse() {
        let ip: IpAddr = "10.244.1.5".parse().unwrap();
        let mut index = PodIndex::from_records([record("a", "10.244.1.5")]);
        assert_eq!(index.by_ip(ip).unwrap().uid, "a");
        assert_eq!(index.by_container("c-a").unwrap().uid, "a");
        // b takes the address before a's delete arrives; a's delete leaves b in place.
        index.upsert(record("b", "10.244.1.5"));
        assert_eq!(index.by_ip(ip).unwrap().uid, "b");
        index.remove("a");
        assert_eq!(index.by_ip(ip).unwrap().uid, "b");
        assert!(index.by_container("c-a").is_none());
        // An update that changes the address moves the key.
        index.upsert(record("b", "10.244.1.6"));
        assert!(index.by_ip(ip).is_none());
        assert_eq!(index.len(), 1);
        assert_eq!(index.ips(), 1);
        index.remove("b");
        assert!(index.is_empty());
        assert_eq!(index.ips(), 0);
        index.remove("never-seen");
    }

    #[test]
    fn a_static_pod_is_found_by_the_uid_its_cgroup_carries() {
        let mut mirror = record("api-uid", "10.0.0.11");
        mirror.mirror_uid = Some("5d3b8e4f0a1c2b3d4e5f60718293a4b5".into());
        let index = PodIndex::from_records([mirror]);
        assert_eq!(
            index
                .by_uid("5d3b8e4f0a1c2b3d4e5f60718293a4b5")
                .unwrap()
                .uid,
            "api-uid"
        );
        assert_eq!(index.by_uid("api-uid").unwrap().uid, "api-uid");
    }

    #[test]
    fn nodes_are_found_by_internal_address() {
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": "node-a", "uid": "n1" },
            "status": { "addresses": [
                { "type": "InternalIP", "address": "10.0.0.11" },
                { "type": "ExternalIP", "address": "203.0.113.11" },
                { "type": "Hostname", "address": "node-a" }
            ]}
        }))
        .unwrap();
        let record = NodeRecord::from_node(&node).unwrap();
        assert_eq!(record.ips, vec!["10.0.0.11".parse::<IpAddr>().unwrap()]);
        let mut index = NodeIndex::from_records([record]);
        assert_eq!(index.by_ip("10.0.0.11".parse().unwrap()), Some("node-a"));
        assert_eq!(index.by_ip("203.0.113.11".parse().unwrap()), None);
        index.remove("node-a");
        assert!(index.is_empty());
        assert_eq!(index.by_ip("10.0.0.11".parse().unwrap()), None);
    }
}
