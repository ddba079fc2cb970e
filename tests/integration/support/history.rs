//! What an object went through during a test, from a watch started before the change
//! under test: the tests assert on the order of states, not only on the last one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use testmesh::lifecycle::Phase;
use testmesh::resources::TestEnvironment;

use super::{phase_of, ready_of};

/// Every state of one object seen, in order, each with when the watch saw it; a state is
/// recorded when it differs from the one before.
#[derive(Clone, Default)]
pub struct History<T>(Arc<Mutex<Vec<(Instant, T)>>>);

impl<T: Clone + PartialEq + Send + 'static> History<T> {
    /// Records `state` of the object `name` of `api` each time it changes.
    pub fn record<K>(api: &Api<K>, name: &str, state: fn(&K) -> Option<T>) -> History<T>
    where
        K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    {
        let history = History(Arc::new(Mutex::new(Vec::new())));
        let seen = history.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let stream = watcher(api.clone(), config).applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(Ok(object)) = stream.next().await {
                let Some(state) = state(&object) else {
                    continue;
                };
                let mut seen = seen.0.lock().expect("history");
                if seen.last().map(|(_, last)| last) != Some(&state) {
                    seen.push((Instant::now(), state));
                }
            }
        });
        history
    }

    /// The states seen, oldest first.
    pub fn entries(&self) -> Vec<T> {
        self.timed().into_iter().map(|(_, state)| state).collect()
    }

    /// The states seen with when each was seen, oldest first.
    pub fn timed(&self) -> Vec<(Instant, T)> {
        self.0.lock().expect("history").clone()
    }

    /// When a state satisfying `accept` was first seen, waiting for this history's own
    /// watch to deliver it (another watch may have seen it first); fails the test after
    /// `timeout`.
    pub async fn seen(&self, accept: impl Fn(&T) -> bool, timeout: Duration) -> Instant
    where
        T: std::fmt::Debug,
    {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.timed().into_iter().find(|(_, state)| accept(state));
            if let Some((at, _)) = seen {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "not seen within {timeout:?}; seen: {:?}",
                self.entries()
            );
            // Memory, not the cluster: the watch task appends to it.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An environment's (phase, Ready status, Ready reason), for [`History::record`].
pub fn lifecycle(environment: &TestEnvironment) -> Option<(Phase, String, String)> {
    let phase = phase_of(Some(environment))?;
    let (status, reason) = ready_of(environment);
    Some((phase, status, reason))
}

impl History<(Phase, String, String)> {
    /// The environment's phases, each once per stretch.
    pub fn phases(&self) -> Vec<Phase> {
        let mut phases: Vec<Phase> = Vec::new();
        for (phase, _, _) in self.entries() {
            if phases.last() != Some(&phase) {
                phases.push(phase);
            }
        }
        phases
    }
}
