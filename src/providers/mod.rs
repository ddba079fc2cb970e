//! GitOps providers behind one small trait, so the reconciler never knows which
//! controller deploys an environment: adding a provider means one new adapter here and
//! one entry in [`Providers`], and no change to the reconciler.

pub mod argocd;

use kube::api::DynamicObject;
use kube::core::ApiResource;

use crate::lifecycle::environment::AppReport;
use crate::resources::Provider;

/// One GitOps controller's objects, as TestMesh reads them.
pub trait GitOpsProvider: Send + Sync {
    /// The kind of object that deploys an environment (Argo CD Application, …).
    fn api_resource(&self) -> ApiResource;
    /// Where those objects live when an environment does not say.
    fn default_namespace(&self) -> &str;
    /// Interprets one object for an environment whose namespace is `environment_namespace`.
    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport;
}

/// Argo CD: environments are deployed by an `Application`.
pub struct ArgoCd {
    /// The namespace Applications live in by default (`--argocd-namespace`).
    pub namespace: String,
}

impl GitOpsProvider for ArgoCd {
    fn api_resource(&self) -> ApiResource {
        argocd::api_resource()
    }

    fn default_namespace(&self) -> &str {
        &self.namespace
    }

    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport {
        argocd::interpret(app, environment_namespace)
    }
}

/// The providers this operator serves.
pub struct Providers {
    pub argocd: ArgoCd,
}

impl Providers {
    /// The adapter for `provider`, if this operator serves it.
    pub fn get(&self, provider: Provider) -> Option<&dyn GitOpsProvider> {
        match provider {
            Provider::Argocd => Some(&self.argocd),
            Provider::Flux => None,
        }
    }

    /// Every served provider, for setting up watches.
    pub fn all(&self) -> Vec<(Provider, &dyn GitOpsProvider)> {
        vec![(Provider::Argocd, &self.argocd as &dyn GitOpsProvider)]
    }
}
