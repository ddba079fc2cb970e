//! Keeps one Service watch per namespace that matters — each live environment's
//! namespace and its baseline — so routing policies follow Services as they appear,
//! change ports or disappear, without watching every Service of the cluster.
//!
//! The set is brought up to date after every environment reconciliation: a namespace no
//! live environment uses any more has its watch stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Service;
use kube::api::Api;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::task::JoinHandle;

use crate::lifecycle::Phase;
use crate::resources::TestEnvironment;

/// The Service watches in force, and where their events go.
pub struct ServiceWatches {
    client: Client,
    environments: Store<TestEnvironment>,
    triggers: mpsc::UnboundedSender<ObjectRef<TestEnvironment>>,
    watched: Mutex<HashMap<String, JoinHandle<()>>>,
}

impl ServiceWatches {
    /// The registry, and the stream of environments to reconcile when a Service changes.
    pub fn new(
        client: Client,
        environments: Store<TestEnvironment>,
    ) -> (
        Arc<ServiceWatches>,
        impl Stream<Item = ObjectRef<TestEnvironment>>,
    ) {
        let (triggers, receiver) = mpsc::unbounded();
        let registry = Arc::new(ServiceWatches {
            client,
            environments,
            triggers,
            watched: Mutex::default(),
        });
        (registry, receiver)
    }

    /// Starts watches for namespaces now in use and stops those no live environment uses.
    /// Returns how many namespaces are watched.
    pub fn sync(&self) -> usize {
        let wanted = namespaces_in_use(&self.environments.state());
        let Ok(mut watched) = self.watched.lock() else {
            return 0;
        };
        watched.retain(|namespace, watch| {
            let keep = wanted.contains(namespace);
            if !keep {
                watch.abort();
            }
            keep
        });
        for namespace in wanted {
            watched
                .entry(namespace)
                .or_insert_with_key(|namespace| self.watch(namespace.clone()));
        }
        watched.len()
    }

    fn watch(&self, namespace: String) -> JoinHandle<()> {
        let services: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
        let environments = self.environments.clone();
        let triggers = self.triggers.clone();
        tokio::spawn(async move {
            let mut events = watcher(services, watcher::Config::default())
                .default_backoff()
                .touched_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(service) = event else { continue };
                let namespace = service.namespace().unwrap_or_default();
                for environment in environments_using(&environments.state(), &namespace) {
                    if triggers.unbounded_send(environment).is_err() {
                        return;
                    }
                }
            }
        })
    }
}

/// The namespaces whose Services decide live environments' routing.
fn namespaces_in_use(environments: &[Arc<TestEnvironment>]) -> BTreeSet<String> {
    environments
        .iter()
        .filter(|env| is_live(env))
        .flat_map(|env| {
            let template = &env.spec.template;
            let baseline = template
                .routing
                .as_ref()
                .and_then(|r| r.baseline_namespace.clone());
            std::iter::once(template.namespace.clone()).chain(baseline)
        })
        .collect()
}

/// The live environments whose routing depends on `namespace`.
fn environments_using(
    environments: &[Arc<TestEnvironment>],
    namespace: &str,
) -> Vec<ObjectRef<TestEnvironment>> {
    environments
        .iter()
        .filter(|env| is_live(env))
        .filter(|env| {
            let template = &env.spec.template;
            template.namespace == namespace
                || template
                    .routing
                    .as_ref()
                    .and_then(|r| r.baseline_namespace.as_deref())
                    == Some(namespace)
        })
        .map(|env| ObjectRef::from_obj(env.as_ref()))
        .collect()
}

fn is_live(environment: &TestEnvironment) -> bool {
    environment
        .status
        .as_ref()
        .and_then(|s| s.phase)
        .is_none_or(|phase| !phase.is_tearing_down() && phase != Phase::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::TestEnvironmentStatus;

    fn environment(
        name: &str,
        namespace: &str,
        baseline: Option<&str>,
        phase: Option<Phase>,
    ) -> Arc<TestEnvironment> {
        let spec = serde_json::from_value(serde_json::json!({
            "context": name, "provider": "argocd", "providerAppName": name, "namespace": namespace,
            "routing": {"baselineNamespace": baseline}
        }))
        .unwrap();
        let mut env = TestEnvironment::new(name, spec);
        env.metadata.namespace = Some("team-a".into());
        env.status = phase.map(|phase| TestEnvironmentStatus {
            phase: Some(phase),
            ..Default::default()
        });
        Arc::new(env)
    }

    #[test]
    fn only_live_environments_namespaces_and_baselines_are_watched() {
        let environments = [
            environment("a", "review-a", Some("staging"), Some(Phase::Warm)),
            environment("b", "review-b", None, None),
            environment("c", "review-c", Some("qa"), Some(Phase::Destroyed)),
            environment("d", "review-d", None, Some(Phase::Failed)),
        ];
        let watched: Vec<String> = namespaces_in_use(&environments).into_iter().collect();
        assert_eq!(watched, ["review-a", "review-b", "staging"]);
    }

    #[test]
    fn a_service_change_reaches_every_environment_that_routes_through_its_namespace() {
        let environments = [
            environment("a", "review-a", Some("staging"), Some(Phase::Warm)),
            environment("b", "review-b", Some("staging"), Some(Phase::Running)),
            environment("c", "review-c", None, Some(Phase::Warm)),
        ];
        let names = |ns: &str| -> Vec<String> {
            environments_using(&environments, ns)
                .into_iter()
                .map(|r| r.name)
                .collect()
        };
        assert_eq!(names("staging"), ["a", "b"]);
        assert_eq!(names("review-c"), ["c"]);
        assert!(names("elsewhere").is_empty());
    }
}
