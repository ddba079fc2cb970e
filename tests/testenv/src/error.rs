//! The single error type of this crate.

use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong while starting or using the test control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required executable was not found.
    #[error("test asset `{name}` not found (looked in: {searched:?}); {hint}")]
    AssetNotFound {
        /// File name of the executable.
        name: String,
        /// Every location that was checked.
        searched: Vec<PathBuf>,
        /// How to get it.
        hint: &'static str,
    },

    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An `openssl` invocation failed.
    #[error("openssl {step} failed: {stderr}")]
    Openssl {
        /// Which certificate/key was being generated.
        step: String,
        /// Stderr of the failed command.
        stderr: String,
    },

    /// A `git` invocation failed.
    #[error("{command} failed: {stderr}")]
    Git {
        /// The command line.
        command: String,
        /// Its stderr.
        stderr: String,
    },

    /// A process of the control plane, kwok or Argo CD did not become ready, or died.
    /// `logs` holds the tail of every log file of the group it belongs to.
    #[error("startup failed: {message}\n{logs}")]
    Startup {
        /// What went wrong.
        message: String,
        /// Tail of each component's log file.
        logs: String,
    },

    /// Waiting for something took longer than allowed.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was being waited for.
        what: String,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// A user name that has no token in the static token file.
    #[error(
        "unknown test user `{0}` (known users: admin, testmesh-operator, argocd, flux, kwok, alice, bob)"
    )]
    UnknownUser(String),

    /// A request to the API server failed.
    #[error(transparent)]
    Kube(#[from] kube::Error),

    /// Building a `kube::Config`/`kube::Client` failed.
    #[error("invalid client configuration: {0}")]
    Config(String),

    /// A YAML stream could not be parsed.
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_saphyr::Error),

    /// A YAML document is not a valid Kubernetes object (or not the expected kind).
    #[error("invalid manifest: {0}")]
    InvalidManifest(String),

    /// Waiting on a watch failed.
    #[error("wait failed: {0}")]
    Wait(#[from] kube::runtime::wait::Error),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
