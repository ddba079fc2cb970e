//! `testmesh-dev-cluster`: a throw-away local control plane for developers.
//!
//! Starts etcd + kube-apiserver + kube-controller-manager + kube-scheduler exactly like
//! the integration tests do, optionally kwok's fake nodes and a real Argo CD
//! (`--gitops`), applies YAML files (e.g. `crds/*.yaml`), prints how to point `kubectl`
//! at it, and tears everything down on Ctrl-C.
//!
//! `--examples` is what `make run` starts when no cluster is configured: the same with
//! kwok and Argo CD, the examples applied and the operator running, until the example
//! environment is warm and beyond ([`LocalRun`]).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use testmesh_testenv::argocd::RealArgoCd;
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::local_run::{LocalRun, LocalRunConfig};
use testmesh_testenv::{ControlPlane, TEST_USERS, apply_yaml};

/// How long the example environment may take to turn warm: about a minute on a busy
/// 2-core machine.
const WARM_TIMEOUT: Duration = Duration::from_secs(600);
/// The claim the printed commands make and release.
const CLAIM: &str = "my-run";
/// How the printed commands run `testmesh` (from the repository, as `make run` does).
const TESTMESH: &str = "cargo run -q --bin testmesh --";

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
    /// `make run` without a cluster: kwok, Argo CD, a Git repository with the example
    /// services, the examples applied (the Application pointed at that repository) and
    /// the operator, until the example environment is warm; then until Ctrl-C.
    #[arg(long, conflicts_with_all = ["manifests", "gitops"])]
    examples: bool,
    /// With --examples: the `testmesh` binary to run (default: the one beside this one).
    #[arg(long, value_name = "PATH", requires = "examples")]
    operator: Option<PathBuf>,
    /// With --examples: flags for `testmesh run`, after `--` (e.g. `--api-address=…`).
    #[arg(last = true, requires = "examples")]
    operator_args: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let result = if args.examples {
        run_examples(args).await
    } else {
        run(args).await
    };
    match result {
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

async fn run_examples(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let operator = match args.operator {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("testmesh"),
    };
    let config = LocalRunConfig::new(operator, args.operator_args)?;
    let local = tokio::task::spawn_blocking(move || LocalRun::start(config, &progress)).await??;
    let kubeconfig = local
        .control_plane()
        .kubeconfig_path()
        .display()
        .to_string();
    let kubectl = local.kubectl_for_people();
    println!();
    println!("TestMesh runs on a local cluster with Argo CD and the examples:");
    println!();
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  dashboard:    {}", local.dashboard_url());
    println!("  sign in with: {}", local.token_command());
    println!(
        "  watch:        {kubectl} get testmesh -n {} -w",
        local.workspace()
    );
    println!(
        "  operator log: tail -f {}",
        local
            .control_plane()
            .log_dir()
            .join("testmesh.log")
            .display()
    );
    println!();
    eprintln!(
        "waiting for {}/{} to turn warm: Argo CD syncs it from {} ...",
        local.workspace(),
        local.environment(),
        local.repository().url()
    );

    let warm_after = tokio::select! {
        warm = local.wait_warm(WARM_TIMEOUT, &progress) => Some(warm?),
        _ = tokio::signal::ctrl_c() => None,
    };
    let Some(warm_after) = warm_after else {
        shut_down(local);
        return Ok(());
    };
    println!();
    println!(
        "{}/{} is warm, {warm_after:.1?} after start. Claim it from a second shell:",
        local.workspace(),
        local.environment()
    );
    println!();
    println!("  export KUBECONFIG={kubeconfig}");
    println!("  {TESTMESH} {}", local.claim_args(CLAIM).join(" "));
    println!("  {TESTMESH} {}", local.release_args(CLAIM).join(" "));
    println!();
    eprintln!("press Ctrl-C to stop everything");

    tokio::select! {
        result = local.follow(&progress) => result?,
        _ = tokio::signal::ctrl_c() => {}
    }
    shut_down(local);
    Ok(())
}

fn progress(line: String) {
    eprintln!("{line}");
}

fn shut_down(local: LocalRun) {
    eprintln!("shutting down ...");
    drop(local);
}
