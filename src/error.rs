//! The operator's errors, each with a static category for metrics and events.

/// Why a reconciliation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("the TestEnvironment has no {0}")]
    MissingField(&'static str),
    #[error("cannot serve HTTP on {address}: {source}")]
    Http {
        address: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot connect to Kubernetes: {0}")]
    Connect(#[source] kube::Error),
    #[error("lost the leader Lease; exiting so that only the new leader reconciles")]
    LeadershipLost,
    #[error("cannot read back a cached object: {0}")]
    Unpack(#[from] serde_json::Error),
}

impl Error {
    /// A bounded label for metrics: never object names or free text.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(status)) if status.is_conflict() => "conflict",
            Error::Kube(kube::Error::Api(status)) if status.is_forbidden() => "forbidden",
            Error::Kube(kube::Error::Api(_)) => "api_error",
            Error::Kube(_) => "transport",
            Error::MissingField(_) => "invalid_object",
            Error::Http { .. } => "http",
            Error::Connect(_) => "connect",
            Error::LeadershipLost => "leadership_lost",
            Error::Unpack(_) => "unpack",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
