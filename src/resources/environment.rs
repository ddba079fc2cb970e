//! The `TestEnvironment` resource: one isolated, reusable namespace per test context.
//!
//! The spec is what a user (or a claim's template) asks for; the status is what the
//! operator has observed and decided. Admission rules live on the types themselves so the
//! API server rejects bad input before the operator ever sees it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::exact_time;
use super::phase::Phase;
use super::validation::{DNS1035_LABEL, DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_VALUE};

/// Default idle lifetime of an environment, in minutes.
pub const DEFAULT_TTL_MINUTES: u32 = 120;
/// Longest idle lifetime accepted: 30 days.
pub const MAX_TTL_MINUTES: u32 = 43_200;

/// An isolated namespace for one test context, deployed by a GitOps controller, kept warm
/// between runs and destroyed when it has been idle for longer than `ttlMinutes`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "testmesh.io",
    version = "v1alpha1",
    kind = "TestEnvironment",
    doc = "An isolated, reusable test environment for one context (see spec).",
    plural = "testenvironments",
    namespaced,
    status = "TestEnvironmentStatus",
    shortname = "te",
    shortname = "testenv",
    category = "testmesh",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Context","type":"string","jsonPath":".spec.context"}"#,
    printcolumn = r#"{"name":"Namespace","type":"string","jsonPath":".spec.namespace"}"#,
    printcolumn = r#"{"name":"TTL","type":"integer","jsonPath":".spec.ttlMinutes","description":"Idle lifetime in minutes"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    // A string, not a date: kubectl shows a date as an age, and a future one as <invalid>.
    printcolumn = r#"{"name":"Expires","type":"string","jsonPath":".status.expiresAt","description":"When it is torn down if no run claims it (UTC); empty while a run holds it"}"#,
    printcolumn = r#"{"name":"Last Used","type":"date","jsonPath":".status.lastUsedAt","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule {
    field_path: Some(".destroy".into()),
    ..kube::core::Rule::new("!has(oldSelf.destroy) || !oldSelf.destroy || (has(self.destroy) && self.destroy)")
        .message("cannot be undone: a destroyed environment is not brought back; create a new one")
})]
pub struct TestEnvironmentSpec {
    /// The reuse key, e.g. `pr-123` or `nightly`: a run asking for this context in this
    /// workspace gets this environment while it is warm. A valid label value; immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.context is immutable"))]
    pub context: String,

    /// What the environment is made of and how it is deployed.
    #[serde(flatten)]
    pub template: EnvironmentTemplate,

    /// Set to true to tear the environment down now while keeping this record (it ends in
    /// phase `destroyed`). Asynchronous, and cannot be undone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub destroy: bool,
}

/// Everything that describes an environment apart from its context: what a claim supplies
/// so the operator can create an environment when none can be reused.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = kube::core::Rule {
    field_path: Some(".routing.baselineNamespace".into()),
    ..kube::core::Rule::new(
        "!has(self.routing) || !has(self.routing.baselineNamespace) || self.routing.baselineNamespace != self.__namespace__"
    ).message("must differ from namespace: the baseline stands in for services the environment does not deploy")
})]
pub struct EnvironmentTemplate {
    /// Human title shown in listings, e.g. "PR-123 Review Environment".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub display_name: Option<String>,

    /// The GitOps controller that deploys the environment: `argocd` or `flux`. Immutable.
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("provider is immutable"))]
    pub provider: Provider,

    /// Name of the Argo CD Application (or Flux Kustomization) that deploys this
    /// environment. TestMesh watches it and never authors it.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    pub provider_app_name: String,

    /// Namespace of the provider object. Defaults to the operator's setting (`argocd` for
    /// Argo CD, `flux-system` for Flux).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub provider_app_namespace: Option<String>,

    /// The isolated namespace the environment's services run in (a DNS-1123 label). The
    /// operator creates it and deletes it on teardown; it never adopts an existing one.
    /// Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("namespace is immutable"))]
    pub namespace: String,

    /// Idle lifetime in minutes (1 to 43200): the environment is destroyed when it has not
    /// been used for this long. Defaults to 120.
    #[serde(default = "default_ttl_minutes")]
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    pub ttl_minutes: u32,

    /// Minutes idle (1 to 43200) after which a ready, unused environment goes to sleep:
    /// TestMesh's ApplicationSet generator lists it with `awake: false` and `replicas:
    /// 0`, its ApplicationSet's template scales it down, and Argo CD syncs that. A claim
    /// wakes it. The TTL keeps counting. Argo CD only, and only for an Application
    /// generated from TestMesh (anything else would be reverted by GitOps); unset: never
    /// sleeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = MAX_TTL_MINUTES))]
    pub sleep_after_minutes: Option<u32>,

    /// The services deployed in the environment; names are unique.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["name".into()]))]
    pub services: Vec<ServiceSpec>,

    /// Where services that are not deployed in the environment are reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<RoutingSpec>,
}

fn default_ttl_minutes() -> u32 {
    DEFAULT_TTL_MINUTES
}

/// The GitOps controller that deploys an environment.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// An Argo CD `Application` (argoproj.io/v1alpha1).
    Argocd,
    /// A Flux `Kustomization` (kustomize.toolkit.fluxcd.io/v1).
    Flux,
}

/// One service the environment deploys.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service name; also the Kubernetes Service name (a DNS-1035 label).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1035_LABEL))]
    pub name: String,
    /// Container image deployed, e.g. `myrepo/user-service:pr-123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// Source repository, e.g. `github.com/org/user-service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub repo: Option<String>,
    /// Git ref deployed (branch, tag or commit), e.g. `pr-123`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub source_ref: Option<String>,
}

/// Where services that are not deployed in the environment are reached.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Namespace whose Services stand in for the ones this environment does not deploy
    /// (the service-under-test pattern), e.g. `staging`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL))]
    pub baseline_namespace: Option<String>,
    /// Explicit URLs by service name; they win over both the environment and the baseline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(k, k.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(k) <= 63)"
    ).message("routing.overrides keys must be service names (DNS-1035 labels)"))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(k, isURL(self[k]) && (self[k].startsWith('http://') || self[k].startsWith('https://')))"
    ).message("routing.overrides values must be absolute http:// or https:// URLs"))]
    pub overrides: BTreeMap<String, String>,
    /// Also publish the policy as the ConfigMap `testmesh-routing` in the environment's
    /// namespace, one key per service, for test pods to mount. Off by default: the
    /// environment's status and its bound claims carry the policy either way. Turned off
    /// again, the ConfigMap is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_config_map: bool,
}

/// What the operator has observed and decided about an environment.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TestEnvironmentStatus {
    /// Lifecycle state: cold, provisioning, warm, running, cooling, sleeping, degraded,
    /// failed, destroying or destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes-convention conditions; `Ready=True` exactly when a run can use the
    /// environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// Service name to URL, for the environment's services and the baseline's; also
    /// published as the ConfigMap `testmesh-routing` in the environment's namespace when
    /// `spec.routing.publishConfigMap` asks for it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing_policy: BTreeMap<String, String>,
    /// Declared services (`spec.services`) with no Service in the namespace yet.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_services: Vec<String>,
    /// When a run last released the environment (or when it became warm); starts the TTL.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub last_used_at: Option<Time>,
    /// `lastUsedAt + ttlMinutes`: when an idle environment is destroyed.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub expires_at: Option<Time>,
    /// `expiresAt` minus the operator's warning lead (`--expiry-warning`): from then
    /// on the environment is expiring soon, and an `ExpiringSoon` Warning event says so.
    /// Absent while a run holds it, or when the warning is off.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub expiry_warning_at: Option<Time>,
    /// The `expiresAt` the `ExpiringSoon` event was published for: equal to `expiresAt`
    /// once it was, so it is published once per expiry instant, also across operator
    /// restarts; a TTL extension or a run's release moves `expiresAt` and re-arms it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub expiry_warned_for: Option<Time>,
    /// When a claim last woke the environment from `sleeping`: it is ready again once
    /// Argo CD has synced the woken app after this instant and the app is Healthy.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub woken_at: Option<Time>,
    /// When provisioning began.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub provisioning_started_at: Option<Time>,
    /// When the environment first became ready.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub ready_at: Option<Time>,
    /// When teardown began.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub teardown_started_at: Option<Time>,
    /// When the namespace was confirmed gone.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub destroyed_at: Option<Time>,
    /// What the GitOps provider last reported for the environment's app.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderStatus>,
    /// Names of the claims currently holding the environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claimed_by: Vec<String>,
    /// When the current holder was bound.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub held_since: Option<Time>,
    /// Whether the current holder got the environment already provisioned (warm,
    /// cooling, or handed over from a previous run) rather than waiting for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_reused: Option<bool>,
}

/// The provider's own view of the environment's app, copied for users.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProviderStatus {
    /// When `health` last changed; grace periods (Degraded, Missing) count from here.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub health_since: Option<Time>,
    /// Health as the provider reports it (Argo CD: Healthy, Progressing, Degraded, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// Sync state as the provider reports it (Argo CD: Synced, OutOfSync, Unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// Revision deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The provider's latest message, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
