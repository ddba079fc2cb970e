//! The operator drives TestEnvironments through their lifecycle on a real control plane,
//! with Argo CD played by the tests (real Application CRD, status written as Argo does).

use std::time::{Duration, Instant};

use futures::future::join_all;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event as KubeEvent;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testmesh::lifecycle::{Phase, ttl};
use testmesh::resources::{ENVIRONMENT_UID_ANNOTATION, TEARDOWN_FINALIZER};
use testmesh_testenv::OPERATOR_USER;

use crate::support::REACTION;
use crate::support::{
    Operated, destroyed_message, destroyed_of, events, operated_workspace, phase_of, ready_of, run,
    wait_for,
};
use testmesh_testenv::argocd::{application, progressing_status};

/// Writes the operator made for one environment, from the API server's audit log.
fn operator_writes(t: &Operated, app: &str, namespace: &str) -> Vec<String> {
    t.control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| w.user == OPERATOR_USER && w.code < 300)
        .filter(|w| match w.resource.as_str() {
            "testenvironments" | "events" => w.namespace.as_deref() == Some(t.workspace.as_str()),
            "namespaces" => w.name.as_deref() == Some(namespace),
            "configmaps" => w.namespace.as_deref() == Some(namespace),
            "applications" => w.name.as_deref() == Some(app),
            _ => false,
        })
        .map(|w| {
            let sub = w.subresource.map(|s| format!("/{s}")).unwrap_or_default();
            format!("{} {}{sub}", w.verb, w.resource)
        })
        .collect()
}

fn audited_at(t: &Operated, verb: &str, resource: &str, name: &str) -> Option<Timestamp> {
    t.control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .find(|w| {
            w.user == OPERATOR_USER
                && w.verb == verb
                && w.resource == resource
                && w.name.as_deref() == Some(name)
        })
        .and_then(|w| w.received_at.parse().ok())
}

#[tokio::test]
async fn cold_to_warm_to_expired_to_destroyed() {
    let t = operated_workspace("happy", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.argo.create_app("happy-app", &namespace).await;
    t.argo.set_status("happy-app", progressing_status()).await;
    t.create(&t.environment("happy", &namespace, "happy-app", 1))
        .await;

    let provisioning = t.wait_phase("happy", Phase::Provisioning, REACTION).await;
    assert!(
        provisioning
            .finalizers()
            .iter()
            .any(|f| f == TEARDOWN_FINALIZER)
    );
    let created = t.namespace(&namespace).await.expect("namespace created");
    assert_eq!(
        created.annotations().get(ENVIRONMENT_UID_ANNOTATION),
        provisioning.uid().as_ref(),
        "the namespace carries the environment's UID"
    );
    assert_eq!(
        ready_of(&provisioning),
        ("False".into(), "Provisioning".into())
    );

    let healthy_at = Instant::now();
    t.argo.make_healthy("happy-app").await;
    let warm = t.wait_phase("happy", Phase::Warm, REACTION).await;
    println!(
        "Application Healthy -> environment Ready: {:?}",
        healthy_at.elapsed()
    );
    let status = warm.status.clone().expect("status");
    assert_eq!(ready_of(&warm), ("True".into(), "Available".into()));
    assert_eq!(status.observed_generation, warm.meta().generation);
    let last_used = status.last_used_at.clone().expect("lastUsedAt").0;
    let expires = status.expires_at.clone().expect("expiresAt").0;
    assert_eq!(expires.duration_since(last_used).as_secs(), 60);
    assert_eq!(
        status.provider.and_then(|p| p.health).as_deref(),
        Some("Healthy")
    );

    let mut kubectl = t.control_plane.kubectl();
    kubectl.args([
        "wait",
        "--for=condition=Ready",
        "te/happy",
        "-n",
        &t.workspace,
        "--timeout=10s",
    ]);
    let (ok, stdout, stderr) = run(kubectl);
    assert!(ok, "kubectl wait: {stdout}{stderr}");
    assert_eq!(t.operator.get("/readyz").0, 200);
    let (code, metrics) = t.operator.get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("testmesh_environments{phase=\"warm\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("testmesh_provisioning_duration_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "testmesh_build_info{{version=\"{}\",",
            env!("CARGO_PKG_VERSION")
        )),
        "{metrics}"
    );
    let sample = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {metrics}"))
    };
    let started = sample("process_start_time_seconds");
    let now = Timestamp::now().as_second() as f64;
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "the operator started in this test, not at {started}"
    );
    assert!(sample("process_resident_memory_bytes") > 1e6);
    assert!(sample("process_open_fds") >= 1.0);
    assert!(sample("process_max_fds") >= sample("process_open_fds"));
    assert!(sample("process_cpu_seconds_total") > 0.0);

    // While it tears down, the environment says so (entering teardown is always written
    // before anything is deleted, and the watch sees every write).
    let terminating = wait_for(
        &t.environments,
        "happy",
        Duration::from_secs(120),
        "tearing down",
        |e| e.is_some_and(|e| destroyed_of(e).1 == "TearingDown"),
    )
    .await
    .expect("environment");
    assert_eq!(phase_of(Some(&terminating)), Some(Phase::Destroying));
    println!(
        "while tearing down: Destroyed={}: {}",
        destroyed_of(&terminating).1,
        destroyed_message(&terminating)
    );
    let destroyed = t
        .wait_phase("happy", Phase::Destroyed, Duration::from_secs(120))
        .await;
    assert!(
        t.namespace(&namespace).await.is_none(),
        "destroyed only once the namespace is gone"
    );
    assert!(
        t.argo.get("happy-app").await.is_none(),
        "the Application was deleted"
    );
    let status = destroyed.status.clone().expect("status");
    let teardown_started = status.teardown_started_at.expect("teardownStartedAt").0;
    assert!(
        teardown_started >= expires,
        "teardown never starts before expiry"
    );
    assert!(status.destroyed_at.is_some());
    assert_eq!(ready_of(&destroyed), ("False".into(), "Expired".into()));

    let destroyed_at = status.destroyed_at.clone().expect("destroyedAt").0;
    println!(
        "teardown start -> namespace gone: {:#} (status timestamps, to the second)",
        destroyed_at.duration_since(teardown_started)
    );
    let app_deleted =
        audited_at(&t, "delete", "applications", "happy-app").expect("audited delete");
    println!(
        "expiresAt -> teardown start: {:?} (operator clock), {:?} (API server clock, Application DELETE)",
        teardown_started.duration_since(expires),
        app_deleted.duration_since(expires),
    );
    let writes = operator_writes(&t, "happy-app", &namespace);
    assert!(
        writes.iter().any(|w| w == "patch testenvironments"),
        "created without the finalizer, the environment gets it from the operator: {writes:?}"
    );
    assert!(
        !writes.iter().any(|w| w.ends_with("configmaps")),
        "no routing ConfigMap unless the environment asks for one: {writes:?}"
    );
    let object_writes = writes.iter().filter(|w| !w.ends_with("events")).count();
    println!(
        "operator writes for one lifecycle: {object_writes} object writes + {} events: {writes:?}",
        writes.len() - object_writes
    );
    assert!(
        t.environments
            .get_opt("happy")
            .await
            .expect("get")
            .is_some(),
        "the record is kept"
    );
    // Entering `destroying` and `destroyed` share the reason `Expired`: each is an Event of
    // its own with its own note, not one folded into a series that keeps the first note.
    let notes = events(
        t.control_plane,
        &t.workspace,
        "involvedObject.name=happy",
        "{range .items[*]}{.message}|{.series.count}{\"\\n\"}{end}",
    );
    for transition in [
        "cold → provisioning",
        "provisioning → warm",
        "warm → destroying",
        "destroying → destroyed",
    ] {
        assert!(
            notes.lines().any(|n| n.starts_with(transition)),
            "an event for {transition}: {notes}"
        );
    }
    assert!(
        notes.lines().all(|n| n.ends_with('|')),
        "no event is a series: {notes}"
    );
    let (_, metrics) = t.operator.get("/metrics");
    assert!(
        metrics.contains("testmesh_ttl_expiry_lateness_seconds_count 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn provisioning_failures_are_reported_with_a_reason_and_recover() {
    let t = operated_workspace(
        "failures",
        &[
            "--degraded-grace=2s",
            "--missing-grace=2s",
            "--provisioning-timeout=8s",
        ],
    )
    .await;
    let ns = |suffix: &str| format!("{}-{suffix}", t.workspace);
    // A sync that started once the namespace existed: a real failure. (One that failed
    // before is synced again instead: see `argocd.rs`, against the real controller.)
    let after_the_namespace = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let scenarios = [
        (
            "op-failed",
            json!({
                "health": {"status": "Healthy"}, "sync": {"status": "OutOfSync"},
                "operationState": {
                    "phase": "Failed", "message": "one or more objects failed to apply",
                    "operation": {"sync": {"revision": "4f2c1e9"}},
                    "startedAt": after_the_namespace.to_string(),
                    "finishedAt": after_the_namespace.to_string()
                }
            }),
            "AppFailed",
            "one or more objects failed to apply",
        ),
        (
            "sync-error",
            json!({
                "health": {"status": "Healthy"}, "sync": {"status": "Synced"},
                "conditions": [{"type": "SyncError", "message": "rpc error: repository not accessible", "lastTransitionTime": "2026-11-24T00:00:00Z"}]
            }),
            "AppFailed",
            "repository not accessible",
        ),
        (
            "degraded",
            json!({
                "health": {"status": "Degraded", "message": "Deployment exceeded its progress deadline"}, "sync": {"status": "Synced"}
            }),
            "DegradedTooLong",
            "after the 2s grace period: Argo CD Application",
        ),
        (
            "timeout",
            progressing_status(),
            "ProvisioningTimeout",
            "not ready within the 8s provisioning timeout",
        ),
    ];
    for (name, status, _, _) in &scenarios {
        t.argo.create_app(name, &ns(name)).await;
        t.argo.set_status(name, status.clone()).await;
        t.create(&t.environment(name, &ns(name), name, 30)).await;
    }
    t.create(&t.environment("missing", &ns("missing"), "never-created", 30))
        .await;

    let started = Instant::now();
    let mut waits: Vec<_> = scenarios
        .iter()
        .map(|(name, _, reason, message)| {
            (name.to_string(), reason.to_string(), message.to_string())
        })
        .collect();
    waits.push((
        "missing".into(),
        "AppNotFound".into(),
        "after the 2s grace period: the provider's app does not exist".into(),
    ));
    join_all(waits.into_iter().map(|(name, reason, message)| {
        let t = &t;
        async move {
            let failed = t.wait_phase(&name, Phase::Failed, REACTION).await;
            let ready = failed
                .status
                .as_ref()
                .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "Ready"))
                .cloned()
                .expect("Ready condition");
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                ("False", reason.as_str()),
                "{name}"
            );
            assert!(
                ready.message.contains(&message),
                "{name}: {}",
                ready.message
            );
            println!(
                "{name}: failed after {:?}: {} {}",
                started.elapsed(),
                ready.reason,
                ready.message
            );
        }
    }))
    .await;

    t.argo.make_healthy("op-failed").await;
    let recovered = t.wait_phase("op-failed", Phase::Warm, REACTION).await;
    assert_eq!(ready_of(&recovered), ("True".into(), "Available".into()));
    let reasons = events(
        t.control_plane,
        &t.workspace,
        "involvedObject.name=op-failed",
        "{.items[*].reason}",
    );
    assert!(
        reasons.contains("AppFailed") && reasons.contains("Available"),
        "events on every transition: {reasons}"
    );
}

#[tokio::test]
async fn kubectl_delete_tears_down_through_the_finalizer() {
    let t = operated_workspace("delete", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.argo.create_app("delete-app", &namespace).await;
    t.create(&t.environment("doomed", &namespace, "delete-app", 30))
        .await;
    t.wait_phase("doomed", Phase::Provisioning, REACTION).await;
    t.argo.make_healthy("delete-app").await;
    t.wait_phase("doomed", Phase::Warm, REACTION).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(t.client.clone(), &namespace);
    let content: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "deployed"}, "data": {"k": "v"}}))
            .expect("ConfigMap");
    config_maps
        .create(&PostParams::default(), &content)
        .await
        .expect("content in the namespace");

    let mut kubectl = t.control_plane.kubectl();
    kubectl.args(["delete", "te/doomed", "-n", &t.workspace, "--wait=false"]);
    let (ok, _, stderr) = run(kubectl);
    assert!(ok, "{stderr}");
    wait_for(
        &t.environments,
        "doomed",
        Duration::from_secs(90),
        "gone",
        |e| e.is_none(),
    )
    .await;
    assert!(
        t.namespace(&namespace).await.is_none(),
        "namespace deleted before the finalizer was released"
    );
    assert!(
        t.argo.get("delete-app").await.is_none(),
        "Application deleted"
    );
}

/// Reconciliations the workspace's operator has finished, from its metrics.
fn reconciliations(t: &Operated) -> u64 {
    let (_, metrics) = t.operator.get("/metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("testmesh_reconciliations_total "))
        .and_then(|count| count.trim().parse().ok())
        .expect("testmesh_reconciliations_total")
}

/// The reconciliation count once it has stopped moving (the same for half a second):
/// the passes already under way are over. There is nothing to watch for that, so it polls.
async fn settled_reconciliations(t: &Operated) -> u64 {
    let deadline = Instant::now() + REACTION;
    let mut last = reconciliations(t);
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = reconciliations(t);
        if now == last {
            return now;
        }
        assert!(Instant::now() < deadline, "reconciliations never settled");
        last = now;
    }
}

/// The operator's status writes for the environment `name`, received from `since` on.
fn status_writes_since(t: &Operated, name: &str, since: Timestamp) -> Vec<String> {
    t.operator_writes()
        .into_iter()
        .filter(|w| w.resource == "testenvironments" && w.subresource.as_deref() == Some("status"))
        .filter(|w| w.name.as_deref() == Some(name))
        .filter(|w| {
            w.received_at
                .parse::<Timestamp>()
                .is_ok_and(|at| at >= since)
        })
        .map(|w| format!("{} {}", w.received_at, w.request_uri))
        .collect()
}

/// An Application without a finalizer is gone as soon as it is deleted, and an empty
/// namespace terminates without reporting blockers: nothing waits on anyone, and the
/// status is written twice — entering teardown (before any delete) and `destroyed`.
#[tokio::test]
async fn a_teardown_nobody_holds_up_writes_the_status_twice() {
    let t = operated_workspace("twowrites", &[]).await;
    let namespace = t.healthy_app("quick-app").await;
    t.create(&t.environment("quick", &namespace, "quick-app", 30))
        .await;
    t.wait_phase("quick", Phase::Warm, REACTION).await;

    let destroy_requested = Timestamp::now();
    let destroyed = t.destroy("quick").await;
    assert!(t.namespace(&namespace).await.is_none());
    assert!(t.argo.get("quick-app").await.is_none());
    assert_eq!(
        destroyed_of(&destroyed),
        ("True".into(), "TeardownComplete".into())
    );
    // Nothing more is written once destroyed, even when it is reconciled again: once the
    // passes the teardown caused are over, a change causes one more.
    let before = settled_reconciliations(&t).await;
    let poke = json!({"metadata": {"annotations": {"example.com/poke": "1"}}});
    t.environments
        .patch("quick", &PatchParams::default(), &Patch::Merge(&poke))
        .await
        .expect("annotate");
    let deadline = Instant::now() + REACTION;
    while reconciliations(&t) <= before {
        assert!(Instant::now() < deadline, "not reconciled after the change");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let writes = status_writes_since(&t, "quick", destroy_requested);
    assert_eq!(
        writes.len(),
        2,
        "status writes during teardown: {writes:#?}"
    );
}

/// A namespace held up by a finalizer says so while it waits, and the environment
/// finishes by itself once the finalizer is gone.
#[tokio::test]
async fn a_namespace_held_up_by_a_finalizer_is_reported_until_it_is_free() {
    let t = operated_workspace("held", &[]).await;
    let namespace = t.healthy_app("held-app").await;
    t.create(&t.environment("held", &namespace, "held-app", 30))
        .await;
    t.wait_phase("held", Phase::Warm, REACTION).await;
    let config_maps: Api<ConfigMap> = Api::namespaced(t.client.clone(), &namespace);
    let stuck: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stuck", "finalizers": ["example.com/hold"]}
    }))
    .expect("ConfigMap");
    config_maps
        .create(&PostParams::default(), &stuck)
        .await
        .expect("a ConfigMap with a finalizer");

    t.request_destroy("held").await;
    let blocked = wait_for(
        &t.environments,
        "held",
        Duration::from_secs(60),
        "reporting what holds the namespace",
        |e| e.is_some_and(|e| destroyed_of(e).1 == "NamespaceTerminating"),
    )
    .await
    .expect("environment");
    let message = crate::support::destroyed_message(&blocked);
    assert!(message.contains("example.com/hold"), "{message}");
    assert_eq!(
        blocked.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Destroying)
    );

    let release = json!({"metadata": {"finalizers": null}});
    config_maps
        .patch("stuck", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .expect("remove the finalizer");
    t.wait_phase("held", Phase::Destroyed, Duration::from_secs(120))
        .await;
    assert!(t.namespace(&namespace).await.is_none());
}

#[tokio::test]
async fn explicit_destroy_keeps_the_record_and_cannot_be_undone() {
    let t = operated_workspace("destroy", &[]).await;
    let namespace = t.healthy_app("destroy-app").await;
    t.create(&t.environment("kept", &namespace, "destroy-app", 30))
        .await;
    t.wait_phase("kept", Phase::Warm, REACTION).await;

    let destroyed = t.destroy("kept").await;
    assert_eq!(
        ready_of(&destroyed),
        ("False".into(), "DestroyRequested".into())
    );
    assert!(t.namespace(&namespace).await.is_none());
    assert!(t.argo.get("destroy-app").await.is_none());

    let undo = json!({"spec": {"destroy": false}});
    let error = t
        .environments
        .patch("kept", &PatchParams::default(), &Patch::Merge(&undo))
        .await
        .expect_err("undo refused");
    assert!(
        error.to_string().contains("spec.destroy")
            && error.to_string().contains("cannot be undone"),
        "{error}"
    );
}

#[tokio::test]
async fn operator_restart_mid_provisioning_and_mid_teardown_converges() {
    let mut t = operated_workspace("restart", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    let mut app = application("restart-app", &namespace);
    app["metadata"]["finalizers"] = json!(["resources-finalizer.argocd.argoproj.io"]);
    t.argo.create(app).await;
    t.argo.set_status("restart-app", progressing_status()).await;
    t.create(&t.environment("restarted", &namespace, "restart-app", 30))
        .await;
    t.wait_phase("restarted", Phase::Provisioning, REACTION)
        .await;

    t.operator.kill();
    t.argo.make_healthy("restart-app").await;
    t.operator.restart();
    t.wait_phase("restarted", Phase::Warm, REACTION).await;
    let creates = operator_writes(&t, "restart-app", &namespace)
        .into_iter()
        .filter(|w| w == "create namespaces")
        .count();
    assert_eq!(creates, 1, "the namespace was created exactly once");

    t.request_destroy("restarted").await;
    wait_for(
        &t.environments,
        "restarted",
        REACTION,
        "waiting for the app to be pruned",
        |e| e.is_some_and(|e| destroyed_of(e).1 == "WaitingForAppDeletion"),
    )
    .await;
    assert!(
        t.namespace(&namespace).await.is_some(),
        "the namespace waits for the provider to prune"
    );

    t.operator.kill();
    t.argo.finish_deletion("restart-app").await;
    t.operator.restart();
    t.wait_phase("restarted", Phase::Destroyed, Duration::from_secs(60))
        .await;
    assert!(t.namespace(&namespace).await.is_none(), "nothing leaked");
    assert!(t.argo.get("restart-app").await.is_none());
}

#[tokio::test]
async fn destroyed_records_are_pruned_after_the_retention_period() {
    let t = operated_workspace("retention", &["--destroyed-retention=3s"]).await;
    let namespace = t.healthy_app("retention-app").await;
    t.create(&t.environment("short-lived", &namespace, "retention-app", 30))
        .await;
    t.wait_phase("short-lived", Phase::Warm, REACTION).await;
    let destroyed = t.destroy("short-lived").await;
    let destroyed_at = destroyed
        .status
        .and_then(|s| s.destroyed_at)
        .expect("destroyedAt")
        .0;
    wait_for(&t.environments, "short-lived", REACTION, "pruned", |e| {
        e.is_none()
    })
    .await;
    let pruned_after = Timestamp::now().duration_since(destroyed_at);
    assert!(
        pruned_after.as_secs() >= 3,
        "kept for the retention period, pruned after {pruned_after:#}"
    );
}

/// The `ExpiringSoon` Warning events about the environment `name`, oldest first.
async fn expiring_soon_events(t: &Operated, name: &str) -> Vec<KubeEvent> {
    let events: Api<KubeEvent> = Api::namespaced(t.client.clone(), &t.workspace);
    let mut warnings: Vec<KubeEvent> = events
        .list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("ExpiringSoon"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect();
    warnings.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
    warnings
}

/// Waits until `count` `ExpiringSoon` events about `name` exist, for `REACTION` after
/// `due` at most.
async fn wait_for_expiring_soon_events(
    t: &Operated,
    name: &str,
    count: usize,
    due: Timestamp,
) -> Vec<KubeEvent> {
    let deadline = Instant::now() + ttl::until(due, Timestamp::now()) + REACTION;
    loop {
        let events = expiring_soon_events(t, name).await;
        if events.len() >= count {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{count} ExpiringSoon events about {name}: {events:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The event was published within the warning lead before `expires_at`, not before it,
/// and says when the environment expires; how late after the warning instant.
fn published_within_the_lead(
    event: &KubeEvent,
    warning_at: Timestamp,
    expires_at: Timestamp,
) -> jiff::SignedDuration {
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    let published = event.event_time.as_ref().expect("eventTime").0;
    assert!(
        published >= warning_at,
        "published at {published}, before the lead began at {warning_at}"
    );
    assert!(
        published < expires_at,
        "published at {published}, not before expiry at {expires_at}"
    );
    let note = event.note.as_deref().unwrap_or_default();
    assert!(note.contains(&format!("expires at {expires_at}")), "{note}");
    published.duration_since(warning_at)
}

/// Issue 20: before an idle environment's TTL runs out, one Warning event `ExpiringSoon`
/// — timer-driven, not before the lead, not repeated — and the REST API says it is
/// expiring soon; a TTL extension moves `expiresAt` and re-arms the warning.
#[tokio::test]
async fn an_idle_environment_is_warned_once_before_it_expires_and_again_after_an_extension() {
    let lead = jiff::SignedDuration::from_secs(50);
    let (t, alice) =
        crate::api::workspace_with("expiring", "alice", &["--expiry-warning=50s"]).await;
    let api = t.operator.api;
    crate::api::wait_for_api(api).await;
    let one = format!("{}/soon", crate::api::environments(&t.workspace));
    let namespace = t.healthy_app("soon-app").await;
    t.create(&t.environment("soon", &namespace, "soon-app", 1))
        .await;
    let warm = t.wait_phase("soon", Phase::Warm, REACTION).await;
    let status = warm.status.expect("status");
    let expires_at = status.expires_at.expect("expiresAt").0;
    let warning_at = status.expiry_warning_at.expect("expiryWarningAt").0;
    assert_eq!(expires_at.duration_since(warning_at), lead);
    assert!(
        Timestamp::now() < warning_at,
        "a 1-minute TTL and a 50 s lead leave 10 s before the warning"
    );
    assert!(
        expiring_soon_events(&t, "soon").await.is_empty(),
        "no warning before the lead"
    );
    let shown = crate::api::call(api, "GET", &one, Some(&alice), None).await;
    assert_eq!(
        (
            &shown.json()["expiring_soon"],
            &shown.json()["expiry_warning_at"]
        ),
        (&json!(false), &json!(warning_at.to_string())),
        "{shown:?}"
    );

    // Nothing changes meanwhile: the operator's own timer brings the warning.
    wait_for(
        &t.environments,
        "soon",
        Duration::from_secs(40),
        "warned for its expiry",
        |e| {
            e.and_then(|e| e.status.as_ref())
                .and_then(|s| s.expiry_warned_for.as_ref())
                .is_some_and(|warned| warned.0 == expires_at)
        },
    )
    .await;
    // The event follows the status write that records it.
    let first = wait_for_expiring_soon_events(&t, "soon", 1, warning_at).await;
    let late = published_within_the_lead(&first[0], warning_at, expires_at);
    println!("ExpiringSoon published {late:#} after the warning instant");
    assert!(
        late < jiff::SignedDuration::from_secs(5),
        "timer-driven, at the warning instant: {late:#} late"
    );
    let shown = crate::api::call(api, "GET", &one, Some(&alice), None).await;
    assert_eq!(shown.json()["expiring_soon"], json!(true), "{shown:?}");

    // The user extends the TTL through the API: expiresAt moves a minute on, the warning
    // is re-armed, and is given again the lead before the new instant, not before.
    let extended = crate::api::call(
        api,
        "PATCH",
        &one,
        Some(&alice),
        Some(json!({"ttl_minutes": 2})),
    )
    .await;
    assert_eq!(extended.status, 200, "{extended:?}");
    let later_expiry = expires_at + jiff::SignedDuration::from_mins(1);
    let moved = wait_for(
        &t.environments,
        "soon",
        REACTION,
        "expiring a minute later",
        |e| {
            e.and_then(|e| e.status.as_ref())
                .and_then(|s| s.expires_at.as_ref())
                .is_some_and(|at| at.0 == later_expiry)
        },
    )
    .await
    .expect("environment");
    let later_warning = moved
        .status
        .and_then(|s| s.expiry_warning_at)
        .expect("expiryWarningAt")
        .0;
    assert_eq!(later_expiry.duration_since(later_warning), lead);
    let shown = crate::api::call(api, "GET", &one, Some(&alice), None).await;
    assert_eq!(
        shown.json()["expiring_soon"],
        json!(false),
        "warned for the old expiry only: {shown:?}"
    );
    assert_eq!(
        expiring_soon_events(&t, "soon").await.len(),
        1,
        "not warned again for the new expiry before its lead"
    );
    let both = wait_for_expiring_soon_events(&t, "soon", 2, later_warning).await;
    let late = published_within_the_lead(&both[1], later_warning, later_expiry);
    assert!(late < jiff::SignedDuration::from_secs(5), "{late:#} late");

    // Torn down before it expires; still one warning per expiry instant.
    t.destroy("soon").await;
    assert_eq!(expiring_soon_events(&t, "soon").await.len(), 2);
}
