//! The `TestEnvironmentClaim` resource: one run's request for an environment.
//!
//! This is the PersistentVolumeClaim idea applied to environments: a CI job creates a
//! claim for a context, waits for `Ready`, reads the routing policy from the claim's
//! status, runs, and deletes the claim. The operator binds the claim to a warm environment
//! of the same context when one exists, or creates one from the claim's template.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::environment::EnvironmentTemplate;
use super::exact_time;
use super::phase::ClaimPhase;
use super::validation::{DNS1123_SUBDOMAIN, LABEL_VALUE};

/// Default lease of a claim, in minutes: a crashed CI job cannot pin an environment longer.
pub const DEFAULT_MAX_DURATION_MINUTES: u32 = 120;

/// A run's request for a test environment of one context.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "testmesh.io",
    version = "v1alpha1",
    kind = "TestEnvironmentClaim",
    doc = "A run's request for a test environment of one context (see spec).",
    plural = "testenvironmentclaims",
    namespaced,
    status = "TestEnvironmentClaimStatus",
    shortname = "tec",
    shortname = "testenvclaim",
    category = "testmesh",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Context","type":"string","jsonPath":".spec.context"}"#,
    printcolumn = r#"{"name":"Environment","type":"string","jsonPath":".status.environmentName"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Queue","type":"integer","jsonPath":".status.queuePosition","description":"Position in the queue while waiting (1 = next)"}"#,
    printcolumn = r#"{"name":"Reused","type":"boolean","jsonPath":".status.reused"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = kube::core::Rule {
        field_path: Some(".spec".into()),
        ..kube::core::Rule::new("has(self.spec.template) || has(self.spec.environmentName)")
            .message("spec.template or spec.environmentName must be set")
    }
)]
#[serde(rename_all = "camelCase")]
pub struct TestEnvironmentClaimSpec {
    /// The context to claim an environment for, e.g. `pr-123`. Immutable.
    #[schemars(length(min = 1, max = 63), regex(pattern = LABEL_VALUE))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.context is immutable"))]
    pub context: String,

    /// Bind to this environment (in the claim's namespace) instead of choosing one by
    /// context; its context must match. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.environmentName is immutable"))]
    pub environment_name: Option<String>,

    /// The environment to create when none of this context can be reused. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf").message("spec.template is immutable"))]
    pub template: Option<EnvironmentTemplate>,

    /// Lease: the claim releases its environment after this many minutes even if nobody
    /// deletes it (1 to 1440). Defaults to 120.
    #[serde(default = "default_max_duration_minutes")]
    #[schemars(range(min = 1, max = 1440))]
    pub max_duration_minutes: u32,
}

fn default_max_duration_minutes() -> u32 {
    DEFAULT_MAX_DURATION_MINUTES
}

/// What the operator has decided about a claim.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TestEnvironmentClaimStatus {
    /// pending, bound, released, expired or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ClaimPhase>,
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Kubernetes-convention conditions; `Ready=True` when the bound environment can serve
    /// the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The environment bound to this claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_name: Option<String>,
    /// The bound environment's namespace, where the run's services are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// True when an existing warm environment was reused instead of provisioning one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reused: Option<bool>,
    /// Service name to URL, copied from the bound environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routing_policy: BTreeMap<String, String>,
    /// Position in the queue for a busy context (1 = next), while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<u32>,
    /// When the claim was bound.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub bound_at: Option<Time>,
    /// When the lease runs out (`boundAt + maxDurationMinutes`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_time")]
    #[schemars(with = "Option<Time>")]
    pub lease_expires_at: Option<Time>,
}
