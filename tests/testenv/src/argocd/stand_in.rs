//! A stand-in for Argo CD's application controller: real `Application` objects (the real
//! CRD from Argo CD's module), whose status tests and benchmarks write the way Argo CD
//! does. Cheaper and fully under the test's control; [`super::RealArgoCd`] is the real
//! thing.
//!
//! These helpers are fixtures: they panic with a message when the control plane refuses
//! a request, which fails the test or benchmark that called them.

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use super::application_resource;

/// The Applications of one fake Argo CD namespace.
pub struct ArgoCd {
    /// The namespace the Applications live in.
    pub namespace: String,
    /// The Applications of that namespace.
    pub apps: Api<DynamicObject>,
}

impl ArgoCd {
    /// The Applications of `namespace`.
    pub fn new(client: &Client, namespace: &str) -> ArgoCd {
        ArgoCd {
            namespace: namespace.to_owned(),
            apps: Api::namespaced_with(client.clone(), namespace, &application_resource()),
        }
    }

    /// Creates an Application deploying into `destination`, not yet reconciled.
    pub async fn create_app(&self, name: &str, destination: &str) -> DynamicObject {
        self.create(application(name, destination)).await
    }

    /// Creates an Application from its JSON.
    pub async fn create(&self, app: Value) -> DynamicObject {
        let app: DynamicObject = serde_json::from_value(app).expect("Application JSON");
        self.apps
            .create(&PostParams::default(), &app)
            .await
            .expect("create Application")
    }

    /// Writes `status` the way Argo CD does: Applications have no status subresource.
    pub async fn set_status(&self, name: &str, status: Value) {
        let patch = json!({ "status": status });
        self.apps
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("write Application status");
    }

    /// Healthy and Synced at the current spec, last sync succeeded.
    pub async fn make_healthy(&self, name: &str) {
        let app = self.apps.get(name).await.expect("get Application");
        self.set_status(name, healthy_status(&app)).await;
    }

    /// The Application, if it exists.
    pub async fn get(&self, name: &str) -> Option<DynamicObject> {
        self.apps.get_opt(name).await.expect("get Application")
    }

    /// Deletes like Argo CD's resources finalizer would: drop finalizers, then the object.
    pub async fn finish_deletion(&self, name: &str) {
        let patch = json!({ "metadata": { "finalizers": null } });
        let _ = self
            .apps
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
    }
}

/// An Application as an App-of-Apps would define it.
pub fn application(name: &str, destination: &str) -> Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": { "name": name },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://git.example.com/org/environments.git",
                "path": format!("envs/{destination}"),
                "targetRevision": "HEAD"
            },
            "destination": { "server": "https://kubernetes.default.svc", "namespace": destination }
        }
    })
}

/// The status Argo CD writes once an Application is synced and healthy.
pub fn healthy_status(app: &DynamicObject) -> Value {
    json!({
        "health": { "status": "Healthy" },
        "sync": {
            "status": "Synced",
            "revision": "4f2c1e9",
            "comparedTo": { "source": app.data["spec"]["source"], "destination": app.data["spec"]["destination"] }
        },
        "operationState": {
            "phase": "Succeeded",
            "message": "successfully synced (all tasks run)",
            "startedAt": "2026-11-24T00:00:00Z",
            "finishedAt": "2026-11-24T00:00:05Z",
            "operation": { "sync": { "revision": "4f2c1e9" } }
        }
    })
}

/// The status while Argo CD is still syncing.
pub fn progressing_status() -> Value {
    json!({
        "health": { "status": "Progressing", "message": "Waiting for rollout to finish" },
        "sync": { "status": "OutOfSync" }
    })
}
