//! Table-driven tests of the environment state machine, and a property test that nothing
//! leaves `destroyed`.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;
use proptest::prelude::*;

use super::*;
use crate::lifecycle::conditions::{DESTROYED, PROVIDER_READY, READY, ROUTING_COMPLETE};
use crate::resources::{EnvironmentTemplate, Provider, TestEnvironmentSpec};

const CREATED: i64 = 1_000_000;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn minutes(m: i64) -> i64 {
    m * 60
}

/// A TestEnvironment as the reconciler would see it, built up like a sentence.
#[derive(Clone, Debug)]
struct Env(TestEnvironment);

fn environment() -> Env {
    let mut object = TestEnvironment::new(
        "pr-123",
        TestEnvironmentSpec {
            context: "pr-123".into(),
            template: EnvironmentTemplate {
                display_name: None,
                provider: Provider::Argocd,
                provider_app_name: "testmesh-pr-123".into(),
                provider_app_namespace: None,
                namespace: "review-pr-123".into(),
                ttl_minutes: 60,
                sleep_after_minutes: None,
                services: Vec::new(),
                routing: None,
            },
            destroy: false,
        },
    );
    object.metadata = ObjectMeta {
        name: Some("pr-123".into()),
        namespace: Some("team-a".into()),
        generation: Some(1),
        creation_timestamp: Some(Time(at(CREATED))),
        ..ObjectMeta::default()
    };
    Env(object)
}

/// Warm since [`CREATED`], its app healthy since then.
fn healthy_warm() -> Env {
    environment()
        .in_phase(Phase::Warm)
        .last_used(CREATED)
        .health_since("Healthy", CREATED)
}

impl Env {
    fn status(&mut self) -> &mut TestEnvironmentStatus {
        self.0.status.get_or_insert_with(Default::default)
    }
    /// In `phase`; past cold, it created its namespace when it was created (as every
    /// stored status past cold says).
    fn in_phase(mut self, phase: Phase) -> Self {
        let status = self.status();
        status.phase = Some(phase);
        if phase != Phase::Cold && status.provisioning_started_at.is_none() {
            status.provisioning_started_at = Some(Time(at(CREATED)));
        }
        self
    }
    fn last_used(mut self, seconds: i64) -> Self {
        self.status().last_used_at = Some(Time(at(seconds)));
        self
    }
    /// Its status records no provisioning start (a write that was lost, or a failure
    /// before it created its namespace).
    fn never_provisioned(mut self) -> Self {
        self.status().provisioning_started_at = None;
        self
    }
    fn provisioning_since(mut self, seconds: i64) -> Self {
        self.status().provisioning_started_at = Some(Time(at(seconds)));
        self
    }
    fn health_since(mut self, health: &str, seconds: i64) -> Self {
        self.status().provider = Some(ProviderStatus {
            health: Some(health.into()),
            health_since: Some(Time(at(seconds))),
            ..ProviderStatus::default()
        });
        self
    }
    /// The stored status says `claim` holds it.
    fn held_by_status(mut self, claim: &str) -> Self {
        self.status().claimed_by.push(claim.into());
        self
    }
    fn sleep_after_minutes(mut self, minutes: u32) -> Self {
        self.0.spec.template.sleep_after_minutes = Some(minutes);
        self
    }
    fn ttl_minutes(mut self, ttl: u32) -> Self {
        self.0.spec.template.ttl_minutes = ttl;
        self
    }
    fn publishing_config_map(mut self) -> Self {
        self.0
            .spec
            .template
            .routing
            .get_or_insert_with(Default::default)
            .publish_config_map = true;
        self
    }
    fn generation(mut self, generation: i64) -> Self {
        self.0.metadata.generation = Some(generation);
        self
    }
    /// Applies a decision's status, as the reconciler would after writing it.
    fn after(mut self, decision: &Decision) -> Self {
        self.0.status = Some(decision.status.clone());
        self
    }
    /// The stored status says the `ExpiringSoon` warning went out for the expiry at
    /// `expires_at`.
    fn warned_for(mut self, expires_at: i64) -> Self {
        self.status().expiry_warned_for = Some(Time(at(expires_at)));
        self
    }
    fn decide(&self, world: &World, now: i64) -> Decision {
        self.decide_warning(world, now, Timing::default().expiry_warning)
    }
    /// Decides with the `ExpiringSoon` warning `lead` before expiry.
    fn decide_warning(&self, world: &World, now: i64, lead: SignedDuration) -> Decision {
        let timing = Timing {
            expiry_warning: lead,
            ..Timing::default()
        };
        decide(&self.0, &world.0, &timing, at(now))
    }
}

/// The effects of `decision` on the routing ConfigMap.
fn routing_effects(decision: &Decision) -> Vec<Effect> {
    decision
        .effects
        .iter()
        .copied()
        .filter(|effect| {
            matches!(
                effect,
                Effect::CreateRoutingMap | Effect::PublishRouting | Effect::UnpublishRouting
            )
        })
        .collect()
}

/// What the reconciler observed, built up like a sentence.
#[derive(Clone, Debug)]
struct World(Observed);

fn world() -> World {
    World(Observed {
        namespace: NamespaceState::Owned {
            terminating: false,
            blockers: None,
            created_at: Some(at(CREATED)),
        },
        app: AppState::Present(app(Readiness::Ready, "Healthy")),
        holders: Vec::new(),
        waiting: Vec::new(),
        teardown: None,
        teardown_note: None,
        routing: Default::default(),
        routing_map: RoutingMap::Absent,
        generators_pending: Vec::new(),
        generating_from_testmesh: false,
    })
}

fn app(readiness: Readiness, health: &str) -> AppReport {
    AppReport::of(readiness, health)
}

impl World {
    fn no_namespace(mut self) -> Self {
        self.0.namespace = NamespaceState::Absent;
        self
    }
    fn foreign_namespace(mut self) -> Self {
        self.0.namespace = NamespaceState::NotOwned;
        self
    }
    fn refused_namespace(mut self) -> Self {
        self.0.namespace = NamespaceState::Refused("kube-system is a system namespace".into());
        self
    }
    fn terminating_namespace(mut self, blockers: Option<&str>) -> Self {
        self.0.namespace = NamespaceState::Owned {
            terminating: true,
            blockers: blockers.map(str::to_owned),
            created_at: Some(at(CREATED)),
        };
        self
    }
    fn app(mut self, readiness: Readiness, health: &str) -> Self {
        self.0.app = AppState::Present(app(readiness, health));
        self
    }
    fn app_deletion(mut self, deletion: AppDeletion) -> Self {
        if let AppState::Present(report) = &mut self.0.app {
            report.deletion = deletion;
        }
        self
    }
    fn no_app(mut self) -> Self {
        self.0.app = AppState::Missing;
        self
    }
    /// Its app was minted by an ApplicationSet from TestMesh's generator for it.
    fn generated_app(self) -> Self {
        self.app_deletion(AppDeletion::Generated {
            application_set: "previews".into(),
            environment_uid: "uid-1".into(),
        })
    }
    /// The provider's last successful sync started at `seconds`.
    fn synced_at(mut self, seconds: i64) -> Self {
        if let AppState::Present(report) = &mut self.0.app {
            report.synced_at = Some(at(seconds));
        }
        self
    }
    /// The app's last sync failed: started at `started`, backing off or given up,
    /// because the namespace was missing or not.
    fn failed_attempt(mut self, started: i64, backing_off: bool, namespace_missing: bool) -> Self {
        let readiness = if backing_off {
            Readiness::Progressing
        } else {
            Readiness::Failed
        };
        let mut report = app(readiness, "Missing");
        report.failed_attempt = Some(FailedAttempt {
            started_at: Some(at(started)),
            backing_off,
            namespace_missing,
        });
        self.0.app = AppState::Present(report);
        self
    }
    fn app_creating_its_namespace(mut self) -> Self {
        if let AppState::Present(report) = &mut self.0.app {
            report.creates_namespace = true;
        }
        self
    }
    fn namespace_created(mut self, seconds: i64) -> Self {
        if let NamespaceState::Owned { created_at, .. } = &mut self.0.namespace {
            *created_at = Some(at(seconds));
        }
        self
    }
    fn held_by(mut self, claim: &str) -> Self {
        self.0.holders.push(claim.into());
        self
    }
    fn waiting(mut self, claims: &[&str]) -> Self {
        self.0.waiting = claims.iter().map(|c| (*c).to_owned()).collect();
        self
    }
    fn teardown(mut self, request: TeardownRequest) -> Self {
        self.0.teardown = Some(request);
        self
    }
    fn routed(mut self, service: &str) -> Self {
        let url = format!("http://{service}.review-pr-123.svc.cluster.local:8080");
        self.0.routing.policy.insert(service.to_owned(), url);
        self
    }
    /// Routed into the namespace, but no endpoint of its Service is ready.
    fn not_serving(mut self, service: &str) -> Self {
        self = self.routed(service);
        self.0.routing.not_serving.push(service.to_owned());
        self
    }
    fn missing(mut self, service: &str) -> Self {
        self.0.routing.missing.push(service.to_owned());
        self
    }
    /// The operator's routing ConfigMap exists, publishing `policy`.
    fn published(mut self, policy: &BTreeMap<String, String>) -> Self {
        self.0.routing_map = RoutingMap::Ours(policy.clone());
        self
    }
    /// A ConfigMap named like the routing one that is not the operator's.
    fn foreign_routing_map(mut self) -> Self {
        self.0.routing_map = RoutingMap::Foreign;
        self
    }
    /// These ApplicationSets generating from TestMesh have a generation pending.
    fn generators_pending(mut self, sets: &[&str]) -> Self {
        self.0.generators_pending = sets.iter().map(|s| (*s).to_owned()).collect();
        self.0.generating_from_testmesh = true;
        self
    }
    /// Some ApplicationSet generates from TestMesh, none with a generation pending.
    fn generating(mut self) -> Self {
        self.0.generating_from_testmesh = true;
        self
    }
}

fn condition<'a>(
    decision: &'a Decision,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conditions::find(&decision.status.conditions, type_)
        .unwrap_or_else(|| panic!("no {type_} condition in {:?}", decision.status.conditions))
}

fn ready(decision: &Decision) -> (&str, &str) {
    let c = condition(decision, READY);
    (c.status.as_str(), c.reason.as_str())
}

/// One row of the transition table.
struct Row {
    name: &'static str,
    env: Env,
    world: World,
    now: i64,
    phase: Phase,
    ready: (&'static str, &'static str),
    effects: &'static [Effect],
}

#[test]
fn transition_table() {
    let now = CREATED + 10;
    let rows = [
        Row {
            name: "cold, no namespace: create it and start provisioning",
            env: environment(),
            world: world().no_namespace().no_app(),
            now,
            phase: Phase::Provisioning,
            ready: ("False", reason::PROVISIONING),
            effects: &[Effect::CreateNamespace, Effect::RefreshGenerator],
        },
        Row {
            name: "cold, namespace taken by someone else: refused, not adopted",
            env: environment(),
            world: world().foreign_namespace(),
            now,
            phase: Phase::Failed,
            ready: ("False", reason::NAMESPACE_NOT_OWNED),
            effects: &[],
        },
        Row {
            name: "cold, namespace refused by policy",
            env: environment(),
            world: world().refused_namespace(),
            now,
            phase: Phase::Failed,
            ready: ("False", reason::NAMESPACE_REFUSED),
            effects: &[],
        },
        Row {
            name: "provisioning, app progressing: keep waiting",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world().app(Readiness::Progressing, "Progressing"),
            now,
            phase: Phase::Provisioning,
            ready: ("False", reason::PROVISIONING),
            effects: &[],
        },
        Row {
            name: "provisioning, app ready: warm",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world(),
            now,
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
        },
        Row {
            name: "provisioning, app ready and a claim waiting: running",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world().held_by("run-1"),
            now,
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "provisioning, app failed: failed at once",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world().app(Readiness::Failed, "Healthy"),
            now,
            phase: Phase::Failed,
            ready: ("False", reason::APP_FAILED),
            effects: &[],
        },
        Row {
            name: "provisioning, degraded within grace: degraded, waiting for it to recover",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED)
                .health_since("Degraded", now - minutes(5) + 1),
            world: world().app(Readiness::Degraded, "Degraded"),
            now,
            phase: Phase::Degraded,
            ready: ("False", reason::APP_DEGRADED),
            effects: &[],
        },
        Row {
            name: "provisioning, degraded for the whole grace: failed",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED)
                .health_since("Degraded", now - minutes(5)),
            world: world().app(Readiness::Degraded, "Degraded"),
            now,
            phase: Phase::Failed,
            ready: ("False", reason::DEGRADED_TOO_LONG),
            effects: &[],
        },
        Row {
            name: "provisioning, app missing within grace: keep waiting",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED)
                .health_since("Missing", now - minutes(2) + 1),
            world: world().no_app(),
            now,
            phase: Phase::Provisioning,
            ready: ("False", reason::PROVISIONING),
            effects: &[],
        },
        Row {
            name: "provisioning, app missing for the whole grace: failed",
            env: environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED)
                .health_since("Missing", now - minutes(2)),
            world: world().no_app(),
            now,
            phase: Phase::Failed,
            ready: ("False", reason::APP_NOT_FOUND),
            effects: &[],
        },
        Row {
            name: "provisioning past the timeout: failed",
            env: environment()
                .ttl_minutes(600)
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world().app(Readiness::Progressing, "Progressing"),
            now: CREATED + minutes(30),
            phase: Phase::Failed,
            ready: ("False", reason::PROVISIONING_TIMEOUT),
            effects: &[],
        },
        Row {
            name: "failed, app recovers: warm",
            env: environment()
                .in_phase(Phase::Failed)
                .provisioning_since(CREATED),
            world: world(),
            now,
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
        },
        Row {
            name: "warm, claimed: running",
            env: environment().in_phase(Phase::Warm).last_used(CREATED),
            world: world().held_by("run-1"),
            now,
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "running, released: cooling",
            env: environment().in_phase(Phase::Running).last_used(CREATED),
            world: world(),
            now,
            phase: Phase::Cooling,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
        },
        Row {
            name: "cooling, claimed again: running (reuse)",
            env: environment().in_phase(Phase::Cooling).last_used(CREATED),
            world: world().held_by("run-2"),
            now,
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "warm, app starts a new sync: still warm and ready",
            env: environment().in_phase(Phase::Warm).last_used(CREATED),
            world: world().app(Readiness::Progressing, "Progressing"),
            now,
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
        },
        Row {
            name: "warm, app degraded: degraded, not ready, not re-provisioned",
            env: environment().in_phase(Phase::Warm).last_used(CREATED),
            world: world().app(Readiness::Degraded, "Degraded"),
            now,
            phase: Phase::Degraded,
            ready: ("False", reason::APP_DEGRADED),
            effects: &[],
        },
        Row {
            name: "degraded, the app recovers: warm again",
            env: environment().in_phase(Phase::Degraded).last_used(CREATED),
            world: world(),
            now,
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
        },
        Row {
            name: "degraded and held, the app recovers: running again",
            env: environment().in_phase(Phase::Degraded).last_used(CREATED),
            world: world().held_by("run-1"),
            now,
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "running, app resyncing: still held and ready",
            env: environment().in_phase(Phase::Running).last_used(CREATED),
            world: world()
                .app(Readiness::Progressing, "Progressing")
                .held_by("run-1"),
            now,
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "warm, expired: delete the app first",
            env: environment().in_phase(Phase::Warm).last_used(CREATED),
            world: world(),
            now: CREATED + minutes(60),
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::DeleteApp, Effect::RefreshGenerator],
        },
        Row {
            name: "cooling, expired: delete the app first",
            env: environment().in_phase(Phase::Cooling).last_used(CREATED),
            world: world(),
            now: CREATED + minutes(60),
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::DeleteApp, Effect::RefreshGenerator],
        },
        Row {
            name: "running past the TTL: never expires under a run",
            env: environment().in_phase(Phase::Running).last_used(CREATED),
            world: world().held_by("run-1"),
            now: CREATED + minutes(600),
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
        },
        Row {
            name: "failed and never used, idle past the TTL since creation: destroyed",
            env: environment().in_phase(Phase::Failed),
            world: world().app(Readiness::Failed, "Degraded"),
            // `creationTimestamp` has whole seconds: counted from the next one.
            now: CREATED + 1 + minutes(60),
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::DeleteApp, Effect::RefreshGenerator],
        },
        Row {
            name: "explicit destroy while running: tears down",
            env: environment().in_phase(Phase::Running).last_used(CREATED),
            world: world().held_by("run-1").teardown(TeardownRequest::Destroy),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::DESTROY_REQUESTED),
            effects: &[Effect::DeleteApp, Effect::RefreshGenerator],
        },
        Row {
            name: "object deleted: tears down",
            env: environment().in_phase(Phase::Warm).last_used(CREATED),
            world: world().teardown(TeardownRequest::Delete),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::DELETED),
            effects: &[Effect::DeleteApp, Effect::RefreshGenerator],
        },
        Row {
            name: "destroying, app being pruned: wait, namespace untouched",
            env: environment().in_phase(Phase::Destroying),
            world: world().app_deletion(AppDeletion::InProgress),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[],
        },
        Row {
            name: "destroying, app gone: delete the namespace",
            env: environment().in_phase(Phase::Destroying),
            world: world().no_app(),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::DeleteNamespace],
        },
        Row {
            name: "destroying, app retained (ApplicationSet): namespace still deleted",
            env: environment().in_phase(Phase::Destroying),
            world: world().app_deletion(AppDeletion::Retained("owned by ApplicationSet x".into())),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::DeleteNamespace],
        },
        Row {
            name: "destroying, namespace terminating: wait without deleting again",
            env: environment().in_phase(Phase::Destroying),
            world: world()
                .no_app()
                .terminating_namespace(Some("configmaps has 1 resource")),
            now,
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[],
        },
        Row {
            name: "destroying, namespace gone: destroyed",
            env: environment().in_phase(Phase::Destroying),
            world: world().no_app().no_namespace(),
            now,
            phase: Phase::Destroyed,
            ready: ("False", reason::EXPIRED),
            effects: &[],
        },
        Row {
            name: "destroying a foreign namespace's environment: never deletes it",
            env: environment().in_phase(Phase::Destroying),
            world: world().no_app().foreign_namespace(),
            now,
            phase: Phase::Destroyed,
            ready: ("False", reason::EXPIRED),
            effects: &[],
        },
        Row {
            name: "cold environment deleted before provisioning: destroyed at once",
            env: environment(),
            world: world()
                .no_app()
                .no_namespace()
                .teardown(TeardownRequest::Delete),
            now,
            phase: Phase::Destroyed,
            ready: ("False", reason::DELETED),
            effects: &[],
        },
        Row {
            name: "destroyed stays destroyed, whatever is observed",
            env: environment().in_phase(Phase::Destroyed),
            world: world().held_by("run-1"),
            now,
            phase: Phase::Destroyed,
            ready: ("False", reason::EXPIRED),
            effects: &[],
        },
    ];
    for row in rows {
        let mut env = row.env;
        if row.phase == Phase::Destroyed
            && env.0.status.as_ref().and_then(|s| s.phase) == Some(Phase::Destroyed)
        {
            // A destroyed record carries the conditions its teardown wrote.
            let torn_down = environment().in_phase(Phase::Destroying);
            let decision = torn_down.decide(&world().no_app().no_namespace(), row.now);
            env = env.after(&decision);
        }
        let decision = env.decide(&row.world, row.now);
        assert_eq!(decision.phase(), row.phase, "{}: phase", row.name);
        assert_eq!(ready(&decision), row.ready, "{}: Ready", row.name);
        assert_eq!(decision.effects, row.effects, "{}: effects", row.name);
        for condition in &decision.status.conditions {
            assert_eq!(
                condition.observed_generation,
                Some(1),
                "{}: observedGeneration",
                row.name
            );
        }
    }
}

#[test]
fn becoming_warm_stamps_last_use_ready_and_expiry() {
    let now = CREATED + 90;
    let provisioning = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let decision = provisioning.decide(&world(), now);
    let status = &decision.status;
    assert_eq!(status.ready_at, Some(Time(at(now))));
    assert_eq!(status.last_used_at, Some(Time(at(now))));
    assert_eq!(status.expires_at, Some(Time(at(now + minutes(60)))));
    assert_eq!(
        status.expiry_warning_at,
        Some(Time(at(now + minutes(60) - LEAD)))
    );
    assert_eq!(
        decision.wake_at,
        Some(at(now + minutes(60) - LEAD)),
        "timer at the expiry warning first"
    );
    let unwarned = provisioning.decide_warning(&world(), now, SignedDuration::ZERO);
    assert_eq!(
        unwarned.wake_at,
        Some(at(now + minutes(60))),
        "timer at the exact expiry"
    );
}

#[test]
fn release_starts_the_ttl_from_the_release() {
    let released = CREATED + minutes(200);
    let decision = environment()
        .in_phase(Phase::Running)
        .last_used(CREATED)
        .decide(&world(), released);
    assert_eq!(decision.phase(), Phase::Cooling);
    assert_eq!(decision.status.last_used_at, Some(Time(at(released))));
    assert_eq!(
        decision.status.expires_at,
        Some(Time(at(released + minutes(60))))
    );
}

#[test]
fn running_environment_has_no_expiry_and_no_timer() {
    let decision = environment()
        .in_phase(Phase::Warm)
        .last_used(CREATED)
        .decide(&world().held_by("run-1"), CREATED + 5);
    assert_eq!(decision.status.expires_at, None);
    assert_eq!(decision.wake_at, None);
    assert_eq!(decision.status.claimed_by, vec!["run-1".to_owned()]);
}

#[test]
fn ttl_edges_around_the_expiry_instant() {
    let warm = environment().in_phase(Phase::Warm).last_used(CREATED);
    let expiry = CREATED + minutes(60);
    let before = warm.decide(&world(), expiry - 1);
    assert_eq!(before.phase(), Phase::Warm, "one second before");
    assert_eq!(before.wake_at, Some(at(expiry)));
    assert_eq!(
        warm.decide(&world(), expiry).phase(),
        Phase::Destroying,
        "exactly at expiry"
    );
    assert_eq!(
        warm.decide(&world(), expiry + 1).phase(),
        Phase::Destroying,
        "one second after"
    );
}

#[test]
fn last_use_in_the_future_delays_expiry_by_the_skew_only() {
    let skew = 30;
    let now = CREATED + 100;
    let decision = environment()
        .in_phase(Phase::Cooling)
        .last_used(now + skew)
        .decide(&world(), now);
    assert_eq!(decision.phase(), Phase::Cooling);
    assert_eq!(
        decision.status.expires_at,
        Some(Time(at(now + skew + minutes(60))))
    );
    assert_eq!(
        decision.wake_at,
        Some(at(now + skew + minutes(60) - LEAD)),
        "the expiry warning's timer moves with it"
    );
}

#[test]
fn ttl_change_moves_the_expiry_and_generation_is_observed() {
    let decision = environment()
        .in_phase(Phase::Warm)
        .last_used(CREATED)
        .ttl_minutes(480)
        .generation(2)
        .decide(&world(), CREATED + 5);
    assert_eq!(
        decision.status.expires_at,
        Some(Time(at(CREATED + minutes(480))))
    );
    assert_eq!(decision.status.observed_generation, Some(2));
    assert_eq!(condition(&decision, READY).observed_generation, Some(2));
}

#[test]
fn provisioning_wakes_at_the_earliest_deadline() {
    let now = CREATED + 10;
    let degraded_since = now - 60;
    let decision = environment()
        .ttl_minutes(600)
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .health_since("Degraded", degraded_since)
        .decide(&world().app(Readiness::Degraded, "Degraded"), now);
    assert_eq!(decision.wake_at, Some(at(degraded_since + minutes(5))));
    let progressing = environment()
        .ttl_minutes(600)
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .decide(&world().app(Readiness::Progressing, "Progressing"), now);
    assert_eq!(progressing.wake_at, Some(at(CREATED + minutes(30))));
    let short_ttl = environment()
        .ttl_minutes(1)
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .decide(&world().app(Readiness::Progressing, "Progressing"), now);
    assert_eq!(
        short_ttl.wake_at,
        Some(at(CREATED + 1 + minutes(1))),
        "idle expiry comes first (from the second after the whole-second creationTimestamp)"
    );
}

#[test]
fn health_since_moves_only_when_health_changes() {
    let env = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .health_since("Progressing", CREATED);
    let same = env.decide(
        &world().app(Readiness::Progressing, "Progressing"),
        CREATED + 50,
    );
    let since = |d: &Decision| {
        d.status
            .provider
            .as_ref()
            .and_then(|p| p.health_since.clone())
    };
    assert_eq!(since(&same), Some(Time(at(CREATED))));
    let changed = env.decide(&world().app(Readiness::Degraded, "Degraded"), CREATED + 50);
    assert_eq!(since(&changed), Some(Time(at(CREATED + 50))));
}

#[test]
fn provider_condition_reports_the_app() {
    let decision = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .decide(&world().app(Readiness::Degraded, "Degraded"), CREATED + 5);
    let provider = condition(&decision, PROVIDER_READY);
    assert_eq!(
        (provider.status.as_str(), provider.reason.as_str()),
        ("False", reason::APP_DEGRADED)
    );
    assert_eq!(provider.message, "app is Degraded");
}

#[test]
fn teardown_reports_what_blocks_the_namespace() {
    let decision = environment().in_phase(Phase::Destroying).decide(
        &world()
            .no_app()
            .terminating_namespace(Some("Some content remains: configmaps has 1 resource")),
        CREATED + 5,
    );
    let destroyed = condition(&decision, DESTROYED);
    assert_eq!(destroyed.status, "False");
    assert_eq!(destroyed.reason, reason::NAMESPACE_TERMINATING);
    assert!(
        destroyed.message.contains("configmaps has 1 resource"),
        "{}",
        destroyed.message
    );
}

/// One side of a teardown situation: its name and how it changes the observed world.
type Situation = (&'static str, fn(World) -> World);

/// What a teardown step must do: phase, `Destroyed` reason and message, effects.
struct Outcome {
    phase: Phase,
    reason: &'static str,
    message: String,
    effects: &'static [Effect],
}

fn outcome(
    phase: Phase,
    reason: &'static str,
    message: impl Into<String>,
    effects: &'static [Effect],
) -> Outcome {
    Outcome {
        phase,
        reason,
        message: message.into(),
        effects,
    }
}

/// Every teardown step: what the app and the namespace are, against what is deleted and
/// what `Destroyed` says.
#[test]
fn teardown_table() {
    use Phase::{Destroyed, Destroying};
    use reason::{
        NAMESPACE_TERMINATING, TEARDOWN_COMPLETE, TEARING_DOWN, WAITING_FOR_APP_DELETION,
    };
    const DELETE_APP: &[Effect] = &[Effect::DeleteApp];
    const DELETE_NAMESPACE: &[Effect] = &[Effect::DeleteNamespace];
    const NONE: &[Effect] = &[];
    let plan = "deleting the provider's app, then the namespace";
    let pruning = "waiting for the provider to delete its app and prune what it deployed";
    let retained = "provider app kept: owned by ApplicationSet x";
    let kept = format!("deleting the namespace; {retained}");
    let blocked = "namespace is terminating: configmaps has 1 resource";
    let foreign = "namespace kept: not created by this environment";
    let not_ours = "provider app kept: the environment does not own the namespace it deploys into";
    let apps: [Situation; 4] = [
        ("app deletable", |w| w),
        ("app being deleted by its provider", |w| {
            w.app_deletion(AppDeletion::InProgress)
        }),
        ("app retained", |w| {
            w.app_deletion(AppDeletion::Retained("owned by ApplicationSet x".into()))
        }),
        ("app missing", World::no_app),
    ];
    let namespaces: [Situation; 6] = [
        ("namespace owned", |w| w),
        ("namespace terminating", |w| w.terminating_namespace(None)),
        ("namespace terminating with blockers", |w| {
            w.terminating_namespace(Some("configmaps has 1 resource"))
        }),
        ("namespace absent", World::no_namespace),
        ("namespace not owned", World::foreign_namespace),
        ("namespace refused", World::refused_namespace),
    ];
    // App by app (rows), namespace by namespace (columns).
    let expected = [
        [
            outcome(Destroying, TEARING_DOWN, plan, DELETE_APP),
            outcome(Destroying, TEARING_DOWN, plan, DELETE_APP),
            outcome(Destroying, TEARING_DOWN, plan, DELETE_APP),
            outcome(Destroyed, TEARDOWN_COMPLETE, not_ours, NONE),
            outcome(
                Destroyed,
                TEARDOWN_COMPLETE,
                format!("{not_ours}; {foreign}"),
                NONE,
            ),
            outcome(
                Destroyed,
                TEARDOWN_COMPLETE,
                format!("{not_ours}; {foreign}"),
                NONE,
            ),
        ],
        [
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
            outcome(Destroying, WAITING_FOR_APP_DELETION, pruning, NONE),
        ],
        [
            outcome(Destroying, TEARING_DOWN, kept.clone(), DELETE_NAMESPACE),
            outcome(Destroying, TEARING_DOWN, kept, NONE),
            outcome(
                Destroying,
                NAMESPACE_TERMINATING,
                format!("{blocked}; {retained}"),
                NONE,
            ),
            outcome(Destroyed, TEARDOWN_COMPLETE, retained, NONE),
            outcome(
                Destroyed,
                TEARDOWN_COMPLETE,
                format!("{retained}; {foreign}"),
                NONE,
            ),
            outcome(
                Destroyed,
                TEARDOWN_COMPLETE,
                format!("{retained}; {foreign}"),
                NONE,
            ),
        ],
        [
            outcome(Destroying, TEARING_DOWN, plan, DELETE_NAMESPACE),
            outcome(Destroying, TEARING_DOWN, plan, NONE),
            outcome(Destroying, NAMESPACE_TERMINATING, blocked, NONE),
            outcome(Destroyed, TEARDOWN_COMPLETE, "namespace deleted", NONE),
            outcome(Destroyed, TEARDOWN_COMPLETE, foreign, NONE),
            outcome(Destroyed, TEARDOWN_COMPLETE, foreign, NONE),
        ],
    ];
    let now = CREATED + 5;
    for ((app, with_app), row) in apps.iter().zip(&expected) {
        for ((namespace, with_namespace), expected) in namespaces.iter().zip(row) {
            let name = format!("{app}, {namespace}");
            let decision = environment()
                .in_phase(Destroying)
                .decide(&with_namespace(with_app(world())), now);
            let condition = condition(&decision, DESTROYED);
            assert_eq!(decision.phase(), expected.phase, "{name}: phase");
            assert_eq!(
                condition.reason, expected.reason,
                "{name}: Destroyed reason"
            );
            assert_eq!(
                condition.message, expected.message,
                "{name}: Destroyed message"
            );
            let done = expected.phase == Destroyed;
            assert_eq!(
                condition.status,
                if done { "True" } else { "False" },
                "{name}: Destroyed status"
            );
            assert_eq!(decision.effects, expected.effects, "{name}: effects");
            assert_eq!(
                ready(&decision),
                ("False", reason::EXPIRED),
                "{name}: Ready"
            );
            assert_eq!(
                decision.wake_at.is_some(),
                !done,
                "{name}: looked at again while waiting"
            );
        }
    }
}

/// Replays a teardown step by step as the reconciler does (decide, store what changed,
/// decide again), and returns the status writes it took.
fn status_writes_along(env: Env, steps: &[World]) -> Vec<(Phase, String)> {
    let mut env = env;
    let mut writes = Vec::new();
    for (i, world) in steps.iter().enumerate() {
        let decision = env.decide(world, CREATED + minutes(60) + i as i64);
        let next = stored(&decision);
        if env.0.status.as_ref() != Some(&next) {
            let destroyed = condition(&decision, DESTROYED).reason.clone();
            writes.push((decision.phase(), destroyed));
            env.0.status = Some(next);
        }
    }
    writes
}

/// Found by the fault soak with the real Argo CD: an environment destroyed right after
/// TestMesh's generator listed it had its namespace deleted before its ApplicationSet
/// minted the Application (from the listing it had read). The Application was created
/// anyway, Argo CD synced it into a namespace that was gone and could not delete it while
/// that sync ran, and the environment stayed `destroying`.
#[test]
fn a_listed_environment_keeps_its_namespace_until_the_application_sets_generated_without_it() {
    let listed = healthy_warm();
    let destroy = || world().no_app().teardown(TeardownRequest::Destroy);
    let now = CREATED + minutes(1);
    // Its Application is not minted yet: the decision that takes it off the list asks the
    // ApplicationSets to generate again, and deletes nothing.
    let entering = listed.decide(&destroy(), now);
    assert_eq!(entering.effects, [Effect::RefreshGenerator]);
    assert_eq!(
        condition(&entering, DESTROYED).reason,
        reason::WAITING_FOR_GENERATOR
    );
    assert!(
        entering
            .wake_at
            .is_some_and(|wake| wake <= at(now) + GENERATOR_RECHECK)
    );
    // One of them has not generated since: the namespace still waits.
    let destroying = listed.after(&entering);
    let waiting = destroying.decide(&destroy().generators_pending(&["previews"]), now + 1);
    assert!(waiting.effects.is_empty(), "{:?}", waiting.effects);
    assert_eq!(
        condition(&waiting, DESTROYED).reason,
        reason::WAITING_FOR_GENERATOR
    );
    // They have, but a generation from the older listing may have cleared the request
    // (Argo CD clears it with the ApplicationSet as last read): the namespace waits out
    // GENERATOR_SETTLE from the teardown's start.
    let settling = destroying
        .clone()
        .after(&waiting)
        .decide(&destroy().generating(), now + 2);
    assert!(settling.effects.is_empty(), "{:?}", settling.effects);
    assert_eq!(
        settling.wake_at,
        Some(at(now) + GENERATOR_SETTLE),
        "looked at again once settled"
    );
    // Settled, and no Application came: the namespace goes.
    let settled = destroying
        .clone()
        .after(&settling)
        .decide(&destroy().generating(), now + GENERATOR_SETTLE.as_secs());
    assert_eq!(settled.effects, [Effect::DeleteNamespace]);
    // Where no ApplicationSet generates from TestMesh, nothing is waited out.
    let alone = destroying
        .clone()
        .after(&waiting)
        .decide(&destroy(), now + 2);
    assert_eq!(alone.effects, [Effect::DeleteNamespace]);
    // One that never generates again (its generator unreachable) holds it a minute at
    // most.
    let stuck = destroy().generators_pending(&["previews"]);
    let held = destroying.clone().after(&waiting).decide(&stuck, now + 59);
    assert!(held.effects.is_empty(), "{:?}", held.effects);
    let given_up = destroying
        .after(&held)
        .decide(&stuck, now + GENERATOR_WAIT_LIMIT.as_secs());
    assert_eq!(given_up.effects, [Effect::DeleteNamespace]);
    // An environment the generator never listed (Flux deploys it) does not wait.
    let mut flux = healthy_warm();
    flux.0.spec.template.provider = Provider::Flux;
    assert_eq!(
        flux.decide(&destroy(), now).effects,
        [Effect::DeleteNamespace]
    );
}

#[test]
fn a_teardown_nobody_holds_up_writes_the_status_twice() {
    let warm = healthy_warm();
    let writes = status_writes_along(
        warm,
        &[
            // Expired: entering teardown is written first, before any delete.
            world(),
            // The pass that deletes the app.
            world(),
            // The app had no finalizer: gone at once; the namespace is deleted.
            world().no_app(),
            // The namespace controller empties it (no blockers reported), then it is gone.
            world().no_app().terminating_namespace(None),
            world().no_app().terminating_namespace(None),
            world().no_app().no_namespace(),
            // Destroyed: nothing more to say.
            world().no_app().no_namespace(),
        ],
    );
    assert_eq!(
        writes,
        [
            (Phase::Destroying, reason::TEARING_DOWN.to_owned()),
            (Phase::Destroyed, reason::TEARDOWN_COMPLETE.to_owned()),
        ]
    );
}

#[test]
fn waits_on_others_are_written_and_so_is_their_end() {
    let warm = healthy_warm();
    let writes = status_writes_along(
        warm,
        &[
            world(),
            world(),
            // Argo CD prunes behind its finalizer.
            world().app_deletion(AppDeletion::InProgress),
            world().app_deletion(AppDeletion::InProgress),
            world().no_app(),
            // Something in the namespace holds it up for a while.
            world()
                .no_app()
                .terminating_namespace(Some("configmaps has 1 resource")),
            world().no_app().terminating_namespace(None),
            world().no_app().no_namespace(),
        ],
    );
    let reasons: Vec<&str> = writes.iter().map(|(_, r)| r.as_str()).collect();
    assert_eq!(
        reasons,
        [
            reason::TEARING_DOWN,
            reason::WAITING_FOR_APP_DELETION,
            reason::TEARING_DOWN,
            reason::NAMESPACE_TERMINATING,
            reason::TEARING_DOWN,
            reason::TEARDOWN_COMPLETE,
        ]
    );
}

#[test]
fn the_app_gone_during_teardown_leaves_its_last_summary() {
    let warm = healthy_warm();
    let now = CREATED + minutes(60);
    let entering = warm.decide(&world(), now);
    let last_seen = entering.status.provider.clone();
    assert_eq!(
        last_seen.as_ref().and_then(|p| p.health.as_deref()),
        Some("Healthy")
    );
    let gone = warm
        .clone()
        .after(&entering)
        .decide(&world().no_app(), now + 1);
    assert_eq!(gone.status.provider, last_seen, "tearing down");
    let done = warm
        .clone()
        .after(&gone)
        .decide(&world().no_app().no_namespace(), now + 2);
    assert_eq!(done.phase(), Phase::Destroyed);
    assert_eq!(done.status.provider, last_seen, "destroyed");
    let later = warm
        .after(&done)
        .decide(&world().no_app().no_namespace(), now + 3);
    assert_eq!(later.status, done.status, "the record stays as written");

    // Before teardown a missing app is reported as such: it counts towards a failure.
    let provisioning = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED)
        .health_since("Healthy", CREATED)
        .decide(&world().no_app(), CREATED + 5);
    assert_eq!(
        provisioning
            .status
            .provider
            .and_then(|p| p.health)
            .as_deref(),
        Some("Missing")
    );
}

/// A destroy request is a new generation: the `destroyed` write stamps it on every
/// condition, as the destroyed record keeps them, so nothing is written after it.
#[test]
fn the_destroyed_write_is_final_even_for_a_new_generation() {
    let warm = environment().in_phase(Phase::Warm).last_used(CREATED);
    let ready_at_generation_1 = warm.decide(&world(), CREATED + 1);
    let destroying = warm
        .after(&ready_at_generation_1)
        .generation(2)
        .in_phase(Phase::Destroying);
    let gone = world()
        .no_app()
        .no_namespace()
        .teardown(TeardownRequest::Destroy);
    let done = destroying.decide(&gone, CREATED + 2);
    assert_eq!(done.phase(), Phase::Destroyed);
    let mut record = destroying.clone();
    record.0.status = Some(stored(&done));
    let again = record.decide(&gone, CREATED + 3);
    assert_eq!(again.status, stored(&done), "no second write");
}

#[test]
fn teardown_keeps_its_cause_and_start_across_decisions() {
    let warm = environment().in_phase(Phase::Warm).last_used(CREATED);
    let started = warm.decide(&world().teardown(TeardownRequest::Destroy), CREATED + 5);
    let next = warm.after(&started).decide(&world().no_app(), CREATED + 9);
    assert_eq!(ready(&next), ("False", reason::DESTROY_REQUESTED));
    assert_eq!(next.status.teardown_started_at, Some(Time(at(CREATED + 5))));
    assert_eq!(next.effects, [Effect::DeleteNamespace]);
}

#[test]
fn destroyed_records_when_and_keeps_it() {
    let destroying = environment().in_phase(Phase::Destroying);
    let done = destroying.decide(&world().no_app().no_namespace(), CREATED + 7);
    assert_eq!(done.status.destroyed_at, Some(Time(at(CREATED + 7))));
    assert_eq!(condition(&done, DESTROYED).status, "True");
    let later = destroying
        .after(&done)
        .decide(&world().no_app().no_namespace(), CREATED + 99);
    assert_eq!(later.status.destroyed_at, Some(Time(at(CREATED + 7))));
    assert_eq!(later.wake_at, None);
    assert!(later.effects.is_empty());
}

#[test]
fn a_decision_is_stable_when_nothing_changes() {
    let env = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let first = env.decide(&world(), CREATED + 10);
    let again = env.after(&first).decide(&world(), CREATED + 20);
    assert_eq!(first.status, again.status, "no status write needed");
}

fn any_observed() -> impl Strategy<Value = World> {
    let namespace = prop_oneof![
        Just(NamespaceState::Absent),
        Just(NamespaceState::NotOwned),
        Just(NamespaceState::Refused("denied".into())),
        (any::<bool>(), any::<bool>()).prop_map(|(terminating, blocked)| {
            NamespaceState::Owned {
                terminating,
                blockers: (terminating && blocked).then(|| "pods has 1 resource".to_owned()),
                created_at: Some(at(CREATED)),
            }
        }),
    ];
    let readiness = prop_oneof![
        Just(Readiness::Ready),
        Just(Readiness::Progressing),
        Just(Readiness::Degraded),
        Just(Readiness::Failed),
    ];
    let deletion = prop_oneof![
        Just(AppDeletion::Deletable),
        Just(AppDeletion::InProgress),
        Just(AppDeletion::Retained("kept".into())),
    ];
    let failed_attempt = proptest::option::of(
        (CREATED - 100..CREATED + 100, any::<bool>(), any::<bool>()).prop_map(
            |(started, backing_off, namespace_missing)| FailedAttempt {
                started_at: Some(at(started)),
                backing_off,
                namespace_missing,
            },
        ),
    );
    let app = prop_oneof![
        Just(AppState::Missing),
        (readiness, deletion, failed_attempt).prop_map(|(readiness, deletion, failed_attempt)| {
            AppState::Present(AppReport {
                deletion,
                failed_attempt,
                ..app(readiness, "Whatever")
            })
        }),
    ];
    let teardown = prop_oneof![
        Just(None),
        Just(Some(TeardownRequest::Destroy)),
        Just(Some(TeardownRequest::Delete)),
    ];
    let routing_map = prop_oneof![
        Just(RoutingMap::Absent),
        Just(RoutingMap::Ours(Default::default())),
        Just(RoutingMap::Ours(BTreeMap::from([(
            "gone".to_owned(),
            "http://gone".to_owned()
        )]))),
        Just(RoutingMap::Foreign),
    ];
    (
        namespace,
        app,
        0usize..3,
        0usize..3,
        teardown,
        routing_map,
        0usize..2,
    )
        .prop_map(
            |(namespace, app, holders, waiting, teardown, routing_map, pending)| {
                World(Observed {
                    namespace,
                    app,
                    holders: (0..holders).map(|i| format!("run-{i}")).collect(),
                    waiting: (0..waiting).map(|i| format!("queued-{i}")).collect(),
                    teardown,
                    teardown_note: None,
                    routing: Default::default(),
                    routing_map,
                    generators_pending: (0..pending).map(|i| format!("set-{i}")).collect(),
                    generating_from_testmesh: pending > 0,
                })
            },
        )
}

proptest! {
    /// No sequence of observations moves an environment out of `destroyed`, and once
    /// teardown has begun it never goes back.
    #[test]
    fn nothing_leaves_destroyed(
        steps in proptest::collection::vec((any_observed(), 0i64..7_200), 1..40)
    ) {
        let mut env = environment().ttl_minutes(1);
        let mut now = CREATED;
        let mut tearing_down = false;
        let mut destroyed = false;
        for (world, elapsed) in steps {
            now += elapsed;
            let decision = env.decide(&world, now);
            let phase = decision.phase();
            if destroyed {
                prop_assert_eq!(phase, Phase::Destroyed);
                prop_assert!(decision.effects.is_empty());
            }
            if tearing_down {
                prop_assert!(phase.is_tearing_down(), "left teardown for {}", phase);
            }
            tearing_down |= phase.is_tearing_down();
            destroyed |= phase == Phase::Destroyed;
            env = env.after(&decision);
        }
    }

    /// The operator never deletes what it does not own, and Ready=True only when the
    /// namespace is ours and the app is ready.
    #[test]
    fn safety_of_every_single_decision(
        world in any_observed(),
        phase in proptest::sample::select(Phase::ALL.to_vec()),
        elapsed in 0i64..100_000,
        publishing in any::<bool>(),
    ) {
        let env = environment().in_phase(phase).last_used(CREATED);
        let env = if publishing { env.publishing_config_map() } else { env };
        let decision = env.decide(&world, CREATED + elapsed);
        let owned_active = matches!(world.0.namespace, NamespaceState::Owned { terminating: false, .. });
        if decision.effects.contains(&Effect::DeleteNamespace) {
            prop_assert!(owned_active, "deleted a namespace it does not own");
            let listed = crate::lifecycle::generator::listed(&env.0, env.0.status.as_ref().unwrap());
            let waited_enough = decision
                .status
                .teardown_started_at
                .as_ref()
                .is_some_and(|started| started.0 + GENERATOR_WAIT_LIMIT <= at(CREATED + elapsed));
            prop_assert!(
                !matches!(world.0.app, AppState::Missing)
                    || (world.0.generators_pending.is_empty() && !listed)
                    || waited_enough,
                "deleted a namespace an ApplicationSet may still deploy into"
            );
        }
        if decision.effects.contains(&Effect::DeleteApp) {
            let deletable = matches!(&world.0.app, AppState::Present(a) if a.deletion == AppDeletion::Deletable);
            prop_assert!(deletable, "deleted an app it must keep");
            let owns_namespace = matches!(world.0.namespace, NamespaceState::Owned { .. });
            prop_assert!(owns_namespace, "deleted the app of a namespace it does not own");
        }
        let routing_effects = routing_effects(&decision);
        prop_assert!(routing_effects.len() <= 1);
        if let Some(effect) = routing_effects.first() {
            prop_assert!(owned_active, "wrote into a namespace it does not own");
            let map = &world.0.routing_map;
            match effect {
                Effect::CreateRoutingMap => prop_assert!(publishing && *map == RoutingMap::Absent),
                Effect::PublishRouting => prop_assert!(
                    publishing && matches!(map, RoutingMap::Ours(p) if *p != world.0.routing.policy)
                ),
                _ => prop_assert!(!publishing && matches!(map, RoutingMap::Ours(_))),
            }
        }
        if decision.effects.contains(&Effect::CreateNamespace) {
            prop_assert_eq!(&world.0.namespace, &NamespaceState::Absent);
        }
        if ready(&decision).0 == "True" {
            let app_ready = matches!(&world.0.app, AppState::Present(a) if a.readiness == Readiness::Ready);
            // A serving environment stays Ready while its app syncs again.
            let resyncing = phase.is_serving()
                && matches!(&world.0.app, AppState::Present(a) if a.readiness == Readiness::Progressing);
            prop_assert!(owned_active && (app_ready || resyncing));
        }
        if decision.effects.contains(&Effect::SyncApp) || decision.effects.contains(&Effect::EndAppRetry) {
            prop_assert!(owned_active, "asked for a sync into a namespace it does not own");
            let failed = matches!(&world.0.app, AppState::Present(a) if a.failed_attempt.is_some());
            prop_assert!(failed, "asked for a sync nobody needs");
            prop_assert!(!decision.phase().is_tearing_down(), "asked for a sync while tearing down");
        }
        if !world.0.holders.is_empty() && world.0.teardown.is_none() && phase != Phase::Destroying {
            prop_assert!(!decision.phase().is_tearing_down() || phase == Phase::Destroyed, "expired under a run");
        }
        if let Some(wake_at) = decision.wake_at {
            prop_assert!(wake_at > at(CREATED + elapsed), "a timer that is already due would spin");
        }
    }
}

#[test]
fn binding_table() {
    let now = CREATED + 10;
    let cases: Vec<(&str, Env, World, Phase, Vec<&str>)> = vec![
        (
            "warm: the head of the queue is bound at once",
            environment().in_phase(Phase::Warm).last_used(CREATED),
            world().waiting(&["a", "b"]),
            Phase::Running,
            vec!["a"],
        ),
        (
            "cooling: reused by the head of the queue",
            environment().in_phase(Phase::Cooling).last_used(CREATED),
            world().waiting(&["b"]),
            Phase::Running,
            vec!["b"],
        ),
        (
            "cold: the claim that asked for it holds it while it provisions",
            environment(),
            world().no_namespace().no_app().waiting(&["a"]),
            Phase::Provisioning,
            vec!["a"],
        ),
        (
            "held: exclusive, the queue waits",
            environment().in_phase(Phase::Running).last_used(CREATED),
            world().held_by("a").waiting(&["b", "c"]),
            Phase::Running,
            vec!["a"],
        ),
        (
            "released: the next run takes it in the same decision",
            environment().in_phase(Phase::Running).last_used(CREATED),
            world().waiting(&["b", "c"]),
            Phase::Running,
            vec!["b"],
        ),
        (
            "expired: never bound, torn down",
            environment().in_phase(Phase::Warm).last_used(CREATED),
            world().waiting(&["a"]),
            Phase::Destroying,
            vec![],
        ),
        (
            "failed: not bound",
            environment()
                .in_phase(Phase::Failed)
                .provisioning_since(CREATED),
            world().app(Readiness::Failed, "Degraded").waiting(&["a"]),
            Phase::Failed,
            vec![],
        ),
        (
            "destroy requested: not bound",
            environment().in_phase(Phase::Warm).last_used(CREATED),
            world().waiting(&["a"]).teardown(TeardownRequest::Destroy),
            Phase::Destroying,
            vec![],
        ),
    ];
    for (name, env, world, phase, holders) in cases {
        let decision = if name.starts_with("expired") {
            env.decide(&world, CREATED + minutes(60))
        } else {
            env.decide(&world, now)
        };
        assert_eq!(decision.phase(), phase, "{name}");
        assert_eq!(decision.status.claimed_by, holders, "{name}");
    }
}

#[test]
fn binding_records_whether_the_run_got_it_already_provisioned() {
    let warm = environment().in_phase(Phase::Warm).last_used(CREATED);
    let decision = warm.decide(&world().waiting(&["a"]), CREATED + 5);
    assert_eq!(decision.status.holder_reused, Some(true));
    assert_eq!(decision.status.held_since, Some(Time(at(CREATED + 5))));
    let cold = environment().decide(
        &world().no_namespace().no_app().waiting(&["a"]),
        CREATED + 5,
    );
    assert_eq!(cold.status.holder_reused, Some(false));
    let released = environment()
        .in_phase(Phase::Running)
        .last_used(CREATED)
        .decide(&world(), CREATED + 9);
    assert_eq!(
        (released.status.held_since, released.status.holder_reused),
        (None, None)
    );
}

#[test]
fn handing_over_to_the_next_run_restarts_the_idle_clock() {
    let handover = CREATED + minutes(90);
    let decision = environment()
        .in_phase(Phase::Running)
        .last_used(CREATED)
        .decide(&world().waiting(&["next"]), handover);
    assert_eq!(decision.status.last_used_at, Some(Time(at(handover))));
    assert_eq!(decision.status.expires_at, None, "held again");
}

proptest! {
    /// Deciding again from the stored status (timestamps to the second, as the API server
    /// keeps them) with nothing changed gives the same status: one change, one write.
    #[test]
    fn a_stored_decision_needs_no_second_write(
        world in any_observed(),
        phase in proptest::sample::select(Phase::ALL.to_vec()),
        elapsed in 0i64..100_000,
    ) {
        let env = environment().in_phase(phase).last_used(CREATED);
        let now = CREATED + elapsed;
        let first = env.decide(&world, now);
        // Writes beyond the status come first; asking the ApplicationSets to list again
        // writes nothing of the environment's.
        prop_assume!(first.effects.iter().all(|effect| *effect == Effect::RefreshGenerator));
        // A phase change can make the environment bindable, and binding a waiting run on
        // the next pass is a second change, not a repeat of the first.
        prop_assume!(first.phase() == phase || world.0.waiting.is_empty());
        let stored: TestEnvironmentStatus =
            serde_json::from_value(serde_json::to_value(&first.status).unwrap()).unwrap();
        let mut unchanged = world.clone();
        unchanged.0.holders = stored.claimed_by.clone();
        unchanged.0.waiting.retain(|w| !stored.claimed_by.contains(w));
        let mut written = env.clone();
        written.0.status = Some(stored.clone());
        // A second later nothing is due (no timer fires in between): still no write.
        prop_assume!(first.wake_at.is_none_or(|at| at > super::Timestamp::from_second(now + 1).unwrap()));
        let again = written.decide(&unchanged, now + 1);
        prop_assert_eq!(again.status, stored);
    }
}

/// A status written and read back (timestamps to the second) decides the same again: no
/// second write for one change.
#[test]
fn binding_is_stable_once_stored() {
    let cooling = environment().in_phase(Phase::Cooling).last_used(CREATED);
    let bound = cooling.decide(&world().waiting(&["run"]), CREATED + 10);
    let stored: TestEnvironmentStatus =
        serde_json::from_value(serde_json::to_value(&bound.status).unwrap()).unwrap();
    let mut env = cooling.clone();
    env.0.status = Some(stored.clone());
    let again = env.decide(&world().held_by("run"), CREATED + 11);
    assert_eq!(again.status, stored);
    assert_eq!(condition(&again, READY).message, "in use by run");
}

#[test]
fn an_environment_that_does_not_own_its_namespace_deletes_no_app() {
    for (name, world) in [
        (
            "namespace taken by someone else",
            world().foreign_namespace(),
        ),
        ("namespace refused by policy", world().refused_namespace()),
        ("namespace never created", world().no_namespace()),
    ] {
        let decision = environment()
            .in_phase(Phase::Failed)
            .never_provisioned()
            .decide(&world.teardown(TeardownRequest::Delete), CREATED + 5);
        assert!(
            decision.effects.is_empty(),
            "{name}: {:?}",
            decision.effects
        );
        assert_eq!(decision.phase(), Phase::Destroyed, "{name}");
        let message = &condition(&decision, DESTROYED).message;
        assert!(message.contains("provider app kept"), "{name}: {message}");
    }
}

/// Stored as the API server keeps it: timestamps to the second.
fn stored(decision: &Decision) -> TestEnvironmentStatus {
    serde_json::from_value(serde_json::to_value(&decision.status).unwrap()).unwrap()
}

#[test]
fn a_serving_environment_stays_ready_while_its_app_syncs_again() {
    let resyncing = || world().app(Readiness::Progressing, "Progressing");
    for (phase, world, stays, reason) in [
        (Phase::Warm, resyncing(), Phase::Warm, reason::AVAILABLE),
        (
            Phase::Cooling,
            resyncing(),
            Phase::Cooling,
            reason::AVAILABLE,
        ),
        (
            Phase::Running,
            resyncing().held_by("run"),
            Phase::Running,
            reason::IN_USE,
        ),
    ] {
        let env = environment().in_phase(phase).last_used(CREATED);
        let decision = env.decide(&world, CREATED + 10);
        assert_eq!(decision.phase(), stays, "{phase}");
        assert_eq!(ready(&decision), ("True", reason), "{phase}");
        assert!(
            condition(&decision, READY)
                .message
                .contains("the provider is syncing again: app is Progressing"),
            "{phase}: the sync is shown"
        );
        assert_eq!(
            condition(&decision, PROVIDER_READY).reason,
            reason::APP_PROGRESSING,
            "{phase}: the provider's own verdict stays visible"
        );
        let later = env.after(&decision).decide(&world, CREATED + minutes(45));
        assert_eq!(
            (later.phase(), later.status.clone()),
            (stays, decision.status.clone()),
            "{phase}: a long sync costs no write and no timeout"
        );
    }
    let running = environment().in_phase(Phase::Running).last_used(CREATED);
    for (case, world, phase, ready_reason) in [
        (
            "degraded",
            world().app(Readiness::Degraded, "Degraded").held_by("run"),
            Phase::Degraded,
            reason::APP_DEGRADED,
        ),
        (
            "failed",
            world().app(Readiness::Failed, "Healthy").held_by("run"),
            Phase::Failed,
            reason::APP_FAILED,
        ),
        (
            "gone",
            world().no_app().held_by("run"),
            Phase::Running,
            reason::PROVISIONING,
        ),
    ] {
        let decision = running.decide(&world, CREATED + 10);
        assert_eq!(decision.phase(), phase, "{case}");
        assert_eq!(ready(&decision), ("False", ready_reason), "{case}");
    }
}

#[test]
fn an_app_resync_does_not_extend_the_idle_lifetime() {
    let warm = environment().in_phase(Phase::Warm).last_used(CREATED);
    let resyncing = warm.decide(
        &world().app(Readiness::Progressing, "Progressing"),
        CREATED + 100,
    );
    let ready_again = warm.after(&resyncing).decide(&world(), CREATED + 200);
    assert_eq!(ready_again.status.last_used_at, Some(Time(at(CREATED))));
    assert_eq!(
        ready_again.status.expires_at,
        Some(Time(at(CREATED + minutes(60))))
    );
}

#[test]
fn provisioning_start_is_recorded_even_if_the_first_write_was_lost() {
    let decision = environment()
        .in_phase(Phase::Provisioning)
        .never_provisioned()
        .decide(
            &world().app(Readiness::Progressing, "Progressing"),
            CREATED + 10,
        );
    assert_eq!(
        decision.status.provisioning_started_at,
        Some(Time(at(CREATED + 10)))
    );
    assert_eq!(
        decision.wake_at,
        Some(at(CREATED + minutes(30) + 10).min(at(CREATED + minutes(60))))
    );
}

#[test]
fn a_retry_after_an_app_failure_gets_a_fresh_deadline_but_a_timeout_stays_failed() {
    let failed_by_app = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let failed = failed_by_app.decide(
        &world().app(Readiness::Failed, "Degraded"),
        CREATED + minutes(40),
    );
    assert_eq!(ready(&failed), ("False", reason::APP_FAILED));
    let retry_at = CREATED + minutes(41);
    let retrying = failed_by_app.after(&failed).ttl_minutes(600).decide(
        &world().app(Readiness::Progressing, "Progressing"),
        retry_at,
    );
    assert_eq!(retrying.phase(), Phase::Provisioning);
    assert_eq!(
        retrying.status.provisioning_started_at,
        Some(Time(at(retry_at)))
    );

    let slow = environment()
        .ttl_minutes(600)
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let progressing = world().app(Readiness::Progressing, "Progressing");
    let timed_out = slow.decide(&progressing, CREATED + minutes(30));
    assert_eq!(ready(&timed_out), ("False", reason::PROVISIONING_TIMEOUT));
    let still = slow
        .after(&timed_out)
        .decide(&progressing, CREATED + minutes(31));
    assert_eq!(
        ready(&still),
        ("False", reason::PROVISIONING_TIMEOUT),
        "stays failed until ready"
    );
}

#[test]
fn the_provider_teardown_note_is_shown_while_its_app_is_deleted() {
    let mut world = world().teardown(TeardownRequest::Destroy);
    world.0.teardown_note = Some("suspended: deleting it prunes nothing".into());
    let decision = environment()
        .in_phase(Phase::Warm)
        .last_used(CREATED)
        .decide(&world, CREATED + 5);
    let message = &condition(&decision, DESTROYED).message;
    assert!(
        message.ends_with("suspended: deleting it prunes nothing"),
        "{message}"
    );
}

#[test]
fn a_teardown_waiting_on_others_is_looked_at_again_without_an_event() {
    let recheck = |decision: &Decision| decision.wake_at;
    let now = CREATED + 5;
    let pruning = environment()
        .in_phase(Phase::Destroying)
        .decide(&world().app_deletion(AppDeletion::InProgress), now);
    assert_eq!(recheck(&pruning), Some(at(now) + TEARDOWN_RECHECK));
    let terminating = environment()
        .in_phase(Phase::Destroying)
        .decide(&world().no_app().terminating_namespace(None), now);
    assert_eq!(recheck(&terminating), Some(at(now) + TEARDOWN_RECHECK));
    let destroyed = environment()
        .in_phase(Phase::Destroying)
        .decide(&world().no_app().no_namespace(), now);
    assert_eq!(destroyed.phase(), Phase::Destroyed);
    assert_eq!(recheck(&destroyed), None, "nothing left to wait for");
}

/// An explicit destroy (a new generation) that nobody holds up is written twice, like an
/// expiry: entering teardown and `destroyed`, which stamps the generation on every
/// condition so the destroyed record needs no third write. The TTL is a day, so it is
/// the request, not expiry, that tears it down.
#[test]
fn a_destroy_request_is_written_twice_too() {
    let warm = healthy_warm().ttl_minutes(24 * 60);
    let mut ready_at_generation_1 = warm.clone();
    let decision = ready_at_generation_1.decide(&world(), CREATED + 1);
    ready_at_generation_1 = ready_at_generation_1.after(&decision);
    let destroy = TeardownRequest::Destroy;
    let requested = ready_at_generation_1
        .clone()
        .generation(2)
        .decide(&world().teardown(destroy), CREATED + minutes(60));
    assert_eq!(
        ready(&requested),
        ("False", reason::DESTROY_REQUESTED),
        "torn down because it was asked to be"
    );
    let writes = status_writes_along(
        ready_at_generation_1.generation(2),
        &[
            world().teardown(destroy),
            world().teardown(destroy),
            world().no_app().teardown(destroy),
            world().no_app().no_namespace().teardown(destroy),
            world().no_app().no_namespace().teardown(destroy),
        ],
    );
    assert_eq!(
        writes,
        [
            (Phase::Destroying, reason::TEARING_DOWN.to_owned()),
            (Phase::Destroyed, reason::TEARDOWN_COMPLETE.to_owned()),
        ]
    );
}

/// The routing ConfigMap is written only for an environment that asks for it, kept in
/// step with the policy, deleted when no longer asked for, and never touched when it is
/// someone else's or outside a live namespace of the environment's own.
#[test]
fn the_routing_config_map_follows_the_spec_and_the_policy() {
    let routed = || world().routed("users");
    let policy = routed().0.routing.policy;
    let stale = world().routed("orders").0.routing.policy;
    let cases: Vec<(&str, Env, World, Option<Effect>)> = vec![
        (
            "not asked for, none published",
            healthy_warm(),
            routed(),
            None,
        ),
        (
            "not asked for any more",
            healthy_warm(),
            routed().published(&policy),
            Some(Effect::UnpublishRouting),
        ),
        (
            "not asked for, someone else's",
            healthy_warm(),
            routed().foreign_routing_map(),
            None,
        ),
        (
            "asked for, none yet",
            healthy_warm().publishing_config_map(),
            routed(),
            Some(Effect::CreateRoutingMap),
        ),
        (
            "asked for, out of date",
            healthy_warm().publishing_config_map(),
            routed().published(&stale),
            Some(Effect::PublishRouting),
        ),
        (
            "asked for, up to date",
            healthy_warm().publishing_config_map(),
            routed().published(&policy),
            None,
        ),
        (
            "asked for, someone else's",
            healthy_warm().publishing_config_map(),
            routed().foreign_routing_map(),
            None,
        ),
        (
            "asked for, a namespace that is not ours",
            healthy_warm().publishing_config_map(),
            routed().foreign_namespace(),
            None,
        ),
        (
            "not asked for any more, a namespace being deleted by someone else",
            healthy_warm(),
            routed().published(&policy).terminating_namespace(None),
            None,
        ),
    ];
    for (case, env, world, expected) in cases {
        let decision = env.decide(&world, CREATED + 5);
        let routing = routing_effects(&decision);
        assert_eq!(routing, Vec::from_iter(expected), "{case}");
    }
    let refused = healthy_warm()
        .publishing_config_map()
        .decide(&routed().foreign_routing_map(), CREATED + 5);
    let message = &condition(&refused, conditions::ROUTING_COMPLETE).message;
    assert!(
        message.ends_with(
            "not published: the ConfigMap testmesh-routing in the namespace is not TestMesh's"
        ),
        "{message}"
    );
}

/// The claim side's reading of the binding rule agrees with [`decide`]: whenever it says
/// an environment binds a waiting claim at once, `decide` binds it.
#[test]
fn binds_at_once_agrees_with_the_binding_decision() {
    let now = CREATED + 600;
    for phase in Phase::ALL {
        for last_used in [None, Some(CREATED), Some(now - 30)] {
            for ttl in [1, 60] {
                for teardown in [
                    None,
                    Some(TeardownRequest::Destroy),
                    Some(TeardownRequest::Delete),
                ] {
                    let mut env = environment().in_phase(phase).ttl_minutes(ttl);
                    if let Some(at_) = last_used {
                        env = env.last_used(at_);
                    }
                    let mut world = world().waiting(&["next"]);
                    match teardown {
                        Some(TeardownRequest::Destroy) => env.0.spec.destroy = true,
                        Some(TeardownRequest::Delete) => {
                            env.0.metadata.deletion_timestamp = Some(Time(at(now - 1)));
                        }
                        None => {}
                    }
                    if let Some(request) = teardown {
                        world = world.teardown(request);
                    }
                    let decision = env.decide(&world, now);
                    let binds = decision.status.claimed_by == ["next"];
                    assert_eq!(
                        binds_at_once(&env.0, at(now)),
                        binds,
                        "{phase:?}, last used {last_used:?}, TTL {ttl} min, {teardown:?}"
                    );
                }
            }
        }
    }
    let mut held = environment().in_phase(Phase::Running);
    held.status().claimed_by = vec!["other".into()];
    assert!(!binds_at_once(&held.0, at(now)), "held by another run");
}

#[test]
fn a_failure_the_new_namespace_removes_is_retried_not_reported() {
    let env = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let namespace_at = CREATED + 5;
    let cases = [
        (
            "gave up before the namespace existed: sync again",
            world().failed_attempt(CREATED - 600, false, true),
            Phase::Provisioning,
            reason::PROVISIONING,
            vec![Effect::SyncApp],
        ),
        (
            "gave up before the namespace existed, for another reason: sync again once",
            world().failed_attempt(CREATED - 600, false, false),
            Phase::Provisioning,
            reason::PROVISIONING,
            vec![Effect::SyncApp],
        ),
        (
            "backing off because the namespace was missing: end the backoff",
            world().failed_attempt(CREATED - 60, true, true),
            Phase::Provisioning,
            reason::PROVISIONING,
            vec![Effect::EndAppRetry],
        ),
        (
            "backing off for another reason: Argo CD's own retries go on",
            world().failed_attempt(CREATED - 60, true, false),
            Phase::Provisioning,
            reason::PROVISIONING,
            vec![],
        ),
        (
            "failed in the second the namespace was created (whole seconds): maybe before it",
            world().failed_attempt(namespace_at, false, false),
            Phase::Provisioning,
            reason::PROVISIONING,
            vec![Effect::SyncApp],
        ),
        (
            "failed after the namespace existed: a real failure",
            world().failed_attempt(namespace_at + 1, false, true),
            Phase::Failed,
            reason::APP_FAILED,
            vec![],
        ),
    ];
    for (case, world, phase, ready_reason, effects) in cases {
        let world = world.namespace_created(namespace_at);
        let decision = env.decide(&world, CREATED + 10);
        assert_eq!(decision.phase(), phase, "{case}");
        assert_eq!(ready(&decision), ("False", ready_reason), "{case}");
        assert_eq!(decision.effects, effects, "{case}");
        if !effects.is_empty() {
            assert_eq!(
                condition(&decision, PROVIDER_READY).reason,
                reason::APP_PROGRESSING,
                "{case}: no failure is reported for a cause that is gone"
            );
            assert!(
                condition(&decision, READY).message.contains("TestMesh"),
                "{case}: says what TestMesh did: {}",
                condition(&decision, READY).message
            );
        }
    }
}

#[test]
fn a_stale_failure_is_retried_only_in_a_namespace_the_environment_serves() {
    let env = environment().in_phase(Phase::Failed);
    let stale = || world().failed_attempt(CREATED - 600, false, true);
    for (case, world) in [
        ("not created by it", stale().foreign_namespace()),
        ("terminating", stale().terminating_namespace(None)),
        ("creation time unknown", {
            let mut world = stale();
            world.0.namespace = NamespaceState::Owned {
                terminating: false,
                blockers: None,
                created_at: None,
            };
            world
        }),
    ] {
        let decision = env.decide(&world, CREATED + 10);
        assert_eq!(decision.effects, vec![], "{case}");
        assert_eq!(decision.phase(), Phase::Failed, "{case}");
    }
    let recovering = env.decide(&stale().namespace_created(CREATED), CREATED + 10);
    assert_eq!(recovering.effects, vec![Effect::SyncApp]);
    assert_eq!(
        recovering.phase(),
        Phase::Provisioning,
        "an environment failed for a stale reason (an older operator) recovers"
    );
}

#[test]
fn a_namespace_the_app_created_says_what_to_change() {
    let decision = environment().decide(
        &world().foreign_namespace().app_creating_its_namespace(),
        CREATED + 10,
    );
    assert_eq!(ready(&decision), ("False", reason::NAMESPACE_NOT_OWNED));
    assert!(
        condition(&decision, READY)
            .message
            .contains("CreateNamespace=true"),
        "{}",
        condition(&decision, READY).message
    );
    let plain = environment().decide(&world().foreign_namespace(), CREATED + 10);
    assert!(!condition(&plain, READY).message.contains("CreateNamespace"));
}

#[test]
fn a_destroyed_record_no_longer_mirrors_a_kept_app() {
    let destroying = environment().in_phase(Phase::Destroying);
    let kept = world()
        .no_namespace()
        .app_deletion(AppDeletion::Retained("owned by ApplicationSet envs".into()));
    let destroyed = destroying.decide(&kept, CREATED + 10);
    assert_eq!(destroyed.phase(), Phase::Destroyed);
    let last_seen = destroyed.status.provider.clone();
    assert_eq!(
        last_seen.as_ref().and_then(|p| p.health.as_deref()),
        Some("Healthy")
    );
    let later = destroying.after(&destroyed).decide(
        &kept.clone().app(Readiness::Degraded, "Degraded"),
        CREATED + 100,
    );
    assert_eq!(later.status.provider, last_seen);
    assert_eq!(later.status, destroyed.status, "no write for the kept app");
}

#[test]
fn ready_waits_for_an_endpoint_behind_every_url_into_the_namespace() {
    let provisioning = environment()
        .in_phase(Phase::Provisioning)
        .provisioning_since(CREATED);
    let waiting = provisioning.decide(
        &world()
            .routed("user-service")
            .not_serving("product-service"),
        CREATED + 10,
    );
    assert_eq!(waiting.phase(), Phase::Provisioning);
    assert_eq!(ready(&waiting), ("False", reason::PROVISIONING));
    assert!(
        condition(&waiting, READY)
            .message
            .ends_with("; no ready endpoint yet for: product-service"),
        "{}",
        condition(&waiting, READY).message
    );
    assert_eq!(
        condition(&waiting, PROVIDER_READY).reason,
        reason::APP_READY,
        "the provider is not blamed"
    );
    let routing = condition(&waiting, ROUTING_COMPLETE);
    assert_eq!(
        (routing.status.as_str(), routing.reason.as_str()),
        ("False", reason::ENDPOINTS_NOT_READY)
    );
    assert_eq!(waiting.status.routing_policy.len(), 2, "the URLs are known");

    let served = provisioning.clone().after(&waiting).decide(
        &world().routed("user-service").routed("product-service"),
        CREATED + 11,
    );
    assert_eq!(served.phase(), Phase::Warm);
    assert_eq!(
        condition(&served, ROUTING_COMPLETE).reason,
        reason::ALL_SERVICES_ROUTED
    );

    let missing_too = provisioning.decide(
        &world().not_serving("product-service").missing("search"),
        CREATED + 10,
    );
    let routing = condition(&missing_too, ROUTING_COMPLETE);
    assert_eq!(routing.reason, reason::SERVICES_MISSING);
    assert_eq!(
        routing.message,
        "no Service yet for: search; no ready endpoint yet for: product-service"
    );

    let timed_out = provisioning.decide(
        &world().not_serving("product-service"),
        CREATED + minutes(30),
    );
    assert_eq!(ready(&timed_out), ("False", reason::PROVISIONING_TIMEOUT));

    let warm = healthy_warm().decide(&world().not_serving("product-service"), CREATED + 10);
    assert_eq!(
        (warm.phase(), ready(&warm)),
        (Phase::Warm, ("True", reason::AVAILABLE)),
        "a serving environment whose pods roll keeps serving"
    );
}

#[test]
fn writes_beyond_the_status_are_decided_fresh_letting_a_run_go_on_its_holders_read_and_entering_teardown_on_the_cache()
 {
    let running = environment()
        .in_phase(Phase::Running)
        .last_used(CREATED)
        .held_by_status("run");
    let expired = CREATED + minutes(60);
    let cases = [
        (
            "still held: a status write at most",
            running.clone(),
            world().held_by("run"),
            Source::Cache,
        ),
        (
            "the run's claim is not seen: letting it go needs its holders read by name",
            running.clone(),
            world(),
            Source::FreshHolders,
        ),
        (
            "a namespace to create",
            environment(),
            world().no_namespace().no_app(),
            Source::ApiServer,
        ),
        (
            "destroy asked for: the status first, its deletes decided fresh on the next pass",
            healthy_warm(),
            world().teardown(TeardownRequest::Destroy),
            Source::Cache,
        ),
        (
            "deleted: the status first too",
            healthy_warm(),
            world().teardown(TeardownRequest::Delete),
            Source::Cache,
        ),
        (
            "warm and nothing to do",
            healthy_warm(),
            world(),
            Source::Cache,
        ),
    ];
    for (case, env, world, source) in cases {
        let current = env.0.status.clone().unwrap_or_default();
        assert_eq!(
            env.decide(&world, CREATED + 10).fresh_read(&current),
            source,
            "{case}"
        );
    }

    // Expiry: decided by the stored status alone, whatever the claims seen.
    let cooling = environment().in_phase(Phase::Cooling).last_used(CREATED);
    let current = cooling.0.status.clone().unwrap_or_default();
    for world in [world(), world().waiting(&["late-run"])] {
        let decision = cooling.decide(&world, expired);
        assert_eq!(decision.phase(), Phase::Destroying);
        assert!(
            decision.status.claimed_by.is_empty(),
            "an expired one binds nobody"
        );
        assert_eq!(decision.fresh_read(&current), Source::Cache);
        assert!(
            decision.plan(&current).status_first,
            "no delete before the status"
        );
    }
    // Deleted under a run: letting the run go needs proof, teardown or not.
    let current = running.0.status.clone().unwrap_or_default();
    for (world, source) in [
        (
            world().held_by("run").teardown(TeardownRequest::Delete),
            Source::Cache,
        ),
        (
            world().teardown(TeardownRequest::Delete),
            Source::FreshHolders,
        ),
    ] {
        let deleted = running.decide(&world, expired);
        assert!(deleted.phase().is_tearing_down());
        assert_eq!(deleted.fresh_read(&current), source, "{world:?}");
    }
}

#[test]
fn a_destroyed_record_is_deleted_exactly_when_its_retention_ends() {
    let destroyed = TestEnvironmentStatus {
        phase: Some(Phase::Destroyed),
        destroyed_at: Some(Time(at(CREATED))),
        ..TestEnvironmentStatus::default()
    };
    let day = Some(SignedDuration::from_hours(24));
    let end = CREATED + 24 * 3600;
    assert_eq!(
        retention(&destroyed, None, at(end)),
        Retention::Kept,
        "no period: kept"
    );
    assert_eq!(
        retention(&destroyed, day, at(end - 1)),
        Retention::Until(at(end))
    );
    assert_eq!(retention(&destroyed, day, at(end)), Retention::Over);
    assert_eq!(
        retention(&TestEnvironmentStatus::default(), day, at(end)),
        Retention::Kept,
        "not destroyed: kept"
    );
    let far = TestEnvironmentStatus {
        destroyed_at: Some(Time(Timestamp::MAX)),
        ..destroyed
    };
    assert_eq!(
        retention(&far, day, at(end)),
        Retention::Until(Timestamp::MAX),
        "a deadline out of range never passes"
    );
}

#[test]
fn a_run_released_while_its_environment_is_degraded_starts_the_idle_clock() {
    let held = environment()
        .in_phase(Phase::Degraded)
        .last_used(CREATED)
        .held_by_status("run");
    let released = held.decide(&world().app(Readiness::Degraded, "Degraded"), CREATED + 100);
    assert_eq!(released.phase(), Phase::Degraded);
    assert!(released.status.claimed_by.is_empty());
    assert_eq!(released.status.last_used_at, Some(Time(at(CREATED + 100))));
}

#[test]
fn the_plan_writes_teardown_first_and_routing_after_the_status() {
    let destroying =
        healthy_warm().decide(&world().teardown(TeardownRequest::Destroy), CREATED + 10);
    assert_eq!(
        destroying.effects,
        [Effect::DeleteApp, Effect::RefreshGenerator]
    );
    assert_eq!(
        destroying.plan(&healthy_warm().0.status.clone().unwrap_or_default()),
        Plan {
            before_status: vec![],
            after_status: vec![Effect::RefreshGenerator],
            status_first: true,
        },
        "entering teardown: the status alone (and the generator's refresh, which it lists from), nothing deleted on this pass"
    );
    let torn = environment().in_phase(Phase::Destroying);
    let continuing = torn.decide(&world().teardown(TeardownRequest::Destroy), CREATED + 10);
    assert_eq!(
        continuing.plan(&torn.0.status.clone().unwrap_or_default()),
        Plan {
            before_status: vec![Effect::DeleteApp],
            after_status: vec![],
            status_first: false,
        },
        "read back destroying: now the app is deleted, before the status"
    );
    let fresh = environment().publishing_config_map();
    let creating = fresh.decide(&world().no_namespace(), CREATED + 10);
    assert_eq!(
        creating
            .plan(&TestEnvironmentStatus::default())
            .before_status,
        [Effect::CreateNamespace]
    );
    let publishing = healthy_warm().publishing_config_map();
    let decision = publishing.decide(&world().routed("web"), CREATED + 10);
    let plan = decision.plan(&publishing.0.status.clone().unwrap_or_default());
    assert_eq!(
        (plan.before_status, plan.after_status),
        (vec![], vec![Effect::CreateRoutingMap]),
        "the routing ConfigMap after the status"
    );
}

#[test]
fn after_creating_the_namespace_only_a_ready_decision_replaces_the_first() {
    let cold = environment();
    let creating = cold.decide(&world().no_namespace(), CREATED + 10);
    assert_eq!(
        creating.effects,
        [Effect::CreateNamespace, Effect::RefreshGenerator]
    );
    let ready = cold.decide(&world(), CREATED + 10);
    assert!(
        creating.superseded_after_create(&ready),
        "healthy already: warm in one write"
    );
    let failed = cold.decide(&world().app(Readiness::Failed, "Healthy"), CREATED + 10);
    assert_eq!(failed.phase(), Phase::Failed);
    assert!(
        !creating.superseded_after_create(&failed),
        "never cold → failed without the provisioning that happened"
    );
    let progressing = cold.decide(
        &world().app(Readiness::Progressing, "Progressing"),
        CREATED + 10,
    );
    assert!(!creating.superseded_after_create(&progressing));
    let warm = healthy_warm().decide(&world(), CREATED + 10);
    assert!(!warm.superseded_after_create(&ready), "only after a create");
}

#[test]
fn a_never_used_environment_never_expires_before_its_ttl_from_its_real_creation() {
    // Created at CREATED + 0.47 s; the API server stamps CREATED.
    let never_used = environment().ttl_minutes(1).in_phase(Phase::Failed);
    let real_end = at(CREATED) + SignedDuration::from_millis(60_470);
    let just_before = never_used.decide(&world().app(Readiness::Failed, "Degraded"), CREATED + 60);
    assert_eq!(
        just_before.phase(),
        Phase::Failed,
        "not yet at the stamped second + TTL"
    );
    let at_real_end = decide(
        &never_used.0,
        &world().app(Readiness::Failed, "Degraded").0,
        &Timing::default(),
        real_end,
    );
    assert_eq!(
        at_real_end.phase(),
        Phase::Failed,
        "nor at the real creation + TTL"
    );
    let next_second = never_used.decide(&world().app(Readiness::Failed, "Degraded"), CREATED + 61);
    assert_eq!(
        next_second.phase(),
        Phase::Destroying,
        "late by under a second at most"
    );
}

/// The default lead of the `ExpiringSoon` warning, in seconds.
const LEAD: i64 = 10 * 60;

/// One row of the expiry warning table: what the decision at `now` warns of, when it
/// wakes, and what the status records.
struct WarningRow {
    name: &'static str,
    env: Env,
    world: World,
    now: i64,
    lead: SignedDuration,
    phase: Phase,
    /// The expiry instant warned of now.
    warns: Option<i64>,
    wake_at: Option<i64>,
    /// `status.expiryWarningAt`.
    warning_at: Option<i64>,
    /// `status.expiryWarnedFor`.
    warned_for: Option<i64>,
}

#[test]
fn expiry_warning_table() {
    let lead = SignedDuration::from_secs(LEAD);
    // Warm since CREATED with a TTL of 60 minutes.
    let expiry = CREATED + minutes(60);
    let warning = expiry - LEAD;
    // Never used: counted from the second after the whole-second creationTimestamp.
    let never_used_expiry = |ttl: i64| CREATED + 1 + minutes(ttl);
    let released = CREATED + 100;
    let rows = [
        WarningRow {
            name: "warm, before the lead: a timer at the warning instant",
            env: healthy_warm(),
            world: world(),
            now: warning - 1,
            lead,
            phase: Phase::Warm,
            warns: None,
            wake_at: Some(warning),
            warning_at: Some(warning),
            warned_for: None,
        },
        WarningRow {
            name: "warm, exactly the lead before expiry: warned now, then the expiry timer",
            env: healthy_warm(),
            world: world(),
            now: warning,
            lead,
            phase: Phase::Warm,
            warns: Some(expiry),
            wake_at: Some(expiry),
            warning_at: Some(warning),
            warned_for: Some(expiry),
        },
        WarningRow {
            name: "warm, already warned for this expiry: not again",
            env: healthy_warm().warned_for(expiry),
            world: world(),
            now: warning + 60,
            lead,
            phase: Phase::Warm,
            warns: None,
            wake_at: Some(expiry),
            warning_at: Some(warning),
            warned_for: Some(expiry),
        },
        WarningRow {
            name: "cooling, the operator was down at the warning instant: warned late, still before expiry",
            env: environment()
                .in_phase(Phase::Cooling)
                .last_used(CREATED)
                .health_since("Healthy", CREATED),
            world: world(),
            now: expiry - 1,
            lead,
            phase: Phase::Cooling,
            warns: Some(expiry),
            wake_at: Some(expiry),
            warning_at: Some(warning),
            warned_for: Some(expiry),
        },
        WarningRow {
            name: "warned for an earlier expiry, then the TTL was extended: re-armed, a timer at the new warning instant",
            env: healthy_warm().ttl_minutes(120).warned_for(expiry),
            world: world(),
            now: warning + 60,
            lead,
            phase: Phase::Warm,
            warns: None,
            wake_at: Some(CREATED + minutes(120) - LEAD),
            warning_at: Some(CREATED + minutes(120) - LEAD),
            warned_for: Some(expiry),
        },
        WarningRow {
            name: "warned for an earlier expiry, the TTL shortened into the lead: warned for the new expiry now",
            env: healthy_warm().ttl_minutes(30).warned_for(expiry),
            world: world(),
            now: CREATED + minutes(25),
            lead,
            phase: Phase::Warm,
            warns: Some(CREATED + minutes(30)),
            wake_at: Some(CREATED + minutes(30)),
            warning_at: Some(CREATED + minutes(30) - LEAD),
            warned_for: Some(CREATED + minutes(30)),
        },
        WarningRow {
            name: "a run released it, its TTL shorter than the lead: warned as soon as it cools",
            env: environment()
                .in_phase(Phase::Running)
                .last_used(CREATED)
                .held_by_status("run-1")
                .ttl_minutes(5)
                .warned_for(CREATED + minutes(5)),
            world: world(),
            now: released,
            lead,
            phase: Phase::Cooling,
            warns: Some(released + minutes(5)),
            wake_at: Some(released + minutes(5)),
            warning_at: Some(released + minutes(5) - LEAD),
            warned_for: Some(released + minutes(5)),
        },
        WarningRow {
            name: "held by a run: no expiry, so no warning and no timer",
            env: healthy_warm(),
            world: world().held_by("run-1"),
            now: warning + 1,
            lead,
            phase: Phase::Running,
            warns: None,
            wake_at: None,
            warning_at: None,
            warned_for: None,
        },
        WarningRow {
            name: "held by a run, warned before it was claimed: the record stays, nothing is due",
            env: healthy_warm().warned_for(expiry),
            world: world().held_by("run-1"),
            now: warning + 1,
            lead,
            phase: Phase::Running,
            warns: None,
            wake_at: None,
            warning_at: None,
            warned_for: Some(expiry),
        },
        WarningRow {
            name: "expired, never warned: teardown, too late for a warning",
            env: healthy_warm(),
            world: world(),
            now: expiry,
            lead,
            phase: Phase::Destroying,
            warns: None,
            wake_at: Some(expiry + TEARDOWN_RECHECK.as_secs()),
            warning_at: None,
            warned_for: None,
        },
        WarningRow {
            name: "destroy requested within the lead: teardown, no warning",
            env: healthy_warm(),
            world: world().teardown(TeardownRequest::Destroy),
            now: warning + 1,
            lead,
            phase: Phase::Destroying,
            warns: None,
            wake_at: Some(warning + 1 + TEARDOWN_RECHECK.as_secs()),
            warning_at: None,
            warned_for: None,
        },
        WarningRow {
            name: "provisioning, never used: it expires from its creation, so it is announced",
            env: environment()
                .ttl_minutes(20)
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED),
            world: world().app(Readiness::Progressing, "Progressing"),
            now: never_used_expiry(20) - LEAD,
            lead,
            phase: Phase::Provisioning,
            warns: Some(never_used_expiry(20)),
            wake_at: Some(never_used_expiry(20)),
            warning_at: Some(never_used_expiry(20) - LEAD),
            warned_for: Some(never_used_expiry(20)),
        },
        WarningRow {
            name: "failed: torn down at expiry all the same, so it is announced",
            env: environment().in_phase(Phase::Failed),
            world: world().app(Readiness::Failed, "Degraded"),
            now: never_used_expiry(60) - 1,
            lead,
            phase: Phase::Failed,
            warns: Some(never_used_expiry(60)),
            wake_at: Some(never_used_expiry(60)),
            warning_at: Some(never_used_expiry(60) - LEAD),
            warned_for: Some(never_used_expiry(60)),
        },
        WarningRow {
            name: "the warning off (a zero lead): the expiry timer only",
            env: healthy_warm(),
            world: world(),
            now: expiry - 1,
            lead: SignedDuration::ZERO,
            phase: Phase::Warm,
            warns: None,
            wake_at: Some(expiry),
            warning_at: None,
            warned_for: None,
        },
        WarningRow {
            name: "a one-minute lead: a timer a minute before expiry",
            env: healthy_warm(),
            world: world(),
            now: warning,
            lead: SignedDuration::from_mins(1),
            phase: Phase::Warm,
            warns: None,
            wake_at: Some(expiry - 60),
            warning_at: Some(expiry - 60),
            warned_for: None,
        },
        WarningRow {
            name: "destroyed: nothing",
            env: healthy_warm().in_phase(Phase::Destroyed),
            world: world().no_namespace().no_app(),
            now: warning + 1,
            lead,
            phase: Phase::Destroyed,
            warns: None,
            wake_at: None,
            warning_at: None,
            warned_for: None,
        },
    ];
    for row in rows {
        let decision = row.env.decide_warning(&row.world, row.now, row.lead);
        let status = &decision.status;
        assert_eq!(decision.phase(), row.phase, "{}: phase", row.name);
        assert_eq!(
            decision.expiry_warning,
            row.warns.map(at),
            "{}: warns",
            row.name
        );
        assert_eq!(decision.wake_at, row.wake_at.map(at), "{}: wake", row.name);
        assert_eq!(
            status.expiry_warning_at,
            row.warning_at.map(|s| Time(at(s))),
            "{}: expiryWarningAt",
            row.name
        );
        assert_eq!(
            status.expiry_warned_for,
            row.warned_for.map(|s| Time(at(s))),
            "{}: expiryWarnedFor",
            row.name
        );
        assert!(
            decision.effects.is_empty() || row.warns.is_none(),
            "{}: the warning is an event, not an effect",
            row.name
        );
        if let Some(expiry) = row.warns {
            assert_eq!(status.expires_at, Some(Time(at(expiry))), "{}", row.name);
            assert!(
                expiring_soon(status),
                "{}: expiring soon once warned",
                row.name
            );
        }
    }
}

#[test]
fn the_warning_goes_out_once_per_expiry_instant_and_again_when_it_moves() {
    let expiry = CREATED + minutes(60);
    let warning = expiry - LEAD;
    // Warm, with a timer at the warning instant.
    let first = healthy_warm().decide(&world(), CREATED + 10);
    assert_eq!(
        (first.expiry_warning, first.wake_at),
        (None, Some(at(warning)))
    );
    assert!(!expiring_soon(&first.status));
    // The timer fires: warned, and the status says for which expiry.
    let warm = healthy_warm().after(&first);
    let warned = warm.decide(&world(), warning);
    assert_eq!(warned.expiry_warning, Some(at(expiry)));
    assert!(expiring_soon(&warned.status));
    // Decided again — another event, or a restarted operator reading the stored status:
    // not warned again, and nothing to write.
    let mut restarted = warm.clone();
    restarted.0.status = Some(stored(&warned));
    for now in [warning, warning + 1, expiry - 1] {
        let again = restarted.decide(&world(), now);
        assert_eq!(again.expiry_warning, None, "at {now}");
        assert_eq!(again.status, stored(&warned), "no second write at {now}");
        assert_eq!(again.wake_at, Some(at(expiry)));
    }
    // A TTL extension moves the expiry: re-armed, warned again at the new instant.
    let extended = restarted.clone().ttl_minutes(120);
    let later_expiry = CREATED + minutes(120);
    let moved = extended.decide(&world(), warning + 5);
    assert_eq!(moved.expiry_warning, None);
    assert_eq!(moved.wake_at, Some(at(later_expiry - LEAD)));
    assert!(
        !expiring_soon(&moved.status),
        "warned for the old expiry only"
    );
    let rewarned = extended.after(&moved).decide(&world(), later_expiry - LEAD);
    assert_eq!(rewarned.expiry_warning, Some(at(later_expiry)));
    // A run claims it and releases it: the new idle period is announced in its turn.
    let claimed = restarted.decide(&world().held_by("run-1"), warning + 10);
    assert!(
        !expiring_soon(&claimed.status),
        "a held environment does not expire"
    );
    let running = restarted.after(&claimed);
    let release = warning + 20;
    let cooling = running.decide(&world(), release);
    assert_eq!(cooling.phase(), Phase::Cooling);
    assert_eq!(cooling.expiry_warning, None);
    assert_eq!(cooling.wake_at, Some(at(release + minutes(60) - LEAD)));
    let due = running
        .after(&cooling)
        .decide(&world(), release + minutes(60) - LEAD);
    assert_eq!(due.expiry_warning, Some(at(release + minutes(60))));
}

#[test]
fn expiring_soon_only_once_warned_for_the_current_expiry_and_short_of_teardown() {
    let expiry = CREATED + minutes(60);
    let cases = [
        ("never warned", healthy_warm(), false),
        (
            "warned for this expiry",
            healthy_warm().warned_for(expiry),
            true,
        ),
        (
            "warned for an earlier expiry",
            healthy_warm().warned_for(expiry - 5),
            false,
        ),
        (
            "held: no expiry",
            healthy_warm().warned_for(expiry).in_phase(Phase::Running),
            false,
        ),
        (
            "tearing down",
            healthy_warm()
                .warned_for(expiry)
                .in_phase(Phase::Destroying),
            false,
        ),
        (
            "destroyed",
            healthy_warm().warned_for(expiry).in_phase(Phase::Destroyed),
            false,
        ),
    ];
    for (case, mut env, soon) in cases {
        let status = env.status();
        if status.phase != Some(Phase::Running) {
            status.expires_at = Some(Time(at(expiry)));
        }
        assert_eq!(expiring_soon(status), soon, "{case}");
    }
}

/// What an environment sees through its life, weighted towards idling: mostly idle and
/// healthy, sometimes held by a run, degraded or missing its app, rarely torn down.
fn a_life() -> impl Strategy<Value = World> {
    prop_oneof![
        8 => Just(world()),
        3 => Just(world().held_by("run-1")),
        1 => Just(world().app(Readiness::Degraded, "Degraded")),
        1 => Just(world().no_app()),
        1 => Just(world().teardown(TeardownRequest::Destroy)),
    ]
}

proptest! {
    /// Whatever happens, the warning goes out at most once per expiry instant while that
    /// instant stands (a TTL change that moves it re-arms the warning, also when a later
    /// change moves it back), only within the lead before that instant, and only for an
    /// idle environment that is not being torn down; and it is recorded in the status it
    /// goes out with.
    #[test]
    fn the_warning_goes_out_at_most_once_per_expiry_and_only_within_the_lead(
        steps in proptest::collection::vec(
            (a_life(), 0i64..400, proptest::option::weighted(0.1, 5u32..30)),
            1..60,
        )
    ) {
        let lead = SignedDuration::from_secs(LEAD);
        let mut env = healthy_warm().ttl_minutes(20);
        let mut now = CREATED;
        let mut warned = std::collections::BTreeSet::new();
        for (world, elapsed, ttl) in steps {
            now += elapsed;
            if let Some(ttl) = ttl {
                env = env.ttl_minutes(ttl);
            }
            let decision = env.decide_warning(&world, now, lead);
            let expires_before = env.0.status.as_ref().and_then(|s| s.expires_at.clone());
            if decision.status.expires_at != expires_before {
                warned.clear();
            }
            if let Some(expiry) = decision.expiry_warning {
                prop_assert!(warned.insert(expiry), "warned twice for {}", expiry);
                prop_assert!(at(now) >= expiry - lead && at(now) < expiry);
                prop_assert!(!decision.phase().is_tearing_down());
                prop_assert!(decision.status.claimed_by.is_empty());
                prop_assert_eq!(decision.status.expires_at.clone(), Some(Time(expiry)));
                prop_assert_eq!(decision.status.expiry_warned_for.clone(), Some(Time(expiry)));
            }
            if let Some(wake_at) = decision.wake_at {
                prop_assert!(wake_at > at(now), "a timer already due would spin");
            }
            let mut stored_env = env.clone();
            stored_env.0.status = Some(stored(&decision));
            env = stored_env;
        }
    }
}

#[test]
fn a_transient_phase_counts_from_the_timestamp_that_starts_it() {
    let mut teardown = healthy_warm().in_phase(Phase::Destroying);
    teardown.status().teardown_started_at = Some(Time(at(CREATED + 40)));
    let cases = [
        (
            "cold: from its creation",
            environment(),
            Some((Phase::Cold, CREATED)),
        ),
        (
            "provisioning: from provisioningStartedAt",
            environment()
                .in_phase(Phase::Provisioning)
                .provisioning_since(CREATED + 5),
            Some((Phase::Provisioning, CREATED + 5)),
        ),
        (
            "degraded: from when its app's health changed",
            healthy_warm()
                .in_phase(Phase::Degraded)
                .health_since("Degraded", CREATED + 30),
            Some((Phase::Degraded, CREATED + 30)),
        ),
        (
            "destroying: from teardownStartedAt",
            teardown,
            Some((Phase::Destroying, CREATED + 40)),
        ),
        (
            "provisioning, start unknown",
            environment()
                .in_phase(Phase::Provisioning)
                .never_provisioned(),
            None,
        ),
    ];
    for (case, env, since) in cases {
        assert_eq!(
            transient_since(&env.0),
            since.map(|(phase, s)| (phase, at(s))),
            "{case}"
        );
    }
    for phase in Phase::ALL {
        let resting = healthy_warm()
            .in_phase(phase)
            .provisioning_since(CREATED)
            .health_since("Healthy", CREATED);
        assert_eq!(
            transient_since(&resting.0).is_some(),
            Phase::TRANSIENT.contains(&phase) && phase != Phase::Destroying,
            "{phase}"
        );
    }
}

/// Ready and idle since [`CREATED`], sleeping after 30 idle minutes, its TTL 60.
fn sleepy() -> Env {
    healthy_warm().sleep_after_minutes(30)
}

#[test]
fn sleep_table() {
    struct Row {
        name: &'static str,
        env: Env,
        world: World,
        now: i64,
        phase: Phase,
        ready: (&'static str, &'static str),
        effects: &'static [Effect],
        /// Past the sleep instant, the next is the `ExpiringSoon` warning, 10 minutes
        /// before the TTL runs out.
        wake_at: Option<i64>,
    }
    let asleep = sleepy().in_phase(Phase::Sleeping);
    let rows = [
        Row {
            name: "warm, idle short of sleepAfter: warm, looks again when it is due",
            env: sleepy(),
            world: world().generated_app(),
            now: CREATED + minutes(29),
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
            wake_at: Some(CREATED + minutes(30)),
        },
        Row {
            name: "warm, idle for sleepAfter: sleeps, its ApplicationSet told",
            env: sleepy(),
            world: world().generated_app(),
            now: CREATED + minutes(30),
            phase: Phase::Sleeping,
            ready: ("False", reason::SLEEPING),
            effects: &[Effect::RefreshGenerator],
            wake_at: Some(CREATED + minutes(50)),
        },
        Row {
            name: "cooling, idle for sleepAfter: sleeps",
            env: sleepy().in_phase(Phase::Cooling),
            world: world().generated_app(),
            now: CREATED + minutes(31),
            phase: Phase::Sleeping,
            ready: ("False", reason::SLEEPING),
            effects: &[Effect::RefreshGenerator],
            wake_at: Some(CREATED + minutes(50)),
        },
        Row {
            name: "an app TestMesh does not generate never sleeps: GitOps would revert it",
            env: sleepy(),
            world: world(),
            now: CREATED + minutes(45),
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
            wake_at: Some(CREATED + minutes(50)),
        },
        Row {
            name: "no sleepAfterMinutes: never sleeps",
            env: healthy_warm(),
            world: world().generated_app(),
            now: CREATED + minutes(45),
            phase: Phase::Warm,
            ready: ("True", reason::AVAILABLE),
            effects: &[],
            wake_at: Some(CREATED + minutes(50)),
        },
        Row {
            name: "held: never sleeps",
            env: sleepy().in_phase(Phase::Running).held_by_status("run"),
            world: world().generated_app().held_by("run"),
            now: CREATED + minutes(45),
            phase: Phase::Running,
            ready: ("True", reason::IN_USE),
            effects: &[],
            wake_at: None,
        },
        Row {
            name: "sleeping, nobody asks: sleeps on, whatever the scaled-down app says",
            env: asleep.clone(),
            world: world()
                .generated_app()
                .app(Readiness::Progressing, "Progressing"),
            now: CREATED + minutes(40),
            phase: Phase::Sleeping,
            ready: ("False", reason::SLEEPING),
            effects: &[],
            wake_at: Some(CREATED + minutes(50)),
        },
        Row {
            name: "sleeping, a run waits: bound at once and woken",
            env: asleep.clone(),
            world: world()
                .generated_app()
                .waiting(&["run"])
                .synced_at(CREATED + minutes(30)),
            now: CREATED + minutes(40),
            phase: Phase::Provisioning,
            ready: ("False", reason::WAKING),
            effects: &[Effect::RefreshGenerator],
            wake_at: Some(CREATED + minutes(40) + minutes(30)),
        },
        Row {
            name: "sleeping past its TTL: torn down (the TTL kept counting)",
            env: asleep.clone(),
            world: world().generated_app(),
            now: CREATED + minutes(60),
            phase: Phase::Destroying,
            ready: ("False", reason::EXPIRED),
            effects: &[Effect::RefreshGenerator],
            wake_at: None,
        },
    ];
    for row in rows {
        let decision = row.env.decide(&row.world, row.now);
        assert_eq!(decision.phase(), row.phase, "{}: phase", row.name);
        assert_eq!(ready(&decision), row.ready, "{}: Ready", row.name);
        assert_eq!(decision.effects, row.effects, "{}: effects", row.name);
        if row.phase != Phase::Destroying {
            assert_eq!(
                decision.wake_at,
                row.wake_at.map(at),
                "{}: wake_at",
                row.name
            );
        }
    }
}

#[test]
fn a_woken_environment_is_ready_only_once_its_app_synced_since_the_wake() {
    let woken = sleepy().in_phase(Phase::Sleeping).decide(
        &world().generated_app().waiting(&["run"]),
        CREATED + minutes(40),
    );
    assert_eq!(woken.status.claimed_by, ["run"], "bound at once");
    assert_eq!(woken.status.woken_at, Some(Time(at(CREATED + minutes(40)))));
    let waking = sleepy().after(&woken);
    let held = || world().generated_app().held_by("run");
    for (case, world, phase, reason) in [
        (
            "Healthy, but synced asleep",
            held().synced_at(CREATED + minutes(30)),
            Phase::Provisioning,
            reason::WAKING,
        ),
        ("never synced", held(), Phase::Provisioning, reason::WAKING),
        (
            "syncing the woken spec",
            held()
                .app(Readiness::Progressing, "Progressing")
                .generated_app()
                .synced_at(CREATED + minutes(40)),
            Phase::Provisioning,
            reason::WAKING,
        ),
        (
            "synced in the second of the wake, Healthy",
            held().synced_at(CREATED + minutes(40)),
            Phase::Running,
            reason::IN_USE,
        ),
        (
            "synced after the wake, Healthy",
            held().synced_at(CREATED + minutes(40) + 3),
            Phase::Running,
            reason::IN_USE,
        ),
    ] {
        let decision = waking.decide(&world, CREATED + minutes(40) + 5);
        assert_eq!(
            (decision.phase(), ready(&decision).1),
            (phase, reason),
            "{case}"
        );
    }
}

#[test]
fn a_later_provisioning_attempt_is_not_a_wake() {
    let woken_then_failed = sleepy()
        .in_phase(Phase::Failed)
        .provisioning_since(CREATED + minutes(50));
    let mut env = woken_then_failed;
    env.status().woken_at = Some(Time(at(CREATED + minutes(40))));
    let decision = env.decide(
        &world()
            .generated_app()
            .app(Readiness::Progressing, "Progressing"),
        CREATED + minutes(51),
    );
    assert_ne!(ready(&decision).1, reason::WAKING);
}
