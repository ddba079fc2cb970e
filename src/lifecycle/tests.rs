//! Deadlines across the status round trip: whatever the core counts from an instant it
//! stored — the idle TTL from `lastUsedAt`, the grace periods from `healthSince`, the
//! provisioning timeout from `provisioningStartedAt`, a claim's lease from `boundAt`, the
//! expiry warning from `expiresAt` — ends exactly when it should once the status has been
//! written and read back the way the API server keeps it, never a fraction of a second
//! early.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Phase;
use super::claims::{Target, decide_claim};
use super::conditions::{self, reason};
use super::environment::{
    AppReport, AppState, NamespaceState, Observed, Readiness, RoutingMap, Timing, decide,
};
use crate::resources::{
    ProviderStatus, TestEnvironment, TestEnvironmentClaim, TestEnvironmentClaimSpec,
    TestEnvironmentSpec, TestEnvironmentStatus,
};

/// 17:02:15.47: instants fall between whole seconds.
fn start() -> Timestamp {
    "2026-12-05T17:02:15.47Z".parse().unwrap()
}

fn minutes(m: i64) -> SignedDuration {
    SignedDuration::from_mins(m)
}

/// `object` as the API server stores it and a later read returns it.
fn stored<T: Serialize + DeserializeOwned>(object: &T) -> T {
    serde_json::from_value(serde_json::to_value(object).unwrap()).unwrap()
}

/// The 20 s degraded grace; the defaults otherwise.
fn timing() -> Timing {
    Timing {
        degraded_grace: SignedDuration::from_secs(20),
        ..Timing::default()
    }
}

/// An environment of TTL 60 minutes, created a minute before [`start`], in `status`.
fn environment(status: Option<TestEnvironmentStatus>) -> TestEnvironment {
    let spec: TestEnvironmentSpec = serde_json::from_value(serde_json::json!({
        "context": "pr-1", "provider": "argocd", "providerAppName": "app",
        "namespace": "review-pr-1", "ttlMinutes": 60
    }))
    .unwrap();
    let mut environment = TestEnvironment::new("pr-1-1", spec);
    environment.metadata = ObjectMeta {
        name: Some("pr-1-1".into()),
        namespace: Some("team-a".into()),
        generation: Some(1),
        creation_timestamp: Some(Time(start() - minutes(1))),
        ..ObjectMeta::default()
    };
    environment.status = status;
    environment
}

/// In `phase` since a minute before [`start`], its app `health` since then.
fn status(phase: Phase, health: &str) -> TestEnvironmentStatus {
    let a_minute_ago = Some(Time(start() - minutes(1)));
    TestEnvironmentStatus {
        phase: Some(phase),
        last_used_at: a_minute_ago.clone(),
        provisioning_started_at: a_minute_ago.clone(),
        provider: Some(ProviderStatus {
            health: Some(health.into()),
            health_since: a_minute_ago,
            ..ProviderStatus::default()
        }),
        ..TestEnvironmentStatus::default()
    }
}

fn app(readiness: Readiness, health: &str) -> AppState {
    AppState::Present(AppReport::of(readiness, health))
}

/// Its own namespace, created a minute before [`start`], and `app`; nobody holds it.
fn world(app: AppState) -> Observed {
    Observed {
        namespace: NamespaceState::Owned {
            terminating: false,
            blockers: None,
            created_at: Some(start() - minutes(1)),
        },
        app,
        holders: Vec::new(),
        waiting: Vec::new(),
        teardown: None,
        teardown_note: None,
        routing: Default::default(),
        routing_map: RoutingMap::Absent,
        generators_pending: Vec::new(),
        generating_from_testmesh: false,
    }
}

fn ready_reason(of: &[Condition]) -> Option<&str> {
    conditions::find(of, conditions::READY).map(|c| c.reason.as_str())
}

/// A deadline the core starts at [`start`] and stores in a status.
struct Deadline {
    what: &'static str,
    lasts: SignedDuration,
    /// Whether a decision at this instant, from the stored status, finds it passed.
    passed: Box<dyn Fn(Timestamp) -> bool>,
}

/// The environment after its first decision at [`start`], written and read back, and
/// whether a later decision in `world` ends it, giving `Ready` the reason `ended`.
fn environment_deadline(
    what: &'static str,
    lasts: SignedDuration,
    before: TestEnvironment,
    world: Observed,
    ended: &'static str,
) -> Deadline {
    let mut environment = before;
    environment.status = Some(decide(&environment, &world, &timing(), start()).status);
    let environment = stored(&environment);
    Deadline {
        what,
        lasts,
        passed: Box::new(move |now| {
            let decision = decide(&environment, &world, &timing(), now);
            ready_reason(&decision.status.conditions) == Some(ended)
        }),
    }
}

fn idle_ttl_after_a_release() -> Deadline {
    let mut running = status(Phase::Running, "Healthy");
    running.claimed_by = vec!["run".into()];
    // The run's claim is gone: released at `start`.
    environment_deadline(
        "the idle TTL from lastUsedAt",
        minutes(60),
        environment(Some(running)),
        world(app(Readiness::Ready, "Healthy")),
        reason::EXPIRED,
    )
}

/// The `ExpiringSoon` warning, due the default lead before the idle expiry.
fn expiry_warning_after_a_release() -> Deadline {
    let mut running = status(Phase::Running, "Healthy");
    running.claimed_by = vec!["run".into()];
    let mut environment = environment(Some(running));
    let world = world(app(Readiness::Ready, "Healthy"));
    environment.status = Some(decide(&environment, &world, &timing(), start()).status);
    let environment = stored(&environment);
    Deadline {
        what: "the expiry warning, the lead before expiresAt",
        lasts: minutes(60) - timing().expiry_warning,
        passed: Box::new(move |now| {
            decide(&environment, &world, &timing(), now)
                .expiry_warning
                .is_some()
        }),
    }
}

fn degraded_grace() -> Deadline {
    environment_deadline(
        "the degraded grace from healthSince",
        timing().degraded_grace,
        environment(Some(status(Phase::Provisioning, "Progressing"))),
        world(app(Readiness::Degraded, "Degraded")),
        reason::DEGRADED_TOO_LONG,
    )
}

fn missing_grace() -> Deadline {
    environment_deadline(
        "the missing grace from healthSince",
        timing().missing_grace,
        environment(Some(status(Phase::Provisioning, "Progressing"))),
        world(AppState::Missing),
        reason::APP_NOT_FOUND,
    )
}

fn provisioning_timeout() -> Deadline {
    let mut new = world(app(Readiness::Progressing, "Progressing"));
    new.namespace = NamespaceState::Absent;
    let mut environment = environment(None);
    environment.status = Some(decide(&environment, &new, &timing(), start()).status);
    environment_deadline(
        "the provisioning timeout from provisioningStartedAt",
        timing().provisioning_timeout,
        stored(&environment),
        world(app(Readiness::Progressing, "Progressing")),
        reason::PROVISIONING_TIMEOUT,
    )
}

/// The claim's target: the environment holding it.
fn on(environment: &TestEnvironment) -> Target<'_> {
    Target::Environment {
        environment,
        queue_position: None,
        created_for_claim: false,
        sole_taker: true,
    }
}

fn claim_lease() -> Deadline {
    let mut held = status(Phase::Running, "Healthy");
    held.claimed_by = vec!["run".into()];
    held.conditions = vec![Condition {
        type_: "Ready".into(),
        status: "True".into(),
        reason: "InUse".into(),
        message: "in use by run".into(),
        last_transition_time: Time(start()),
        observed_generation: Some(1),
    }];
    let environment = environment(Some(held));
    let mut claim = TestEnvironmentClaim::new(
        "run",
        TestEnvironmentClaimSpec {
            context: "pr-1".into(),
            environment_name: None,
            template: None,
            max_duration_minutes: 60,
        },
    );
    claim.metadata.creation_timestamp = Some(Time(start() - minutes(1)));
    claim.status = Some(decide_claim(&claim, on(&environment), start()).status);
    let claim = stored(&claim);
    Deadline {
        what: "a claim's lease from boundAt",
        lasts: minutes(60),
        passed: Box::new(move |now| {
            let decision = decide_claim(&claim, on(&environment), now);
            ready_reason(&decision.status.conditions) == Some(reason::LEASE_EXPIRED)
        }),
    }
}

#[test]
fn a_deadline_counted_from_a_stored_instant_ends_exactly_then_never_before() {
    let deadlines = [
        idle_ttl_after_a_release(),
        expiry_warning_after_a_release(),
        degraded_grace(),
        missing_grace(),
        provisioning_timeout(),
        claim_lease(),
    ];
    for Deadline {
        what,
        lasts,
        passed,
    } in deadlines
    {
        let end = start() + lasts;
        assert!(!passed(start()), "{what}: passed as it began");
        assert!(
            !passed(end - SignedDuration::from_nanos(1)),
            "{what}: passed before {end}"
        );
        assert!(passed(end), "{what}: not passed at {end}");
    }
}
