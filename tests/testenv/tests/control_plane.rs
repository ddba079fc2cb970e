//! Smoke tests for the test control plane itself, all sharing one instance.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use kube::{Api, ResourceExt};
use testmesh_testenv::{ControlPlane, apply_yaml, install_crds_from_yaml, with_temp_namespace};

const DELETION_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn admin_lists_namespaces() {
    let client = ControlPlane::shared().admin_client().await.unwrap();
    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<String> = namespaces.iter().map(ResourceExt::name_any).collect();
    assert!(names.iter().any(|n| n == "default"), "{names:?}");
    assert!(names.iter().any(|n| n == "kube-system"), "{names:?}");
}

#[tokio::test]
async fn alice_is_forbidden_to_list_namespaces() {
    let client = ControlPlane::shared().user_client("alice").await.unwrap();
    let err = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .expect_err("alice has no RBAC permissions");
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("\"alice\""), "{status:?}");
        }
        other => panic!("expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_namespace_with_content_completes() {
    let client = ControlPlane::shared().admin_client().await.unwrap();
    let ns = with_temp_namespace(&client, "deletion").await.unwrap();

    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some("content".into()),
            ..ObjectMeta::default()
        },
        data: Some([("key".to_owned(), "value".to_owned())].into()),
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(client.clone(), ns.name())
        .create(&PostParams::default(), &config_map)
        .await
        .unwrap();

    let namespaces: Api<Namespace> = Api::all(client);
    let created = namespaces.get(ns.name()).await.unwrap();
    assert_eq!(
        created.labels().get("testmesh.io/test").map(String::as_str),
        Some("true")
    );
    let uid = created.uid().unwrap();
    namespaces
        .delete(ns.name(), &DeleteParams::default())
        .await
        .unwrap();

    // Only the namespace controller (kube-controller-manager) can finish this:
    // it has to delete the ConfigMap and remove the `kubernetes` finalizer.
    tokio::time::timeout(
        DELETION_TIMEOUT,
        await_condition(namespaces, ns.name(), conditions::is_deleted(&uid)),
    )
    .await
    .expect("namespace deletion did not complete in time")
    .unwrap();
}

const WIDGET_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.testenv.testmesh.io
spec:
  group: testenv.testmesh.io
  scope: Namespaced
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
---
"#;

#[tokio::test]
async fn crds_are_established_and_usable() {
    let client = ControlPlane::shared().admin_client().await.unwrap();
    let names = install_crds_from_yaml(&client, WIDGET_CRD).await.unwrap();
    assert_eq!(names, ["widgets.testenv.testmesh.io"]);

    let ns = with_temp_namespace(&client, "crd").await.unwrap();
    let widget = format!(
        "apiVersion: testenv.testmesh.io/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: {}\nspec:\n  size: 3\n",
        ns.name()
    );
    let applied = apply_yaml(&client, &widget).await.unwrap();
    assert_eq!(applied, ["Widget/w1"]);

    // Not a CRD: rejected before anything is applied.
    assert!(install_crds_from_yaml(&client, &widget).await.is_err());
    ns.cleanup().await.unwrap();
}

#[tokio::test]
async fn third_party_crd_assets_install() {
    let dir = ControlPlane::crd_assets_dir();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "skipping: {} does not exist (run `make test-assets`)",
            dir.display()
        );
        return;
    };
    let client = ControlPlane::shared().admin_client().await.unwrap();
    for entry in entries {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|ext| ext == "yaml" || ext == "yml")
        {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let names = install_crds_from_yaml(&client, &yaml)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!names.is_empty(), "{}", path.display());
        }
    }
}

/// Also callable from plain (non-async) tests, and kubectl is wired up.
#[test]
fn kubectl_talks_to_the_control_plane() {
    let output = ControlPlane::shared()
        .kubectl()
        .args([
            "get",
            "serviceaccount",
            "default",
            "-n",
            "default",
            "-o",
            "name",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "serviceaccount/default"
    );
}
