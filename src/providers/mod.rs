//! GitOps providers behind one small trait, so the reconciler never knows which
//! controller deploys an environment: adding a provider means one new adapter here and
//! one entry in [`Providers`], and no change to the reconciler.

pub mod argocd;
#[cfg(test)]
mod checks;
pub mod flux;
mod json;

use kube::api::DynamicObject;
use kube::core::ApiResource;

use crate::lifecycle::environment::AppReport;
use crate::lifecycle::observation::AppReader;
use crate::resources::Provider;

/// One GitOps controller's objects, as TestMesh reads ([`AppReader`]) and asks them.
pub trait GitOpsProvider: AppReader + Send + Sync {
    /// The kind of object that deploys an environment (Argo CD Application, …).
    fn api_resource(&self) -> ApiResource;
    /// Where those objects live when an environment does not say.
    fn default_namespace(&self) -> &str;
    /// The merge patch that asks the provider to sync `app` now, as its own tools do, for
    /// a failed attempt its report names ([`AppReport::failed_attempt`]).
    fn sync_request(&self, _app: &DynamicObject) -> Option<serde_json::Value> {
        None
    }

    /// The merge patch that ends the retry backoff of `app`'s failed attempt.
    fn retry_end(&self, _app: &DynamicObject) -> Option<serde_json::Value> {
        None
    }

    /// The objects that generate this provider's apps from TestMesh, if the provider has
    /// any ([`crate::lifecycle::generator`]).
    fn generators(&self) -> Option<Generators> {
        None
    }

    /// What drops the parts [`AppReader::interpret`] never reads before an object is
    /// cached: a provider's status can list every object it deployed.
    fn cache_trim(&self) -> fn(&mut DynamicObject) {
        |_| {}
    }
}

/// Whether an ApplicationSet does something for a workspace.
pub type ForWorkspace = Box<dyn Fn(&DynamicObject, &str) -> bool + Send + Sync>;

/// The kind of object that generates a provider's apps, and which of them generate from
/// TestMesh.
pub struct Generators {
    pub resource: ApiResource,
    pub generates_from_testmesh: Box<dyn Fn(&DynamicObject) -> bool + Send + Sync>,
    /// The merge patch that asks one of them to generate again now, asked at the given
    /// instant.
    pub refresh_request: fn(jiff::Timestamp) -> serde_json::Value,
    /// Whether one of them has a generation asked for that has not ended yet.
    pub refresh_pending: fn(&DynamicObject) -> bool,
    /// Whether one of them generates from TestMesh for the environments of a workspace.
    pub generates_for: ForWorkspace,
}

/// Argo CD: environments are deployed by an `Application`.
pub struct ArgoCd {
    /// The namespace Applications live in by default (`--argocd-namespace`).
    pub namespace: String,
    /// The ConfigMap an ApplicationSet's plugin generator names to generate from
    /// TestMesh (`--generator-config-map`).
    pub generator_config_map: String,
}

impl AppReader for ArgoCd {
    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport {
        argocd::interpret(app, environment_namespace)
    }
}

impl GitOpsProvider for ArgoCd {
    fn api_resource(&self) -> ApiResource {
        argocd::api_resource()
    }

    fn default_namespace(&self) -> &str {
        &self.namespace
    }

    fn cache_trim(&self) -> fn(&mut DynamicObject) {
        argocd::trim_for_cache
    }

    fn sync_request(&self, app: &DynamicObject) -> Option<serde_json::Value> {
        Some(argocd::sync_request(app))
    }

    fn retry_end(&self, app: &DynamicObject) -> Option<serde_json::Value> {
        Some(argocd::retry_end(app))
    }

    fn generators(&self) -> Option<Generators> {
        let config_map = self.generator_config_map.clone();
        let for_config_map = config_map.clone();
        Some(Generators {
            resource: argocd::application_set_resource(),
            generates_from_testmesh: Box::new(move |set| argocd::generates_from(set, &config_map)),
            refresh_request: argocd::application_set_refresh,
            refresh_pending: argocd::refresh_pending,
            generates_for: Box::new(move |set, workspace| {
                argocd::generates_for(set, &for_config_map, workspace)
            }),
        })
    }
}

/// Flux: environments are deployed by a `Kustomization`.
pub struct Flux {
    /// The namespace Kustomizations live in by default (`--flux-namespace`).
    pub namespace: String,
}

impl GitOpsProvider for Flux {
    fn api_resource(&self) -> ApiResource {
        flux::api_resource()
    }

    fn default_namespace(&self) -> &str {
        &self.namespace
    }

    fn cache_trim(&self) -> fn(&mut DynamicObject) {
        flux::trim_for_cache
    }

    fn retry_end(&self, app: &DynamicObject) -> Option<serde_json::Value> {
        Some(flux::retry_end(app))
    }
}

impl AppReader for Flux {
    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport {
        flux::interpret(app, environment_namespace)
    }

    /// kustomize-controller deletes a Kustomization without pruning when it is suspended,
    /// when its `deletionPolicy` is `Orphan`, or when `prune` is off under the default
    /// policy; what it deployed then goes only with the namespace.
    fn teardown_note(&self, app: &DynamicObject) -> Option<String> {
        let spec = &app.data["spec"];
        let policy = spec["deletionPolicy"].as_str().unwrap_or("MirrorPrune");
        let why = if spec["suspend"].as_bool() == Some(true) {
            "it is suspended"
        } else if policy == "Orphan" {
            "its deletionPolicy is Orphan"
        } else if policy == "MirrorPrune" && spec["prune"].as_bool() != Some(true) {
            "spec.prune is off"
        } else {
            return None;
        };
        Some(format!(
            "Kustomization prunes nothing when deleted because {why}; what it deployed is removed with the namespace"
        ))
    }
}

/// Why an app whose target namespace is `target` does not deploy into the environment's
/// namespace, if it does not; `field` names the setting when the app sets none. Such an
/// app is never ready for the environment and never deleted by its teardown.
fn deploys_elsewhere(
    target: Option<&str>,
    field: &str,
    environment_namespace: &str,
) -> Option<String> {
    match target {
        Some(namespace) if namespace == environment_namespace => None,
        Some(namespace) => Some(format!(
            "deploys into namespace {namespace}, not the environment's namespace {environment_namespace}"
        )),
        None => Some(format!(
            "sets no {field}, so it does not deploy into the environment's namespace {environment_namespace}"
        )),
    }
}

/// The providers this operator serves.
pub struct Providers {
    pub argocd: ArgoCd,
    pub flux: Flux,
}

impl Providers {
    /// The adapter for `provider`.
    pub fn get(&self, provider: Provider) -> &dyn GitOpsProvider {
        match provider {
            Provider::Argocd => &self.argocd,
            Provider::Flux => &self.flux,
        }
    }

    /// Every served provider, for setting up watches.
    pub fn all(&self) -> Vec<(Provider, &dyn GitOpsProvider)> {
        vec![
            (Provider::Argocd, &self.argocd as &dyn GitOpsProvider),
            (Provider::Flux, &self.flux as &dyn GitOpsProvider),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kustomization(spec: serde_json::Value) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
            "metadata": {"name": "k", "namespace": "flux-system"}, "spec": spec
        }))
        .unwrap()
    }

    #[test]
    fn flux_says_when_deleting_prunes_nothing() {
        let flux = Flux {
            namespace: "flux-system".into(),
        };
        let note = |spec| flux.teardown_note(&kustomization(spec));
        assert!(
            note(serde_json::json!({"prune": true, "suspend": true}))
                .unwrap()
                .contains("suspended")
        );
        assert!(
            note(serde_json::json!({"prune": true, "deletionPolicy": "Orphan"}))
                .unwrap()
                .contains("Orphan")
        );
        assert!(
            note(serde_json::json!({"prune": false}))
                .unwrap()
                .contains("prune is off")
        );
        assert_eq!(note(serde_json::json!({"prune": true})), None);
        assert_eq!(
            note(serde_json::json!({"prune": false, "deletionPolicy": "Delete"})),
            None
        );
    }

    #[test]
    fn every_provider_is_served() {
        let providers = Providers {
            argocd: ArgoCd {
                namespace: "argocd".into(),
                generator_config_map: "testmesh-generator".into(),
            },
            flux: Flux {
                namespace: "flux-system".into(),
            },
        };
        assert_eq!(
            providers.get(Provider::Flux).default_namespace(),
            "flux-system"
        );
        assert_eq!(providers.all().len(), 2);
    }
}
