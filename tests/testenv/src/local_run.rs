//! What `make run` starts when no cluster is configured, so that a newcomer's first
//! command shows the product working: the local control plane with kwok's fake nodes and
//! a real Argo CD, a Git repository holding the example services, the examples of
//! `examples/` applied (the Application's source pointed at that repository), and the
//! operator (`testmesh run`) — until the example environment turns `warm` by itself and
//! a claim can bind it.
//!
//! [`LocalRun::start`] is the whole setup, so the `first_run` test runs exactly what
//! `testmesh-dev-cluster --examples` (and so `make run`) runs.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watch_object};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::argocd::{self, RealArgoCd};
use crate::error::{Error, Result};
use crate::git::{self, GitRepository};
use crate::kwok::Kwok;
use crate::process::{ProcessGroup, block_on, http_ok};
use crate::workloads::{self, REVIEW_PATH, STAGING_PATH};
use crate::{ControlPlane, OPERATOR_USER, apply_yaml, assets};

/// The examples applied, in order, from `<workspace>/examples`: the workspace, the
/// identity the dashboard's token is made for, the Application (its source rewritten, see
/// [`APPLICATION_FILE`]) and the environment.
const WORKSPACE_FILE: &str = "00-workspace.yaml";
const API_USER_FILE: &str = "api-user-role.yaml";
const APPLICATION_FILE: &str = "argocd-applications.yaml";
const ENVIRONMENT_FILE: &str = "environment-argocd.yaml";
/// The ServiceAccount of `API_USER_FILE`, allowed to use the API and dashboard.
pub const API_USER: &str = "ci-runner";
/// The chart's ClusterRoles for TestMesh's users (`testmesh-view`, `testmesh-edit`), which
/// [`API_USER_FILE`] binds; relative to the workspace root, rendered for [`RELEASE`]
/// without helm ([`render_user_roles`]).
const USER_ROLES_TEMPLATE: &str = "charts/testmesh/templates/aggregated-clusterroles.yaml";
/// The Helm release the examples assume (`helm install testmesh charts/testmesh`).
const RELEASE: &str = "testmesh";
/// Name of the Git repository, as the example Application's `github.com/org/deploy.git`.
const REPOSITORY: &str = "deploy";
/// The Application that deploys `staging` (the example environment's baseline) from the
/// repository; the examples leave the baseline to the cluster, so it is made here.
const STAGING_APPLICATION: &str = "staging";
const STAGING_NAMESPACE: &str = "staging";
/// `testmesh run`'s addresses when they are free (its defaults' ports, on 127.0.0.1
/// only); any free port otherwise.
const PREFERRED_HTTP_PORT: u16 = 8080;
const PREFERRED_API_PORT: u16 = 8000;
const OPERATOR_READY_TIMEOUT: Duration = Duration::from_secs(60);
const STAGING_READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct LocalRunConfig {
    /// The `testmesh` binary.
    pub operator_binary: PathBuf,
    /// Extra flags for `testmesh run` (`make run ARGS=…`); an `--http-address` or
    /// `--api-address` among them wins over the addresses below.
    pub operator_args: Vec<String>,
    /// `/metrics`, `/livez` and `/readyz`.
    pub http_address: SocketAddr,
    /// The REST API and the dashboard.
    pub api_address: SocketAddr,
}

impl LocalRunConfig {
    /// Addresses from `operator_args` if they name them, else 127.0.0.1:8080 and
    /// 127.0.0.1:8000 when free, else free ports of 127.0.0.1.
    pub fn new(operator_binary: impl Into<PathBuf>, operator_args: Vec<String>) -> Result<Self> {
        let address = |flag: &str, preferred: u16| match flag_value(&operator_args, flag) {
            Some(value) => value.parse::<SocketAddr>().map_err(|e| {
                Error::Config(format!("{flag}={value} is not an address (ip:port): {e}"))
            }),
            None => preferred_or_free_port(preferred),
        };
        Ok(LocalRunConfig {
            http_address: address("--http-address", PREFERRED_HTTP_PORT)?,
            api_address: address("--api-address", PREFERRED_API_PORT)?,
            operator_binary: operator_binary.into(),
            operator_args,
        })
    }

    /// Both addresses on free ports of 127.0.0.1, whatever `operator_args` say (for tests,
    /// which must not take a developer's 8000).
    pub fn on_free_ports(operator_binary: impl Into<PathBuf>) -> Result<Self> {
        Ok(LocalRunConfig {
            operator_binary: operator_binary.into(),
            operator_args: Vec::new(),
            http_address: free_port()?,
            api_address: free_port()?,
        })
    }

    /// Moves each address the user did not give to a free port if something listens
    /// there now.
    fn take_other_ports_if_taken(&mut self) -> Result<()> {
        for (flag, address) in [
            ("--http-address", &mut self.http_address),
            ("--api-address", &mut self.api_address),
        ] {
            if flag_value(&self.operator_args, flag).is_none()
                && TcpListener::bind(*address).is_err()
            {
                *address = free_port()?;
            }
        }
        Ok(())
    }

    /// `run`, the addresses the user did not give, then the user's flags.
    fn run_args(&self) -> Vec<String> {
        let mut args = vec!["run".to_owned()];
        for (flag, address) in [
            ("--http-address", self.http_address),
            ("--api-address", self.api_address),
        ] {
            if flag_value(&self.operator_args, flag).is_none() {
                args.push(format!("{flag}={address}"));
            }
        }
        args.extend(self.operator_args.iter().cloned());
        args
    }
}

/// The running local cluster with the examples and the operator. Dropping it stops
/// everything: the operator first, the control plane last (fields drop in order).
#[derive(Debug)]
pub struct LocalRun {
    operator: ProcessGroup,
    argocd: RealArgoCd,
    kwok: Kwok,
    repository: GitRepository,
    control_plane: ControlPlane,
    config: LocalRunConfig,
    /// The example environment: workspace, name and context.
    workspace: String,
    environment: String,
    context: String,
    started: Instant,
}

impl LocalRun {
    /// Starts everything and applies the examples, telling `report` each step; returns
    /// once the operator is ready (the environment provisions from then on: see
    /// [`LocalRun::wait_warm`]). Blocking, like [`ControlPlane::start`].
    pub fn start(mut config: LocalRunConfig, report: &(dyn Fn(String) + Sync)) -> Result<LocalRun> {
        let started = Instant::now();
        report(format!(
            "starting etcd, kube-apiserver, kube-controller-manager and kube-scheduler \
             (binaries from {}) ...",
            ControlPlane::assets_dir().display()
        ));
        let control_plane = ControlPlane::start()?;
        report(format!(
            "control plane ready after {:.1?}; logs in {}",
            control_plane.startup_duration(),
            control_plane.log_dir().display()
        ));
        // Both mostly wait on the API server, so they start side by side.
        let (kwok, argocd) = std::thread::scope(|scope| {
            let kwok = scope.spawn(|| Kwok::start(&control_plane));
            let argocd = RealArgoCd::start(&control_plane);
            (join(kwok), argocd)
        });
        let (kwok, argocd) = (kwok?, argocd?);
        report(format!(
            "kwok ready after {:.1?} (fake nodes {}), Argo CD after {:.1?} (Applications of \
             the `{}` namespace)",
            kwok.startup_duration(),
            crate::kwok::NODE_NAMES.join(", "),
            argocd.startup_duration(),
            argocd::NAMESPACE,
        ));

        let repository = GitRepository::create(&control_plane.run_dir().join("git"), REPOSITORY)?;
        let files = workloads::product_example_files();
        let revision = repository.commit("the example services", &files)?;
        report(format!(
            "Git repository {} at {}: {}",
            repository.url(),
            &revision[..12],
            files
                .iter()
                .map(|(path, _)| path.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));

        let examples = assets::workspace_root().join("examples");
        let environment = read_yaml(&examples.join(ENVIRONMENT_FILE))?;
        let (workspace, name, context) = environment_identity(&environment)?;
        let client_config = control_plane.admin_config();
        block_on(async {
            let client = Client::try_from(client_config)?;
            install_crds(&client, report).await?;
            let staging = staging_application(&repository.url());
            apply_values(&client, &[staging], "the baseline", report).await?;
            let template = assets::workspace_root().join(USER_ROLES_TEMPLATE);
            let user_roles = read_text(&template).and_then(|text| render_user_roles(&text))?;
            let user_roles: Vec<Value> = serde_saphyr::from_multiple(&user_roles)?;
            apply_values(&client, &user_roles, "the chart's user roles", report).await?;
            for file in [WORKSPACE_FILE, API_USER_FILE] {
                apply_values(&client, &read_yaml(&examples.join(file))?, file, report).await?;
            }
            let mut applications = read_yaml(&examples.join(APPLICATION_FILE))?;
            for application in &mut applications {
                report(point_at_local_repository(application, &repository.url()));
            }
            apply_values(&client, &applications, APPLICATION_FILE, report).await?;
            // The environment's routing falls back to staging's services: wait for them,
            // so it is warm with its whole policy.
            let apps = argocd.applications(&client);
            argocd::wait_application(&apps, STAGING_APPLICATION, STAGING_READY_TIMEOUT, |app| {
                app.is_some_and(|app| argocd::is_synced_and_healthy_at(app, &revision))
            })
            .await?;
            report(format!(
                "Argo CD deployed {STAGING_NAMESPACE}: order-service on {}",
                workloads::STAGING_SERVICE_PORT
            ));
            apply_values(&client, &environment, ENVIRONMENT_FILE, report).await
        })??;

        // Chosen before the cluster started: something may have taken a port since.
        config.take_other_ports_if_taken()?;
        let operator = start_operator(&control_plane, &config)?;
        report(format!(
            "operator ready (`{} {}`); log: {}",
            config.operator_binary.display(),
            config.run_args().join(" "),
            control_plane.log_dir().join("testmesh.log").display()
        ));
        Ok(LocalRun {
            operator,
            argocd,
            kwok,
            repository,
            control_plane,
            config,
            workspace,
            environment: name,
            context,
            started,
        })
    }

    /// Waits until the example environment is `warm`, telling `report` each phase (and
    /// reason) it passes through; returns how long it took since [`LocalRun::start`]
    /// began. Fails at once if it turns `failed` or a process exits.
    pub async fn wait_warm(
        &self,
        timeout: Duration,
        report: &(dyn Fn(String) + Sync),
    ) -> Result<Duration> {
        let client = self.control_plane.admin_client().await?;
        let updates = watch_object(self.environments(&client), &self.environment).default_backoff();
        let mut updates = std::pin::pin!(updates);
        let mut states = States::default();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut health_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            let update = tokio::select! {
                update = updates.next() => update,
                _ = health_check.tick() => {
                    self.check_processes()?;
                    continue;
                }
                () = tokio::time::sleep_until(deadline) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "{}/{} to become warm (last: {})",
                            self.workspace, self.environment, states.last()
                        ),
                        after: timeout,
                    });
                }
            };
            let environment = match update {
                Some(Ok(Some(environment))) => environment,
                Some(Ok(None)) => continue,
                Some(Err(error)) => {
                    report(format!("watching {}: {error}", self.environment));
                    continue;
                }
                None => {
                    return Err(self
                        .operator
                        .startup_error(format!("the watch on {} ended", self.environment)));
                }
            };
            if let Some(state) = states.changed(&environment) {
                report(format!(
                    "{}/{}: {state} (after {:.1?})",
                    self.workspace,
                    self.environment,
                    self.started.elapsed()
                ));
            }
            match phase(&environment) {
                Some("warm") => return Ok(self.started.elapsed()),
                Some("failed") => {
                    return Err(self.operator.startup_error(format!(
                        "{}/{} failed: {}",
                        self.workspace,
                        self.environment,
                        states.last()
                    )));
                }
                _ => {}
            }
        }
    }

    /// Reports each change of phase (or reason) of the workspace's environments from now
    /// on — a claim making one `running`, a release `cooling`, a new one provisioning —
    /// until a process exits.
    pub async fn follow(&self, report: &(dyn Fn(String) + Sync)) -> Result<()> {
        let client = self.control_plane.admin_client().await?;
        let events = watcher::watcher(self.environments(&client), watcher::Config::default())
            .default_backoff();
        let mut events = std::pin::pin!(events);
        let mut states = States::default();
        let mut health_check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                event = events.next() => match event {
                    // What is there when the watch (re)starts is known already.
                    Some(Ok(watcher::Event::InitApply(environment))) => {
                        states.changed(&environment);
                    }
                    Some(Ok(watcher::Event::Apply(environment))) => {
                        if let Some(state) = states.changed(&environment) {
                            report(format!("{}/{}: {state}", self.workspace, environment.name_any()));
                        }
                    }
                    Some(Ok(watcher::Event::Delete(environment))) => {
                        report(format!("{}/{}: deleted", self.workspace, environment.name_any()));
                    }
                    _ => {}
                },
                _ = health_check.tick() => self.check_processes()?,
            }
        }
    }

    /// Fails if a process has exited: the operator with the tail of its log, Argo CD or
    /// kwok with where their logs are.
    fn check_processes(&self) -> Result<()> {
        if let Some(exited) = self.operator.exited() {
            return Err(self.operator.startup_error(exited));
        }
        for (what, exited) in [
            ("Argo CD", self.argocd.exited()),
            ("kwok", self.kwok.exited()),
        ] {
            if let Some(exited) = exited {
                return Err(Error::Startup {
                    message: format!("{what}: {exited}"),
                    logs: format!("logs in {}", self.control_plane.log_dir().display()),
                });
            }
        }
        Ok(())
    }

    fn environments(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), &self.workspace, &environment_resource())
    }

    /// The control plane (its admin kubeconfig is what `export KUBECONFIG=…` names).
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The Git repository Argo CD syncs the examples from.
    pub fn repository(&self) -> &GitRepository {
        &self.repository
    }

    /// Where the operator serves `/metrics`, `/livez` and `/readyz`.
    pub fn http_address(&self) -> SocketAddr {
        self.config.http_address
    }

    /// Where the operator serves the REST API and the dashboard.
    pub fn api_address(&self) -> SocketAddr {
        reachable(self.config.api_address)
    }

    /// The dashboard, opened on the example's workspace.
    pub fn dashboard_url(&self) -> String {
        let address = reachable(self.config.api_address);
        format!(
            "http://{address}/test-environments#workspace={}",
            self.workspace
        )
    }

    /// The example environment's workspace (namespace).
    pub fn workspace(&self) -> &str {
        &self.workspace
    }

    /// The example environment's name.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// `testmesh` arguments that claim the example environment as `claim`, wait for it and
    /// print its routing policy as `export` lines.
    pub fn claim_args(&self, claim: &str) -> Vec<String> {
        [
            "claim",
            "--namespace",
            &self.workspace,
            "--context",
            &self.context,
            "--environment",
            &self.environment,
            "--name",
            claim,
            "--wait",
            "5m",
            "--output",
            "env",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// `testmesh` arguments that release `claim`.
    pub fn release_args(&self, claim: &str) -> Vec<String> {
        ["release", claim, "--namespace", &self.workspace]
            .map(str::to_owned)
            .to_vec()
    }

    /// `kubectl -n <workspace> create token ci-runner`: a token for the dashboard.
    pub fn token_command(&self) -> String {
        format!(
            "{} -n {} create token {API_USER}",
            self.kubectl_for_people(),
            self.workspace
        )
    }

    /// `kubectl` when it is on `PATH`, else the path of the one the control plane's build
    /// made.
    pub fn kubectl_for_people(&self) -> String {
        let on_path = std::env::var_os("PATH").is_some_and(|path| {
            std::env::split_paths(&path).any(|dir| dir.join("kubectl").is_file())
        });
        if on_path {
            return "kubectl".to_owned();
        }
        assets::find_binary("kubectl", false)
            .map_or_else(|_| "kubectl".to_owned(), |path| path.display().to_string())
    }
}

/// The last (phase, Ready reason) seen of each environment, so that only changes are
/// reported: Ready's message changes with every step of Argo CD's sync.
#[derive(Default)]
struct States {
    seen: BTreeMap<String, (String, String)>,
    last: String,
}

impl States {
    /// `phase (Ready=… reason: message)` if the phase or the reason changed.
    fn changed(&mut self, environment: &DynamicObject) -> Option<String> {
        let status = &environment.data["status"];
        let phase = status["phase"]
            .as_str()
            .unwrap_or("no status yet")
            .to_owned();
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|condition| condition["type"] == "Ready");
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        let reason = ready
            .map(|ready| text(&ready["reason"]))
            .unwrap_or_default();
        self.last = match ready {
            Some(ready) => format!(
                "{phase} (Ready={} {reason}: {})",
                text(&ready["status"]),
                text(&ready["message"])
            ),
            None => phase.clone(),
        };
        // Until the operator has written a status there is nothing to say.
        let written = status["phase"].is_string();
        let key = (phase, reason);
        let previous = self.seen.insert(environment.name_any(), key.clone());
        (written && previous != Some(key)).then(|| self.last.clone())
    }

    /// The last environment seen, described.
    fn last(&self) -> &str {
        &self.last
    }
}

/// The `testmesh.io/v1alpha1` TestEnvironment resource (this crate knows no TestMesh
/// types).
pub fn environment_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("testmesh.io", "v1alpha1", "TestEnvironment"),
        "testenvironments",
    )
}

/// `status.phase`, e.g. `warm`.
fn phase(environment: &DynamicObject) -> Option<&str> {
    environment.data["status"]["phase"].as_str()
}

fn join<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// TestMesh's CRDs (`crds/`) and Flux's Kustomization (Argo CD's come with Argo CD).
async fn install_crds(client: &Client, report: &(dyn Fn(String) + Sync)) -> Result<()> {
    let ours = assets::workspace_root().join("crds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&ours)
        .map_err(|e| Error::io(format!("list {}", ours.display()), e))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files.push(ControlPlane::crd_assets_dir().join("flux-kustomization.yaml"));
    for file in files {
        let yaml = std::fs::read_to_string(&file)
            .map_err(|e| Error::io(format!("read {}", file.display()), e))?;
        for name in crate::install_crds_from_yaml(client, &yaml).await? {
            report(format!("CRD {name} established"));
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {}", path.display()), e))
}

/// The documents of a YAML file.
fn read_yaml(path: &Path) -> Result<Vec<Value>> {
    let documents: Vec<Value> = serde_saphyr::from_multiple(&read_text(path)?)?;
    Ok(documents.into_iter().filter(|doc| !doc.is_null()).collect())
}

/// [`USER_ROLES_TEMPLATE`] as `helm template` renders it for [`RELEASE`] (with the
/// default values), so the local run needs no helm: its only directives are a comment,
/// the `if` around everything, the release's labels (left out) and the release's name.
/// Anything else in it is refused, so a change to the template cannot go unnoticed.
fn render_user_roles(template: &str) -> Result<String> {
    let mut yaml = String::new();
    let mut in_comment = false;
    for line in template.lines() {
        let directive = line.trim();
        if in_comment || directive.starts_with("{{- /*") {
            in_comment = !directive.ends_with("*/ -}}");
            continue;
        }
        let control = [
            "{{- if .Values.rbac.aggregatedClusterRoles }}",
            "{{- end }}",
        ];
        if control.contains(&directive) || directive.starts_with(r#"{{- include "testmesh.labels""#)
        {
            continue;
        }
        let line = line.replace("{{ include \"testmesh.fullname\" . }}", RELEASE);
        if line.contains("{{") {
            return Err(Error::InvalidManifest(format!(
                "{USER_ROLES_TEMPLATE}: `{}` needs helm; teach render_user_roles about it",
                line.trim()
            )));
        }
        yaml.push_str(&line);
        yaml.push('\n');
    }
    Ok(yaml)
}

/// Server-side applies `objects`, reporting each as `Kind/name (source)`.
async fn apply_values(
    client: &Client,
    objects: &[Value],
    source: &str,
    report: &(dyn Fn(String) + Sync),
) -> Result<()> {
    let yaml: String = objects
        .iter()
        .map(|object| format!("---\n{object}\n"))
        .collect();
    for applied in apply_yaml(client, &yaml).await? {
        report(format!("applied {applied} ({source})"));
    }
    Ok(())
}

/// (workspace, name, context) of the TestEnvironment among `documents`.
fn environment_identity(documents: &[Value]) -> Result<(String, String, String)> {
    let environment = documents
        .iter()
        .find(|doc| doc["kind"] == "TestEnvironment")
        .ok_or_else(|| {
            Error::InvalidManifest(format!("{ENVIRONMENT_FILE} holds no TestEnvironment"))
        })?;
    let field = |value: &Value, what: &str| {
        value.as_str().map(str::to_owned).ok_or_else(|| {
            Error::InvalidManifest(format!(
                "{ENVIRONMENT_FILE}: the TestEnvironment has no {what}"
            ))
        })
    };
    Ok((
        field(&environment["metadata"]["namespace"], "metadata.namespace")?,
        field(&environment["metadata"]["name"], "metadata.name")?,
        field(&environment["spec"]["context"], "spec.context")?,
    ))
}

/// Points an Application's source at the review services of the local repository
/// (branch [`git::BRANCH`], path [`REVIEW_PATH`]); says what changed.
fn point_at_local_repository(application: &mut Value, repository_url: &str) -> String {
    let name = application["metadata"]["name"]
        .as_str()
        .unwrap_or("<unnamed>")
        .to_owned();
    let source = &mut application["spec"]["source"];
    let before = source_description(source);
    source["repoURL"] = json!(repository_url);
    source["targetRevision"] = json!(git::BRANCH);
    source["path"] = json!(REVIEW_PATH);
    format!(
        "Application {name} ({APPLICATION_FILE}): source {before} rewritten to the local \
         repository: {}",
        source_description(source)
    )
}

/// `repoURL@targetRevision path`.
fn source_description(source: &Value) -> String {
    format!(
        "{}@{} {}",
        source["repoURL"].as_str().unwrap_or("?"),
        source["targetRevision"].as_str().unwrap_or("HEAD"),
        source["path"].as_str().unwrap_or(".")
    )
}

/// The Application deploying `staging/` of the repository into the namespace `staging`,
/// which Argo CD creates (the baseline is not an environment's, so nothing else does).
fn staging_application(repository_url: &str) -> Value {
    let mut application = argocd::git_application(
        STAGING_APPLICATION,
        repository_url,
        STAGING_PATH,
        STAGING_NAMESPACE,
    );
    application["spec"]["syncPolicy"]["syncOptions"] = json!(["CreateNamespace=true"]);
    application
}

/// Starts `testmesh run` as [`OPERATOR_USER`] and waits until `/readyz` answers 200.
fn start_operator(control_plane: &ControlPlane, config: &LocalRunConfig) -> Result<ProcessGroup> {
    let operator = ProcessGroup::new(
        "the operator",
        control_plane.log_dir(),
        control_plane.run_dir(),
    )?;
    let kubeconfig = control_plane.user_kubeconfig_path(OPERATOR_USER)?;
    operator.spawn(
        "testmesh",
        &config.operator_binary,
        &config.run_args(),
        |command| {
            command.env("KUBECONFIG", kubeconfig);
        },
    )?;
    let probe = reachable(config.http_address);
    block_on(
        operator.wait_for("testmesh /readyz", OPERATOR_READY_TIMEOUT, || {
            http_ok(probe, "/readyz")
        }),
    )??;
    Ok(operator)
}

/// The value of `--flag=value` or `--flag value` in `args`, the last if repeated.
fn flag_value<'a>(args: &'a [String], flag: &str) -> Option<&'a str> {
    let mut value = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == flag {
            value = args.next().map(String::as_str);
        } else if let Some(inline) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            value = Some(inline);
        }
    }
    value
}

/// 127.0.0.1:`port` if nothing listens there, else a free port of 127.0.0.1.
fn preferred_or_free_port(port: u16) -> Result<SocketAddr> {
    let preferred = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
    match TcpListener::bind(preferred) {
        Ok(_) => Ok(preferred),
        Err(_) => free_port(),
    }
}

fn free_port() -> Result<SocketAddr> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|e| Error::io("bind 127.0.0.1:0", e))
}

/// An address to connect to for one the operator listens on: a wildcard means this host.
fn reachable(address: SocketAddr) -> SocketAddr {
    if address.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), address.port())
    } else {
        address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| (*arg).to_owned()).collect()
    }

    #[test]
    fn a_flag_is_found_in_either_spelling_and_the_last_one_counts() {
        let args = strings(&[
            "--api-address=127.0.0.1:9000",
            "--http-address",
            "0.0.0.0:9090",
        ]);
        assert_eq!(flag_value(&args, "--api-address"), Some("127.0.0.1:9000"));
        assert_eq!(flag_value(&args, "--http-address"), Some("0.0.0.0:9090"));
        let repeated = strings(&["--api-address=a", "--api-address", "b"]);
        assert_eq!(flag_value(&repeated, "--api-address"), Some("b"));
        let others = strings(&["--api-addresses=x", "--watch-namespace", "team-a"]);
        assert_eq!(flag_value(&others, "--api-address"), None);
        assert_eq!(
            flag_value(&strings(&["--api-address"]), "--api-address"),
            None
        );
    }

    #[test]
    fn the_user_s_addresses_win_and_are_not_passed_twice() {
        let config = LocalRunConfig::new(
            "testmesh",
            strings(&["--api-address=0.0.0.0:9000", "--watch-namespace=team-a"]),
        )
        .unwrap();
        assert_eq!(config.api_address, "0.0.0.0:9000".parse().unwrap());
        assert!(config.http_address.ip().is_loopback());
        let args = config.run_args();
        assert_eq!(args[0], "run");
        assert_eq!(
            args.iter()
                .filter(|arg| arg.starts_with("--api-address"))
                .count(),
            1
        );
        assert!(args.contains(&format!("--http-address={}", config.http_address)));
        assert!(args.contains(&"--watch-namespace=team-a".to_owned()));
        assert!(LocalRunConfig::new("testmesh", strings(&["--api-address=:8000"])).is_err());
    }

    #[test]
    fn a_wildcard_address_is_reached_on_this_host() {
        assert_eq!(
            reachable("0.0.0.0:8000".parse().unwrap()),
            "127.0.0.1:8000".parse().unwrap()
        );
        assert_eq!(
            reachable("10.1.2.3:8000".parse().unwrap()),
            "10.1.2.3:8000".parse().unwrap()
        );
    }

    #[test]
    fn the_example_application_is_pointed_at_the_local_repository() {
        let examples = assets::workspace_root().join("examples");
        let mut applications = read_yaml(&examples.join(APPLICATION_FILE)).unwrap();
        let said = point_at_local_repository(&mut applications[0], "file:///tmp/deploy.git");
        let source = &applications[0]["spec"]["source"];
        assert_eq!(source["repoURL"], "file:///tmp/deploy.git");
        assert_eq!(source["targetRevision"], git::BRANCH);
        assert_eq!(source["path"], REVIEW_PATH);
        assert!(
            said.contains("https://github.com/org/deploy.git@pr-123 overlays/review")
                && said.contains("file:///tmp/deploy.git@main review"),
            "{said}"
        );
        // The rest of the example stays as documented.
        assert_eq!(applications[0]["metadata"]["name"], "testmesh-pr-123");
        assert_eq!(
            applications[0]["spec"]["destination"]["namespace"],
            "review-pr-123"
        );
    }

    #[test]
    fn the_chart_s_user_roles_render_without_helm() {
        let template = read_text(&assets::workspace_root().join(USER_ROLES_TEMPLATE)).unwrap();
        let roles: Vec<Value> =
            serde_saphyr::from_multiple(&render_user_roles(&template).unwrap()).unwrap();
        let names: Vec<&str> = roles
            .iter()
            .map(|role| role["metadata"]["name"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(names, ["testmesh-view", "testmesh-edit"]);
        let edit = &roles[1];
        assert_eq!(
            edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
            "true"
        );
        let verbs = &edit["rules"][0]["verbs"];
        assert!(
            verbs.as_array().unwrap().contains(&json!("delete")),
            "{verbs}"
        );
        // What the API user of the examples is bound to.
        let examples = assets::workspace_root().join("examples");
        let binding = read_yaml(&examples.join(API_USER_FILE)).unwrap();
        assert!(
            binding.iter().any(
                |doc| doc["kind"] == "RoleBinding" && doc["roleRef"]["name"] == "testmesh-edit"
            ),
            "{binding:?}"
        );

        let unknown = "{{- if .Values.other }}\nkind: ClusterRole\n{{- end }}\n";
        assert!(render_user_roles(unknown).is_err());
    }

    #[test]
    fn the_example_environment_is_pr_123_of_team_a_on_the_staging_baseline() {
        let examples = assets::workspace_root().join("examples");
        let documents = read_yaml(&examples.join(ENVIRONMENT_FILE)).unwrap();
        assert_eq!(
            environment_identity(&documents).unwrap(),
            (
                "team-a".to_owned(),
                "pr-123".to_owned(),
                "pr-123".to_owned()
            )
        );
        assert_eq!(
            documents[0]["spec"]["routing"]["baselineNamespace"],
            STAGING_NAMESPACE
        );
        let api_user = read_yaml(&examples.join(API_USER_FILE)).unwrap();
        assert!(
            api_user
                .iter()
                .any(|doc| doc["kind"] == "ServiceAccount" && doc["metadata"]["name"] == API_USER)
        );
    }
}
