//! Argo CD for tests, two ways: a stand-in whose Application status the test writes
//! ([`ArgoCd`], cheap and fully controlled), and the real controllers syncing from Git
//! repositories the test writes ([`RealArgoCd`]), for what only the real thing shows —
//! when it syncs, what it writes, what it prunes.
//!
//! Both use Argo CD's own CRDs, of the release `make gitops-tools` builds (v3.2.11).

use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use crate::error::Result;
use crate::manifests::{install_crd_assets, wait_object};

mod real;
mod stand_in;

pub use real::RealArgoCd;
pub use stand_in::{ArgoCd, application, healthy_status, progressing_status};

/// The namespace a [`RealArgoCd`] runs in and takes Applications from.
pub const NAMESPACE: &str = "argocd";
/// Argo CD prunes what an Application deployed before the Application goes.
pub const RESOURCES_FINALIZER: &str = "resources-finalizer.argocd.argoproj.io";
/// Set to `normal` (or `hard`), it makes Argo CD compare with Git at once instead of at
/// its next poll (every 120 s); it removes the annotation when done.
pub const REFRESH_ANNOTATION: &str = "argocd.argoproj.io/refresh";

/// The `argoproj.io/v1alpha1` Application resource.
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    )
}

/// The `argoproj.io/v1alpha1` AppProject resource.
pub fn app_project_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject"),
        "appprojects",
    )
}

const CRD_FILES: [&str; 3] = [
    "argocd-application.yaml",
    "argocd-applicationset.yaml",
    "argocd-appproject.yaml",
];

static ARGO_CRDS: OnceCell<()> = OnceCell::const_new();

/// Argo CD's Application, ApplicationSet and AppProject CRDs, installed once per test
/// binary. A fixture: panics if they cannot be read or installed.
pub async fn install_crds(client: &Client) {
    try_install_crds(client)
        .await
        .unwrap_or_else(|e| panic!("install Argo CD's CRDs (run `make test-assets`): {e}"));
}

/// The same CRDs installed into the control plane `client` reaches, whether or not they
/// were before: a real Argo CD may run on a control plane a test started for itself.
pub(crate) async fn install_crds_into(client: &Client) -> Result<()> {
    install_crd_assets(client, &CRD_FILES).await
}

async fn try_install_crds(client: &Client) -> Result<()> {
    ARGO_CRDS
        .get_or_try_init(|| install_crd_assets(client, &CRD_FILES))
        .await
        .map(drop)
}

/// An Application in [`NAMESPACE`] syncing `path` of the Git repository `repo_url`
/// (branch [`crate::git::BRANCH`]) into the namespace `destination` of the cluster Argo
/// CD runs in, automatically, pruning and self-healing. The destination namespace must
/// exist (no `CreateNamespace`).
pub fn git_application(name: &str, repo_url: &str, path: &str, destination: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": repo_url,
                "path": path,
                "targetRevision": crate::git::BRANCH,
            },
            "destination": { "server": "https://kubernetes.default.svc", "namespace": destination },
            "syncPolicy": { "automated": { "prune": true, "selfHeal": true } },
        },
    })
}

/// `app` with [`RESOURCES_FINALIZER`], so deleting it prunes what it deployed first.
pub fn with_resources_finalizer(mut app: Value) -> Value {
    app["metadata"]["finalizers"] = json!([RESOURCES_FINALIZER]);
    app
}

/// `status.sync.status` of an Application (`Synced`, `OutOfSync`, `Unknown`).
pub fn sync_status(app: &DynamicObject) -> Option<&str> {
    app.data["status"]["sync"]["status"].as_str()
}

/// `status.sync.revision`: the commit the Application was last compared with.
pub fn synced_revision(app: &DynamicObject) -> Option<&str> {
    app.data["status"]["sync"]["revision"].as_str()
}

/// `status.health.status` (`Healthy`, `Progressing`, `Degraded`, `Missing`, …).
pub fn health_status(app: &DynamicObject) -> Option<&str> {
    app.data["status"]["health"]["status"].as_str()
}

/// `status.operationState.phase` of the last or running sync (`Running`, `Succeeded`,
/// `Failed`, `Error`).
pub fn operation_phase(app: &DynamicObject) -> Option<&str> {
    app.data["status"]["operationState"]["phase"].as_str()
}

/// Synced at `revision`, Healthy, and the sync operation finished successfully. Argo CD
/// reports Synced while the operation may still be Running, so all three are checked.
pub fn is_synced_and_healthy_at(app: &DynamicObject, revision: &str) -> bool {
    sync_status(app) == Some("Synced")
        && synced_revision(app) == Some(revision)
        && health_status(app) == Some("Healthy")
        && operation_phase(app) == Some("Succeeded")
}

/// Waits until the Application `name` in `apps`' namespace is `Some` and satisfies
/// `accept`, or is gone (`None`) if `accept(None)` says so; returns what was seen last.
pub async fn wait_application(
    apps: &Api<DynamicObject>,
    name: &str,
    timeout: Duration,
    accept: impl Fn(Option<&DynamicObject>) -> bool,
) -> Result<Option<DynamicObject>> {
    wait_object(apps, name, timeout, accept).await
}

/// Asks Argo CD to compare `name` with Git now ([`REFRESH_ANNOTATION`]), e.g. right
/// after a new commit.
pub async fn request_refresh(apps: &Api<DynamicObject>, name: &str) -> Result<()> {
    let patch = json!({ "metadata": { "annotations": { REFRESH_ANNOTATION: "normal" } } });
    apps.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(())
}
