//! The one handle the rest of the agent asks: who owns this cgroup, who is behind this address.
//! Readers (the aggregation path) take short read locks; writers are the watch tasks and DNS
//! snooping. Lookups never wait on the network: what is not known yet resolves to what is.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use tokio::task::JoinHandle;

use super::cgroup::{CgroupCache, CgroupFs, CgroupOwner, CgroupSource};
use super::config::{IdentityConfig, KubernetesSource};
use super::external::{CidrLabels, DnsNames};
use super::pods::{NodeIndex, PodIndex, PodRecord};
use super::watch::{self, Feed};
use super::{Identity, WORLD};
use crate::dns;
use crate::error::{Error, Result};
use crate::kernel_features::{HostPaths, KernelFeatures};

/// Cheap to clone; every clone sees the same caches. The watch tasks stop when the last clone
/// is dropped.
#[derive(Clone)]
pub struct Resolver {
    inner: Arc<Inner>,
}

struct Inner {
    node_name: String,
    cgroups: Option<CgroupCache>,
    kube: Option<Kube>,
    dns: RwLock<DnsNames>,
    cidr: CidrLabels,
}

struct Kube {
    pods: Arc<Feed<PodIndex>>,
    nodes: Arc<Feed<NodeIndex>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Kube {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Sizes and counters for the agent's `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityStats {
    /// Entries of the cgroup id → path cache.
    pub cgroups: usize,
    pub cgroup_scans: u64,
    pub cgroup_scan_failures: u64,
    pub pods: usize,
    /// Addresses of live pods.
    pub pod_ips: usize,
    pub nodes: usize,
    /// Addresses with a DNS name (expired ones not yet dropped included).
    pub dns_names: usize,
    /// Failed lists and watches, each retried with backoff.
    pub watch_errors: u64,
    /// Kubernetes is off, or the first full list of pods and of nodes has arrived.
    pub synced: bool,
}

impl Resolver {
    /// Reads the cgroup tree and, when Kubernetes is configured, starts watching pods and nodes
    /// on the current tokio runtime. An unreachable API server is not an error: the watches
    /// retry, and [`Resolver::wait_synced`] tells when the first lists have arrived.
    pub async fn start(config: &IdentityConfig) -> Result<Resolver> {
        config.validate()?;
        let cgroup_root = match &config.cgroup_root {
            Some(root) if root.is_dir() => Some(root.clone()),
            Some(root) => {
                return Err(Error::Config(format!(
                    "identity.cgroup_root: {} is not a directory",
                    root.display()
                )))
            }
            None => detect_cgroup_root(),
        };
        let cgroups =
            cgroup_root.map(|root| Box::new(CgroupFs::new(root)) as Box<dyn CgroupSource>);
        Resolver::start_with(config, cgroups).await
    }

    /// [`Resolver::start`] with the cgroup tree read from `cgroups`; `None` names every local
    /// end by its node alone.
    pub async fn start_with(
        config: &IdentityConfig,
        cgroups: Option<Box<dyn CgroupSource>>,
    ) -> Result<Resolver> {
        config.validate()?;
        let node_name = if config.node_name.is_empty() {
            host_name()
        } else {
            config.node_name.clone()
        };
        let cgroups = cgroups.map(|source| {
            let cache = CgroupCache::new(
                source,
                Duration::from_millis(config.cgroup_rescan_interval_ms),
                config.max_cgroups,
            );
            cache.rescan_if_due(std::time::Instant::now());
            cache
        });
        let kube = match kube_client(&config.kubernetes).await? {
            Some(client) => {
                let pods = Feed::<PodIndex>::new();
                let nodes = Feed::<NodeIndex>::new();
                let tasks = vec![
                    watch::spawn(client.clone(), pods.clone()),
                    watch::spawn(client, nodes.clone()),
                ];
                Some(Kube { pods, nodes, tasks })
            }
            None => None,
        };
        tracing::info!(
            node = %node_name,
            kubernetes = kube.is_some(),
            cgroups = cgroups.as_ref().map_or(0, CgroupCache::len),
            "identity resolver started"
        );
        Ok(Resolver {
            inner: Arc::new(Inner {
                node_name,
                cgroups,
                kube,
                dns: RwLock::new(DnsNames::new(config.dns_capacity, config.dns_min_ttl_secs)),
                cidr: CidrLabels::new(&config.cidr_labels),
            }),
        })
    }

    pub fn node_name(&self) -> &str {
        &self.inner.node_name
    }

    /// True once the first complete lists of pods and nodes are in (at once without
    /// Kubernetes); false if `timeout` passes first.
    pub async fn wait_synced(&self, timeout: Duration) -> bool {
        let Some(kube) = &self.inner.kube else {
            return true;
        };
        let mut pods = kube.pods.synced.subscribe();
        let mut nodes = kube.nodes.synced.subscribe();
        let both = async move {
            pods.wait_for(|synced| *synced).await.is_ok()
                && nodes.wait_for(|synced| *synced).await.is_ok()
        };
        tokio::time::timeout(timeout, both).await.unwrap_or(false)
    }

    /// The end on this node that owns a socket, from the cgroup id the kernel reported: a pod
    /// (by the pod UID or container id its cgroup path names), else a host process.
    pub fn local(&self, cgroup_id: u64) -> Identity {
        let node = &self.inner.node_name;
        let Some(entry) = self
            .inner
            .cgroups
            .as_ref()
            .and_then(|cache| cache.get(cgroup_id))
        else {
            return Identity::host(node, "");
        };
        let (pod, unknown) = match &entry.owner {
            CgroupOwner::Pod { uid, container_id } => (
                self.pod(|pods| {
                    pods.by_uid(uid)
                        .or_else(|| container_id.as_deref().and_then(|id| pods.by_container(id)))
                }),
                container_id
                    .as_deref()
                    .map_or_else(|| format!("pod:{uid}"), container_label),
            ),
            CgroupOwner::Container { id } => {
                (self.pod(|pods| pods.by_container(id)), container_label(id))
            }
            CgroupOwner::Host { unit } => return Identity::host(node, unit),
        };
        match pod {
            Some(mut identity) => {
                if identity.node.is_empty() {
                    identity.node = node.clone();
                }
                identity
            }
            // Not (yet) in the index: a pod started before its watch event arrived, or
            // Kubernetes is off.
            None => Identity::host(node, &unknown),
        }
    }

    /// The end behind a remote address: a pod, else a node, else the DNS name the client
    /// resolved, else a configured CIDR label, else `world`. Loopback is this node. `now_ns`
    /// is CLOCK_MONOTONIC, as kernel events carry it.
    pub fn remote(&self, ip: IpAddr, now_ns: u64) -> Identity {
        let ip = ip.to_canonical();
        if ip.is_loopback() {
            return Identity::host(&self.inner.node_name, "");
        }
        if let Some(kube) = &self.inner.kube {
            if let Some(pod) = kube.pods.index.read().by_ip(ip) {
                return pod.identity.clone();
            }
            if let Some(node) = kube.nodes.index.read().by_ip(ip) {
                return Identity::host(node, "");
            }
        }
        if let Some(name) = self.inner.dns.read().lookup(ip, now_ns) {
            return Identity::external(name);
        }
        Identity::external(self.inner.cidr.lookup(ip).unwrap_or(WORLD))
    }

    /// Learns address → name from a DNS response the kernel captured.
    pub fn observe_dns(&self, message: &dns::Message, now_ns: u64) {
        self.inner.dns.write().observe(message, now_ns);
    }

    pub fn stats(&self) -> IdentityStats {
        let inner = &self.inner;
        let (cgroup_scans, cgroup_scan_failures) =
            inner.cgroups.as_ref().map_or((0, 0), CgroupCache::scans);
        let mut stats = IdentityStats {
            cgroups: inner.cgroups.as_ref().map_or(0, CgroupCache::len),
            cgroup_scans,
            cgroup_scan_failures,
            dns_names: inner.dns.read().len(),
            synced: true,
            ..IdentityStats::default()
        };
        if let Some(kube) = &inner.kube {
            let pods = kube.pods.index.read();
            stats.pods = pods.len();
            stats.pod_ips = pods.ips();
            drop(pods);
            stats.nodes = kube.nodes.index.read().len();
            stats.watch_errors = kube.pods.errors.load(Ordering::Relaxed)
                + kube.nodes.errors.load(Ordering::Relaxed);
            stats.synced = *kube.pods.synced.borrow() && *kube.nodes.synced.borrow();
        }
        stats
    }

    fn pod(&self, find: impl FnOnce(&PodIndex) -> Option<&Arc<PodRecord>>) -> Option<Identity> {
        let kube = self.inner.kube.as_ref()?;
        let index = kube.pods.index.read();
        find(&index).map(|record| record.identity.clone())
    }
}

/// A container we cannot name otherwise: its id, short as `docker ps` shows it.
fn container_label(id: &str) -> String {
    format!("container:{}", &id[..id.len().min(12)])
}

fn detect_cgroup_root() -> Option<PathBuf> {
    let found = KernelFeatures::detect(&HostPaths::default()).cgroup2;
    if found.is_none() {
        tracing::warn!("no cgroup2 mount: local ends are named by node only");
    }
    found
}

async fn kube_client(source: &KubernetesSource) -> Result<Option<kube::Client>> {
    let config_error =
        |err: &dyn std::fmt::Display| Error::Config(format!("identity.kubernetes: {err}"));
    let config = match source {
        KubernetesSource::Disabled => return Ok(None),
        KubernetesSource::Auto => {
            if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
                tracing::info!("not in a Kubernetes pod: identity is node and process");
                return Ok(None);
            }
            kube::Config::incluster().map_err(|err| config_error(&err))?
        }
        KubernetesSource::Infer => kube::Config::infer()
            .await
            .map_err(|err| config_error(&err))?,
        KubernetesSource::Url(url) => {
            kube::Config::new(url.parse().map_err(|err| config_error(&err))?)
        }
    };
    // Pin the TLS provider to ring, whatever other crates in the binary enable in rustls;
    // an error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    kube::Client::try_from(config)
        .map(Some)
        .map_err(|err| config_error(&err))
}

fn host_name() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if rc != 0 {
        return String::new();
    }
    let len = buffer.iter().position(|&b| b == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..len]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dns::{record_type, Answer, AnswerData, Message, Question, Rcode};
    use crate::identity::Cidr;

    const ID: &str = "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";

    struct Fixed(Vec<(u64, String)>);

    impl CgroupSource for Fixed {
        fn scan(&self, _limit: usize) -> std::io::Result<Vec<(u64, String)>> {
            Ok(self.0.clone())
        }
    }

    fn plain_host() -> IdentityConfig {
        let mut config = IdentityConfig {
            node_name: "node-a".into(),
            kubernetes: KubernetesSource::Disabled,
            dns_min_ttl_secs: 0,
            ..IdentityConfig::default()
        };
        config
            .cidr_labels
            .insert("203.0.113.0/24".parse::<Cidr>().unwrap(), "partner".into());
        config
    }

    #[tokio::test]
    async fn without_kubernetes_ends_are_node_and_process() {
        let tree = Fixed(vec![
            (1, "/".into()),
            (2, "/system.slice/nginx.service".into()),
            (3, format!("/system.slice/docker-{ID}.scope")),
            (
                4,
                format!("/kubepods/pod1e2f3a4b-5c6d-7e8f-9a0b-1c2d3e4f5a6b/{ID}"),
            ),
        ]);
        let resolver = Resolver::start_with(&plain_host(), Some(Box::new(tree)))
            .await
            .unwrap();
        assert!(resolver.wait_synced(Duration::ZERO).await);
        assert_eq!(resolver.local(2), Identity::host("node-a", "nginx.service"));
        assert_eq!(
            resolver.local(3),
            Identity::host("node-a", "container:3f1b2c4d5e6f")
        );
        assert_eq!(
            resolver.local(4),
            Identity::host("node-a", "container:3f1b2c4d5e6f")
        );
        assert_eq!(resolver.local(1), Identity::host("node-a", ""));
        assert_eq!(resolver.local(999), Identity::host("node-a", ""));
        let stats = resolver.stats();
        assert_eq!(stats.cgroups, 4);
        assert!(stats.synced);
        assert_eq!(stats.pods, 0);
    }

    #[tokio::test]
    async fn remote_ends_fall_back_from_dns_to_cidr_to_world() {
        let resolver = Resolver::start_with(&plain_host(), None).await.unwrap();
        let partner: IpAddr = "203.0.113.10".parse().unwrap();
        let answer = Message {
            id: 1,
            flags: 0x8180,
            rcode: Rcode::NoError,
            question: Some(Question {
                name: "api.partner.example".into(),
                qtype: record_type::A,
                qclass: 1,
            }),
            answers: vec![Answer {
                name: "api.partner.example".into(),
                rtype: record_type::A,
                ttl: 60,
                data: AnswerData::Address(partner),
            }],
            truncated: false,
        };
        let sec = 1_000_000_000;
        resolver.observe_dns(&answer, 10 * sec);
        assert_eq!(
            resolver.remote(partner, 10 * sec).name,
            "api.partner.example"
        );
        assert_eq!(resolver.remote(partner, 70 * sec).name, "partner");
        assert_eq!(
            resolver.remote("198.51.100.1".parse().unwrap(), 0).name,
            WORLD
        );
        assert_eq!(
            resolver.remote("::1".parse().unwrap(), 0),
            Identity::host("node-a", "")
        );
        assert_eq!(
            resolver.remote("::ffff:127.0.0.1".parse().unwrap(), 0),
            Identity::host("node-a", "")
        );
        assert_eq!(resolver.stats().dns_names, 1);
    }

    #[tokio::test]
    async fn a_bad_kubernetes_url_fails_at_start() {
        let config = IdentityConfig {
            kubernetes: KubernetesSource::Url("http://[::1".into()),
            ..plain_host()
        };
        assert!(matches!(
            Resolver::start_with(&config, None).await,
            Err(Error::Config(_))
        ));
        let missing = IdentityConfig {
            cgroup_root: Some("/nonexistent/cgroup".into()),
            ..plain_host()
        };
        assert!(Resolver::start(&missing).await.is_err());
        assert!(!host_name().is_empty());
    }
}
