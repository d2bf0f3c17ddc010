//! A node with pods, on one machine, as root: the node is a network namespace holding a bridge;
//! each pod is a network namespace with a veth into that bridge and an address in the node's
//! subnet, and its processes run in a cgroup laid out as the kubelet lays it out with the systemd
//! driver and containerd (`kubepods.slice/…/cri-containerd-<id>.scope`). Programs run in a pod
//! with `Pod::spawn`; nftables drops a share of what a pod sends; a pod can sit behind a link
//! whose delay and loss change while it runs; a pod can have its own `resolv.conf`.
//! Everything is removed on drop, also while a failed assertion unwinds.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::kube_api::PodSpec;

/// The test workloads' program (`tests/agent/app.py`).
pub const APP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/agent/app.py");

/// Pod names and ids are made unique per process and per node.
static NODES: AtomicU32 = AtomicU32::new(0);

/// Runs `argv` as a member of the cgroup `dir`, entered before `argv` starts so every socket it
/// opens belongs to that cgroup. Its standard output is piped.
pub fn spawn_in_cgroup(dir: &Path, argv: &[&str]) -> Child {
    let procs = dir.join("cgroup.procs");
    let script = format!("echo $$ > '{}' && exec \"$@\"", procs.display());
    Command::new("sh")
        .args(["-c", &script, "sh"])
        .args(argv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn in a cgroup")
}

/// Why a node cannot be built here (not root, no `ip`, no cgroup2), for a loud skip.
pub fn preconditions() -> Result<PathBuf, String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Err("not root: network namespaces, cgroups and eBPF need root".into());
    }
    for tool in ["ip", "nft", "python3"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    cgroup2_root().ok_or_else(|| "no cgroup2 hierarchy mounted".to_owned())
}

/// The cgroup2 mount point, from /proc/self/mounts.
pub fn cgroup2_root() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(target))
    })
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|err| format!("{program}: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) {
    run("ip", args).unwrap_or_else(|err| panic!("{err}"));
}

/// One pod: its Kubernetes metadata and where it lives on this machine.
#[derive(Clone, Debug)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    /// Owning workload and its kind (`Deployment`, `StatefulSet`, …).
    pub workload: String,
    pub workload_kind: String,
    pub uid: String,
    /// containerd's 64-hex container id.
    pub container_id: String,
    pub ip: Ipv4Addr,
    pub netns: String,
    /// The container's cgroup directory.
    pub cgroup: PathBuf,
    /// The node-side end of the pod's veth.
    pub host_veth: String,
    /// `pod-template-hash` of a Deployment's pod, and the pod's own suffix.
    pub template_hash: String,
    pub suffix: String,
}

impl Pod {
    /// The pod as the kubelet on `node` reports it to the API server.
    pub fn spec(&self, node: &str, host_ip: &str) -> PodSpec {
        let spec = match self.workload_kind.as_str() {
            "Deployment" => PodSpec::of_deployment(
                &self.namespace,
                &self.workload,
                &self.template_hash,
                &self.suffix,
            ),
            "" => PodSpec::new(&self.namespace, &self.name),
            kind => PodSpec::new(&self.namespace, &self.name).owned_by(kind, &self.workload),
        };
        spec.uid(&self.uid)
            .node(node, host_ip)
            .ip(&self.ip.to_string())
            .container(&format!("containerd://{}", self.container_id))
    }

    /// The pod's cgroup id: the inode of its cgroup directory.
    pub fn cgroup_id(&self) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(&self.cgroup)
            .map(|meta| meta.ino())
            .unwrap_or(0)
    }

    /// Runs `argv` inside the pod: its network namespace and its cgroup, entered before `argv`
    /// starts so every socket it opens belongs to the pod.
    pub fn spawn(&self, argv: &[&str]) -> Child {
        // Into the cgroup first: `ip netns exec` mounts a fresh /sys, without the cgroup2 mount.
        let mut command = vec!["ip", "netns", "exec", &self.netns];
        command.extend_from_slice(argv);
        spawn_in_cgroup(&self.cgroup, &command)
    }

    /// Runs `argv` in the pod to completion; its standard output.
    pub fn run(&self, argv: &[&str]) -> String {
        let output = self
            .spawn(argv)
            .wait_with_output()
            .expect("wait for pod command");
        assert!(
            output.status.success(),
            "{argv:?} in pod {} failed",
            self.name
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A node: the bridge namespace and its pods.
pub struct Node {
    pub name: String,
    /// Network namespace holding the bridge.
    pub netns: String,
    subnet: [u8; 3],
    tag: String,
    cgroup_root: PathBuf,
    pub pods: Vec<Pod>,
    children: Vec<Child>,
    /// The control end of each link's forwarder, by the pod's network namespace.
    links: HashMap<String, ChildStdin>,
}

impl Node {
    /// A node named `name` with an empty bridge. Its subnet (10.x.y.0/24) is unique per process.
    pub fn create(name: &str) -> Result<Node, String> {
        let cgroup_root = preconditions()?;
        let index = NODES.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let tag = format!("{:x}{index}", pid % 0xfff);
        let netns = format!("strata-{tag}-node");
        run("ip", &["netns", "add", &netns])?;
        let node = Node {
            name: name.to_owned(),
            netns,
            subnet: [10, 100 + (pid % 100) as u8, (index % 250) as u8],
            tag,
            cgroup_root,
            pods: Vec::new(),
            children: Vec::new(),
            links: HashMap::new(),
        };
        ip(&["-n", &node.netns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &node.netns, "link", "set", "br0", "up"]);
        ip(&["-n", &node.netns, "link", "set", "lo", "up"]);
        Ok(node)
    }

    /// Adds a pod of `workload` (kind `kind`) in `namespace`, with the next address.
    pub fn add_pod(&mut self, namespace: &str, workload: &str, kind: &str) -> Pod {
        self.add_pod_with(namespace, workload, kind, None)
    }

    /// Adds a pod whose link holds every packet it sends for `delay`, as `tc netem delay`
    /// would (this kernel has no `sch_netem`): its `eth0` is a TUN device, and a forwarder
    /// process moves packets between it and a TUN device routed in the node's namespace.
    pub fn add_delayed_pod(
        &mut self,
        namespace: &str,
        workload: &str,
        kind: &str,
        delay: Duration,
    ) -> Pod {
        self.add_pod_with(namespace, workload, kind, Some(delay))
    }

    fn add_pod_with(
        &mut self,
        namespace: &str,
        workload: &str,
        kind: &str,
        delay: Option<Duration>,
    ) -> Pod {
        let index = self.pods.len() + 2;
        let [a, b, c] = self.subnet;
        let address = Ipv4Addr::new(a, b, c, index as u8);
        let seed = format!("{}-{}-{namespace}-{workload}", self.tag, index);
        let uid = pseudo_uuid(&seed);
        let container_id = pseudo_hex(&seed, 64);
        let random = pseudo_hex(&seed, 15);
        let (template_hash, suffix) = (random[..10].to_owned(), random[10..].to_owned());
        let name = match kind {
            "Deployment" => format!("{workload}-{template_hash}-{suffix}"),
            "StatefulSet" => format!("{workload}-0"),
            _ => format!("{workload}-{suffix}"),
        };
        let netns = format!("strata-{}-p{index}", self.tag);
        ip(&["netns", "add", &netns]);
        let host_veth = format!("v{}p{index}", self.tag);
        match delay {
            None => self.bridge(&netns, &host_veth, address),
            Some(delay) => self.delay_link(&netns, &host_veth, address, delay),
        }
        ip(&["-n", &netns, "link", "set", "lo", "up"]);
        let cgroup = self
            .cgroup_root
            .join("kubepods.slice/kubepods-besteffort.slice")
            .join(format!(
                "kubepods-besteffort-pod{}.slice",
                uid.replace('-', "_")
            ))
            .join(format!("cri-containerd-{container_id}.scope"));
        fs::create_dir_all(&cgroup).expect("create the pod's cgroup");
        let pod = Pod {
            namespace: namespace.to_owned(),
            name,
            workload: workload.to_owned(),
            workload_kind: kind.to_owned(),
            uid,
            container_id,
            ip: address,
            netns,
            cgroup,
            host_veth,
            template_hash,
            suffix,
        };
        self.pods.push(pod.clone());
        pod
    }

    /// The pod's `eth0` as a veth into the bridge, with an address in the node's subnet.
    fn bridge(&self, netns: &str, host_veth: &str, address: Ipv4Addr) {
        ip(&[
            "-n",
            &self.netns,
            "link",
            "add",
            host_veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            netns,
        ]);
        ip(&[
            "-n",
            &self.netns,
            "link",
            "set",
            host_veth,
            "master",
            "br0",
            "up",
        ]);
        ip(&[
            "-n",
            netns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", netns, "link", "set", "eth0", "up"]);
    }

    /// The pod's `eth0` as one end of a delay link; the node routes the pod's address to the
    /// other end and answers ARP for it on the bridge.
    fn delay_link(&mut self, netns: &str, device: &str, address: Ipv4Addr, delay: Duration) {
        // The bridge becomes the gateway to pods behind a delay link, and answers ARP for them.
        let [a, b, c] = self.subnet;
        let gateway = format!("{}/24", Ipv4Addr::new(a, b, c, 1));
        let _ = run(
            "ip",
            &["-n", &self.netns, "addr", "add", &gateway, "dev", "br0"],
        );
        for setting in ["net.ipv4.ip_forward=1", "net.ipv4.conf.br0.proxy_arp=1"] {
            run(
                "ip",
                &["netns", "exec", &self.netns, "sysctl", "-q", "-w", setting],
            )
            .unwrap_or_else(|err| panic!("{err}"));
        }
        let delay_ms = delay.as_millis().to_string();
        let mut forwarder = Command::new("python3")
            .args([APP, "delay-link", &self.netns, netns, device, &delay_ms])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the delay link");
        let mut line = String::new();
        let mut stdout = std::io::BufReader::new(forwarder.stdout.take().expect("stdout"));
        std::io::BufRead::read_line(&mut stdout, &mut line).expect("read");
        assert_eq!(line.trim(), "listening", "the delay link did not come up");
        let control = forwarder.stdin.take().expect("stdin");
        self.links.insert(netns.to_owned(), control);
        self.children.push(forwarder);
        ip(&["-n", &self.netns, "link", "set", device, "up"]);
        ip(&[
            "-n",
            &self.netns,
            "route",
            "add",
            &format!("{address}/32"),
            "dev",
            device,
        ]);
        ip(&[
            "-n",
            netns,
            "addr",
            "add",
            &format!("{address}/32"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", netns, "link", "set", "eth0", "up"]);
        ip(&["-n", netns, "route", "add", "default", "dev", "eth0"]);
    }

    /// Starts a long-running program in `pod`; it is killed when the node is dropped.
    pub fn start(&mut self, pod: &Pod, argv: &[&str]) {
        let child = pod.spawn(argv);
        self.children.push(child);
    }

    /// Loses a random `percent` of the packets `pod` sends on the way through the node's
    /// bridge, as a lossy link would (this kernel has no `sch_netem`); 0 heals the link. The
    /// drop is past the sender's stack, so its TCP sees real loss and retransmits.
    pub fn lose_from(&self, pod: &Pod, percent: u32) {
        let table = format!("loss_{}", pod.host_veth);
        let _ = run(
            "ip",
            &[
                "netns",
                "exec",
                &self.netns,
                "nft",
                "delete",
                "table",
                "bridge",
                &table,
            ],
        );
        if percent == 0 {
            return;
        }
        // One segment per packet, as on a wire: a veth otherwise carries 64 KiB GSO packets, and a
        // share of packets would be a handful of drops per megabyte.
        ip(&[
            "-n",
            &pod.netns,
            "link",
            "set",
            "dev",
            "eth0",
            "gso_max_segs",
            "1",
        ]);
        let rule = if percent >= 100 {
            format!("ip saddr {} drop", pod.ip)
        } else {
            format!("ip saddr {} numgen random mod 100 < {percent} drop", pod.ip)
        };
        let ruleset = format!(
            "table bridge {table} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n    {rule}\n  }}\n}}\n"
        );
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.netns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("run nft");
        nft.stdin
            .take()
            .expect("nft stdin")
            .write_all(ruleset.as_bytes())
            .expect("write the ruleset");
        assert!(
            nft.wait().expect("nft exits").success(),
            "nft refused {ruleset}"
        );
    }

    /// Makes the link of a pod added by [`Node::add_delayed_pod`] drop `loss_percent` of the
    /// packets each way and hold what the pod sends for `delay`, from now on, as `tc qdisc
    /// change ... netem loss ... delay ...` would.
    pub fn impair(&mut self, pod: &Pod, loss_percent: u32, delay: Duration) {
        let control = self
            .links
            .get_mut(&pod.netns)
            .unwrap_or_else(|| panic!("{} is not behind a link", pod.name));
        writeln!(control, "{loss_percent} {}", delay.as_millis())
            .and_then(|()| control.flush())
            .expect("change the link");
    }

    /// Sets a sysctl inside `pod`'s network namespace (`net.ipv4.tcp_syn_retries=1`).
    pub fn sysctl(&self, pod: &Pod, setting: &str) {
        run(
            "ip",
            &["netns", "exec", &pod.netns, "sysctl", "-q", "-w", setting],
        )
        .unwrap_or_else(|err| panic!("{err}"));
    }

    /// Gives `pod` a `resolv.conf` naming `nameserver` (`ip netns exec` mounts it over
    /// /etc/resolv.conf).
    pub fn resolver(&self, pod: &Pod, nameserver: Ipv4Addr) {
        let dir = Path::new("/etc/netns").join(&pod.netns);
        fs::create_dir_all(&dir).expect("create /etc/netns/<pod>");
        fs::write(
            dir.join("resolv.conf"),
            format!("nameserver {nameserver}\noptions timeout:1 attempts:1\n"),
        )
        .expect("write resolv.conf");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for pod in &self.pods {
            let _ = run("ip", &["netns", "del", &pod.netns]);
            let _ = fs::remove_dir_all(Path::new("/etc/netns").join(&pod.netns));
            // Leaf first; the slices above may be shared with other nodes, and stay while used.
            let _ = fs::remove_dir(&pod.cgroup);
            if let Some(slice) = pod.cgroup.parent() {
                let _ = fs::remove_dir(slice);
            }
        }
        let _ = run("ip", &["netns", "del", &self.netns]);
    }
}

/// Hex digits derived from `seed` (FNV-1a, then splitmix64 per word): stable and unique enough
/// for ids in one test run.
fn pseudo_hex(seed: &str, len: usize) -> String {
    let mut state = seed.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3)
    });
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut x = state;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        out.push_str(&format!("{x:016x}"));
    }
    out.truncate(len);
    out
}

/// A UUID-shaped id (as Kubernetes gives pods) derived from `seed`.
fn pseudo_uuid(seed: &str) -> String {
    let hex = pseudo_hex(seed, 32);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
