//! The real Argo CD controllers on the test control plane, without a cluster around
//! them: Redis (Debian's `redis-server`) as their cache, the repo-server rendering
//! manifests from `file://` Git repositories, the application controller syncing into
//! the control plane it reaches through a kubeconfig, and the ApplicationSet controller.
//! All listen on 127.0.0.1 (the application controller's metrics on every address: it
//! takes no address) on free ports, and log to the control plane's log directory.
//!
//! `ARGOCD_FAKE_IN_CLUSTER=true` lets the destination `https://kubernetes.default.svc`
//! mean the kubeconfig's cluster, so no cluster Secret is needed. What Argo CD needs in
//! the cluster besides its CRDs: the namespace `argocd`, the ConfigMap `argocd-cm` (the
//! controller exits without it; it may be empty), the Secret `argocd-secret` with a
//! `server.secretkey` (the ApplicationSet controller's webhook handler wants it) and the
//! AppProject `default`.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::json;

use super::{NAMESPACE, app_project_resource, application_resource, install_crds_into};
use crate::control_plane::random_hex;
use crate::error::{Error, Result};
use crate::process::{ProcessGroup, block_on, free_ports, http_ok};
use crate::{ARGOCD_USER, ControlPlane, FIELD_MANAGER, apply_yaml, assets};

const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// Argo CD finds its ConfigMaps and Secrets by this label.
const PART_OF_ARGOCD: (&str, &str) = ("app.kubernetes.io/part-of", "argocd");

/// The Argo CD components one binary plays, chosen by `ARGOCD_BINARY_NAME`.
const REPO_SERVER: &str = "argocd-repo-server";
const APPLICATION_CONTROLLER: &str = "argocd-application-controller";
const APPLICATIONSET_CONTROLLER: &str = "argocd-applicationset-controller";

/// A running Argo CD (Redis, repo-server, application controller, ApplicationSet
/// controller) acting on the Applications and ApplicationSets of [`NAMESPACE`], as
/// [`ARGOCD_USER`]. Its Deployments turn Healthy only where pods turn Ready, i.e. with
/// [`crate::kwok::Kwok`] running.
///
/// At most one per control plane: two would sync the same Applications. Dropping it
/// kills the processes; the shared one lives as long as the test process.
#[derive(Debug)]
pub struct RealArgoCd {
    processes: ProcessGroup,
    repo_server: String,
    startup_duration: Duration,
}

impl RealArgoCd {
    /// Installs what Argo CD needs into `control_plane`, starts its components and
    /// blocks until all report healthy.
    pub fn start(control_plane: &ControlPlane) -> Result<RealArgoCd> {
        let started = Instant::now();
        let argocd = assets::find_binary("argocd", false)?;
        let redis = assets::find_binary("redis-server", true)?;
        // The repo-server runs `git`; fail early and clearly if there is none.
        assets::find_binary("git", true)?;

        let work_dir = control_plane.run_dir().join("argocd");
        let tmp_dir = work_dir.join("tmp");
        for dir in [&work_dir, &tmp_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let kubeconfig = control_plane.user_kubeconfig_path(ARGOCD_USER)?;
        let processes = ProcessGroup::new("Argo CD", control_plane.log_dir(), &work_dir)?;
        let [
            redis_port,
            repo_server_port,
            repo_server_metrics_port,
            controller_metrics_port,
            appset_metrics_port,
            appset_probe_port,
            appset_webhook_port,
        ] = free_ports()?;
        let redis_address = format!("127.0.0.1:{redis_port}");
        let repo_server = format!("127.0.0.1:{repo_server_port}");

        let admin = control_plane.admin_config();
        block_on(async {
            let client = Client::try_from(admin)?;
            install_objects(&client).await
        })??;

        let redis_args = [
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &work_dir.display().to_string(),
        ]
        .map(str::to_owned);
        processes.spawn("argocd-redis", &redis, &redis_args, |_| {})?;

        // Every component: its own name, a home and temporary directory of its own (the
        // repo-server clones under $TMPDIR), Argo CD's identity in $KUBECONFIG too: the
        // fake in-cluster destination and controller-runtime read only that, not
        // --kubeconfig.
        let component = |name: &'static str| {
            let home = work_dir.clone();
            let tmp = tmp_dir.clone();
            let kubeconfig = kubeconfig.to_path_buf();
            move |command: &mut Command| {
                command
                    .env("ARGOCD_BINARY_NAME", name)
                    .env("HOME", &home)
                    .env("TMPDIR", &tmp)
                    .env("KUBECONFIG", &kubeconfig);
            }
        };
        let common = |extra: &[String]| {
            let mut args = vec!["--loglevel=info".to_owned(), "--logformat=text".to_owned()];
            args.extend_from_slice(extra);
            args
        };

        let repo_server_args = common(&[
            "--address=127.0.0.1".to_owned(),
            format!("--port={repo_server_port}"),
            "--metrics-address=127.0.0.1".to_owned(),
            format!("--metrics-port={repo_server_metrics_port}"),
            "--disable-tls".to_owned(),
            format!("--redis={redis_address}"),
        ]);
        let askpass_socket = work_dir.join("askpass.sock");
        let plugin_dir = work_dir.join("plugins");
        processes.spawn(REPO_SERVER, &argocd, &repo_server_args, |command| {
            component(REPO_SERVER)(command);
            command
                .env("ARGOCD_GPG_ENABLED", "false")
                // Default: /tmp/reposerver-ask-pass.sock, shared by every repo-server.
                .env("ARGOCD_ASK_PASS_SOCK", &askpass_socket)
                .env("ARGOCD_PLUGINSOCKFILEPATH", &plugin_dir);
        })?;

        let controller_args = common(&[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--namespace={NAMESPACE}"),
            format!("--redis={redis_address}"),
            format!("--repo-server={repo_server}"),
            "--repo-server-plaintext".to_owned(),
            format!("--metrics-port={controller_metrics_port}"),
        ]);
        processes.spawn(
            APPLICATION_CONTROLLER,
            &argocd,
            &controller_args,
            |command| {
                component(APPLICATION_CONTROLLER)(command);
                command.env("ARGOCD_FAKE_IN_CLUSTER", "true");
            },
        )?;

        let appset_args = common(&[
            format!("--kubeconfig={}", kubeconfig.display()),
            format!("--namespace={NAMESPACE}"),
            format!("--argocd-repo-server={repo_server}"),
            "--repo-server-plaintext".to_owned(),
            format!("--metrics-addr=127.0.0.1:{appset_metrics_port}"),
            format!("--probe-addr=127.0.0.1:{appset_probe_port}"),
            format!("--webhook-addr=127.0.0.1:{appset_webhook_port}"),
        ]);
        processes.spawn(
            APPLICATIONSET_CONTROLLER,
            &argocd,
            &appset_args,
            component(APPLICATIONSET_CONTROLLER),
        )?;

        block_on(async {
            processes
                .wait_for("Redis", READY_TIMEOUT, || async {
                    Ok(TcpStream::connect(("127.0.0.1", redis_port)).is_ok())
                })
                .await?;
            let checks = [
                (REPO_SERVER, repo_server_metrics_port, "/healthz?full=true"),
                (APPLICATION_CONTROLLER, controller_metrics_port, "/healthz"),
                // It registers no health checks, so its probe server answers 404.
                (APPLICATIONSET_CONTROLLER, appset_metrics_port, "/metrics"),
            ];
            for (name, port, path) in checks {
                processes
                    .wait_for(&format!("{name} {path}"), READY_TIMEOUT, || {
                        http_ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), path)
                    })
                    .await?;
            }
            Ok::<_, Error>(())
        })??;

        let startup_duration = started.elapsed();
        tracing::info!(elapsed = ?startup_duration, "Argo CD ready");
        Ok(RealArgoCd {
            processes,
            repo_server,
            startup_duration,
        })
    }

    /// Argo CD on [`ControlPlane::shared`], started on first use; it lives as long as the
    /// test process. Panics with the components' logs if it cannot start.
    pub fn shared() -> &'static RealArgoCd {
        static SHARED: OnceLock<Result<RealArgoCd, String>> = OnceLock::new();
        match SHARED
            .get_or_init(|| RealArgoCd::start(ControlPlane::shared()).map_err(|e| e.to_string()))
        {
            Ok(argocd) => argocd,
            Err(message) => panic!("failed to start Argo CD: {message}"),
        }
    }

    /// The Applications of [`NAMESPACE`], the ones this Argo CD acts on.
    pub fn applications(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), NAMESPACE, &application_resource())
    }

    /// Wall-clock time [`RealArgoCd::start`] took until every component was healthy.
    pub fn startup_duration(&self) -> Duration {
        self.startup_duration
    }

    /// `host:port` of the repo-server's gRPC endpoint (plaintext).
    pub fn repo_server_address(&self) -> &str {
        &self.repo_server
    }

    /// `Some(description)` if one of the components has exited.
    pub fn exited(&self) -> Option<String> {
        self.processes.exited()
    }
}

/// The CRDs, the namespace, `argocd-cm`, `argocd-secret` and the AppProject `default` (any repository, any
/// destination, every cluster-scoped kind).
async fn install_objects(client: &Client) -> Result<()> {
    install_crds_into(client).await?;
    let (label, value) = PART_OF_ARGOCD;
    let objects = json!([
        { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE } },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": { "name": "argocd-cm", "namespace": NAMESPACE, "labels": { label: value } },
        },
        // Without it (and its key) the ApplicationSet controller starts no webhook
        // handler and logs an error.
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": "argocd-secret", "namespace": NAMESPACE, "labels": { label: value } },
            "stringData": { "server.secretkey": random_hex(32)? },
        },
    ]);
    let yaml = objects
        .as_array()
        .into_iter()
        .flatten()
        .map(|object| format!("---\n{object}\n"))
        .collect::<String>();
    apply_yaml(client, &yaml).await?;

    let projects: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), NAMESPACE, &app_project_resource());
    let project = json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": { "name": "default", "namespace": NAMESPACE },
        "spec": {
            "sourceRepos": ["*"],
            "destinations": [{ "server": "*", "namespace": "*" }],
            "clusterResourceWhitelist": [{ "group": "*", "kind": "*" }],
        },
    });
    projects
        .patch(
            "default",
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&project),
        )
        .await?;
    Ok(())
}
