//! A node with pods, the fixture Kubernetes API that knows them, a `strata` server and the
//! `strata-agent` binary exporting to it — what the agent's end-to-end tests and the scenarios
//! stand on — with helpers that ask the store's public APIs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::kube_api::{self, KubeApi};
use crate::pods::{Node, Pod};
use crate::{free_port, http, require_all, wait_for, Peer, Strata};

pub const NODE: &str = "node-a";
pub const NODE_IP: &str = "192.0.2.10";

/// Ends the test with a loud message, or fails it under `STRATA_REQUIRE_ALL=1`.
pub fn skip(why: &str) {
    assert!(!require_all(), "STRATA_REQUIRE_ALL=1, but {why}");
    eprintln!("\n*** SKIPPED: {why} ***\n");
}

/// A node with pods, the fixture API that knows them, a store, and the agent.
pub struct Cluster {
    pub node: Node,
    pub strata: Strata,
    pub api: KubeApi,
    pub agent: Peer,
    pub agent_port: u16,
    pub runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// `None` (after a loud skip) when this machine cannot run it.
    /// `strata` and `agent` are the binaries (`CARGO_BIN_EXE_strata-e2e`, `…strata-agent-e2e`).
    pub fn start(
        strata: &str,
        agent: &str,
        pods: &[(&str, &str, &str)],
    ) -> Option<(Cluster, Vec<Pod>)> {
        if !std::path::Path::new("/sys/kernel/btf/vmlinux").is_file() {
            skip("no kernel BTF at /sys/kernel/btf/vmlinux");
            return None;
        }
        let mut node = match Node::create(NODE) {
            Ok(node) => node,
            Err(why) => {
                skip(&why);
                return None;
            }
        };
        let added: Vec<Pod> = pods
            .iter()
            .map(|(namespace, workload, kind)| node.add_pod(namespace, workload, kind))
            .collect();
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let api = runtime.block_on(KubeApi::start()).expect("fixture API");
        api.apply_node(kube_api::node(NODE, NODE_IP));
        for pod in &added {
            api.apply_pod(&pod.spec(NODE, NODE_IP));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let strata = Strata::start(strata, &dir.path().join("strata"), &[]);
        let agent_port = free_port();
        let agent = Peer(
            Command::new(agent)
                .args(["--endpoint", &strata.otlp_grpc_endpoint()])
                .args(["--interval", "1s", "--node-name", NODE])
                .args(["--kubernetes", &api.url()])
                .args(["--listen", &format!("127.0.0.1:{agent_port}")])
                .env("STRATA_LOG", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start strata-agent"),
        );
        let cluster = Cluster {
            node,
            strata,
            api,
            agent,
            agent_port,
            runtime,
            _dir: dir,
        };
        // Ready once the hooks are attached and the first pod list has arrived.
        let pods_known = wait_for(Duration::from_secs(30), || {
            let metrics = cluster.agent_metrics()?;
            let known = metric_value(
                &metrics,
                "strata_agent_identity_cache_entries{cache=\"pods\"}",
            )?;
            (known >= added.len() as f64).then_some(())
        });
        assert!(
            pods_known.is_some(),
            "the agent did not learn the pods: {:?}",
            cluster.agent_metrics()
        );
        Some((cluster, added))
    }

    /// Adds a pod behind a link that delays what it sends, and waits until the agent knows it.
    pub fn add_delayed_pod(
        &mut self,
        namespace: &str,
        workload: &str,
        kind: &str,
        delay: Duration,
    ) -> Pod {
        let pod = self.node.add_delayed_pod(namespace, workload, kind, delay);
        self.api.apply_pod(&pod.spec(NODE, NODE_IP));
        let expected = self.node.pods.len() as f64;
        let known = wait_for(Duration::from_secs(30), || {
            let metrics = self.agent_metrics()?;
            let known = metric_value(
                &metrics,
                "strata_agent_identity_cache_entries{cache=\"pods\"}",
            )?;
            (known >= expected).then_some(())
        });
        assert!(known.is_some(), "the agent did not learn {}", pod.name);
        pod
    }

    /// A service outside the cluster, reachable on the node's bridge and unknown to Kubernetes,
    /// which `client` finds as `name` through a DNS responder in `resolver`. The responder runs
    /// until the returned peer is dropped.
    pub fn external_service(&mut self, client: &Pod, resolver: &Pod, name: &str) -> (Pod, Peer) {
        let external = self.node.add_pod("", "external", "");
        self.known_as(client, resolver, name, external)
    }

    /// As [`Cluster::external_service`], behind a link that [`Node::impair`] can make lossy and
    /// slow.
    pub fn external_service_behind_link(
        &mut self,
        client: &Pod,
        resolver: &Pod,
        name: &str,
    ) -> (Pod, Peer) {
        let external = self
            .node
            .add_delayed_pod("", "external", "", Duration::ZERO);
        self.known_as(client, resolver, name, external)
    }

    fn known_as(&self, client: &Pod, resolver: &Pod, name: &str, external: Pod) -> (Pod, Peer) {
        let zone = format!("{name}={}", external.ip);
        let responder = serve(
            resolver,
            &["python3", crate::pods::APP, "dns-server", "53", &zone],
        );
        self.node.resolver(client, resolver.ip);
        (external, responder)
    }

    pub fn agent_metrics(&self) -> Option<String> {
        http()
            .get(format!("http://127.0.0.1:{}/metrics", self.agent_port))
            .send()
            .ok()?
            .text()
            .ok()
    }

    /// Flow records matching `query` over the last hour.
    pub fn flows(&self, query: &str) -> Vec<Value> {
        let now = now_s();
        let body: Value = http()
            .get(self.strata.url("/api/v1/flows"))
            .query(&[
                ("query", query),
                ("start", &(now - 3600).to_string()),
                ("end", &(now + 60).to_string()),
                ("limit", "1000"),
            ])
            .send()
            .expect("flow search")
            .json()
            .expect("flow JSON");
        body["flows"].as_array().cloned().unwrap_or_default()
    }

    /// Waits for flow records matching `query` until `done` holds over them.
    pub fn flows_until(&self, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let found = wait_for(Duration::from_secs(40), || {
            let flows = self.flows(query);
            done(&flows).then_some(flows)
        });
        found.unwrap_or_else(|| {
            let metrics = self.agent_metrics().unwrap_or_default();
            let agent: Vec<&str> = metrics
                .lines()
                .filter(|line| line.starts_with("strata_agent_") && !line.ends_with(" 0"))
                .collect();
            panic!(
                "flows for {query}: {:#?}\nagent: {agent:#?}",
                self.flows(query)
            )
        })
    }

    /// The value of a PromQL expression now, when it has one.
    pub fn promql(&self, expr: &str) -> Option<f64> {
        let body: Value = http()
            .get(self.strata.url("/prometheus/api/v1/query"))
            .query(&[("query", expr)])
            .send()
            .ok()?
            .json()
            .ok()?;
        body["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    pub fn promql_until(&self, expr: &str, done: impl Fn(f64) -> bool) -> f64 {
        wait_for(Duration::from_secs(40), || {
            self.promql(expr).filter(|v| done(*v))
        })
        .unwrap_or_else(|| panic!("{expr} = {:?}", self.promql(expr)))
    }
}

pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

/// Starts `argv` in `pod` and waits for its "listening" line; killed when dropped.
pub fn serve(pod: &Pod, argv: &[&str]) -> Peer {
    let mut child = pod.spawn(argv);
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "listening", "{argv:?}");
    // Keep reading, so what it prints later does not break its pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    Peer(child)
}

pub fn sum(flows: &[Value], field: &str) -> u64 {
    flows.iter().filter_map(|flow| flow[field].as_u64()).sum()
}
