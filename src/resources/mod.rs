//! The Kubernetes API of the product: the `testmesh.io/v1alpha1` custom resources.
//!
//! Everything a user writes or reads through `kubectl` is defined here, and the CRD
//! manifests in `crds/` are generated from these types (`testmesh crds`).

mod claim;
mod environment;
mod exact_time;
pub mod phase;
pub(crate) mod validation;

pub use claim::{
    CONTEXT_PLACEHOLDER, DEFAULT_MAX_DURATION_MINUTES, TestEnvironmentClaim,
    TestEnvironmentClaimSpec, TestEnvironmentClaimStatus,
};
pub use environment::{
    DEFAULT_TTL_MINUTES, EnvironmentTemplate, MAX_TTL_MINUTES, Provider, ProviderStatus,
    RoutingSpec, ServiceSpec, TestEnvironment, TestEnvironmentSpec, TestEnvironmentStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CustomResourceDefinition the operator serves, in install order.
pub fn custom_resource_definitions() -> Vec<CustomResourceDefinition> {
    vec![TestEnvironment::crd(), TestEnvironmentClaim::crd()]
}

/// Label on every namespace TestMesh creates (the namespace watch selects on it).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "testmesh";
/// Annotation (and label) with the UID of the environment that created a namespace: the
/// proof of ownership checked before anything is deleted.
pub const ENVIRONMENT_UID_ANNOTATION: &str = "testmesh.io/environment-uid";
/// Annotation `workspace/name` of the environment that created a namespace.
pub const ENVIRONMENT_ANNOTATION: &str = "testmesh.io/environment";
/// Finalizer that holds a deleted TestEnvironment until its teardown is complete.
pub const TEARDOWN_FINALIZER: &str = "testmesh.io/teardown";
/// Label with the UID of the claim an environment was created for (so that claim is
/// reported as not `reused`, and a retried create finds its own environment).
pub const CREATED_FOR_CLAIM_UID_LABEL: &str = "testmesh.io/created-for-claim-uid";
/// Annotation with the name of the claim an environment was created for.
pub const CREATED_FOR_CLAIM_ANNOTATION: &str = "testmesh.io/created-for-claim";
/// The ConfigMap that publishes an environment's routing policy (service name → URL) in
/// its namespace, for test pods to mount, when `spec.routing.publishConfigMap` asks for it.
pub const ROUTING_CONFIG_MAP: &str = "testmesh-routing";

#[cfg(test)]
mod tests {
    use super::*;

    /// `(name, type, jsonPath)` of each column `kubectl get` shows for `crd`.
    fn columns(crd: &CustomResourceDefinition) -> Vec<(String, String, String)> {
        crd.spec.versions[0]
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| (c.name.clone(), c.type_.clone(), c.json_path.clone()))
            .collect()
    }

    #[test]
    fn kubectl_get_shows_readiness_the_queue_and_a_readable_expiry() {
        let ready = r#".status.conditions[?(@.type=="Ready")].status"#;
        let reason = r#".status.conditions[?(@.type=="Ready")].reason"#;
        let (environment, claim) = (TestEnvironment::crd(), TestEnvironmentClaim::crd());
        let cases = [
            (&environment, "Ready", "string", ready),
            (&environment, "Reason", "string", reason),
            (&environment, "Expires", "string", ".status.expiresAt"),
            (&claim, "Ready", "string", ready),
            (&claim, "Reason", "string", reason),
            (&claim, "Queue", "integer", ".status.queuePosition"),
        ];
        for (crd, name, type_, json_path) in cases {
            let kind = &crd.spec.names.kind;
            let column = columns(crd).into_iter().find(|(n, _, _)| n == name);
            assert_eq!(
                column,
                Some((name.to_owned(), type_.to_owned(), json_path.to_owned())),
                "{kind}"
            );
        }
    }

    #[test]
    fn a_date_column_only_shows_instants_that_are_never_in_the_future() {
        // kubectl prints a date column as an age, and a future instant as `<invalid>`.
        let past = [".metadata.creationTimestamp", ".status.lastUsedAt"];
        for crd in custom_resource_definitions() {
            for (name, type_, json_path) in columns(&crd) {
                assert!(
                    type_ != "date" || past.contains(&json_path.as_str()),
                    "{} column {name} shows {json_path} as an age",
                    crd.spec.names.kind
                );
            }
        }
    }
}
