//! The operator deletes only what it provably owns: every case here ends with the
//! would-be victim still present and the environment saying why.

use k8s_openapi::api::core::v1::Namespace;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ObjectMeta, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use testmesh::lifecycle::Phase;

use crate::support::REACTION;
use crate::support::{destroyed_message, operated_workspace, ready_of};
use testmesh_testenv::argocd::application;

#[tokio::test]
async fn protected_and_disallowed_namespaces_are_refused() {
    let allowed = "safe-*";
    let t = operated_workspace(
        "refuse",
        &[
            &format!("--allowed-namespaces={allowed}"),
            "--operator-namespace=testmesh-system",
        ],
    )
    .await;
    let argocd_namespace = t.argo.namespace.clone();
    let victims = [
        ("kube-system", "kube-system".to_owned()),
        ("kube-public", "kube-public".to_owned()),
        ("kube-node-lease", "kube-node-lease".to_owned()),
        ("default", "default".to_owned()),
        ("operator", "testmesh-system".to_owned()),
        ("argocd", argocd_namespace.clone()),
        ("not-allowed", format!("{}-elsewhere", t.workspace)),
    ];
    for (name, namespace) in &victims {
        t.create(&t.environment(name, namespace, "some-app", 30))
            .await;
    }
    for (name, namespace) in &victims {
        let failed = t.wait_phase(name, Phase::Failed, REACTION).await;
        assert_eq!(
            ready_of(&failed),
            ("False".into(), "NamespaceRefused".into()),
            "{name}"
        );
        let message = failed
            .status
            .as_ref()
            .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "Ready"))
            .map(|c| c.message.clone())
            .unwrap_or_default();
        assert!(message.contains(namespace.as_str()), "{name}: {message}");
        println!("{name}: {message}");
    }
    for (name, _) in &victims {
        t.destroy(name).await;
    }
    for namespace in [
        "kube-system",
        "kube-public",
        "default",
        argocd_namespace.as_str(),
    ] {
        let still_there = t.namespace(namespace).await;
        assert!(
            still_there.is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()),
            "{namespace} untouched"
        );
    }
    assert!(
        t.namespace(&format!("{}-elsewhere", t.workspace))
            .await
            .is_none(),
        "never created"
    );
}

#[tokio::test]
async fn namespaces_not_created_by_the_environment_are_never_adopted_or_deleted() {
    let t = operated_workspace("foreign", &[]).await;
    let foreign = format!("{}-foreign", t.workspace);
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(foreign.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("foreign namespace");
    // The app that really deploys into that namespace, as the environment names it.
    t.argo.create_app("squatter-app", &foreign).await;
    t.argo.make_healthy("squatter-app").await;
    t.create(&t.environment("squatter", &foreign, "squatter-app", 30))
        .await;
    let failed = t.wait_phase("squatter", Phase::Failed, REACTION).await;
    assert_eq!(
        ready_of(&failed),
        ("False".into(), "NamespaceNotOwned".into())
    );

    let owned = format!("{}-owned", t.workspace);
    t.argo.create_app("owner-app", &owned).await;
    t.create(&t.environment("owner", &owned, "owner-app", 30))
        .await;
    t.wait_phase("owner", Phase::Provisioning, REACTION).await;
    t.create(&t.environment("intruder", &owned, "intruder-app", 30))
        .await;
    let failed = t.wait_phase("intruder", Phase::Failed, REACTION).await;
    assert_eq!(
        ready_of(&failed),
        ("False".into(), "NamespaceNotOwned".into()),
        "another environment's namespace"
    );

    let squatter = t.destroy("squatter").await;
    assert!(
        t.argo.get("squatter-app").await.is_some(),
        "the app deploying into a namespace the environment does not own is kept"
    );
    assert!(
        destroyed_message(&squatter).contains("namespace kept"),
        "{}",
        destroyed_message(&squatter)
    );
    t.destroy("intruder").await;
    assert!(
        t.namespace(&foreign)
            .await
            .is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()),
        "foreign namespace untouched"
    );
    assert!(
        t.namespace(&owned)
            .await
            .is_some_and(|ns| ns.metadata.deletion_timestamp.is_none()),
        "owner's namespace untouched"
    );
    assert_eq!(
        t.wait_phase("owner", Phase::Provisioning, REACTION)
            .await
            .spec
            .template
            .namespace,
        owned
    );
}

#[tokio::test]
async fn applications_the_environment_does_not_own_are_never_deleted() {
    let t = operated_workspace("apps", &[]).await;
    let namespace = format!("{}-env", t.workspace);

    // An Application that deploys somewhere else.
    t.argo
        .create_app("elsewhere-app", &format!("{}-other", t.workspace))
        .await;
    t.argo.make_healthy("elsewhere-app").await;
    t.create(&t.environment("mismatch", &namespace, "elsewhere-app", 30))
        .await;
    let failed = t.wait_phase("mismatch", Phase::Failed, REACTION).await;
    assert_eq!(ready_of(&failed).1, "AppFailed");
    let destroyed = t.destroy("mismatch").await;
    assert!(
        t.argo.get("elsewhere-app").await.is_some(),
        "Application deploying elsewhere kept"
    );
    assert!(
        destroyed_message(&destroyed).contains("provider app kept"),
        "{}",
        destroyed_message(&destroyed)
    );

    // An Application an ApplicationSet owns: deleting it would only see it re-created.
    let appset_resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
        "applicationsets",
    );
    let appsets: Api<DynamicObject> =
        Api::namespaced_with(t.client.clone(), &t.argo.namespace, &appset_resource);
    let appset: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": "previews"},
        "spec": {
            "generators": [{"list": {"elements": []}}],
            "template": {"metadata": {}, "spec": {"project": "default", "destination": {}}}
        }
    }))
    .expect("ApplicationSet");
    let appset = appsets
        .create(&PostParams::default(), &appset)
        .await
        .expect("create ApplicationSet");
    let mut app = application("generated-app", &namespace);
    app["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet",
        "name": "previews", "uid": appset.uid(), "controller": true
    }]);
    t.argo.create(app).await;
    t.argo.make_healthy("generated-app").await;
    t.create(&t.environment("generated", &namespace, "generated-app", 30))
        .await;
    t.wait_phase("generated", Phase::Warm, REACTION).await;
    let destroyed = t.destroy("generated").await;
    assert!(
        t.argo.get("generated-app").await.is_some(),
        "ApplicationSet's Application kept"
    );
    let message = destroyed_message(&destroyed);
    assert!(message.contains("ApplicationSet"), "{message}");
    assert!(
        t.namespace(&namespace).await.is_none(),
        "what the environment owns is still torn down"
    );
}
