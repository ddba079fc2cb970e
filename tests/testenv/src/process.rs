//! Child-process supervision that survives `static` storage.
//!
//! Integration tests keep the control plane in a `static OnceLock`, and statics are
//! never dropped, so `Drop` cannot be relied on to stop etcd and friends when the
//! test binary exits (normally, on panic, or when it is killed). Instead every
//! child is launched through util-linux `setpriv --pdeathsig KILL`, which asks the
//! kernel to SIGKILL the child as soon as its parent goes away.
//!
//! Linux ties the parent-death signal to the *thread* that forked the child, not
//! to the process. Test threads are short-lived, so all children are spawned from
//! one dedicated [`Launcher`] thread that lives as long as its owner: for the
//! shared control plane that is until process exit.

use std::fs::File;
use std::future::Future;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

const POLL_INTERVAL: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
const HTTP_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const LOG_TAIL_LINES: usize = 40;

type SpawnReply = mpsc::Sender<std::io::Result<Child>>;

/// A thread that spawns child processes on behalf of others and then waits for
/// more work. Dropping the `Launcher` lets the thread finish, which in turn
/// SIGKILLs every child it spawned (through `PR_SET_PDEATHSIG`).
#[derive(Debug)]
pub(crate) struct Launcher {
    requests: mpsc::Sender<(Command, SpawnReply)>,
}

impl Launcher {
    pub(crate) fn new() -> Result<Self> {
        let (requests, incoming) = mpsc::channel::<(Command, SpawnReply)>();
        std::thread::Builder::new()
            .name("testenv-launcher".into())
            .spawn(move || {
                // Runs until every `Sender` is gone; for a `static` control plane, forever.
                for (mut command, reply) in incoming {
                    // The receiver only disappears if the requester gave up; nothing to do then.
                    let _ = reply.send(command.spawn());
                }
            })
            .map_err(|e| Error::io("spawn launcher thread", e))?;
        Ok(Self { requests })
    }

    /// Starts `program args…` under `setpriv --pdeathsig KILL`, with stdout and
    /// stderr appended to `log_path`.
    pub(crate) fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        log_path: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Result<ManagedProcess> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|e| Error::io(format!("open {}", log_path.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("clone {}", log_path.display()), e))?;

        let mut command = Command::new("setpriv");
        command
            .args(["--pdeathsig", "KILL", "--"])
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        configure(&mut command);

        let (reply, response) = mpsc::channel();
        let gone = || Error::Startup {
            message: format!("the launcher thread is gone, cannot start {name}"),
            logs: String::new(),
        };
        self.requests.send((command, reply)).map_err(|_| gone())?;
        let child = response.recv().map_err(|_| gone())?.map_err(|e| {
            Error::io(
                format!("start {name} via setpriv ({})", program.display()),
                e,
            )
        })?;
        tracing::debug!(name, pid = child.id(), "started");
        Ok(ManagedProcess {
            name: name.to_owned(),
            child,
            log_path: log_path.to_path_buf(),
        })
    }
}

/// Processes started together and stopped together — a control plane, kwok, an Argo
/// CD — each logging to `<log_dir>/<name>.log` and running in one working directory.
///
/// Dropping the group kills its processes (and the launcher thread's exit would SIGKILL
/// them anyway), last started first.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    /// What the processes make up together, for error messages ("Argo CD").
    what: &'static str,
    log_dir: PathBuf,
    work_dir: PathBuf,
    processes: Mutex<Vec<ManagedProcess>>,
    launcher: Launcher,
}

impl ProcessGroup {
    pub(crate) fn new(what: &'static str, log_dir: &Path, work_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(log_dir)
            .map_err(|e| Error::io(format!("create {}", log_dir.display()), e))?;
        Ok(Self {
            what,
            log_dir: log_dir.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            processes: Mutex::new(Vec::new()),
            launcher: Launcher::new()?,
        })
    }

    /// Starts `program args…` as `name`, logging to `<log_dir>/<name>.log`.
    pub(crate) fn spawn(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        configure: impl FnOnce(&mut Command),
    ) -> Result<()> {
        let log_path = self.log_dir.join(format!("{name}.log"));
        let work_dir = self.work_dir.clone();
        let process = self
            .launcher
            .spawn(name, program, args, &log_path, |command| {
                command.current_dir(work_dir);
                configure(command);
            })?;
        self.lock().push(process);
        Ok(())
    }

    /// Kills every process, last started first.
    pub(crate) fn kill_all(&mut self) {
        let processes = self
            .processes
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        while let Some(mut process) = processes.pop() {
            process.kill();
        }
    }

    /// Kills the process `name` and forgets it, so its absence is no exit
    /// [`ProcessGroup::exited`] reports; false if the group has no such process.
    pub(crate) fn kill(&self, name: &str) -> bool {
        let mut processes = self.lock();
        let Some(at) = processes.iter().position(|p| p.name == name) else {
            return false;
        };
        processes.remove(at).kill();
        true
    }

    /// The process id of `name` (`setpriv` execs the program, so it is the program's).
    pub(crate) fn pid(&self, name: &str) -> Result<u32> {
        self.lock()
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.child.id())
            .ok_or_else(|| Error::Config(format!("{}: no process {name}", self.what)))
    }

    /// Sends `signal` (as `kill` names it: `STOP`, `CONT`) to the process `name`.
    pub(crate) fn signal(&self, name: &str, signal: &str) -> Result<()> {
        let pid = self.pid(name)?;
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .map_err(|e| Error::io(format!("kill -{signal} {name}"), e))?;
        if status.success() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "kill -{signal} {name} ({pid}): {status}"
            )))
        }
    }

    /// `Some(description)` of the first process found to have exited.
    pub(crate) fn exited(&self) -> Option<String> {
        self.lock().iter_mut().find_map(ManagedProcess::exit_status)
    }

    /// A startup error carrying the tail of every log file.
    pub(crate) fn startup_error(&self, message: impl std::fmt::Display) -> Error {
        let logs = self
            .lock()
            .iter()
            .map(|p| {
                format!(
                    "----- {} ({}) -----\n{}",
                    p.name,
                    p.log_path.display(),
                    log_tail(&p.log_path, LOG_TAIL_LINES)
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        Error::Startup {
            message: format!("{}: {message}", self.what),
            logs,
        }
    }

    /// Polls `probe` until it returns `Ok(true)`, failing fast if a process died.
    pub(crate) async fn wait_for<F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<bool, String>>,
    {
        let deadline = Instant::now() + timeout;
        let mut last_error = String::from("none");
        loop {
            if let Some(exited) = self.exited() {
                return Err(self.startup_error(format!("{exited} while waiting for {what}")));
            }
            match tokio::time::timeout(PROBE_TIMEOUT, probe()).await {
                Ok(Ok(true)) => return Ok(()),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = format!("probe timed out after {PROBE_TIMEOUT:?}"),
            }
            if Instant::now() >= deadline {
                return Err(self.startup_error(format!(
                    "timed out after {timeout:?} waiting for {what} (last probe error: {last_error})"
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<ManagedProcess>> {
        self.processes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Runs `future` to completion on a private current-thread runtime in a scoped
/// helper thread, so blocking start-up code works whether or not the caller is
/// inside a runtime (e.g. in a `OnceLock::get_or_init` from a `#[tokio::test]`).
pub(crate) fn block_on<F>(future: F) -> Result<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(future))
                .map_err(|e| Error::io("build Tokio runtime", e))
        });
        match handle.join() {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// `N` distinct free TCP ports on 127.0.0.1. All listeners are held until the last
/// port is picked so the kernel cannot hand out the same port twice.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut listeners = Vec::with_capacity(N);
    let mut ports = [0_u16; N];
    for port in &mut ports {
        let listener =
            TcpListener::bind("127.0.0.1:0").map_err(|e| Error::io("bind 127.0.0.1:0", e))?;
        *port = listener
            .local_addr()
            .map_err(|e| Error::io("read local address", e))?
            .port();
        listeners.push(listener);
    }
    Ok(ports)
}

/// `GET http://<address><path>` answers 200 (a plain HTTP/1.0 exchange: these are health
/// endpoints, a status line is all that matters). A probe for [`ProcessGroup::wait_for`].
pub(crate) async fn http_ok(address: SocketAddr, path: &str) -> Result<bool, String> {
    let status_line = || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&address, HTTP_PROBE_TIMEOUT)?;
        stream.set_read_timeout(Some(HTTP_PROBE_TIMEOUT))?;
        stream.set_write_timeout(Some(HTTP_PROBE_TIMEOUT))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line)
    };
    let line = status_line().map_err(|e| e.to_string())?;
    Ok(line.split_whitespace().nth(1) == Some("200"))
}

/// A running child process of a [`ProcessGroup`].
#[derive(Debug)]
pub(crate) struct ManagedProcess {
    pub name: String,
    child: Child,
    pub log_path: PathBuf,
}

impl ManagedProcess {
    /// `Some(description)` if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited with {status}", self.name)),
            Ok(None) => None,
            Err(e) => Some(format!("cannot query {}: {e}", self.name)),
        }
    }

    /// SIGKILLs the process and reaps it.
    pub(crate) fn kill(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Err(e) = self.child.kill() {
                tracing::warn!(name = %self.name, error = %e, "kill failed");
            }
            let _ = self.child.wait();
        }
    }
}

/// The last `max_lines` lines (at most 64 KiB) of a log file, for error messages.
pub(crate) fn log_tail(path: &Path, max_lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(max_lines)..].join("\n")
        }
        Err(e) => format!("<cannot read {}: {e}>", path.display()),
    }
}
