//! Flux for tests, two ways: a stand-in whose Kustomization status the test writes
//! ([`Flux`], for states the real controller reaches only by chance or not quickly), and
//! the real source-controller and kustomize-controller deploying from Git repositories
//! the test writes ([`RealFlux`]), for what only the real thing shows — when it applies,
//! what it writes, what it prunes.
//!
//! Both use Flux's own CRDs, of the releases `make gitops-tools` builds. The stand-in's
//! helpers are fixtures: they panic with a message when the control plane refuses a
//! request, which fails the test that called them.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::error::Result;
use crate::manifests::install_crd_assets;

mod real;

pub use real::RealFlux;

/// The namespace a [`RealFlux`] runs in and takes GitRepositories and Kustomizations
/// from (Flux's own default).
pub const NAMESPACE: &str = "flux-system";
/// Set to a new value (any text; Flux's CLI writes the time), it makes a Flux controller
/// reconcile the object now instead of at its next interval.
pub const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

static FLUX_CRDS: OnceCell<()> = OnceCell::const_new();

/// Flux's CRDs as the Makefile copies them: kustomize-controller's Kustomization and
/// every kind source-controller serves (it watches them all, so all must exist).
const CRD_FILES: [&str; 7] = [
    "flux-kustomization.yaml",
    "flux-source-gitrepositories.yaml",
    "flux-source-ocirepositories.yaml",
    "flux-source-buckets.yaml",
    "flux-source-helmrepositories.yaml",
    "flux-source-helmcharts.yaml",
    "flux-source-externalartifacts.yaml",
];

/// The `kustomize.toolkit.fluxcd.io/v1` Kustomization resource.
pub fn kustomization_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kustomize.toolkit.fluxcd.io", "v1", "Kustomization"),
        "kustomizations",
    )
}

/// The `source.toolkit.fluxcd.io/v1` GitRepository resource.
pub fn git_repository_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("source.toolkit.fluxcd.io", "v1", "GitRepository"),
        "gitrepositories",
    )
}

/// Flux's CRDs (Kustomization and the source kinds), installed once per test binary. A
/// fixture: panics if they cannot be read or installed.
pub async fn install_crds(client: &Client) {
    try_install_crds(client)
        .await
        .unwrap_or_else(|e| panic!("install Flux's CRDs (run `make test-assets`): {e}"));
}

async fn try_install_crds(client: &Client) -> Result<()> {
    FLUX_CRDS
        .get_or_try_init(|| install_crd_assets(client, &CRD_FILES))
        .await
        .map(drop)
}

/// The Kustomizations of one namespace. In one no controller acts on (any but
/// [`NAMESPACE`] once a [`RealFlux`] runs), a test writes their status the way
/// kustomize-controller does.
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

/// A GitRepository in [`NAMESPACE`] following branch [`crate::git::BRANCH`] of `url`
/// (an http(s) URL: [`crate::git::GitHttpServer::url`]), polled every minute.
pub fn git_repository(name: &str, url: &str) -> Value {
    json!({
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "interval": "1m",
            "url": url,
            "ref": { "branch": crate::git::BRANCH },
        },
    })
}

/// A Kustomization in [`NAMESPACE`] applying `path` of the GitRepository `source` into
/// the namespace `target` (which must exist: Flux does not create it), every minute,
/// pruning what leaves Git. Without `spec.wait`: Ready means applied.
pub fn git_kustomization(name: &str, source: &str, path: &str, target: &str) -> Value {
    json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "interval": "1m",
            "path": path,
            "prune": true,
            "targetNamespace": target,
            "sourceRef": { "kind": "GitRepository", "name": source },
        },
    })
}

/// The condition `type_` of a Flux object's status, if it has one.
pub fn condition_of<'a>(object: &'a DynamicObject, type_: &str) -> Option<&'a Value> {
    object.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|condition| condition["type"] == type_)
}

/// `(status, reason)` of the condition `type_`, e.g. `("False", "BuildFailed")`.
pub fn condition_status<'a>(object: &'a DynamicObject, type_: &str) -> Option<(&'a str, &'a str)> {
    let condition = condition_of(object, type_)?;
    Some((
        condition["status"].as_str()?,
        condition["reason"].as_str().unwrap_or_default(),
    ))
}

/// `Ready=True` for the current generation (`status.observedGeneration ==
/// metadata.generation`), as `kubectl wait --for=condition=Ready` and Flux's CLI read it.
pub fn is_ready(object: &DynamicObject) -> bool {
    let current = object.metadata.generation.is_some()
        && object.data["status"]["observedGeneration"].as_i64() == object.metadata.generation;
    current && condition_status(object, "Ready").is_some_and(|(status, _)| status == "True")
}

pub use crate::manifests::wait_object;

/// Asks Flux to reconcile the object `name` of `api` now ([`RECONCILE_REQUEST_ANNOTATION`]),
/// as `flux reconcile` does — e.g. a GitRepository right after a new commit.
pub async fn request_reconcile(api: &Api<DynamicObject>, name: &str) -> Result<()> {
    let requested_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let patch = json!({
        "metadata": { "annotations": { RECONCILE_REQUEST_ANNOTATION: requested_at.to_string() } }
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
