//! Runs an operator binary under test (the real `testmesh`), scoped to one workspace,
//! with the identity `testmesh-operator` so the audit log can tell its requests apart.
//! A fixture: it panics with a message when the process cannot be started or reached.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::ControlPlane;

/// `TESTMESH_OPERATOR_HEAPTRACK=<path>`: every operator started records its allocations
/// with heaptrack (Debian's `heaptrack`) into `<path>.<n>`, its raw trace; read it with
/// `/usr/lib/heaptrack/libexec/heaptrack_interpret < <path>.0 | gzip > heap.gz` and
/// `heaptrack_print heap.gz`. What is still allocated when the operator is killed is the
/// "leaked" of the print: its live heap at that moment.
pub const HEAPTRACK_ENV: &str = "TESTMESH_OPERATOR_HEAPTRACK";
/// Where Debian's heaptrack keeps the library it preloads.
const HEAPTRACK_PRELOAD: &str = "/usr/lib/heaptrack/libheaptrack_preload.so";
/// Operators started under heaptrack in this process: one trace each.
static HEAPTRACK_RUNS: AtomicUsize = AtomicUsize::new(0);

/// An operator process; killed when dropped, with its log printed if the test failed.
pub struct Operator {
    binary: PathBuf,
    child: Option<Child>,
    log: PathBuf,
    /// Where the operator serves `/metrics`, `/livez` and `/readyz`.
    pub http: SocketAddr,
    /// Where the operator serves the REST API and the dashboard.
    pub api: SocketAddr,
    args: Vec<String>,
    /// How it reaches the API server.
    kubeconfig: PathBuf,
}

impl Operator {
    /// Starts `binary run` for `workspace`, with Applications in `argocd_namespace`.
    pub fn start(
        binary: &str,
        workspace: &str,
        argocd_namespace: &str,
        extra_args: &[&str],
    ) -> Operator {
        let kubeconfig = ControlPlane::shared().operator_kubeconfig_path().to_owned();
        Operator::start_with(binary, workspace, argocd_namespace, extra_args, kubeconfig)
    }

    /// [`Operator::start`], reaching the API server as `kubeconfig` says (through a
    /// [`crate::proxy::Proxy`], say).
    pub fn start_with(
        binary: &str,
        workspace: &str,
        argocd_namespace: &str,
        extra_args: &[&str],
        kubeconfig: PathBuf,
    ) -> Operator {
        let mut args = vec![
            "run".to_owned(),
            format!("--watch-namespace={workspace}"),
            format!("--argocd-namespace={argocd_namespace}"),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        // Several operators may serve one workspace (replicas): one log each.
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        // Beside the kubeconfig: in the run directory of the control plane it reaches.
        let log_dir = kubeconfig
            .parent()
            .unwrap_or(Path::new("."))
            .join("logs")
            .join("operators");
        std::fs::create_dir_all(&log_dir).expect("operator log dir");
        let number = STARTED.fetch_add(1, Ordering::Relaxed);
        let mut operator = Operator {
            binary: binary.into(),
            child: None,
            log: log_dir.join(format!("{workspace}-{number}.log")),
            http: free_address(),
            api: free_address(),
            args,
            kubeconfig,
        };
        operator.spawn();
        operator
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("operator log");
        let mut command = Command::new("setpriv");
        command.args(["--pdeathsig", "KILL", "--"]);
        if let Ok(raw) = std::env::var(HEAPTRACK_ENV) {
            // The profiler is preloaded into the operator alone: `env` sets it for the
            // exec that follows, not for setpriv.
            let number = HEAPTRACK_RUNS.fetch_add(1, Ordering::Relaxed);
            command.args([
                "env".to_owned(),
                format!("LD_PRELOAD={HEAPTRACK_PRELOAD}"),
                format!("DUMP_HEAPTRACK_OUTPUT={raw}.{number}"),
            ]);
        }
        let child = command
            .arg(&self.binary)
            .args(&self.args)
            .arg(format!("--http-address={}", self.http))
            .arg(format!("--api-address={}", self.api))
            .env("KUBECONFIG", &self.kubeconfig)
            .env("RUST_LOG", "info,testmesh=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("start testmesh run");
        self.child = Some(child);
    }

    /// SIGKILL, as a crash or a node loss would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as Kubernetes stops a pod; waits up to `timeout` for the exit.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let pid = child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(signalled.success(), "kill -TERM {pid}");
        let status = self.wait_exit(timeout).await;
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Waits up to `timeout` for the process to exit on its own; its status if it did.
    /// Polls without blocking the async runtime: a graceful shutdown takes seconds, and
    /// the test's own watches and timers keep running meanwhile.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().expect("poll operator") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the process again with the same settings.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The status code of GET `path` on the operator's HTTP server, or `None` while it
    /// does not answer (starting, restarting).
    pub fn probe(&self, path: &str) -> Option<u16> {
        self.try_get(path).map(|(code, _)| code)
    }

    /// GET a path of the operator's HTTP server; (status code, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        self.try_get(path)
            .unwrap_or_else(|| panic!("the operator does not answer GET {path}"))
    }

    /// GET a path of the operator's HTTP server; (status code, body), or `None` while it
    /// does not answer (starting, restarting).
    pub fn try_get(&self, path: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(self.http).ok()?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let code = response.split_whitespace().nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((code, body))
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the operator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!("--- operator log {} (last lines) ---", self.log.display());
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A free address of 127.0.0.1 for the operator to listen on, below the kernel's
/// ephemeral port range. A port the kernel hands out (bind to port 0) is one any outgoing
/// connection — a test's client, the API server's — may take between the pick and the
/// operator's bind (seen: "cannot serve HTTP on …: Address already in use", and the test's
/// requests answered by another test's operator). Below that range only a listener can
/// hold it, which the bind here checks for; each pick in this process moves on, so two
/// operators started at once never share one.
fn free_address() -> SocketAddr {
    const LOWEST: usize = 10_000;
    static PICKED: AtomicUsize = AtomicUsize::new(0);
    let ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<usize>().ok())
        .unwrap_or(32_768);
    let span = ephemeral.saturating_sub(LOWEST).max(1);
    // Processes start their walks far apart.
    let offset = std::process::id() as usize * 389;
    for _ in 0..span {
        let picked = PICKED.fetch_add(1, Ordering::Relaxed);
        let Ok(port) = u16::try_from(LOWEST + (offset + picked) % span) else {
            continue;
        };
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)) {
            return listener.local_addr().expect("address");
        }
    }
    panic!("no free port of 127.0.0.1 below {ephemeral}");
}
