//! The deployment files of `deploy/`: Kubernetes manifests that parse and hang together — the agent
//! DaemonSet reaches the store's Service and has the RBAC, privileges and host mounts its hooks need,
//! the store keeps its data on a claim and serves the ports the Service exposes — configuration files
//! the binaries accept, and systemd units whose command lines name the real binaries and flags.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_yaml::Value;
use strata_tests::{free_port, http, wait_for};

const STRATA: &str = env!("CARGO_BIN_EXE_strata-e2e");
const AGENT: &str = env!("CARGO_BIN_EXE_strata-agent-e2e");

/// Kinds that live outside namespaces.
const CLUSTER_KINDS: &[&str] = &["Namespace", "ClusterRole", "ClusterRoleBinding"];

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The documents of a YAML stream, split at `---` lines.
fn split_documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs
}

/// Every YAML document of `deploy/kubernetes/*.yaml`, with the file it came from.
fn documents() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for path in yaml_files() {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        for doc in split_documents(&text) {
            let value: Value =
                serde_yaml::from_str(&doc).unwrap_or_else(|e| panic!("{file}: not YAML: {e}"));
            if !value.is_null() {
                out.push((file.clone(), value));
            }
        }
    }
    out
}

/// The Kubernetes objects: every document but the kustomization.
fn objects() -> Vec<(String, Value)> {
    documents()
        .into_iter()
        .filter(|(_, v)| v["kind"].as_str() != Some("Kustomization"))
        .collect()
}

fn object(kind: &str, name: &str) -> Value {
    objects()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

fn namespace() -> String {
    let namespaces: Vec<String> = objects()
        .into_iter()
        .filter(|(_, v)| v["kind"].as_str() == Some("Namespace"))
        .map(|(_, v)| v["metadata"]["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(namespaces.len(), 1, "one Namespace: {namespaces:?}");
    namespaces[0].clone()
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(v: &Value) -> Vec<String> {
    seq(v)
        .iter()
        .map(|s| s.as_str().expect("a string").to_owned())
        .collect()
}

/// The `--flags` a binary's help lists.
fn help_flags(bin: &str, args: &[&str]) -> BTreeSet<String> {
    let out = Command::new(bin)
        .args(args)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success(), "{bin} {args:?} --help failed");
    String::from_utf8_lossy(&out.stdout)
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect()
}

fn assert_flags_exist(args: &[String], known: &BTreeSet<String>, at: &str) {
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let flag = arg.split('=').next().unwrap();
        assert!(
            known.contains(flag),
            "{at}: {flag} is not a flag of the binary ({known:?})"
        );
    }
}

/// The value following `flag` in `args`.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

/// Labels of `selector.matchLabels` are all on the pod template.
fn assert_selects_template(workload: &Value, at: &str) {
    let selector = workload["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{at}: no selector.matchLabels"));
    let labels = &workload["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector {
        assert_eq!(
            &labels[k.as_str().unwrap()],
            v,
            "{at}: selector {k:?} not on the pod template"
        );
    }
}

/// `port` (a number or a container port's name) names a port of `container`.
fn container_has_port(container: &Value, port: &Value) -> bool {
    seq(&container["ports"]).iter().any(|p| match port {
        Value::String(name) => p["name"].as_str() == Some(name),
        number => p["containerPort"] == *number,
    })
}

fn assert_probe(container: &Value, probe: &str, paths: &[&str], at: &str) {
    let get = &container[probe]["httpGet"];
    let path = get["path"].as_str().unwrap_or_default();
    assert!(
        paths.contains(&path),
        "{at}: {probe} asks {path:?}, not one of {paths:?}"
    );
    assert!(
        container_has_port(container, &get["port"]),
        "{at}: {probe} port {:?} is not a container port",
        get["port"]
    );
}

/// The file `path` as a ConfigMap mounted into `container` provides it.
fn mounted_config(pod: &Value, container: &Value, path: &str) -> String {
    let (dir, file) = path.rsplit_once('/').unwrap();
    let mount = seq(&container["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .unwrap_or_else(|| panic!("nothing is mounted at {dir}"));
    let volume = seq(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("no volume {:?}", mount["name"]));
    let config_map = volume["configMap"]["name"]
        .as_str()
        .unwrap_or_else(|| panic!("{dir} is not a ConfigMap"));
    object("ConfigMap", config_map)["data"][file]
        .as_str()
        .unwrap_or_else(|| panic!("ConfigMap {config_map} has no {file}"))
        .to_owned()
}

/// `strata serve --config` starts with `config`, the listeners and data directory moved to free ports
/// and a scratch directory, and becomes ready.
fn store_accepts_config(config: &str, at: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.toml");
    std::fs::write(&path, config).unwrap();
    for attempt in 1..=3 {
        let port = free_port();
        let mut child = Command::new(STRATA)
            .arg("serve")
            .arg("--config")
            .arg(&path)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--otlp-grpc-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--otlp-http-listen", &format!("127.0.0.1:{}", free_port())])
            .env("STRATA_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let client = http();
        let mut exited = None;
        let ready = wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            client
                .get(format!("http://127.0.0.1:{port}/-/ready"))
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| true)
        });
        let _ = child.kill();
        let _ = child.wait();
        match (ready, exited) {
            (Some(true), _) => return,
            // A port found free can be taken before the server binds it.
            (_, Some(status)) if attempt < 3 => {
                eprintln!("{at}: strata exited ({status}); retrying")
            }
            (_, status) => panic!("{at}: strata serve did not start with its config: {status:?}"),
        }
    }
}

/// `strata-agent --check-config` accepts the command line, with `config` as its file.
fn agent_accepts(args: &[String], config: &str, at: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata-agent.toml");
    std::fs::write(&path, config).unwrap();
    let mut args = args.to_vec();
    let i = args.iter().position(|a| a == "--config").unwrap();
    args[i + 1] = path.to_string_lossy().into_owned();
    let out = Command::new(AGENT)
        .args(&args)
        .arg("--check-config")
        .env("NODE_NAME", "node-a")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{at}: strata-agent {args:?} --check-config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_manifest_names_its_kind_and_object() {
    let ns = namespace();
    let mut seen = HashSet::new();
    for (file, doc) in objects() {
        let at = format!("{file}: {:?}", doc["metadata"]["name"]);
        let api_version = doc["apiVersion"].as_str().unwrap_or_default();
        let kind = doc["kind"].as_str().unwrap_or_default();
        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
        assert!(
            !api_version.is_empty() && !kind.is_empty(),
            "{at}: apiVersion and kind"
        );
        assert!(
            !name.is_empty()
                && name.len() <= 63
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{at}: metadata.name {name:?} is not a DNS label"
        );
        assert!(
            seen.insert((kind.to_owned(), name.to_owned())),
            "{at}: {kind} {name} twice"
        );
        let object_ns = doc["metadata"]["namespace"].as_str();
        if CLUSTER_KINDS.contains(&kind) {
            assert_eq!(object_ns, None, "{at}: {kind} is cluster-scoped");
        } else {
            assert_eq!(object_ns, Some(ns.as_str()), "{at}: namespace");
        }
    }

    // The kustomization applies every manifest of the directory.
    let kustomization = documents()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| v["kind"].as_str() == Some("Kustomization"))
        .expect("kustomization.yaml");
    let listed: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = yaml_files()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|f| f != "kustomization.yaml")
        .collect();
    assert_eq!(listed, files, "kustomization resources");
}

#[test]
fn agent_daemonset_can_run_its_hooks() {
    let ns = namespace();
    let ds = object("DaemonSet", "strata-agent");
    assert_selects_template(&ds, "DaemonSet");
    let pod = &ds["spec"]["template"]["spec"];
    // Chosen off: the hooks are global to the kernel and ends are named from cgroups
    // (the justification is in agent.yaml).
    assert_eq!(pod["hostPID"].as_bool(), Some(false), "hostPID");
    assert_eq!(pod["hostNetwork"].as_bool(), Some(false), "hostNetwork");
    assert!(
        seq(&pod["tolerations"])
            .iter()
            .any(|t| t["operator"] == "Exists" && t["key"].is_null()),
        "the agent tolerates every taint: a node without it is not observed"
    );
    let containers = seq(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let security = &c["securityContext"];
    let caps: BTreeSet<String> = strings(&security["capabilities"]["add"])
        .into_iter()
        .collect();
    assert!(
        security["privileged"].as_bool() == Some(true)
            || ["BPF", "PERFMON", "NET_ADMIN", "SYS_RESOURCE"]
                .iter()
                .all(|cap| caps.contains(*cap)),
        "the agent is privileged or holds BPF, PERFMON, NET_ADMIN and SYS_RESOURCE: {security:?}"
    );

    let mount = |path: &str| -> (Value, Value) {
        let m = seq(&c["volumeMounts"])
            .iter()
            .find(|m| m["mountPath"].as_str() == Some(path))
            .unwrap_or_else(|| panic!("nothing mounted at {path}"))
            .clone();
        let v = seq(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap_or_else(|| panic!("no volume {:?}", m["name"]))
            .clone();
        (m, v)
    };
    for path in ["/sys/fs/cgroup", "/sys/kernel/btf"] {
        let (_, volume) = mount(path);
        assert_eq!(
            volume["hostPath"]["path"].as_str(),
            Some(path),
            "{path} from the host"
        );
    }
    let (btf, _) = mount("/sys/kernel/btf");
    assert_eq!(btf["readOnly"].as_bool(), Some(true), "BTF read-only");
    let tracing = seq(&c["volumeMounts"])
        .iter()
        .find(|m| {
            matches!(
                m["mountPath"].as_str(),
                Some("/sys/kernel/tracing" | "/sys/kernel/debug")
            )
        })
        .expect("tracefs or debugfs is mounted");
    let (_, volume) = mount(tracing["mountPath"].as_str().unwrap());
    assert!(volume["hostPath"]["path"].as_str().is_some());

    let node_name = seq(&c["env"])
        .iter()
        .find(|e| e["name"] == "NODE_NAME")
        .expect("env NODE_NAME");
    assert_eq!(
        node_name["valueFrom"]["fieldRef"]["fieldPath"].as_str(),
        Some("spec.nodeName")
    );

    let mut command = strings(&c["command"]);
    command.extend(strings(&c["args"]));
    assert_eq!(command.first().map(String::as_str), Some("strata-agent"));
    let args = &command[1..];
    assert_flags_exist(args, &help_flags(AGENT, &[]), "DaemonSet args");
    let endpoint = flag_value(args, "--endpoint").expect("--endpoint");
    assert_eq!(endpoint, format!("http://strata.{ns}.svc:4317"));
    let service = object("Service", "strata");
    assert!(
        seq(&service["spec"]["ports"])
            .iter()
            .any(|p| p["port"] == 4317),
        "the endpoint's port is on the strata Service"
    );
    let config_path = flag_value(args, "--config").expect("--config");
    let config = mounted_config(pod, c, config_path);
    agent_accepts(args, &config, "DaemonSet");

    assert_probe(c, "readinessProbe", &["/-/ready"], "agent");
    assert_probe(c, "livenessProbe", &["/-/healthy"], "agent");

    // RBAC: the service account may get, list and watch pods and nodes.
    let account = pod["serviceAccountName"]
        .as_str()
        .expect("serviceAccountName");
    object("ServiceAccount", account);
    let binding = objects()
        .into_iter()
        .map(|(_, v)| v)
        .find(|v| {
            v["kind"] == "ClusterRoleBinding"
                && seq(&v["subjects"]).iter().any(|s| {
                    s["kind"] == "ServiceAccount"
                        && s["name"].as_str() == Some(account)
                        && s["namespace"].as_str() == Some(ns.as_str())
                })
        })
        .expect("a ClusterRoleBinding of the agent's service account");
    assert_eq!(binding["roleRef"]["kind"].as_str(), Some("ClusterRole"));
    let role = object("ClusterRole", binding["roleRef"]["name"].as_str().unwrap());
    for resource in ["pods", "nodes"] {
        for verb in ["get", "list", "watch"] {
            assert!(
                seq(&role["rules"]).iter().any(|rule| {
                    strings(&rule["apiGroups"]).iter().any(|g| g.is_empty())
                        && strings(&rule["resources"]).iter().any(|r| r == resource)
                        && strings(&rule["verbs"]).iter().any(|v| v == verb)
                }),
                "the ClusterRole does not allow {verb} {resource}"
            );
        }
    }
}

#[test]
fn store_statefulset_serves_the_service_ports() {
    let sts = object("StatefulSet", "strata");
    assert_selects_template(&sts, "StatefulSet");
    let pod = &sts["spec"]["template"]["spec"];
    let containers = seq(&pod["containers"]);
    assert_eq!(containers.len(), 1);
    let c = &containers[0];

    let governing = object(
        "Service",
        sts["spec"]["serviceName"].as_str().expect("serviceName"),
    );
    assert_eq!(
        governing["spec"]["clusterIP"].as_str(),
        Some("None"),
        "headless"
    );

    let claims = seq(&sts["spec"]["volumeClaimTemplates"]);
    assert!(!claims.is_empty(), "the store keeps its data on a claim");
    for claim in claims {
        let name = &claim["metadata"]["name"];
        assert!(
            seq(&claim["spec"]["accessModes"])
                .iter()
                .any(|m| m == "ReadWriteOnce"),
            "claim {name:?}"
        );
        assert!(claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .is_some());
        assert!(
            seq(&c["volumeMounts"]).iter().any(|m| m["name"] == *name),
            "claim {name:?} is not mounted"
        );
    }

    let service = object("Service", "strata");
    let labels = &sts["spec"]["template"]["metadata"]["labels"];
    for (k, v) in service["spec"]["selector"].as_mapping().expect("selector") {
        assert_eq!(
            &labels[k.as_str().unwrap()],
            v,
            "the Service selects the store's pods"
        );
    }
    let ports = seq(&service["spec"]["ports"]);
    for port in [9080, 4317, 4318] {
        let p = ports
            .iter()
            .find(|p| p["port"] == port)
            .unwrap_or_else(|| panic!("the strata Service does not expose {port}"));
        let target = if p["targetPort"].is_null() {
            &p["port"]
        } else {
            &p["targetPort"]
        };
        assert!(
            container_has_port(c, target),
            "Service port {port} targets no container port"
        );
    }

    let mut command = strings(&c["command"]);
    command.extend(strings(&c["args"]));
    assert_eq!(command.first().map(String::as_str), Some("strata"));
    assert_eq!(command.get(1).map(String::as_str), Some("serve"));
    let args = &command[2..];
    assert_flags_exist(args, &help_flags(STRATA, &["serve"]), "StatefulSet args");
    let config_path = flag_value(args, "--config").expect("--config");
    let config = mounted_config(pod, c, config_path);
    // The data directory of the config is the claim's mount.
    let data_mount = seq(&c["volumeMounts"])
        .iter()
        .find(|m| {
            claims
                .iter()
                .any(|claim| claim["metadata"]["name"] == m["name"])
        })
        .and_then(|m| m["mountPath"].as_str())
        .unwrap();
    assert!(
        config.contains(&format!("data_dir = \"{data_mount}\"")),
        "data_dir of the store's config is not {data_mount}"
    );
    store_accepts_config(&config, "ConfigMap strata.toml");

    assert_probe(c, "readinessProbe", &["/-/ready"], "store");
    assert_probe(c, "livenessProbe", &["/-/healthy"], "store");
}

/// `[Section]` → `Key=Value` lines of a systemd unit, in order.
fn unit_sections(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_owned(), Vec::new()));
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not Key=Value: {line}"));
        sections
            .last_mut()
            .expect("a key before any [Section]")
            .1
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

fn unit_value(sections: &[(String, Vec<(String, String)>)], section: &str, key: &str) -> String {
    sections
        .iter()
        .filter(|(name, _)| name == section)
        .flat_map(|(_, entries)| entries)
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key}= in [{section}]"))
}

#[test]
fn systemd_units_run_the_real_binaries() {
    let dir = deploy_dir().join("systemd");
    let units: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.ends_with(".service"))
        .collect();
    assert_eq!(
        units,
        BTreeSet::from([
            "strata.service".to_owned(),
            "strata-agent.service".to_owned()
        ])
    );

    for unit in &units {
        let sections = unit_sections(&std::fs::read_to_string(dir.join(unit)).unwrap());
        for section in ["Unit", "Service", "Install"] {
            assert!(
                sections.iter().any(|(s, _)| s == section),
                "{unit}: no [{section}]"
            );
        }
        assert_eq!(
            unit_value(&sections, "Install", "WantedBy"),
            "multi-user.target"
        );
        let exec = unit_value(&sections, "Service", "ExecStart");
        let words: Vec<String> = exec.split_whitespace().map(str::to_owned).collect();
        assert!(
            words[0].starts_with('/'),
            "{unit}: ExecStart needs an absolute path"
        );
        let binary = Path::new(&words[0])
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let (args, known) = match binary.as_str() {
            "strata" => {
                assert_eq!(
                    words.get(1).map(String::as_str),
                    Some("serve"),
                    "{unit}: {exec}"
                );
                (&words[2..], help_flags(STRATA, &["serve"]))
            }
            "strata-agent" => (&words[1..], help_flags(AGENT, &[])),
            other => panic!("{unit}: ExecStart runs {other}, not a Strata binary"),
        };
        assert_eq!(
            unit.trim_end_matches(".service"),
            binary,
            "{unit} runs {binary}"
        );
        assert_flags_exist(args, &known, unit);

        // The config file it names ships beside it and the binary accepts it.
        let config_path = flag_value(args, "--config")
            .unwrap_or_else(|| panic!("{unit}: ExecStart has no --config"));
        let file = Path::new(config_path).file_name().unwrap();
        let config = std::fs::read_to_string(dir.join(file))
            .unwrap_or_else(|_| panic!("{unit}: deploy/systemd/{file:?} is missing"));
        if binary == "strata" {
            store_accepts_config(&config, unit);
        } else {
            agent_accepts(args, &config, unit);
        }
    }
}
