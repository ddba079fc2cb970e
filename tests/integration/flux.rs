//! TestMesh against the real Flux — source-controller fetching the test's Git repository
//! over smart HTTP, kustomize-controller applying it — with kwok making the pods Ready.
//! Each test drives TestMesh only through objects and Git, as a platform team would, and
//! checks what really happened. The last test writes a Kustomization's status by hand,
//! for the one state the real controller passes through too briefly to hold (see there).

use std::time::{Duration, Instant};

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use testmesh::lifecycle::Phase;
use testmesh::resources::{Provider, TestEnvironment};
use testmesh_testenv::argocd::{self, ArgoCd};
use testmesh_testenv::flux::{self, Flux, RealFlux};
use testmesh_testenv::git::{BRANCH, GitRepository};
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::workloads::{self, REVIEW_PATH, STAGING_PATH, Workload};
use testmesh_testenv::{FLUX_USER, OPERATOR_USER};

use crate::support::{
    History, Operated, REACTION, condition_message, create_namespace, destroyed_message, from_json,
    kubectl_waits_for_ready, lifecycle, operated_workspace, phase_of, ready_message, ready_of,
    start_operator, wait_for, workspace,
};

/// How long Flux and kwok may take to fetch, apply and roll out on a loaded 2-core machine.
const FLUX: Duration = Duration::from_secs(90);
/// A Deployment whose pods run but never turn Ready, in the test repository.
const STUCK_PATH: &str = "stuck";

/// A workspace with its own operator, the shared real Flux and kwok, a Git repository
/// holding the product documentation's example services (and a never-ready one), and a
/// GitRepository following it.
struct FluxGitops {
    t: Operated,
    kustomizations: Api<DynamicObject>,
    sources: Api<DynamicObject>,
    repo: GitRepository,
    /// The GitRepository object following `repo`, named after the workspace.
    source: String,
    /// The commit holding the example, as Flux names revisions: `main@sha1:<sha>`.
    revision: String,
}

async fn flux_gitops(prefix: &str, extra_args: &[&str]) -> FluxGitops {
    let (control_plane, client, workspace) = workspace(prefix).await;
    argocd::install_crds(&client).await;
    flux::install_crds(&client).await;
    tokio::task::spawn_blocking(|| {
        Kwok::shared();
        RealFlux::shared();
    })
    .await
    .expect("start kwok and Flux");
    let real = RealFlux::shared();
    let repo = GitRepository::temporary(workspace.name()).expect("git repository");
    let mut files = workloads::product_example_files();
    files.push((
        format!("{STUCK_PATH}/web.yaml"),
        Workload::new("web", "myrepo/web:1", 8080)
            .never_ready()
            .yaml(),
    ));
    let commit = repo
        .commit("the product documentation's example", &files)
        .expect("commit");
    let source = workspace.name().to_owned();
    let sources = real.git_repositories(&client);
    let url = real.git_url(&repo).expect("repository URL");
    sources
        .create(
            &PostParams::default(),
            &from_json(flux::git_repository(&source, &url)),
        )
        .await
        .expect("create GitRepository");
    // As on a cluster where the source is older than the environments: fetched already.
    // (A Kustomization created before its source's first artifact reports ArtifactFailed,
    // "Source artifact not found", until Flux looks again.)
    let revision = flux_revision(&commit);
    let created = Instant::now();
    flux::wait_object(&sources, &source, FLUX, |source| {
        source.is_some_and(|source| {
            source.data["status"]["artifact"]["revision"].as_str() == Some(revision.as_str())
        })
    })
    .await
    .expect("source-controller fetches the repository over HTTP");
    eprintln!(
        "Flux started in {:?}; the GitRepository fetched {:?} after creation",
        real.startup_duration(),
        created.elapsed()
    );
    let argo = ArgoCd::new(&client, argocd::NAMESPACE);
    let flux = Flux::new(&client, flux::NAMESPACE);
    let args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
    let operator = start_operator(workspace.name(), &argo, &flux, &args);
    FluxGitops {
        kustomizations: real.kustomizations(&client),
        sources,
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
        source,
        revision,
    }
}

/// A commit as Flux names it in `lastAppliedRevision`.
fn flux_revision(commit: &str) -> String {
    format!("{BRANCH}@sha1:{commit}")
}

impl FluxGitops {
    /// An environment deployed by the Kustomization `kustomization` (in Flux's namespace)
    /// into `namespace`, declaring `services`.
    fn environment(
        &self,
        name: &str,
        kustomization: &str,
        namespace: &str,
        services: &[&str],
    ) -> TestEnvironment {
        let services: Vec<Value> = services
            .iter()
            .map(|service| {
                json!({"name": service, "image": format!("myrepo/{service}:pr-123"),
                       "repo": format!("github.com/org/{service}"), "sourceRef": "pr-123"})
            })
            .collect();
        let spec = serde_json::from_value(json!({
            "context": name,
            "provider": "flux",
            "providerAppName": kustomization,
            "namespace": namespace,
            "ttlMinutes": 60,
            "services": services,
        }))
        .expect("spec");
        TestEnvironment::new(name, spec)
    }

    /// A Kustomization applying `path` of the test's repository into `target`, pruning;
    /// `change` adjusts it.
    async fn create_kustomization(
        &self,
        name: &str,
        path: &str,
        target: &str,
        change: impl FnOnce(&mut Value),
    ) {
        let mut kustomization = flux::git_kustomization(name, &self.source, path, target);
        change(&mut kustomization);
        self.kustomizations
            .create(&PostParams::default(), &from_json(kustomization))
            .await
            .expect("create Kustomization");
    }

    async fn kustomization(&self, name: &str) -> Option<DynamicObject> {
        self.kustomizations
            .get_opt(name)
            .await
            .expect("get Kustomization")
    }

    /// Commits `files`, has Flux fetch the commit now and waits until it has; returns
    /// Flux's name for the revision.
    async fn commit(&self, message: &str, files: &[(String, String)]) -> String {
        let revision = flux_revision(&self.repo.commit(message, files).expect("commit"));
        flux::request_reconcile(&self.sources, &self.source)
            .await
            .expect("reconcile the GitRepository");
        flux::wait_object(&self.sources, &self.source, FLUX, |source| {
            source.is_some_and(|source| {
                source.data["status"]["artifact"]["revision"].as_str() == Some(revision.as_str())
            })
        })
        .await
        .expect("source-controller fetches the commit");
        revision
    }

    /// Waits until the Kustomization `name` satisfies `accept`.
    async fn wait_kustomization(
        &self,
        name: &str,
        accept: impl Fn(&DynamicObject) -> bool,
    ) -> DynamicObject {
        flux::wait_object(&self.kustomizations, name, FLUX, |k| k.is_some_and(&accept))
            .await
            .unwrap_or_else(|e| panic!("Kustomization {name}: {e}"))
            .unwrap_or_else(|| panic!("Kustomization {name} is gone"))
    }

    /// Environments `names` created, each deployed by `<workspace>-<name>` into
    /// `<workspace>-<name>`, and each seen provisioning: their namespaces exist.
    async fn provisioning(&self, names: &[(&str, &[&str])]) {
        for (name, services) in names {
            let kustomization = self.t.named(name);
            self.t
                .create(&self.environment(name, &kustomization, &kustomization, services))
                .await;
        }
        for (name, _) in names {
            self.t.wait_phase(name, Phase::Provisioning, FLUX).await;
        }
    }

    async fn deployments_in(&self, namespace: &str) -> Vec<(String, bool)> {
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(self.t.client.clone(), namespace)
            .list(&Default::default())
            .await
            .expect("list Deployments")
            .items
            .iter()
            .map(|deployment| {
                (
                    deployment.metadata.name.clone().unwrap_or_default(),
                    workloads::is_available(deployment),
                )
            })
            .collect()
    }

    /// What Flux itself deleted in `namespace` (the audit log by its identity), as
    /// `(received at, resource/name)`.
    fn deleted_by_flux(&self, namespace: &str) -> Vec<(String, String)> {
        self.t
            .control_plane
            .audited_writes()
            .expect("audit log")
            .into_iter()
            .filter(|w| w.user == FLUX_USER && w.verb == "delete" && w.code < 300)
            .filter(|w| w.namespace.as_deref() == Some(namespace))
            .map(|w| {
                let name = w.name.unwrap_or_default();
                (w.received_at, format!("{}/{name}", w.resource))
            })
            .collect()
    }
}

/// A Kustomization's (Ready status, Ready reason, metadata.generation,
/// status.observedGeneration), for [`History::record`].
type FluxState = (String, String, Option<i64>, Option<i64>);

fn flux_state(kustomization: &DynamicObject) -> Option<FluxState> {
    let (status, reason) = flux::condition_status(kustomization, "Ready")?;
    Some((
        status.to_owned(),
        reason.to_owned(),
        kustomization.metadata.generation,
        kustomization.data["status"]["observedGeneration"].as_i64(),
    ))
}

fn provider_message(environment: &TestEnvironment) -> String {
    condition_message(environment, "ProviderReady")
}

/// `spec.<field>` of a Kustomization set to `value`.
fn set(field: &'static str, value: Value) -> impl FnOnce(&mut Value) {
    move |kustomization| kustomization["spec"][field] = value
}

/// A Deployment that does not apply: `replicas` is not a number.
const MISTYPED_DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: two\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: web}]}\n";
/// A file that is not YAML.
const MALFORMED_YAML: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web\n";

#[tokio::test]
async fn warm_only_once_flux_reports_ready_for_the_current_generation() {
    let g = flux_gitops("flux-ready", &[]).await;
    let namespace = g.t.named("pr-123");
    let app = g.t.named("app");
    let history = History::record(&g.t.environments, "pr-123", lifecycle);
    g.t.create(&g.environment(
        "pr-123",
        &app,
        &namespace,
        &["user-service", "product-service"],
    ))
    .await;
    g.t.wait_phase("pr-123", Phase::Provisioning, FLUX).await;
    // The namespace is TestMesh's; the Kustomization comes after it, with health checks.
    let flux_history = History::record(&g.kustomizations, &app, flux_state);
    let committed = Instant::now();
    g.create_kustomization(&app, REVIEW_PATH, &namespace, set("wait", json!(true)))
        .await;

    let warm = g.t.wait_phase("pr-123", Phase::Warm, FLUX).await;
    let warm_after = committed.elapsed();
    let flux_said = g.kustomization(&app).await.expect("Kustomization");
    assert!(
        flux::is_ready(&flux_said),
        "warm before Flux reported Ready for the current generation: {:#?}",
        flux_said.data["status"]
    );
    assert_eq!(flux_said.data["status"]["lastAppliedRevision"], g.revision);
    let ready_after = flux_history
        .seen(
            |(status, _, generation, observed)| status == "True" && generation == observed,
            REACTION,
        )
        .await
        .saturating_duration_since(committed);
    eprintln!(
        "Flux Ready {ready_after:?} and the environment warm {warm_after:?} after the Kustomization was created; Flux went through {:?}",
        flux_history.entries()
    );
    assert_eq!(
        history.phases(),
        [Phase::Provisioning, Phase::Warm],
        "provisioning until Flux reported Ready, then warm"
    );
    assert!(
        flux_history
            .entries()
            .iter()
            .any(|(status, ..)| status == "Unknown"),
        "Flux reported its reconciliation in progress first: {:?}",
        flux_history.entries()
    );
    let status = warm.status.clone().expect("status");
    assert_eq!(
        status.provider.as_ref().and_then(|p| p.revision.as_deref()),
        Some(g.revision.as_str()),
        "the revision Flux applied"
    );
    let port = workloads::REVIEW_SERVICE_PORT;
    let expected: std::collections::BTreeMap<String, String> = ["user-service", "product-service"]
        .into_iter()
        .map(|service| {
            (
                service.to_owned(),
                format!("http://{service}.{namespace}.svc.cluster.local:{port}"),
            )
        })
        .collect();
    assert_eq!(status.routing_policy, expected);
    assert_eq!(
        g.deployments_in(&namespace).await,
        [
            ("product-service".to_owned(), true),
            ("user-service".to_owned(), true)
        ],
        "with spec.wait, Flux is Ready once the rollout is done"
    );
    assert!(
        !provider_message(&warm).contains("no health checks"),
        "{}",
        provider_message(&warm)
    );

    // A spec change is a new generation: Flux applies it again, and until it reports
    // Ready for that generation the environment stays warm on the previous one.
    let history = History::record(&g.t.environments, "pr-123", lifecycle);
    let flux_history = History::record(&g.kustomizations, &app, flux_state);
    let bump = json!({"spec": {"timeout": "2m"}});
    g.kustomizations
        .patch(&app, &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("spec change");
    g.wait_kustomization(&app, |k| {
        k.metadata.generation == Some(2) && flux::is_ready(k)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        flux_history
            .entries()
            .iter()
            .any(|(status, _, generation, _)| status == "Unknown" && *generation == Some(2)),
        "Flux reconciled generation 2: {:?}",
        flux_history.entries()
    );
    for (phase, status, reason) in history.entries() {
        assert_eq!(
            (phase, status.as_str()),
            (Phase::Warm, "True"),
            "a new generation being applied does not un-ready the environment ({reason}): {:?}",
            history.entries()
        );
    }

    kubectl_waits_for_ready(g.t.control_plane, &g.t.workspace, "pr-123");
}

#[tokio::test]
async fn without_health_checks_flux_ready_only_means_applied() {
    let g = flux_gitops("flux-applied", &[]).await;
    // One Deployment whose pods never turn Ready, three ways.
    g.provisioning(&[("applied", &[]), ("endpoints", &["web"]), ("checked", &[])])
        .await;
    for name in ["applied", "endpoints"] {
        g.create_kustomization(&g.t.named(name), STUCK_PATH, &g.t.named(name), |_| {})
            .await;
    }
    g.create_kustomization(
        &g.t.named("checked"),
        STUCK_PATH,
        &g.t.named("checked"),
        set("wait", json!(true)),
    )
    .await;

    // No spec.wait, no declared service: Flux's Ready is all there is to go by, and
    // TestMesh says what it means.
    let applied = g.t.wait_phase("applied", Phase::Warm, FLUX).await;
    assert!(flux::is_ready(
        &g.kustomization(&g.t.named("applied"))
            .await
            .expect("Kustomization")
    ));
    assert_eq!(
        g.deployments_in(&g.t.named("applied")).await,
        [("web".to_owned(), false)],
        "Flux Ready, yet the Deployment is not Available"
    );
    assert!(
        provider_message(&applied)
            .ends_with("(no health checks: spec.wait is not set and spec.healthChecks is empty)"),
        "{}",
        provider_message(&applied)
    );

    // The same, with the Service declared: TestMesh waits for a ready endpoint behind it.
    g.wait_kustomization(&g.t.named("endpoints"), flux::is_ready)
        .await;
    let endpoints = wait_for(
        &g.t.environments,
        "endpoints",
        REACTION,
        "waiting for an endpoint",
        |e| e.is_some_and(|e| ready_message(e).contains("no ready endpoint yet for: web")),
    )
    .await
    .expect("environment");
    assert_eq!(phase_of(Some(&endpoints)), Some(Phase::Provisioning));

    // With spec.wait, Flux itself is not Ready while the rollout is not done.
    let checking = g
        .wait_kustomization(&g.t.named("checked"), |k| {
            flux::condition_of(k, "Reconciling")
                .and_then(|c| c["message"].as_str())
                .is_some_and(|m| m.starts_with("Running health checks"))
        })
        .await;
    assert_eq!(
        flux::condition_status(&checking, "Ready"),
        Some(("Unknown", "Progressing"))
    );
    let checked = wait_for(
        &g.t.environments,
        "checked",
        REACTION,
        "showing Flux's health checks",
        |e| e.is_some_and(|e| provider_message(e).contains("Running health checks")),
    )
    .await
    .expect("environment");
    assert_eq!(phase_of(Some(&checked)), Some(Phase::Provisioning));
}

#[tokio::test]
async fn flux_failures_fail_the_environment_with_their_reason_and_git_fixes_them() {
    let g = flux_gitops(
        "flux-fail",
        &["--degraded-grace=6s", "--provisioning-timeout=60s"],
    )
    .await;
    g.commit(
        "a file that is not YAML, a Deployment with a wrong-type field",
        &[
            ("malformed/web.yaml".to_owned(), MALFORMED_YAML.to_owned()),
            (
                "mistyped/web.yaml".to_owned(),
                MISTYPED_DEPLOYMENT.to_owned(),
            ),
        ],
    )
    .await;
    g.provisioning(&[
        ("malformed", &[]),
        ("mistyped", &[]),
        ("retrying", &[]),
        ("stalled", &[]),
        ("unhealthy", &[]),
    ])
    .await;
    let histories: Vec<_> = ["malformed", "mistyped", "retrying"]
        .into_iter()
        .map(|name| {
            (
                name,
                History::record(&g.t.environments, name, lifecycle),
                History::record(&g.kustomizations, &g.t.named(name), flux_state),
            )
        })
        .collect();
    let kustomization = |name: &str| g.t.named(name);
    g.create_kustomization(
        &kustomization("malformed"),
        "malformed",
        &g.t.named("malformed"),
        |_| {},
    )
    .await;
    g.create_kustomization(
        &kustomization("mistyped"),
        "mistyped",
        &g.t.named("mistyped"),
        |_| {},
    )
    .await;
    // Flux tries again every 2 s: each attempt first reports Ready=Unknown.
    g.create_kustomization(
        &kustomization("retrying"),
        "mistyped",
        &g.t.named("retrying"),
        set("retryInterval", json!("2s")),
    )
    .await;
    // A health check expression that does not parse: Flux stalls.
    g.create_kustomization(
        &kustomization("stalled"),
        REVIEW_PATH,
        &g.t.named("stalled"),
        set(
            "healthCheckExprs",
            json!([{"apiVersion": "apps/v1", "kind": "Deployment", "current": "status.ready ++"}]),
        ),
    )
    .await;
    g.create_kustomization(
        &kustomization("unhealthy"),
        STUCK_PATH,
        &g.t.named("unhealthy"),
        set("wait", json!(true)),
    )
    .await;

    let stalled = g.t.wait_phase("stalled", Phase::Failed, FLUX).await;
    assert_eq!(ready_of(&stalled).1, "AppFailed", "Stalled fails at once");
    assert!(
        ready_message(&stalled).contains("Stalled: InvalidCELExpression"),
        "{}",
        ready_message(&stalled)
    );

    for (name, flux_reason) in [
        ("malformed", "BuildFailed"),
        ("mistyped", "ReconciliationFailed"),
    ] {
        let failed = g.t.wait_phase(name, Phase::Failed, FLUX).await;
        assert_eq!(ready_of(&failed).1, "DegradedTooLong", "{name}");
        assert!(
            ready_message(&failed).contains(flux_reason),
            "{name}: {}",
            ready_message(&failed)
        );
        let (_, environment, flux_history) = histories
            .iter()
            .find(|(case, ..)| *case == name)
            .expect("history");
        let flux_failed = flux_history
            .seen(|(status, ..)| status == "False", REACTION)
            .await;
        let failed_at = environment
            .seen(|(phase, ..)| *phase == Phase::Failed, REACTION)
            .await;
        let after = failed_at.saturating_duration_since(flux_failed);
        eprintln!("{name}: Flux {flux_reason}, the environment failed {after:?} later");
        assert!(
            after >= Duration::from_millis(5_500),
            "{name} failed only after the 6 s grace: {after:?}"
        );
    }

    let unhealthy = g.t.wait_phase("unhealthy", Phase::Failed, FLUX).await;
    assert_eq!(ready_of(&unhealthy).1, "DegradedTooLong");
    assert!(
        ready_message(&unhealthy).contains("HealthCheckFailed"),
        "{}",
        ready_message(&unhealthy)
    );

    // Retried every 2 s, the failure never lasts the 6 s grace: each attempt reports
    // Ready=Unknown first, and nothing then tells a retry from a first attempt. The
    // provisioning timeout ends it.
    let retrying = g.t.wait_phase("retrying", Phase::Failed, FLUX).await;
    let (_, environment, flux_history) = &histories[2];
    let attempts = flux_history
        .entries()
        .iter()
        .filter(|(status, ..)| status == "False")
        .count();
    eprintln!(
        "retrying: {attempts} failed attempts seen; the environment went {:?}",
        environment.entries()
    );
    assert_eq!(ready_of(&retrying).1, "ProvisioningTimeout");
    assert!(attempts >= 3, "{:?}", flux_history.entries());

    // Git fixed: Flux applies the new revision at once (it watches its source), and the
    // environments move on by themselves.
    let web = Workload::new("web", "myrepo/web:1", 8080).yaml();
    let fixed_at = Instant::now();
    let fixed = g
        .commit(
            "web, fixed",
            &[
                ("malformed/web.yaml".to_owned(), web.clone()),
                ("mistyped/web.yaml".to_owned(), web),
            ],
        )
        .await;
    for name in ["malformed", "mistyped", "retrying"] {
        let warm = g.t.wait_phase(name, Phase::Warm, FLUX).await;
        assert_eq!(
            warm.status
                .as_ref()
                .and_then(|s| s.provider.as_ref())
                .and_then(|p| p.revision.as_deref()),
            Some(fixed.as_str()),
            "{name}"
        );
    }
    eprintln!("recovered {:?} after the fix", fixed_at.elapsed());
}

#[tokio::test]
async fn a_dependency_not_ready_keeps_the_environment_waiting() {
    let g = flux_gitops("flux-depends", &["--degraded-grace=3s"]).await;
    // The dependency deploys the staging services elsewhere, and is suspended for now:
    // kustomize-controller has not reconciled it, so it is not ready.
    let base = g.t.named("base");
    create_namespace(&g.t.client, &base).await;
    g.create_kustomization(&base, STAGING_PATH, &base, set("suspend", json!(true)))
        .await;
    g.provisioning(&[("app", &["user-service"])]).await;
    let history = History::record(&g.t.environments, "app", lifecycle);
    g.create_kustomization(
        &g.t.named("app"),
        REVIEW_PATH,
        &g.t.named("app"),
        set("dependsOn", json!([{"name": base}])),
    )
    .await;

    let waiting = wait_for(
        &g.t.environments,
        "app",
        FLUX,
        "waiting for the dependency",
        |e| e.is_some_and(|e| provider_message(e).contains("DependencyNotReady")),
    )
    .await
    .expect("environment");
    assert!(
        provider_message(&waiting)
            .contains(&format!("dependency 'flux-system/{base}' is not ready")),
        "{}",
        provider_message(&waiting)
    );
    // Well past the degraded grace: still provisioning, never failed.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let still = g.t.environments.get("app").await.expect("environment");
    assert_eq!(phase_of(Some(&still)), Some(Phase::Provisioning));
    assert!(
        !history.phases().contains(&Phase::Failed),
        "{:?}",
        history.entries()
    );

    let resume = json!({"spec": {"suspend": false}});
    g.kustomizations
        .patch(&base, &PatchParams::default(), &Patch::Merge(&resume))
        .await
        .expect("resume the dependency");
    let resumed = Instant::now();
    g.t.wait_phase("app", Phase::Warm, FLUX).await;
    eprintln!(
        "warm {:?} after the dependency was resumed (Flux looks again every {:?})",
        resumed.elapsed(),
        RealFlux::REQUEUE_DEPENDENCY
    );
}

#[tokio::test]
async fn a_kustomization_that_failed_for_want_of_the_namespace_is_reconciled_once_it_exists() {
    let g = flux_gitops("flux-late", &[]).await;
    let app = g.t.named("app");
    let namespace = g.t.named("env");
    // Committed before its environment, as usual, and reconciled every 10 minutes: Flux
    // fails for want of the namespace and would try again only then.
    g.create_kustomization(&app, REVIEW_PATH, &namespace, set("interval", json!("10m")))
        .await;
    let missing = format!("namespaces \"{namespace}\" not found");
    let failed = g
        .wait_kustomization(&app, |k| {
            flux::condition_of(k, "Ready")
                .and_then(|c| c["message"].as_str())
                .is_some_and(|m| m.contains(&missing))
        })
        .await;
    assert_eq!(
        flux::condition_status(&failed, "Ready"),
        Some(("False", "ReconciliationFailed"))
    );

    let history = History::record(&g.t.environments, "late", lifecycle);
    let created = Instant::now();
    g.t.create(&g.environment("late", &app, &namespace, &["user-service"]))
        .await;
    g.t.wait_phase("late", Phase::Warm, FLUX).await;
    eprintln!(
        "warm {:?} after the environment, without waiting for Flux's 10-minute retry",
        created.elapsed()
    );
    assert!(
        !history.phases().contains(&Phase::Failed),
        "no failure reported for a cause TestMesh removed: {:?}",
        history.entries()
    );
    let reconciled = g.kustomization(&app).await.expect("Kustomization");
    let requested = reconciled.metadata.annotations.as_ref().and_then(|a| {
        a.get(flux::RECONCILE_REQUEST_ANNOTATION)
            .map(String::as_str)
    });
    assert!(
        requested.is_some_and(|r| r.starts_with("testmesh-")),
        "TestMesh asked Flux to reconcile: {requested:?}"
    );
    assert_eq!(
        reconciled.data["status"]["lastHandledReconcileAt"].as_str(),
        requested,
        "and Flux handled that request"
    );
    let patches =
        g.t.control_plane
            .audited_writes()
            .expect("audit log")
            .into_iter()
            .filter(|w| w.user == OPERATOR_USER && w.resource == "kustomizations")
            .filter(|w| w.name.as_deref() == Some(app.as_str()))
            .map(|w| w.verb)
            .collect::<Vec<_>>();
    assert_eq!(patches, ["patch"], "one request, nothing else written");
}

#[tokio::test]
async fn ttl_expiry_deletes_the_kustomization_flux_prunes_then_the_namespace_goes() {
    let g = flux_gitops("flux-ttl", &[]).await;
    let app = g.t.named("app");
    let namespace = g.t.named("env");
    let mut environment = g.environment("ttl", &app, &namespace, &["user-service"]);
    environment.spec.template.ttl_minutes = 1;
    g.t.create(&environment).await;
    g.t.wait_phase("ttl", Phase::Provisioning, FLUX).await;
    g.create_kustomization(&app, REVIEW_PATH, &namespace, |_| {})
        .await;
    g.t.wait_phase("ttl", Phase::Warm, FLUX).await;
    let teardown = History::record(&g.t.environments, "ttl", |e| {
        Some(destroyed_message(e)).filter(|m| !m.is_empty())
    });

    let destroyed =
        g.t.wait_phase("ttl", Phase::Destroyed, Duration::from_secs(150))
            .await;
    assert_eq!(ready_of(&destroyed).1, "Expired");
    assert!(
        g.kustomization(&app).await.is_none(),
        "the Kustomization is gone"
    );
    assert!(
        g.t.namespace(&namespace).await.is_none(),
        "the namespace is gone"
    );
    let pruned = g.deleted_by_flux(&namespace);
    let names: std::collections::BTreeSet<&str> =
        pruned.iter().map(|(_, what)| what.as_str()).collect();
    for deployed in [
        "deployments/user-service",
        "deployments/product-service",
        "services/user-service",
        "services/product-service",
    ] {
        assert!(
            names.contains(deployed),
            "Flux pruned {deployed}: {pruned:?}"
        );
    }
    let namespace_deleted =
        g.t.control_plane
            .audited_writes()
            .expect("audit log")
            .into_iter()
            .find(|w| {
                w.user == OPERATOR_USER
                    && w.verb == "delete"
                    && w.resource == "namespaces"
                    && w.name.as_deref() == Some(namespace.as_str())
            })
            .expect("the operator deleted the namespace");
    assert!(
        pruned
            .iter()
            .all(|(at, _)| *at < namespace_deleted.received_at),
        "Flux pruned before the namespace was deleted: {pruned:?}, namespace at {}",
        namespace_deleted.received_at
    );
    assert!(
        teardown
            .entries()
            .iter()
            .all(|message| !message.contains("prunes nothing")),
        "{:?}",
        teardown.entries()
    );
    // Nothing comes back.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        g.kustomization(&app).await.is_none(),
        "no Kustomization re-created"
    );
    assert!(
        g.t.namespace(&namespace).await.is_none(),
        "no namespace re-created"
    );
}

#[tokio::test]
async fn orphaning_and_suspended_kustomizations_prune_nothing_and_teardown_says_so() {
    let g = flux_gitops("flux-orphan", &[]).await;
    g.provisioning(&[("orphan", &["user-service"]), ("paused", &["user-service"])])
        .await;
    g.create_kustomization(
        &g.t.named("orphan"),
        REVIEW_PATH,
        &g.t.named("orphan"),
        set("deletionPolicy", json!("Orphan")),
    )
    .await;
    g.create_kustomization(
        &g.t.named("paused"),
        REVIEW_PATH,
        &g.t.named("paused"),
        |_| {},
    )
    .await;
    for name in ["orphan", "paused"] {
        g.t.wait_phase(name, Phase::Warm, FLUX).await;
    }
    let suspend = json!({"spec": {"suspend": true}});
    g.kustomizations
        .patch(
            &g.t.named("paused"),
            &PatchParams::default(),
            &Patch::Merge(&suspend),
        )
        .await
        .expect("suspend");
    wait_for(&g.t.environments, "paused", REACTION, "suspended", |e| {
        e.is_some_and(|e| provider_message(e).contains("suspended"))
    })
    .await;

    for (name, why) in [
        ("orphan", "its deletionPolicy is Orphan"),
        ("paused", "it is suspended"),
    ] {
        let teardown = History::record(&g.t.environments, name, |e| {
            Some(destroyed_message(e)).filter(|m| !m.is_empty())
        });
        g.t.destroy(name).await;
        let said = format!("Kustomization prunes nothing when deleted because {why}");
        assert!(
            teardown.entries().iter().any(|m| m.contains(&said)),
            "{name}: {:?}",
            teardown.entries()
        );
        assert!(g.kustomization(&g.t.named(name)).await.is_none(), "{name}");
        assert!(g.t.namespace(&g.t.named(name)).await.is_none(), "{name}");
        assert_eq!(
            g.deleted_by_flux(&g.t.named(name)),
            [],
            "{name}: Flux pruned nothing; the workloads went with the namespace"
        );
    }
}

#[tokio::test]
async fn kustomizations_another_kustomization_applies_or_deploying_elsewhere_are_kept() {
    let g = flux_gitops("flux-owned", &[]).await;
    let child = g.t.named("child");
    let parent = g.t.named("parent");
    // The parent applies the child Kustomization from Git, into Flux's namespace.
    let child_kustomization = flux::git_kustomization(&child, &g.source, REVIEW_PATH, &child);
    g.commit(
        "the child Kustomization",
        &[(
            "apps/child.yaml".to_owned(),
            child_kustomization.to_string(),
        )],
    )
    .await;
    g.provisioning(&[("child", &["user-service"])]).await;
    g.create_kustomization(&parent, "apps", flux::NAMESPACE, |parent| {
        parent["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("targetNamespace");
    })
    .await;
    g.t.wait_phase("child", Phase::Warm, FLUX).await;
    let applied = g.kustomization(&child).await.expect("child Kustomization");
    let labels = applied.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("kustomize.toolkit.fluxcd.io/name"),
        Some(&parent),
        "Flux labels what it applies with the Kustomization that applied it"
    );

    let destroyed = g.t.destroy("child").await;
    let message = destroyed_message(&destroyed);
    assert!(
        message.contains(&format!(
            "provider app kept: created by Kustomization flux-system/{parent}, which would re-create it"
        )),
        "{message}"
    );
    assert!(
        g.kustomization(&child).await.is_some(),
        "the parent's child is kept"
    );
    assert!(
        g.t.namespace(&child).await.is_none(),
        "the namespace is gone"
    );

    // One deploying into another namespace is never the environment's.
    let elsewhere = g.t.named("elsewhere");
    let other = g.t.named("other");
    create_namespace(&g.t.client, &other).await;
    g.create_kustomization(&elsewhere, REVIEW_PATH, &other, |_| {})
        .await;
    g.wait_kustomization(&elsewhere, flux::is_ready).await;
    g.t.create(&g.environment("elsewhere", &elsewhere, &elsewhere, &[]))
        .await;
    let refused = g.t.wait_phase("elsewhere", Phase::Failed, FLUX).await;
    assert_eq!(ready_of(&refused).1, "AppFailed");
    let destroyed = g.t.destroy("elsewhere").await;
    assert!(
        destroyed_message(&destroyed).contains(&format!(
            "provider app kept: deploys into namespace {other}"
        )),
        "{}",
        destroyed_message(&destroyed)
    );
    assert!(g.kustomization(&elsewhere).await.is_some());
    assert_eq!(
        g.deployments_in(&other).await.len(),
        2,
        "what it deployed elsewhere is untouched"
    );

    for name in [&parent, &elsewhere] {
        g.kustomizations
            .delete(name, &Default::default())
            .await
            .expect("clean up");
    }
}

/// Written by hand, because the real controller holds this state only for the moments
/// between a spec change and its next reconciliation (it watches its Kustomizations):
/// Ready=True, but for the previous generation.
#[tokio::test]
async fn ready_for_an_older_generation_is_not_ready() {
    let t = operated_workspace("flux-stale", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.flux.create("flux-env", &namespace).await;
    let mut environment = t.environment("fluxed", &namespace, "flux-env", 30);
    environment.spec.template.provider = Provider::Flux;
    t.create(&environment).await;
    t.wait_phase("fluxed", Phase::Provisioning, REACTION).await;

    let bump = json!({"spec": {"path": "./envs/changed"}});
    t.flux
        .kustomizations
        .patch("flux-env", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("spec change");
    let stale_ready = json!({"status": {
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
            "message": "Applied revision: main@sha1:4f2c1e9", "observedGeneration": 1,
            "lastTransitionTime": "2026-11-24T00:00:00Z",
        }],
    }});
    t.flux
        .kustomizations
        .patch_status(
            "flux-env",
            &PatchParams::default(),
            &Patch::Merge(&stale_ready),
        )
        .await
        .expect("status for generation 1");
    let stale = wait_for(
        &t.environments,
        "fluxed",
        REACTION,
        "waiting on generation 2",
        |e| e.is_some_and(|e| provider_message(e).contains("not yet reconciled at generation 2")),
    )
    .await
    .expect("environment");
    assert_eq!(phase_of(Some(&stale)), Some(Phase::Provisioning));
    assert_eq!(ready_of(&stale).1, "Provisioning");

    t.flux.make_ready("flux-env").await;
    let warm = t.wait_phase("fluxed", Phase::Warm, REACTION).await;
    assert_eq!(ready_of(&warm), ("True".into(), "Available".into()));
}
