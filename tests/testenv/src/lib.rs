//! Real Kubernetes control plane for integration tests ("envtest" for Rust).
//!
//! Mocked API servers drift from reality exactly where an operator's bugs hide:
//! server-side apply, RBAC, admission, finalizers, namespace deletion, garbage
//! collection. This crate therefore runs the genuine binaries — etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler — on 127.0.0.1 with
//! random ports, fresh certificates and static bearer tokens, and hands out
//! `kube::Client`s. On demand it adds what a GitOps operator meets on a real cluster:
//! fake nodes on which pods run and turn Ready ([`kwok::Kwok`]), a real Argo CD
//! ([`argocd::RealArgoCd`]), a real Flux ([`flux::RealFlux`]) and Git repositories for
//! them to sync from ([`git::GitRepository`], served over HTTP for Flux by
//! [`git::GitHttpServer`]).
//!
//! Binaries come from `<workspace>/target/test-assets/bin` (`make test-assets`) or
//! `$TESTMESH_TEST_ASSETS`; etcd, Argo CD, Flux and kwok from
//! `<workspace>/target/tools/bin` (`make test-assets`, `make gitops-tools`); Redis and git
//! from `PATH`.
//!
//! ```no_run
//! use testmesh_testenv::{ControlPlane, with_temp_namespace};
//!
//! #[tokio::test]
//! async fn example() {
//!     let cp = ControlPlane::shared(); // started once per test binary
//!     let client = cp.admin_client().await.unwrap(); // one client per test/runtime
//!     let ns = with_temp_namespace(&client, "example").await.unwrap();
//!     // ... use ns.name() ...
//! }
//! ```
//!
//! Users: `admin` (`system:masters`), `alice` and `bob` (group `testmesh:users`,
//! no permissions until a test grants some); `testmesh-operator`, `argocd`, `flux` and
//! `kwok` (`system:masters`), so the audit log tells their requests apart. See
//! [`ControlPlane::user_config`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod argocd;
mod assets;
mod certs;
pub mod chart;
mod control_plane;
mod error;
pub mod flux;
pub mod git;
pub mod http_client;
pub mod kwok;
pub mod local_run;
mod manifests;
mod namespace;
pub mod operator;
mod process;
pub mod proxy;
pub mod workloads;

pub use assets::ASSETS_ENV;
pub use control_plane::{
    ADMIN_USER, ARGOCD_USER, AuditedRequest, ControlPlane, FLUX_USER, KWOK_USER, OPERATOR_USER,
    TEST_USERS, TEST_USERS_GROUP,
};
pub use error::{Error, Result};
pub use manifests::{
    CRD_ESTABLISHED_TIMEOUT, FIELD_MANAGER, apply_yaml, apply_yaml_in, install_crds_from_yaml,
    wait_crd_established,
};
pub use namespace::{TEST_NAMESPACE_LABEL, TempNamespace, with_temp_namespace};
