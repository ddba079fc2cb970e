//! Tests of the claim queue and of what a claim reports.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;

use super::*;
use crate::resources::{TestEnvironmentClaimSpec, TestEnvironmentSpec, TestEnvironmentStatus};

const NOW: i64 = 2_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn entry<'a>(name: &'a str, created: i64) -> QueueEntry<'a> {
    QueueEntry {
        name,
        created_at: at(created),
        context: "pr-1",
        environment_name: None,
        target: None,
        active: true,
    }
}

#[test]
fn queue_is_creation_order_then_name_and_only_active_wanting_claims() {
    let entries = [
        entry("late", 30),
        entry("b-tie", 10),
        entry("a-tie", 10),
        QueueEntry {
            active: false,
            ..entry("finished", 1)
        },
        QueueEntry {
            context: "pr-2",
            ..entry("other-context", 1)
        },
        QueueEntry {
            environment_name: Some("elsewhere"),
            ..entry("named-other", 1)
        },
        QueueEntry {
            environment_name: Some("env-1"),
            context: "pr-1",
            ..entry("named-this", 20)
        },
    ];
    let names: Vec<&str> = queue(&entries, "env-1", "pr-1")
        .iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["a-tie", "b-tie", "named-this", "late"]);
}

#[test]
fn the_claim_bound_next_is_position_one_and_holders_are_not_counted() {
    let entries = [entry("holder", 1), entry("next", 2), entry("after", 3)];
    let waiting = queue(&entries, "env-1", "pr-1");
    let held = ["holder".to_owned()];
    let left = ["gone".to_owned()];
    let cases: [(&str, &[String], &str, Option<usize>); 7] = [
        ("held: the first waiting is next", &held, "next", Some(1)),
        ("held: then the one after it", &held, "after", Some(2)),
        ("held: the holder waits for nothing", &held, "holder", None),
        ("free: the head is next", &[], "holder", Some(1)),
        ("free: then the one after it", &[], "next", Some(2)),
        ("the holder left the queue", &left, "next", Some(2)),
        ("not in the queue", &held, "stranger", None),
    ];
    for (case, holders, claim, expected) in cases {
        assert_eq!(queue_position(&waiting, claim, holders), expected, "{case}");
    }
}

#[test]
fn generated_environment_names_are_valid_and_numbered() {
    assert_eq!(environment_name_for("pr-123", 1), "pr-123-1");
    assert_eq!(environment_name_for("Feature_X.y", 2), "feature-x-y-2");
    assert_eq!(environment_name_for("__", 3), "env-3");
    assert!(environment_name_for(&"a".repeat(63), 4_000_000_000).len() <= 63);
    assert_eq!(environment_generation("pr-123", "pr-123-7"), Some(7));
    assert_eq!(
        environment_generation("Feature_X.y", "feature-x-y-2"),
        Some(2)
    );
    assert_eq!(environment_generation("pr-123", "pr-1234-7"), None);
    assert_eq!(environment_generation("pr-123", "pr-123-x"), None);
}

fn claim(name: &str) -> TestEnvironmentClaim {
    let mut claim = TestEnvironmentClaim::new(
        name,
        TestEnvironmentClaimSpec {
            context: "pr-1".into(),
            environment_name: None,
            template: None,
            max_duration_minutes: 60,
        },
    );
    claim.metadata = ObjectMeta {
        name: Some(name.into()),
        generation: Some(1),
        creation_timestamp: Some(Time(at(NOW - 5))),
        ..ObjectMeta::default()
    };
    claim
}

fn environment(phase: Phase, ready: (&str, &str), holders: &[&str]) -> TestEnvironment {
    let spec: TestEnvironmentSpec = serde_json::from_value(serde_json::json!({
        "context": "pr-1", "provider": "argocd", "providerAppName": "app", "namespace": "review-pr-1"
    }))
    .unwrap();
    let mut env = TestEnvironment::new("env-1", spec);
    env.status = Some(TestEnvironmentStatus {
        phase: Some(phase),
        claimed_by: holders.iter().map(|h| (*h).to_owned()).collect(),
        routing_policy: [(
            "users".to_owned(),
            "http://users.review-pr-1.svc.cluster.local:8080".to_owned(),
        )]
        .into(),
        conditions: vec![Condition {
            type_: "Ready".into(),
            status: ready.0.into(),
            reason: ready.1.into(),
            message: "details".into(),
            last_transition_time: Time(at(NOW - 100)),
            observed_generation: Some(1),
        }],
        ..TestEnvironmentStatus::default()
    });
    env
}

fn ready(decision: &ClaimDecision) -> (ClaimPhase, String, String) {
    let c = conditions::find(&decision.status.conditions, "Ready").expect("Ready");
    (
        decision.status.phase.expect("phase"),
        c.status.clone(),
        c.reason.clone(),
    )
}

fn on(env: &TestEnvironment, position: Option<usize>, created_for_claim: bool) -> Target<'_> {
    Target::Environment {
        environment: env,
        queue_position: position,
        created_for_claim,
        sole_taker: true,
    }
}

/// An environment whose current holder was bound already provisioned, or not.
fn bound_reused(mut env: TestEnvironment, reused: Option<bool>) -> TestEnvironment {
    env.status.as_mut().unwrap().holder_reused = reused;
    env
}

#[test]
fn reused_is_what_the_environment_recorded_when_it_bound_the_run() {
    let running = environment(Phase::Running, ("True", "InUse"), &["run"]);
    for (recorded, expected) in [
        (Some(true), Some(true)),
        (Some(false), Some(false)),
        (None, Some(false)),
    ] {
        let env = bound_reused(running.clone(), recorded);
        let decision = decide_claim(&claim("run"), on(&env, None, false), at(NOW));
        assert_eq!(decision.status.reused, expected, "{recorded:?}");
    }
}

#[test]
fn bound_to_a_ready_environment_copies_routing_and_starts_the_lease() {
    let env = bound_reused(
        environment(Phase::Running, ("True", "InUse"), &["run"]),
        Some(true),
    );
    let decision = decide_claim(&claim("run"), on(&env, None, false), at(NOW));
    assert_eq!(
        ready(&decision),
        (ClaimPhase::Bound, "True".into(), reason::BOUND.into())
    );
    assert_eq!(decision.status.environment_name.as_deref(), Some("env-1"));
    assert_eq!(decision.status.reused, Some(true));
    assert_eq!(decision.status.routing_policy.len(), 1);
    assert_eq!(decision.status.bound_at, Some(Time(at(NOW))));
    assert_eq!(
        decision.status.lease_expires_at,
        Some(Time(at(NOW + 3_600)))
    );
    assert_eq!(decision.wake_at, Some(at(NOW + 3_600)));
}

#[test]
fn claim_outcomes() {
    let provisioning = environment(Phase::Provisioning, ("False", "Provisioning"), &["run"]);
    let failed = environment(Phase::Failed, ("False", "AppFailed"), &[]);
    let busy = environment(Phase::Running, ("True", "InUse"), &["other"]);
    let torn_down = environment(Phase::Destroying, ("False", "DestroyRequested"), &["run"]);
    let cases: Vec<(&str, Target<'_>, (ClaimPhase, &str, &str))> = vec![
        (
            "held while provisioning",
            on(&provisioning, None, false),
            (ClaimPhase::Pending, "False", reason::PROVISIONING),
        ),
        (
            "environment failed",
            on(&failed, Some(1), false),
            (ClaimPhase::Failed, "False", reason::ENVIRONMENT_FAILED),
        ),
        (
            "queued behind another run",
            on(&busy, Some(3), false),
            (ClaimPhase::Pending, "False", reason::QUEUED),
        ),
        (
            "torn down under the run",
            on(&torn_down, None, false),
            (ClaimPhase::Failed, "False", reason::ENVIRONMENT_DESTROYED),
        ),
        (
            "named environment missing",
            Target::NamedEnvironmentMissing,
            (ClaimPhase::Failed, "False", reason::ENVIRONMENT_NOT_FOUND),
        ),
        (
            "previous environment tearing down",
            Target::PreviousTearingDown { environment: "old" },
            (ClaimPhase::Pending, "False", reason::WAITING_FOR_TEARDOWN),
        ),
        (
            "nothing alive",
            Target::CreateEnvironment {
                name: "pr-1-1".into(),
            },
            (ClaimPhase::Pending, "False", reason::CREATING_ENVIRONMENT),
        ),
    ];
    for (name, target, (phase, status, reason)) in cases {
        let decision = decide_claim(&claim("run"), target, at(NOW));
        assert_eq!(
            ready(&decision),
            (phase, status.to_owned(), reason.to_owned()),
            "{name}"
        );
    }
}

#[test]
fn queue_position_and_failure_reason_are_reported() {
    let busy = environment(Phase::Running, ("True", "InUse"), &["other"]);
    let decision = decide_claim(&claim("run"), on(&busy, Some(3), false), at(NOW));
    assert_eq!(decision.status.queue_position, Some(3));
    let failed = environment(Phase::Failed, ("False", "AppFailed"), &[]);
    let decision = decide_claim(&claim("run"), on(&failed, Some(1), false), at(NOW));
    let message = &conditions::find(&decision.status.conditions, "Ready")
        .unwrap()
        .message;
    assert!(message.contains("AppFailed: details"), "{message}");
}

#[test]
fn creating_names_the_environment_to_be() {
    let decision = decide_claim(
        &claim("run"),
        Target::CreateEnvironment {
            name: "pr-1-1".into(),
        },
        at(NOW),
    );
    assert_eq!(decision.create_environment.as_deref(), Some("pr-1-1"));
    assert_eq!(decision.status.environment_name.as_deref(), Some("pr-1-1"));
    assert_eq!(
        decision.status.reused, None,
        "decided when bound, from who created it"
    );
}

#[test]
fn lease_runs_out_exactly_at_its_end() {
    let env = environment(Phase::Running, ("True", "InUse"), &["run"]);
    let bound = decide_claim(&claim("run"), on(&env, None, false), at(NOW));
    let mut held = claim("run");
    held.status = Some(bound.status);
    let before = decide_claim(&held, on(&env, None, false), at(NOW + 3_599));
    assert_eq!(before.status.phase, Some(ClaimPhase::Bound));
    let at_end = decide_claim(&held, on(&env, None, false), at(NOW + 3_600));
    assert_eq!(
        ready(&at_end),
        (
            ClaimPhase::Expired,
            "False".into(),
            reason::LEASE_EXPIRED.into()
        )
    );
}

#[test]
fn released_when_the_environment_no_longer_holds_a_bound_claim() {
    let env = environment(Phase::Running, ("True", "InUse"), &["run"]);
    let bound = decide_claim(&claim("run"), on(&env, None, false), at(NOW));
    let mut held = claim("run");
    held.status = Some(bound.status);
    let handed_over = environment(Phase::Running, ("True", "InUse"), &["next"]);
    let released = decide_claim(&held, on(&handed_over, None, false), at(NOW + 10));
    assert_eq!(ready(&released).0, ClaimPhase::Released);
    assert!(released.status.routing_policy.is_empty());
}

#[test]
fn finished_claims_stay_finished() {
    for phase in [
        ClaimPhase::Released,
        ClaimPhase::Expired,
        ClaimPhase::Failed,
    ] {
        let mut finished = claim("run");
        finished.status = Some(TestEnvironmentClaimStatus {
            phase: Some(phase),
            ..Default::default()
        });
        let env = environment(Phase::Warm, ("True", "Available"), &[]);
        let decision = decide_claim(&finished, on(&env, Some(1), false), at(NOW));
        assert_eq!(decision.status.phase, Some(phase));
        assert!(decision.create_environment.is_none());
    }
}

#[test]
fn a_named_environment_of_another_context_is_refused() {
    let mut named = claim("run");
    named.spec.environment_name = Some("env-1".into());
    named.spec.context = "pr-2".into();
    let env = environment(Phase::Warm, ("True", "Available"), &[]);
    let decision = decide_claim(&named, on(&env, Some(1), false), at(NOW));
    assert_eq!(
        ready(&decision),
        (
            ClaimPhase::Failed,
            "False".into(),
            reason::CONTEXT_MISMATCH.into()
        )
    );
}

#[test]
fn a_claim_waits_only_for_the_environment_chosen_for_it() {
    let entries = [
        QueueEntry {
            target: Some("env-2"),
            ..entry("chose-other", 1)
        },
        QueueEntry {
            target: Some("env-1"),
            ..entry("chose-this", 2)
        },
        entry("not-yet-chosen", 3),
    ];
    let for_env_1: Vec<&str> = queue(&entries, "env-1", "pr-1")
        .iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(for_env_1, ["chose-this", "not-yet-chosen"]);
    let for_env_2: Vec<&str> = queue(&entries, "env-2", "pr-1")
        .iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(for_env_2, ["chose-other", "not-yet-chosen"]);
}

#[test]
fn the_lease_timer_survives_a_pause_in_readiness() {
    let env = bound_reused(
        environment(Phase::Running, ("True", "InUse"), &["run"]),
        Some(true),
    );
    let bound = decide_claim(&claim("run"), on(&env, None, false), at(NOW));
    let mut held = claim("run");
    held.status = Some(bound.status);
    let resyncing = environment(Phase::Running, ("False", "Provisioning"), &["run"]);
    let paused = decide_claim(&held, on(&resyncing, None, false), at(NOW + 60));
    assert_eq!(paused.wake_at, Some(at(NOW + 3_600)));
}

/// A claim created `age` seconds before `NOW`, with no status yet.
fn fresh_claim(age: i64) -> TestEnvironmentClaim {
    let mut claim = claim("run");
    claim.metadata.creation_timestamp = Some(Time(at(NOW - age)));
    claim
}

#[test]
fn a_new_claim_the_environment_binds_at_once_is_not_first_written_queued() {
    let warm = environment(Phase::Warm, ("True", "Available"), &[]);
    let mut cold = environment(Phase::Cold, ("False", "Pending"), &[]);
    cold.status = None;
    for env in [&warm, &cold] {
        let decision = decide_claim(&fresh_claim(1), on(env, Some(1), false), at(NOW));
        assert_eq!(
            decision.status,
            TestEnvironmentClaimStatus::default(),
            "nothing to write before the bind"
        );
        assert_eq!(decision.create_environment, None);
        assert_eq!(
            decision.wake_at,
            Some(at(NOW + 4)),
            "looked at again when the grace ends"
        );
    }
}

#[test]
fn a_new_claim_is_written_queued_when_the_environment_does_not_bind_it_at_once() {
    let warm = environment(Phase::Warm, ("True", "Available"), &[]);
    let busy = environment(Phase::Running, ("True", "InUse"), &["other"]);
    let mut expired = warm.clone();
    expired.spec.template.ttl_minutes = 1;
    expired.status.as_mut().unwrap().last_used_at = Some(Time(at(NOW - 60)));
    let mut destroy = warm.clone();
    destroy.spec.destroy = true;
    let mut deleted = warm.clone();
    deleted.metadata.deletion_timestamp = Some(Time(at(NOW - 1)));
    let contested = Target::Environment {
        environment: &warm,
        queue_position: Some(1),
        created_for_claim: false,
        sole_taker: false,
    };
    let mut written_before = fresh_claim(1);
    written_before.status = Some(TestEnvironmentClaimStatus {
        environment_name: Some("env-1".into()),
        ..TestEnvironmentClaimStatus::default()
    });
    let cases: Vec<(&str, TestEnvironmentClaim, Target<'_>)> = vec![
        (
            "the grace ran out",
            fresh_claim(5),
            on(&warm, Some(1), false),
        ),
        (
            "created after now by the operator's clock",
            fresh_claim(-1),
            on(&warm, Some(1), false),
        ),
        (
            "second in the queue",
            fresh_claim(1),
            on(&warm, Some(2), false),
        ),
        (
            "held by another run",
            fresh_claim(1),
            on(&busy, Some(1), false),
        ),
        (
            "its idle TTL ran out",
            fresh_claim(1),
            on(&expired, Some(1), false),
        ),
        (
            "destroy requested",
            fresh_claim(1),
            on(&destroy, Some(1), false),
        ),
        (
            "being deleted",
            fresh_claim(1),
            on(&deleted, Some(1), false),
        ),
        (
            "another environment could take it",
            fresh_claim(1),
            contested,
        ),
        ("written before", written_before, on(&warm, Some(1), false)),
    ];
    for (case, claim, target) in cases {
        let decision = decide_claim(&claim, target, at(NOW));
        assert_eq!(
            ready(&decision),
            (ClaimPhase::Pending, "False".into(), reason::QUEUED.into()),
            "{case}"
        );
        assert_eq!(
            decision.status.environment_name.as_deref(),
            Some("env-1"),
            "{case}"
        );
    }
}

/// An environment of context `pr-1` named `name`, in `phase`, expiring at `expires`.
fn live(name: &str, phase: Phase, expires: Option<i64>) -> TestEnvironment {
    let spec: TestEnvironmentSpec = serde_json::from_value(serde_json::json!({
        "context": "pr-1", "provider": "argocd", "providerAppName": name, "namespace": name
    }))
    .expect("spec");
    let mut environment = TestEnvironment::new(name, spec);
    environment.status = Some(TestEnvironmentStatus {
        phase: Some(phase),
        expires_at: expires.map(|seconds| Time(at(seconds))),
        ..TestEnvironmentStatus::default()
    });
    environment
}

fn claim_for(environment_name: Option<&str>) -> TestEnvironmentClaim {
    TestEnvironmentClaim::new(
        "run",
        TestEnvironmentClaimSpec {
            context: "pr-1".into(),
            environment_name: environment_name.map(str::to_owned),
            template: None,
            max_duration_minutes: 60,
        },
    )
}

/// The name of the environment `claim` is about among `environments`, and whether it is
/// the sole taker.
fn chosen(claim: &TestEnvironmentClaim, environments: &[&TestEnvironment]) -> (String, bool) {
    let entries = [QueueEntry::of(claim)];
    match choose_target(claim, "uid", environments, &entries, at(NOW)) {
        Target::Environment {
            environment,
            sole_taker,
            ..
        } => (
            environment.metadata.name.clone().unwrap_or_default(),
            sole_taker,
        ),
        Target::CreateEnvironment { name } => (format!("create {name}"), false),
        Target::PreviousTearingDown { environment } => (format!("wait for {environment}"), false),
        Target::NamedEnvironmentMissing => ("missing".into(), false),
    }
}

#[test]
fn the_claim_next_in_line_behind_the_holder_is_position_one() {
    let mut running = live("pr-1-1", Phase::Running, None);
    if let Some(status) = running.status.as_mut() {
        status.claimed_by = vec!["holder".into()];
    }
    let created = |name: &str, seconds: i64| {
        let mut claim = claim_for(None);
        claim.metadata.name = Some(name.into());
        claim.metadata.creation_timestamp = Some(Time(at(seconds)));
        claim
    };
    let (holder, next, after) = (
        created("holder", 1),
        created("next", 2),
        created("after", 3),
    );
    let entries = [&holder, &next, &after].map(QueueEntry::of);
    let position = |claim| match choose_target(claim, "uid", &[&running], &entries, at(NOW)) {
        Target::Environment { queue_position, .. } => queue_position,
        other => panic!("no environment: {other:?}"),
    };
    assert_eq!(position(&holder), None, "the holder waits for nothing");
    assert_eq!(position(&next), Some(1), "next in line");
    assert_eq!(position(&after), Some(2));
}

#[test]
fn a_claim_is_the_sole_taker_of_the_only_live_environment_or_the_one_it_names() {
    let warm = live("pr-1-1", Phase::Warm, Some(NOW + 60));
    let provisioning = live("pr-1-2", Phase::Provisioning, None);
    let destroying = live("pr-1-0", Phase::Destroying, None);
    assert_eq!(chosen(&claim_for(None), &[&warm]), ("pr-1-1".into(), true));
    assert_eq!(
        chosen(&claim_for(None), &[&warm, &destroying]),
        ("pr-1-1".into(), true),
        "one being torn down takes no claim"
    );
    assert_eq!(
        chosen(&claim_for(None), &[&warm, &provisioning]),
        ("pr-1-1".into(), false),
        "another live environment of the context could take it too"
    );
    assert_eq!(
        chosen(&claim_for(Some("pr-1-2")), &[&warm, &provisioning]),
        ("pr-1-2".into(), true)
    );
}

#[test]
fn every_tie_is_broken_the_same_way_whatever_order_the_cache_gives() {
    let a_warm = live("pr-1-a", Phase::Warm, Some(NOW + 60));
    let b_warm = live("pr-1-b", Phase::Warm, Some(NOW + 60));
    let c_later = live("pr-1-c", Phase::Cooling, Some(NOW + 120));
    let d_provisioning = live("pr-1-d", Phase::Provisioning, None);
    let e_provisioning = live("pr-1-e", Phase::Provisioning, None);
    let f_failed = live("pr-1-f", Phase::Failed, None);
    let g_failed = live("pr-1-g", Phase::Failed, None);
    let x_destroying = live("pr-1-x", Phase::Destroying, None);
    let y_destroying = live("pr-1-y", Phase::Destroying, None);
    let cases: [(&str, Vec<&TestEnvironment>, &str); 6] = [
        (
            "reusable, equal expiry: the smaller name",
            vec![&b_warm, &a_warm],
            "pr-1-a",
        ),
        (
            "reusable: the latest expiry, whatever the name",
            vec![&a_warm, &c_later, &b_warm],
            "pr-1-c",
        ),
        (
            "none reusable: the queue of the first live one by name",
            vec![&e_provisioning, &f_failed, &d_provisioning],
            "pr-1-d",
        ),
        (
            "only failed ones: the first by name",
            vec![&g_failed, &f_failed],
            "pr-1-f",
        ),
        (
            "a failed one comes after any other live one",
            vec![&f_failed, &e_provisioning],
            "pr-1-e",
        ),
        (
            "all being torn down: wait for the first by name",
            vec![&y_destroying, &x_destroying],
            "wait for pr-1-x",
        ),
    ];
    for (case, environments, expected) in cases {
        let mut orders = vec![environments.clone()];
        let mut reversed = environments.clone();
        reversed.reverse();
        orders.push(reversed);
        let mut rotated = environments.clone();
        rotated.rotate_left(1);
        orders.push(rotated);
        for order in orders {
            assert_eq!(
                chosen(&claim_for(None), &order).0,
                expected,
                "{case}: {order:?}",
                order = order
                    .iter()
                    .map(|e| e.metadata.name.clone())
                    .collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn a_new_environment_takes_the_next_number_after_any_of_the_context() {
    let old = live("pr-1-3", Phase::Destroyed, None);
    let other = live("pr-1-1", Phase::Destroyed, None);
    assert_eq!(
        chosen(&claim_for(None), &[&old, &other]).0,
        "create pr-1-4",
        "destroyed records are not reused, and their numbers are not either"
    );
    assert_eq!(chosen(&claim_for(None), &[]).0, "create pr-1-1");
    assert_eq!(chosen(&claim_for(Some("gone")), &[&old]).0, "missing");
}

#[test]
fn ending_a_claim_taking_back_bound_or_creating_an_environment_is_decided_fresh() {
    let decision = |phase: ClaimPhase, create: bool| ClaimDecision {
        status: TestEnvironmentClaimStatus {
            phase: Some(phase),
            ..TestEnvironmentClaimStatus::default()
        },
        create_environment: create.then(|| "pr-1-1".to_owned()),
        wake_at: None,
    };
    let cases = [
        (
            "bound stays bound",
            decision(ClaimPhase::Bound, false),
            Some(ClaimPhase::Bound),
            false,
        ),
        (
            "bound → failed",
            decision(ClaimPhase::Failed, false),
            Some(ClaimPhase::Bound),
            true,
        ),
        (
            "bound → released",
            decision(ClaimPhase::Released, false),
            Some(ClaimPhase::Bound),
            true,
        ),
        (
            "bound → pending (its environment seen not ready): maybe a stale view",
            decision(ClaimPhase::Pending, false),
            Some(ClaimPhase::Bound),
            true,
        ),
        (
            "pending → bound",
            decision(ClaimPhase::Bound, false),
            Some(ClaimPhase::Pending),
            false,
        ),
        (
            "pending → expired",
            decision(ClaimPhase::Expired, false),
            Some(ClaimPhase::Pending),
            true,
        ),
        (
            "new → failed",
            decision(ClaimPhase::Failed, false),
            None,
            true,
        ),
        (
            "already failed",
            decision(ClaimPhase::Failed, false),
            Some(ClaimPhase::Failed),
            false,
        ),
        (
            "creating",
            decision(ClaimPhase::Pending, true),
            Some(ClaimPhase::Pending),
            true,
        ),
    ];
    for (case, decision, current, fresh) in cases {
        assert_eq!(decision.needs_fresh_read(current), fresh, "{case}");
    }
}

/// The shipped CI template (`examples/ci/environment-template.yaml`), as a claim holds it.
fn ci_template() -> crate::resources::EnvironmentTemplate {
    serde_json::from_value(serde_json::json!({
        "displayName": "Review {{context}}",
        "provider": "argocd",
        "providerAppName": "testmesh-{{context}}",
        "namespace": "review-{{context}}",
        "ttlMinutes": 480,
        "services": [{"name": "user-service", "image": "myrepo/user-service:main"}],
        "routing": {"baselineNamespace": "staging"},
    }))
    .unwrap()
}

fn claim_with(
    context: &str,
    template: crate::resources::EnvironmentTemplate,
) -> TestEnvironmentClaim {
    let mut claim = claim("run");
    claim.spec.context = context.into();
    claim.spec.template = Some(template);
    claim
}

#[test]
fn one_template_names_the_environment_of_every_context() {
    for (context, namespace, app) in [
        ("pr-123", "review-pr-123", "testmesh-pr-123"),
        ("pr-9000", "review-pr-9000", "testmesh-pr-9000"),
        ("branch-main", "review-branch-main", "testmesh-branch-main"),
    ] {
        let template = environment_template(&claim_with(context, ci_template())).unwrap();
        assert_eq!(template.namespace, namespace);
        assert_eq!(template.provider_app_name, app);
        assert_eq!(
            template.display_name.as_deref(),
            Some(format!("Review {context}").as_str())
        );
        // Everything else is the template's own.
        let unresolved = ci_template();
        assert_eq!(template.ttl_minutes, unresolved.ttl_minutes);
        assert_eq!(template.services, unresolved.services);
        assert_eq!(template.routing, unresolved.routing);
        assert_eq!(template.provider, unresolved.provider);
    }
}

#[test]
fn every_placeholder_is_replaced_and_a_template_without_one_is_kept_as_written() {
    let mut template = ci_template();
    template.namespace = "{{context}}-{{context}}".into();
    template.provider_app_namespace = Some("argocd".into());
    let resolved = resolve_template(&template, "pr-1");
    assert_eq!(resolved.namespace, "pr-1-pr-1");
    assert_eq!(
        resolved.provider_app_namespace.as_deref(),
        Some("argocd"),
        "only the names and the title take the context"
    );

    let mut fixed = ci_template();
    fixed.namespace = "review-branch-main".into();
    fixed.provider_app_name = "testmesh-branch-main".into();
    fixed.display_name = None;
    assert_eq!(resolve_template(&fixed, "pr-1"), fixed);
    assert_eq!(environment_template(&claim("by-name")), None, "no template");
}

#[test]
fn the_shipped_ci_template_serves_a_context_never_seen_before() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/ci/environment-template.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let template: crate::resources::EnvironmentTemplate = serde_saphyr::from_str(&text).unwrap();
    let resolved = environment_template(&claim_with("pr-4711", template)).unwrap();
    assert_eq!(resolved.namespace, "review-pr-4711");
    assert_eq!(resolved.provider_app_name, "testmesh-pr-4711");
}

/// `busy` handed over to `holder` `ago` before [`NOW`].
fn handed_over(holder: &str, ago: SignedDuration) -> TestEnvironment {
    let mut env = environment(Phase::Running, ("True", "InUse"), &[holder]);
    env.status.as_mut().unwrap().held_since = Some(Time(at(NOW) - ago));
    env
}

/// A claim whose status, as written, reports it `position` in `env`'s queue.
fn queued_at(position: usize, env: &TestEnvironment) -> TestEnvironmentClaim {
    let mut queued = claim("waiting");
    let written = decide_claim(&queued, on(env, Some(position), false), at(NOW - 60));
    queued.status = Some(written.status);
    queued
}

#[test]
fn at_a_hand_over_the_claim_bound_is_written_and_the_waiting_positions_wait() {
    let just_now = handed_over("next", SignedDuration::from_millis(20));
    let before = handed_over("previous", SignedDuration::from_secs(60));
    let waiting = queued_at(3, &before);

    // Bound at the hand-over: written at once, by the environment's reconciler.
    let bound = report(&claim("next"), on(&just_now, None, false), at(NOW));
    assert_eq!(ready(&bound).0, ClaimPhase::Bound);
    assert_eq!(bound.wake_at, Some(at(NOW + 3_600)));

    // One place further up: not written yet, but looked at again once the queue settles.
    let moved = decide_claim(&waiting, on(&just_now, Some(2), false), at(NOW));
    assert_eq!(Some(&moved.status), waiting.status.as_ref());
    let settles_at = at(NOW) - SignedDuration::from_millis(20) + POSITION_SETTLE;
    assert_eq!(moved.wake_at, Some(settles_at));

    // Once it has settled, the new position is written.
    let settled = decide_claim(&waiting, on(&just_now, Some(2), false), settles_at);
    assert_eq!(settled.status.queue_position, Some(2));
    let message = &conditions::find(&settled.status.conditions, "Ready")
        .unwrap()
        .message;
    assert!(message.starts_with("position 2 "), "{message}");
    assert_eq!(settled.wake_at, None);
}

#[test]
fn only_a_moved_position_waits_for_the_queue_to_settle() {
    let just_now = handed_over("next", SignedDuration::from_millis(20));
    let before = handed_over("previous", SignedDuration::from_secs(60));
    let waiting = queued_at(3, &before);

    // Not queued before (its first Queued status): written at once.
    let first = decide_claim(&claim("late"), on(&just_now, Some(4), false), at(NOW));
    assert_eq!(first.status.queue_position, Some(4));

    // A queue that moved long after its last hand-over (a waiting claim ahead left).
    let moved = decide_claim(&waiting, on(&before, Some(2), false), at(NOW));
    assert_eq!(moved.status.queue_position, Some(2));

    // The spec changed too: its new generation is reported at once, position and all.
    let mut edited = waiting.clone();
    edited.metadata.generation = Some(2);
    let decision = decide_claim(&edited, on(&just_now, Some(2), false), at(NOW));
    assert_eq!(decision.status.queue_position, Some(2));
    assert_eq!(decision.status.observed_generation, Some(2));

    // The environment failed at the hand-over: the claim fails at once.
    let mut failed = just_now.clone();
    failed.status.as_mut().unwrap().phase = Some(Phase::Failed);
    let decision = decide_claim(&waiting, on(&failed, Some(2), false), at(NOW));
    assert_eq!(ready(&decision).0, ClaimPhase::Failed);
}

#[test]
fn a_status_write_that_binds_a_run_tells_that_claim_what_its_own_reconciler_would() {
    let before = handed_over("previous", SignedDuration::from_secs(60));
    let next = queued_at(1, &before);
    let mut next = TestEnvironmentClaim {
        metadata: ObjectMeta {
            name: Some("next".into()),
            ..next.metadata.clone()
        },
        ..next
    };
    next.metadata.uid = Some("uid-next".into());
    let mut deleting = claim("deleting");
    deleting.metadata.deletion_timestamp = Some(Time(at(NOW - 1)));
    let still_held = claim("previous");
    let claims: Vec<Arc<TestEnvironmentClaim>> = [next.clone(), deleting, still_held]
        .into_iter()
        .map(Arc::new)
        .collect();
    let written = |holders: &[&str]| {
        let mut status = handed_over("next", SignedDuration::ZERO).status.unwrap();
        status.claimed_by = holders.iter().map(|h| (*h).to_owned()).collect();
        status
    };

    // Handed over to `next`: it is told, with the decision its own reconciler makes from
    // the status written.
    let told = just_bound(&before, &written(&["next"]), &claims, at(NOW));
    assert_eq!(told.len(), 1);
    assert_eq!(told[0].0.metadata.name.as_deref(), Some("next"));
    let mut holding = before.clone();
    holding.status = Some(written(&["next"]));
    let own = report(&next, on(&holding, None, false), at(NOW));
    assert_eq!(told[0].1, own);
    assert_eq!(ready(&own).0, ClaimPhase::Bound);

    // Its own reconciler, woken by the same status, leaves that write to this one for a
    // moment, then makes it itself if it has still not been made.
    let left = decide_claim(&next, on(&holding, None, false), at(NOW));
    assert_eq!(left.status, next.status.clone().unwrap());
    let until = at(NOW) + LEFT_TO_BINDER;
    assert_eq!(left.wake_at, Some(until));
    let late = decide_claim(&next, on(&holding, None, false), until);
    assert_eq!(ready(&late).0, ClaimPhase::Bound);
    let mut told_already = next.clone();
    told_already.status = Some(own.status.clone());
    let settled = decide_claim(&told_already, on(&holding, None, false), at(NOW));
    assert_eq!(
        settled, own,
        "told: nothing to write, the lease's end to wake at"
    );

    // Bound while the environment is not ready: told it is provisioning.
    let mut provisioning = written(&["next"]);
    provisioning.conditions[0].status = "False".into();
    provisioning.conditions[0].reason = "Provisioning".into();
    let told = just_bound(&before, &provisioning, &claims, at(NOW));
    assert_eq!(ready(&told[0].1).2, reason::PROVISIONING);
    // Ready a moment later: its own reconciler writes that at once, the binding told.
    let mut waiting_for_it = next.clone();
    waiting_for_it.status = Some(told[0].1.status.clone());
    let ready_now = decide_claim(&waiting_for_it, on(&holding, None, false), at(NOW));
    assert_eq!(ready(&ready_now).0, ClaimPhase::Bound);

    // Nothing newly bound, a holder being deleted, one not seen, or a claim already
    // showing what it would be told: nobody is told.
    let mut already = next.clone();
    already.status = Some(own.status.clone());
    let already = [Arc::new(already)];
    for (case, holders, claims) in [
        ("the same holder", &["previous"][..], &claims[..]),
        ("released only", &[][..], &claims[..]),
        ("being deleted", &["deleting"][..], &claims[..]),
        ("not seen", &["stranger"][..], &claims[..]),
        ("already told", &["next"][..], &already[..]),
    ] {
        let before = handed_over("previous", SignedDuration::from_secs(60));
        assert!(
            just_bound(&before, &written(holders), claims, at(NOW)).is_empty(),
            "{case}"
        );
    }
}
