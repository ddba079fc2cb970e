//! Keeps the environments by what other kinds' events name them by — their provider's
//! app, the namespace they deploy into, the baseline namespace they route from, their
//! workspace and context — so that mapping an Application, Service, EndpointSlice or
//! claim event to the environments it concerns is a lookup, not a scan of every
//! environment (10,000 environments made each of those events walk 10,000 objects).
//!
//! The environment informer keeps it up to date with every change its cache takes on,
//! deletions and relists included; what an environment was filed under is remembered, so
//! a changed or deleted one is taken out of exactly the places it was in.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

use super::context::object_key;
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

/// An environment's `namespace/name`, allocated once and shared by every place it is
/// filed in.
type Key = Arc<str>;

/// Where one environment is filed: the hash of each thing it is found by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Filed {
    app: u64,
    namespace: u64,
    baseline: Option<u64>,
    context: u64,
}

/// The environments by app, by namespace deployed in, by baseline namespace, and by
/// workspace and context.
///
/// Each is a set of (hash of what it is found by, environment), kept small on purpose:
/// with maps of names to sets of references it cost 25 MiB for 10,000 environments, a
/// third of the operator's memory. Two values with the same hash find each other's
/// environments too; that costs a reconciliation that finds nothing to do, never a
/// missed one.
#[derive(Debug, Default)]
pub struct EnvironmentIndex {
    hasher: RandomState,
    filed: HashMap<Key, Filed>,
    by_app: BTreeSet<(u64, Key)>,
    by_namespace: BTreeSet<(u64, Key)>,
    by_baseline: BTreeSet<(u64, Key)>,
    by_context: BTreeSet<(u64, Key)>,
}

impl EnvironmentIndex {
    /// Files `environment` as it is now, in place of what it was filed as before.
    pub fn applied(&mut self, environment: &TestEnvironment) {
        let workspace = environment.namespace().unwrap_or_default();
        let template = &environment.spec.template;
        let filed = Filed {
            app: self.app_hash(
                template.provider,
                template.provider_app_namespace.as_deref(),
                &template.provider_app_name,
            ),
            namespace: self.hasher.hash_one(template.namespace.as_str()),
            baseline: template
                .routing
                .as_ref()
                .and_then(|r| r.baseline_namespace.as_deref())
                .map(|baseline| self.hasher.hash_one(baseline)),
            context: self
                .hasher
                .hash_one((workspace.as_str(), environment.spec.context.as_str())),
        };
        let named = object_key(environment);
        let key = match self.filed.get_key_value(named.as_str()) {
            Some((_, before)) if *before == filed => return,
            Some((key, _)) => key.clone(),
            None => Key::from(named),
        };
        self.remove(&key);
        self.by_app.insert((filed.app, key.clone()));
        self.by_namespace.insert((filed.namespace, key.clone()));
        if let Some(baseline) = filed.baseline {
            self.by_baseline.insert((baseline, key.clone()));
        }
        self.by_context.insert((filed.context, key.clone()));
        self.filed.insert(key, filed);
    }

    /// Takes a deleted environment out of the index.
    pub fn deleted(&mut self, environment: &TestEnvironment) {
        self.remove(&Key::from(object_key(environment)));
    }

    fn remove(&mut self, key: &Key) {
        let Some(filed) = self.filed.remove(key) else {
            return;
        };
        self.by_app.remove(&(filed.app, key.clone()));
        self.by_namespace.remove(&(filed.namespace, key.clone()));
        if let Some(baseline) = filed.baseline {
            self.by_baseline.remove(&(baseline, key.clone()));
        }
        self.by_context.remove(&(filed.context, key.clone()));
    }

    fn app_hash(&self, provider: Provider, namespace: Option<&str>, name: &str) -> u64 {
        self.hasher.hash_one((provider, namespace, name))
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
        let mut found = refs(&self.by_app, self.app_hash(provider, Some(namespace), name));
        if namespace == default_namespace {
            found.extend(refs(&self.by_app, self.app_hash(provider, None, name)));
        }
        found
    }

    /// The environments deployed in `namespace`.
    pub fn deployed_in(&self, namespace: &str) -> Vec<EnvironmentRef> {
        refs(&self.by_namespace, self.hasher.hash_one(namespace))
    }

    /// The environments whose routing reads Services of `namespace`: deployed there, or
    /// using it as their baseline.
    pub fn routing_from(&self, namespace: &str) -> Vec<EnvironmentRef> {
        let hash = self.hasher.hash_one(namespace);
        let mut found = refs(&self.by_namespace, hash);
        for baseline in refs(&self.by_baseline, hash) {
            if !found.contains(&baseline) {
                found.push(baseline);
            }
        }
        found
    }

    /// The environments of `context` in `workspace`: of another workspace, none, even
    /// one whose hash is the same (a claim decides from these).
    pub fn of_context(&self, workspace: &str, context: &str) -> Vec<EnvironmentRef> {
        let mut found = refs(&self.by_context, self.hasher.hash_one((workspace, context)));
        found.retain(|environment| environment.namespace.as_deref() == Some(workspace));
        found
    }
}

/// The environments filed in `set` under `hash`.
fn refs(set: &BTreeSet<(u64, Key)>, hash: u64) -> Vec<EnvironmentRef> {
    set.range((hash, Key::from(""))..)
        .take_while(|(filed_under, _)| *filed_under == hash)
        .filter_map(|(_, key)| {
            let (workspace, name) = key.split_once('/')?;
            Some(ObjectRef::new(name).within(workspace))
        })
        .collect()
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
        assert!(index.filed.is_empty());
        for set in [
            &index.by_app,
            &index.by_namespace,
            &index.by_baseline,
            &index.by_context,
        ] {
            assert!(set.is_empty());
        }
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
