//! The Argo CD adapter: reads an Argo CD `Application` (argoproj.io/v1alpha1) and says, in
//! the provider-neutral terms of [`AppReport`], whether the environment it deploys is ready
//! and whether the operator may delete it.
//!
//! Argo CD already aggregates the health of everything it deployed (its health checks,
//! hooks, sync waves, retries), so we interpret Argo CD's own status instead of watching
//! the workloads: this translation is all the lifecycle core needs to stay provider-neutral.
//! It is pure (no I/O, no clock) so that every rule below is a table test.
//!
//! What Argo CD's status does not say outright, and how it is decided here:
//! - **Freshness.** Applications have no status subresource and no `observedGeneration`.
//!   Argo CD itself treats its status as stale while `spec.source` (or `spec.sources`, or
//!   the sync source of `spec.sourceHydrator`), `spec.destination` or
//!   `spec.ignoreDifferences` differ from what `status.sync.comparedTo` records, and so do
//!   we. The comparison is semantic: both sides drop Go's zero values (null, `""`, `false`,
//!   `0`, empty arrays and objects) recursively, because Argo CD writes `comparedTo` back
//!   with `omitempty` while the spec keeps whatever its author wrote.
//! - **Retries.** While a failed sync waits out its retry backoff, the operation phase is
//!   `Running` with `finishedAt` already set. Only `Failed`, `Error` and `Succeeded` are
//!   final, and a failed operation stops counting once a new one is pending (the top-level
//!   `operation` field), since Argo CD replaces the old result when it starts the new one.
//! - **Conditions.** Only condition types ending in `Error` matter; warnings such as
//!   `OrphanedResourceWarning` are ignored. `InvalidSpecError`, `ComparisonError` and
//!   `SyncError` fail the attempt; any other error holds readiness back.
//! - **Applications that deploy nothing** report Healthy and Synced. We trust that
//!   verdict: such an environment is Ready (valid, if odd).
//! - **Superseded errors.** Argo CD's automated sync records a `SyncError` ("Failed last
//!   sync attempt to …") after a failed sync, only while that attempt is not successful, and
//!   clears it on a later refresh — seen lingering after the next operation had already
//!   succeeded. While a new attempt runs, or once it succeeded, that condition describes
//!   the old attempt, so it holds readiness back instead of failing it.
//! - **A failed attempt nobody will repeat.** Argo CD does not retry a revision whose
//!   automated sync failed; while it retries, it waits out a backoff of up to minutes. The
//!   report carries the failed attempt (when it started, whether it backs off, whether the
//!   environment's namespace was missing) so the lifecycle core can decide to ask for a new
//!   sync once the namespace exists ([`sync_request`], [`retry_end`]).
//! - **Deletion.** Deleting an Application makes Argo CD prune what it deployed. One owned
//!   by an ApplicationSet, or rendered by another Application (App-of-Apps, seen in Argo
//!   CD's resource tracking), would just be re-created; one that deploys outside the
//!   environment's namespace would prune things that are not the environment's. The
//!   operator never deletes any of them. An ApplicationSet's Application whose template
//!   wrote the environment's UID (TestMesh's generator, [`crate::lifecycle::generator`])
//!   is deleted by its ApplicationSet once the environment leaves the generator's list.

use jiff::Timestamp;
use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Map, Value, json};

use super::json::{items, text};
use crate::lifecycle::environment::{AppDeletion, AppReport, FailedAttempt, Readiness};
use crate::resources::ENVIRONMENT_UID_ANNOTATION;

pub const GROUP: &str = "argoproj.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Application";
pub const PLURAL: &str = "applications";

/// Condition types that fail the current attempt: the spec is invalid, the desired state
/// cannot be rendered or compared, or the sync failed.
const FAILING_CONDITIONS: [&str; 3] = ["InvalidSpecError", "ComparisonError", "SyncError"];

/// How many resources a health message names before counting the rest.
const NAMED_RESOURCES: usize = 3;

/// Argo CD's resource tracking on what an Application deploys (the default since Argo CD
/// 3.0): `<app>:<group>/<kind>:<namespace>/<name>`.
const TRACKING_ANNOTATION: &str = "argocd.argoproj.io/tracking-id";
/// Argo CD's label tracking (the default before 3.0): the managing Application's name.
const TRACKING_LABEL: &str = "app.kubernetes.io/instance";

/// How Argo CD's automated sync starts the `SyncError` it records about the last sync
/// attempt — only while that attempt's phase is not successful, so once the recorded
/// operation succeeded the condition is stale.
const LAST_ATTEMPT_FAILED: &str = "Failed last sync attempt";

/// Who TestMesh says it is when it asks Argo CD to sync (`operation.initiatedBy`).
const SYNC_INITIATOR: &str = "testmesh";

/// The API resource of Argo CD Applications, for a dynamic `Api`.
pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

/// ApplicationSets, which mint Applications from a template and generators.
pub fn application_set_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(GROUP, VERSION, "ApplicationSet"),
        "applicationsets",
    )
}

/// Whether the ApplicationSet `set` generates from the plugin whose ConfigMap is
/// `config_map`, directly or inside a matrix or merge generator.
pub fn generates_from(set: &DynamicObject, config_map: &str) -> bool {
    any_plugin(set, &|plugin| names_config_map(plugin, config_map))
}

/// Whether one of the ApplicationSet `set`'s generators from the plugin whose ConfigMap
/// is `config_map` (directly or inside a matrix or merge generator) asks for the
/// environments of `workspace` (its input parameter `workspace`).
pub fn generates_for(set: &DynamicObject, config_map: &str, workspace: &str) -> bool {
    any_plugin(set, &|plugin| {
        names_config_map(plugin, config_map)
            && plugin
                .pointer("/input/parameters/workspace")
                .and_then(Value::as_str)
                == Some(workspace)
    })
}

fn names_config_map(plugin: &Value, config_map: &str) -> bool {
    plugin.pointer("/configMapRef/name").and_then(Value::as_str) == Some(config_map)
}

/// Whether one of `set`'s plugin generators, directly or inside a matrix or merge
/// generator, is one `accept` accepts.
fn any_plugin(set: &DynamicObject, accept: &dyn Fn(&Value) -> bool) -> bool {
    fn any(generators: Option<&Value>, accept: &dyn Fn(&Value) -> bool) -> bool {
        generators
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .any(|generator| {
                generator.get("plugin").is_some_and(accept)
                    || ["matrix", "merge"].iter().any(|combining| {
                        any(
                            generator.pointer(&format!("/{combining}/generators")),
                            accept,
                        )
                    })
            })
    }
    any(set.data.pointer("/spec/generators"), accept)
}

/// The applicationset-controller's refresh annotation: while it is set, a generation is
/// pending; the controller removes it (an update conditional on the resourceVersion it
/// read) at the end of the first generation that began after it was set.
const APPLICATION_SET_REFRESH: &str = "argocd.argoproj.io/application-set-refresh";

/// The merge patch that makes the applicationset-controller generate again now. The
/// controller only asks whether the annotation is there; its value is the time asked, so
/// that every request changes the object: a second request while the first is pending
/// would otherwise change nothing, and a generation that began before it (from a listing
/// read before it) would remove the annotation unopposed.
pub fn application_set_refresh(asked_at: Timestamp) -> Value {
    json!({"metadata": {"annotations": {APPLICATION_SET_REFRESH: asked_at.to_string()}}})
}

/// Whether `set` still has a generation pending that was asked for with
/// [`application_set_refresh`].
pub fn refresh_pending(set: &DynamicObject) -> bool {
    set.annotations().contains_key(APPLICATION_SET_REFRESH)
}

/// Keeps only what [`interpret`] reads: of `status.resources` the ones not Healthy
/// (health messages name them); not the sync history, the summary or the last sync's
/// per-resource results.
pub fn trim_for_cache(app: &mut DynamicObject) {
    let Some(status) = app.data.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    for unread in ["history", "summary"] {
        status.remove(unread);
    }
    if let Some(operation) = status
        .get_mut("operationState")
        .and_then(Value::as_object_mut)
    {
        operation.remove("syncResult");
    }
    if let Some(resources) = status.get_mut("resources").and_then(Value::as_array_mut) {
        resources.retain(|resource| resource.pointer("/health/status") != Some(&json!("Healthy")));
    }
}

/// Interprets `app` for an environment whose namespace is `environment_namespace`.
pub fn interpret(app: &DynamicObject, environment_namespace: &str) -> AppReport {
    let application = Application::read(app);
    let (readiness, why) = application.readiness(environment_namespace);
    AppReport {
        readiness,
        health: application.health.unwrap_or("Unknown").to_owned(),
        sync: application.sync.map(str::to_owned),
        revision: application.revision(),
        message: format!("Argo CD Application {}: {why}", application.name),
        deletion: application.deletion(environment_namespace),
        failed_attempt: application.failed_attempt(environment_namespace),
        creates_namespace: items(&app.data, "/spec/syncPolicy/syncOptions")
            .filter_map(Value::as_str)
            .any(|option| option == "CreateNamespace=true"),
        synced_at: application
            .last_sync_succeeded
            .then(|| text(&app.data, "/status/operationState/startedAt"))
            .flatten()
            .and_then(|at| at.parse().ok()),
    }
}

/// The merge patch that asks Argo CD to sync `app` now, as `argocd app sync` does: an
/// `operation` like the one its automated sync writes (the app's source, prune setting,
/// sync options and retry strategy; the revision left for Argo CD to resolve from the
/// target), initiated by TestMesh. The `resourceVersion` read makes it fail with a
/// conflict if the app changed since — Argo CD may have started an operation meanwhile.
pub fn sync_request(app: &DynamicObject) -> Value {
    let spec = &app.data["spec"];
    let mut sync = Map::new();
    match spec.get("sources").filter(|sources| !sources.is_null()) {
        Some(sources) => sync.insert("sources".to_owned(), sources.clone()),
        None => sync.insert("source".to_owned(), spec["source"].clone()),
    };
    if spec.pointer("/syncPolicy/automated/prune") == Some(&Value::Bool(true)) {
        sync.insert("prune".to_owned(), Value::Bool(true));
    }
    if let Some(options) = spec
        .pointer("/syncPolicy/syncOptions")
        .filter(|options| !options.is_null())
    {
        sync.insert("syncOptions".to_owned(), options.clone());
    }
    let retry = spec
        .pointer("/syncPolicy/retry")
        .filter(|retry| !retry.is_null())
        .cloned()
        .unwrap_or_else(|| json!({ "limit": 5 }));
    json!({
        "metadata": { "resourceVersion": app.metadata.resource_version },
        "operation": {
            "sync": sync,
            "initiatedBy": { "username": SYNC_INITIATOR },
            "retry": retry,
        },
    })
}

/// The merge patch that ends the retry backoff of `app`'s operation, as `argocd app
/// terminate-op` does: Argo CD then records it `Failed` and clears it, and a new sync can
/// be requested. Pinned to the `resourceVersion` read.
pub fn retry_end(app: &DynamicObject) -> Value {
    json!({
        "metadata": { "resourceVersion": app.metadata.resource_version },
        "status": { "operationState": { "phase": "Terminating" } },
    })
}

/// The parts of an Application the rules read.
struct Application<'a> {
    /// `namespace/name`, for messages.
    name: String,
    being_deleted: bool,
    /// The name of the ApplicationSet that owns it, if one does.
    application_set: Option<&'a str>,
    /// The environment UID its template wrote (TestMesh's generator's `environmentUid`).
    generated_for: Option<&'a str>,
    /// The Application that deployed it (App-of-Apps), from Argo CD's resource tracking.
    parent_application: Option<&'a str>,
    destination_namespace: Option<&'a str>,
    health: Option<&'a str>,
    sync: Option<&'a str>,
    /// A sync was requested (top-level `operation`) and has not completed yet.
    operation_pending: bool,
    /// `status.operationState` records a sync that succeeded: a `SyncError` about an
    /// earlier attempt lingers until Argo CD's next refresh clears it.
    last_sync_succeeded: bool,
    last_operation: LastOperation<'a>,
    /// Conditions whose type ends in `Error`, in Argo CD's order.
    errors: Vec<Condition<'a>>,
    /// Everything but the metadata: `spec`, `status`, `operation`.
    data: &'a Value,
}

/// `status.operationState`, as far as readiness cares.
enum LastOperation<'a> {
    NoneOrSucceeded,
    Failed {
        phase: &'a str,
        message: Option<&'a str>,
    },
    /// A failed attempt waiting out its retry backoff.
    Retrying {
        message: Option<&'a str>,
    },
    /// Running, terminating, or in a phase we do not know to be final.
    Unfinished {
        phase: Option<&'a str>,
        message: Option<&'a str>,
    },
}

struct Condition<'a> {
    kind: &'a str,
    message: Option<&'a str>,
}

impl<'a> Application<'a> {
    fn read(app: &'a DynamicObject) -> Self {
        let data = &app.data;
        let name = app.metadata.name.as_deref().unwrap_or_default();
        Application {
            name: match app.metadata.namespace.as_deref() {
                Some(namespace) => format!("{namespace}/{name}"),
                None => name.to_owned(),
            },
            being_deleted: app.metadata.deletion_timestamp.is_some(),
            application_set: app
                .metadata
                .owner_references
                .iter()
                .flatten()
                .find(|owner| owner.kind == "ApplicationSet")
                .map(|owner| owner.name.as_str()),
            generated_for: app
                .metadata
                .annotations
                .as_ref()
                .and_then(|annotations| annotations.get(ENVIRONMENT_UID_ANNOTATION))
                .map(String::as_str),
            parent_application: tracking_parent(&app.metadata),
            destination_namespace: text(data, "/spec/destination/namespace"),
            health: text(data, "/status/health/status"),
            sync: text(data, "/status/sync/status"),
            operation_pending: data
                .get("operation")
                .is_some_and(|operation| !operation.is_null()),
            last_operation: LastOperation::read(data.pointer("/status/operationState")),
            last_sync_succeeded: text(data, "/status/operationState/phase") == Some("Succeeded"),
            errors: items(data, "/status/conditions")
                .filter_map(|condition| {
                    Some(Condition {
                        kind: text(condition, "/type")?,
                        message: text(condition, "/message"),
                    })
                })
                .filter(|condition| condition.kind.ends_with("Error"))
                .collect(),
            data,
        }
    }

    /// The readiness rules, first match wins, with what was seen.
    fn readiness(&self, environment_namespace: &str) -> (Readiness, String) {
        if self.being_deleted {
            return (Readiness::Progressing, "being deleted".to_owned());
        }
        if let Some(mismatch) = self.foreign_destination(environment_namespace) {
            return (Readiness::Failed, mismatch);
        }
        if let LastOperation::Failed { phase, message } = self.last_operation
            && !self.operation_pending
        {
            return (
                Readiness::Failed,
                with_detail(format!("operation {phase}"), message),
            );
        }
        let superseded = |condition: &Condition<'_>| {
            condition.kind == "SyncError"
                && (self.new_attempt_under_way()
                    || (self.last_sync_succeeded
                        && condition
                            .message
                            .is_some_and(|m| m.starts_with(LAST_ATTEMPT_FAILED))))
        };
        let (failing, holding): (Vec<&Condition<'_>>, Vec<&Condition<'_>>) =
            self.errors.iter().partition(|condition| {
                FAILING_CONDITIONS.contains(&condition.kind) && !superseded(condition)
            });
        if !failing.is_empty() {
            return (Readiness::Failed, describe_conditions(&failing));
        }
        if self.health == Some("Degraded") {
            return (Readiness::Degraded, self.describe_health("Degraded"));
        }
        if !holding.is_empty() {
            return (Readiness::Progressing, describe_conditions(&holding));
        }
        if let Some(operation) = self.unfinished_operation() {
            return (Readiness::Progressing, operation);
        }
        if let Some(field) = self.stale_field() {
            return (
                Readiness::Progressing,
                format!(
                    "status not yet compared with the current spec ({field} differs from status.sync.comparedTo)"
                ),
            );
        }
        let health = match self.health {
            Some("Healthy") => None,
            Some(health) => Some(self.describe_health(health)),
            None => Some("no health reported yet".to_owned()),
        };
        let sync = match self.sync {
            Some("Synced") => None,
            Some(sync) => Some(format!("sync {sync}")),
            None => Some("no sync status reported yet".to_owned()),
        };
        let unmet: Vec<String> = health.into_iter().chain(sync).collect();
        if !unmet.is_empty() {
            return (Readiness::Progressing, unmet.join(", "));
        }
        let ready = match self.revision() {
            Some(revision) => format!("Healthy and Synced at {revision}"),
            None => "Healthy and Synced".to_owned(),
        };
        (Readiness::Ready, ready)
    }

    /// A sync was requested and not yet taken up, or one is running (not waiting out a
    /// retry backoff).
    fn new_attempt_under_way(&self) -> bool {
        self.operation_pending || matches!(self.last_operation, LastOperation::Unfinished { .. })
    }

    /// The last sync attempt, when it failed and Argo CD will not start another by itself
    /// soon: it gave up, or it waits out a retry backoff.
    fn failed_attempt(&self, environment_namespace: &str) -> Option<FailedAttempt> {
        if self.being_deleted {
            return None;
        }
        let (backing_off, message) = match self.last_operation {
            // A new sync is pending once the failed one is over.
            LastOperation::Failed { message, .. } if !self.operation_pending => (false, message),
            // While it backs off, the operation stays in `operation`.
            LastOperation::Retrying { message } => (true, message),
            LastOperation::Failed { .. } => return None,
            LastOperation::NoneOrSucceeded | LastOperation::Unfinished { .. } => return None,
        };
        let missing_namespace = format!("namespaces \"{environment_namespace}\" not found");
        Some(FailedAttempt {
            started_at: text(self.data, "/status/operationState/startedAt")
                .and_then(|at| at.parse().ok()),
            backing_off,
            namespace_missing: message.is_some_and(|m| m.contains(&missing_namespace)),
        })
    }

    fn deletion(&self, environment_namespace: &str) -> AppDeletion {
        if self.being_deleted {
            return AppDeletion::InProgress;
        }
        if let Some(application_set) = self.application_set {
            return match self.generated_for {
                Some(environment_uid) => AppDeletion::Generated {
                    application_set: application_set.to_owned(),
                    environment_uid: environment_uid.to_owned(),
                },
                None => AppDeletion::Retained(format!(
                    "owned by ApplicationSet {application_set}, which would re-create it (an ApplicationSet that generates from TestMesh and writes {ENVIRONMENT_UID_ANNOTATION} deletes it at teardown)"
                )),
            };
        }
        if let Some(parent) = self.parent_application {
            return AppDeletion::Retained(format!(
                "deployed by Argo CD Application {parent} (App-of-Apps), which would re-create it; remove it from that Application's source to have it pruned"
            ));
        }
        match self.foreign_destination(environment_namespace) {
            Some(mismatch) => AppDeletion::Retained(mismatch),
            None => AppDeletion::Deletable,
        }
    }

    /// Why the app deploys outside the environment's namespace, if it does.
    fn foreign_destination(&self, environment_namespace: &str) -> Option<String> {
        super::deploys_elsewhere(
            self.destination_namespace,
            "destination namespace",
            environment_namespace,
        )
    }

    /// What the current or requested operation is doing, if it is not done.
    fn unfinished_operation(&self) -> Option<String> {
        match self.last_operation {
            LastOperation::Retrying { message } => Some(format!(
                "operation Running (retrying after: {})",
                message.unwrap_or("a failed attempt")
            )),
            LastOperation::Unfinished { phase, message } => {
                let phase = phase.map_or_else(
                    || "operation in an unknown phase".to_owned(),
                    |phase| format!("operation {phase}"),
                );
                Some(with_detail(phase, message))
            }
            LastOperation::Failed { phase, message } if self.operation_pending => {
                Some(with_detail(
                    format!("sync operation pending (the previous one ended {phase})"),
                    message,
                ))
            }
            LastOperation::NoneOrSucceeded if self.operation_pending => {
                Some("sync operation pending".to_owned())
            }
            LastOperation::Failed { .. } | LastOperation::NoneOrSucceeded => None,
        }
    }

    /// The first spec field whose current value Argo CD has not compared yet, if any.
    fn stale_field(&self) -> Option<&'static str> {
        let spec = self.data.get("spec");
        let compared_to = self.data.pointer("/status/sync/comparedTo");
        let hydrated_source = field(spec, "sourceHydrator")
            .filter(|hydrator| !hydrator.is_null())
            .map(hydrator_sync_source);
        let multiple_sources = field(spec, "sources")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        let sources = if let Some(hydrated) = &hydrated_source {
            (
                "spec.sourceHydrator",
                Some(hydrated),
                field(compared_to, "source"),
            )
        } else if multiple_sources {
            (
                "spec.sources",
                field(spec, "sources"),
                field(compared_to, "sources"),
            )
        } else {
            (
                "spec.source",
                field(spec, "source"),
                field(compared_to, "source"),
            )
        };
        [
            sources,
            (
                "spec.destination",
                field(spec, "destination"),
                field(compared_to, "destination"),
            ),
            (
                "spec.ignoreDifferences",
                field(spec, "ignoreDifferences"),
                field(compared_to, "ignoreDifferences"),
            ),
        ]
        .into_iter()
        .find(|(_, desired, compared)| !semantically_equal(*desired, *compared))
        .map(|(name, _, _)| name)
    }

    /// `health <status>`, with Argo CD's health message or else the resources in that health.
    /// Both are often absent: Argo CD 3 deprecated the message and keeps per-resource health
    /// out of the Application unless `controller.resource.health.persist` is true.
    fn describe_health(&self, health: &str) -> String {
        let detail = text(self.data, "/status/health/message")
            .map(str::to_owned)
            .or_else(|| self.resources_in_health(health));
        with_detail(format!("health {health}"), detail.as_deref())
    }

    fn resources_in_health(&self, health: &str) -> Option<String> {
        let matching: Vec<&Value> = items(self.data, "/status/resources")
            .filter(|resource| text(resource, "/health/status") == Some(health))
            .collect();
        if matching.is_empty() {
            return None;
        }
        let mut named: Vec<String> = matching
            .iter()
            .take(NAMED_RESOURCES)
            .map(|resource| describe_resource(resource))
            .collect();
        if matching.len() > NAMED_RESOURCES {
            named.push(format!("and {} more", matching.len() - NAMED_RESOURCES));
        }
        Some(named.join("; "))
    }

    /// The revision Argo CD compared against (all of them, for multi-source apps).
    fn revision(&self) -> Option<String> {
        text(self.data, "/status/sync/revision")
            .map(str::to_owned)
            .or_else(|| {
                let revisions: Vec<&str> = items(self.data, "/status/sync/revisions")
                    .filter_map(Value::as_str)
                    .filter(|revision| !revision.is_empty())
                    .collect();
                (!revisions.is_empty()).then(|| revisions.join(", "))
            })
    }
}

impl<'a> LastOperation<'a> {
    fn read(state: Option<&'a Value>) -> Self {
        let Some(state) = state.filter(|state| !state.is_null()) else {
            return LastOperation::NoneOrSucceeded;
        };
        let finished = state.get("finishedAt").is_some_and(|at| !at.is_null());
        let message = text(state, "/message");
        match text(state, "/phase") {
            Some("Succeeded") if finished => LastOperation::NoneOrSucceeded,
            Some(phase @ ("Failed" | "Error")) => LastOperation::Failed { phase, message },
            Some("Running") if finished => LastOperation::Retrying { message },
            phase => LastOperation::Unfinished { phase, message },
        }
    }
}

/// The Application whose resource tracking marks `metadata` as deployed by it.
fn tracking_parent(metadata: &kube::api::ObjectMeta) -> Option<&str> {
    let annotated = metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(TRACKING_ANNOTATION))
        .and_then(|tracking_id| tracking_id.split(':').next())
        .filter(|parent| !parent.is_empty());
    annotated.or_else(|| {
        metadata
            .labels
            .as_ref()
            .and_then(|labels| labels.get(TRACKING_LABEL))
            .map(String::as_str)
            .filter(|parent| !parent.is_empty())
    })
}

/// `SyncError: <message>; ComparisonError: <message>`.
fn describe_conditions(conditions: &[&Condition<'_>]) -> String {
    conditions
        .iter()
        .map(|condition| with_detail(condition.kind.to_owned(), condition.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// `Deployment review-pr-123/web: <health message>`.
fn describe_resource(resource: &Value) -> String {
    let kind = text(resource, "/kind").unwrap_or("resource");
    let name = text(resource, "/name").unwrap_or_default();
    let resource_name = match text(resource, "/namespace") {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    };
    with_detail(resource_name, text(resource, "/health/message"))
}

/// The source Argo CD syncs from when a source hydrator is configured (its
/// `SourceHydrator.GetSyncSource`), which is what `comparedTo.source` then records.
fn hydrator_sync_source(hydrator: &Value) -> Value {
    let repo_url =
        text(hydrator, "/syncSource/repoURL").or_else(|| text(hydrator, "/drySource/repoURL"));
    json!({
        "repoURL": repo_url,
        "path": text(hydrator, "/syncSource/path"),
        "targetRevision": text(hydrator, "/syncSource/targetBranch"),
    })
}

/// Whether two spec fragments are equal once Go's zero values are dropped from both.
fn semantically_equal(desired: Option<&Value>, compared: Option<&Value>) -> bool {
    desired.and_then(without_zero_values) == compared.and_then(without_zero_values)
}

/// `value` without the zero values Go's `omitempty` leaves out (null, `""`, `false`, `0`,
/// empty arrays and objects), recursively; `None` when nothing is left. Array items are
/// kept in place (as null) so positions still line up.
fn without_zero_values(value: &Value) -> Option<Value> {
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::Number(number) if number.as_f64() == Some(0.0) => None,
        Value::String(string) if string.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .map(|item| without_zero_values(item).unwrap_or(Value::Null))
                .collect(),
        )),
        Value::Object(fields) => {
            let kept: Map<String, Value> = fields
                .iter()
                .filter_map(|(name, value)| Some((name.clone(), without_zero_values(value)?)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Bool(true) | Value::Number(_) | Value::String(_) => Some(value.clone()),
    }
}

fn field<'v>(object: Option<&'v Value>, name: &str) -> Option<&'v Value> {
    object.and_then(|object| object.get(name))
}

/// `head: detail`, or `head` alone when there is no detail.
fn with_detail(head: String, detail: Option<&str>) -> String {
    match detail {
        Some(detail) => format!("{head}: {detail}"),
        None => head,
    }
}

#[cfg(test)]
mod tests;
