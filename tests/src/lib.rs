//! End-to-end tests across binaries: the `strata` server as a child process, real clients (Prometheus,
//! promtool, node_exporter), crash and restart. The helpers here start processes, and skip loudly when a
//! tool or privilege is missing — or fail instead under `STRATA_REQUIRE_ALL=1`.

pub mod cluster;
pub mod kube_api;
pub mod pods;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// True when every test must run (CI): a missing tool or privilege is then a failure, not a skip.
pub fn require_all() -> bool {
    std::env::var("STRATA_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Finds `tool` on PATH (or at an absolute path). When missing: panics under `STRATA_REQUIRE_ALL=1`,
/// else prints a loud skip notice and returns `None`.
pub fn require_tool(tool: &str, why: &str) -> Option<PathBuf> {
    let found = if Path::new(tool).is_absolute() {
        Path::new(tool).exists().then(|| PathBuf::from(tool))
    } else {
        std::env::var_os("PATH").and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(tool))
                .find(|c| c.is_file())
        })
    };
    if found.is_none() {
        let msg = format!("`{tool}` is not installed ({why})");
        if require_all() {
            panic!("STRATA_REQUIRE_ALL=1 and {msg}");
        }
        eprintln!("\n*** SKIPPED: {msg}. Install it (see .ci/run) to run this test. ***\n");
    }
    found
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("http client")
}

/// A `strata` server running as a child process.
pub struct Strata {
    pub child: Child,
    pub port: u16,
    /// OTLP gRPC and HTTP ports.
    pub otlp_grpc_port: u16,
    pub otlp_http_port: u16,
    pub data_dir: PathBuf,
    bin: PathBuf,
    extra: Vec<String>,
}

impl Strata {
    /// Starts `strata up` on free ports with `data_dir`, waiting until it answers `/-/ready`. A port
    /// found free can be taken by another process before the server binds it; then the server exits at
    /// once and is started again on other ports.
    pub fn start(bin: &str, data_dir: &Path, extra: &[&str]) -> Strata {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = Ports {
                http: free_port(),
                otlp_grpc: free_port(),
                otlp_http: free_port(),
            };
            let mut s = Strata {
                child: spawn(Path::new(bin), data_dir, ports, extra),
                port: ports.http,
                otlp_grpc_port: ports.otlp_grpc,
                otlp_http_port: ports.otlp_http,
                data_dir: data_dir.to_owned(),
                bin: PathBuf::from(bin),
                extra: extra.iter().map(|s| s.to_string()).collect(),
            };
            match s.try_wait_ready() {
                Ok(()) => return s,
                Err(status) if attempt < 3 => {
                    eprintln!("strata exited during start-up ({status}); retrying on other ports");
                }
                Err(status) => panic!("strata exited during start-up: {status}"),
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// A URL on the OTLP/HTTP listener, e.g. `otlp_url("/v1/traces")`.
    pub fn otlp_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.otlp_http_port)
    }

    /// The OTLP/gRPC endpoint, as OpenTelemetry exporters take it.
    pub fn otlp_grpc_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.otlp_grpc_port)
    }

    fn wait_ready(&mut self) {
        if let Err(status) = self.try_wait_ready() {
            panic!("strata exited during start-up: {status}");
        }
    }

    /// Waits for `/-/ready`; `Err` with the exit status if the server exited first.
    fn try_wait_ready(&mut self) -> Result<(), std::process::ExitStatus> {
        let client = http();
        let url = self.url("/-/ready");
        let mut exited = None;
        let ok = wait_for(Duration::from_secs(60), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            client
                .get(&url)
                .send()
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| true)
        });
        if let Some(status) = exited {
            return Err(status);
        }
        assert!(
            ok == Some(true),
            "strata did not become ready on port {}",
            self.port
        );
        Ok(())
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        // SAFETY: kill(2) with a pid we own and a valid signal number has no memory effects.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        self.child.wait().expect("wait for strata")
    }

    /// Starts the server again on the same port and data directory.
    pub fn restart(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        let ports = Ports {
            http: self.port,
            otlp_grpc: self.otlp_grpc_port,
            otlp_http: self.otlp_http_port,
        };
        self.child = spawn(&self.bin, &self.data_dir, ports, &extra);
        self.wait_ready();
    }
}

#[derive(Clone, Copy)]
struct Ports {
    http: u16,
    otlp_grpc: u16,
    otlp_http: u16,
}

fn spawn(bin: &Path, data_dir: &Path, ports: Ports, extra: &[&str]) -> Child {
    Command::new(bin)
        .arg("up")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg(format!("127.0.0.1:{}", ports.http))
        .arg("--otlp-grpc-listen")
        .arg(format!("127.0.0.1:{}", ports.otlp_grpc))
        .arg("--otlp-http-listen")
        .arg(format!("127.0.0.1:{}", ports.otlp_http))
        // The node agent observes the whole host; only tests about it turn it on.
        .args(
            (!extra.iter().any(|arg| arg.starts_with("--agent")))
                .then_some(["--agent", "off"])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .env("STRATA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start strata")
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child process killed when dropped (peers such as Prometheus and node_exporter).
pub struct Peer(pub Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python interpreter with the OpenTelemetry SDK and both OTLP exporters (`STRATA_OTEL_PYTHON`, else
/// the venv `.ci/run` creates). When missing: panics under `STRATA_REQUIRE_ALL=1`, else skips loudly.
pub fn otel_python() -> Option<PathBuf> {
    let py = std::env::var("STRATA_OTEL_PYTHON")
        .unwrap_or_else(|_| "/opt/strata-venv/bin/python3".into());
    let ok = Command::new(&py)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc.trace_exporter, \
             opentelemetry.exporter.otlp.proto.http.trace_exporter",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let msg = format!(
            "the OpenTelemetry Python SDK is not importable with {py} (set STRATA_OTEL_PYTHON)"
        );
        if require_all() {
            panic!("STRATA_REQUIRE_ALL=1 and {msg}");
        }
        eprintln!("\n*** SKIPPED: {msg}. Install it (see .ci/run) to run this test. ***\n");
        return None;
    }
    Some(PathBuf::from(py))
}
