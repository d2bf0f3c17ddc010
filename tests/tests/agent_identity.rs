//! The agent's identity resolver against the fixture Kubernetes API and a kubelet-shaped cgroup tree
//! in a temporary directory (a directory's inode number plays the cgroup id): local ends by cgroup
//! id, remote ends by address, pods coming and going through the watch, a relist after the watch
//! history was lost, and names learned from DNS answers expiring into CIDR labels and `world`.
//! Needs no privileges.

use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use strata_agent::dns::{record_type, Answer, AnswerData, Message, Question, Rcode};
use strata_agent::identity::{Identity, IdentityConfig, KubernetesSource, Resolver, WORLD};
use strata_tests::kube_api::{node, KubeApi, PodSpec};

const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
const SEC: u64 = 1_000_000_000;

const CHECKOUT_UID: &str = "1e2f3a4b-5c6d-7e8f-9a0b-1c2d3e4f5a6b";
const CHECKOUT_CONTAINER: &str = "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";
const DB_UID: &str = "7c0a9d1e-2f3b-4c5d-8e6f-a1b2c3d4e5f6";
const DB_CONTAINER: &str = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a0f9e8d";
const LATE_CONTAINER: &str = "aa11bb22cc33dd44ee55ff6600112233445566778899aabbccddeeff00112233";

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Makes the cgroup directory and returns its id.
fn cgroup(root: &Path, path: &str) -> u64 {
    let dir = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(&dir).unwrap();
    fs::metadata(&dir).unwrap().ino()
}

fn pod_identity(namespace: &str, workload: &str, kind: &str, pod: &str, node: &str) -> Identity {
    Identity {
        namespace: namespace.into(),
        workload: workload.into(),
        workload_kind: kind.into(),
        pod: pod.into(),
        node: node.into(),
        ..Identity::default()
    }
}

/// Polls `check` until it holds; the watch delivers asynchronously.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < SYNC_TIMEOUT, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn dns_answer(name: &str, ttl: u32, address: IpAddr) -> Message {
    Message {
        id: 7,
        flags: 0x8180,
        rcode: Rcode::NoError,
        question: Some(Question {
            name: name.into(),
            qtype: record_type::A,
            qclass: 1,
        }),
        answers: vec![
            Answer {
                name: name.into(),
                rtype: record_type::CNAME,
                ttl: 300,
                data: AnswerData::Cname("edge.cdn.example".into()),
            },
            Answer {
                name: "edge.cdn.example".into(),
                rtype: record_type::A,
                ttl,
                data: AnswerData::Address(address),
            },
        ],
        truncated: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_nodes_and_external_names_resolve_through_a_kubernetes_watch() {
    let api = KubeApi::start().await.unwrap();
    api.apply_node(node("node-a", "10.0.0.11"));
    api.apply_node(node("node-b", "10.0.0.12"));
    let checkout = PodSpec::of_deployment("shop", "checkout", "7d9f8b6c5d", "x2v9q")
        .uid(CHECKOUT_UID)
        .node("node-a", "10.0.0.11")
        .ip("10.244.1.5")
        .ip("fd00:10:244:1::5")
        .container(&format!("containerd://{CHECKOUT_CONTAINER}"));
    api.apply_pod(&checkout);
    api.apply_pod(
        &PodSpec::new("shop", "db-0")
            .uid(DB_UID)
            .owned_by("StatefulSet", "db")
            .node("node-a", "10.0.0.11")
            .ip("10.244.1.9")
            .container(&format!("cri-o://{DB_CONTAINER}")),
    );
    api.apply_pod(
        &PodSpec::new("observability", "log-shipper-q8k2d")
            .owned_by("DaemonSet", "log-shipper")
            .node("node-b", "10.0.0.12")
            .ip("10.244.2.3"),
    );
    // More pods than one page of the watcher's list: the rest come by `continue`.
    for i in 0..520 {
        api.apply_pod(
            &PodSpec::of_deployment("load", "worker", "5f6d7c8b9a", &format!("w{i:03}"))
                .node("node-b", "10.0.0.12")
                .ip(&format!("10.245.{}.{}", i / 200, i % 200 + 1)),
        );
    }

    // A kubelet with the systemd driver (containerd) and one with cgroupfs (CRI-O), side by side.
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    let checkout_cgroup = cgroup(
        root,
        &format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/\
             cri-containerd-{CHECKOUT_CONTAINER}.scope",
            CHECKOUT_UID.replace('-', "_")
        ),
    );
    let db_cgroup = cgroup(
        root,
        &format!("/kubepods/besteffort/pod{DB_UID}/{DB_CONTAINER}"),
    );
    let nginx_cgroup = cgroup(root, "/system.slice/nginx.service");

    let mut config = IdentityConfig {
        node_name: "node-a".into(),
        kubernetes: KubernetesSource::Url(api.url()),
        cgroup_root: Some(root.to_path_buf()),
        cgroup_rescan_interval_ms: 0,
        dns_min_ttl_secs: 5,
        ..IdentityConfig::default()
    };
    config
        .cidr_labels
        .insert("203.0.113.0/24".parse().unwrap(), "partner-net".into());
    let resolver = Resolver::start(&config).await.unwrap();
    assert!(
        resolver.wait_synced(SYNC_TIMEOUT).await,
        "first lists arrive"
    );

    // Local ends, by cgroup id.
    let checkout_identity = pod_identity(
        "shop",
        "checkout",
        "Deployment",
        "checkout-7d9f8b6c5d-x2v9q",
        "node-a",
    );
    assert_eq!(resolver.local(checkout_cgroup), checkout_identity);
    assert_eq!(
        resolver.local(db_cgroup),
        pod_identity("shop", "db", "StatefulSet", "db-0", "node-a")
    );
    assert_eq!(
        resolver.local(nginx_cgroup),
        Identity::host("node-a", "nginx.service")
    );

    // Remote ends, by address: pods (both families), nodes, loopback.
    assert_eq!(resolver.remote(ip("10.244.1.5"), 0), checkout_identity);
    assert_eq!(
        resolver.remote(ip("fd00:10:244:1::5"), 0),
        checkout_identity
    );
    assert_eq!(
        resolver.remote(ip("::ffff:10.244.2.3"), 0),
        pod_identity(
            "observability",
            "log-shipper",
            "DaemonSet",
            "log-shipper-q8k2d",
            "node-b"
        )
    );
    assert_eq!(
        resolver.remote(ip("10.0.0.12"), 0),
        Identity::host("node-b", "")
    );
    assert_eq!(
        resolver.remote(ip("127.0.0.1"), 0),
        Identity::host("node-a", "")
    );

    let stats = resolver.stats();
    assert_eq!((stats.pods, stats.pod_ips, stats.nodes), (523, 524, 2));
    assert_eq!(
        resolver.remote(ip("10.245.2.120"), 0).workload,
        "worker",
        "found on the list's second page"
    );
    assert!(stats.synced);
    assert_eq!(stats.cgroups, 11, "the root and 10 below it: {stats:?}");

    // A pod started after the first list: its container's cgroup appears, then its watch event.
    let late_cgroup = cgroup(
        root,
        &format!("/kubepods/burstable/pod0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b/{LATE_CONTAINER}"),
    );
    assert_eq!(
        resolver.local(late_cgroup),
        Identity::host("node-a", "container:aa11bb22cc33"),
        "before the pod is known, its container is named"
    );
    api.apply_pod(
        &PodSpec::new("batch", "report-28999440-abcde")
            .uid("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
            .owned_by("Job", "report-28999440")
            .node("node-a", "10.0.0.11")
            .ip("10.244.1.20")
            .container(&format!("containerd://{LATE_CONTAINER}")),
    );
    let late = pod_identity(
        "batch",
        "report-28999440",
        "Job",
        "report-28999440-abcde",
        "node-a",
    );
    eventually("the late pod's address", || {
        resolver.remote(ip("10.244.1.20"), 0) == late
    })
    .await;
    assert_eq!(resolver.local(late_cgroup), late);

    // A finished pod gives up its address; a deleted one disappears.
    api.apply_pod(
        &PodSpec::new("batch", "report-28999440-abcde")
            .uid("0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b")
            .owned_by("Job", "report-28999440")
            .node("node-a", "10.0.0.11")
            .ip("10.244.1.20")
            .container(&format!("containerd://{LATE_CONTAINER}"))
            .phase("Succeeded"),
    );
    eventually("the finished pod's address is released", || {
        resolver.remote(ip("10.244.1.20"), 0).name == WORLD
    })
    .await;
    assert!(api.delete_pod("shop", "db-0"));
    eventually("the deleted pod is gone", || {
        resolver.remote(ip("10.244.1.9"), 0).name == WORLD
    })
    .await;
    assert_eq!(
        resolver.local(db_cgroup),
        Identity::host("node-a", "container:9e8d7c6b5a4f")
    );

    // The watch is down while a pod is deleted and the history compacted: the watcher is told
    // 410 Gone, lists again, and the pod is gone from the index although no DELETED arrived.
    api.pause_watches();
    assert!(api.delete_pod("observability", "log-shipper-q8k2d"));
    api.delete_node("node-b");
    api.compact();
    api.resume_watches();
    eventually("the relist drops what was deleted meanwhile", || {
        resolver.remote(ip("10.244.2.3"), 0).name == WORLD
            && resolver.remote(ip("10.0.0.12"), 0).name == WORLD
    })
    .await;
    assert_eq!(resolver.remote(ip("10.244.1.5"), 0), checkout_identity);

    // External ends: the name the client queried, through a CNAME, for the answer's TTL (60 s
    // here, above the 5 s floor); then the CIDR label; outside every range, `world`.
    let partner = ip("203.0.113.10");
    let at = 1_000 * SEC;
    assert_eq!(resolver.remote(partner, at).name, "partner-net");
    resolver.observe_dns(&dns_answer("api.partner.example", 60, partner), at);
    assert_eq!(
        resolver.remote(partner, at + 59 * SEC),
        Identity::external("api.partner.example")
    );
    assert_eq!(resolver.remote(partner, at + 60 * SEC).name, "partner-net");
    let elsewhere = ip("198.51.100.7");
    resolver.observe_dns(&dns_answer("cdn.example", 1, elsewhere), at);
    assert_eq!(resolver.remote(elsewhere, at + 4 * SEC).name, "cdn.example");
    assert_eq!(resolver.remote(elsewhere, at + 5 * SEC).name, WORLD);

    // What the watcher asked the API server: pages of 500 continued by token, then watches
    // from the list's version with bookmarks.
    let requests = api.requests();
    let asked = |parts: &[&str]| {
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/pods?") && parts.iter().all(|p| r.contains(p)))
    };
    assert!(asked(&["limit=500"]), "{requests:#?}");
    assert!(asked(&["limit=500", "continue=500"]), "{requests:#?}");
    assert!(
        asked(&["watch=true", "allowWatchBookmarks=true", "resourceVersion="]),
        "{requests:#?}"
    );
    assert!(resolver.stats().watch_errors >= 1, "the 410 was seen");
}

#[tokio::test]
async fn without_kubernetes_a_host_is_nodes_and_processes() {
    let tree = tempfile::tempdir().unwrap();
    let root = tree.path();
    let sshd = cgroup(root, "/system.slice/sshd.service");
    let session = cgroup(root, "/user.slice/user-1000.slice/session-4.scope");
    let container = cgroup(
        root,
        &format!("/system.slice/docker-{CHECKOUT_CONTAINER}.scope"),
    );
    let config = IdentityConfig {
        node_name: "build-host".into(),
        kubernetes: KubernetesSource::Disabled,
        cgroup_root: Some(root.to_path_buf()),
        ..IdentityConfig::default()
    };
    let resolver = Resolver::start(&config).await.unwrap();
    assert!(resolver.wait_synced(Duration::ZERO).await);
    assert_eq!(
        resolver.local(sshd),
        Identity::host("build-host", "sshd.service")
    );
    assert_eq!(
        resolver.local(session),
        Identity::host("build-host", "session-4.scope")
    );
    assert_eq!(
        resolver.local(container),
        Identity::host("build-host", "container:3f1b2c4d5e6f")
    );
    assert_eq!(resolver.remote(ip("10.244.1.5"), 0).name, WORLD);
    assert_eq!(resolver.remote(ip("169.254.169.254"), 0).name, "link-local");
    let stats = resolver.stats();
    assert_eq!(stats.pods, 0);
    assert!(stats.synced);
}
