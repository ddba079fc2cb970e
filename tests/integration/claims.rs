//! Runs claim environments: reuse within TTL, exclusive leases in creation order, lease
//! expiry, failure propagation, and the CI command — on the real control plane.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::join_all;
use jiff::Timestamp;
use kube::api::DeleteParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use testmesh::lifecycle::{ClaimPhase, Phase};
use testmesh::resources::TestEnvironmentClaim;
use testmesh_testenv::OPERATOR_USER;

use crate::support::REACTION;
use crate::support::{
    Operated, events, operated_workspace, phase_of, repo_root, run, wait_for, wait_reconciliations,
};
use testmesh_testenv::argocd::progressing_status;

impl Operated {
    /// A claim for `context` whose template deploys `app` into `namespace`.
    fn claim(
        &self,
        name: &str,
        context: &str,
        namespace: &str,
        app: &str,
        ttl_minutes: u32,
    ) -> TestEnvironmentClaim {
        serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1",
            "kind": "TestEnvironmentClaim",
            "metadata": {"name": name},
            "spec": {
                "context": context,
                "maxDurationMinutes": 60,
                "template": {"provider": "argocd", "providerAppName": app, "namespace": namespace, "ttlMinutes": ttl_minutes}
            }
        }))
        .expect("claim")
    }

    async fn release(&self, name: &str) {
        self.claims()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete claim");
    }

    fn namespace_creations(&self, namespace: &str) -> usize {
        self.control_plane
            .audited_writes()
            .expect("audit log")
            .iter()
            .filter(|w| w.user == OPERATOR_USER && w.verb == "create" && w.resource == "namespaces")
            .filter(|w| w.name.as_deref() == Some(namespace) && w.code < 300)
            .count()
    }
}

fn ready_reason(claim: &TestEnvironmentClaim) -> (String, String) {
    claim
        .status
        .as_ref()
        .and_then(|s| testmesh::lifecycle::conditions::find(&s.conditions, "Ready"))
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}

/// First claim provisions; the next one reuses the warm environment at once; releasing
/// starts the TTL from the release.
#[tokio::test]
async fn a_warm_environment_is_reused_and_release_starts_its_ttl() {
    let t = operated_workspace("reuse", &[]).await;
    let namespace = t.healthy_app("reuse-app").await;

    t.create_claim(&t.claim("first", "pr-7", &namespace, "reuse-app", 30))
        .await;
    let first = t.wait_claim("first", ClaimPhase::Bound, REACTION).await;
    let status = first.status.clone().expect("status");
    assert_eq!(status.reused, Some(false), "the first run provisions");
    assert_eq!(status.namespace.as_deref(), Some(namespace.as_str()));
    let environment = status.environment_name.expect("environment");
    assert!(status.lease_expires_at.is_some());
    assert_eq!(
        t.wait_phase(&environment, Phase::Running, REACTION)
            .await
            .status
            .expect("status")
            .claimed_by,
        ["first"]
    );

    let released_at = Timestamp::now();
    t.release("first").await;
    let cooling = t.wait_phase(&environment, Phase::Cooling, REACTION).await;
    let status = cooling.status.expect("status");
    let last_used = status.last_used_at.expect("lastUsedAt").0;
    // To the fraction of a second: the status keeps it, so no whole-second slack.
    assert!(last_used >= released_at, "TTL starts at the release");
    assert_eq!(
        status
            .expires_at
            .expect("expiresAt")
            .0
            .duration_since(last_used)
            .as_secs(),
        30 * 60
    );

    let created = Instant::now();
    t.create_claim(&t.claim("second", "pr-7", &namespace, "reuse-app", 30))
        .await;
    let second = t.wait_claim("second", ClaimPhase::Bound, REACTION).await;
    println!(
        "claim created -> Ready on a warm environment: {:?}",
        created.elapsed()
    );
    let status = second.status.expect("status");
    assert_eq!(status.reused, Some(true));
    assert_eq!(
        status.environment_name.as_deref(),
        Some(environment.as_str())
    );
    assert_eq!(
        t.namespace_creations(&namespace),
        1,
        "no new namespace, no provisioning"
    );
    let environments = t
        .environments
        .list(&Default::default())
        .await
        .expect("list");
    assert_eq!(environments.items.len(), 1, "one environment per context");
    let finalizer_patches = t.finalizer_patches();
    assert!(
        finalizer_patches.is_empty(),
        "the environment was created with its finalizer: {finalizer_patches:#?}"
    );
    // The warm environment binds the new claim at once: the claim is written `Bound`,
    // not `Queued` first.
    let second_status_writes: Vec<_> = t
        .operator_writes()
        .into_iter()
        .filter(|w| w.resource == "testenvironmentclaims")
        .filter(|w| w.subresource.as_deref() == Some("status"))
        .filter(|w| w.name.as_deref() == Some("second"))
        .collect();
    assert_eq!(
        second_status_writes.len(),
        1,
        "one status write for a claim bound at once: {second_status_writes:#?}"
    );
}

#[tokio::test]
async fn after_ttl_expiry_a_claim_gets_a_new_environment() {
    let t = operated_workspace("miss", &[]).await;
    let namespace = t.healthy_app("miss-app").await;
    t.create_claim(&t.claim("early", "nightly", &namespace, "miss-app", 1))
        .await;
    let early = t.wait_claim("early", ClaimPhase::Bound, REACTION).await;
    let old = early
        .status
        .and_then(|s| s.environment_name)
        .expect("environment");
    t.release("early").await;
    t.wait_phase(&old, Phase::Destroyed, Duration::from_secs(120))
        .await;

    // The Application was deleted with the old environment; the App-of-Apps brings it back.
    t.argo.create_app("miss-app", &namespace).await;
    t.argo.make_healthy("miss-app").await;
    t.create_claim(&t.claim("late", "nightly", &namespace, "miss-app", 1))
        .await;
    let late = t.wait_claim("late", ClaimPhase::Bound, REACTION).await;
    let status = late.status.expect("status");
    assert_eq!(
        status.reused,
        Some(false),
        "an expired environment is never reused"
    );
    assert_ne!(status.environment_name.as_deref(), Some(old.as_str()));
    assert_eq!(t.namespace_creations(&namespace), 2);
}

/// Twenty claims for one context at once: each is bound exactly once, in creation order,
/// and never two at the same time.
#[tokio::test]
async fn twenty_concurrent_claims_take_turns_in_creation_order() {
    let t = operated_workspace("queue", &[]).await;
    let namespace = t.healthy_app("queue-app").await;

    // Record every holder list the environment ever shows.
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let recorder = {
        let seen = seen.clone();
        let environments = t.environments.clone();
        tokio::spawn(async move {
            let mut events = watcher(environments, watcher::Config::default())
                .applied_objects()
                .boxed();
            while let Some(Ok(environment)) = events.next().await {
                let holders = environment.status.map(|s| s.claimed_by).unwrap_or_default();
                let mut seen = seen.lock().expect("lock");
                if seen.last() != Some(&holders) {
                    seen.push(holders);
                }
            }
        })
    };

    let names: Vec<String> = (0..20).map(|i| format!("run-{i:02}")).collect();
    let claims: Vec<TestEnvironmentClaim> = names
        .iter()
        .map(|name| t.claim(name, "main", &namespace, "queue-app", 30))
        .collect();
    join_all(claims.iter().map(|claim| t.create_claim(claim))).await;
    let mut expected: Vec<(Timestamp, String)> = t
        .claims()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|c| {
            (
                c.meta().creation_timestamp.clone().expect("created").0,
                c.name_any(),
            )
        })
        .collect();
    expected.sort();
    let expected: Vec<String> = expected.into_iter().map(|(_, name)| name).collect();

    // Each hand-over, from the release to a moment after the next run was seen bound:
    // only the environment's reconciler writes that run's claim then.
    let mut hand_overs: Vec<(String, Timestamp, Timestamp)> = Vec::new();
    let mut released_at = Timestamp::now();
    for (turn, name) in expected.iter().enumerate() {
        let bound = t.wait_claim(name, ClaimPhase::Bound, REACTION).await;
        if turn > 0 {
            let until = Timestamp::now() + Duration::from_secs(2);
            hand_overs.push((name.clone(), released_at, until));
            // Handed over: the run is told by the environment's reconciler, in the same
            // pass and at the same instant as the environment records it.
            let status = bound.status.clone().expect("status");
            let environment = t
                .environments
                .get(status.environment_name.as_deref().expect("environment"))
                .await
                .expect("environment");
            let held_since = environment.status.and_then(|s| s.held_since);
            assert_eq!(
                status.bound_at, held_since,
                "turn {turn}: bound at the hand-over's instant"
            );
        }
        let claims = t
            .claims()
            .list(&Default::default())
            .await
            .expect("list")
            .items;
        let bound_now: Vec<String> = claims
            .iter()
            .filter(|c| c.status.as_ref().and_then(|s| s.phase) == Some(ClaimPhase::Bound))
            .map(ResourceExt::name_any)
            .collect();
        assert_eq!(
            bound_now,
            std::slice::from_ref(name),
            "turn {turn}: exactly one claim bound"
        );
        // The claim bound is written first; the others report their places soon after
        // (a claim created a moment ago may have no status yet).
        let deadline = tokio::time::Instant::now() + REACTION;
        let mut claims = claims;
        loop {
            let unreported: Vec<String> = claims
                .iter()
                .filter(|c| c.name_any() != *name)
                .filter(|c| {
                    let position = c.status.as_ref().and_then(|s| s.queue_position);
                    position.is_none_or(|p| p < 1)
                })
                .map(ResourceExt::name_any)
                .collect();
            if unreported.is_empty() {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "turn {turn}: {unreported:?} report no queue position"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            claims = t
                .claims()
                .list(&Default::default())
                .await
                .expect("list")
                .items;
        }
        assert_eq!(bound.status.and_then(|s| s.reused), Some(turn > 0));
        released_at = Timestamp::now();
        t.release(name).await;
    }
    let last = expected.last().expect("claims").clone();
    wait_for(&t.claims(), &last, REACTION, "gone", |c| c.is_none()).await;
    let environment = t
        .environments
        .list(&Default::default())
        .await
        .expect("list")
        .items;
    assert_eq!(environment.len(), 1, "one environment served all twenty");
    let env_name = environment[0].name_any();
    t.wait_phase(&env_name, Phase::Cooling, REACTION).await;
    recorder.abort();

    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|holders| holders.len() <= 1),
        "never two holders: {seen:?}"
    );
    let order: Vec<String> =
        seen.iter()
            .filter_map(|h| h.first().cloned())
            .fold(Vec::new(), |mut order, holder| {
                if order.last() != Some(&holder) {
                    order.push(holder);
                }
                order
            });
    assert_eq!(
        order, expected,
        "bound exactly once each, in creation order"
    );
    let conflicts: Vec<String> = t
        .control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| {
            w.user == OPERATOR_USER
                && w.resource == "testenvironmentclaims"
                && w.namespace.as_deref() == Some(t.workspace.as_str())
                && w.code == 409
        })
        .filter(|w| {
            let at: Option<Timestamp> = w.received_at.parse().ok();
            hand_overs.iter().any(|(name, from, until)| {
                w.name.as_ref() == Some(name) && at.is_some_and(|at| (*from..*until).contains(&at))
            })
        })
        .filter_map(|w| w.name)
        .collect();
    assert!(
        conflicts.is_empty(),
        "the run bound at a hand-over is written by one reconciler, once: {conflicts:?}"
    );
}

#[tokio::test]
async fn an_expired_lease_releases_the_environment_and_marks_the_claim() {
    let t = operated_workspace("lease", &[]).await;
    let namespace = t.healthy_app("lease-app").await;
    let mut claim = t.claim("forgotten", "pr-9", &namespace, "lease-app", 30);
    claim.spec.max_duration_minutes = 1;
    t.create_claim(&claim).await;
    let bound = t.wait_claim("forgotten", ClaimPhase::Bound, REACTION).await;
    let lease_end = bound
        .status
        .clone()
        .and_then(|s| s.lease_expires_at)
        .expect("lease")
        .0;
    let environment = bound
        .status
        .and_then(|s| s.environment_name)
        .expect("environment");
    t.create_claim(&t.claim("next", "pr-9", &namespace, "lease-app", 30))
        .await;

    let expired = t
        .wait_claim("forgotten", ClaimPhase::Expired, Duration::from_secs(120))
        .await;
    assert!(Timestamp::now() >= lease_end);
    assert_eq!(ready_reason(&expired).0, "LeaseExpired");
    t.wait_claim("next", ClaimPhase::Bound, REACTION).await;
    let env = t.environments.get(&environment).await.expect("environment");
    assert_eq!(
        env.status.expect("status").claimed_by,
        ["next"],
        "handed on to the next run"
    );
    assert!(
        events(
            t.control_plane,
            &t.workspace,
            "involvedObject.name=forgotten,type=Warning",
            "{.items[*].reason}",
        )
        .contains("LeaseExpired"),
        "a Warning event marks the expiry"
    );
}

#[tokio::test]
async fn an_environment_failure_is_reported_on_the_claim() {
    let t = operated_workspace("claimfail", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.argo.create_app("broken-app", &namespace).await;
    t.argo
        .set_status("broken-app", json!({
            "health": {"status": "Healthy"}, "sync": {"status": "Synced"},
            "conditions": [{"type": "InvalidSpecError", "message": "application repo is not permitted in project", "lastTransitionTime": "2026-11-24T00:00:00Z"}]
        }))
        .await;
    t.create_claim(&t.claim("doomed", "pr-5", &namespace, "broken-app", 30))
        .await;
    let failed = t.wait_claim("doomed", ClaimPhase::Failed, REACTION).await;
    let (reason, message) = ready_reason(&failed);
    assert_eq!(reason, "EnvironmentFailed");
    assert!(
        message.contains("InvalidSpecError") && message.contains("not permitted"),
        "{message}"
    );
}

#[tokio::test]
async fn a_claim_deleted_while_queued_is_never_bound() {
    let t = operated_workspace("pending", &[]).await;
    let namespace = format!("{}-env", t.workspace);
    t.argo.create_app("pending-app", &namespace).await;
    t.argo.set_status("pending-app", progressing_status()).await;
    t.create_claim(&t.claim("holder", "pr-3", &namespace, "pending-app", 30))
        .await;
    t.create_claim(&t.claim("impatient", "pr-3", &namespace, "pending-app", 30))
        .await;
    let queued = wait_for(&t.claims(), "impatient", REACTION, "queued", |c| {
        c.and_then(|c| c.status.as_ref())
            .and_then(|s| s.queue_position)
            == Some(1)
    })
    .await
    .expect("claim");
    assert_eq!(ready_reason(&queued).0, "Queued");
    t.release("impatient").await;
    wait_for(&t.claims(), "impatient", REACTION, "gone", |c| c.is_none()).await;

    t.argo.make_healthy("pending-app").await;
    let holder = t.wait_claim("holder", ClaimPhase::Bound, REACTION).await;
    let environment = holder
        .status
        .and_then(|s| s.environment_name)
        .expect("environment");
    t.release("holder").await;
    let cooling = t.wait_phase(&environment, Phase::Cooling, REACTION).await;
    assert!(
        cooling.status.expect("status").claimed_by.is_empty(),
        "the deleted claim was never bound"
    );
}

/// The CI command: claims, waits, prints `export` lines, releases; and fails with the
/// reason.
#[tokio::test]
async fn the_ci_command_claims_prints_the_policy_and_releases() {
    let t = operated_workspace("cli", &[]).await;
    let namespace = t.healthy_app("cli-app").await;
    let template = t
        .control_plane
        .run_dir()
        .join(format!("{}-template.yaml", t.workspace));
    std::fs::write(
        &template,
        format!(
            "provider: argocd\nproviderAppName: cli-app\nnamespace: {namespace}\nttlMinutes: 30\n"
        ),
    )
    .expect("template");

    let testmesh = |args: &[&str]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_testmesh"));
        command
            .args(args)
            .env("KUBECONFIG", t.control_plane.kubeconfig_path());
        run(command)
    };
    let template_arg = template.display().to_string();
    let (ok, stdout, stderr) = testmesh(&[
        "claim",
        "--context",
        "pr-42",
        "--from",
        &template_arg,
        "--namespace",
        &t.workspace,
        "--name",
        "ci-run",
        "--wait",
        "60s",
        "--output",
        "env",
    ]);
    assert!(ok, "claim failed:\n{stderr}");
    assert!(
        stderr.contains("bound: Bound"),
        "progress on stderr: {stderr}"
    );
    let exports: BTreeMap<&str, &str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
        .collect();
    assert_eq!(exports.get("TESTMESH_CLAIM"), Some(&"'ci-run'"));
    assert_eq!(
        exports.get("TESTMESH_NAMESPACE"),
        Some(&format!("'{namespace}'").as_str())
    );

    let (ok, _, stderr) = testmesh(&["release", "ci-run", "--namespace", &t.workspace]);
    assert!(ok, "{stderr}");
    wait_for(&t.claims(), "ci-run", REACTION, "gone", |c| c.is_none()).await;

    let (ok, stdout, _) = testmesh(&[
        "claim",
        "--context",
        "pr-42",
        "--from",
        &template_arg,
        "--namespace",
        &t.workspace,
        "--name",
        "ci-run-2",
        "--wait",
        "60s",
    ]);
    assert!(ok);
    let result: serde_json::Value = serde_json::from_str(&stdout).expect("JSON output");
    assert_eq!(result["reused"], true);
    assert_eq!(result["claim"], "ci-run-2");

    let (ok, _, stderr) = testmesh(&[
        "claim",
        "--context",
        "pr-43",
        "--environment",
        "does-not-exist",
        "--namespace",
        &t.workspace,
        "--name",
        "ci-bad",
        "--wait",
        "30s",
    ]);
    assert!(!ok, "a failed claim exits non-zero");
    assert!(stderr.contains("EnvironmentNotFound"), "{stderr}");
    wait_for(&t.claims(), "ci-bad", REACTION, "released", |c| c.is_none()).await;
}

/// README's CI command with the shipped template (`examples/ci/environment-template.yaml`)
/// for a context no environment has served yet: the claim provisions `review-<context>`
/// from the Application `testmesh-<context>` — before, the template named one fixed
/// namespace and a new context failed `NamespaceNotOwned` — and `--output github` hands
/// the result to the job's later steps.
#[tokio::test]
async fn the_shipped_template_provisions_a_context_never_seen_before() {
    let t = operated_workspace("ci-template", &[]).await;
    // A context no test has used: the workspace's unique name.
    let context = t.workspace.clone();
    let namespace = format!("review-{context}");
    let app = format!("testmesh-{context}");
    t.argo.create_app(&app, &namespace).await;
    t.argo.make_healthy(&app).await;

    let files = t.control_plane.run_dir();
    let github_output = files.join(format!("{context}-github-output"));
    let github_env = files.join(format!("{context}-github-env"));
    let template = repo_root().join("examples/ci/environment-template.yaml");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_testmesh"));
    command
        .args(["claim", "--namespace", &t.workspace, "--context", &context])
        .arg("--from")
        .arg(&template)
        .args(["--wait", "90s", "--output", "github"])
        .env("KUBECONFIG", t.control_plane.kubeconfig_path())
        .env("GITHUB_OUTPUT", &github_output)
        .env("GITHUB_ENV", &github_env);
    let (ok, stdout, stderr) = run(command);
    assert!(ok, "claim failed:\n{stderr}");
    assert_eq!(stdout, "", "the result went to GitHub's files");
    let lines = |path: &std::path::Path| -> BTreeMap<String, String> {
        std::fs::read_to_string(path)
            .expect("written by testmesh claim")
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    };
    let outputs = lines(&github_output);
    assert_eq!(outputs.get("namespace"), Some(&namespace), "{outputs:?}");
    assert_eq!(outputs.get("reused").map(String::as_str), Some("false"));
    let variables = lines(&github_env);
    assert_eq!(variables.get("TESTMESH_NAMESPACE"), Some(&namespace));
    assert_eq!(variables.get("TESTMESH_CLAIM"), outputs.get("claim"));

    let name = outputs.get("environment").expect("environment output");
    let environment = t.environments.get(name).await.expect("the environment");
    let spec = &environment.spec.template;
    assert_eq!(environment.spec.context, context);
    assert_eq!(
        (spec.namespace.as_str(), spec.provider_app_name.as_str()),
        (namespace.as_str(), app.as_str())
    );
    assert_eq!(
        spec.display_name.as_deref(),
        Some(format!("Review {context}").as_str())
    );
    assert_eq!(phase_of(Some(&environment)), Some(Phase::Running));

    let claim = outputs.get("claim").expect("claim output");
    let mut release = std::process::Command::new(env!("CARGO_BIN_EXE_testmesh"));
    release
        .args(["release", claim, "--namespace", &t.workspace])
        .env("KUBECONFIG", t.control_plane.kubeconfig_path());
    let (ok, _, stderr) = run(release);
    assert!(ok, "{stderr}");
}

/// A restarted operator decides nothing before its caches have listed everything, and
/// ends no claim on a cache's word alone: before, the new process failed every bound claim
/// naming its environment (`EnvironmentNotFound`) before its environment cache had synced,
/// and dropped the environment from `running` to `cooling` under the run.
#[tokio::test]
async fn a_restart_keeps_every_bound_claim_bound() {
    let mut t = operated_workspace("rebound", &[]).await;
    let namespace = t.healthy_app("rebound-app").await;
    t.create(&t.environment("rb", &namespace, "rebound-app", 30))
        .await;
    t.wait_phase("rb", Phase::Warm, REACTION).await;
    t.hold_by_name("rb").await;

    for restart in 0..3 {
        let claim_phases = t.record_claim_phases("named");
        t.operator.restart();
        // Settled: the restarted operator has reconciled the environment and the claim,
        // so a bad decision would have been written by now.
        wait_reconciliations(&t.operator, 2).await;
        t.assert_still_held("rb", claim_phases, &format!("restart {restart}"))
            .await;
    }
}
