//! Starting, health-checking and stopping etcd, kube-apiserver, kube-controller-manager
//! and kube-scheduler.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::Api;

use crate::assets;
use crate::certs::{self, Certs};
use crate::error::{Error, Result};
use crate::process::{ProcessGroup, block_on, free_ports};

/// User name of the cluster-admin identity (group `system:masters`).
pub const ADMIN_USER: &str = "admin";
/// Ordinary users without any RBAC permissions, for authorization tests.
pub const TEST_USERS: [&str; 2] = ["alice", "bob"];
/// Identity for an operator under test (group `system:masters`): separate from
/// [`ADMIN_USER`] so the audit log tells the operator's requests from the test's own.
pub const OPERATOR_USER: &str = "testmesh-operator";
/// Identity of a real Argo CD's controllers ([`crate::argocd::RealArgoCd`]; group
/// `system:masters`), so the audit log tells Argo CD's writes apart.
pub const ARGOCD_USER: &str = "argocd";
/// Identity of a real Flux's source-controller and kustomize-controller
/// ([`crate::flux::RealFlux`]; group `system:masters`), so the audit log tells Flux's
/// writes apart.
pub const FLUX_USER: &str = "flux";
/// Identity of kwok, which plays the kubelet of fake nodes ([`crate::kwok::Kwok`]; group
/// `system:masters`).
pub const KWOK_USER: &str = "kwok";
/// Group the [`TEST_USERS`] belong to (besides `system:authenticated`).
pub const TEST_USERS_GROUP: &str = "testmesh:users";

/// The process names of the two components the fault methods act on.
const ETCD: &str = "etcd";
const APISERVER: &str = "kube-apiserver";

const CONTROLLER_MANAGER_USER: &str = "system:kube-controller-manager";
const SCHEDULER_USER: &str = "system:kube-scheduler";
/// Issuer of service-account tokens; the in-cluster default.
const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Controllers we run: namespace deletion, garbage collection, default service accounts
/// (+ legacy token secrets), `kube-root-ca.crt` config maps, the aggregated
/// `admin`/`edit`/`view` cluster roles — and the workload controllers a Deployment needs
/// to become Available and a Service to get EndpointSlices, with kwok as the kubelet of
/// fake nodes ([`crate::kwok`]). Jobs too, so hooks run to completion. Without kwok
/// started, nothing schedules or runs their pods, which is harmless.
const CONTROLLERS: &str = "namespace-controller,garbage-collector-controller,\
serviceaccount-controller,serviceaccount-token-controller,\
root-ca-certificate-publisher-controller,clusterrole-aggregation-controller,\
deployment-controller,replicaset-controller,job-controller,endpointslice-controller";

const APISERVER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const CONTROLLER_MANAGER_READY_TIMEOUT: Duration = Duration::from_secs(60);
const SCHEDULER_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Run directories older than this are removed when a new run starts.
const STALE_RUN_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A running etcd + kube-apiserver + kube-controller-manager + kube-scheduler on
/// 127.0.0.1.
///
/// Every run gets its own directory `<workspace>/target/testenv/<run-id>/`
/// containing `certs/`, `etcd/` (data, removed on drop), `logs/` (kept) and a
/// kubeconfig per static user (`kubeconfig` is the admin's).
///
/// Dropping the value kills the processes. Children are additionally tied to a
/// launcher thread via `PR_SET_PDEATHSIG`, so they also die when the owning
/// process exits without running destructors (the [`ControlPlane::shared`] case).
#[derive(Debug)]
pub struct ControlPlane {
    run_dir: PathBuf,
    log_dir: PathBuf,
    etcd_data_dir: PathBuf,
    /// user name -> kubeconfig file (every static user)
    kubeconfig_paths: BTreeMap<String, PathBuf>,
    audit_log_path: PathBuf,
    server_url: String,
    server_uri: http::Uri,
    certs: Certs,
    /// user name -> bearer token (every static user)
    tokens: BTreeMap<String, String>,
    kubectl_path: PathBuf,
    startup_duration: Duration,
    processes: ProcessGroup,
    /// The API server's binary and flags, to start it again after
    /// [`ControlPlane::stop_apiserver`].
    apiserver_command: (PathBuf, Vec<String>),
}

impl ControlPlane {
    /// Starts a fresh control plane and blocks until it is ready: `/readyz` of the
    /// API server is `ok`, the controller manager's and the scheduler's `/healthz` are
    /// `ok`, and the `default` service account exists in the `default` namespace.
    ///
    /// This is blocking std code on purpose so it can run inside a
    /// `OnceLock::get_or_init` from a `#[tokio::test]`; the async health checks run
    /// on a private runtime in a helper thread. From async code outside tests,
    /// wrap it in `tokio::task::spawn_blocking`.
    pub fn start() -> Result<Self> {
        let started = Instant::now();
        cleanup_stale_runs();

        let etcd = assets::find_binary("etcd", true)?;
        let apiserver = assets::find_binary("kube-apiserver", false)?;
        let controller_manager = assets::find_binary("kube-controller-manager", false)?;
        let scheduler = assets::find_binary("kube-scheduler", false)?;
        let kubectl_path = assets::find_binary("kubectl", false)?;

        let run_dir = create_run_dir()?;
        let log_dir = run_dir.join("logs");
        let etcd_data_dir = run_dir.join("etcd");
        let cert_dir = run_dir.join("certs");
        let processes = ProcessGroup::new("control plane", &log_dir, &run_dir)?;
        let certs = certs::generate(&cert_dir)?;

        let mut tokens = BTreeMap::new();
        for user in [ADMIN_USER, OPERATOR_USER, ARGOCD_USER, FLUX_USER, KWOK_USER]
            .into_iter()
            .chain(TEST_USERS)
        {
            tokens.insert(user.to_owned(), random_hex(16)?);
        }
        let controller_manager_token = random_hex(16)?;
        let scheduler_token = random_hex(16)?;
        let token_file = cert_dir.join("tokens.csv");
        write_file(
            &token_file,
            &token_file_csv(
                &tokens,
                &[
                    (CONTROLLER_MANAGER_USER, controller_manager_token.as_str()),
                    (SCHEDULER_USER, scheduler_token.as_str()),
                ],
            ),
        )?;

        let [
            etcd_client_port,
            etcd_peer_port,
            apiserver_port,
            controller_manager_port,
            scheduler_port,
        ] = free_ports()?;
        let server_url = format!("https://127.0.0.1:{apiserver_port}");
        let server_uri = server_url
            .parse::<http::Uri>()
            .map_err(|e| Error::Config(format!("API server URL {server_url}: {e}")))?;
        let write_kubeconfig = |path: PathBuf, user: &str, token: &str| -> Result<PathBuf> {
            write_file(
                &path,
                &kubeconfig(&server_url, &certs.ca_cert, user, token)?,
            )?;
            Ok(path)
        };
        let mut kubeconfig_paths = BTreeMap::new();
        for (user, token) in &tokens {
            let file = match user.as_str() {
                ADMIN_USER => "kubeconfig".to_owned(),
                OPERATOR_USER => "operator.kubeconfig".to_owned(),
                other => format!("{other}.kubeconfig"),
            };
            kubeconfig_paths.insert(
                user.clone(),
                write_kubeconfig(run_dir.join(file), user, token)?,
            );
        }
        let controller_manager_kubeconfig = write_kubeconfig(
            cert_dir.join("controller-manager.kubeconfig"),
            CONTROLLER_MANAGER_USER,
            &controller_manager_token,
        )?;
        let scheduler_kubeconfig = write_kubeconfig(
            cert_dir.join("scheduler.kubeconfig"),
            SCHEDULER_USER,
            &scheduler_token,
        )?;
        let audit_policy = cert_dir.join("audit-policy.yaml");
        write_file(&audit_policy, AUDIT_POLICY)?;
        let audit_log_path = log_dir.join("audit.log");

        let mut control_plane = ControlPlane {
            run_dir,
            log_dir,
            etcd_data_dir,
            kubeconfig_paths,
            audit_log_path: audit_log_path.clone(),
            server_url,
            server_uri,
            certs,
            tokens,
            kubectl_path,
            startup_duration: Duration::ZERO,
            processes,
            apiserver_command: (apiserver, Vec::new()),
        };
        // From here on, an early return drops `control_plane`, which kills whatever
        // was started so far.

        let etcd_client_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            "--name=testenv".to_owned(),
            format!("--data-dir={}", control_plane.etcd_data_dir.display()),
            format!("--listen-client-urls={etcd_client_url}"),
            format!("--advertise-client-urls={etcd_client_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=testenv={etcd_peer_url}"),
            "--unsafe-no-fsync".to_owned(),
            "--logger=zap".to_owned(),
            "--log-outputs=stderr".to_owned(),
        ];
        control_plane
            .processes
            .spawn(ETCD, &etcd, &etcd_args, |command| {
                // etcd also reads ETCD_* variables and refuses to start when they
                // conflict with flags; do not let the developer's environment leak in.
                for (key, _) in std::env::vars_os() {
                    if key.to_string_lossy().starts_with("ETCD_") {
                        command.env_remove(key);
                    }
                }
            })?;

        let c = &control_plane.certs;
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_client_url}"),
            "--bind-address=127.0.0.1".to_owned(),
            format!("--secure-port={apiserver_port}"),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--tls-cert-file={}", c.serving_cert.display()),
            format!("--tls-private-key-file={}", c.serving_key.display()),
            format!("--client-ca-file={}", c.ca_cert.display()),
            format!("--token-auth-file={}", token_file.display()),
            "--authorization-mode=RBAC".to_owned(),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-account-key-file={}", c.sa_pub.display()),
            format!("--service-account-signing-key-file={}", c.sa_key.display()),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--endpoint-reconciler-type=none".to_owned(),
            format!(
                "--requestheader-client-ca-file={}",
                c.front_proxy_ca_cert.display()
            ),
            "--requestheader-allowed-names=front-proxy-client".to_owned(),
            "--requestheader-username-headers=X-Remote-User".to_owned(),
            "--requestheader-group-headers=X-Remote-Group".to_owned(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
            format!(
                "--proxy-client-cert-file={}",
                c.front_proxy_client_cert.display()
            ),
            format!(
                "--proxy-client-key-file={}",
                c.front_proxy_client_key.display()
            ),
            "--allow-privileged=true".to_owned(),
            format!("--audit-policy-file={}", audit_policy.display()),
            format!("--audit-log-path={}", audit_log_path.display()),
            "--audit-log-format=json".to_owned(),
            "--audit-log-mode=blocking".to_owned(),
        ];
        control_plane.apiserver_command.1 = apiserver_args;
        control_plane.spawn_apiserver()?;
        block_on(control_plane.wait_apiserver_ready())??;

        // The controller manager and the scheduler start side by side.
        let c = &control_plane.certs;
        let serving = |port: u16| {
            vec![
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", c.serving_cert.display()),
                format!("--tls-private-key-file={}", c.serving_key.display()),
                "--leader-elect=false".to_owned(),
            ]
        };
        let with_kubeconfig = |kubeconfig: &Path| {
            let kubeconfig = kubeconfig.display();
            vec![
                format!("--kubeconfig={kubeconfig}"),
                format!("--authentication-kubeconfig={kubeconfig}"),
                format!("--authorization-kubeconfig={kubeconfig}"),
            ]
        };
        let mut controller_manager_args = with_kubeconfig(&controller_manager_kubeconfig);
        controller_manager_args.extend(serving(controller_manager_port));
        controller_manager_args.extend([
            format!("--controllers={CONTROLLERS}"),
            format!("--service-account-private-key-file={}", c.sa_key.display()),
            format!("--root-ca-file={}", c.ca_cert.display()),
            "--use-service-account-credentials=false".to_owned(),
        ]);
        let mut scheduler_args = with_kubeconfig(&scheduler_kubeconfig);
        scheduler_args.extend(serving(scheduler_port));
        control_plane.processes.spawn(
            "kube-controller-manager",
            &controller_manager,
            &controller_manager_args,
            |_| {},
        )?;
        control_plane
            .processes
            .spawn("kube-scheduler", &scheduler, &scheduler_args, |_| {})?;
        block_on(control_plane.wait_controller_manager_ready(controller_manager_port))??;
        block_on(control_plane.wait_scheduler_ready(scheduler_port))??;

        control_plane.startup_duration = started.elapsed();
        tracing::info!(
            run_dir = %control_plane.run_dir.display(),
            elapsed = ?control_plane.startup_duration,
            "test control plane ready"
        );
        Ok(control_plane)
    }

    /// The control plane shared by all tests of one test binary, started on first use.
    ///
    /// It is never dropped; its processes die with the test process (see the
    /// type-level docs). Panics with the component logs if startup fails (every
    /// caller gets the same message; startup is attempted only once).
    ///
    /// Build a fresh client per test ([`ControlPlane::admin_client`]): a
    /// `kube::Client` is bound to the Tokio runtime it was created on, and every
    /// `#[tokio::test]` has its own runtime.
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<Result<ControlPlane, String>> = OnceLock::new();
        match SHARED.get_or_init(|| ControlPlane::start().map_err(|e| e.to_string())) {
            Ok(control_plane) => control_plane,
            Err(message) => panic!("failed to start the shared test control plane: {message}"),
        }
    }

    /// Directory holding the control-plane binaries (`$TESTMESH_TEST_ASSETS` or
    /// `<workspace>/target/test-assets/bin`).
    pub fn assets_dir() -> PathBuf {
        assets::bin_dir()
    }

    /// `<workspace>/target/test-assets/crds`: third-party CRD YAML files (Argo CD,
    /// Flux) for [`crate::install_crds_from_yaml`].
    pub fn crd_assets_dir() -> PathBuf {
        assets::crd_dir()
    }

    /// HTTPS URL of the API server, e.g. `https://127.0.0.1:41234`.
    pub fn server_url(&self) -> &str {
        &self.server_url
    }

    /// Admin kubeconfig, usable with `kubectl --kubeconfig` or `KUBECONFIG=`.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_paths[ADMIN_USER]
    }

    /// PEM file of the cluster CA.
    pub fn ca_cert_path(&self) -> &Path {
        &self.certs.ca_cert
    }

    /// Directory of this run (certs, etcd data, logs, kubeconfig).
    pub fn run_dir(&self) -> &Path {
        &self.run_dir
    }

    /// Kubeconfig of [`OPERATOR_USER`], for running an operator under test.
    pub fn operator_kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_paths[OPERATOR_USER]
    }

    /// Kubeconfig of one of the static users ([`ADMIN_USER`], [`OPERATOR_USER`],
    /// [`ARGOCD_USER`], [`KWOK_USER`], [`TEST_USERS`]).
    pub fn user_kubeconfig_path(&self, user: &str) -> Result<&Path> {
        self.kubeconfig_paths
            .get(user)
            .map(PathBuf::as_path)
            .ok_or_else(|| Error::UnknownUser(user.to_owned()))
    }

    /// Every write the API server completed so far (create, update, patch, delete),
    /// from its audit log, oldest first.
    pub fn audited_writes(&self) -> Result<Vec<AuditedRequest>> {
        Ok(self
            .audited_requests()?
            .into_iter()
            .filter(AuditedRequest::is_write)
            .collect())
    }

    /// Every audited request so far: all writes, and the reads (get, list, watch) of
    /// [`OPERATOR_USER`]. A watch is recorded when it ends. The API server rotates its
    /// audit log every 100 MB (`audit-<time>.log` beside `audit.log`), which a long
    /// benchmark passes: the rotated files are read first, oldest first.
    pub fn audited_requests(&self) -> Result<Vec<AuditedRequest>> {
        let mut log = String::new();
        for path in self.audit_log_files()? {
            log += &std::fs::read_to_string(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        }
        Ok(log
            .lines()
            .filter_map(|line| serde_json::from_str::<AuditEvent>(line).ok())
            .filter(|event| event.stage == "ResponseComplete")
            .map(|event| AuditedRequest {
                user: event.user.username,
                user_agent: event.user_agent,
                verb: event.verb,
                resource: event.object_ref.resource,
                subresource: event.object_ref.subresource,
                namespace: event.object_ref.namespace,
                name: event.object_ref.name,
                code: event.response_status.map_or(0, |s| s.code),
                received_at: event.request_received_timestamp,
                completed_at: event.stage_timestamp,
                request_uri: event.request_uri,
                response_object: event.response_object,
            })
            .collect())
    }

    /// The audit log's rotated files, oldest first, then the current one.
    fn audit_log_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.audit_log_path.parent().unwrap_or(Path::new("."));
        let current = self.audit_log_path.file_name().unwrap_or_default();
        let stem = self
            .audit_log_path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy();
        let rotated_prefix = format!("{stem}-");
        let entries =
            std::fs::read_dir(dir).map_err(|e| Error::io(format!("list {}", dir.display()), e))?;
        let mut rotated: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| {
                path.file_name().is_some_and(|name| {
                    let name = name.to_string_lossy();
                    name.starts_with(&rotated_prefix) && name.ends_with(".log")
                })
            })
            .collect();
        // Rotated names carry their time (`audit-2026-11-24T12-43-17.213.log`).
        rotated.sort();
        rotated.push(dir.join(current));
        Ok(rotated)
    }

    /// Directory with `etcd.log`, `kube-apiserver.log`, `kube-controller-manager.log`.
    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Wall-clock time [`ControlPlane::start`] took until everything was ready.
    pub fn startup_duration(&self) -> Duration {
        self.startup_duration
    }

    /// Bearer token of `user` ([`ADMIN_USER`] or one of [`TEST_USERS`]).
    pub fn user_token(&self, user: &str) -> Option<&str> {
        self.tokens.get(user).map(String::as_str)
    }

    /// Client configuration authenticating with an arbitrary bearer token
    /// (e.g. a service-account token obtained through the TokenRequest API).
    pub fn config_for_token(&self, token: &str) -> kube::Config {
        let mut config = kube::Config::new(self.server_uri.clone());
        config.root_cert = Some(vec![self.certs.ca_der.clone()]);
        config.auth_info.token = Some(secrecy::SecretString::from(token));
        config
    }

    /// Client configuration for the cluster admin (`system:masters`).
    pub fn admin_config(&self) -> kube::Config {
        self.config_for_token(&self.tokens[ADMIN_USER])
    }

    /// Client configuration for one of the static users (`admin`, `alice`, `bob`).
    pub fn user_config(&self, user: &str) -> Result<kube::Config> {
        self.user_token(user)
            .map(|token| self.config_for_token(token))
            .ok_or_else(|| Error::UnknownUser(user.to_owned()))
    }

    /// A new admin client, bound to the current Tokio runtime.
    pub async fn admin_client(&self) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.admin_config())?)
    }

    /// A new client for `user` (see [`ControlPlane::user_config`]), bound to the
    /// current Tokio runtime.
    pub async fn user_client(&self, user: &str) -> Result<kube::Client> {
        Ok(kube::Client::try_from(self.user_config(user)?)?)
    }

    /// `kubectl --kubeconfig <admin kubeconfig>`; add arguments and run it.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(&self.kubectl_path);
        command.arg("--kubeconfig").arg(self.kubeconfig_path());
        command
    }

    /// Kills the API server (SIGKILL, as a crashed or rebooted node would); etcd keeps
    /// the data. Every client's connection breaks until [`ControlPlane::start_apiserver`].
    pub fn stop_apiserver(&self) {
        self.processes.kill(APISERVER);
    }

    /// Starts the API server again, with the same flags on the same address, and waits
    /// until it is ready.
    pub async fn start_apiserver(&self) -> Result<()> {
        self.spawn_apiserver()?;
        self.wait_apiserver_ready().await
    }

    fn spawn_apiserver(&self) -> Result<()> {
        let (program, args) = &self.apiserver_command;
        self.processes.spawn(APISERVER, program, args, |_| {})
    }

    /// Freezes etcd (SIGSTOP): the API server's reads from its watch cache still answer,
    /// every write and quorum read hangs until [`ControlPlane::resume_etcd`].
    pub fn pause_etcd(&self) -> Result<()> {
        self.processes.signal(ETCD, "STOP")
    }

    /// Lets a paused etcd run again (SIGCONT).
    pub fn resume_etcd(&self) -> Result<()> {
        self.processes.signal(ETCD, "CONT")
    }

    /// The process ids of the API server and etcd, for measuring what serving a workload
    /// costs them (CPU times in `/proc/<pid>/stat`). Ask again after
    /// [`ControlPlane::start_apiserver`]: a restarted API server has a new one.
    pub fn server_pids(&self) -> Result<[u32; 2]> {
        Ok([self.processes.pid(APISERVER)?, self.processes.pid(ETCD)?])
    }

    /// Kills all processes and removes the etcd data directory (logs are kept).
    /// Also done on drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        // Reverse start order: scheduler, controller manager, API server, etcd.
        self.processes.kill_all();
        if self.etcd_data_dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&self.etcd_data_dir)
        {
            tracing::warn!(dir = %self.etcd_data_dir.display(), error = %e, "cannot remove etcd data");
        }
    }

    async fn wait_apiserver_ready(&self) -> Result<()> {
        let client = self.admin_client().await?;
        self.processes
            .wait_for("kube-apiserver /readyz", APISERVER_READY_TIMEOUT, || {
                get_ok(&client, "/readyz")
            })
            .await
    }

    /// Waits for `/healthz` of a component serving the API server's certificate on
    /// `port` (the controller manager, the scheduler).
    async fn wait_component_healthy(
        &self,
        component: &str,
        port: u16,
        timeout: Duration,
    ) -> Result<()> {
        let uri = format!("https://127.0.0.1:{port}")
            .parse::<http::Uri>()
            .map_err(|e| Error::Config(e.to_string()))?;
        let mut config = kube::Config::new(uri);
        config.root_cert = Some(vec![self.certs.ca_der.clone()]);
        let client = kube::Client::try_from(config)?;
        self.processes
            .wait_for(&format!("{component} /healthz"), timeout, || {
                get_ok(&client, "/healthz")
            })
            .await
    }

    async fn wait_scheduler_ready(&self, port: u16) -> Result<()> {
        self.wait_component_healthy("kube-scheduler", port, SCHEDULER_READY_TIMEOUT)
            .await
    }

    async fn wait_controller_manager_ready(&self, port: u16) -> Result<()> {
        self.wait_component_healthy(
            "kube-controller-manager",
            port,
            CONTROLLER_MANAGER_READY_TIMEOUT,
        )
        .await?;

        // The serviceaccount controller creating `default/default` proves the
        // controllers are actually running (and that the `default` namespace exists).
        let service_accounts: Api<ServiceAccount> =
            Api::namespaced(self.admin_client().await?, "default");
        self.processes
            .wait_for(
                "service account default/default",
                CONTROLLER_MANAGER_READY_TIMEOUT,
                || async {
                    service_accounts
                        .get_opt("default")
                        .await
                        .map(|sa| sa.is_some())
                        .map_err(|e| e.to_string())
                },
            )
            .await
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// `GET path` returning exactly `ok`.
async fn get_ok(client: &kube::Client, path: &str) -> Result<bool, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match client.request_text(request).await {
        Ok(body) => Ok(body.trim() == "ok"),
        Err(e) => Err(e.to_string()),
    }
}

/// `n` random bytes from `/dev/urandom`, hex encoded.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0_u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("read /dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn write_file(path: &Path, contents: &str) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(format!("write {}", path.display()), e))
}

/// Every write, and the operator identity's reads too (so a benchmark can count what an
/// operator asks of the API server, watches included).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  # The namespaces the operator deletes, as the API server answered: whole, with the
  # annotations that prove whose they were.
  - level: RequestResponse
    users: ["testmesh-operator"]
    verbs: ["delete"]
    resources: [{group: "", resources: ["namespaces"]}]
  - level: Metadata
    verbs: ["create", "update", "patch", "delete", "deletecollection"]
  - level: Metadata
    users: ["testmesh-operator"]
    verbs: ["get", "list", "watch"]
  - level: None
"#;

/// The verbs that change something.
const WRITE_VERBS: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

/// `token,user,uid,"groups"` lines for `--token-auth-file`: the control-plane
/// components, then the static users.
fn token_file_csv(tokens: &BTreeMap<String, String>, components: &[(&str, &str)]) -> String {
    let mut csv = String::new();
    for (user, token) in components {
        let uid = user.trim_start_matches("system:");
        csv.push_str(&format!("{token},{user},uid-{uid},\"system:masters\"\n"));
    }
    for (user, token) in tokens {
        let groups = if TEST_USERS.contains(&user.as_str()) {
            TEST_USERS_GROUP
        } else {
            "system:masters"
        };
        csv.push_str(&format!("{token},{user},uid-{user},\"{groups}\"\n"));
    }
    csv
}

/// A kubeconfig (JSON is valid YAML) referencing the CA file and embedding `token`.
fn kubeconfig(server: &str, ca_cert: &Path, user: &str, token: &str) -> Result<String> {
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{
            "name": "testenv",
            "cluster": { "server": server, "certificate-authority": ca_cert },
        }],
        "users": [{ "name": user, "user": { "token": token } }],
        "contexts": [{
            "name": "testenv",
            "context": { "cluster": "testenv", "user": user, "namespace": "default" },
        }],
        "current-context": "testenv",
    });
    serde_json::to_string_pretty(&config)
        .map_err(|e| Error::Config(format!("serialize kubeconfig: {e}")))
}

/// Creates `<workspace>/target/testenv/<unix-seconds>-<pid>-<n>`.
fn create_run_dir() -> Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let root = assets::runs_root();
    std::fs::create_dir_all(&root)
        .map_err(|e| Error::io(format!("create {}", root.display()), e))?;
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let dir = root.join(format!(
        "{seconds}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir(&dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    Ok(dir)
}

/// Best effort: removes run directories older than a day, and the etcd data of
/// runs whose process is gone (the shared control plane is never dropped, so
/// its etcd data would otherwise accumulate; etcd preallocates 64 MB of WAL).
fn cleanup_stale_runs() {
    let Ok(entries) = std::fs::read_dir(assets::runs_root()) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let path = entry.path();
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| now.duration_since(modified).ok());
        let owner_alive = entry
            .file_name()
            .to_str()
            .and_then(|name| name.split('-').nth(1))
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if owner_alive {
            continue;
        }
        if age.is_some_and(|age| age > STALE_RUN_AGE) {
            let _ = std::fs::remove_dir_all(&path);
        } else {
            let _ = std::fs::remove_dir_all(path.join("etcd"));
        }
    }
}

/// One request the API server completed, as recorded in its audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditedRequest {
    /// Who made the request.
    pub user: String,
    /// The client's User-Agent (TestMesh names its replica there).
    pub user_agent: String,
    /// `create`, `update`, `patch`, `delete`, `get`, `list`, `watch`, …
    pub verb: String,
    /// Plural resource name, e.g. `namespaces`.
    pub resource: String,
    /// e.g. `status`.
    pub subresource: Option<String>,
    /// Namespace of the object, for namespaced resources.
    pub namespace: Option<String>,
    /// Name of the object (absent for a create with generateName).
    pub name: Option<String>,
    /// HTTP status code of the response.
    pub code: u16,
    /// When the API server received the request (RFC 3339, microseconds).
    pub received_at: String,
    /// When it had sent the whole response (RFC 3339, microseconds).
    pub completed_at: String,
    /// Path and query as sent, e.g. `/api/v1/namespaces?labelSelector=…`; the only
    /// name of a non-resource request such as discovery (`/api`, `/apis`), which has
    /// an empty `resource`.
    pub request_uri: String,
    /// The object the API server answered with, where the audit policy records it: the
    /// namespaces [`OPERATOR_USER`] deletes.
    pub response_object: Option<serde_json::Value>,
}

impl AuditedRequest {
    /// Whether it changed something: a create, update, patch or delete.
    pub fn is_write(&self) -> bool {
        WRITE_VERBS.contains(&self.verb.as_str())
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    stage: String,
    verb: String,
    user: AuditUser,
    #[serde(default)]
    user_agent: String,
    #[serde(default)]
    object_ref: AuditObjectRef,
    response_status: Option<AuditResponseStatus>,
    #[serde(default)]
    request_received_timestamp: String,
    #[serde(default)]
    stage_timestamp: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    response_object: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct AuditUser {
    username: String,
}

#[derive(serde::Deserialize, Default)]
struct AuditObjectRef {
    #[serde(default)]
    resource: String,
    subresource: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
}

#[derive(serde::Deserialize)]
struct AuditResponseStatus {
    #[serde(default)]
    code: u16,
}
