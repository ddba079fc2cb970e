//! A stand-in for Flux's kustomize-controller: real `Kustomization` objects (the real CRD
//! from Flux's module), whose status tests write the way the controller does.
//!
//! These helpers are fixtures: they panic with a message when the control plane refuses
//! a request, which fails the test that called them.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::{ControlPlane, install_crds_from_yaml};

static FLUX_CRDS: OnceCell<()> = OnceCell::const_new();

/// The `kustomize.toolkit.fluxcd.io/v1` Kustomization resource.
pub fn kustomization_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    )
}

/// Flux's Kustomization CRD, installed once per test binary.
pub async fn install_crds(client: &Client) {
    FLUX_CRDS
        .get_or_init(|| async {
            let path = ControlPlane::crd_assets_dir().join("flux-kustomization.yaml");
            let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| {
                panic!("read {} (run `make test-assets`): {e}", path.display())
            });
            install_crds_from_yaml(client, &yaml)
                .await
                .expect("install Flux CRD");
        })
        .await;
}

/// The Kustomizations of one fake Flux namespace.
pub struct Flux {
    /// The namespace the Kustomizations live in.
    pub namespace: String,
    /// The Kustomizations of that namespace.
    pub kustomizations: Api<DynamicObject>,
}

impl Flux {
    /// The Kustomizations of `namespace`.
    pub fn new(client: &Client, namespace: &str) -> Flux {
        Flux {
            namespace: namespace.to_owned(),
            kustomizations: Api::namespaced_with(
                client.clone(),
                namespace,
                &kustomization_resource(),
            ),
        }
    }

    /// Creates a Kustomization deploying into `target`, not yet reconciled.
    pub async fn create(&self, name: &str, target: &str) -> DynamicObject {
        let object: DynamicObject =
            serde_json::from_value(kustomization(name, target)).expect("Kustomization JSON");
        self.kustomizations
            .create(&PostParams::default(), &object)
            .await
            .expect("create Kustomization")
    }

    /// Writes `conditions` (and the observed generation and revision) the way
    /// kustomize-controller does, through the status subresource.
    pub async fn set_conditions(&self, name: &str, conditions: Value) {
        let current = self
            .kustomizations
            .get(name)
            .await
            .expect("get Kustomization");
        let patch = json!({
            "status": {
                "observedGeneration": current.metadata.generation,
                "lastAppliedRevision": "main@sha1:4f2c1e9",
                "conditions": conditions,
            }
        });
        self.kustomizations
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("write Kustomization status");
    }

    /// Ready=True for the current generation.
    pub async fn make_ready(&self, name: &str) {
        self.set_conditions(
            name,
            json!([condition(
                "Ready",
                "True",
                "ReconciliationSucceeded",
                "Applied revision: main@sha1:4f2c1e9"
            )]),
        )
        .await;
    }

    /// The Kustomization, if it exists.
    pub async fn get(&self, name: &str) -> Option<DynamicObject> {
        self.kustomizations
            .get_opt(name)
            .await
            .expect("get Kustomization")
    }
}

/// A status condition as kustomize-controller writes it.
pub fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastTransitionTime": "2026-11-24T00:00:00Z"
    })
}

/// A Kustomization as a platform repo would define it.
pub fn kustomization(name: &str, target: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": { "name": name },
        "spec": {
            "interval": "5m",
            "path": format!("./envs/{target}"),
            "prune": true,
            "wait": true,
            "targetNamespace": target,
            "sourceRef": { "kind": "GitRepository", "name": "environments" }
        }
    })
}
