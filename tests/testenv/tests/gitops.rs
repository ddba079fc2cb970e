//! The GitOps harness itself: kwok runs Deployments on fake nodes, a real Argo CD syncs
//! Applications from a Git repository the test writes, and prunes on deletion.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, Client, ResourceExt};
use testmesh_testenv::argocd::{self, RealArgoCd};
use testmesh_testenv::git::GitRepository;
use testmesh_testenv::kwok::{self, Kwok};
use testmesh_testenv::workloads::{self, Workload};
use testmesh_testenv::{ControlPlane, apply_yaml_in, with_temp_namespace};

const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(60);
/// A first sync includes the repo-server's first clone.
const SYNC_TIMEOUT: Duration = Duration::from_secs(90);
const PRUNE_TIMEOUT: Duration = Duration::from_secs(60);

async fn admin_client_with_kwok() -> Client {
    let control_plane = ControlPlane::shared();
    let kwok = Kwok::shared();
    eprintln!(
        "control plane started in {:.1?}, kwok in {:.1?}",
        control_plane.startup_duration(),
        kwok.startup_duration(),
    );
    control_plane.admin_client().await.unwrap()
}

/// kwok and a real Argo CD on the shared control plane.
async fn admin_client_with_argocd() -> (Client, &'static RealArgoCd) {
    let client = admin_client_with_kwok().await;
    let argocd = RealArgoCd::shared();
    eprintln!("Argo CD started in {:.1?}", argocd.startup_duration());
    (client, argocd)
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

#[tokio::test]
async fn an_application_syncs_the_example_from_git_and_turns_healthy() {
    let (client, argocd) = admin_client_with_argocd().await;
    let ns = with_temp_namespace(&client, "review").await.unwrap();
    let repository = GitRepository::temporary("deploy").unwrap();
    let commit = repository
        .commit("review environment", &workloads::product_example_files())
        .unwrap();

    let apps = argocd.applications(&client);
    let name = format!("sync-{}", ns.name());
    let created_at = Instant::now();
    create_application(
        &apps,
        argocd::git_application(&name, &repository.url(), workloads::REVIEW_PATH, ns.name()),
    )
    .await;
    let app = wait_synced_and_healthy(&apps, &name, &commit).await;
    eprintln!(
        "Application Synced + Healthy at {commit} {:.1?} after creation",
        created_at.elapsed()
    );

    assert_eq!(argocd::synced_revision(&app), Some(commit.as_str()));
    for service in ["user-service", "product-service"] {
        let deployment: Deployment = Api::namespaced(client.clone(), ns.name())
            .get(service)
            .await
            .unwrap();
        assert!(workloads::is_available(&deployment), "{service}");
    }
    // order-service belongs to staging, another path of the repository.
    let order_service = Api::<Deployment>::namespaced(client.clone(), ns.name())
        .get_opt("order-service")
        .await
        .unwrap();
    assert!(order_service.is_none());
}

#[tokio::test]
async fn deleting_an_application_with_the_resources_finalizer_prunes_its_deployment() {
    let (client, argocd) = admin_client_with_argocd().await;
    let ns = with_temp_namespace(&client, "staging").await.unwrap();
    let repository = GitRepository::temporary("staging").unwrap();
    let commit = repository
        .commit("staging", &workloads::product_example_files())
        .unwrap();

    let apps = argocd.applications(&client);
    let name = format!("prune-{}", ns.name());
    create_application(
        &apps,
        argocd::with_resources_finalizer(argocd::git_application(
            &name,
            &repository.url(),
            workloads::STAGING_PATH,
            ns.name(),
        )),
    )
    .await;
    wait_synced_and_healthy(&apps, &name, &commit).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns.name());
    let deployment = deployments.get("order-service").await.unwrap();

    let deleted_at = Instant::now();
    apps.delete(&name, &DeleteParams::default()).await.unwrap();
    argocd::wait_application(&apps, &name, PRUNE_TIMEOUT, |app| app.is_none())
        .await
        .unwrap();
    let app_gone_after = deleted_at.elapsed();
    tokio::time::timeout(
        PRUNE_TIMEOUT,
        await_condition(
            deployments,
            "order-service",
            conditions::is_deleted(&deployment.uid().unwrap()),
        ),
    )
    .await
    .expect("order-service pruned")
    .unwrap();
    eprintln!(
        "Application gone {app_gone_after:.1?} after the delete request, its Deployment {:.1?}",
        deleted_at.elapsed()
    );
}

async fn create_application(apps: &Api<DynamicObject>, app: serde_json::Value) {
    let app: DynamicObject = serde_json::from_value(app).unwrap();
    apps.create(&PostParams::default(), &app).await.unwrap();
}

/// Waits until the Application is Synced and Healthy at `commit`; on a timeout, fails
/// with the status it has.
async fn wait_synced_and_healthy(
    apps: &Api<DynamicObject>,
    name: &str,
    commit: &str,
) -> DynamicObject {
    let outcome = argocd::wait_application(apps, name, SYNC_TIMEOUT, |app| {
        app.is_some_and(|app| argocd::is_synced_and_healthy_at(app, commit))
    })
    .await;
    match outcome {
        Ok(Some(app)) => app,
        other => {
            let status = apps
                .get_opt(name)
                .await
                .map(|app| app.map(|app| app.data["status"].to_string()));
            panic!("{other:?}; the Application's status: {status:?}")
        }
    }
}
