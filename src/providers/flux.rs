//! The Flux adapter: reads a Flux `Kustomization` (kustomize.toolkit.fluxcd.io/v1) and says,
//! in the provider-neutral terms of [`AppReport`], whether the environment it deploys is
//! ready and whether the operator may delete it.
//!
//! kustomize-controller already builds, applies, prunes and (when asked) health-checks
//! everything a Kustomization deploys, and sums it up in standard conditions, so we
//! interpret Flux's own status instead of watching the workloads. Like the Argo CD adapter,
//! this is pure (no I/O, no clock) so that every rule below is a table test.
//!
//! What Flux's status does not say outright, and how it is decided here:
//! - **Freshness.** kustomize-controller advances `status.observedGeneration` only when a
//!   reconciliation succeeds (or stalls on an invalid CEL expression), so `Ready=True`
//!   counts only when `status.observedGeneration` equals `metadata.generation`. Failures
//!   never advance it: a Kustomization whose very first build fails keeps no
//!   `observedGeneration` at all. Flux does stamp each condition with the generation it was
//!   set for, so `Ready=False` and `Stalled=True` count when *their* `observedGeneration`
//!   is the current one (or, on conditions without one, when the status's is). Anything
//!   else is "not yet reconciled at generation N".
//! - **Failures.** `Stalled=True` is terminal (Flux will not retry without a spec change):
//!   Failed. `Ready=False` is retried at `spec.retryInterval`, and its reasons
//!   (ArtifactFailed, BuildFailed, HealthCheckFailed, PruneFailed, ReconciliationFailed, and
//!   any other) make the app Degraded, so the lifecycle's degraded grace period decides when
//!   a persistent failure fails the environment. ArtifactFailed in particular is routine
//!   for a few seconds while a new source is first fetched. `DependencyNotReady` only
//!   waits for other Kustomizations (`spec.dependsOn`): Progressing.
//! - **Retries reset the grace period.** Every attempt, periodic or retry, that gets as far
//!   as fetching the manifests first sets `Ready=Unknown` (Reconciling), and nothing then
//!   says how the previous attempt ended. So health goes Failed, Reconciling, Failed again
//!   on each retry, and the degraded grace period restarts with it. If `spec.retryInterval` (default `spec.interval`) is shorter
//!   than that grace period, the provisioning timeout fails the environment instead. For
//!   the same reason a Ready environment reads Progressing for the few seconds of each
//!   periodic reconciliation.
//! - **"Ready" means "applied".** Without `spec.wait` or `spec.healthChecks`, Flux marks a
//!   Kustomization Ready as soon as the server accepted the manifests, before anything
//!   runs. We trust that verdict but say so in the message, so users see why an
//!   environment may be Ready while its pods are still starting.
//! - **A namespace that came after the failure.** A Kustomization committed before its
//!   environment (the usual order) fails to apply for want of the namespace
//!   (`ReconciliationFailed`, `namespaces "…" not found`), and kustomize-controller tries
//!   again only after `spec.retryInterval` (by default `spec.interval`: often minutes, so
//!   longer than the degraded grace period). Once the environment's namespace exists, such
//!   a failure is stale: the report names it as a failed attempt waiting out a retry
//!   interval ([`FailedAttempt::backing_off`]), and [`retry_end`] asks Flux to reconcile
//!   now, as `flux reconcile kustomization` does (the `reconcile.fluxcd.io/requestedAt`
//!   annotation). Until Flux has handled that request (`status.lastHandledReconcileAt`),
//!   nothing more is asked.
//! - **Suspension.** A suspended Kustomization (`spec.suspend`) is not reconciled at all,
//!   so it reads Progressing and the lifecycle's provisioning timeout eventually fails the
//!   environment. Deleting a suspended Kustomization prunes nothing (nor does deleting one
//!   with `spec.deletionPolicy: Orphan`, or with `spec.prune: false` under the default
//!   `MirrorPrune`); that is acceptable because the environment's namespace, deleted next,
//!   takes what it deployed with it. (It stays Deletable: [`AppDeletion`] has no way to
//!   carry that remark.)
//! - **Deletion.** Deleting a Kustomization makes kustomize-controller's finalizer prune
//!   what it deployed, per `spec.deletionPolicy`. One created or owned by another (parent)
//!   Kustomization would just be re-created by it, and one that deploys outside the
//!   environment's namespace (`spec.targetNamespace`, which Flux does not create) would
//!   prune things that are not the environment's, so the operator never deletes either.
//!
//! Health, in one stable word per state (the lifecycle counts grace periods from its last
//! change, so it never carries detail): `Deleting`, `Suspended`, `Stalled`, `Failed`
//! (`Ready=False`, whatever the reason or message), `Waiting` (`DependencyNotReady`),
//! `Ready`, `Reconciling` (everything else, including a stale status). Like Argo CD's
//! health, it is Flux's own view: a Kustomization deploying into the wrong namespace still
//! shows Flux's health, while its readiness is Failed.

use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use super::json::{items, text};

use crate::lifecycle::environment::{AppDeletion, AppReport, FailedAttempt, Readiness};

pub const GROUP: &str = "kustomize.toolkit.fluxcd.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "Kustomization";
pub const PLURAL: &str = "kustomizations";

/// The label kustomize-controller puts on everything a Kustomization applies, naming it.
const CREATED_BY_NAME_LABEL: &str = "kustomize.toolkit.fluxcd.io/name";
/// Its companion label, naming that Kustomization's namespace.
const CREATED_BY_NAMESPACE_LABEL: &str = "kustomize.toolkit.fluxcd.io/namespace";

/// The `Ready=False` reason that only waits for `spec.dependsOn`.
const DEPENDENCY_NOT_READY: &str = "DependencyNotReady";
/// Set to a new value, it makes kustomize-controller reconcile at once; the value handled
/// last is `status.lastHandledReconcileAt`.
const RECONCILE_REQUEST_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";

/// The API resource of Flux Kustomizations, for a dynamic `Api`.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// Keeps only what [`interpret`] reads: not the inventory of applied objects or the
/// history of past reconciliations.
pub fn trim_for_cache(kustomization: &mut DynamicObject) {
    if let Some(status) = kustomization
        .data
        .get_mut("status")
        .and_then(Value::as_object_mut)
    {
        status.remove("inventory");
        status.remove("history");
    }
}

/// Interprets `kustomization` for an environment whose namespace is `environment_namespace`.
pub fn interpret(kustomization: &DynamicObject, environment_namespace: &str) -> AppReport {
    let kustomization = Kustomization::read(kustomization);
    let state = kustomization.state();
    let (readiness, why) = kustomization.readiness(&state, environment_namespace);
    AppReport {
        readiness,
        health: state.health().to_owned(),
        sync: kustomization
            .ready
            .as_ref()
            .and_then(|ready| ready.status)
            .map(str::to_owned),
        revision: kustomization.revision.map(str::to_owned),
        message: format!("Flux Kustomization {}: {why}", kustomization.name),
        deletion: kustomization.deletion(environment_namespace),
        failed_attempt: kustomization.failed_attempt(&state, environment_namespace),
        // kustomize-controller never creates `targetNamespace`.
        creates_namespace: false,
        // Flux environments never sleep, which is what this is read for.
        synced_at: None,
    }
}

/// The merge patch that has kustomize-controller reconcile `kustomization` now instead of
/// after its retry interval, as `flux reconcile kustomization` does, at the
/// `resourceVersion` read. The request names that version, so each is a new value.
pub fn retry_end(kustomization: &DynamicObject) -> Value {
    let version = kustomization.metadata.resource_version.as_deref();
    json!({
        "metadata": {
            "resourceVersion": version,
            "annotations": {
                RECONCILE_REQUEST_ANNOTATION: format!("testmesh-{}", version.unwrap_or_default()),
            },
        },
    })
}

/// The parts of a Kustomization the rules read.
struct Kustomization<'a> {
    /// `namespace/name`, for messages.
    name: String,
    being_deleted: bool,
    /// `metadata.generation`; the API server always sets it.
    generation: Option<i64>,
    /// `status.observedGeneration`: the last generation reconciled successfully.
    observed_generation: Option<i64>,
    target_namespace: Option<&'a str>,
    suspended: bool,
    /// `spec.wait` or a non-empty `spec.healthChecks`: Ready then means healthy.
    health_checked: bool,
    ready: Option<Condition<'a>>,
    stalled: Option<Condition<'a>>,
    reconciling: Option<Condition<'a>>,
    /// `status.lastAppliedRevision`.
    revision: Option<&'a str>,
    /// A reconcile request kustomize-controller has not handled yet.
    reconcile_requested: bool,
    /// The name of an owning (parent) Kustomization, if one owns it.
    owner: Option<&'a str>,
    /// `namespace/name` of the Kustomization whose apply created it, from its labels.
    created_by: Option<String>,
}

/// One status condition (a metav1 Condition).
struct Condition<'a> {
    status: Option<&'a str>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    /// The generation Flux set it for; absent on conditions written without one.
    observed_generation: Option<i64>,
    /// When its status last changed: for `Ready=False`, when the attempt failed.
    last_transition_time: Option<&'a str>,
}

/// Flux's own view of the Kustomization, before TestMesh's namespace rule.
enum State<'a> {
    Deleting,
    Suspended,
    /// `Stalled=True` for the current generation.
    Stalled(&'a Condition<'a>),
    /// `Ready=False` for the current generation.
    NotReady(&'a Condition<'a>),
    /// The current generation has not been reconciled, nor failed.
    Stale,
    /// `Ready=True` for the current generation.
    Applied,
    /// `Ready=Unknown` or no Ready condition, for the current generation.
    Reconciling,
}

impl State<'_> {
    /// The health word users see; see the module docs.
    fn health(&self) -> &'static str {
        match self {
            State::Deleting => "Deleting",
            State::Suspended => "Suspended",
            State::Stalled(_) => "Stalled",
            State::NotReady(ready) if ready.reason == Some(DEPENDENCY_NOT_READY) => "Waiting",
            State::NotReady(_) => "Failed",
            State::Applied => "Ready",
            State::Stale | State::Reconciling => "Reconciling",
        }
    }
}

impl<'a> Kustomization<'a> {
    fn read(object: &'a DynamicObject) -> Self {
        let data = &object.data;
        let metadata = &object.metadata;
        let name = metadata.name.as_deref().unwrap_or_default();
        let label = |key: &str| {
            metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(key))
                .map(String::as_str)
                .filter(|value| !value.is_empty())
        };
        Kustomization {
            name: match metadata.namespace.as_deref() {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.to_owned(),
            },
            being_deleted: metadata.deletion_timestamp.is_some(),
            generation: metadata.generation,
            observed_generation: data
                .pointer("/status/observedGeneration")
                .and_then(Value::as_i64),
            target_namespace: text(data, "/spec/targetNamespace"),
            suspended: data.pointer("/spec/suspend") == Some(&Value::Bool(true)),
            health_checked: data.pointer("/spec/wait") == Some(&Value::Bool(true))
                || items(data, "/spec/healthChecks").next().is_some(),
            ready: Condition::find(data, "Ready"),
            stalled: Condition::find(data, "Stalled"),
            reconciling: Condition::find(data, "Reconciling"),
            revision: text(data, "/status/lastAppliedRevision"),
            reconcile_requested: metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(RECONCILE_REQUEST_ANNOTATION))
                .is_some_and(|requested| {
                    text(data, "/status/lastHandledReconcileAt") != Some(requested.as_str())
                }),
            owner: metadata
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.kind == KIND)
                .map(|owner| owner.name.as_str()),
            created_by: label(CREATED_BY_NAME_LABEL).map(|parent| {
                match label(CREATED_BY_NAMESPACE_LABEL) {
                    Some(namespace) => format!("{namespace}/{parent}"),
                    None => parent.to_owned(),
                }
            }),
        }
    }

    /// Flux's view, first match wins.
    fn state(&self) -> State<'_> {
        if self.being_deleted {
            return State::Deleting;
        }
        if self.suspended {
            return State::Suspended;
        }
        if let Some(stalled) = self.current(self.stalled.as_ref(), "True") {
            return State::Stalled(stalled);
        }
        if let Some(ready) = self.current(self.ready.as_ref(), "False") {
            return State::NotReady(ready);
        }
        if !self.status_is_current() {
            return State::Stale;
        }
        if self.ready.as_ref().and_then(|ready| ready.status) == Some("True") {
            return State::Applied;
        }
        State::Reconciling
    }

    /// The readiness rules, first match wins, with what was seen.
    fn readiness(&self, state: &State<'_>, environment_namespace: &str) -> (Readiness, String) {
        if !matches!(state, State::Deleting)
            && let Some(mismatch) = self.foreign_target(environment_namespace)
        {
            return (Readiness::Failed, mismatch);
        }
        match state {
            State::Deleting => (Readiness::Progressing, "being deleted".to_owned()),
            State::Suspended => (
                Readiness::Progressing,
                "suspended: Flux does not reconcile it".to_owned(),
            ),
            State::Stalled(stalled) => (
                Readiness::Failed,
                format!("Stalled: {}", stalled.describe()),
            ),
            State::NotReady(ready) if ready.reason == Some(DEPENDENCY_NOT_READY) => {
                (Readiness::Progressing, ready.describe())
            }
            State::NotReady(ready) => (Readiness::Degraded, ready.describe()),
            State::Stale => {
                let head = match self.generation {
                    Some(generation) => format!("not yet reconciled at generation {generation}"),
                    None => "not yet reconciled".to_owned(),
                };
                let progress = self
                    .current(self.reconciling.as_ref(), "True")
                    .and_then(|reconciling| reconciling.message);
                (Readiness::Progressing, with_detail(head, progress))
            }
            State::Applied => (Readiness::Ready, self.applied()),
            State::Reconciling => (Readiness::Progressing, self.reconciling()),
        }
    }

    /// The last attempt, when it failed to apply for want of the environment's namespace
    /// and Flux waits out its retry interval before the next (see the module docs).
    fn failed_attempt(
        &self,
        state: &State<'_>,
        environment_namespace: &str,
    ) -> Option<FailedAttempt> {
        let State::NotReady(ready) = state else {
            return None;
        };
        let missing_namespace = format!("namespaces \"{environment_namespace}\" not found");
        let namespace_missing = ready
            .message
            .is_some_and(|message| message.contains(&missing_namespace));
        if !namespace_missing || self.reconcile_requested {
            return None;
        }
        Some(FailedAttempt {
            started_at: ready.last_transition_time.and_then(|at| at.parse().ok()),
            backing_off: true,
            namespace_missing,
        })
    }

    fn deletion(&self, environment_namespace: &str) -> AppDeletion {
        if self.being_deleted {
            return AppDeletion::InProgress;
        }
        if let Some(mismatch) = self.foreign_target(environment_namespace) {
            return AppDeletion::Retained(mismatch);
        }
        if let Some(owner) = self.owner {
            return AppDeletion::Retained(format!(
                "owned by Kustomization {owner}, which would re-create it"
            ));
        }
        if let Some(parent) = &self.created_by {
            return AppDeletion::Retained(format!(
                "created by Kustomization {parent}, which would re-create it"
            ));
        }
        AppDeletion::Deletable
    }

    /// Why the Kustomization deploys outside the environment's namespace, if it does.
    fn foreign_target(&self, environment_namespace: &str) -> Option<String> {
        super::deploys_elsewhere(
            self.target_namespace,
            "spec.targetNamespace",
            environment_namespace,
        )
    }

    /// Whether `status.observedGeneration` is the current generation. Without a
    /// `metadata.generation` to compare with, the status is taken as current.
    fn status_is_current(&self) -> bool {
        self.generation
            .is_none_or(|generation| self.observed_generation == Some(generation))
    }

    /// `condition`, if it has `status` and was set for the current generation.
    fn current<'c>(
        &self,
        condition: Option<&'c Condition<'a>>,
        status: &str,
    ) -> Option<&'c Condition<'a>> {
        condition.filter(|condition| {
            condition.status == Some(status)
                && match (condition.observed_generation, self.generation) {
                    (Some(observed), Some(generation)) => observed == generation,
                    _ => self.status_is_current(),
                }
        })
    }

    /// `applied at <revision>`, with the caveat when nothing was health-checked.
    fn applied(&self) -> String {
        let applied = match self.revision {
            Some(revision) => format!("applied at {revision}"),
            None => "applied".to_owned(),
        };
        if self.health_checked {
            applied
        } else {
            format!(
                "{applied} (no health checks: spec.wait is not set and spec.healthChecks is empty)"
            )
        }
    }

    /// What Flux says while the current generation is being reconciled.
    fn reconciling(&self) -> String {
        let progress = self
            .reconciling
            .as_ref()
            .filter(|reconciling| reconciling.status == Some("True"))
            .and_then(|reconciling| reconciling.message);
        match &self.ready {
            Some(ready) => with_detail("reconciling".to_owned(), progress.or(ready.message)),
            None if progress.is_some() => with_detail("reconciling".to_owned(), progress),
            None => "no Ready condition yet".to_owned(),
        }
    }
}

impl<'a> Condition<'a> {
    /// The first condition of type `kind` in `status.conditions`.
    fn find(data: &'a Value, kind: &str) -> Option<Self> {
        items(data, "/status/conditions")
            .find(|condition| text(condition, "/type") == Some(kind))
            .map(|condition| Condition {
                status: text(condition, "/status"),
                reason: text(condition, "/reason"),
                message: text(condition, "/message").map(str::trim),
                observed_generation: condition
                    .get("observedGeneration")
                    .and_then(Value::as_i64)
                    .filter(|generation| *generation > 0),
                last_transition_time: text(condition, "/lastTransitionTime"),
            })
    }

    /// `<reason>: <message>`, as far as Flux gave them.
    fn describe(&self) -> String {
        match (self.reason, self.message) {
            (Some(reason), message) => with_detail(reason.to_owned(), message),
            (None, Some(message)) => message.to_owned(),
            (None, None) => "no reason given".to_owned(),
        }
    }
}

/// `head: detail`, or `head` alone when there is no detail.
fn with_detail(head: String, detail: Option<&str>) -> String {
    match detail.filter(|detail| !detail.is_empty()) {
        Some(detail) => format!("{head}: {detail}"),
        None => head,
    }
}

#[cfg(test)]
mod tests;
