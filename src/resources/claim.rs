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
use super::validation::{
    DNS1123_LABEL, DNS1123_LABEL_TEMPLATE, DNS1123_SUBDOMAIN, DNS1123_SUBDOMAIN_TEMPLATE,
    LABEL_VALUE,
};

/// Default lease of a claim, in minutes: a crashed CI job cannot pin an environment longer.
pub const DEFAULT_MAX_DURATION_MINUTES: u32 = 120;

/// What a claim's template may write in `namespace`, `providerAppName` and `displayName`
/// for the claim's context, so that one template serves every context
/// (`namespace: review-{{context}}`).
pub const CONTEXT_PLACEHOLDER: &str = "{{context}}";

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
#[x_kube(validation = resolves_to("namespace", DNS1123_LABEL, 63, "a namespace name (a lowercase DNS-1123 label of at most 63 characters)"))]
#[x_kube(validation = resolves_to("providerAppName", DNS1123_SUBDOMAIN, 253, "an object name (a lowercase DNS-1123 subdomain of at most 253 characters)"))]
#[x_kube(validation = baseline_differs_from_resolved_namespace())]
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

    /// The environment to create when none of this context can be reused. In its
    /// `namespace`, `providerAppName` and `displayName`, `{{context}}` stands for the
    /// claim's context, so one template serves every context (`namespace:
    /// review-{{context}}` is `review-pr-123` for context `pr-123`); what they resolve to
    /// must be a namespace and an object name. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(transform = placeholders_allowed)]
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

/// CEL for the template's `field` with the placeholder replaced by the claim's context.
fn resolved(field: &str) -> String {
    // CEL reaches a property named like one of its reserved words by an escaped name.
    let property = match field {
        "namespace" => "__namespace__",
        other => other,
    };
    format!("self.template.{property}.replace('{CONTEXT_PLACEHOLDER}', self.context)")
}

/// Admission rule: the template's `field`, resolved for the claim's context, matches
/// `pattern` and is at most `max` characters long — checked on the claim, where the
/// context is known, rather than on the environment created later from it.
fn resolves_to(field: &str, pattern: &str, max: usize, what: &str) -> kube::core::Rule {
    let value = resolved(field);
    kube::core::Rule {
        field_path: Some(format!(".template.{field}")),
        ..kube::core::Rule::new(format!(
            "!has(self.template) || ({value}.matches(r'{pattern}') && size({value}) <= {max})"
        ))
        .message(kube::core::Message::Expression(format!(
            "\"template.{field} is \" + {value} + \" for context \" + self.context + \", which is not {what}\""
        )))
    }
}

/// Admission rule: the template's baseline is not the namespace it resolves to (the
/// template's own rule sees only the unresolved name).
fn baseline_differs_from_resolved_namespace() -> kube::core::Rule {
    let namespace = resolved("namespace");
    kube::core::Rule {
        field_path: Some(".template.routing.baselineNamespace".into()),
        ..kube::core::Rule::new(format!(
            "!has(self.template) || !has(self.template.routing) || !has(self.template.routing.baselineNamespace) || self.template.routing.baselineNamespace != {namespace}"
        ))
        .message("must differ from the namespace the template resolves to for this context")
    }
}

/// The template's schema as a claim holds it: [`EnvironmentTemplate`]'s, except that its
/// `namespace` and `providerAppName` may contain [`CONTEXT_PLACEHOLDER`] (what they
/// resolve to is checked by the claim's own rules).
fn placeholders_allowed(schema: &mut schemars::Schema) {
    let patterns = [
        ("namespace", DNS1123_LABEL_TEMPLATE),
        ("providerAppName", DNS1123_SUBDOMAIN_TEMPLATE),
    ];
    let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    for (field, pattern) in patterns {
        if let Some(property) = properties
            .get_mut(field)
            .and_then(serde_json::Value::as_object_mut)
        {
            property.insert("pattern".into(), pattern.into());
            property.insert("maxLength".into(), 253.into());
            // A template's name is not the environment's yet: no transition rule applies.
            property.remove("x-kubernetes-validations");
        }
    }
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
