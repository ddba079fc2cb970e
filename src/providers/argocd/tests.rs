//! Table-driven tests of the Argo CD adapter, on Applications shaped like the ones Argo CD
//! v3 writes (`kubectl get application -o json`).

use serde_json::{Value, json};

use super::*;
use crate::providers::checks::{ENVIRONMENT_NAMESPACE, Reported, check_deletion, check_readiness};

const APP: &str = "Argo CD Application argocd/testmesh-pr-123";
const REVISION: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const CHART_REVISION: &str = "1.4.2";

/// An Application, built up like a sentence: `application().healthy().synced()…`.
#[derive(Clone, Debug)]
struct Fixture(Value);

impl Reported for Fixture {
    const APP: &'static str = APP;

    fn json(&self) -> &Value {
        &self.0
    }

    fn interpret(object: &DynamicObject, environment_namespace: &str) -> AppReport {
        interpret(object, environment_namespace)
    }
}

/// A freshly created Application that Argo CD has not looked at yet.
fn application() -> Fixture {
    Fixture(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {
            "name": "testmesh-pr-123",
            "namespace": "argocd",
            "uid": "5f0f9a53-6d5c-4e37-9a3e-0d7c1b2b6a41",
            "resourceVersion": "48213",
            "generation": 4,
            "creationTimestamp": "2026-05-04T09:12:00Z",
            "finalizers": ["resources-finalizer.argocd.argoproj.io"],
        },
        "spec": {
            "project": "default",
            "source": {
                "repoURL": "https://github.com/example/shop.git",
                "path": "deploy/review",
                "targetRevision": "pr-123",
                "helm": { "valueFiles": ["values-review.yaml"] },
            },
            "destination": {
                "server": "https://kubernetes.default.svc",
                "namespace": ENVIRONMENT_NAMESPACE,
            },
            "syncPolicy": {
                "automated": { "prune": true, "selfHeal": true },
                "retry": {
                    "limit": 5,
                    "backoff": { "duration": "5s", "factor": 2, "maxDuration": "3m" },
                },
            },
        },
        "status": {},
    }))
}

/// What Argo CD reports once the environment is up: Healthy, Synced, compared with the
/// current spec, the last sync succeeded.
fn ready() -> Fixture {
    application()
        .compared_to_current()
        .healthy()
        .synced()
        .operation("Succeeded", "successfully synced (all tasks run)", true)
        .resource("Service", "web", "Healthy", "")
        .resource("Deployment", "web", "Healthy", "")
}

/// Argo CD's operation record for an automated sync of `REVISION`.
fn sync_operation() -> Value {
    json!({
        "sync": {
            "revision": REVISION,
            "syncStrategy": { "hook": {} },
        },
        "initiatedBy": { "automated": true },
        "retry": {
            "limit": 5,
            "backoff": { "duration": "5s", "factor": 2, "maxDuration": "3m" },
        },
    })
}

impl Fixture {
    fn status(&mut self) -> &mut Value {
        &mut self.0["status"]
    }

    fn push(slot: &mut Value, item: Value) {
        match slot {
            Value::Array(items) => items.push(item),
            _ => *slot = json!([item]),
        }
    }

    fn health(mut self, status: &str) -> Self {
        self.status()["health"] = json!({
            "status": status,
            "lastTransitionTime": "2026-05-04T09:14:31Z",
        });
        self
    }

    fn healthy(self) -> Self {
        self.health("Healthy")
    }

    /// Argo CD's (deprecated, but still honoured) application health message.
    fn health_message(mut self, message: &str) -> Self {
        self.status()["health"]["message"] = json!(message);
        self
    }

    /// Sets the sync status and the revision(s) compared: one per source.
    fn sync(mut self, status: &str) -> Self {
        let multi_source = self.0["spec"]["sources"].is_array();
        let sync = &mut self.status()["sync"];
        sync["status"] = json!(status);
        if multi_source {
            sync["revisions"] = json!([REVISION, CHART_REVISION]);
        } else {
            sync["revision"] = json!(REVISION);
        }
        self
    }

    fn synced(self) -> Self {
        self.sync("Synced")
    }

    /// Records the current spec as compared, as Argo CD does after a refresh. Spec changes
    /// made afterwards make the status stale.
    fn compared_to_current(mut self) -> Self {
        let spec = self.0["spec"].clone();
        let mut compared_to = json!({ "destination": spec["destination"] });
        for field in ["source", "sources", "ignoreDifferences"] {
            if !spec[field].is_null() {
                compared_to[field] = spec[field].clone();
            }
        }
        self.status()["sync"]["comparedTo"] = compared_to;
        self.status()["reconciledAt"] = json!("2026-05-04T09:14:30Z");
        self
    }

    /// Replaces `status.sync.comparedTo.<field>`.
    fn compared(mut self, field: &str, value: Value) -> Self {
        self.status()["sync"]["comparedTo"][field] = value;
        self
    }

    /// Replaces `spec.<field>`; null removes it.
    fn spec(mut self, field: &str, value: Value) -> Self {
        match (&mut self.0["spec"], value) {
            (Value::Object(spec), Value::Null) => {
                spec.remove(field);
            }
            (spec, value) => spec[field] = value,
        }
        self
    }

    fn destination_namespace(mut self, namespace: Value) -> Self {
        self.0["spec"]["destination"]["namespace"] = namespace;
        self
    }

    /// An app and its Helm chart from two repositories (`spec.sources`).
    fn multi_source(self) -> Self {
        self.spec("source", Value::Null).spec(
            "sources",
            json!([
                {
                    "repoURL": "https://github.com/example/shop.git",
                    "targetRevision": "pr-123",
                    "ref": "values",
                },
                {
                    "repoURL": "https://charts.example.com",
                    "chart": "shop",
                    "targetRevision": CHART_REVISION,
                    "helm": { "valueFiles": ["$values/deploy/review/values.yaml"] },
                },
            ]),
        )
    }

    /// `status.operationState` of the last automated sync.
    fn operation(mut self, phase: &str, message: &str, finished: bool) -> Self {
        let mut state = json!({
            "operation": sync_operation(),
            "phase": phase,
            "message": message,
            "startedAt": "2026-05-04T09:13:02Z",
        });
        if finished {
            state["finishedAt"] = json!("2026-05-04T09:14:29Z");
            state["syncResult"] = json!({
                "revision": REVISION,
                "source": self.0["spec"]["source"],
                "resources": [],
            });
        }
        self.status()["operationState"] = state;
        self
    }

    /// A sync requested (top-level `operation`) that the controller has not completed.
    fn operation_pending(mut self) -> Self {
        self.0["operation"] = sync_operation();
        self
    }

    fn condition(mut self, kind: &str, message: &str) -> Self {
        let condition = json!({
            "type": kind,
            "message": message,
            "lastTransitionTime": "2026-05-04T09:14:30Z",
        });
        Fixture::push(&mut self.status()["conditions"], condition);
        self
    }

    /// A resource in `status.resources`; an empty `message` is left out, as Argo CD does.
    fn resource(mut self, kind: &str, name: &str, health: &str, message: &str) -> Self {
        let mut resource = json!({
            "version": "v1",
            "kind": kind,
            "namespace": ENVIRONMENT_NAMESPACE,
            "name": name,
            "status": "Synced",
            "health": { "status": health },
        });
        if kind == "Deployment" {
            resource["group"] = json!("apps");
        }
        if !message.is_empty() {
            resource["health"]["message"] = json!(message);
        }
        Fixture::push(&mut self.status()["resources"], resource);
        self
    }

    /// Changes the status in ways the other steps do not cover.
    fn map_status(mut self, change: impl FnOnce(&mut Value)) -> Self {
        change(self.status());
        self
    }

    fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-05-04T11:00:00Z");
        self
    }

    fn annotated(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["annotations"][key] = json!(value);
        self
    }

    fn labelled(mut self, key: &str, value: &str) -> Self {
        self.0["metadata"]["labels"][key] = json!(value);
        self
    }

    /// Its template wrote the environment UID `uid`, as TestMesh's generator lists it.
    fn generated_for(mut self, uid: &str) -> Self {
        self.0["metadata"]["annotations"] = json!({"testmesh.io/environment-uid": uid});
        self
    }
    fn owned_by_application_set(mut self, name: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "ApplicationSet",
            "name": name,
            "uid": "0c9d1f0e-3b7a-4a51-8e0f-6f3f2d7f9a10",
            "controller": true,
            "blockOwnerDeletion": true,
        }]);
        self
    }
}

/// An ApplicationSet with `generators`.
fn application_set(generators: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
        "metadata": {"name": "previews", "namespace": "argocd"},
        "spec": {"generators": generators},
    }))
    .unwrap()
}

#[test]
fn an_application_set_generates_from_testmesh_only_through_its_config_map() {
    let set = application_set;
    let plugin = |name: &str| json!({"plugin": {"configMapRef": {"name": name}}});
    let cases = [
        (
            "the plugin, directly",
            json!([plugin("testmesh-generator")]),
            true,
        ),
        ("another plugin", json!([plugin("other")]), false),
        (
            "a list generator",
            json!([{"list": {"elements": []}}]),
            false,
        ),
        (
            "inside a matrix",
            json!([{"matrix": {"generators": [{"list": {"elements": []}}, plugin("testmesh-generator")]}}]),
            true,
        ),
        (
            "inside a merge",
            json!([{"merge": {"generators": [plugin("testmesh-generator")]}}]),
            true,
        ),
        ("no generators", json!(null), false),
    ];
    for (case, generators, expected) in cases {
        assert_eq!(
            generates_from(&set(generators), "testmesh-generator"),
            expected,
            "{case}"
        );
    }
}

#[test]
fn every_refresh_request_changes_the_application_set_and_is_pending_until_it_has_generated() {
    let at = |second| jiff::Timestamp::from_second(second).expect("timestamp");
    let first = application_set_refresh(at(1_800_000_000));
    let second = application_set_refresh(at(1_800_000_001));
    let annotation = "/metadata/annotations/argocd.argoproj.io~1application-set-refresh";
    assert_eq!(
        first.pointer(annotation),
        Some(&json!("2027-01-15T08:00:00Z"))
    );
    // A second request while the first is pending still changes the object, so a
    // generation begun before it cannot remove the annotation unopposed.
    assert_ne!(first.pointer(annotation), second.pointer(annotation));
    let mut refreshed = application_set(json!([]));
    assert!(!refresh_pending(&refreshed));
    refreshed.metadata.annotations = Some(
        [(
            "argocd.argoproj.io/application-set-refresh".to_owned(),
            "2027-01-15T08:00:00Z".to_owned(),
        )]
        .into(),
    );
    assert!(refresh_pending(&refreshed));
}

#[test]
fn api_resource_names_argo_cd_applications() {
    let resource = api_resource();
    assert_eq!(resource.group, "argoproj.io");
    assert_eq!(resource.version, "v1alpha1");
    assert_eq!(resource.api_version, "argoproj.io/v1alpha1");
    assert_eq!(resource.kind, "Application");
    assert_eq!(resource.plural, "applications");
}

#[test]
fn healthy_synced_current_applications_are_ready() {
    check_readiness([
        (
            "the last sync succeeded",
            ready(),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "no operation ever ran (synced by hand long ago, or already in sync)",
            application().compared_to_current().healthy().synced(),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "warnings are ignored",
            ready()
                .condition(
                    "OrphanedResourceWarning",
                    "Application has 1 orphaned resources",
                )
                .condition(
                    "SharedResourceWarning",
                    "ConfigMap/settings is part of applications argocd/testmesh-pr-123 and testmesh-pr-124",
                )
                .condition(
                    "RepeatedResourceWarning",
                    "Resource /Service/review-pr-123/web appeared 2 times among application resources.",
                ),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "multi-source: every source's revision is named",
            application()
                .multi_source()
                .compared_to_current()
                .healthy()
                .synced(),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904, 1.4.2",
        ),
        (
            "no revision recorded",
            ready().map_status(|status| status["sync"]["revision"] = Value::Null),
            Readiness::Ready,
            "Healthy and Synced",
        ),
    ]);
}

#[test]
fn an_application_that_deploys_nothing_is_ready_because_argo_cd_says_healthy_and_synced() {
    let report = application()
        .compared_to_current()
        .healthy()
        .synced()
        .operation("Succeeded", "successfully synced (all tasks run)", true)
        .map_status(|status| status["resources"] = json!([]))
        .report();
    assert_eq!(report.readiness, Readiness::Ready, "{}", report.message);
}

#[test]
fn deletion_in_progress_comes_before_everything() {
    check_readiness([
        (
            "ready",
            ready().deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
        (
            "failed and in the wrong namespace",
            ready()
                .destination_namespace(json!("default"))
                .operation("Failed", "one or more objects failed to apply", true)
                .deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
        (
            "with a deletion error",
            ready()
                .health("Degraded")
                .condition("DeletionError", "failed to delete resources: timeout")
                .deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
    ]);
}

#[test]
fn applications_deploying_elsewhere_fail() {
    check_readiness([
        (
            "another namespace",
            ready().destination_namespace(json!("production")),
            Readiness::Failed,
            "deploys into namespace production, not the environment's namespace review-pr-123",
        ),
        (
            "no destination namespace",
            ready().destination_namespace(Value::Null),
            Readiness::Failed,
            "sets no destination namespace, so it does not deploy into the environment's namespace review-pr-123",
        ),
        (
            "an empty destination namespace",
            ready().destination_namespace(json!("")),
            Readiness::Failed,
            "sets no destination namespace, so it does not deploy into the environment's namespace review-pr-123",
        ),
        (
            "before a failed sync",
            ready()
                .destination_namespace(json!("production"))
                .operation("Failed", "one or more objects failed to apply", true),
            Readiness::Failed,
            "deploys into namespace production, not the environment's namespace review-pr-123",
        ),
    ]);
}

#[test]
fn final_operation_failures_fail() {
    let apply_failed = "one or more objects failed to apply, reason: Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value (retried 5 times).";
    check_readiness([
        (
            "Failed after its retries",
            ready()
                .sync("OutOfSync")
                .operation("Failed", apply_failed, true),
            Readiness::Failed,
            "operation Failed: one or more objects failed to apply, reason: Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value (retried 5 times).",
        ),
        (
            "Error",
            ready().operation(
                "Error",
                "Failed to load application project: AppProject.argoproj.io \"review\" not found",
                true,
            ),
            Readiness::Failed,
            "operation Error: Failed to load application project: AppProject.argoproj.io \"review\" not found",
        ),
        (
            "Failed without a message",
            ready().operation("Failed", "", true),
            Readiness::Failed,
            "operation Failed",
        ),
        (
            "Failed, even though health and sync look fine",
            ready().operation("Failed", "PostSync hook smoke-test failed", true),
            Readiness::Failed,
            "operation Failed: PostSync hook smoke-test failed",
        ),
        (
            "Failed before a failing condition",
            ready()
                .operation("Failed", "one or more objects failed to apply", true)
                .condition(
                    "SyncError",
                    "Failed sync attempt to 4b825dc: one or more objects failed to apply",
                ),
            Readiness::Failed,
            "operation Failed: one or more objects failed to apply",
        ),
        (
            "a new sync is pending: the old failure no longer counts",
            ready()
                .sync("OutOfSync")
                .operation("Failed", "one or more objects failed to apply", true)
                .operation_pending(),
            Readiness::Progressing,
            "sync operation pending (the previous one ended Failed): one or more objects failed to apply",
        ),
    ]);
}

#[test]
fn failing_conditions_fail() {
    check_readiness([
        (
            "InvalidSpecError",
            ready().condition(
                "InvalidSpecError",
                "application destination server 'https://kubernetes.default.svc' and namespace 'review-pr-123' do not match any of the allowed destinations in project 'review'",
            ),
            Readiness::Failed,
            "InvalidSpecError: application destination server 'https://kubernetes.default.svc' and namespace 'review-pr-123' do not match any of the allowed destinations in project 'review'",
        ),
        (
            "ComparisonError",
            ready().sync("Unknown").condition(
                "ComparisonError",
                "Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = Manifest generation error (cached): `helm template` failed",
            ),
            Readiness::Failed,
            "ComparisonError: Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = Manifest generation error (cached): `helm template` failed",
        ),
        (
            "SyncError",
            ready().condition(
                "SyncError",
                "Failed sync attempt to 4b825dc642cb6eb9a060e54bf8d69288fbee4904: one or more synchronization tasks completed unsuccessfully",
            ),
            Readiness::Failed,
            "SyncError: Failed sync attempt to 4b825dc642cb6eb9a060e54bf8d69288fbee4904: one or more synchronization tasks completed unsuccessfully",
        ),
        (
            "several are joined, warnings and other errors left out",
            ready()
                .condition("OrphanedResourceWarning", "Application has 1 orphaned resources")
                .condition("InvalidSpecError", "Unable to generate manifests")
                .condition("UnknownError", "cluster cache is not synced")
                .condition("ComparisonError", "rpc error: code = Unavailable"),
            Readiness::Failed,
            "InvalidSpecError: Unable to generate manifests; ComparisonError: rpc error: code = Unavailable",
        ),
        (
            "without a message",
            ready().condition("SyncError", ""),
            Readiness::Failed,
            "SyncError",
        ),
        (
            "before degraded health",
            ready()
                .health("Degraded")
                .condition("SyncError", "one or more objects failed to apply"),
            Readiness::Failed,
            "SyncError: one or more objects failed to apply",
        ),
    ]);
}

#[test]
fn degraded_health_is_degraded() {
    let progress_deadline = "Deployment \"web\" exceeded its progress deadline";
    check_readiness([
        (
            "named by the resources that are degraded",
            ready().health("Degraded").resource(
                "Deployment",
                "worker",
                "Degraded",
                progress_deadline,
            ),
            Readiness::Degraded,
            "health Degraded: Deployment review-pr-123/worker: Deployment \"web\" exceeded its progress deadline",
        ),
        (
            "Argo CD's application health message first",
            ready()
                .health("Degraded")
                .health_message("Back-off pulling image")
                .resource("Deployment", "worker", "Degraded", progress_deadline),
            Readiness::Degraded,
            "health Degraded: Back-off pulling image",
        ),
        (
            "at most three resources named",
            ready()
                .health("Degraded")
                .resource("Deployment", "a", "Degraded", "")
                .resource("Deployment", "b", "Degraded", "")
                .resource("Deployment", "c", "Degraded", "")
                .resource("Deployment", "d", "Degraded", "")
                .resource("Deployment", "e", "Degraded", ""),
            Readiness::Degraded,
            "health Degraded: Deployment review-pr-123/a; Deployment review-pr-123/b; Deployment review-pr-123/c; and 2 more",
        ),
        (
            "no detail",
            ready().health("Degraded"),
            Readiness::Degraded,
            "health Degraded",
        ),
        (
            "even while out of sync, syncing and stale",
            ready()
                .health("Degraded")
                .sync("OutOfSync")
                .operation(
                    "Running",
                    "waiting for healthy state of apps/Deployment/web",
                    false,
                )
                .operation_pending()
                .spec(
                    "destination",
                    json!({
                        "name": "in-cluster",
                        "namespace": ENVIRONMENT_NAMESPACE,
                    }),
                ),
            Readiness::Degraded,
            "health Degraded",
        ),
    ]);
}

#[test]
fn other_error_conditions_hold_readiness_back() {
    check_readiness([
        (
            "DeletionError",
            ready().condition(
                "DeletionError",
                "failed to delete ConfigMap settings: forbidden",
            ),
            Readiness::Progressing,
            "DeletionError: failed to delete ConfigMap settings: forbidden",
        ),
        (
            "UnknownError",
            ready().condition("UnknownError", "cluster cache is not synced"),
            Readiness::Progressing,
            "UnknownError: cluster cache is not synced",
        ),
        (
            "a future error type",
            ready().condition("HydrationError", "failed to hydrate manifests"),
            Readiness::Progressing,
            "HydrationError: failed to hydrate manifests",
        ),
        (
            "several",
            ready()
                .condition("DeletionError", "forbidden")
                .condition("ExcludedResourceWarning", "Resource /Event excluded")
                .condition("UnknownError", "cluster cache is not synced"),
            Readiness::Progressing,
            "DeletionError: forbidden; UnknownError: cluster cache is not synced",
        ),
    ]);
}

#[test]
fn unfinished_operations_hold_readiness_back() {
    check_readiness([
        (
            "a sync is pending",
            application()
                .compared_to_current()
                .healthy()
                .sync("OutOfSync")
                .operation_pending(),
            Readiness::Progressing,
            "sync operation pending",
        ),
        (
            "a sync is pending after a successful one",
            ready().operation_pending(),
            Readiness::Progressing,
            "sync operation pending",
        ),
        (
            "a sync is running",
            ready()
                .operation("Running", "waiting for healthy state of apps/Deployment/web", false)
                .operation_pending(),
            Readiness::Progressing,
            "operation Running: waiting for healthy state of apps/Deployment/web",
        ),
        (
            "a failed attempt waits out its retry backoff",
            ready()
                .sync("OutOfSync")
                .operation(
                    "Running",
                    "one or more objects failed to apply, reason: admission webhook denied the request. Retrying attempt #2 at 9:15AM.",
                    true,
                )
                .operation_pending(),
            Readiness::Progressing,
            "operation Running (retrying after: one or more objects failed to apply, reason: admission webhook denied the request. Retrying attempt #2 at 9:15AM.)",
        ),
        (
            "a retry without a message",
            ready().operation("Running", "", true),
            Readiness::Progressing,
            "operation Running (retrying after: a failed attempt)",
        ),
        (
            "a sync is terminating",
            ready().operation("Terminating", "operation is terminating due to timeout", false),
            Readiness::Progressing,
            "operation Terminating: operation is terminating due to timeout",
        ),
        (
            "a success without a finish time",
            ready().operation("Succeeded", "", false),
            Readiness::Progressing,
            "operation Succeeded",
        ),
        (
            "an operation without a phase",
            ready().operation("", "", false),
            Readiness::Progressing,
            "operation in an unknown phase",
        ),
    ]);
}

#[test]
fn stale_status_holds_readiness_back() {
    check_readiness([
        (
            "never compared",
            application(),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.source differs from status.sync.comparedTo)",
        ),
        (
            "never compared, though health is reported",
            application().healthy().synced(),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.source differs from status.sync.comparedTo)",
        ),
        (
            "source changed",
            ready().spec(
                "source",
                json!({
                    "repoURL": "https://github.com/example/shop.git",
                    "path": "deploy/review",
                    "targetRevision": "pr-123-rebased",
                    "helm": { "valueFiles": ["values-review.yaml"] },
                }),
            ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.source differs from status.sync.comparedTo)",
        ),
        (
            "Helm values changed",
            ready().spec(
                "source",
                json!({
                    "repoURL": "https://github.com/example/shop.git",
                    "path": "deploy/review",
                    "targetRevision": "pr-123",
                    "helm": { "valueFiles": ["values-review.yaml", "values-debug.yaml"] },
                }),
            ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.source differs from status.sync.comparedTo)",
        ),
        (
            "destination changed",
            ready().spec(
                "destination",
                json!({
                    "name": "in-cluster",
                    "namespace": ENVIRONMENT_NAMESPACE,
                }),
            ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.destination differs from status.sync.comparedTo)",
        ),
        (
            "ignoreDifferences changed",
            ready().spec(
                "ignoreDifferences",
                json!([{
                    "group": "apps",
                    "kind": "Deployment",
                    "jsonPointers": ["/spec/replicas"],
                }]),
            ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.ignoreDifferences differs from status.sync.comparedTo)",
        ),
        (
            "one of several sources changed",
            application()
                .multi_source()
                .compared_to_current()
                .healthy()
                .synced()
                .spec(
                    "sources",
                    json!([
                        {
                            "repoURL": "https://github.com/example/shop.git",
                            "targetRevision": "pr-123",
                            "ref": "values",
                        },
                        {
                            "repoURL": "https://charts.example.com",
                            "chart": "shop",
                            "targetRevision": "1.5.0",
                            "helm": { "valueFiles": ["$values/deploy/review/values.yaml"] },
                        },
                    ]),
                ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.sources differs from status.sync.comparedTo)",
        ),
        (
            "switched from one source to several",
            ready().multi_source(),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.sources differs from status.sync.comparedTo)",
        ),
        (
            "source hydrator: the sync branch changed",
            hydrated().compared(
                "source",
                json!({
                    "repoURL": "https://github.com/example/shop.git",
                    "path": "review/pr-123",
                    "targetRevision": "environments/review",
                }),
            ),
            Readiness::Progressing,
            "status not yet compared with the current spec (spec.sourceHydrator differs from status.sync.comparedTo)",
        ),
    ]);
}

/// An Application rendered by the source hydrator; `comparedTo.source` records the sync source.
fn hydrated() -> Fixture {
    ready()
        .spec("source", Value::Null)
        .spec(
            "sourceHydrator",
            json!({
                "drySource": {
                    "repoURL": "https://github.com/example/shop.git",
                    "path": "deploy/review",
                    "targetRevision": "pr-123",
                },
                "syncSource": {
                    "targetBranch": "environments/review-hydrated",
                    "path": "review/pr-123",
                },
            }),
        )
        .compared(
            "source",
            json!({
                "repoURL": "https://github.com/example/shop.git",
                "path": "review/pr-123",
                "targetRevision": "environments/review-hydrated",
            }),
        )
}

#[test]
fn comparison_ignores_fields_left_empty_on_one_side() {
    let spec_with_empty_fields = json!({
        "repoURL": "https://github.com/example/shop.git",
        "path": "deploy/review",
        "targetRevision": "pr-123",
        "chart": "",
        "helm": {
            "valueFiles": ["values-review.yaml"],
            "parameters": [],
            "skipCrds": false,
            "values": "",
        },
        "directory": { "recurse": false, "jsonnet": {} },
        "kustomize": null,
    });
    check_readiness([
        (
            "empty, false and null spec fields, absent from comparedTo",
            ready()
                .spec("source", spec_with_empty_fields.clone())
                .compared(
                    "source",
                    json!({
                        "repoURL": "https://github.com/example/shop.git",
                        "path": "deploy/review",
                        "targetRevision": "pr-123",
                        "helm": { "valueFiles": ["values-review.yaml"] },
                    }),
                ),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "empty structs Argo CD writes into comparedTo, absent from the spec",
            ready()
                .compared(
                    "source",
                    json!({
                        "repoURL": "https://github.com/example/shop.git",
                        "path": "deploy/review",
                        "targetRevision": "pr-123",
                        "helm": { "valueFiles": ["values-review.yaml"] },
                        "directory": { "jsonnet": {} },
                    }),
                )
                .compared(
                    "destination",
                    json!({
                        "server": "https://kubernetes.default.svc",
                        "namespace": ENVIRONMENT_NAMESPACE,
                        "name": "",
                    }),
                ),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "an empty ignoreDifferences in the spec only",
            ready().spec("ignoreDifferences", json!([])),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
        (
            "source hydrator: the sync source takes the dry source's repository",
            hydrated(),
            Readiness::Ready,
            "Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904",
        ),
    ]);
}

#[test]
fn dropping_zero_values_keeps_array_positions_and_real_values() {
    assert_eq!(
        without_zero_values(&json!({
            "a": "",
            "b": [],
            "c": {},
            "d": null,
            "e": false,
            "f": 0,
            "g": { "h": { "i": "" } },
        })),
        None
    );
    assert_eq!(
        without_zero_values(&json!({
            "items": ["", "x", {}],
            "enabled": true,
            "replicas": 2,
            "ratio": 0.5,
        })),
        Some(json!({
            "items": [null, "x", null],
            "enabled": true,
            "replicas": 2,
            "ratio": 0.5,
        }))
    );
    assert!(!semantically_equal(
        Some(&json!(["", "x"])),
        Some(&json!(["x", ""]))
    ));
    assert!(semantically_equal(Some(&json!({ "a": [] })), None));
}

#[test]
fn unmet_health_and_sync_hold_readiness_back() {
    let rollout = "Waiting for rollout to finish: 1 of 2 updated replicas are available...";
    check_readiness([
        (
            "health Progressing, named by the resources that are progressing",
            ready()
                .health("Progressing")
                .resource("Deployment", "worker", "Progressing", rollout),
            Readiness::Progressing,
            "health Progressing: Deployment review-pr-123/worker: Waiting for rollout to finish: 1 of 2 updated replicas are available...",
        ),
        (
            "health Suspended",
            ready().health("Suspended"),
            Readiness::Progressing,
            "health Suspended",
        ),
        (
            "health Missing and out of sync, both named",
            ready().health("Missing").sync("OutOfSync").resource(
                "Deployment",
                "worker",
                "Missing",
                "",
            ),
            Readiness::Progressing,
            "health Missing: Deployment review-pr-123/worker, sync OutOfSync",
        ),
        (
            "health Unknown",
            ready().health("Unknown"),
            Readiness::Progressing,
            "health Unknown",
        ),
        (
            "sync OutOfSync",
            ready().sync("OutOfSync"),
            Readiness::Progressing,
            "sync OutOfSync",
        ),
        (
            "sync Unknown",
            ready().sync("Unknown"),
            Readiness::Progressing,
            "sync Unknown",
        ),
        (
            "compared, but neither health nor sync reported",
            ready().map_status(|status| {
                status["health"] = Value::Null;
                status["sync"]["status"] = Value::Null;
            }),
            Readiness::Progressing,
            "no health reported yet, no sync status reported yet",
        ),
        (
            "a cluster-scoped resource is named without a namespace",
            ready().health("Progressing").map_status(|status| {
                status["resources"] = json!([{
                    "group": "apiextensions.k8s.io",
                    "version": "v1",
                    "kind": "CustomResourceDefinition",
                    "name": "widgets.example.com",
                    "status": "Synced",
                    "health": { "status": "Progressing", "message": "not yet established" },
                }]);
            }),
            Readiness::Progressing,
            "health Progressing: CustomResourceDefinition widgets.example.com: not yet established",
        ),
    ]);
}

#[test]
fn health_sync_and_revision_are_reported_in_argo_cd_words() {
    for health in [
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
        "Missing",
        "Unknown",
    ] {
        let report = ready().health(health).report();
        assert_eq!(report.health, health);
    }
    for sync in ["Synced", "OutOfSync", "Unknown"] {
        let report = ready().sync(sync).report();
        assert_eq!(report.sync.as_deref(), Some(sync));
    }

    let unobserved = application().report();
    assert_eq!(unobserved.health, "Unknown");
    assert_eq!(unobserved.sync, None);
    assert_eq!(unobserved.revision, None);

    assert_eq!(ready().report().revision.as_deref(), Some(REVISION));
    let multi_source = application().multi_source().synced().report();
    assert_eq!(
        multi_source.revision.as_deref(),
        Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904, 1.4.2")
    );
}

#[test]
fn deletion_decision() {
    let foreign =
        "deploys into namespace production, not the environment's namespace review-pr-123";
    check_deletion([
        ("ready", ready(), AppDeletion::Deletable),
        ("never synced", application(), AppDeletion::Deletable),
        (
            "failed, degraded or stale does not matter",
            ready()
                .health("Degraded")
                .operation("Failed", "one or more objects failed to apply", true)
                .condition("ComparisonError", "rpc error"),
            AppDeletion::Deletable,
        ),
        ("being deleted", ready().deleting(), AppDeletion::InProgress),
        (
            "being deleted, though an ApplicationSet owns it",
            ready()
                .owned_by_application_set("testmesh-pull-requests")
                .deleting(),
            AppDeletion::InProgress,
        ),
        (
            "owned by an ApplicationSet",
            ready().owned_by_application_set("testmesh-pull-requests"),
            AppDeletion::Retained(
                "owned by ApplicationSet testmesh-pull-requests, which would re-create it (an ApplicationSet that generates from TestMesh and writes testmesh.io/environment-uid deletes it at teardown)".into(),
            ),
        ),
        (
            "generated by an ApplicationSet from TestMesh: its ApplicationSet deletes it",
            ready()
                .owned_by_application_set("testmesh-pull-requests")
                .generated_for("uid-1"),
            AppDeletion::Generated {
                application_set: "testmesh-pull-requests".into(),
                environment_uid: "uid-1".into(),
            },
        ),
        (
            "a UID annotation without an ApplicationSet proves nothing",
            ready().generated_for("uid-1").destination_namespace(json!("production")),
            AppDeletion::Retained(
                "deploys into namespace production, not the environment's namespace review-pr-123".into(),
            ),
        ),
        (
            "owned by an ApplicationSet and deploying elsewhere: the owner is named",
            ready()
                .owned_by_application_set("testmesh-pull-requests")
                .destination_namespace(json!("production")),
            AppDeletion::Retained(
                "owned by ApplicationSet testmesh-pull-requests, which would re-create it (an ApplicationSet that generates from TestMesh and writes testmesh.io/environment-uid deletes it at teardown)".into(),
            ),
        ),
        (
            "deploying into another namespace",
            ready().destination_namespace(json!("production")),
            AppDeletion::Retained(foreign.into()),
        ),
        (
            "rendered by a parent Application (annotation tracking)",
            ready().annotated(
                "argocd.argoproj.io/tracking-id",
                "testmesh-environments:argoproj.io/Application:argocd/testmesh-pr-123",
            ),
            AppDeletion::Retained(APP_OF_APPS.into()),
        ),
        (
            "rendered by a parent Application (label tracking)",
            ready().labelled("app.kubernetes.io/instance", "testmesh-environments"),
            AppDeletion::Retained(APP_OF_APPS.into()),
        ),
        (
            "deploying into no namespace",
            ready().destination_namespace(Value::Null),
            AppDeletion::Retained(
                "sets no destination namespace, so it does not deploy into the environment's namespace review-pr-123".into(),
            ),
        ),
    ]);
}

const APP_OF_APPS: &str = "deployed by Argo CD Application testmesh-environments (App-of-Apps), which would re-create it; remove it from that Application's source to have it pruned";

#[test]
fn an_owner_that_is_not_an_application_set_does_not_retain_it() {
    let mut app = ready();
    app.0["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "name": "pr-123",
        "uid": "7d3c5c1e-2f55-4d0b-9a54-52b6f0a7c0e2",
    }]);
    assert_eq!(app.report().deletion, AppDeletion::Deletable);
}

#[test]
fn messages_name_the_application_without_a_namespace_when_it_has_none() {
    let mut app = ready();
    app.0["metadata"]["namespace"] = Value::Null;
    assert_eq!(
        app.report().message,
        "Argo CD Application testmesh-pr-123: Healthy and Synced at 4b825dc642cb6eb9a060e54bf8d69288fbee4904"
    );
}

#[test]
fn the_cached_copy_keeps_what_interpretation_reads() {
    let mut app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "a", "namespace": "argocd"},
        "spec": {"destination": {"namespace": "review"}},
        "status": {
            "health": {"status": "Degraded"},
            "sync": {"status": "Synced", "revision": "abc"},
            "history": [{"revision": "abc"}],
            "summary": {"images": ["x"]},
            "operationState": {"phase": "Succeeded", "syncResult": {"resources": [{"name": "x"}]}},
            "resources": [
                {"kind": "Deployment", "name": "api", "health": {"status": "Degraded"}},
                {"kind": "Service", "name": "api", "health": {"status": "Healthy"}},
                {"kind": "ConfigMap", "name": "settings"}
            ]
        }
    }))
    .expect("app");
    let before = interpret(&app, "review");
    trim_for_cache(&mut app);
    assert_eq!(interpret(&app, "review"), before);
    let status = &app.data["status"];
    assert!(status.get("history").is_none() && status.get("summary").is_none());
    assert!(status["operationState"].get("syncResult").is_none());
    assert_eq!(status["operationState"]["phase"], "Succeeded");
    let kept: Vec<&str> = status["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    assert_eq!(kept, ["Deployment", "ConfigMap"]);
}

/// What Argo CD 3.2 writes when an automated sync could not apply into a namespace that
/// does not exist (seen against the real controller).
const NAMESPACE_NOT_FOUND: &str =
    "one or more objects failed to apply, reason: namespaces \"review-pr-123\" not found";

#[test]
fn a_failed_attempt_is_reported_with_its_start_and_cause() {
    let started = "2026-05-04T09:13:02Z".parse().ok();
    for (case, fixture, attempt) in [
        (
            "gave up because the namespace was missing",
            application()
                .compared_to_current()
                .operation("Failed", NAMESPACE_NOT_FOUND, true),
            Some(FailedAttempt {
                started_at: started,
                backing_off: false,
                namespace_missing: true,
            }),
        ),
        (
            "backing off because the namespace was missing (the operation stays requested)",
            application()
                .compared_to_current()
                .operation(
                    "Running",
                    &format!("{NAMESPACE_NOT_FOUND}. Retrying attempt #2 at 9:14AM."),
                    true,
                )
                .operation_pending(),
            Some(FailedAttempt {
                started_at: started,
                backing_off: true,
                namespace_missing: true,
            }),
        ),
        (
            "gave up for another reason",
            application().compared_to_current().operation(
                "Error",
                "rpc error: repository not found",
                true,
            ),
            Some(FailedAttempt {
                started_at: started,
                backing_off: false,
                namespace_missing: false,
            }),
        ),
        (
            "another namespace missing is not the environment's",
            application().compared_to_current().operation(
                "Failed",
                "one or more objects failed to apply, reason: namespaces \"staging\" not found",
                true,
            ),
            Some(FailedAttempt {
                started_at: started,
                backing_off: false,
                namespace_missing: false,
            }),
        ),
        (
            "a new sync is pending: nothing to ask for",
            application()
                .compared_to_current()
                .operation("Failed", NAMESPACE_NOT_FOUND, true)
                .operation_pending(),
            None,
        ),
        (
            "running",
            application()
                .compared_to_current()
                .operation("Running", "", false),
            None,
        ),
        ("succeeded", ready(), None),
        ("never synced", application(), None),
        (
            "being deleted",
            application()
                .operation("Failed", NAMESPACE_NOT_FOUND, true)
                .deleting(),
            None,
        ),
    ] {
        assert_eq!(fixture.report().failed_attempt, attempt, "{case}");
    }
}

#[test]
fn a_sync_error_about_an_earlier_attempt_does_not_fail_the_new_one() {
    let last_attempt_failed =
        "Failed last sync attempt to [4b825dc]: one or more objects failed to apply";
    check_readiness([
        (
            "no new attempt: the error stands",
            application()
                .compared_to_current()
                .health("Missing")
                .sync("OutOfSync")
                .condition("SyncError", last_attempt_failed),
            Readiness::Failed,
            "SyncError: Failed last sync attempt to [4b825dc]: one or more objects failed to apply",
        ),
        (
            "a new sync requested",
            application()
                .compared_to_current()
                .health("Missing")
                .sync("OutOfSync")
                .operation("Failed", NAMESPACE_NOT_FOUND, true)
                .condition("SyncError", last_attempt_failed)
                .operation_pending(),
            Readiness::Progressing,
            "SyncError: Failed last sync attempt to [4b825dc]: one or more objects failed to apply",
        ),
        (
            "a new sync running",
            application()
                .compared_to_current()
                .health("Missing")
                .sync("OutOfSync")
                .operation("Running", "", false)
                .condition("SyncError", last_attempt_failed),
            Readiness::Progressing,
            "SyncError: Failed last sync attempt to [4b825dc]: one or more objects failed to apply",
        ),
        (
            "the new sync already succeeded: the error waits for Argo CD's next refresh",
            application()
                .compared_to_current()
                .healthy()
                .synced()
                .operation("Succeeded", "successfully synced (all tasks run)", true)
                .condition("SyncError", last_attempt_failed),
            Readiness::Progressing,
            "SyncError: Failed last sync attempt to [4b825dc]: one or more objects failed to apply",
        ),
        (
            "a comparison error is never superseded",
            application()
                .compared_to_current()
                .operation("Running", "", false)
                .condition("ComparisonError", "rpc error: path does not exist"),
            Readiness::Failed,
            "ComparisonError: rpc error: path does not exist",
        ),
    ]);
}

#[test]
fn an_application_that_creates_its_namespace_says_so() {
    let creating = application().spec(
        "syncPolicy",
        json!({"automated": {}, "syncOptions": ["ServerSideApply=true", "CreateNamespace=true"]}),
    );
    assert!(creating.report().creates_namespace);
    assert!(!application().report().creates_namespace);
    let not_creating = application().spec(
        "syncPolicy",
        json!({"syncOptions": ["CreateNamespace=false"]}),
    );
    assert!(!not_creating.report().creates_namespace);
}

fn object(fixture: &Fixture) -> DynamicObject {
    serde_json::from_value(fixture.0.clone()).unwrap()
}

#[test]
fn a_sync_request_is_the_operation_argo_cd_syncs_by() {
    let app = application().spec(
        "syncPolicy",
        json!({
            "automated": {"prune": true},
            "syncOptions": ["ServerSideApply=true"],
            "retry": {"limit": 2},
        }),
    );
    assert_eq!(
        sync_request(&object(&app)),
        json!({
            "metadata": {"resourceVersion": "48213"},
            "operation": {
                "sync": {
                    "source": app.0["spec"]["source"],
                    "prune": true,
                    "syncOptions": ["ServerSideApply=true"],
                },
                "initiatedBy": {"username": "testmesh"},
                "retry": {"limit": 2},
            },
        })
    );
    let plain = application().spec("syncPolicy", json!({"automated": {"prune": false}}));
    assert_eq!(
        sync_request(&object(&plain))["operation"],
        json!({
            "sync": {"source": plain.0["spec"]["source"]},
            "initiatedBy": {"username": "testmesh"},
            "retry": {"limit": 5},
        }),
        "Argo CD's default retry; no prune unless the app prunes"
    );
    let multi = application().multi_source();
    let request = sync_request(&object(&multi));
    assert_eq!(
        request["operation"]["sync"]["sources"],
        multi.0["spec"]["sources"]
    );
    assert!(request["operation"]["sync"].get("source").is_none());
}

#[test]
fn ending_a_retry_is_what_terminate_op_writes() {
    assert_eq!(
        retry_end(&object(&application())),
        json!({
            "metadata": {"resourceVersion": "48213"},
            "status": {"operationState": {"phase": "Terminating"}},
        })
    );
}

#[test]
fn an_application_set_generates_for_a_workspace_through_testmesh_s_plugin_input_anywhere() {
    let set = application_set;
    let asking = |config_map: &str, workspace: &str| {
        json!({"plugin": {
            "configMapRef": {"name": config_map},
            "input": {"parameters": {"workspace": workspace}},
        }})
    };
    let cases = [
        (
            "asks for it",
            json!([asking("testmesh-generator", "team-a")]),
            true,
        ),
        (
            "asks for another",
            json!([asking("testmesh-generator", "team-b")]),
            false,
        ),
        (
            "inside a matrix",
            json!([{"matrix": {"generators": [{"list": {"elements": []}}, asking("testmesh-generator", "team-a")]}}]),
            true,
        ),
        (
            "another plugin asks for it, TestMesh's for another",
            json!([{"merge": {"generators": [asking("other", "team-a"), asking("testmesh-generator", "team-b")]}}]),
            false,
        ),
        ("no plugin", json!([{"list": {"elements": []}}]), false),
    ];
    for (case, generators, expected) in cases {
        assert_eq!(
            generates_for(&set(generators), "testmesh-generator", "team-a"),
            expected,
            "{case}"
        );
    }
}
