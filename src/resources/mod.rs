//! The Kubernetes API of the product: the `testmesh.io/v1alpha1` custom resources.
//!
//! Everything a user writes or reads through `kubectl` is defined here, and the CRD
//! manifests in `crds/` are generated from these types (`testmesh crds`).

mod claim;
mod environment;
mod validation;

pub use claim::{
    DEFAULT_MAX_DURATION_MINUTES, TestEnvironmentClaim, TestEnvironmentClaimSpec,
    TestEnvironmentClaimStatus,
};
pub use environment::{
    DEFAULT_TTL_MINUTES, EnvironmentTemplate, MAX_TTL_MINUTES, Provider, ProviderStatus,
    RoutingSpec, ServiceSpec, TestEnvironment, TestEnvironmentSpec, TestEnvironmentStatus,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every TestMesh resource.
pub const GROUP: &str = "testmesh.io";

/// Every CustomResourceDefinition the operator serves, in install order.
pub fn custom_resource_definitions() -> Vec<CustomResourceDefinition> {
    vec![TestEnvironment::crd(), TestEnvironmentClaim::crd()]
}
