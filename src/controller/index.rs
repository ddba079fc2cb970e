//! Keeps the environments by what other kinds' events name them by — their provider's
//! app, the namespace they deploy into, the baseline namespace they route from, their
//! workspace and context — so that mapping an Application, Service, EndpointSlice or
//! claim event to the environments it concerns is a lookup, not a scan of every
//! environment (10,000 environments made each of those events walk 10,000 objects).
//!
//! The environment informer keeps it up to date with every change its cache takes on,
//! deletions and relists included; what an environment was filed under is remembered, so
//! a changed or deleted one is taken out of exactly the places it was in.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use crate::resources::{Provider, TestEnvironment};

type EnvironmentRef = ObjectRef<TestEnvironment>;

/// The index, shared between the environment informer that keeps it and the informers
/// that look environments up in it.
#[derive(Clone, Default)]
pub struct SharedIndex(Arc<RwLock<EnvironmentIndex>>);

impl SharedIndex {
    pub fn read(&self) -> RwLockReadGuard<'_, EnvironmentIndex> {
        // Every update leaves the index whole, so a panic elsewhere spoils nothing.
        self.0.read().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn write(&self) -> RwLockWriteGuard<'_, EnvironmentIndex> {
        self.0.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Where one environment is filed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Filed {
    app: AppKey,
    namespace: String,
    baseline: Option<String>,
    context: (String, String),
}

/// A provider's app as an environment names it: the namespace is `None` when the
/// environment leaves it to the provider's default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct AppKey {
    provider: Provider,
    namespace: Option<String>,
    name: String,
}

/// The environments by app, by namespace deployed in, by baseline namespace, and by
/// workspace and context.
#[derive(Debug, Default, PartialEq)]
pub struct EnvironmentIndex {
    filed: HashMap<EnvironmentRef, Filed>,
    by_app: HashMap<AppKey, HashSet<EnvironmentRef>>,
    by_namespace: HashMap<String, HashSet<EnvironmentRef>>,
    by_baseline: HashMap<String, HashSet<EnvironmentRef>>,
    by_context: HashMap<(String, String), HashSet<EnvironmentRef>>,
}

impl EnvironmentIndex {
    /// Files `environment` as it is now, in place of what it was filed as before.
    pub fn applied(&mut self, environment: &TestEnvironment) {
        let key = key_of(environment);
        let template = &environment.spec.template;
        let filed = Filed {
            app: AppKey {
                provider: template.provider,
                namespace: template.provider_app_namespace.clone(),
                name: template.provider_app_name.clone(),
            },
            namespace: template.namespace.clone(),
            baseline: template
                .routing
                .as_ref()
                .and_then(|r| r.baseline_namespace.clone()),
            context: (
                environment.namespace().unwrap_or_default(),
                environment.spec.context.clone(),
            ),
        };
        if self.filed.get(&key) == Some(&filed) {
            return;
        }
        self.remove(&key);
        self.by_app
            .entry(filed.app.clone())
            .or_default()
            .insert(key.clone());
        self.by_namespace
            .entry(filed.namespace.clone())
            .or_default()
            .insert(key.clone());
        if let Some(baseline) = &filed.baseline {
            self.by_baseline
                .entry(baseline.clone())
                .or_default()
                .insert(key.clone());
        }
        self.by_context
            .entry(filed.context.clone())
            .or_default()
            .insert(key.clone());
        self.filed.insert(key, filed);
    }

    /// Takes a deleted environment out of the index.
    pub fn deleted(&mut self, environment: &TestEnvironment) {
        self.remove(&key_of(environment));
    }

    fn remove(&mut self, key: &EnvironmentRef) {
        let Some(filed) = self.filed.remove(key) else {
            return;
        };
        unfile(&mut self.by_app, &filed.app, key);
        unfile(&mut self.by_namespace, &filed.namespace, key);
        if let Some(baseline) = &filed.baseline {
            unfile(&mut self.by_baseline, baseline, key);
        }
        unfile(&mut self.by_context, &filed.context, key);
    }

    /// The environments deployed by the app `name` of `provider` in `namespace`, where
    /// `default_namespace` is where an environment that names no namespace looks for it.
    pub fn of_app(
        &self,
        provider: Provider,
        namespace: &str,
        name: &str,
        default_namespace: &str,
    ) -> Vec<EnvironmentRef> {
        let named = |namespace: Option<&str>| AppKey {
            provider,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
        };
        let mut found = refs(&self.by_app, &named(Some(namespace)));
        if namespace == default_namespace {
            found.extend(refs(&self.by_app, &named(None)));
        }
        found
    }

    /// The environments deployed in `namespace`.
    pub fn deployed_in(&self, namespace: &str) -> Vec<EnvironmentRef> {
        refs(&self.by_namespace, namespace)
    }

    /// The environments whose routing reads Services of `namespace`: deployed there, or
    /// using it as their baseline.
    pub fn routing_from(&self, namespace: &str) -> Vec<EnvironmentRef> {
        let mut found = refs(&self.by_namespace, namespace);
        for baseline in refs(&self.by_baseline, namespace) {
            if !found.contains(&baseline) {
                found.push(baseline);
            }
        }
        found
    }

    /// The environments of `context` in `workspace`.
    pub fn of_context(&self, workspace: &str, context: &str) -> Vec<EnvironmentRef> {
        refs(
            &self.by_context,
            &(workspace.to_owned(), context.to_owned()),
        )
    }
}

/// An environment's namespace and name (not its version and UID, which only take room).
fn key_of(environment: &TestEnvironment) -> EnvironmentRef {
    ObjectRef::new(&environment.name_any()).within(&environment.namespace().unwrap_or_default())
}

fn refs<Q, K>(map: &HashMap<K, HashSet<EnvironmentRef>>, key: &Q) -> Vec<EnvironmentRef>
where
    K: std::borrow::Borrow<Q> + Eq + std::hash::Hash,
    Q: Eq + std::hash::Hash + ?Sized,
{
    map.get(key)
        .map(|found| found.iter().cloned().collect())
        .unwrap_or_default()
}

fn unfile<K: Eq + std::hash::Hash>(
    map: &mut HashMap<K, HashSet<EnvironmentRef>>,
    at: &K,
    key: &EnvironmentRef,
) {
    if let Some(filed) = map.get_mut(at) {
        filed.remove(key);
        if filed.is_empty() {
            map.remove(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn environment(name: &str, spec: serde_json::Value) -> TestEnvironment {
        let mut full = json!({
            "context": "pr-1", "provider": "argocd", "providerAppName": format!("{name}-app"),
            "namespace": format!("{name}-ns")
        });
        for (key, value) in spec.as_object().expect("object") {
            full[key] = value.clone();
        }
        let mut environment =
            TestEnvironment::new(name, serde_json::from_value(full).expect("spec"));
        environment.metadata.namespace = Some("ws".into());
        environment
    }

    fn names(mut refs: Vec<EnvironmentRef>) -> Vec<String> {
        refs.sort_by(|a, b| a.name.cmp(&b.name));
        refs.into_iter().map(|r| r.name).collect()
    }

    #[test]
    fn an_app_finds_the_environments_naming_it_in_its_namespace_or_by_default() {
        let mut index = EnvironmentIndex::default();
        index.applied(&environment("a", json!({"providerAppName": "shop"})));
        index.applied(&environment(
            "b",
            json!({"providerAppName": "shop", "providerAppNamespace": "argocd"}),
        ));
        index.applied(&environment(
            "c",
            json!({"providerAppName": "shop", "providerAppNamespace": "elsewhere"}),
        ));
        index.applied(&environment(
            "d",
            json!({"providerAppName": "shop", "provider": "flux"}),
        ));
        let of = |namespace| names(index.of_app(Provider::Argocd, namespace, "shop", "argocd"));
        assert_eq!(of("argocd"), ["a", "b"]);
        assert_eq!(of("elsewhere"), ["c"]);
        assert_eq!(of("nowhere"), Vec::<String>::new());
        assert_eq!(
            names(index.of_app(Provider::Flux, "flux-system", "shop", "flux-system")),
            ["d"]
        );
    }

    #[test]
    fn a_changed_environment_is_found_only_where_it_is_now_and_a_deleted_one_nowhere() {
        let mut index = EnvironmentIndex::default();
        let before = environment(
            "a",
            json!({"namespace": "old", "routing": {"baselineNamespace": "staging"}}),
        );
        index.applied(&before);
        index.applied(&environment("b", json!({"namespace": "staging"})));
        assert_eq!(names(index.routing_from("staging")), ["a", "b"]);
        assert_eq!(names(index.deployed_in("old")), ["a"]);

        let after = environment("a", json!({"namespace": "new", "context": "pr-2"}));
        index.applied(&after);
        assert_eq!(names(index.deployed_in("old")), Vec::<String>::new());
        assert_eq!(names(index.deployed_in("new")), ["a"]);
        assert_eq!(names(index.routing_from("staging")), ["b"]);
        assert_eq!(names(index.of_context("ws", "pr-1")), ["b"]);
        assert_eq!(names(index.of_context("ws", "pr-2")), ["a"]);
        assert_eq!(
            names(index.of_context("other-ws", "pr-2")),
            Vec::<String>::new()
        );

        index.deleted(&after);
        index.deleted(&environment("b", json!({"namespace": "staging"})));
        assert_eq!(index, EnvironmentIndex::default());
    }

    #[test]
    fn an_environment_routing_from_its_own_namespace_is_found_once() {
        let mut index = EnvironmentIndex::default();
        index.applied(&environment(
            "a",
            json!({"namespace": "shared", "routing": {"baselineNamespace": "shared"}}),
        ));
        assert_eq!(names(index.routing_from("shared")), ["a"]);
    }
}
