//! What the running kernel offers the agent: BTF for CO-RE, tracefs and the tracepoints in it,
//! and the cgroup2 mount. Only looks at files; the paths are injectable so detection is tested
//! against a fake tree. Knows nothing of our programs beyond the hook names it is asked about.

use std::fs;
use std::path::{Path, PathBuf};

/// Where to look. `HostPaths::default()` is the real system.
#[derive(Clone, Debug)]
pub struct HostPaths {
    pub btf_vmlinux: PathBuf,
    pub mounts: PathBuf,
    /// Tried in order when /proc/self/mounts names no tracefs.
    pub tracefs_candidates: Vec<PathBuf>,
}

impl Default for HostPaths {
    fn default() -> Self {
        HostPaths {
            btf_vmlinux: PathBuf::from("/sys/kernel/btf/vmlinux"),
            mounts: PathBuf::from("/proc/self/mounts"),
            tracefs_candidates: vec![
                PathBuf::from("/sys/kernel/tracing"),
                PathBuf::from("/sys/kernel/debug/tracing"),
            ],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    /// Kernel BTF is present: CO-RE programs can be relocated.
    pub btf: bool,
    /// A tracefs with an `events/` directory.
    pub tracefs: Option<PathBuf>,
    /// The cgroup2 (unified) hierarchy's mount point.
    pub cgroup2: Option<PathBuf>,
}

impl KernelFeatures {
    pub fn detect(paths: &HostPaths) -> Self {
        let mounts = fs::read_to_string(&paths.mounts).unwrap_or_default();
        let tracefs = mount_points(&mounts, "tracefs")
            .into_iter()
            .chain(paths.tracefs_candidates.iter().cloned())
            .find(|dir| dir.join("events").is_dir());
        KernelFeatures {
            btf: paths.btf_vmlinux.is_file(),
            tracefs,
            cgroup2: mount_points(&mounts, "cgroup2").into_iter().next(),
        }
    }

    /// The tracepoint `category:name` exists (it has an id under tracefs).
    pub fn has_tracepoint(&self, category: &str, name: &str) -> bool {
        self.tracefs.as_ref().is_some_and(|tracefs| {
            tracefs
                .join("events")
                .join(category)
                .join(name)
                .join("id")
                .is_file()
        })
    }
}

/// Mount points of every filesystem of type `fstype` in a `/proc/self/mounts` text.
pub fn mount_points(mounts: &str, fstype: &str) -> Vec<PathBuf> {
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (_source, target, kind) = (fields.next()?, fields.next()?, fields.next()?);
            (kind == fstype).then(|| PathBuf::from(unescape_mount_field(target)))
        })
        .collect()
}

/// The kernel writes space, tab, newline and backslash in mount fields as `\ooo` octal escapes.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = &bytes[i + 1..i + 4];
            if digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mounts tracefs at the first candidate directory when none is mounted: tracepoint attachment
/// needs it, and a privileged agent on a minimal host may find it absent. Returns where it is.
pub fn mount_tracefs_if_absent(paths: &HostPaths) -> std::io::Result<PathBuf> {
    if let Some(found) = KernelFeatures::detect(paths).tracefs {
        return Ok(found);
    }
    let target = paths
        .tracefs_candidates
        .iter()
        .find(|dir| dir.is_dir())
        .ok_or_else(|| std::io::Error::other("no directory to mount tracefs on"))?;
    mount(Path::new("tracefs"), target, "tracefs")?;
    tracing::info!(path = %target.display(), "mounted tracefs: tracepoints need it");
    Ok(target.clone())
}

fn mount(source: &Path, target: &Path, fstype: &str) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let to_c = |bytes: &[u8]| CString::new(bytes).map_err(std::io::Error::other);
    let source = to_c(source.as_os_str().as_bytes())?;
    let target = to_c(target.as_os_str().as_bytes())?;
    let fstype = to_c(fstype.as_bytes())?;
    // SAFETY: three valid NUL-terminated strings and a null data pointer, as mount(2) accepts.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_host() -> (tempfile::TempDir, HostPaths) {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = HostPaths {
            btf_vmlinux: root.path().join("btf/vmlinux"),
            mounts: root.path().join("mounts"),
            tracefs_candidates: vec![root.path().join("tracing")],
        };
        (root, paths)
    }

    #[test]
    fn nothing_found_on_an_empty_host() {
        let (_root, paths) = fake_host();
        let features = KernelFeatures::detect(&paths);
        assert_eq!(
            features,
            KernelFeatures {
                btf: false,
                tracefs: None,
                cgroup2: None
            }
        );
        assert!(!features.has_tracepoint("sock", "inet_sock_set_state"));
    }

    #[test]
    fn finds_btf_tracepoints_and_cgroup2_from_mounts() {
        let (root, paths) = fake_host();
        fs::create_dir_all(root.path().join("btf")).unwrap();
        fs::write(&paths.btf_vmlinux, b"btf").unwrap();
        let tracing = root.path().join("mnt/trace fs");
        let event = tracing.join("events/sock/inet_sock_set_state");
        fs::create_dir_all(&event).unwrap();
        fs::write(event.join("id"), b"2287\n").unwrap();
        let escaped = tracing.display().to_string().replace(' ', "\\040");
        fs::write(
            &paths.mounts,
            format!(
                "sysfs /sys sysfs rw 0 0\n\
                 cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n\
                 cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n\
                 tracefs {escaped} tracefs rw 0 0\n"
            ),
        )
        .unwrap();
        let features = KernelFeatures::detect(&paths);
        assert!(features.btf);
        assert_eq!(features.tracefs.as_deref(), Some(tracing.as_path()));
        assert_eq!(
            features.cgroup2.as_deref(),
            Some(Path::new("/sys/fs/cgroup/unified"))
        );
        assert!(features.has_tracepoint("sock", "inet_sock_set_state"));
        assert!(!features.has_tracepoint("tcp", "tcp_probe"));
    }

    #[test]
    fn falls_back_to_candidate_tracefs_directories() {
        let (root, paths) = fake_host();
        fs::create_dir_all(root.path().join("tracing/events")).unwrap();
        fs::write(&paths.mounts, "").unwrap();
        let features = KernelFeatures::detect(&paths);
        assert_eq!(features.tracefs, Some(root.path().join("tracing")));
    }

    #[test]
    fn mount_fields_are_unescaped() {
        assert_eq!(unescape_mount_field("/a\\040b\\011c"), "/a b\tc");
        assert_eq!(unescape_mount_field("/plain"), "/plain");
        assert_eq!(unescape_mount_field("/trailing\\04"), "/trailing\\04");
    }
}
