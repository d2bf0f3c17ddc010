//! Service identity of both ends of every observed socket (DESIGN §3). The local end is found from
//! the cgroup id the kernel reports: [`cgroup`] maps it to a cgroup path and the path to a pod,
//! container or host unit; [`pods`] holds the Kubernetes pods and nodes that the `watch` module
//! keeps current. The remote end is found from its address: a pod or node by IP, else the DNS
//! name the client resolved ([`external`], learned by snooping answers), else a configured CIDR
//! label, else `world`. [`Resolver`] ties them together behind one cheap-to-clone handle.
//!
//! Knows nothing of the kernel programs beyond the cgroup id, and nothing of export formats: an
//! [`Identity`]'s fields are the flow-record fields `src.*`/`dst.*` of `docs/flow-schema.md`.

pub mod cgroup;
pub mod config;
pub mod external;
pub mod pods;
mod resolver;
mod watch;

use std::fmt;

pub use config::{Cidr, IdentityConfig, KubernetesSource};
pub use resolver::{IdentityStats, Resolver};

/// The name of an external end nothing else names.
pub const WORLD: &str = "world";

/// One end of a connection. Empty strings are absent fields; which ones are set says what kind
/// of end it is: a pod (`namespace`, `workload`, `workload_kind`, `pod`, `node`), a host process
/// (`node`, `process`), a node seen from afar (`node`) or an external end (`name`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Identity {
    pub namespace: String,
    /// The owning workload: Deployment, StatefulSet, DaemonSet, Job … or the pod itself.
    pub workload: String,
    pub workload_kind: String,
    pub pod: String,
    pub node: String,
    /// A host process's systemd unit, or its cgroup's name.
    pub process: String,
    /// External ends: the DNS name the client resolved, else a CIDR label, else `world`.
    pub name: String,
}

impl Identity {
    /// A process outside any pod on `node`.
    pub fn host(node: &str, process: &str) -> Identity {
        Identity {
            node: node.to_owned(),
            process: process.to_owned(),
            ..Identity::default()
        }
    }

    /// An end outside the cluster, known only by a name.
    pub fn external(name: &str) -> Identity {
        Identity {
            name: name.to_owned(),
            ..Identity::default()
        }
    }

    pub fn is_pod(&self) -> bool {
        !self.pod.is_empty()
    }

    pub fn is_external(&self) -> bool {
        !self.name.is_empty()
    }

    /// Nothing is known of this end.
    pub fn is_unknown(&self) -> bool {
        *self == Identity::default()
    }

    /// A short label for logs and service maps: `namespace/workload` for pods, the name for
    /// external ends, `node/process` for host processes.
    pub fn label(&self) -> String {
        if !self.workload.is_empty() {
            format!("{}/{}", self.namespace, self.workload)
        } else if self.is_pod() {
            format!("{}/{}", self.namespace, self.pod)
        } else if self.is_external() {
            self.name.clone()
        } else if !self.process.is_empty() {
            format!("{}/{}", self.node, self.process)
        } else if !self.node.is_empty() {
            self.node.clone()
        } else {
            "unknown".to_owned()
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_say_what_kind_of_end_it_is() {
        let pod = Identity {
            namespace: "shop".into(),
            workload: "checkout".into(),
            workload_kind: "Deployment".into(),
            pod: "checkout-7d9f8b6c5d-x2v9q".into(),
            node: "node-a".into(),
            ..Identity::default()
        };
        assert_eq!(pod.label(), "shop/checkout");
        assert!(pod.is_pod() && !pod.is_external());
        assert_eq!(
            Identity::host("node-a", "nginx.service").label(),
            "node-a/nginx.service"
        );
        assert_eq!(
            Identity::external("api.example.com").to_string(),
            "api.example.com"
        );
        assert!(Identity::external(WORLD).is_external());
        assert_eq!(Identity::host("node-b", "").label(), "node-b");
        assert!(Identity::default().is_unknown());
        assert_eq!(Identity::default().label(), "unknown");
    }
}
