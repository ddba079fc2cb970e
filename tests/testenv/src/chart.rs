//! TestMesh's Helm chart, rendered by the helm that `make chart-tools` builds, for the
//! tests and benchmarks that need what a chart install puts into the cluster.
//!
//! These helpers are fixtures: they panic with a message when helm is missing or the
//! control plane refuses a request, which fails the test or benchmark that called them.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};

use crate::assets::workspace_root;
use crate::{ControlPlane, apply_yaml};

/// What the test control plane serves that the chart asks `.Capabilities` about.
/// `helm template` knows only group/versions by itself, not kinds; an install asks the
/// API server.
const API_VERSIONS: [&str; 1] = ["admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"];

/// The finalizer the policy adds (the operator's `TEARDOWN_FINALIZER`; this crate does
/// not depend on the operator).
const TEARDOWN_FINALIZER: &str = "testmesh.io/teardown";

/// The chart's template of the admission policy that adds the teardown finalizer.
const TEARDOWN_FINALIZER_POLICY: &str = "templates/admissionpolicy.yaml";

/// The helm `make chart-tools` builds.
fn helm() -> PathBuf {
    let helm = workspace_root().join("target/tools/bin/helm");
    assert!(
        helm.is_file(),
        "{} is missing: run `make chart-tools` (`make check-chart`, `make test` and `make bench` build it)",
        helm.display()
    );
    helm
}

/// `helm template` of the chart as `release` in `namespace`, with `values` over the
/// defaults, as it renders for the test control plane's API versions; `extra_args` go
/// to helm as they are (`--include-crds`, `--show-only TEMPLATE`, …).
pub fn render(release: &str, namespace: &str, values: &Value, extra_args: &[&str]) -> String {
    let dir = ControlPlane::shared().run_dir().join("chart");
    std::fs::create_dir_all(&dir).expect("chart work directory");
    // One file per rendering: tests render the same release name at the same time.
    static RENDERINGS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let rendering = RENDERINGS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let values_file = dir.join(format!("{release}-{rendering}-values.json"));
    // JSON is YAML.
    std::fs::write(&values_file, values.to_string()).expect("write values");
    let mut helm = Command::new(helm());
    helm.args(["template", release])
        .arg(chart_dir())
        .args(["--namespace", namespace, "--values"])
        .arg(&values_file);
    for api_version in API_VERSIONS {
        helm.args(["--api-versions", api_version]);
    }
    let output = helm.args(extra_args).output().expect("run helm");
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("helm output is UTF-8")
}

/// `charts/testmesh`.
fn chart_dir() -> PathBuf {
    workspace_root().join("charts/testmesh")
}

/// Installs the chart's admission policy that gives new TestEnvironments in `workspace`
/// the teardown finalizer (as a chart install with `operator.watchNamespace` set does),
/// and waits until the API server applies it.
pub async fn install_teardown_finalizer_policy(client: &Client, workspace: &str) {
    let yaml = render(
        workspace,
        workspace,
        &json!({"operator": {"watchNamespace": workspace}}),
        &["--show-only", TEARDOWN_FINALIZER_POLICY],
    );
    apply_yaml(client, &yaml)
        .await
        .expect("apply the chart's admission policy");
    wait_for_teardown_finalizer_policy(client, workspace).await;
}

/// Waits until a TestEnvironment created in `workspace` gets the teardown finalizer
/// (asked with dry-run creates: the API server loads new policies asynchronously).
pub async fn wait_for_teardown_finalizer_policy(client: &Client, workspace: &str) {
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("testmesh.io", "v1alpha1", "TestEnvironment"),
        "testenvironments",
    );
    let environments: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), workspace, &resource);
    let probe: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "metadata": {"name": "admission-policy-probe"},
        "spec": {"context": "probe", "provider": "argocd", "providerAppName": "probe",
                 "namespace": format!("{workspace}-probe")},
    }))
    .expect("probe TestEnvironment");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let timeout = Duration::from_secs(30);
    let deadline = Instant::now() + timeout;
    loop {
        let created = environments
            .create(&dry_run, &probe)
            .await
            .expect("dry-run create of a TestEnvironment");
        if has_teardown_finalizer(&created.metadata.finalizers) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the chart's admission policy did not take effect in {workspace} within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn has_teardown_finalizer(finalizers: &Option<Vec<String>>) -> bool {
    finalizers.iter().flatten().any(|f| f == TEARDOWN_FINALIZER)
}
