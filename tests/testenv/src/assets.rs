//! Where the control-plane binaries, the tools the GitOps tests run and extra asset files
//! live.
//!
//! The workspace root is derived from this crate's `CARGO_MANIFEST_DIR`
//! (`<workspace>/tests/testenv`) at compile time, so a fresh clone works without
//! any configuration once `make test-assets` has run.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Environment variable overriding the directory holding `kube-apiserver`,
/// `kube-controller-manager`, `kubectl` (and optionally `etcd`).
pub const ASSETS_ENV: &str = "TESTMESH_TEST_ASSETS";

/// Root of the cargo workspace this crate belongs to.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(Path::parent)
        .map_or_else(|| manifest.to_path_buf(), Path::to_path_buf)
}

/// `<workspace>/target/test-assets`, filled by `make test-assets`.
pub fn test_assets_root() -> PathBuf {
    workspace_root().join("target").join("test-assets")
}

/// Directory holding the control-plane binaries: `$TESTMESH_TEST_ASSETS` if set,
/// else `<workspace>/target/test-assets/bin`.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os(ASSETS_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => test_assets_root().join("bin"),
    }
}

/// `<workspace>/target/tools/bin`: etcd 3.6, Argo CD, Flux and kwok, built by `make
/// test-assets` and `make gitops-tools`.
pub fn tools_bin_dir() -> PathBuf {
    workspace_root().join("target").join("tools").join("bin")
}

/// `<workspace>/target/test-assets/crds`: third-party CRD YAML files copied by the Makefile.
pub fn crd_dir() -> PathBuf {
    test_assets_root().join("crds")
}

/// `<workspace>/target/testenv`: parent of all per-run directories.
pub fn runs_root() -> PathBuf {
    workspace_root().join("target").join("testenv")
}

/// Finds the executable `name`: in [`tools_bin_dir`] first (so the etcd 3.6 built
/// there wins over an older one elsewhere), then in [`bin_dir`], then — if
/// `search_path` — on `PATH`.
pub(crate) fn find_binary(name: &str, search_path: bool) -> Result<PathBuf> {
    let mut searched = vec![tools_bin_dir().join(name), bin_dir().join(name)];
    if search_path && let Some(path) = std::env::var_os("PATH") {
        searched.extend(std::env::split_paths(&path).map(|dir| dir.join(name)));
    }
    searched
        .iter()
        .find(|candidate| candidate.is_file())
        .cloned()
        .ok_or_else(|| Error::AssetNotFound {
            name: name.to_owned(),
            searched,
            hint: install_hint(name),
        })
}

/// How a missing executable is obtained.
fn install_hint(name: &str) -> &'static str {
    match name {
        "argocd" | "kwok" | "source-controller" | "kustomize-controller" => {
            "run `make gitops-tools`"
        }
        "redis-server" => "install Debian's redis-server (`apt-get install redis-server`)",
        "git" => "install git (`apt-get install git`)",
        _ => {
            "run `make test-assets`, or point TESTMESH_TEST_ASSETS at a directory containing \
             kube-apiserver, kube-controller-manager, kube-scheduler and kubectl"
        }
    }
}
