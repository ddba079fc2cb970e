//! Table-driven tests of the Flux adapter, on Kustomizations shaped like the ones
//! kustomize-controller v1 writes (`kubectl get kustomization -o json`).

use serde_json::{Value, json};

use super::*;
use crate::providers::checks::{
    ENVIRONMENT_NAMESPACE, Reported, check_deletion, check_health, check_readiness,
};

const APP: &str = "Flux Kustomization flux-system/testmesh-pr-123";
const REVISION: &str = "pr-123@sha1:4b825dc642cb6eb9a060e54bf8d69288fbee4904";
const NEXT_REVISION: &str = "pr-123@sha1:9c1185a5c5e9fc54612808977ee8f548b2258d31";
const NO_HEALTH_CHECKS: &str =
    "(no health checks: spec.wait is not set and spec.healthChecks is empty)";

/// A Kustomization, built up like a sentence: `kustomization().ready()…`.
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

/// A freshly created Kustomization that kustomize-controller has not looked at yet.
fn kustomization() -> Fixture {
    Fixture(json!({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {
            "name": "testmesh-pr-123",
            "namespace": "flux-system",
            "uid": "2d6c1c4e-8f0b-4b7e-9a43-6b1f6f0f3c21",
            "resourceVersion": "51877",
            "generation": 1,
            "creationTimestamp": "2026-05-04T09:12:00Z",
        },
        "spec": {
            "interval": "5m",
            "retryInterval": "1m",
            "timeout": "3m",
            "path": "./deploy/review",
            "prune": true,
            "wait": true,
            "sourceRef": { "kind": "GitRepository", "name": "shop" },
            "targetNamespace": ENVIRONMENT_NAMESPACE,
        },
        "status": {},
    }))
}

/// The first reconciliation of generation 1, under way: Flux has added its finalizer and
/// marked Ready Unknown.
fn first_reconciliation() -> Fixture {
    kustomization()
        .finalizer()
        .condition(
            "Ready",
            "Unknown",
            "Progressing",
            "Reconciliation in progress",
        )
        .condition(
            "Reconciling",
            "True",
            "Progressing",
            &format!("Fetching manifests for revision {REVISION} with a timeout of 3m0s"),
        )
}

/// What Flux reports once the environment is applied and healthy at generation 1.
fn ready() -> Fixture {
    kustomization()
        .finalizer()
        .observed(1)
        .condition(
            "Ready",
            "True",
            "ReconciliationSucceeded",
            &format!("Applied revision: {REVISION}"),
        )
        .condition(
            "Healthy",
            "True",
            "Succeeded",
            "Health check passed in 10.040125386s",
        )
        .map_status(|status| {
            status["lastAppliedRevision"] = json!(REVISION);
            status["lastAttemptedRevision"] = json!(REVISION);
            status["inventory"] = json!({
                "entries": [
                    { "id": "review-pr-123_web__Service", "v": "v1" },
                    { "id": "review-pr-123_web_apps_Deployment", "v": "v1" },
                ],
            });
        })
}

/// A failed attempt at the current generation, as `Reconcile` leaves it: Ready=False, and
/// Reconciling kept with reason ProgressingWithRetry.
fn failing(fixture: Fixture, reason: &str, message: &str) -> Fixture {
    fixture
        .condition("Ready", "False", reason, message)
        .condition(
            "Reconciling",
            "True",
            "ProgressingWithRetry",
            &format!("Detecting drift for revision {NEXT_REVISION} with a timeout of 3m0s"),
        )
        .map_status(|status| status["lastAttemptedRevision"] = json!(NEXT_REVISION))
}

impl Fixture {
    fn status(&mut self) -> &mut Value {
        &mut self.0["status"]
    }

    fn generation(&self) -> i64 {
        self.0["metadata"]["generation"].as_i64().unwrap_or(1)
    }

    fn finalizer(mut self) -> Self {
        self.0["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
        self
    }

    /// `status.observedGeneration`.
    fn observed(mut self, generation: i64) -> Self {
        self.status()["observedGeneration"] = json!(generation);
        self
    }

    /// A spec edit: the API server bumps `metadata.generation`.
    fn edited(mut self) -> Self {
        let generation = self.generation() + 1;
        self.0["metadata"]["generation"] = json!(generation);
        self.0["spec"]["path"] = json!("./deploy/review-v2");
        self
    }

    /// Sets (or replaces) a condition, stamped with the current generation as Flux does.
    fn condition(self, kind: &str, status: &str, reason: &str, message: &str) -> Self {
        let generation = self.generation();
        self.condition_at(kind, status, reason, message, Some(generation))
    }

    /// Sets (or replaces) a condition set for `generation` (`None`: without one).
    fn condition_at(
        mut self,
        kind: &str,
        status: &str,
        reason: &str,
        message: &str,
        generation: Option<i64>,
    ) -> Self {
        let mut condition = json!({
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": "2026-05-04T09:14:30Z",
        });
        if let Some(generation) = generation {
            condition["observedGeneration"] = json!(generation);
        }
        let conditions = &mut self.status()["conditions"];
        match conditions {
            Value::Array(items) => {
                items.retain(|existing| existing["type"] != json!(kind));
                items.push(condition);
            }
            _ => *conditions = json!([condition]),
        }
        self
    }

    /// Removes a condition, as Flux does with Stalled and Reconciling.
    fn without_condition(mut self, kind: &str) -> Self {
        if let Value::Array(items) = &mut self.status()["conditions"] {
            items.retain(|existing| existing["type"] != json!(kind));
        }
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

    fn target_namespace(self, namespace: Value) -> Self {
        self.spec("targetNamespace", namespace)
    }

    fn suspended(self) -> Self {
        self.spec("suspend", json!(true))
    }

    /// Only `spec.wait` removed: Ready then means applied, not healthy.
    fn without_wait(self) -> Self {
        self.spec("wait", Value::Null)
    }

    /// Changes the status in ways the other steps do not cover.
    fn map_status(mut self, change: impl FnOnce(&mut Value)) -> Self {
        change(self.status());
        self
    }

    /// A reconcile request (`flux reconcile`), handled by Flux or not.
    fn reconcile_requested(mut self, value: &str, handled: bool) -> Self {
        self.0["metadata"]["annotations"]["reconcile.fluxcd.io/requestedAt"] = json!(value);
        if handled {
            self.status()["lastHandledReconcileAt"] = json!(value);
        }
        self
    }

    fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-05-04T11:00:00Z");
        self
    }

    fn owned_by_kustomization(mut self, name: &str) -> Self {
        self.0["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
            "kind": "Kustomization",
            "name": name,
            "uid": "0c9d1f0e-3b7a-4a51-8e0f-6f3f2d7f9a10",
        }]);
        self
    }

    /// The labels kustomize-controller sets on what a (parent) Kustomization applies.
    fn created_by(mut self, namespace: Option<&str>, name: &str) -> Self {
        let labels = &mut self.0["metadata"]["labels"];
        labels["kustomize.toolkit.fluxcd.io/name"] = json!(name);
        if let Some(namespace) = namespace {
            labels["kustomize.toolkit.fluxcd.io/namespace"] = json!(namespace);
        }
        self
    }
}

#[test]
fn api_resource_names_flux_kustomizations() {
    let resource = api_resource();
    assert_eq!(resource.group, "kustomize.toolkit.fluxcd.io");
    assert_eq!(resource.version, "v1");
    assert_eq!(resource.api_version, "kustomize.toolkit.fluxcd.io/v1");
    assert_eq!(resource.kind, "Kustomization");
    assert_eq!(resource.plural, "kustomizations");
}

#[test]
fn applied_current_kustomizations_are_ready() {
    let health_checks = json!([{
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": ENVIRONMENT_NAMESPACE,
    }]);
    let applied = format!("applied at {REVISION}");
    let applied_unchecked = format!("applied at {REVISION} {NO_HEALTH_CHECKS}");
    check_readiness([
        (
            "spec.wait: health-checked, no caveat",
            ready(),
            Readiness::Ready,
            &applied,
        ),
        (
            "spec.healthChecks without spec.wait: health-checked, no caveat",
            ready()
                .without_wait()
                .spec("healthChecks", health_checks.clone()),
            Readiness::Ready,
            &applied,
        ),
        (
            "spec.wait false but spec.healthChecks set: no caveat",
            ready()
                .spec("wait", json!(false))
                .spec("healthChecks", health_checks),
            Readiness::Ready,
            &applied,
        ),
        (
            "neither: only applied, and the message says so",
            ready().without_wait(),
            Readiness::Ready,
            &applied_unchecked,
        ),
        (
            "spec.wait false and an empty spec.healthChecks: caveat",
            ready()
                .spec("wait", json!(false))
                .spec("healthChecks", json!([])),
            Readiness::Ready,
            &applied_unchecked,
        ),
        (
            "no revision recorded",
            ready().map_status(|status| status["lastAppliedRevision"] = Value::Null),
            Readiness::Ready,
            "applied",
        ),
        (
            "no revision recorded, not health-checked",
            ready()
                .without_wait()
                .map_status(|status| status["lastAppliedRevision"] = Value::Null),
            Readiness::Ready,
            &format!("applied {NO_HEALTH_CHECKS}"),
        ),
        (
            "a stale Stalled=False and Reconciling=False are ignored",
            ready()
                .condition("Stalled", "False", "Succeeded", "")
                .condition("Reconciling", "False", "Succeeded", ""),
            Readiness::Ready,
            &applied,
        ),
        (
            "a Stalled=True left from an earlier generation is ignored",
            ready()
                .edited()
                .observed(2)
                .condition(
                    "Ready",
                    "True",
                    "ReconciliationSucceeded",
                    &format!("Applied revision: {REVISION}"),
                )
                .condition_at(
                    "Stalled",
                    "True",
                    "InvalidCELExpression",
                    "invalid expression",
                    Some(1),
                ),
            Readiness::Ready,
            &applied,
        ),
        (
            "applied at a later generation, conditions without observedGeneration",
            kustomization()
                .edited()
                .observed(2)
                .condition_at("Ready", "True", "ReconciliationSucceeded", "", None)
                .map_status(|status| status["lastAppliedRevision"] = json!(REVISION)),
            Readiness::Ready,
            &applied,
        ),
    ]);
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
            "failing and in the wrong namespace",
            failing(ready(), "BuildFailed", "kustomize build failed")
                .target_namespace(json!("production"))
                .deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
        (
            "suspended",
            ready().suspended().deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
        (
            "stalled",
            ready()
                .condition(
                    "Stalled",
                    "True",
                    "AccessDenied",
                    "cross-namespace references have been blocked",
                )
                .deleting(),
            Readiness::Progressing,
            "being deleted",
        ),
    ]);
}

#[test]
fn kustomizations_deploying_elsewhere_fail() {
    let elsewhere =
        "deploys into namespace production, not the environment's namespace review-pr-123";
    let nowhere = "sets no spec.targetNamespace, so it does not deploy into the environment's namespace review-pr-123";
    check_readiness([
        (
            "another namespace",
            ready().target_namespace(json!("production")),
            Readiness::Failed,
            elsewhere,
        ),
        (
            "no spec.targetNamespace",
            ready().target_namespace(Value::Null),
            Readiness::Failed,
            nowhere,
        ),
        (
            "an empty spec.targetNamespace",
            ready().target_namespace(json!("")),
            Readiness::Failed,
            nowhere,
        ),
        (
            "before suspension",
            ready().target_namespace(json!("production")).suspended(),
            Readiness::Failed,
            elsewhere,
        ),
        (
            "before a stale status",
            kustomization().target_namespace(json!("production")),
            Readiness::Failed,
            elsewhere,
        ),
        (
            "before a failure",
            failing(
                ready(),
                "HealthCheckFailed",
                "timeout waiting for: [Deployment/production/web status: 'InProgress']",
            )
            .target_namespace(json!("production")),
            Readiness::Failed,
            elsewhere,
        ),
    ]);
}

#[test]
fn suspended_kustomizations_are_not_reconciled() {
    let suspended = "suspended: Flux does not reconcile it";
    check_readiness([
        (
            "ready, then suspended",
            ready().suspended(),
            Readiness::Progressing,
            suspended,
        ),
        (
            "suspended before Flux ever reconciled it",
            kustomization().suspended(),
            Readiness::Progressing,
            suspended,
        ),
        (
            "suspended while failing",
            failing(ready(), "BuildFailed", "kustomize build failed").suspended(),
            Readiness::Progressing,
            suspended,
        ),
        (
            "suspended while stalled",
            ready()
                .condition("Stalled", "True", "AccessDenied", "access denied")
                .suspended(),
            Readiness::Progressing,
            suspended,
        ),
        (
            "spec.suspend false is not suspended",
            ready().spec("suspend", json!(false)),
            Readiness::Ready,
            &format!("applied at {REVISION}"),
        ),
    ]);
}

#[test]
fn stalled_kustomizations_fail() {
    let access_denied = "can't access 'GitRepository/flux-system/shop', cross-namespace references have been blocked";
    let invalid_cel =
        "Reconciliation failed terminally due to configuration error: failed to parse expression";
    check_readiness([
        (
            "access denied on the first attempt: the condition is current, the status never was",
            kustomization()
                .finalizer()
                .condition("Ready", "False", "AccessDenied", access_denied)
                .condition("Stalled", "True", "AccessDenied", access_denied),
            Readiness::Failed,
            &format!("Stalled: AccessDenied: {access_denied}"),
        ),
        (
            "an invalid CEL health check after a spec edit (Flux then records the generation)",
            ready()
                .edited()
                .observed(2)
                .condition("Ready", "False", "InvalidCELExpression", invalid_cel)
                .condition("Stalled", "True", "InvalidCELExpression", invalid_cel)
                .without_condition("Reconciling"),
            Readiness::Failed,
            &format!("Stalled: InvalidCELExpression: {invalid_cel}"),
        ),
        (
            "Stalled comes before Ready=False's reason",
            failing(ready(), "BuildFailed", "kustomize build failed").condition(
                "Stalled",
                "True",
                "FeatureGateDisabled",
                "to use spec.decryption.serviceAccountName please enable the ObjectLevelWorkloadIdentity feature gate",
            ),
            Readiness::Failed,
            "Stalled: FeatureGateDisabled: to use spec.decryption.serviceAccountName please enable the ObjectLevelWorkloadIdentity feature gate",
        ),
        (
            "without observedGeneration on the condition, a current status makes it count",
            ready().condition_at("Stalled", "True", "AccessDenied", access_denied, None),
            Readiness::Failed,
            &format!("Stalled: AccessDenied: {access_denied}"),
        ),
        (
            "without a message",
            ready().condition("Stalled", "True", "AccessDenied", ""),
            Readiness::Failed,
            "Stalled: AccessDenied",
        ),
        (
            "without a reason",
            ready().condition("Stalled", "True", "", "stuck"),
            Readiness::Failed,
            "Stalled: stuck",
        ),
        (
            "without reason or message",
            ready().condition("Stalled", "True", "", ""),
            Readiness::Failed,
            "Stalled: no reason given",
        ),
        (
            "stalled at the previous generation: the edit may have fixed it",
            ready()
                .condition("Stalled", "True", "AccessDenied", access_denied)
                .edited(),
            Readiness::Progressing,
            "not yet reconciled at generation 2",
        ),
        (
            "without observedGeneration on the condition and a stale status",
            kustomization().condition_at("Stalled", "True", "AccessDenied", access_denied, None),
            Readiness::Progressing,
            "not yet reconciled at generation 1",
        ),
    ]);
}

#[test]
fn failing_reconciliations_are_degraded_so_the_grace_period_applies() {
    let cases = [
        (
            "ArtifactFailed",
            "Source artifact not found, retrying in 30s",
        ),
        (
            "BuildFailed",
            "kustomize build failed: accumulating resources: accumulation err='accumulating resources from './web': open /tmp/kustomization-1467/deploy/review/web: no such file or directory'",
        ),
        (
            "HealthCheckFailed",
            "health check failed after 3m0.0057s: timeout waiting for: [Deployment/review-pr-123/web status: 'InProgress']",
        ),
        (
            "PruneFailed",
            "failed to delete ConfigMap/review-pr-123/settings-5g7h2: forbidden",
        ),
        (
            "ReconciliationFailed",
            "Deployment/review-pr-123/web dry-run failed: Deployment.apps \"web\" is invalid: spec.template.spec.containers[0].image: Required value",
        ),
        (
            "DirCreationFailed",
            "tmp dir error: mkdir /tmp/kustomization-1467: no space left on device",
        ),
        (
            "AccessDenied",
            "can't access 'GitRepository/flux-system/shop', cross-namespace references have been blocked",
        ),
    ];
    for (reason, message) in cases {
        let expected = format!("{APP}: {reason}: {message}");
        for (case, kustomization) in [
            (
                "after an earlier success",
                failing(ready(), reason, message),
            ),
            (
                "on the first attempt (no status.observedGeneration yet)",
                failing(kustomization().finalizer(), reason, message),
            ),
            (
                "after a spec edit (status.observedGeneration lags behind)",
                failing(ready().edited(), reason, message),
            ),
            (
                "without observedGeneration on the condition, current status",
                ready().condition_at("Ready", "False", reason, message, None),
            ),
        ] {
            let report = kustomization.report();
            assert_eq!(
                (
                    &report.readiness,
                    report.message.as_str(),
                    report.health.as_str()
                ),
                (&Readiness::Degraded, expected.as_str(), "Failed"),
                "{reason} {case}"
            );
        }
    }
}

#[test]
fn other_ready_false_cases() {
    check_readiness([
        (
            "DependencyNotReady only waits",
            failing(
                kustomization().finalizer(),
                "DependencyNotReady",
                "dependency 'flux-system/infra' is not ready",
            ),
            Readiness::Progressing,
            "DependencyNotReady: dependency 'flux-system/infra' is not ready",
        ),
        (
            "a multi-line apply error is kept, trailing newline trimmed",
            failing(
                ready(),
                "ReconciliationFailed",
                "Service/review-pr-123/web dry-run failed: invalid\nConfigMap/review-pr-123/settings created\n",
            ),
            Readiness::Degraded,
            "ReconciliationFailed: Service/review-pr-123/web dry-run failed: invalid\nConfigMap/review-pr-123/settings created",
        ),
        (
            "no message",
            failing(ready(), "BuildFailed", ""),
            Readiness::Degraded,
            "BuildFailed",
        ),
        (
            "a failure at the previous generation does not count after an edit",
            failing(ready(), "BuildFailed", "kustomize build failed").edited(),
            Readiness::Progressing,
            "not yet reconciled at generation 2",
        ),
        (
            "without observedGeneration on the condition and a stale status",
            kustomization().condition_at(
                "Ready",
                "False",
                "BuildFailed",
                "kustomize build failed",
                None,
            ),
            Readiness::Progressing,
            "not yet reconciled at generation 1",
        ),
    ]);
}

#[test]
fn an_unreconciled_generation_holds_readiness_back() {
    check_readiness([
        (
            "never looked at",
            kustomization(),
            Readiness::Progressing,
            "not yet reconciled at generation 1",
        ),
        (
            "the first reconciliation, under way",
            first_reconciliation(),
            Readiness::Progressing,
            &format!(
                "not yet reconciled at generation 1: Fetching manifests for revision {REVISION} with a timeout of 3m0s"
            ),
        ),
        (
            "Ready=True for the previous generation",
            ready().edited(),
            Readiness::Progressing,
            "not yet reconciled at generation 2",
        ),
        (
            "Ready=True for the previous generation, the new one under way",
            ready()
                .edited()
                .condition(
                    "Ready",
                    "Unknown",
                    "Progressing",
                    "Reconciliation in progress",
                )
                .condition(
                    "Reconciling",
                    "True",
                    "Progressing",
                    &format!(
                        "Running health checks for revision {NEXT_REVISION} with a timeout of 3m0s"
                    ),
                ),
            Readiness::Progressing,
            &format!(
                "not yet reconciled at generation 2: Running health checks for revision {NEXT_REVISION} with a timeout of 3m0s"
            ),
        ),
        (
            "a Reconciling condition from the previous generation is not quoted",
            ready()
                .condition("Reconciling", "True", "Progressing", "Fetching manifests")
                .edited(),
            Readiness::Progressing,
            "not yet reconciled at generation 2",
        ),
        (
            "no metadata.generation to compare with: the status is taken as current",
            {
                let mut fixture = ready();
                fixture.0["metadata"]["generation"] = Value::Null;
                fixture
            },
            Readiness::Ready,
            &format!("applied at {REVISION}"),
        ),
    ]);
}

#[test]
fn reconciling_the_current_generation_holds_readiness_back() {
    check_readiness([
        (
            "a periodic reconciliation of an applied generation",
            ready()
                .condition(
                    "Ready",
                    "Unknown",
                    "Progressing",
                    "Reconciliation in progress",
                )
                .condition(
                    "Reconciling",
                    "True",
                    "Progressing",
                    &format!("Building manifests for revision {REVISION} with a timeout of 3m0s"),
                ),
            Readiness::Progressing,
            &format!(
                "reconciling: Building manifests for revision {REVISION} with a timeout of 3m0s"
            ),
        ),
        (
            "Ready=Unknown without Reconciling",
            ready().condition(
                "Ready",
                "Unknown",
                "Progressing",
                "Reconciliation in progress",
            ),
            Readiness::Progressing,
            "reconciling: Reconciliation in progress",
        ),
        (
            "Ready=Unknown without a message",
            ready().condition("Ready", "Unknown", "Progressing", ""),
            Readiness::Progressing,
            "reconciling",
        ),
        (
            "a Reconciling=False message is not quoted",
            ready()
                .condition(
                    "Ready",
                    "Unknown",
                    "Progressing",
                    "Reconciliation in progress",
                )
                .condition("Reconciling", "False", "Succeeded", "done"),
            Readiness::Progressing,
            "reconciling: Reconciliation in progress",
        ),
        (
            "no Ready condition, but Reconciling",
            ready().without_condition("Ready").condition(
                "Reconciling",
                "True",
                "Progressing",
                "Fetching manifests",
            ),
            Readiness::Progressing,
            "reconciling: Fetching manifests",
        ),
        (
            "no conditions at all",
            ready().map_status(|status| status["conditions"] = json!([])),
            Readiness::Progressing,
            "no Ready condition yet",
        ),
    ]);
}

#[test]
fn health_is_one_stable_word_per_state() {
    check_health([
        ("never looked at", kustomization(), "Reconciling"),
        (
            "first reconciliation",
            first_reconciliation(),
            "Reconciling",
        ),
        ("ready", ready(), "Ready"),
        ("ready, not health-checked", ready().without_wait(), "Ready"),
        (
            "ready at the previous generation",
            ready().edited(),
            "Reconciling",
        ),
        (
            "periodic reconciliation",
            ready().condition(
                "Ready",
                "Unknown",
                "Progressing",
                "Reconciliation in progress",
            ),
            "Reconciling",
        ),
        (
            "build failed",
            failing(ready(), "BuildFailed", "kustomize build failed"),
            "Failed",
        ),
        (
            "health check failed, another message",
            failing(
                ready(),
                "HealthCheckFailed",
                "timeout waiting for: [Deployment/review-pr-123/web]",
            ),
            "Failed",
        ),
        (
            "an unknown reason",
            failing(ready(), "SomethingNew", "new in a later Flux"),
            "Failed",
        ),
        (
            "waiting for dependencies",
            failing(
                ready(),
                "DependencyNotReady",
                "dependency 'flux-system/infra' is not ready",
            ),
            "Waiting",
        ),
        (
            "stalled",
            ready().condition("Stalled", "True", "AccessDenied", "access denied"),
            "Stalled",
        ),
        ("suspended", ready().suspended(), "Suspended"),
        ("being deleted", ready().suspended().deleting(), "Deleting"),
        (
            "Flux's view, even when deploying into the wrong namespace",
            ready().target_namespace(json!("production")),
            "Ready",
        ),
    ]);
}

#[test]
fn sync_is_the_ready_status_and_revision_the_last_applied_one() {
    for (status, fixture) in [
        ("True", ready()),
        (
            "False",
            failing(ready(), "BuildFailed", "kustomize build failed"),
        ),
        ("Unknown", first_reconciliation()),
    ] {
        assert_eq!(fixture.report().sync.as_deref(), Some(status), "{status}");
    }
    let unobserved = kustomization().report();
    assert_eq!(unobserved.sync, None);
    assert_eq!(unobserved.revision, None);

    assert_eq!(ready().report().revision.as_deref(), Some(REVISION));
    let failing_newer = failing(ready(), "HealthCheckFailed", "timeout").report();
    assert_eq!(
        failing_newer.revision.as_deref(),
        Some(REVISION),
        "the last applied revision, not the last attempted one"
    );
}

#[test]
fn deletion_decision() {
    let foreign =
        "deploys into namespace production, not the environment's namespace review-pr-123";
    check_deletion([
        ("ready", ready(), AppDeletion::Deletable),
        ("never reconciled", kustomization(), AppDeletion::Deletable),
        (
            "failing or stalled does not matter",
            failing(ready(), "BuildFailed", "kustomize build failed").condition(
                "Stalled",
                "True",
                "AccessDenied",
                "access denied",
            ),
            AppDeletion::Deletable,
        ),
        (
            "suspended: prunes nothing, but the namespace goes next",
            ready().suspended(),
            AppDeletion::Deletable,
        ),
        (
            "a deletion policy does not matter",
            ready().spec("deletionPolicy", json!("Orphan")),
            AppDeletion::Deletable,
        ),
        ("being deleted", ready().deleting(), AppDeletion::InProgress),
        (
            "being deleted, though a parent created it",
            ready()
                .created_by(Some("flux-system"), "reviews")
                .deleting(),
            AppDeletion::InProgress,
        ),
        (
            "deploying into another namespace",
            ready().target_namespace(json!("production")),
            AppDeletion::Retained(foreign.into()),
        ),
        (
            "deploying into no namespace",
            ready().target_namespace(Value::Null),
            AppDeletion::Retained(
                "sets no spec.targetNamespace, so it does not deploy into the environment's namespace review-pr-123".into(),
            ),
        ),
        (
            "deploying elsewhere and owned: the namespace is named",
            ready()
                .target_namespace(json!("production"))
                .owned_by_kustomization("reviews"),
            AppDeletion::Retained(foreign.into()),
        ),
        (
            "owned by a parent Kustomization",
            ready().owned_by_kustomization("reviews"),
            AppDeletion::Retained("owned by Kustomization reviews, which would re-create it".into()),
        ),
        (
            "owned and labelled: the owner is named",
            ready()
                .owned_by_kustomization("reviews")
                .created_by(Some("flux-system"), "apps"),
            AppDeletion::Retained("owned by Kustomization reviews, which would re-create it".into()),
        ),
        (
            "created by a parent Kustomization's apply",
            ready().created_by(Some("flux-system"), "reviews"),
            AppDeletion::Retained(
                "created by Kustomization flux-system/reviews, which would re-create it".into(),
            ),
        ),
        (
            "created by a parent, without the namespace label",
            ready().created_by(None, "reviews"),
            AppDeletion::Retained("created by Kustomization reviews, which would re-create it".into()),
        ),
    ]);
}

#[test]
fn unrelated_owners_and_labels_do_not_retain_it() {
    let mut owned = ready();
    owned.0["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "name": "pr-123",
        "uid": "7d3c5c1e-2f55-4d0b-9a54-52b6f0a7c0e2",
    }]);
    assert_eq!(owned.report().deletion, AppDeletion::Deletable);

    let mut labelled = ready();
    labelled.0["metadata"]["labels"] = json!({
        "app.kubernetes.io/managed-by": "testmesh",
        "kustomize.toolkit.fluxcd.io/name": "",
    });
    assert_eq!(labelled.report().deletion, AppDeletion::Deletable);
}

#[test]
fn messages_name_the_kustomization_without_a_namespace_when_it_has_none() {
    let mut fixture = ready();
    fixture.0["metadata"]["namespace"] = Value::Null;
    assert_eq!(
        fixture.report().message,
        format!("Flux Kustomization testmesh-pr-123: applied at {REVISION}")
    );
}

#[test]
fn the_cached_copy_drops_the_inventory_and_history() {
    let mut fixture = ready();
    fixture.status()["history"] = json!([{"digest": "sha256:1"}]);
    let mut object: DynamicObject = serde_json::from_value(fixture.0).expect("object");
    assert!(object.data["status"].get("inventory").is_some());
    let before = interpret(&object, ENVIRONMENT_NAMESPACE);
    trim_for_cache(&mut object);
    assert_eq!(interpret(&object, ENVIRONMENT_NAMESPACE), before);
    assert!(object.data["status"].get("inventory").is_none());
    assert!(object.data["status"].get("history").is_none());
}

/// How kustomize-controller v1.9 words an apply into a namespace that does not exist.
fn namespace_not_found(namespace: &str) -> String {
    format!("Service/{namespace}/web not found: namespaces \"{namespace}\" not found\n")
}

#[test]
fn a_failure_for_want_of_the_namespace_waits_out_a_retry_interval_until_asked_again() {
    let missing = namespace_not_found(ENVIRONMENT_NAMESPACE);
    let attempt = FailedAttempt {
        started_at: Some("2026-05-04T09:14:30Z".parse().expect("timestamp")),
        backing_off: true,
        namespace_missing: true,
    };
    let cases = [
        (
            "the first attempt, before the namespace",
            failing(
                kustomization().finalizer(),
                "ReconciliationFailed",
                &missing,
            ),
            Some(attempt.clone()),
        ),
        (
            "after an earlier success",
            failing(ready(), "ReconciliationFailed", &missing),
            Some(attempt.clone()),
        ),
        (
            "a request Flux has handled does not count",
            failing(ready(), "ReconciliationFailed", &missing)
                .reconcile_requested("2026-05-04T09:10:00Z", true),
            Some(attempt.clone()),
        ),
        (
            "a request not yet handled: nothing more to ask",
            failing(ready(), "ReconciliationFailed", &missing)
                .reconcile_requested("testmesh-51877", false),
            None,
        ),
        (
            "another namespace missing",
            failing(
                ready(),
                "ReconciliationFailed",
                &namespace_not_found("review-pr-124"),
            ),
            None,
        ),
        (
            "another failure",
            failing(ready(), "BuildFailed", "kustomize build failed"),
            None,
        ),
        (
            "a failure at the previous generation",
            failing(ready(), "ReconciliationFailed", &missing).edited(),
            None,
        ),
        ("reconciling again", first_reconciliation(), None),
        ("ready", ready(), None),
    ];
    for (case, fixture, expected) in cases {
        assert_eq!(fixture.report().failed_attempt, expected, "{case}");
    }
    assert_eq!(
        failing(ready(), "ReconciliationFailed", &missing)
            .report()
            .readiness,
        Readiness::Degraded,
        "still Flux's failure: the lifecycle decides what to do about it"
    );
}

#[test]
fn the_retry_request_is_a_reconcile_request_at_the_version_read() {
    let object: DynamicObject =
        serde_json::from_value(ready().0).expect("the fixture is a valid object");
    assert_eq!(
        retry_end(&object),
        json!({"metadata": {
            "resourceVersion": "51877",
            "annotations": {"reconcile.fluxcd.io/requestedAt": "testmesh-51877"},
        }})
    );
}
