//! Shared set-up for the integration tests: one real control plane per test binary, with
//! TestMesh's CRDs (the committed `crds/` files, as users install them) established.

use std::path::{Path, PathBuf};

use kube::Client;
use testmesh_testenv::{ControlPlane, TempNamespace, install_crds_from_yaml, with_temp_namespace};
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
            for file in yaml_files(&repo_root().join("crds")) {
                let yaml = std::fs::read_to_string(&file).expect("read CRD file");
                install_crds_from_yaml(&client, &yaml)
                    .await
                    .unwrap_or_else(|e| panic!("install {}: {e}", file.display()));
            }
        })
        .await;
    let namespace = with_temp_namespace(&client, prefix)
        .await
        .expect("workspace namespace");
    (control_plane, client, namespace)
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
