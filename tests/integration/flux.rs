//! The same lifecycle with Flux: real `Kustomization` objects (Flux's own CRD), status
//! written the way kustomize-controller writes it.

use std::time::Duration;

use kube::api::{Patch, PatchParams};
use serde_json::json;
use testmesh::lifecycle::Phase;
use testmesh::resources::{Provider, TestEnvironment};
use testmesh_testenv::flux::{condition, kustomization};

use crate::support::{
    Operated, REACTION, destroyed_message, operated_workspace, phase_of, ready_of, wait_for,
};

fn flux_environment(
    t: &Operated,
    name: &str,
    namespace: &str,
    kustomization: &str,
) -> TestEnvironment {
    let mut environment = t.environment(name, namespace, kustomization, 30);
    environment.spec.template.provider = Provider::Flux;
    environment
}

#[tokio::test]
async fn a_flux_environment_becomes_warm_and_tears_down_its_kustomization() {
    let t = operated_workspace("flux", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.flux.create("flux-env", &namespace).await;
    t.create(&flux_environment(&t, "fluxed", &namespace, "flux-env"))
        .await;
    t.wait_phase("fluxed", Phase::Provisioning, REACTION).await;

    // Ready, but for an older generation: not yet.
    let bump = json!({"spec": {"path": "./envs/changed"}});
    t.flux
        .kustomizations
        .patch("flux-env", &PatchParams::default(), &Patch::Merge(&bump))
        .await
        .expect("spec change");
    let stale_ready = json!({"status": {
        "observedGeneration": 1,
        "conditions": [{
            "type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
            "message": "Applied revision: main@sha1:4f2c1e9", "observedGeneration": 1,
            "lastTransitionTime": "2026-11-24T00:00:00Z",
        }],
    }});
    t.flux
        .kustomizations
        .patch_status(
            "flux-env",
            &PatchParams::default(),
            &Patch::Merge(&stale_ready),
        )
        .await
        .expect("status for generation 1");
    let stale = wait_for(
        &t.environments,
        "fluxed",
        REACTION,
        "waiting on generation 2",
        |e| e.is_some_and(|e| provider_message(e).contains("not yet reconciled at generation 2")),
    )
    .await
    .expect("environment");
    assert_eq!(phase_of(Some(&stale)), Some(Phase::Provisioning));
    assert_eq!(ready_of(&stale).1, "Provisioning");

    t.flux.make_ready("flux-env").await;
    let warm = t.wait_phase("fluxed", Phase::Warm, REACTION).await;
    assert_eq!(ready_of(&warm), ("True".into(), "Available".into()));

    let destroyed = t.destroy("fluxed").await;
    assert!(
        t.flux.get("flux-env").await.is_none(),
        "the Kustomization was deleted"
    );
    assert!(
        t.namespace(&namespace).await.is_none(),
        "then the namespace"
    );
    assert!(destroyed.status.and_then(|s| s.destroyed_at).is_some());
}

#[tokio::test]
async fn flux_failures_are_reported_with_a_reason() {
    let t = operated_workspace("fluxfail", &["--degraded-grace=2s"]).await;
    let ns = |suffix: &str| format!("{}-{suffix}", t.workspace);
    t.flux.create("stalled", &ns("stalled")).await;
    t.flux
        .set_conditions(
            "stalled",
            json!([
                condition(
                    "Ready",
                    "False",
                    "BuildFailed",
                    "kustomize build failed: accumulating resources"
                ),
                condition(
                    "Stalled",
                    "True",
                    "BuildFailed",
                    "kustomize build failed: accumulating resources"
                ),
            ]),
        )
        .await;
    t.flux.create("unhealthy", &ns("unhealthy")).await;
    t.flux
        .set_conditions(
            "unhealthy",
            json!([condition(
                "Ready",
                "False",
                "HealthCheckFailed",
                "timeout waiting for: [Deployment/users status: 'InProgress']"
            ),]),
        )
        .await;
    t.create(&flux_environment(&t, "stalled", &ns("stalled"), "stalled"))
        .await;
    t.create(&flux_environment(
        &t,
        "unhealthy",
        &ns("unhealthy"),
        "unhealthy",
    ))
    .await;

    let stalled = t.wait_phase("stalled", Phase::Failed, REACTION).await;
    assert_eq!(ready_of(&stalled).1, "AppFailed");
    let unhealthy = t.wait_phase("unhealthy", Phase::Failed, REACTION).await;
    assert_eq!(
        ready_of(&unhealthy).1,
        "DegradedTooLong",
        "a terminal Ready=False past the grace"
    );
}

#[tokio::test]
async fn a_kustomization_the_environment_does_not_own_is_kept() {
    let t = operated_workspace("fluxown", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.flux
        .create("elsewhere", &format!("{}-other", t.workspace))
        .await;
    t.flux.make_ready("elsewhere").await;
    t.create(&flux_environment(&t, "mismatch", &namespace, "elsewhere"))
        .await;
    let failed = t.wait_phase("mismatch", Phase::Failed, REACTION).await;
    assert_eq!(ready_of(&failed).1, "AppFailed");
    let destroyed = t.destroy("mismatch").await;
    assert!(
        t.flux.get("elsewhere").await.is_some(),
        "a Kustomization deploying elsewhere is kept"
    );
    assert!(
        destroyed_message(&destroyed).contains("provider app kept"),
        "{}",
        destroyed_message(&destroyed)
    );
}

#[tokio::test]
async fn tearing_down_a_suspended_kustomization_says_it_prunes_nothing() {
    let t = operated_workspace("fluxsusp", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    let mut suspended = kustomization("paused", &namespace);
    suspended["metadata"]["finalizers"] = json!(["finalizers.fluxcd.io"]);
    let object = serde_json::from_value(suspended).expect("Kustomization");
    t.flux
        .kustomizations
        .create(&Default::default(), &object)
        .await
        .expect("create");
    t.flux.make_ready("paused").await;
    t.create(&flux_environment(&t, "paused", &namespace, "paused"))
        .await;
    t.wait_phase("paused", Phase::Warm, REACTION).await;
    let suspend = json!({"spec": {"suspend": true}});
    t.flux
        .kustomizations
        .patch("paused", &PatchParams::default(), &Patch::Merge(&suspend))
        .await
        .expect("suspend");

    t.request_destroy("paused").await;
    let waiting = crate::support::wait_for(
        &t.environments,
        "paused",
        REACTION,
        "waiting for the Kustomization",
        |e| {
            e.map(destroyed_message)
                .is_some_and(|m| m.contains("prunes nothing"))
        },
    )
    .await
    .expect("environment");
    println!("{}", destroyed_message(&waiting));
    let release = json!({"metadata": {"finalizers": null}});
    t.flux
        .kustomizations
        .patch("paused", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("finalizer");
    t.wait_phase("paused", Phase::Destroyed, Duration::from_secs(60))
        .await;
}

fn provider_message(environment: &TestEnvironment) -> String {
    environment
        .status
        .as_ref()
        .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "ProviderReady"))
        .map(|c| c.message.clone())
        .unwrap_or_default()
}
