//! The real Flux controllers on the test control plane, without a cluster around them:
//! source-controller fetching from the test's Git repositories (served over smart HTTP,
//! [`GitHttpServer`]: a GitRepository takes no `file://` URL) and storing artifacts that
//! its artifact server hands out, and kustomize-controller building them and applying
//! them with server-side apply into the control plane it reaches through a kubeconfig.
//! Everything listens on 127.0.0.1 on free ports and logs to the control plane's log
//! directory.
//!
//! Both watch [`NAMESPACE`] only (`--watch-all-namespaces=false` and
//! `RUNTIME_NAMESPACE`), so the stand-in tests' Kustomizations elsewhere, whose status
//! the tests write, are never touched. Leader election is off. Flux's defaults otherwise,
//! but for `--requeue-dependency=5s` (30 s by default): kustomize-controller does not
//! watch a Kustomization's `dependsOn` (nor a source without an artifact yet), it looks
//! again at that interval.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DynamicObject};
use serde_json::json;

use super::{NAMESPACE, git_repository_resource, kustomization_resource, try_install_crds};
use crate::error::{Error, Result};
use crate::git::{GitHttpServer, GitRepository};
use crate::process::{ProcessGroup, block_on, free_ports, http_ok};
use crate::{ControlPlane, FLUX_USER, apply_yaml, assets};

const READY_TIMEOUT: Duration = Duration::from_secs(90);

const SOURCE_CONTROLLER: &str = "source-controller";
const KUSTOMIZE_CONTROLLER: &str = "kustomize-controller";

/// A running Flux (source-controller, kustomize-controller) acting on the
/// GitRepositories and Kustomizations of [`NAMESPACE`], as [`FLUX_USER`], with a Git
/// server for the repositories of the control plane's run directory. Health checks
/// (`spec.wait`) pass only where pods turn Ready, i.e. with [`crate::kwok::Kwok`] running.
///
/// At most one per control plane: two would reconcile the same objects. Dropping it
/// kills the controllers and stops the Git server; the shared one lives as long as the
/// test process.
#[derive(Debug)]
pub struct RealFlux {
    processes: ProcessGroup,
    git_server: GitHttpServer,
    startup_duration: Duration,
}

impl RealFlux {
    /// How often kustomize-controller looks again at a Kustomization waiting on its
    /// `dependsOn` (`--requeue-dependency`).
    pub const REQUEUE_DEPENDENCY: Duration = Duration::from_secs(5);

    /// Installs Flux's CRDs and namespace into `control_plane`, starts the Git server and
    /// both controllers, and blocks until they report ready and the artifact server
    /// listens.
    pub fn start(control_plane: &ControlPlane) -> Result<RealFlux> {
        let started = Instant::now();
        let source_controller = assets::find_binary(SOURCE_CONTROLLER, false)?;
        let kustomize_controller = assets::find_binary(KUSTOMIZE_CONTROLLER, false)?;

        let work_dir = control_plane.run_dir().join("flux");
        let storage_dir = work_dir.join("storage");
        let tmp_dir = work_dir.join("tmp");
        for dir in [&work_dir, &storage_dir, &tmp_dir] {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
        }
        let git_server = GitHttpServer::start(
            &GitRepository::temporary_dir(control_plane),
            &control_plane.log_dir().join("git-http-server.log"),
        )?;
        let kubeconfig = control_plane.user_kubeconfig_path(FLUX_USER)?;
        let processes = ProcessGroup::new("Flux", control_plane.log_dir(), &work_dir)?;
        let [
            storage_port,
            source_metrics_port,
            source_health_port,
            kustomize_metrics_port,
            kustomize_health_port,
        ] = free_ports()?;

        let admin = control_plane.admin_config();
        block_on(async {
            let client = Client::try_from(admin)?;
            install_objects(&client).await
        })??;

        let common = |metrics_port: u16, health_port: u16| {
            vec![
                format!("--metrics-addr=127.0.0.1:{metrics_port}"),
                format!("--health-addr=127.0.0.1:{health_port}"),
                "--watch-all-namespaces=false".to_owned(),
                "--enable-leader-election=false".to_owned(),
                "--log-encoding=console".to_owned(),
                "--log-level=info".to_owned(),
            ]
        };
        // Flux's identity (controller-runtime reads $KUBECONFIG), the namespace to
        // watch, and temporary files of this run (kustomize-controller purges stale
        // ones from $TMPDIR at start).
        let environment = |command: &mut Command| {
            command
                .env("KUBECONFIG", kubeconfig)
                .env("RUNTIME_NAMESPACE", NAMESPACE)
                .env("TMPDIR", &tmp_dir)
                .env("HOME", &work_dir);
        };

        let storage_address = format!("127.0.0.1:{storage_port}");
        let mut source_args = common(source_metrics_port, source_health_port);
        source_args.extend([
            format!("--storage-path={}", storage_dir.display()),
            format!("--storage-addr={storage_address}"),
            format!("--storage-adv-addr={storage_address}"),
        ]);
        processes.spawn(
            SOURCE_CONTROLLER,
            &source_controller,
            &source_args,
            environment,
        )?;

        let mut kustomize_args = common(kustomize_metrics_port, kustomize_health_port);
        kustomize_args.push(format!(
            "--requeue-dependency={}s",
            RealFlux::REQUEUE_DEPENDENCY.as_secs()
        ));
        processes.spawn(
            KUSTOMIZE_CONTROLLER,
            &kustomize_controller,
            &kustomize_args,
            environment,
        )?;

        block_on(async {
            for (name, port) in [
                (SOURCE_CONTROLLER, source_health_port),
                (KUSTOMIZE_CONTROLLER, kustomize_health_port),
            ] {
                processes
                    .wait_for(&format!("{name} /readyz"), READY_TIMEOUT, || {
                        http_ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/readyz")
                    })
                    .await?;
            }
            processes
                .wait_for("the artifact server", READY_TIMEOUT, || async {
                    Ok(TcpStream::connect(("127.0.0.1", storage_port)).is_ok())
                })
                .await
        })??;

        let startup_duration = started.elapsed();
        tracing::info!(elapsed = ?startup_duration, "Flux ready");
        Ok(RealFlux {
            processes,
            git_server,
            startup_duration,
        })
    }

    /// Flux on [`ControlPlane::shared`], started on first use; it lives as long as the
    /// test process. Panics with the controllers' logs if it cannot start.
    pub fn shared() -> &'static RealFlux {
        static SHARED: OnceLock<Result<RealFlux, String>> = OnceLock::new();
        match SHARED
            .get_or_init(|| RealFlux::start(ControlPlane::shared()).map_err(|e| e.to_string()))
        {
            Ok(flux) => flux,
            Err(message) => panic!("failed to start Flux: {message}"),
        }
    }

    /// The Kustomizations of [`NAMESPACE`], the ones this Flux acts on.
    pub fn kustomizations(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), NAMESPACE, &kustomization_resource())
    }

    /// The GitRepositories of [`NAMESPACE`].
    pub fn git_repositories(&self, client: &Client) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), NAMESPACE, &git_repository_resource())
    }

    /// The `http://127.0.0.1:…/….git` URL under which this Flux's Git server serves
    /// `repository` (one of [`GitRepository::temporary`]).
    pub fn git_url(&self, repository: &GitRepository) -> Result<String> {
        self.git_server.url(repository)
    }

    /// Wall-clock time [`RealFlux::start`] took until both controllers were ready.
    pub fn startup_duration(&self) -> Duration {
        self.startup_duration
    }

    /// `Some(description)` if one of the controllers has exited.
    pub fn exited(&self) -> Option<String> {
        self.processes.exited()
    }
}

/// The CRDs and the namespace.
async fn install_objects(client: &Client) -> Result<()> {
    try_install_crds(client).await?;
    let namespace =
        json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": NAMESPACE } });
    apply_yaml(client, &format!("---\n{namespace}\n")).await?;
    Ok(())
}
