//! TestMesh against the real Argo CD — application-controller, repo-server,
//! applicationset-controller and Redis, syncing from Git repositories the test writes —
//! with kwok making the pods Ready. Each test drives TestMesh only through objects and
//! Git, as a platform team would, and checks what really happened.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DynamicObject, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use testmesh::lifecycle::{ClaimPhase, Phase};
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::argocd::{self, ArgoCd, RealArgoCd};
use testmesh_testenv::git::GitRepository;
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::workloads::{self, REVIEW_PATH, Workload};

use crate::support::{
    History, Operated, create_namespace, destroyed_message, from_json, kubectl_waits_for_ready,
    lifecycle, phase_of, ready_message, ready_of, wait_for, workspace,
};

/// How long Argo CD and kwok may take for a sync and a rollout on a loaded 2-core machine.
const ARGO: Duration = Duration::from_secs(90);

/// A workspace with its own operator, the shared real Argo CD and kwok, and a Git
/// repository holding the product documentation's example services.
struct Gitops {
    t: Operated,
    apps: Api<DynamicObject>,
    repo: GitRepository,
    /// The commit holding the example.
    revision: String,
}

async fn gitops(prefix: &str, extra_args: &[&str]) -> Gitops {
    let (control_plane, client, workspace) = workspace(prefix).await;
    argocd::install_crds(&client).await;
    testmesh_testenv::flux::install_crds(&client).await;
    tokio::task::spawn_blocking(|| {
        Kwok::shared();
        RealArgoCd::shared();
    })
    .await
    .expect("start kwok and Argo CD");
    let repo = GitRepository::temporary(workspace.name()).expect("git repository");
    let revision = repo
        .commit(
            "the product documentation's example",
            &workloads::product_example_files(),
        )
        .expect("commit");
    let argo = ArgoCd::new(&client, argocd::NAMESPACE);
    let flux = testmesh_testenv::flux::Flux::new(&client, "flux-system");
    let args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
    let operator = crate::support::start_operator(workspace.name(), &argo, &flux, &args);
    Gitops {
        apps: RealArgoCd::shared().applications(&client),
        t: Operated {
            control_plane,
            environments: Api::namespaced(client.clone(), workspace.name()),
            workspace: workspace.name().to_owned(),
            client,
            argo,
            flux,
            operator,
        },
        repo,
        revision,
    }
}

impl Gitops {
    /// The product documentation's environment: `user-service` and `product-service`
    /// deployed by the Application `app` into `namespace`, the rest from `staging`.
    fn environment(
        &self,
        name: &str,
        app: &str,
        namespace: &str,
        staging: &str,
    ) -> TestEnvironment {
        let spec = serde_json::from_value(json!({
            "displayName": "PR-123 Review Environment",
            "context": name,
            "provider": "argocd",
            "providerAppName": app,
            "namespace": namespace,
            "ttlMinutes": 60,
            "services": [
                {"name": "user-service", "image": "myrepo/user-service:pr-123",
                 "repo": "github.com/org/user-service", "sourceRef": "pr-123"},
                {"name": "product-service", "image": "myrepo/product-service:pr-123",
                 "repo": "github.com/org/product-service", "sourceRef": "pr-123"},
            ],
            "routing": {"baselineNamespace": staging},
        }))
        .expect("spec");
        TestEnvironment::new(name, spec)
    }

    /// An Application syncing the example's review services from the test's repository
    /// into `namespace`, with the resources finalizer; `change` adjusts it.
    async fn create_app(&self, name: &str, namespace: &str, change: impl FnOnce(&mut Value)) {
        let mut app = argocd::with_resources_finalizer(argocd::git_application(
            name,
            &self.repo.url(),
            REVIEW_PATH,
            namespace,
        ));
        change(&mut app);
        let app: DynamicObject = serde_json::from_value(app).expect("Application");
        self.apps
            .create(&PostParams::default(), &app)
            .await
            .expect("create Application");
    }

    async fn app(&self, name: &str) -> Option<DynamicObject> {
        self.apps.get_opt(name).await.expect("get Application")
    }

    /// `staging` with `order-service` on 8083, applied directly (it is not the
    /// environment's).
    async fn staging(&self) -> String {
        let staging = self.t.named("staging");
        create_namespace(&self.t.client, &staging).await;
        let order = Workload::new("order-service", "myrepo/order-service:main", 8083);
        let deployments: Api<Deployment> = Api::namespaced(self.t.client.clone(), &staging);
        let services: Api<Service> = Api::namespaced(self.t.client.clone(), &staging);
        deployments
            .create(&PostParams::default(), &from_json(order.deployment()))
            .await
            .expect("order-service Deployment");
        services
            .create(&PostParams::default(), &from_json(order.service()))
            .await
            .expect("order-service Service");
        staging
    }

    async fn deployments_in(&self, namespace: &str) -> Vec<String> {
        Api::<Deployment>::namespaced(self.t.client.clone(), namespace)
            .list(&Default::default())
            .await
            .map(|list| {
                list.items
                    .iter()
                    .filter_map(|d| d.metadata.name.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn environment_history(g: &Gitops, name: &str) -> History<(Phase, String, String)> {
    History::record(&g.t.environments, name, lifecycle)
}

#[tokio::test]
async fn the_documentation_example_end_to_end() {
    let g = gitops("argo-doc", &[]).await;
    let staging = g.staging().await;
    let namespace = g.t.named("pr-123");
    let app = g.t.named("testmesh-pr-123");
    let history = environment_history(&g, "pr-123");
    g.t.create(&g.environment("pr-123", &app, &namespace, &staging))
        .await;
    g.t.wait_phase("pr-123", Phase::Provisioning, ARGO).await;
    // The namespace is TestMesh's; the Application is committed after it, as usual.
    g.create_app(&app, &namespace, |_| {}).await;

    let warm = g.t.wait_phase("pr-123", Phase::Warm, ARGO).await;
    let argo_said = g.app(&app).await.expect("Application");
    assert!(
        argocd::is_synced_and_healthy_at(&argo_said, &g.revision),
        "warm before Argo CD itself reported the app ready: {:#?}",
        argo_said.data["status"]
    );
    assert_eq!(
        history.phases(),
        [Phase::Provisioning, Phase::Warm],
        "provisioning until Argo CD reported ready, then warm"
    );
    let status = warm.status.clone().expect("status");
    assert_eq!(
        status.provider.as_ref().and_then(|p| p.revision.as_deref()),
        Some(g.revision.as_str()),
        "the revision Argo CD synced"
    );
    let expected: std::collections::BTreeMap<String, String> = [
        (
            "user-service",
            format!("http://user-service.{namespace}.svc.cluster.local:8080"),
        ),
        (
            "product-service",
            format!("http://product-service.{namespace}.svc.cluster.local:8080"),
        ),
        (
            "order-service",
            format!("http://order-service.{staging}.svc.cluster.local:8083"),
        ),
    ]
    .into_iter()
    .map(|(service, url)| (service.to_owned(), url))
    .collect();
    assert_eq!(
        status.routing_policy, expected,
        "exactly the documentation's three URLs"
    );
    for service in ["user-service", "product-service"] {
        let endpoints = workloads::service_endpoints(&g.t.client, &namespace, service)
            .await
            .expect("endpoints");
        assert!(
            endpoints.iter().any(|(_, ready)| *ready),
            "Ready came with a ready endpoint behind {service}: {endpoints:?}"
        );
    }

    kubectl_waits_for_ready(g.t.control_plane, &g.t.workspace, "pr-123");
}

#[tokio::test]
async fn an_app_argo_cd_gave_up_on_is_synced_once_the_namespace_exists() {
    let g = gitops("argo-gaveup", &[]).await;
    let namespace = g.t.named("env");
    let app = g.t.named("app");
    // Committed before its environment, with no retries: Argo CD fails the sync at once
    // for want of the namespace and never tries that revision again by itself.
    g.create_app(&app, &namespace, |app| {
        app["spec"]["syncPolicy"]["retry"] = json!({"limit": 0});
    })
    .await;
    let failed = argocd::wait_application(&g.apps, &app, ARGO, |app| {
        app.is_some_and(|app| argocd::operation_phase(app) == Some("Failed"))
    })
    .await
    .expect("Argo CD gives up")
    .expect("Application");
    let message = failed.data["status"]["operationState"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains(&format!("namespaces \"{namespace}\" not found")),
        "{message}"
    );

    let history = environment_history(&g, "late");
    let staging = g.staging().await;
    g.t.create(&g.environment("late", &app, &namespace, &staging))
        .await;
    let started = Instant::now();
    g.t.wait_phase("late", Phase::Warm, ARGO).await;
    eprintln!(
        "an app Argo CD gave up on: warm {:?} after the environment",
        started.elapsed()
    );
    assert!(
        !history.phases().contains(&Phase::Failed),
        "no failure reported for a cause TestMesh removed: {:?}",
        history.entries()
    );
    let synced = g.app(&app).await.expect("Application");
    assert_eq!(
        synced.data["status"]["operationState"]["operation"]["initiatedBy"]["username"], "testmesh",
        "TestMesh asked for the sync"
    );
}

#[tokio::test]
async fn an_app_backing_off_is_synced_without_waiting_for_its_backoff() {
    let g = gitops("argo-backoff", &[]).await;
    let namespace = g.t.named("env");
    let app = g.t.named("app");
    // Argo CD waits 5 minutes before its next attempt.
    g.create_app(&app, &namespace, |app| {
        app["spec"]["syncPolicy"]["retry"] =
            json!({"limit": 3, "backoff": {"duration": "5m", "factor": 1}});
    })
    .await;
    argocd::wait_application(&g.apps, &app, ARGO, |app| {
        app.is_some_and(|app| {
            argocd::operation_phase(app) == Some("Running")
                && !app.data["status"]["operationState"]["finishedAt"].is_null()
        })
    })
    .await
    .expect("Argo CD backs off");

    let history = environment_history(&g, "backoff");
    let staging = g.staging().await;
    g.t.create(&g.environment("backoff", &app, &namespace, &staging))
        .await;
    let started = Instant::now();
    g.t.wait_phase("backoff", Phase::Warm, ARGO).await;
    eprintln!(
        "an app in retry backoff: warm {:?} after the environment",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "did not wait out Argo CD's 5-minute backoff"
    );
    assert!(
        !history.phases().contains(&Phase::Failed),
        "{:?}",
        history.entries()
    );
}

#[tokio::test]
async fn a_commit_moves_the_environment_on_without_leaving_warm() {
    let g = gitops("argo-commit", &[]).await;
    let staging = g.staging().await;
    let namespace = g.t.named("env");
    let app = g.t.named("app");
    g.t.create(&g.environment("commit", &app, &namespace, &staging))
        .await;
    g.create_app(&app, &namespace, |_| {}).await;
    g.t.wait_phase("commit", Phase::Warm, ARGO).await;
    // A run holds it.
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(g.t.client.clone(), &g.t.workspace);
    let claim: TestEnvironmentClaim = from_json(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": "run"},
        "spec": {"context": "commit", "environmentName": "commit"},
    }));
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("claim");
    let claim_phase = |c: &TestEnvironmentClaim| c.status.as_ref().and_then(|s| s.phase);
    wait_for(&claims, "run", ARGO, "bound", |c| {
        c.and_then(claim_phase) == Some(ClaimPhase::Bound)
    })
    .await;
    let running = g.t.wait_phase("commit", Phase::Running, ARGO).await;
    let expires_at = running.status.as_ref().and_then(|s| s.last_used_at.clone());

    let history = environment_history(&g, "commit");
    let claim_history = History::record(&claims, "run", claim_phase);
    let new_image = Workload::new("user-service", "myrepo/user-service:pr-123-b", 8080);
    let revision = g
        .repo
        .commit(
            "user-service: a new image",
            &[(format!("{REVIEW_PATH}/user-service.yaml"), new_image.yaml())],
        )
        .expect("commit");
    argocd::request_refresh(&g.apps, &app)
        .await
        .expect("refresh");
    let moved = wait_for(
        &g.t.environments,
        "commit",
        ARGO,
        "at the new revision",
        |e| {
            e.and_then(|e| e.status.as_ref())
                .and_then(|s| s.provider.as_ref())
                .and_then(|p| p.revision.as_deref())
                == Some(revision.as_str())
        },
    )
    .await
    .expect("environment");
    // Argo CD rolls the Deployment out after it reports the new revision: watch on until
    // it is healthy again.
    argocd::wait_application(&g.apps, &app, ARGO, |app| {
        app.is_some_and(|app| argocd::is_synced_and_healthy_at(app, &revision))
    })
    .await
    .expect("Argo CD syncs the commit");
    // The operator has seen the app Healthy again at the commit: the last status the
    // re-sync could cause is written.
    wait_for(&g.t.environments, "commit", ARGO, "Healthy again", |e| {
        e.and_then(|e| e.status.as_ref())
            .and_then(|s| s.provider.as_ref())
            .is_some_and(|p| {
                p.health.as_deref() == Some("Healthy")
                    && p.revision.as_deref() == Some(revision.as_str())
            })
    })
    .await;
    for (phase, status, reason) in history.entries() {
        assert_eq!(
            (phase, status.as_str()),
            (Phase::Running, "True"),
            "a plain re-sync never un-readies the environment ({reason}): {:?}",
            history.entries()
        );
    }
    assert_eq!(
        claim_history.entries(),
        [ClaimPhase::Bound],
        "the run's claim never leaves bound"
    );
    assert_eq!(
        moved.status.as_ref().and_then(|s| s.last_used_at.clone()),
        expires_at,
        "a re-sync does not count as a use (the TTL is not extended)"
    );
}

#[tokio::test]
async fn failures_are_truthful_with_the_real_controller() {
    let g = gitops(
        "argo-fail",
        &["--missing-grace=3s", "--provisioning-timeout=25s"],
    )
    .await;
    let staging = g.staging().await;

    // An invalid manifest: Argo CD's sync fails, retries once, then gives up.
    let invalid = g.t.named("invalid");
    let broken = g
        .repo
        .commit(
            "a Deployment with a wrong-type field",
            &[(
                "broken/web.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: two\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web}]}\n",
            )],
        )
        .expect("commit");
    let _ = broken;
    let invalid_history = environment_history(&g, "invalid");
    g.t.create(&g.environment("invalid", &invalid, &invalid, &staging))
        .await;
    g.create_app(&invalid, &invalid, |app| {
        app["spec"]["source"]["path"] = json!("broken");
        app["spec"]["syncPolicy"]["retry"] =
            json!({"limit": 1, "backoff": {"duration": "5s", "factor": 1}});
    })
    .await;
    // While Argo CD retries, the environment says so, with Argo CD's own message.
    wait_for(
        &g.t.environments,
        "invalid",
        ARGO,
        "showing the retries",
        |e| e.is_some_and(|e| ready_message(e).contains("Retrying attempt #1")),
    )
    .await;

    // Pods that never turn ready.
    let stuck = g.t.named("stuck");
    g.repo
        .commit(
            "pods that never turn ready",
            &[(
                "stuck/web.yaml",
                Workload::new("web", "myrepo/web:1", 8080)
                    .never_ready()
                    .yaml(),
            )],
        )
        .expect("commit");
    g.t.create(&g.environment("stuck", &stuck, &stuck, &staging))
        .await;
    g.create_app(&stuck, &stuck, |app| {
        app["spec"]["source"]["path"] = json!("stuck")
    })
    .await;

    // An Application someone deletes.
    let deleted = g.t.named("deleted");
    g.t.create(&g.environment("deleted", &deleted, &deleted, &staging))
        .await;
    g.create_app(&deleted, &deleted, |_| {}).await;
    g.t.wait_phase("deleted", Phase::Warm, ARGO).await;
    g.apps
        .delete(&deleted, &Default::default())
        .await
        .expect("delete the Application");

    let failed = g.t.wait_phase("invalid", Phase::Failed, ARGO).await;
    let (_, reason) = ready_of(&failed);
    assert_eq!(reason, "AppFailed");
    let message = ready_message(&failed);
    assert!(message.contains("operation Failed"), "{message}");
    assert!(
        invalid_history
            .entries()
            .iter()
            .any(|(_, _, reason)| reason == "Provisioning"),
        "provisioning before failed: {:?}",
        invalid_history.entries()
    );

    let timed_out = g.t.wait_phase("stuck", Phase::Failed, ARGO).await;
    assert_eq!(ready_of(&timed_out).1, "ProvisioningTimeout");
    assert!(
        ready_message(&timed_out).contains("Progressing"),
        "{}",
        ready_message(&timed_out)
    );

    let missing = g.t.wait_phase("deleted", Phase::Failed, ARGO).await;
    assert_eq!(ready_of(&missing).1, "AppNotFound");
}

#[tokio::test]
async fn ttl_expiry_deletes_the_app_argo_cd_prunes_then_the_namespace_goes() {
    let g = gitops("argo-ttl", &[]).await;
    let staging = g.staging().await;
    let namespace = g.t.named("env");
    let app = g.t.named("app");
    let mut environment = g.environment("ttl", &app, &namespace, &staging);
    environment.spec.template.ttl_minutes = 1;
    g.t.create(&environment).await;
    g.create_app(&app, &namespace, |_| {}).await;
    g.t.wait_phase("ttl", Phase::Warm, ARGO).await;
    assert_eq!(
        g.deployments_in(&namespace).await,
        ["product-service", "user-service"]
    );

    // Watch what goes, in order: the Deployments (Argo CD's prune), the namespace.
    let order = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let deployments: Api<Deployment> = Api::namespaced(g.t.client.clone(), &namespace);
    let seen = order.clone();
    tokio::spawn(async move {
        let events = watcher(deployments, watcher::Config::default()).touched_objects();
        let mut events = std::pin::pin!(events);
        while let Some(event) = events.next().await {
            if let Ok(deployment) = event
                && deployment.metadata.deletion_timestamp.is_some()
            {
                let name = format!(
                    "deployment/{}",
                    deployment.metadata.name.unwrap_or_default()
                );
                let mut seen = seen.lock().expect("order");
                if !seen.iter().any(|(what, _)| *what == name) {
                    seen.push((name, Instant::now()));
                }
            }
        }
    });
    let destroyed =
        g.t.wait_phase("ttl", Phase::Destroyed, Duration::from_secs(150))
            .await;
    let destroyed_seen = Instant::now();
    assert_eq!(ready_of(&destroyed).1, "Expired");
    assert!(g.app(&app).await.is_none(), "the Application is gone");
    assert!(
        g.t.namespace(&namespace).await.is_none(),
        "the namespace is gone"
    );
    let pruned = order.lock().expect("order").clone();
    assert!(
        pruned.len() == 2 && pruned.iter().all(|(_, at)| *at <= destroyed_seen),
        "Argo CD pruned both Deployments before destroyed: {pruned:?}"
    );
    // Nothing comes back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(g.app(&app).await.is_none(), "no Application re-created");
    assert!(
        g.t.namespace(&namespace).await.is_none(),
        "no namespace re-created"
    );
}

#[tokio::test]
async fn create_namespace_true_works_with_the_environment_first_and_says_what_to_change_otherwise()
{
    let g = gitops("argo-createns", &[]).await;
    let staging = g.staging().await;
    let create_namespace = |app: &mut Value| {
        app["spec"]["syncPolicy"]["syncOptions"] = json!(["CreateNamespace=true"]);
    };

    // The environment first: TestMesh creates and owns the namespace.
    let first = g.t.named("first");
    g.t.create(&g.environment("first", &first, &first, &staging))
        .await;
    g.t.wait_phase("first", Phase::Provisioning, ARGO).await;
    g.create_app(&first, &first, create_namespace).await;
    g.t.wait_phase("first", Phase::Warm, ARGO).await;
    g.t.destroy("first").await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(g.app(&first).await.is_none(), "the Application is gone");
    assert!(
        g.t.namespace(&first).await.is_none(),
        "Argo CD re-created no namespace after destroyed"
    );

    // The Application first: Argo CD creates the namespace, which is never adopted.
    let late = g.t.named("late");
    g.create_app(&late, &late, create_namespace).await;
    argocd::wait_application(&g.apps, &late, ARGO, |app| {
        app.is_some_and(|app| argocd::health_status(app) == Some("Healthy"))
    })
    .await
    .expect("Argo CD deploys");
    g.t.create(&g.environment("late", &late, &late, &staging))
        .await;
    let refused = g.t.wait_phase("late", Phase::Failed, ARGO).await;
    assert_eq!(ready_of(&refused).1, "NamespaceNotOwned");
    assert!(
        ready_message(&refused).contains("CreateNamespace=true"),
        "{}",
        ready_message(&refused)
    );
    g.t.destroy("late").await;
    assert!(
        g.t.namespace(&late).await.is_some(),
        "a namespace TestMesh did not create is never deleted"
    );
    assert!(g.app(&late).await.is_some(), "nor its Application");
    g.apps
        .delete(&late, &Default::default())
        .await
        .expect("clean up");
}

#[tokio::test]
async fn applications_something_else_re_creates_are_kept() {
    let g = gitops("argo-owned", &[]).await;
    let staging = g.staging().await;

    // An ApplicationSet with a list generator mints the Application.
    let minted = g.t.named("minted");
    let application_set: DynamicObject = from_json(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": g.t.named("set"), "namespace": argocd::NAMESPACE},
        "spec": {
            "goTemplate": true,
            "generators": [{"list": {"elements": [{"name": minted}]}}],
            "template": {
                "metadata": {"name": "{{.name}}"},
                "spec": {
                    "project": "default",
                    "source": {"repoURL": g.repo.url(), "path": REVIEW_PATH, "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "{{.name}}"},
                    "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
                },
            },
        },
    }));
    let sets: Api<DynamicObject> = Api::namespaced_with(
        g.t.client.clone(),
        argocd::NAMESPACE,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
            "applicationsets",
        ),
    );
    g.t.create(&g.environment("minted", &minted, &minted, &staging))
        .await;
    sets.create(&PostParams::default(), &application_set)
        .await
        .expect("ApplicationSet");
    g.t.wait_phase("minted", Phase::Warm, ARGO).await;
    let destroyed = g.t.destroy("minted").await;
    let message = destroyed_message(&destroyed);
    assert!(
        message.contains(&format!(
            "provider app kept: owned by ApplicationSet {}",
            g.t.named("set")
        )),
        "{message}"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        g.app(&minted).await.is_some(),
        "the ApplicationSet's Application lives on"
    );
    assert!(
        g.t.namespace(&minted).await.is_none(),
        "without CreateNamespace, Argo CD does not bring the namespace back"
    );
    sets.delete(&g.t.named("set"), &Default::default())
        .await
        .expect("clean up");

    // An App-of-Apps parent renders the child Application from Git.
    let child = g.t.named("child");
    let child_app = argocd::git_application(&child, &g.repo.url(), REVIEW_PATH, &child);
    g.repo
        .commit(
            "the child Application",
            &[("apps/child.yaml", child_app.to_string())],
        )
        .expect("commit");
    let parent = g.t.named("parent");
    g.t.create(&g.environment("child", &child, &child, &staging))
        .await;
    let parent_app: DynamicObject = from_json(argocd::git_application(
        &parent,
        &g.repo.url(),
        "apps",
        argocd::NAMESPACE,
    ));
    g.apps
        .create(&PostParams::default(), &parent_app)
        .await
        .expect("parent Application");
    g.t.wait_phase("child", Phase::Warm, ARGO).await;
    let destroyed = g.t.destroy("child").await;
    let message = destroyed_message(&destroyed);
    assert!(
        message.contains(&format!("deployed by Argo CD Application {parent}")),
        "{message}"
    );
    assert!(g.app(&child).await.is_some(), "the parent's child is kept");
    g.apps
        .delete(&parent, &Default::default())
        .await
        .expect("clean up");
}

/// ApplicationSets, where TestMesh's generator is named.
fn application_sets(client: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        argocd::NAMESPACE,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
            "applicationsets",
        ),
    )
}

/// The plugin generator's ConfigMap `name` in Argo CD's namespace, pointing at the
/// operator's API with `token` (kept in a Secret, as Argo CD documents), and a Role
/// letting `user` list the workspace's environments.
async fn generator_config(g: &Gitops, name: &str, user: &str) {
    let token =
        g.t.control_plane
            .user_token(user)
            .expect("user token")
            .to_owned();
    let secret: k8s_openapi::api::core::v1::Secret = from_json(json!({
        "metadata": {"name": name, "namespace": argocd::NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "argocd"}},
        "stringData": {"token": token},
    }));
    Api::namespaced(g.t.client.clone(), argocd::NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("token Secret");
    let config_map: k8s_openapi::api::core::v1::ConfigMap = from_json(json!({
        "metadata": {"name": name, "namespace": argocd::NAMESPACE},
        "data": {"baseUrl": format!("http://{}", g.t.operator.api), "token": format!("${name}:token")},
    }));
    Api::namespaced(g.t.client.clone(), argocd::NAMESPACE)
        .create(&PostParams::default(), &config_map)
        .await
        .expect("generator ConfigMap");
    let role: k8s_openapi::api::rbac::v1::Role = from_json(json!({
        "metadata": {"name": "generator", "namespace": g.t.workspace},
        "rules": [{"apiGroups": ["testmesh.io"], "resources": ["testenvironments"], "verbs": ["list"]}],
    }));
    Api::namespaced(g.t.client.clone(), &g.t.workspace)
        .create(&PostParams::default(), &role)
        .await
        .expect("Role");
    let binding: k8s_openapi::api::rbac::v1::RoleBinding = from_json(json!({
        "metadata": {"name": "generator", "namespace": g.t.workspace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "generator"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }));
    Api::namespaced(g.t.client.clone(), &g.t.workspace)
        .create(&PostParams::default(), &binding)
        .await
        .expect("RoleBinding");
}

/// An ApplicationSet generating from the ConfigMap `config_map` for the workspace: the
/// product's example template (`examples/argocd-applicationset.yaml`), the Application
/// named `{{.appName}}{suffix}` syncing `path`, polling only every `poll_seconds`.
fn generated_set(
    g: &Gitops,
    name: &str,
    config_map: &str,
    suffix: &str,
    path: &str,
    poll_seconds: u32,
) -> DynamicObject {
    from_json(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": argocd::NAMESPACE},
        "spec": {
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"plugin": {
                "configMapRef": {"name": config_map},
                "input": {"parameters": {"workspace": g.t.workspace}},
                "requeueAfterSeconds": poll_seconds,
            }}],
            "template": {
                "metadata": {
                    "name": format!("{{{{.appName}}}}{suffix}"),
                    "annotations": {"testmesh.io/environment-uid": "{{.environmentUid}}"},
                    "finalizers": [argocd::RESOURCES_FINALIZER],
                },
                "spec": {
                    "project": "default",
                    "source": {"repoURL": g.repo.url(), "path": path, "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "{{.namespace}}"},
                    "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
                },
            },
        },
    }))
}

fn seconds_between(
    from: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    to: &DynamicObject,
) -> f64 {
    let from = from.as_ref().expect("from").0;
    let to = to.metadata.creation_timestamp.as_ref().expect("created").0;
    to.duration_since(from).as_secs_f64()
}

#[tokio::test]
async fn a_claim_for_a_new_context_gets_its_application_minted_by_testmesh_as_generator_and_teardown_removes_it()
 {
    // Named before the operator starts, unique on the shared control plane.
    let config_map = format!("testmesh-generator-{}", std::process::id());
    let g = gitops(
        "argo-gen",
        &[&format!("--generator-config-map={config_map}")],
    )
    .await;
    generator_config(&g, &config_map, "alice").await;
    let sets = application_sets(&g.t.client);
    let set_name = g.t.named("previews");
    sets.create(
        &PostParams::default(),
        &generated_set(&g, &set_name, &config_map, "", REVIEW_PATH, 3600),
    )
    .await
    .expect("ApplicationSet");
    // The same generator, polled every 10 s and never refreshed by TestMesh (it names
    // another ConfigMap): the delay without the refresh annotation.
    let polled_config = format!("{config_map}-polled");
    generator_config_map_alias(&g, &config_map, &polled_config).await;
    let polled_name = g.t.named("polled");
    sets.create(
        &PostParams::default(),
        &generated_set(&g, &polled_name, &polled_config, "-polled", REVIEW_PATH, 10),
    )
    .await
    .expect("polled ApplicationSet");

    // The generator answers by the caller's token: RBAC decides.
    let api = g.t.operator.api;
    let ask = |token: Option<&str>, body: &str| {
        testmesh_testenv::http_client::request(
            api,
            "POST",
            "/api/v1/getparams.execute",
            token,
            Some(body),
        )
    };
    let alice =
        g.t.control_plane
            .user_token("alice")
            .expect("alice")
            .to_owned();
    let bob = g.t.control_plane.user_token("bob").expect("bob").to_owned();
    let request =
        json!({"applicationSetName": "x", "input": {"parameters": {"workspace": g.t.workspace}}})
            .to_string();
    assert_eq!(ask(Some(&alice), &request).status, 200);
    assert_eq!(
        ask(Some(&bob), &request).status,
        403,
        "bob may not list the workspace"
    );
    assert_eq!(ask(Some("not-a-token"), &request).status, 401);
    assert_eq!(ask(None, &request).status, 401);
    let no_workspace = ask(Some(&alice), r#"{"input": {"parameters": {}}}"#);
    assert_eq!(no_workspace.status, 400);
    assert!(
        no_workspace.body.contains("input.parameters.workspace"),
        "{}",
        no_workspace.body
    );
    assert_eq!(ask(Some(&alice), "not json").status, 400);

    // A claim for a context nobody prepared: its template names the namespace and the
    // Application from the context.
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(g.t.client.clone(), &g.t.workspace);
    let prefix = g.t.named("x");
    let claim: TestEnvironmentClaim = from_json(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": "ci-run-1"},
        "spec": {
            "context": "pr-456",
            "template": {
                "provider": "argocd",
                "providerAppName": format!("{prefix}-{{{{context}}}}"),
                "namespace": format!("{prefix}-{{{{context}}}}"),
                "ttlMinutes": 60,
            },
        },
    }));
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("claim");
    let ready = wait_for(&claims, "ci-run-1", ARGO, "bound and ready", |claim| {
        claim.and_then(|c| c.status.as_ref()).and_then(|s| s.phase) == Some(ClaimPhase::Bound)
    })
    .await
    .expect("claim");
    let environment_name = ready
        .status
        .as_ref()
        .and_then(|s| s.environment_name.clone())
        .expect("bound to an environment");
    let environment =
        g.t.environments
            .get(&environment_name)
            .await
            .expect("environment");
    let app_name = format!("{prefix}-pr-456");
    let namespace = app_name.clone();
    let app = g
        .app(&app_name)
        .await
        .expect("the ApplicationSet minted the Application");
    let status = environment.status.clone().expect("status");
    eprintln!(
        "generator: environment created -> Application created {:.0} s (whole seconds) with the refresh annotation",
        seconds_between(&environment.metadata.creation_timestamp, &app)
    );
    let polled = argocd::wait_application(&g.apps, &format!("{app_name}-polled"), ARGO, |app| {
        app.is_some()
    })
    .await
    .expect("the polled ApplicationSet mints it too")
    .expect("minted");
    eprintln!(
        "generator: environment created -> Application created {:.0} s (whole seconds) polled every 10 s (Argo CD's default poll: 30 min)",
        seconds_between(&environment.metadata.creation_timestamp, &polled)
    );
    sets.delete(&polled_name, &Default::default())
        .await
        .expect("clean up");
    assert_eq!(
        status.provider.as_ref().and_then(|p| p.health.as_deref()),
        Some("Healthy")
    );

    // Teardown: TestMesh's generator drops it, the ApplicationSet deletes the
    // Application, Argo CD prunes, then TestMesh deletes the namespace.
    let started = Instant::now();
    let destroyed = g.t.destroy(&environment_name).await;
    eprintln!(
        "generator: destroy -> destroyed {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        g.app(&app_name).await.is_none(),
        "the ApplicationSet deleted it"
    );
    assert!(g.t.namespace(&namespace).await.is_none());
    let history = destroyed_message(&destroyed);
    assert!(!history.contains("kept"), "{history}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(g.app(&app_name).await.is_none(), "nothing re-creates it");
    assert!(
        g.t.namespace(&namespace).await.is_none(),
        "nor its namespace"
    );
    sets.delete(&set_name, &Default::default())
        .await
        .expect("clean up");
}

/// A second ConfigMap `alias` with the same base URL and token as `config_map`.
async fn generator_config_map_alias(g: &Gitops, config_map: &str, alias: &str) {
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(g.t.client.clone(), argocd::NAMESPACE);
    let mut copy = config_maps.get(config_map).await.expect("ConfigMap");
    copy.metadata = kube::api::ObjectMeta {
        name: Some(alias.to_owned()),
        namespace: Some(argocd::NAMESPACE.to_owned()),
        ..Default::default()
    };
    config_maps
        .create(&PostParams::default(), &copy)
        .await
        .expect("ConfigMap alias");
}

#[tokio::test]
async fn an_idle_environment_sleeps_at_zero_replicas_through_its_application_set_and_a_claim_wakes_it()
 {
    let config_map = format!("testmesh-sleep-{}", std::process::id());
    let g = gitops(
        "argo-sleep",
        &[&format!("--generator-config-map={config_map}")],
    )
    .await;
    generator_config(&g, &config_map, "alice").await;
    // The same services at zero replicas. A real template would pass `{{.replicas}}` to
    // Helm or kustomize; this harness's repo-server runs neither binary, so the template
    // switches between two directories of plain manifests instead.
    let asleep: Vec<(String, String)> = ["user-service", "product-service"]
        .iter()
        .map(|name| {
            (
                format!("review-asleep/{name}.yaml"),
                Workload::new(name, &format!("myrepo/{name}:pr-123"), 8080)
                    .replicas(0)
                    .yaml(),
            )
        })
        .collect();
    g.repo
        .commit("the review services asleep", &asleep)
        .expect("commit");
    let sets = application_sets(&g.t.client);
    let set_name = g.t.named("sleepy");
    sets.create(
        &PostParams::default(),
        &generated_set(
            &g,
            &set_name,
            &config_map,
            "",
            "{{ if .awake }}review{{ else }}review-asleep{{ end }}",
            3600,
        ),
    )
    .await
    .expect("ApplicationSet");

    let namespace = g.t.named("sleepy");
    let app_name = namespace.clone();
    let staging = g.staging().await;
    let mut environment = g.environment("sleepy", &app_name, &namespace, &staging);
    environment.spec.template.sleep_after_minutes = Some(1);
    let created = Instant::now();
    g.t.create(&environment).await;
    g.t.wait_phase("sleepy", Phase::Warm, ARGO).await;
    let cold_to_warm = created.elapsed();

    // A run on the warm environment, released: the idle clock starts again.
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(g.t.client.clone(), &g.t.workspace);
    let claim = |name: &str| -> TestEnvironmentClaim {
        from_json(json!({
            "apiVersion": "testmesh.io/v1alpha1",
            "kind": "TestEnvironmentClaim",
            "metadata": {"name": name},
            "spec": {"context": "sleepy", "environmentName": "sleepy"},
        }))
    };
    let bound = |claims: &Api<TestEnvironmentClaim>, name: &'static str| {
        let claims = claims.clone();
        async move {
            wait_for(&claims, name, Duration::from_secs(150), "bound", |claim| {
                claim.and_then(|c| c.status.as_ref()).and_then(|s| s.phase)
                    == Some(ClaimPhase::Bound)
            })
            .await
            .expect("claim")
        }
    };
    let asked = Instant::now();
    claims
        .create(&PostParams::default(), &claim("warm-run"))
        .await
        .expect("claim");
    bound(&claims, "warm-run").await;
    let warm_claim = asked.elapsed();
    claims
        .delete("warm-run", &Default::default())
        .await
        .expect("release");

    // Idle for a minute: asleep, scaled to zero by Argo CD.
    let sleeping =
        g.t.wait_phase("sleepy", Phase::Sleeping, Duration::from_secs(150))
            .await;
    assert_eq!(ready_of(&sleeping).1, "Sleeping");
    let deployments: Api<Deployment> = Api::namespaced(g.t.client.clone(), &namespace);
    let scaled = |replicas: i32| {
        let deployments = deployments.clone();
        async move {
            wait_for(
                &deployments,
                "user-service",
                ARGO,
                "scaled",
                move |deployment| {
                    deployment.is_some_and(|d| {
                        d.spec.as_ref().and_then(|s| s.replicas) == Some(replicas)
                            && d.status
                                .as_ref()
                                .and_then(|s| s.ready_replicas)
                                .unwrap_or(0)
                                == replicas
                    })
                },
            )
            .await
        }
    };
    scaled(0).await;
    assert!(
        sleeping
            .status
            .as_ref()
            .and_then(|s| s.expires_at.as_ref())
            .is_some(),
        "its TTL counts on"
    );

    // A claim wakes it: bound at once, Ready once the woken app is synced and Healthy.
    let asked = Instant::now();
    claims
        .create(&PostParams::default(), &claim("woken-run"))
        .await
        .expect("claim");
    let woken = bound(&claims, "woken-run").await;
    let sleeping_claim = asked.elapsed();
    assert_eq!(
        woken
            .status
            .as_ref()
            .and_then(|s| s.environment_name.as_deref()),
        Some("sleepy"),
        "the sleeping environment is reused"
    );
    let running = g.t.environments.get("sleepy").await.expect("environment");
    assert_eq!(phase_of(Some(&running)), Some(Phase::Running));
    let user_service = deployments.get("user-service").await.expect("Deployment");
    assert_eq!(
        user_service.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1),
        "Ready only with its pods back"
    );
    eprintln!(
        "sleep: cold -> warm {:.1} s; claim on warm -> bound {:.2} s; claim on sleeping -> bound (woken, pods Ready) {:.1} s",
        cold_to_warm.as_secs_f64(),
        warm_claim.as_secs_f64(),
        sleeping_claim.as_secs_f64()
    );
    claims
        .delete("woken-run", &Default::default())
        .await
        .expect("release");
    g.t.destroy("sleepy").await;
    assert!(g.app(&app_name).await.is_none());
    sets.delete(&set_name, &Default::default())
        .await
        .expect("clean up");
}
