//! The GitOps harness itself: kwok runs Deployments on fake nodes, a real Argo CD syncs
//! Applications from a Git repository the test writes, and prunes on deletion.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use testmesh_testenv::kwok::{self, Kwok};
use testmesh_testenv::workloads::{self, Workload};
use testmesh_testenv::{ControlPlane, apply_yaml_in, with_temp_namespace};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(60);

async fn admin_client_with_kwok() -> Client {
    let control_plane = ControlPlane::shared();
    let started = Instant::now();
    let kwok = Kwok::shared();
    eprintln!(
        "control plane started in {:.1?}, kwok in {:.1?} (waited {:.1?})",
        control_plane.startup_duration(),
        kwok.startup_duration(),
        started.elapsed()
    );
    control_plane.admin_client().await.unwrap()
}

#[tokio::test]
async fn a_deployment_becomes_available_and_its_service_gets_ready_endpoints() {
    let client = admin_client_with_kwok().await;
    let ns = with_temp_namespace(&client, "kwok-ready").await.unwrap();
    let workload = Workload::new("user-service", "myrepo/user-service:pr-123", 8080).replicas(2);

    let applied_at = Instant::now();
    apply_yaml_in(&client, ns.name(), &workload.yaml())
        .await
        .unwrap();
    workloads::wait_deployment_available(&client, ns.name(), "user-service", ROLLOUT_TIMEOUT)
        .await
        .unwrap();
    let available_after = applied_at.elapsed();
    let endpoints = workloads::wait_service_endpoints(
        &client,
        ns.name(),
        "user-service",
        ROLLOUT_TIMEOUT,
        |endpoints| endpoints.len() == 2 && endpoints.iter().all(|(_, ready)| *ready),
    )
    .await
    .unwrap();
    eprintln!(
        "Deployment Available {available_after:.1?} after apply, endpoints {endpoints:?} after {:.1?}",
        applied_at.elapsed()
    );

    let pods: Api<Pod> = Api::namespaced(client, ns.name());
    for pod in pods.list(&ListParams::default()).await.unwrap() {
        let spec = pod.spec.unwrap();
        let node = spec.node_name.unwrap_or_default();
        assert!(
            kwok::NODE_NAMES.contains(&node.as_str()),
            "scheduled on {node}"
        );
    }
}

#[tokio::test]
async fn a_never_ready_pod_runs_but_stays_unready() {
    let client = admin_client_with_kwok().await;
    let ns = with_temp_namespace(&client, "kwok-unready").await.unwrap();
    let workload =
        Workload::new("product-service", "myrepo/product-service:pr-123", 8080).never_ready();
    apply_yaml_in(&client, ns.name(), &workload.yaml())
        .await
        .unwrap();

    // kwok's last word on such a pod: Running, with an address, not Ready. Nothing moves
    // it on from there, so seeing it is seeing the end state.
    let endpoints = workloads::wait_service_endpoints(
        &client,
        ns.name(),
        "product-service",
        ROLLOUT_TIMEOUT,
        |endpoints| !endpoints.is_empty(),
    )
    .await
    .unwrap();
    assert!(endpoints.iter().all(|(_, ready)| !ready), "{endpoints:?}");
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns.name());
    let pod = pods
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .remove(0);
    let status = pod.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|condition| condition.type_ == "Ready")
        .map(|condition| condition.status);
    assert_eq!(ready.as_deref(), Some("False"));

    let deployment = Api::namespaced(client, ns.name())
        .get("product-service")
        .await
        .unwrap();
    assert!(!workloads::is_available(&deployment));
}
