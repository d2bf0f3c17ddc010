//! `strata up` with the node agent inside, on a plain host without Kubernetes: two host
//! processes, each in its own systemd-style service cgroup, talk over loopback; the flow
//! search and PromQL name both ends by node and unit, with the bytes each sent.
//!
//! Needs root, `python3`, cgroup2 and kernel BTF; skips loudly without them and fails under
//! `STRATA_REQUIRE_ALL=1`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use serde_json::Value;
use strata_tests::pods::{cgroup2_root, preconditions, spawn_in_cgroup, APP};
use strata_tests::{free_port, http, require_all, wait_for, Peer, Strata};

const STRATA: &str = env!("CARGO_BIN_EXE_strata-e2e");

/// A service cgroup as systemd lays it out, removed on drop.
struct Unit {
    dir: PathBuf,
    name: String,
}

impl Unit {
    fn create(root: &Path, name: &str) -> Unit {
        let dir = root.join("strata-test.slice").join(name);
        fs::create_dir_all(&dir).expect("create the unit's cgroup");
        Unit {
            dir,
            name: name.to_owned(),
        }
    }

    /// Runs `argv` inside this unit's cgroup.
    fn spawn(&self, argv: &[&str]) -> Child {
        spawn_in_cgroup(&self.dir, argv)
    }
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.dir);
        if let Some(slice) = self.dir.parent() {
            let _ = fs::remove_dir(slice);
        }
    }
}

#[test]
fn strata_up_names_host_processes_by_unit() {
    if let Err(why) = preconditions() {
        assert!(!require_all(), "STRATA_REQUIRE_ALL=1, but {why}");
        eprintln!("\n*** SKIPPED: {why} ***\n");
        return;
    }
    if !Path::new("/sys/kernel/btf/vmlinux").is_file() {
        assert!(
            !require_all(),
            "STRATA_REQUIRE_ALL=1, but there is no kernel BTF"
        );
        eprintln!("\n*** SKIPPED: no kernel BTF at /sys/kernel/btf/vmlinux ***\n");
        return;
    }
    let root = cgroup2_root().expect("cgroup2");
    let dir = tempfile::tempdir().expect("tempdir");
    let agent_config = dir.path().join("agent.toml");
    fs::write(
        &agent_config,
        "interval = \"1s\"\nlisten = \"\"\nnode_name = \"host-a\"\n[identity]\nkubernetes = \"disabled\"\n",
    )
    .expect("write agent config");
    let strata = Strata::start(
        STRATA,
        &dir.path().join("data"),
        &[
            "--agent",
            "on",
            "--agent-config",
            agent_config.to_str().expect("utf-8"),
        ],
    );

    let tag = std::process::id();
    let server_unit = Unit::create(&root, &format!("strata-sink-{tag}.service"));
    let client_unit = Unit::create(&root, &format!("strata-send-{tag}.service"));
    let port = free_port().to_string();
    let mut server = server_unit.spawn(&["python3", APP, "tcp-sink", &port, "3333"]);
    let mut line = String::new();
    let mut stdout = BufReader::new(server.stdout.take().expect("stdout"));
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line.trim(), "listening");
    let _server = Peer(server);
    let client = client_unit.spawn(&["python3", APP, "tcp-send", "127.0.0.1", &port, "44444"]);
    let output = client.wait_with_output().expect("client");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "3333");

    let query = format!(
        r#"src.process="{}" and dst.process="{}""#,
        client_unit.name, server_unit.name
    );
    let flows = wait_for(Duration::from_secs(40), || {
        let body: Value = http()
            .get(strata.url("/api/v1/flows"))
            .query(&[("query", query.as_str()), ("start", "0")])
            .send()
            .ok()?
            .json()
            .ok()?;
        let flows = body["flows"].as_array()?.clone();
        let sent: u64 = flows.iter().filter_map(|f| f["bytes_tx"].as_u64()).sum();
        let received: u64 = flows.iter().filter_map(|f| f["bytes_rx"].as_u64()).sum();
        (sent >= 44_444 && received >= 3_333).then_some(flows)
    })
    .unwrap_or_else(|| panic!("no flow for {query}"));
    let sum = |field: &str| -> u64 { flows.iter().filter_map(|f| f[field].as_u64()).sum() };
    assert_eq!(sum("bytes_tx"), 44_444);
    assert_eq!(sum("bytes_rx"), 3_333);
    assert_eq!(flows[0]["src.node"], "host-a");
    assert_eq!(flows[0]["dst.port"].as_u64(), port.parse().ok());
    assert!(
        flows[0].get("src.namespace").is_none(),
        "no Kubernetes here: {:#}",
        flows[0]
    );

    let expr = format!(
        r#"sum(network_tcp_bytes_total{{src_process="{}",dst_process="{}",network_io_direction="transmit"}})"#,
        client_unit.name, server_unit.name
    );
    let bytes = wait_for(Duration::from_secs(30), || {
        let body: Value = http()
            .get(strata.url("/prometheus/api/v1/query"))
            .query(&[("query", expr.as_str())])
            .send()
            .ok()?
            .json()
            .ok()?;
        body["data"]["result"][0]["value"][1]
            .as_str()?
            .parse::<f64>()
            .ok()
    });
    assert_eq!(bytes, Some(44_444.0), "{expr}");
}
