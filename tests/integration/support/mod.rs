//! Shared set-up for the integration tests: one real control plane per test binary, with
//! TestMesh's CRDs (the committed `crds/` files, as users install them) established.

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, PostParams};
use kube::runtime::wait::await_condition;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use testmesh::lifecycle::ClaimPhase;
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::argocd::{self, ArgoCd};
use testmesh_testenv::flux::{self, Flux};
use testmesh_testenv::operator::Operator;
use testmesh_testenv::{
    AuditedRequest, ControlPlane, OPERATOR_USER, TempNamespace, install_crds_from_yaml,
    with_temp_namespace,
};

mod history;

pub use history::{History, lifecycle};

/// How long a test waits for the operator to react to a change.
pub const REACTION: Duration = Duration::from_secs(30);
use tokio::sync::OnceCell;

static CRDS_INSTALLED: OnceCell<()> = OnceCell::const_new();

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shared control plane with TestMesh's CRDs installed, an admin client for this
/// test's runtime, and a fresh workspace namespace.
pub async fn workspace(prefix: &str) -> (&'static ControlPlane, Client, TempNamespace) {
    let control_plane = ControlPlane::shared();
    let client = control_plane.admin_client().await.expect("admin client");
    CRDS_INSTALLED
        .get_or_init(|| async {
            let client = control_plane.admin_client().await.expect("admin client");
            install_testmesh_crds(&client).await;
        })
        .await;
    let namespace = with_temp_namespace(&client, prefix)
        .await
        .expect("workspace namespace");
    (control_plane, client, namespace)
}

/// Installs TestMesh's CRDs (`crds/`) and waits until they are established.
pub async fn install_testmesh_crds(client: &Client) {
    for file in yaml_files(&repo_root().join("crds")) {
        let yaml = std::fs::read_to_string(&file).expect("read CRD file");
        install_crds_from_yaml(client, &yaml)
            .await
            .unwrap_or_else(|e| panic!("install {}: {e}", file.display()));
    }
}

/// The `.yaml` files of a directory, sorted by name.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

/// Runs a prepared command, returning (success, stdout, stderr).
pub fn run(mut command: std::process::Command) -> (bool, String, String) {
    let output = command.output().expect("run command");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// The events of `namespace` that `selector` picks (a field selector), printed with the
/// JSONPath template `jsonpath`.
pub fn events(
    control_plane: &ControlPlane,
    namespace: &str,
    selector: &str,
    jsonpath: &str,
) -> String {
    let mut kubectl = control_plane.kubectl();
    kubectl.args([
        "get",
        "events",
        "-n",
        namespace,
        &format!("--field-selector={selector}"),
        "-o",
        &format!("jsonpath={jsonpath}"),
    ]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "kubectl get events: {stderr}");
    stdout
}

/// Waits until the object `name` satisfies `condition`, failing the test after `timeout`
/// with the object's last state.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    timeout: Duration,
    what: &str,
    condition: impl Fn(Option<&K>) -> bool,
) -> Option<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Send + 'static,
{
    let waited = tokio::time::timeout(
        timeout,
        await_condition(api.clone(), name, move |obj: Option<&K>| condition(obj)),
    )
    .await;
    match waited {
        Ok(Ok(object)) => object,
        Ok(Err(error)) => panic!("watching {name} for {what}: {error}"),
        Err(_) => {
            let last = api.get_opt(name).await.ok().flatten();
            panic!(
                "timed out after {timeout:?} waiting for {name} to be {what}; last state: {last:#?}"
            )
        }
    }
}

/// The environment's phase, as the operator reported it.
pub fn phase_of(environment: Option<&TestEnvironment>) -> Option<testmesh::lifecycle::Phase> {
    environment
        .and_then(|e| e.status.as_ref())
        .and_then(|s| s.phase)
}

/// The `Ready` condition's (status, reason).
pub fn ready_of(environment: &TestEnvironment) -> (String, String) {
    environment
        .status
        .as_ref()
        .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "Ready"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// A workspace with its own fake Argo CD namespace and its own operator process.
pub struct Operated {
    pub control_plane: &'static ControlPlane,
    pub client: Client,
    pub workspace: String,
    pub argo: ArgoCd,
    pub flux: Flux,
    pub environments: Api<TestEnvironment>,
    pub operator: Operator,
}

/// Starts an operator for a fresh workspace; `extra_args` are passed to `testmesh run`.
pub async fn operated_workspace(prefix: &str, extra_args: &[&str]) -> Operated {
    let extra: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
    operated_workspace_with(prefix, move |_| extra.clone()).await
}

/// Like [`operated_workspace`], with arguments that depend on the workspace's name.
pub async fn operated_workspace_with(
    prefix: &str,
    extra_args: impl Fn(&str) -> Vec<String>,
) -> Operated {
    let (control_plane, client, workspace) = workspace(prefix).await;
    argocd::install_crds(&client).await;
    let argo_namespace = with_temp_namespace(&client, &format!("{prefix}-argocd"))
        .await
        .expect("Argo CD namespace");
    flux::install_crds(&client).await;
    let flux_namespace = with_temp_namespace(&client, &format!("{prefix}-flux"))
        .await
        .expect("Flux namespace");
    let argo = ArgoCd::new(&client, argo_namespace.name());
    let flux = Flux::new(&client, flux_namespace.name());
    let args = extra_args(workspace.name());
    let operator = start_operator(workspace.name(), &argo, &flux, &args);
    Operated {
        control_plane,
        argo,
        flux,
        environments: Api::namespaced(client.clone(), workspace.name()),
        workspace: workspace.name().to_owned(),
        client,
        operator,
    }
}

/// An operator process for `workspace`, with the workspace's Argo CD and Flux namespaces.
pub fn start_operator(
    workspace: &str,
    argo: &ArgoCd,
    flux: &Flux,
    extra_args: &[String],
) -> Operator {
    let flux_flag = format!("--flux-namespace={}", flux.namespace);
    let args: Vec<&str> = std::iter::once(flux_flag.as_str())
        .chain(extra_args.iter().map(String::as_str))
        .collect();
    Operator::start(
        env!("CARGO_BIN_EXE_testmesh"),
        workspace,
        &argo.namespace,
        &args,
    )
}

/// Waits (at most [`REACTION`]) until `operator` answers and has finished `at_least`
/// reconciliations since it started — environments' and claims' together, from its
/// `testmesh_reconciliations_total`, which counts one once its writes are done: what it
/// decided is in the API server then.
pub async fn wait_reconciliations(operator: &Operator, at_least: u64) {
    let finished = || {
        let (_, metrics) = operator.try_get("/metrics").unwrap_or_default();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("testmesh_reconciliations_total "))
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + REACTION;
    while finished() < at_least {
        assert!(
            std::time::Instant::now() < deadline,
            "the operator never finished {at_least} reconciliations"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The phases a claim was seen in, recorded by [`Operated::record_claim_phases`].
pub struct ClaimPhases {
    phases: Arc<Mutex<Vec<Option<ClaimPhase>>>>,
    watching: tokio::task::JoinHandle<()>,
}

impl ClaimPhases {
    /// Stops recording; the phases seen, in watch order.
    pub fn stop(self) -> Vec<Option<ClaimPhase>> {
        self.watching.abort();
        self.phases.lock().expect("phases").clone()
    }
}

impl Operated {
    pub fn claims(&self) -> Api<TestEnvironmentClaim> {
        Api::namespaced(self.client.clone(), &self.workspace)
    }

    pub async fn create_claim(&self, claim: &TestEnvironmentClaim) -> TestEnvironmentClaim {
        self.claims()
            .create(&PostParams::default(), claim)
            .await
            .expect("create claim")
    }

    /// A run holding `environment` through the claim `named`, which names it (context the
    /// environment's name): bound, the environment running.
    pub async fn hold_by_name(&self, environment: &str) {
        let named: TestEnvironmentClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "testmesh.io/v1alpha1",
            "kind": "TestEnvironmentClaim",
            "metadata": {"name": "named"},
            "spec": {"context": environment, "environmentName": environment},
        }))
        .expect("claim");
        self.create_claim(&named).await;
        self.wait_claim("named", ClaimPhase::Bound, REACTION).await;
        self.wait_phase(environment, testmesh::lifecycle::Phase::Running, REACTION)
            .await;
    }

    /// Asserts that the run of [`Operated::hold_by_name`] still holds `environment` `when`
    /// (a restart, a failover): its claim is bound now and was seen in no other phase
    /// while `recorded`, and the environment is running.
    pub async fn assert_still_held(&self, environment: &str, recorded: ClaimPhases, when: &str) {
        let claim = self.claims().get("named").await.expect("claim");
        assert_eq!(
            claim.status.and_then(|s| s.phase),
            Some(ClaimPhase::Bound),
            "{when}: the claim as the operator left it"
        );
        let phases = recorded.stop();
        assert!(
            !phases.is_empty() && phases.iter().all(|p| *p == Some(ClaimPhase::Bound)),
            "{when}: the claim left bound (or was never seen): {phases:?}"
        );
        let held = self
            .environments
            .get(environment)
            .await
            .expect("environment");
        assert_eq!(
            phase_of(Some(&held)),
            Some(testmesh::lifecycle::Phase::Running),
            "{when}: the run still holds it"
        );
    }

    /// Records every phase the claim `name` is seen in from now on, until
    /// [`ClaimPhases::stop`].
    pub fn record_claim_phases(&self, name: &str) -> ClaimPhases {
        let phases = Arc::new(Mutex::new(Vec::new()));
        let seen = phases.clone();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let events = watcher(self.claims(), config).applied_objects();
        let watching = tokio::spawn(async move {
            let mut events = std::pin::pin!(events);
            while let Some(Ok(claim)) = events.next().await {
                let phase = claim.status.as_ref().and_then(|s| s.phase);
                seen.lock().expect("phases").push(phase);
            }
        });
        ClaimPhases { phases, watching }
    }

    pub async fn wait_claim(
        &self,
        name: &str,
        phase: ClaimPhase,
        timeout: Duration,
    ) -> TestEnvironmentClaim {
        wait_for(&self.claims(), name, timeout, phase.as_str(), |c| {
            c.and_then(|c| c.status.as_ref()).and_then(|s| s.phase) == Some(phase)
        })
        .await
        .unwrap_or_else(|| panic!("claim {name} vanished"))
    }

    /// A TestEnvironment deployed by the Application `app` into `namespace`.
    pub fn environment(
        &self,
        name: &str,
        namespace: &str,
        app: &str,
        ttl_minutes: u32,
    ) -> TestEnvironment {
        let spec: testmesh::resources::TestEnvironmentSpec =
            serde_json::from_value(serde_json::json!({
                "context": name,
                "provider": "argocd",
                "providerAppName": app,
                "namespace": namespace,
                "ttlMinutes": ttl_minutes,
            }))
            .expect("spec");
        TestEnvironment::new(name, spec)
    }

    pub async fn create(&self, environment: &TestEnvironment) -> TestEnvironment {
        self.environments
            .create(&Default::default(), environment)
            .await
            .expect("create TestEnvironment")
    }

    /// Waits for the environment to reach `phase`.
    pub async fn wait_phase(
        &self,
        name: &str,
        phase: testmesh::lifecycle::Phase,
        timeout: Duration,
    ) -> TestEnvironment {
        wait_for(&self.environments, name, timeout, phase.as_str(), |e| {
            phase_of(e) == Some(phase)
        })
        .await
        .unwrap_or_else(|| panic!("{name} vanished"))
    }

    /// `<workspace>-env`, with a healthy Argo CD Application `app` deploying into it.
    pub async fn healthy_app(&self, app: &str) -> String {
        let namespace = format!("{}-env", self.workspace);
        self.argo.create_app(app, &namespace).await;
        self.argo.make_healthy(app).await;
        namespace
    }

    /// `<workspace>-<suffix>`: the name of one of this test's namespaces or apps.
    pub fn named(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.workspace)
    }

    /// Sets `spec.destroy` on the environment `name`.
    pub async fn request_destroy(&self, name: &str) {
        let patch = serde_json::json!({"spec": {"destroy": true}});
        self.environments
            .patch(
                name,
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&patch),
            )
            .await
            .expect("destroy");
    }

    /// Sets `spec.destroy` and waits until the environment is `destroyed`.
    pub async fn destroy(&self, name: &str) -> TestEnvironment {
        self.request_destroy(name).await;
        self.wait_phase(
            name,
            testmesh::lifecycle::Phase::Destroyed,
            Duration::from_secs(60),
        )
        .await
    }

    /// The operator's successful writes in this test's workspace, oldest first. The tests
    /// share the control plane, its audit log and the operator's identity, so the
    /// workspace is what tells this test's writes apart.
    pub fn operator_writes(&self) -> Vec<AuditedRequest> {
        self.control_plane
            .audited_writes()
            .expect("audit log")
            .into_iter()
            .filter(|w| w.user == OPERATOR_USER && w.code < 300)
            .filter(|w| w.namespace.as_deref() == Some(self.workspace.as_str()))
            .collect()
    }

    /// The operator's patches of environments themselves, not their status: adding or
    /// removing the teardown finalizer.
    pub fn finalizer_patches(&self) -> Vec<AuditedRequest> {
        self.operator_writes()
            .into_iter()
            .filter(|w| w.resource == "testenvironments" && w.subresource.is_none())
            .filter(|w| w.verb == "patch")
            .collect()
    }

    /// The namespace, if it exists.
    pub async fn namespace(&self, name: &str) -> Option<k8s_openapi::api::core::v1::Namespace> {
        Api::<k8s_openapi::api::core::v1::Namespace>::all(self.client.clone())
            .get_opt(name)
            .await
            .expect("get namespace")
    }
}

/// The `Destroyed` condition's (status, reason).
pub fn destroyed_of(environment: &TestEnvironment) -> (String, String) {
    environment
        .status
        .as_ref()
        .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "Destroyed"))
        .map(|c| (c.status.clone(), c.reason.clone()))
        .unwrap_or_default()
}

/// The `Destroyed` condition's message.
pub fn destroyed_message(environment: &TestEnvironment) -> String {
    condition_message(environment, "Destroyed")
}

/// The `Ready` condition's message.
pub fn ready_message(environment: &TestEnvironment) -> String {
    condition_message(environment, "Ready")
}

/// The message of the environment's condition `type_` (empty without one).
pub fn condition_message(environment: &TestEnvironment, type_: &str) -> String {
    environment
        .status
        .as_ref()
        .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, type_))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// `value` as a `K`; the test's own JSON, so a mismatch is a bug in the test.
pub fn from_json<K: DeserializeOwned>(value: serde_json::Value) -> K {
    serde_json::from_value(value).expect("object")
}

/// Creates the namespace `name`, without labels: one that is not TestMesh's.
pub async fn create_namespace(client: &Client, name: &str) {
    let namespace: k8s_openapi::api::core::v1::Namespace =
        from_json(serde_json::json!({"metadata": {"name": name}}));
    Api::<k8s_openapi::api::core::v1::Namespace>::all(client.clone())
        .create(&Default::default(), &namespace)
        .await
        .expect("create namespace");
}

/// `kubectl wait --for=condition=Ready te/NAME`, as a CI job runs it: fails the test if
/// it does not return success within 10 s.
pub fn kubectl_waits_for_ready(control_plane: &ControlPlane, workspace: &str, name: &str) {
    let mut kubectl = control_plane.kubectl();
    kubectl.args([
        "wait",
        "-n",
        workspace,
        &format!("te/{name}"),
        "--for=condition=Ready",
        "--timeout=10s",
    ]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "kubectl wait --for=condition=Ready: {stdout} {stderr}");
}
