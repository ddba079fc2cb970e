//! `testmesh-dev-cluster`: a throw-away local control plane for developers.
//!
//! Starts etcd + kube-apiserver + kube-controller-manager + kube-scheduler exactly like
//! the integration tests do, optionally kwok's fake nodes and a real Argo CD
//! (`--gitops`), applies YAML files (e.g. `crds/*.yaml`), prints how to point `kubectl`
//! at it, and tears everything down on Ctrl-C.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use testmesh_testenv::argocd::RealArgoCd;
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::{ControlPlane, TEST_USERS, apply_yaml};

/// Run a local Kubernetes control plane (no nodes) until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "testmesh-dev-cluster", version)]
struct Args {
    /// YAML files to server-side apply after startup (CRDs are waited for
    /// until Established).
    manifests: Vec<PathBuf>,
    /// Also run kwok (fake nodes on which pods turn Ready) and a real Argo CD syncing the
    /// Applications of the `argocd` namespace (`make gitops-tools`).
    #[arg(long)]
    gitops: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    eprintln!(
        "starting etcd, kube-apiserver, kube-controller-manager and kube-scheduler \
         (binaries from {}) ...",
        ControlPlane::assets_dir().display()
    );
    let control_plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    eprintln!(
        "ready after {:.1?}; logs in {}",
        control_plane.startup_duration(),
        control_plane.log_dir().display()
    );
    // The start functions block; block_in_place lets them borrow the control plane.
    let gitops = if args.gitops {
        let kwok = tokio::task::block_in_place(|| Kwok::start(&control_plane))?;
        let argocd = tokio::task::block_in_place(|| RealArgoCd::start(&control_plane))?;
        eprintln!(
            "kwok ready after {:.1?} (nodes {}), Argo CD after {:.1?} (Applications of the \
             `argocd` namespace)",
            kwok.startup_duration(),
            testmesh_testenv::kwok::NODE_NAMES.join(", "),
            argocd.startup_duration()
        );
        Some((kwok, argocd))
    } else {
        None
    };

    if !args.manifests.is_empty() {
        let client = control_plane.admin_client().await?;
        for path in &args.manifests {
            let yaml = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let applied = apply_yaml(&client, &yaml)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?;
            for object in applied {
                eprintln!("applied {object} ({})", path.display());
            }
        }
    }

    println!("API server: {}", control_plane.server_url());
    println!("kubeconfig: {}", control_plane.kubeconfig_path().display());
    for user in TEST_USERS {
        if let Some(token) = control_plane.user_token(user) {
            println!("token for {user}: {token}");
        }
    }
    println!(
        "export KUBECONFIG={}",
        control_plane.kubeconfig_path().display()
    );
    eprintln!("press Ctrl-C to stop");

    tokio::signal::ctrl_c().await?;
    eprintln!("shutting down ...");
    drop(gitops);
    control_plane.stop();
    Ok(())
}
