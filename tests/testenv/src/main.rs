//! `testmesh-dev-cluster`: a throw-away local control plane for developers.
//!
//! Starts etcd + kube-apiserver + kube-controller-manager exactly like the
//! integration tests do, optionally applies YAML files (e.g. `crds/*.yaml`),
//! prints how to point `kubectl` at it, and tears everything down on Ctrl-C.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use testmesh_testenv::{ControlPlane, TEST_USERS, apply_yaml};

/// Run a local Kubernetes control plane (no nodes) until Ctrl-C.
#[derive(Debug, Parser)]
#[command(name = "testmesh-dev-cluster", version)]
struct Args {
    /// YAML files to server-side apply after startup (CRDs are waited for
    /// until Established).
    manifests: Vec<PathBuf>,
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
        "starting etcd, kube-apiserver and kube-controller-manager (binaries from {}) ...",
        ControlPlane::assets_dir().display()
    );
    let control_plane = tokio::task::spawn_blocking(ControlPlane::start).await??;
    eprintln!(
        "ready after {:.1?}; logs in {}",
        control_plane.startup_duration(),
        control_plane.log_dir().display()
    );

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
    control_plane.stop();
    Ok(())
}
