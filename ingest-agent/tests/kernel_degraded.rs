//! Degraded mode, as root: when the host lacks a tracepoint, tracefs, kernel BTF or the cgroup2 mount,
//! the loader attaches everything else, reports each missing hook with its reason, logs what is
//! lost, and still detaches cleanly. The host's shortcomings are simulated by the features the
//! loader is given; the kernel itself is the real one.
//!
//! Needs root; skips loudly without it, fails under `STRATA_REQUIRE_ALL=1`.

#[macro_use]
mod lab;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use strata_agent::kernel_features::KernelFeatures;
use strata_agent::loader::{Hook, HookState, LoaderConfig, Probes};

/// Log lines captured from the loader.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn load_logged(features: &KernelFeatures) -> (Probes, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let probes = tracing::subscriber::with_default(subscriber, || {
        Probes::load(&LoaderConfig::default(), features).expect("the object loads regardless")
    });
    let log = String::from_utf8(captured.0.lock().expect("log lock").clone()).expect("utf-8");
    (probes, log)
}

fn state(probes: &Probes, hook: Hook) -> HookState {
    probes.hooks()[&hook].clone()
}

#[test]
fn missing_hooks_degrade_instead_of_failing() {
    let real = or_skip!(lab::preconditions(&[]));
    let tracefs = real.tracefs.clone().expect("checked by preconditions");

    // A tracefs that only has one of the two tracepoints.
    let partial = tempfile::tempdir().expect("tempdir");
    let event = Path::new("events/sock/inet_sock_set_state");
    fs::create_dir_all(partial.path().join(event)).expect("fake event dir");
    fs::copy(
        tracefs.join(event).join("id"),
        partial.path().join(event).join("id"),
    )
    .expect("copy tracepoint id");
    let features = KernelFeatures {
        tracefs: Some(partial.path().to_owned()),
        ..real.clone()
    };
    let (probes, log) = load_logged(&features);
    for hook in [
        Hook::InetSockSetState,
        Hook::SockStatsRefresh,
        Hook::CgroupIngress,
        Hook::CgroupEgress,
    ] {
        assert_eq!(state(&probes, hook), HookState::Attached, "{hook}");
    }
    let hook = Hook::TcpRetransmitSkb;
    let HookState::Unavailable(why) = state(&probes, hook) else {
        panic!("{hook} should be unavailable: {:?}", state(&probes, hook));
    };
    assert!(why.contains(&partial.path().display().to_string()), "{why}");
    let line = log
        .lines()
        .find(|line| line.contains(&hook.to_string()) && line.contains("unavailable"))
        .unwrap_or_else(|| panic!("no log line for {hook}:\n{log}"));
    assert!(
        line.contains("WARN") && line.contains(hook.loses()),
        "{line}"
    );
    lab::assert_detached_on_drop(probes);

    // No kernel BTF: CO-RE tracepoint programs stay unloaded, packet programs still run.
    let (probes, log) = load_logged(&KernelFeatures {
        btf: false,
        ..real.clone()
    });
    for hook in Hook::ALL {
        let expected = match hook {
            Hook::CgroupIngress | Hook::CgroupEgress => HookState::Attached,
            _ => HookState::Unavailable("kernel BTF missing".into()),
        };
        assert_eq!(state(&probes, hook), expected, "{hook}");
    }
    assert!(log.contains("no kernel BTF"), "{log}");
    lab::assert_detached_on_drop(probes);

    // No tracefs at all: the iterator still attaches (it needs none); the tracepoints cannot.
    let (probes, _) = load_logged(&KernelFeatures {
        tracefs: None,
        ..real.clone()
    });
    assert_eq!(state(&probes, Hook::SockStatsRefresh), HookState::Attached);
    assert!(matches!(
        state(&probes, Hook::InetSockSetState),
        HookState::Unavailable(_)
    ));
    lab::assert_detached_on_drop(probes);

    // No cgroup2 mount: no HTTP or DNS, TCP still seen.
    let (probes, _) = load_logged(&KernelFeatures {
        cgroup2: None,
        ..real
    });
    assert!(matches!(
        state(&probes, Hook::CgroupIngress),
        HookState::Unavailable(_)
    ));
    assert!(matches!(
        state(&probes, Hook::CgroupEgress),
        HookState::Unavailable(_)
    ));
    assert_eq!(state(&probes, Hook::InetSockSetState), HookState::Attached);
    lab::assert_detached_on_drop(probes);
}
