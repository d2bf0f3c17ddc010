//! cgroup id → cgroup path → owner. The id `bpf_skb_cgroup_id` and `sk_cgrp_data` report is the
//! inode number of the cgroup's directory in the cgroup2 filesystem, so walking that tree gives
//! the map; ids are 64-bit kernfs ids, never reused while the machine runs, so a cached entry
//! stays true after its cgroup is gone. The walk sits behind [`CgroupSource`]; any directory
//! tree serves, because a plain directory's inode number plays the id.
//!
//! Paths name their owner by convention of the kubelet and the container runtimes:
//! - kubelet, systemd driver: `/kubepods.slice/kubepods-burstable.slice/`
//!   `kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope` (CRI-O: `crio-<id>.scope`,
//!   dockershim: `docker-<id>.scope`);
//! - kubelet, cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`;
//! - docker and podman outside Kubernetes: `/system.slice/docker-<id>.scope`, `/docker/<id>`,
//!   `/machine.slice/libpod-<id>.scope`;
//! - anything else is a host process: its systemd unit (`/system.slice/nginx.service`), else the
//!   last component of the path.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

/// Who a cgroup belongs to, as its path tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupOwner {
    /// A cgroup under a kubelet pod cgroup: the pod's UID (dashed, as `metadata.uid`, or the
    /// 32-hex config hash of a static pod) and, below the pod level, the container id.
    Pod {
        uid: String,
        container_id: Option<String>,
    },
    /// A container outside any pod path (docker, podman, or a kubelet whose pod level we could
    /// not read).
    Container { id: String },
    /// A host process: its systemd unit or the cgroup's own name; empty for the root.
    Host { unit: String },
}

/// Reads the owner from a cgroup path relative to the cgroup2 root (`/a/b/c`).
pub fn parse_path(path: &str) -> CgroupOwner {
    let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let pod_uid = components.iter().find_map(|c| pod_uid(c));
    // The deepest container id wins: a container may make cgroups of its own below it.
    let container_id = components.iter().rev().find_map(|c| container_id(c));
    match (pod_uid, container_id) {
        (Some(uid), container_id) => CgroupOwner::Pod { uid, container_id },
        (None, Some(id)) => CgroupOwner::Container { id },
        (None, None) => CgroupOwner::Host {
            unit: host_unit(&components).to_owned(),
        },
    }
}

/// `kubepods-burstable-pod<uid_with_underscores>.slice` or `pod<uid>`.
fn pod_uid(component: &str) -> Option<String> {
    let name = component.strip_suffix(".slice").unwrap_or(component);
    let at = name.rfind("pod")?;
    let prefix = &name[..at];
    if !(prefix.is_empty() || prefix.ends_with('-')) {
        return None;
    }
    let uid = name[at + 3..].replace('_', "-");
    is_pod_uid(&uid).then_some(uid)
}

/// A UUID in its dashed form, or the 32 hex digits a static pod's config hash has.
fn is_pod_uid(text: &str) -> bool {
    let dashed = text.len() == 36
        && text.char_indices().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    dashed || (text.len() == 32 && is_hex(text))
}

fn is_hex(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runtime scope prefixes in front of a container id in systemd-driver paths.
const CONTAINER_SCOPE_PREFIXES: [&str; 5] = [
    "cri-containerd-",
    "crio-",
    "docker-",
    "libpod-",
    "containerd-",
];

/// `cri-containerd-<64 hex>.scope`, `crio-<64 hex>.scope`, `docker-<64 hex>.scope`, or a bare
/// `<64 hex>` directory. `crio-conmon-<id>.scope` is CRI-O's monitor, not the container.
fn container_id(component: &str) -> Option<String> {
    let name = component.strip_suffix(".scope").unwrap_or(component);
    let id = CONTAINER_SCOPE_PREFIXES
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .unwrap_or(name);
    (id.len() == 64 && is_hex(id)).then(|| id.to_ascii_lowercase())
}

/// The deepest systemd unit (`.service`, `.scope`) on the path, else its last component.
fn host_unit<'a>(components: &[&'a str]) -> &'a str {
    components
        .iter()
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .or(components.last())
        .copied()
        .unwrap_or("")
}

/// Where cgroup paths come from: the cgroup2 filesystem in production, a fake in tests.
pub trait CgroupSource: Send + Sync {
    /// Every cgroup, as (id, path relative to the root with a leading `/`), at most `limit`.
    fn scan(&self, limit: usize) -> io::Result<Vec<(u64, String)>>;
}

/// A cgroup2 mount (or any directory tree standing in for one).
#[derive(Clone, Debug)]
pub struct CgroupFs {
    root: PathBuf,
}

impl CgroupFs {
    pub fn new(root: impl Into<PathBuf>) -> CgroupFs {
        CgroupFs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl CgroupSource for CgroupFs {
    fn scan(&self, limit: usize) -> io::Result<Vec<(u64, String)>> {
        let root_id = fs::metadata(&self.root)?.ino();
        let mut found = vec![(root_id, "/".to_owned())];
        let mut pending = vec![(self.root.clone(), String::new())];
        while let Some((dir, relative)) = pending.pop() {
            // Cgroups come and go during the walk: a directory gone since its parent was
            // listed is skipped, not an error.
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if !kind.is_dir() {
                    continue;
                }
                let Ok(metadata) = entry.metadata() else {
                    continue;
                };
                if found.len() >= limit {
                    return Ok(found);
                }
                let path = format!("{relative}/{}", entry.file_name().to_string_lossy());
                found.push((metadata.ino(), path.clone()));
                pending.push((entry.path(), path));
            }
        }
        Ok(found)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupEntry {
    pub path: String,
    pub owner: CgroupOwner,
}

/// The id → path map, refreshed by a rescan when an id is missing, at most once per interval.
pub struct CgroupCache {
    source: Box<dyn CgroupSource>,
    entries: RwLock<HashMap<u64, Arc<CgroupEntry>>>,
    scans: Mutex<ScanState>,
    rescan_interval: Duration,
    capacity: usize,
}

#[derive(Default)]
struct ScanState {
    last: Option<Instant>,
    count: u64,
    failures: u64,
}

impl CgroupCache {
    pub fn new(
        source: Box<dyn CgroupSource>,
        rescan_interval: Duration,
        capacity: usize,
    ) -> CgroupCache {
        debug_assert!(capacity > 0);
        CgroupCache {
            source,
            entries: RwLock::new(HashMap::new()),
            scans: Mutex::new(ScanState::default()),
            rescan_interval,
            capacity,
        }
    }

    /// The cgroup with this id; a miss rescans the tree when the last scan is old enough. A
    /// rescan walks the filesystem (a few milliseconds for thousands of cgroups).
    pub fn get(&self, id: u64) -> Option<Arc<CgroupEntry>> {
        if let Some(entry) = self.entries.read().get(&id) {
            return Some(entry.clone());
        }
        self.rescan_if_due(Instant::now());
        self.entries.read().get(&id).cloned()
    }

    /// Rescans unless one ran within the interval. Concurrent misses wait for one scan.
    pub fn rescan_if_due(&self, now: Instant) {
        let mut state = self.scans.lock();
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.rescan_interval)
        {
            return;
        }
        state.last = Some(now);
        state.count += 1;
        match self.source.scan(self.capacity) {
            Ok(found) => self.replace(found),
            Err(err) => {
                state.failures += 1;
                tracing::warn!(error = %err, "cannot read the cgroup hierarchy: local ends stay unnamed");
            }
        }
    }

    /// Takes a fresh scan; entries of cgroups gone since are kept while there is room, so a
    /// connection's last counters, read after its container exited, still find their owner.
    fn replace(&self, found: Vec<(u64, String)>) {
        let mut entries = self.entries.write();
        let mut fresh: HashMap<u64, Arc<CgroupEntry>> = HashMap::with_capacity(found.len());
        for (id, path) in found {
            let entry = match entries.get(&id) {
                Some(known) if known.path == path => known.clone(),
                _ => Arc::new(CgroupEntry {
                    owner: parse_path(&path),
                    path,
                }),
            };
            fresh.insert(id, entry);
        }
        for (id, entry) in entries.drain() {
            if fresh.len() >= self.capacity {
                break;
            }
            fresh.entry(id).or_insert(entry);
        }
        *entries = fresh;
    }

    pub fn len(&self) -> usize {
        self.entries.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Scans run so far, and how many of them failed.
    pub fn scans(&self) -> (u64, u64) {
        let state = self.scans.lock();
        (state.count, state.failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f1b2c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";
    const UID: &str = "1e2f3a4b-5c6d-7e8f-9a0b-1c2d3e4f5a6b";

    fn pod(container: Option<&str>) -> CgroupOwner {
        CgroupOwner::Pod {
            uid: UID.into(),
            container_id: container.map(str::to_owned),
        }
    }

    #[test]
    fn kubelet_systemd_driver_paths() {
        let slice = "/kubepods.slice/kubepods-burstable.slice/\
                     kubepods-burstable-pod1e2f3a4b_5c6d_7e8f_9a0b_1c2d3e4f5a6b.slice";
        assert_eq!(
            parse_path(&format!("{slice}/cri-containerd-{ID}.scope")),
            pod(Some(ID))
        );
        assert_eq!(
            parse_path(&format!("{slice}/crio-{ID}.scope")),
            pod(Some(ID))
        );
        assert_eq!(
            parse_path(&format!("{slice}/docker-{ID}.scope")),
            pod(Some(ID))
        );
        // CRI-O's monitor process sits in the pod but is no container of it.
        assert_eq!(
            parse_path(&format!("{slice}/crio-conmon-{ID}.scope")),
            pod(None)
        );
        assert_eq!(parse_path(slice), pod(None));
        // Guaranteed pods have no QoS slice.
        assert_eq!(
            parse_path(&format!(
                "/kubepods.slice/kubepods-pod1e2f3a4b_5c6d_7e8f_9a0b_1c2d3e4f5a6b.slice/\
                 cri-containerd-{ID}.scope"
            )),
            pod(Some(ID))
        );
        // kind and k3s nest the kubelet's hierarchy one level down.
        assert_eq!(
            parse_path(&format!(
                "/kubelet.slice/kubelet-kubepods.slice{slice}/cri-containerd-{ID}.scope"
            )),
            pod(Some(ID))
        );
    }

    #[test]
    fn kubelet_cgroupfs_driver_paths() {
        assert_eq!(
            parse_path(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            pod(Some(ID))
        );
        assert_eq!(
            parse_path(&format!("/kubepods/pod{UID}/{ID}")),
            pod(Some(ID))
        );
        assert_eq!(
            parse_path(&format!("/kubepods/besteffort/pod{UID}")),
            pod(None)
        );
        // A static pod's UID is its config hash.
        let hash = "5d3b8e4f0a1c2b3d4e5f60718293a4b5";
        assert_eq!(
            parse_path(&format!("/kubepods/burstable/pod{hash}/{ID}")),
            CgroupOwner::Pod {
                uid: hash.into(),
                container_id: Some(ID.into())
            }
        );
        // A container that made a cgroup of its own.
        assert_eq!(
            parse_path(&format!("/kubepods/burstable/pod{UID}/{ID}/init.scope")),
            pod(Some(ID))
        );
    }

    #[test]
    fn containers_outside_kubernetes() {
        let container = CgroupOwner::Container { id: ID.into() };
        assert_eq!(
            parse_path(&format!("/system.slice/docker-{ID}.scope")),
            container
        );
        assert_eq!(parse_path(&format!("/docker/{ID}")), container);
        assert_eq!(
            parse_path(&format!("/machine.slice/libpod-{ID}.scope")),
            container
        );
        assert_eq!(
            parse_path(&format!("/system.slice/docker-{}.scope", ID.to_uppercase())),
            container
        );
    }

    #[test]
    fn host_processes_are_named_by_unit() {
        let host = |unit: &str| CgroupOwner::Host { unit: unit.into() };
        assert_eq!(
            parse_path("/system.slice/nginx.service"),
            host("nginx.service")
        );
        assert_eq!(
            parse_path("/system.slice/containerd.service/delegated"),
            host("containerd.service")
        );
        assert_eq!(
            parse_path("/user.slice/user-1000.slice/session-3.scope"),
            host("session-3.scope")
        );
        assert_eq!(parse_path("/init.scope"), host("init.scope"));
        assert_eq!(parse_path("/batch/worker"), host("worker"));
        assert_eq!(parse_path("/"), host(""));
        // Not pod UIDs: wrong length, or "pod" inside a word.
        assert_eq!(parse_path("/kubepods/podcast"), host("podcast"));
        assert_eq!(
            parse_path(&format!("/system.slice/ipod{UID}.service")),
            host(&format!("ipod{UID}.service"))
        );
        assert_eq!(
            parse_path(&format!("/system.slice/docker-{}.scope", &ID[..12])),
            host(&format!("docker-{}.scope", &ID[..12]))
        );
    }

    #[test]
    fn the_filesystem_walk_maps_inodes_to_paths() {
        let root = tempfile::tempdir().unwrap();
        let leaf = root
            .path()
            .join(format!("kubepods/burstable/pod{UID}/{ID}"));
        fs::create_dir_all(&leaf).unwrap();
        fs::create_dir_all(root.path().join("system.slice/nginx.service")).unwrap();
        fs::write(root.path().join("cgroup.procs"), b"1\n").unwrap();
        let found = CgroupFs::new(root.path()).scan(usize::MAX).unwrap();
        let leaf_id = fs::metadata(&leaf).unwrap().ino();
        assert!(found.contains(&(leaf_id, format!("/kubepods/burstable/pod{UID}/{ID}"))));
        assert!(found.contains(&(fs::metadata(root.path()).unwrap().ino(), "/".to_owned())));
        assert_eq!(found.len(), 7, "{found:?}");
        assert_eq!(CgroupFs::new(root.path()).scan(3).unwrap().len(), 3);
        assert!(CgroupFs::new(root.path().join("absent")).scan(10).is_err());
    }

    /// A tree the test edits, counting scans.
    #[derive(Default)]
    struct FakeTree {
        cgroups: Arc<Mutex<Vec<(u64, String)>>>,
    }

    impl CgroupSource for FakeTree {
        fn scan(&self, limit: usize) -> io::Result<Vec<(u64, String)>> {
            Ok(self.cgroups.lock().iter().take(limit).cloned().collect())
        }
    }

    #[test]
    fn a_miss_rescans_at_most_once_per_interval() {
        let tree = FakeTree::default();
        let cgroups = tree.cgroups.clone();
        cgroups.lock().push((1, "/".into()));
        cgroups
            .lock()
            .push((2, "/system.slice/sshd.service".into()));
        let cache = CgroupCache::new(Box::new(tree), Duration::from_secs(3600), 100);
        assert_eq!(
            cache.get(2).map(|e| e.owner.clone()),
            Some(CgroupOwner::Host {
                unit: "sshd.service".into()
            })
        );
        cgroups
            .lock()
            .push((3, "/system.slice/cron.service".into()));
        assert!(cache.get(3).is_none(), "scanned within the interval");
        assert_eq!(cache.scans(), (1, 0));

        let eager = CgroupCache::new(
            Box::new(FakeTree {
                cgroups: cgroups.clone(),
            }),
            Duration::ZERO,
            100,
        );
        assert!(eager.get(3).is_some());
        cgroups.lock().push((4, "/system.slice/atd.service".into()));
        assert!(eager.get(4).is_some());
        assert_eq!(eager.scans().0, 2);
    }

    #[test]
    fn vanished_cgroups_stay_while_there_is_room() {
        let tree = FakeTree::default();
        let cgroups = tree.cgroups.clone();
        *cgroups.lock() = vec![(1, "/".into()), (2, format!("/docker/{ID}"))];
        let cache = CgroupCache::new(Box::new(tree), Duration::ZERO, 3);
        assert!(cache.get(2).is_some());
        *cgroups.lock() = vec![(1, "/".into()), (5, "/a".into())];
        assert!(cache.get(5).is_some());
        assert!(cache.get(2).is_some(), "kept: 3 entries fit");
        *cgroups.lock() = vec![(1, "/".into()), (5, "/a".into()), (6, "/b".into())];
        assert!(cache.get(6).is_some());
        assert_eq!(cache.len(), 3);
        assert!(cache.get(2).is_none(), "dropped for a live cgroup");
    }
}
