//! Routing policies from the Services really deployed, kept current by watches.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;
use testmesh::lifecycle::Phase;
use testmesh::resources::{ROUTING_CONFIG_MAP, TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::OPERATOR_USER;

use crate::support::{REACTION, operated_workspace, wait_for};

fn service(name: &str, port_name: Option<&str>, port: i32) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"name": port_name, "port": port}], "selector": {"app": name}}
    }))
    .expect("Service")
}

fn policy_of(environment: Option<&TestEnvironment>) -> BTreeMap<String, String> {
    environment
        .and_then(|e| e.status.as_ref())
        .map(|s| s.routing_policy.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn routing_follows_the_services_really_deployed() {
    let t = operated_workspace("routing", &[]).await;
    let namespace = format!("{}-pr-123", t.workspace);
    let staging = format!("{}-staging", t.workspace);
    let namespaces: Api<Namespace> = Api::all(t.client.clone());
    let baseline = Namespace {
        metadata: ObjectMeta {
            name: Some(staging.clone()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    namespaces
        .create(&PostParams::default(), &baseline)
        .await
        .expect("staging namespace");
    let staging_services: Api<Service> = Api::namespaced(t.client.clone(), &staging);
    for (name, port_name, port) in [
        ("order-service", Some("http"), 8083),
        ("user-service", Some("http"), 8080),
    ] {
        staging_services
            .create(&PostParams::default(), &service(name, port_name, port))
            .await
            .expect("staging Service");
    }

    t.argo.create_app("routed-app", &namespace).await;
    t.argo.make_healthy("routed-app").await;
    let mut environment = t.environment("routed", &namespace, "routed-app", 30);
    environment.spec.template.services = serde_json::from_value(json!([
        {"name": "user-service", "image": "myrepo/user-service:pr-123"},
        {"name": "product-service", "image": "myrepo/product-service:pr-123"},
        {"name": "search"}
    ]))
    .expect("services");
    environment.spec.template.routing = Some(
        serde_json::from_value(json!({"baselineNamespace": staging, "publishConfigMap": true}))
            .expect("routing"),
    );
    t.create(&environment).await;
    t.wait_phase("routed", Phase::Warm, REACTION).await;

    // What the GitOps controller deploys: two of the three declared services.
    let deployed: Api<Service> = Api::namespaced(t.client.clone(), &namespace);
    deployed
        .create(
            &PostParams::default(),
            &service("user-service", Some("http"), 8080),
        )
        .await
        .expect("Service");
    deployed
        .create(
            &PostParams::default(),
            &service("product-service", None, 8080),
        )
        .await
        .expect("Service");

    let expected: BTreeMap<String, String> = [
        (
            "user-service".to_owned(),
            format!("http://user-service.{namespace}.svc.cluster.local:8080"),
        ),
        (
            "product-service".to_owned(),
            format!("http://product-service.{namespace}.svc.cluster.local:8080"),
        ),
        (
            "order-service".to_owned(),
            format!("http://order-service.{staging}.svc.cluster.local:8083"),
        ),
    ]
    .into();
    let routed = wait_for(
        &t.environments,
        "routed",
        REACTION,
        "routed like the seed example",
        |e| policy_of(e) == expected,
    )
    .await
    .expect("environment");
    let status = routed.status.expect("status");
    assert_eq!(
        status.missing_services,
        ["search"],
        "a declared service with no Service is reported"
    );
    let routing_complete =
        testmesh::lifecycle::conditions::find(&status.conditions, "RoutingComplete")
            .expect("condition");
    assert_eq!(
        (
            routing_complete.status.as_str(),
            routing_complete.reason.as_str()
        ),
        ("False", "ServicesMissing")
    );
    let config_maps: Api<ConfigMap> = Api::namespaced(t.client.clone(), &namespace);
    // Written after the status, for test pods to mount.
    wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "the policy published in the ConfigMap",
        |c| c.and_then(|c| c.data.as_ref()) == Some(&expected),
    )
    .await;

    // The missing service appears; a baseline port changes; an override is added.
    deployed
        .create(
            &PostParams::default(),
            &service("search", Some("http"), 9200),
        )
        .await
        .expect("Service");
    // A JSON merge patch replaces the whole list (a strategic one would add a port).
    let port_change = json!({"spec": {"ports": [{"name": "http", "port": 9090}]}});
    staging_services
        .patch(
            "order-service",
            &PatchParams::default(),
            &Patch::Merge(&port_change),
        )
        .await
        .expect("port change");
    let overrides = json!({"spec": {"routing": {"overrides": {"payments": "https://payments.sandbox.example.com"}}}});
    t.environments
        .patch("routed", &PatchParams::default(), &Patch::Merge(&overrides))
        .await
        .expect("override");
    let updated = wait_for(
        &t.environments,
        "routed",
        REACTION,
        "following the changes",
        |e| {
            let policy = policy_of(e);
            policy.get("order-service")
                == Some(&format!(
                    "http://order-service.{staging}.svc.cluster.local:9090"
                ))
                && policy.contains_key("search")
                && policy.get("payments").map(String::as_str)
                    == Some("https://payments.sandbox.example.com")
        },
    )
    .await
    .expect("environment");
    assert!(updated.status.expect("status").missing_services.is_empty());

    // A claim gets the policy with its environment.
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(t.client.clone(), &t.workspace);
    let claim: TestEnvironmentClaim = serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
        "metadata": {"name": "routed-run"},
        "spec": {"context": "routed", "environmentName": "routed"}
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("claim");
    let bound = wait_for(
        &claims,
        "routed-run",
        REACTION,
        "bound with its routing",
        |c| {
            c.and_then(|c| c.status.as_ref())
                .is_some_and(|s| s.routing_policy.len() == 5)
        },
    )
    .await
    .expect("claim");
    assert_eq!(
        bound.status.expect("status").routing_policy,
        policy_of(Some(&t.environments.get("routed").await.expect("env")))
    );

    // Turned off, the operator's ConfigMap is deleted; one of the same name that is not
    // the operator's (no managed-by label) is left alone.
    let stop = json!({"spec": {"routing": {"publishConfigMap": false}}});
    t.environments
        .patch("routed", &PatchParams::default(), &Patch::Merge(&stop))
        .await
        .expect("stop publishing");
    wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "the operator's ConfigMap deleted",
        |c| c.is_none(),
    )
    .await;
    let theirs: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": ROUTING_CONFIG_MAP},
        "data": {"written-by": "someone else"}
    }))
    .expect("ConfigMap");
    let theirs_created = Timestamp::now();
    config_maps
        .create(&PostParams::default(), &theirs)
        .await
        .expect("someone else's ConfigMap");
    let override_more = json!({"spec": {"routing": {"overrides": {"ledger": "https://ledger.sandbox.example.com"}}}});
    t.environments
        .patch(
            "routed",
            &PatchParams::default(),
            &Patch::Merge(&override_more),
        )
        .await
        .expect("override");
    wait_for(
        &t.environments,
        "routed",
        REACTION,
        "reconciled after the change",
        |e| policy_of(e).contains_key("ledger"),
    )
    .await;
    let kept = config_maps
        .get(ROUTING_CONFIG_MAP)
        .await
        .expect("someone else's ConfigMap is kept");
    assert_eq!(
        kept.data
            .unwrap_or_default()
            .get("written-by")
            .map(String::as_str),
        Some("someone else")
    );

    // Asked for again while someone else's is there: not written over, and the
    // environment says why.
    let publish = json!({"spec": {"routing": {"publishConfigMap": true}}});
    t.environments
        .patch("routed", &PatchParams::default(), &Patch::Merge(&publish))
        .await
        .expect("publish again");
    wait_for(
        &t.environments,
        "routed",
        REACTION,
        "saying the ConfigMap is not TestMesh's",
        |e| {
            e.and_then(|e| e.status.as_ref())
                .and_then(|s| {
                    testmesh::lifecycle::conditions::find(&s.conditions, "RoutingComplete")
                })
                .is_some_and(|c| c.message.contains("is not TestMesh's"))
        },
    )
    .await;
    let untouched = config_maps
        .get(ROUTING_CONFIG_MAP)
        .await
        .expect("someone else's ConfigMap");
    assert_eq!(
        untouched.data.unwrap_or_default(),
        BTreeMap::from([("written-by".to_owned(), "someone else".to_owned())]),
        "not written over"
    );
    assert!(untouched.metadata.labels.unwrap_or_default().is_empty());

    // Once theirs is gone, the operator publishes its own.
    let theirs_deleted = Timestamp::now();
    config_maps
        .delete(ROUTING_CONFIG_MAP, &Default::default())
        .await
        .expect("delete theirs");
    let published = wait_for(
        &config_maps,
        ROUTING_CONFIG_MAP,
        REACTION,
        "the operator's ConfigMap published",
        |c| {
            c.and_then(|c| c.data.as_ref())
                .is_some_and(|d| d.contains_key("ledger"))
        },
    )
    .await
    .expect("ConfigMap");
    assert_eq!(
        published.data.unwrap_or_default(),
        policy_of(Some(&t.environments.get("routed").await.expect("env")))
    );
    // The ConfigMap is written after the status, so the checks above could run before a
    // wrong write landed; by now a later pass has published ours, so every earlier pass
    // is over and its writes are in the audit log.
    let while_theirs: Vec<_> = t
        .control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| w.user == OPERATOR_USER && w.resource == "configmaps")
        .filter(|w| w.namespace.as_deref() == Some(namespace.as_str()))
        .filter(|w| {
            w.received_at
                .parse::<Timestamp>()
                .is_ok_and(|at| (theirs_created..theirs_deleted).contains(&at))
        })
        .collect();
    assert!(
        while_theirs.is_empty(),
        "the operator wrote someone else's ConfigMap: {while_theirs:#?}"
    );
}
