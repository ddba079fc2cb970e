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
    #[error("{step} failed: {source}")]
    At {
        step: Step,
        #[source]
        source: Box<Error>,
    },
}

/// The step of a reconciliation that failed: reading the world, writing what the
/// decision says to other objects, or writing the object's own status. (Deciding is pure
/// and cannot fail.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Observe,
    Apply,
    Status,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Observe => "observe",
            Step::Apply => "apply",
            Step::Status => "status",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Names the step an error happened in.
pub trait AtStep<T> {
    fn at(self, step: Step) -> Result<T>;
}

impl<T, E: Into<Error>> AtStep<T> for std::result::Result<T, E> {
    fn at(self, step: Step) -> Result<T> {
        self.map_err(|error| Error::At {
            step,
            source: Box::new(error.into()),
        })
    }
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
            Error::At { source, .. } => source.metric_label(),
        }
    }

    /// The step of a reconciliation it failed in, for metrics and logs (`other` when it
    /// is not known).
    pub fn step_label(&self) -> &'static str {
        match self {
            Error::At { step, .. } => step.as_str(),
            _ => "other",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_names_its_step_and_keeps_its_category() {
        let failed: Result<()> = Err(Error::MissingField("metadata.uid"));
        let error = failed.at(Step::Apply).unwrap_err();
        assert_eq!(
            error.to_string(),
            "apply failed: the TestEnvironment has no metadata.uid"
        );
        assert_eq!(
            (error.step_label(), error.metric_label()),
            ("apply", "invalid_object")
        );
        assert_eq!(Error::LeadershipLost.step_label(), "other");
    }
}
