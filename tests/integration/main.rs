//! Integration tests against a real kube-apiserver, etcd and kube-controller-manager,
//! started once for this test binary by `testmesh-testenv`.

mod api;
mod argocd;
mod chart;
mod claims;
mod crds;
mod dashboard;
mod flux;
mod ha;
mod lifecycle;
mod routing;
mod safety;
mod soak;
mod support;
