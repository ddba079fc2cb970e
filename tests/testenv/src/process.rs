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
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use crate::error::{Error, Result};

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
            message: format!("launcher thread is gone, cannot start {name}"),
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

/// A running control-plane component.
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
