//! What every reconciliation shares: the client, the providers, the operator's settings,
//! the informers' caches and each object's failure count.

use std::sync::{Arc, OnceLock};

use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Client;
use kube::api::DynamicObject;
use kube::runtime::reflector::Store;

use super::backoff::Backoff;
use super::events::Recorder;
use super::index::SharedIndex;
use super::informers::Cache;
use super::packed::PackedStore;
use super::wakeups::Wakeups;
use crate::lifecycle::environment::Timing;
use crate::lifecycle::policy::NamespacePolicy;
use crate::metrics::Metrics;
use crate::providers::Providers;
use crate::resources::{Provider, TestEnvironment, TestEnvironmentClaim};

/// Everything a reconciliation needs besides the object itself.
pub struct Context {
    pub client: Client,
    pub providers: Providers,
    pub policy: NamespacePolicy,
    pub timing: Timing,
    pub retention: Option<SignedDuration>,
    /// DNS domain of routing URLs.
    pub cluster_domain: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// What the informers have seen.
    pub caches: Caches,
    /// Consecutive failures of each object's reconciliation.
    pub backoff: Backoff,
    /// The cached environments by what finds them: a claim's decision looks up its
    /// context's instead of scanning every environment.
    pub environment_index: SharedIndex,
    /// When each environment is next due by the clock.
    pub environment_wakeups: Wakeups<TestEnvironment>,
    /// When each claim is next due by the clock.
    pub claim_wakeups: Wakeups<TestEnvironmentClaim>,
}

/// An object's key in [`Context::backoff`]: its kind, namespace and name.
pub fn backoff_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}", K::kind(&()), object_key(object))
}

/// `namespace/name` (`/name` for an object of no namespace; neither part can hold a
/// `/`): what the packed caches, the environment index and the wake-up schedules file an
/// object under.
pub fn key_of(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

/// [`key_of`] an object.
pub fn object_key<K: kube::Resource>(object: &K) -> String {
    let meta = object.meta();
    key_of(
        meta.namespace.as_deref(),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// A provider's apps (Argo CD Applications or Flux Kustomizations).
pub type AppCache = Cache<PackedStore<DynamicObject>>;

/// The informers' caches: everything a reconciliation normally reads.
#[derive(Clone)]
pub struct Caches {
    pub environments: Cache<Store<TestEnvironment>>,
    pub claims: Cache<Store<TestEnvironmentClaim>>,
    /// Namespaces labelled as TestMesh's (a namespace missing here may still exist).
    pub namespaces: Cache<PackedStore<Namespace>>,
    /// Argo CD Applications and Flux Kustomizations, by provider; each is filled once its
    /// CRD is installed.
    pub apps: Vec<(Provider, Arc<OnceLock<AppCache>>)>,
    /// Every Service of the cluster, reduced to what routing reads: its name, ports and
    /// whether it selects pods.
    pub services: Cache<PackedStore<Service>>,
    /// Every EndpointSlice of the cluster, reduced to its Service and whether each
    /// endpoint is ready: Ready waits for an endpoint behind every URL into the namespace.
    pub endpoint_slices: Cache<PackedStore<EndpointSlice>>,
    /// The ConfigMaps named `testmesh-routing`: the operator's, and anyone else's it must
    /// not write over.
    pub routing_maps: Cache<PackedStore<ConfigMap>>,
}

impl Caches {
    /// Resolves once the environment and claim caches have listed everything: before
    /// that, an environment or claim missing from them proves nothing, and a
    /// reconciliation must not decide from them (a restarted operator would otherwise
    /// fail every claim whose environment it had not listed yet).
    pub async fn synced(&self) {
        futures::join!(self.environments.synced(), self.claims.synced());
    }

    pub fn apps_of(&self, provider: Provider) -> Option<&AppCache> {
        self.apps
            .iter()
            .find(|(p, _)| *p == provider)
            .and_then(|(_, cache)| cache.get())
    }
}
