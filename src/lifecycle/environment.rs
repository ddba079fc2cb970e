//! The environment state machine: from (spec, status, what was observed, now) to the next
//! status, the effects to apply, and when to look again.
//!
//! This is where every lifecycle decision is made. It reads no clock and calls no API:
//! the reconciler observes the world into an [`Observed`], calls [`decide`], applies the
//! [`Effect`]s, writes the status if it changed, and requeues at [`Decision::wake_at`].
//! Timers are derived from timestamps stored in the status, so a restarted operator
//! re-derives every deadline.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, ConditionStatus, Verdict, reason};
use super::generator;
use super::observation::Source;
use super::phase::Phase;
use super::routing::Routing;
use super::ttl::{self, Ttl};
use crate::resources::{
    ProviderStatus, ROUTING_CONFIG_MAP, TestEnvironment, TestEnvironmentStatus,
};

/// Deadlines that bound provisioning, so it fails with a reason instead of hanging, and
/// the notice given before an idle environment expires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Longest time from the start of provisioning to ready.
    pub provisioning_timeout: SignedDuration,
    /// How long the provider's app may stay Degraded before the environment fails.
    pub degraded_grace: SignedDuration,
    /// How long the provider's app may be missing before the environment fails.
    pub missing_grace: SignedDuration,
    /// How long before its idle expiry an environment is announced as expiring soon (the
    /// `ExpiringSoon` event); zero announces nothing.
    pub expiry_warning: SignedDuration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            provisioning_timeout: SignedDuration::from_mins(30),
            degraded_grace: SignedDuration::from_mins(5),
            missing_grace: SignedDuration::from_mins(2),
            expiry_warning: SignedDuration::from_mins(10),
        }
    }
}

/// The environment's namespace as observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    Absent,
    /// Created by this environment (its UID is on the namespace).
    Owned {
        terminating: bool,
        /// What keeps a terminating namespace alive (from its conditions), if known.
        blockers: Option<String>,
        /// When it was created (`creationTimestamp`), if known.
        created_at: Option<Timestamp>,
    },
    /// Exists, but this environment did not create it: never adopted, never deleted.
    NotOwned,
    /// The operator's namespace policy refuses this name (system namespace, not in the
    /// allow-list); the message says which rule.
    Refused(String),
}

/// Whether the provider's app is ready to serve runs, in provider-neutral terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Progressing,
    Degraded,
    /// A failure the provider reports as final for this attempt (failed sync, error
    /// condition, stalled reconciliation).
    Failed,
}

/// Whether the operator may delete the provider's app on teardown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AppDeletion {
    /// It deploys into this environment's namespace and nothing else re-creates it.
    Deletable,
    /// Deletion was requested and the provider is pruning.
    InProgress,
    /// Must not be deleted; the message says why (e.g. an ApplicationSet owns it).
    Retained(String),
    /// Minted by an ApplicationSet from TestMesh's generator for the environment of this
    /// UID ([`super::generator`]): its ApplicationSet deletes it once the environment
    /// leaves the generator's list.
    Generated {
        application_set: String,
        environment_uid: String,
    },
}

/// The provider's app as observed and interpreted by its adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppReport {
    pub readiness: Readiness,
    /// Health in the provider's own words (Argo CD: Healthy, Degraded, …).
    pub health: String,
    pub sync: Option<String>,
    pub revision: Option<String>,
    /// Why it is (not) ready, for users.
    pub message: String,
    pub deletion: AppDeletion,
    /// The provider's last sync attempt failed and the provider will not try again soon
    /// by itself.
    pub failed_attempt: Option<FailedAttempt>,
    /// The app creates its destination namespace when it syncs (Argo CD's
    /// `CreateNamespace=true`), which then exists without this environment's proof of
    /// ownership.
    pub creates_namespace: bool,
    /// When the provider's last successful sync started (Argo CD's
    /// `operationState.startedAt`, whole seconds), if it records one.
    pub synced_at: Option<Timestamp>,
}

/// A failed sync attempt, as the provider records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedAttempt {
    /// When the failed operation started.
    pub started_at: Option<Timestamp>,
    /// The provider waits out a retry backoff before trying again (Argo CD's automated
    /// sync retries five times over about five minutes), instead of having given up.
    pub backing_off: bool,
    /// It failed because the environment's namespace did not exist.
    pub namespace_missing: bool,
}

#[cfg(test)]
impl AppReport {
    /// A report of an app in `health`, synced at `abc123`, deletable: what the tests of
    /// the core start from.
    pub fn of(readiness: Readiness, health: &str) -> AppReport {
        AppReport {
            readiness,
            health: health.into(),
            sync: Some("Synced".into()),
            revision: Some("abc123".into()),
            message: format!("app is {health}"),
            deletion: AppDeletion::Deletable,
            failed_attempt: None,
            creates_namespace: false,
            synced_at: None,
        }
    }
}

/// The provider's app, if it exists.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per observation, on the stack for one decision: boxing would buy nothing"
)]
pub enum AppState {
    Missing,
    Present(AppReport),
}

/// Why teardown was asked for from outside the state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeardownRequest {
    /// An explicit destroy that keeps the record.
    Destroy,
    /// The TestEnvironment object is being deleted (finalizer).
    Delete,
}

/// Where teardown stands with the provider's app while it still exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppStep {
    /// The operator deletes it: on the next look it is gone, or its provider is deleting it.
    Deleting,
    /// The provider is deleting it and pruning what it deployed: a wait on someone else.
    ProviderDeleting,
    /// Its ApplicationSet deletes it once the generator no longer lists the environment.
    GeneratorDeleting,
}

/// Everything the reconciler observed about one environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub namespace: NamespaceState,
    pub app: AppState,
    /// Claims that hold the environment and still want it (not deleted, not finished).
    pub holders: Vec<String>,
    /// Claims waiting for the environment, oldest first
    /// ([`super::claims::queue`] without the holders).
    pub waiting: Vec<String>,
    pub teardown: Option<TeardownRequest>,
    /// What deleting the provider's app will not do, when the provider says so (a
    /// suspended Flux Kustomization prunes nothing); shown while tearing down.
    pub teardown_note: Option<String>,
    /// The routing policy computed from the Services really deployed.
    pub routing: Routing,
    /// The namespace's routing ConfigMap.
    pub routing_map: RoutingMap,
    /// The ApplicationSets generating from TestMesh that have a generation pending (one
    /// asked for has not ended). Read fresh, and only for an environment in teardown:
    /// what decides whether its namespace may go.
    pub generators_pending: Vec<String>,
    /// Some ApplicationSet generates from TestMesh (read with
    /// [`Observed::generators_pending`]).
    pub generating_from_testmesh: bool,
}

/// The ConfigMap `testmesh-routing` in the environment's namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoutingMap {
    Absent,
    /// The operator's (it carries the operator's label), publishing this policy.
    Ours(BTreeMap<String, String>),
    /// Someone else's: never written, never deleted.
    Foreign,
}

/// A change the reconciler must make in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    CreateNamespace,
    /// Ask the provider to sync its app now, as its own tools do (`argocd app sync`): its
    /// last attempt failed before the namespace existed, and it does not retry by itself.
    SyncApp,
    /// End the retry backoff of the app's failed attempt (`argocd app terminate-op`): it
    /// failed because the namespace did not exist, which it does now; [`Effect::SyncApp`]
    /// follows once the attempt has ended.
    EndAppRetry,
    DeleteApp,
    DeleteNamespace,
    /// Create the namespace's routing ConfigMap with the status's routing policy.
    CreateRoutingMap,
    /// Bring the operator's routing ConfigMap up to date with the status's policy.
    PublishRouting,
    /// Delete the operator's routing ConfigMap, which nobody asks for any more.
    UnpublishRouting,
    /// Ask the ApplicationSets that generate from TestMesh to list again now
    /// ([`super::generator`]) instead of at their next poll: what they list for this
    /// environment changed with the status.
    RefreshGenerator,
}

impl Effect {
    /// Applied after the status: the routing ConfigMap, which no phase depends on (a
    /// failure to publish it holds up nothing else), and the generator's refresh, which
    /// makes ApplicationSets list what the written status says.
    pub fn follows_status(self) -> bool {
        match self {
            Effect::CreateRoutingMap
            | Effect::PublishRouting
            | Effect::UnpublishRouting
            | Effect::RefreshGenerator => true,
            Effect::CreateNamespace
            | Effect::SyncApp
            | Effect::EndAppRetry
            | Effect::DeleteApp
            | Effect::DeleteNamespace => false,
        }
    }

    /// Whether this effect acts on what the observation read, so is applied only once
    /// that was read fresh. The generator's refresh is the one that does not: it reads
    /// the ApplicationSets it asks when it asks them, and it asks them to list what the
    /// status just written says, which that write's resourceVersion made true.
    pub fn acts_on_observation(self) -> bool {
        self != Effect::RefreshGenerator
    }
}

/// In which order the reconciler writes a decision: the product's sequencing rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Applied before the status, in order (a namespace before the status that says it
    /// exists; an app deleted before the status that says it is gone).
    pub before_status: Vec<Effect>,
    /// Applied after the status (the routing ConfigMap: no phase depends on it, so a
    /// failure to publish it holds up nothing).
    pub after_status: Vec<Effect>,
    /// Only the status (and what follows it) is written now, and the environment is
    /// decided again at once from what it reads back: entering teardown is recorded
    /// before anything is deleted, so a stale view (say, one that missed a claim binding
    /// it) can never delete anything.
    pub status_first: bool,
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The complete next status; write it only if it differs from the current one.
    pub status: TestEnvironmentStatus,
    /// Changes to apply, in order, before writing the status.
    pub effects: Vec<Effect>,
    /// When to decide again if nothing is observed to change before.
    pub wake_at: Option<Timestamp>,
    /// Publish the `ExpiringSoon` warning for this expiry instant, once the status (which
    /// records it in `expiryWarnedFor`) is written.
    pub expiry_warning: Option<Timestamp>,
}

impl Decision {
    pub fn phase(&self) -> Phase {
        self.status.phase.unwrap_or(Phase::Cold)
    }

    /// Whether a decision made again right after this one created the namespace (`again`)
    /// is written instead of this one: when the app was already healthy the environment is
    /// ready in that same pass, and one status write says so instead of two. Anything
    /// short of ready waits for the next pass, which sees the namespace for sure: the app
    /// may have failed only for want of it, and `cold → failed` would skip what happened.
    pub fn superseded_after_create(&self, again: &Decision) -> bool {
        self.effects.contains(&Effect::CreateNamespace) && again.phase().is_serving()
    }

    /// Whether this decision begins a teardown that the stored status `current` has not.
    fn enters_teardown(&self, current: &TestEnvironmentStatus) -> bool {
        self.phase().is_tearing_down() && !current.phase.unwrap_or(Phase::Cold).is_tearing_down()
    }

    /// The order in which to write this decision, from `current` (the stored status).
    pub fn plan(&self, current: &TestEnvironmentStatus) -> Plan {
        let (after_status, before_status): (Vec<Effect>, Vec<Effect>) = self
            .effects
            .iter()
            .partition(|effect| effect.follows_status());
        if self.enters_teardown(current) && !before_status.is_empty() {
            return Plan {
                before_status: Vec::new(),
                after_status,
                status_first: true,
            };
        }
        Plan {
            before_status,
            after_status,
            status_first: false,
        }
    }

    /// How fresh a read this decision, made from the caches, must be made again from
    /// before anything is written. A decision that writes something other than the
    /// environment's own status (creates, deletes, publishes, asks the provider to sync)
    /// is made again from the API server; one that lets go of a run that held the
    /// environment, from the caches and its holders read by name. A cache that has not
    /// seen an object yet proves nothing about its absence, and acting on a stale view is
    /// how operators delete twice or hand one environment to two runs. Letting a run go
    /// writes only this status: what it needs proven is that the run is gone, and the
    /// namespace and app it also reads change nothing the write's resourceVersion does
    /// not guard.
    ///
    /// What counts is what this pass writes ([`Decision::plan`]). Entering teardown
    /// without letting a run go writes its status first ([`Plan::status_first`]) and
    /// decides every delete again on the next pass, fresh; and nothing a fresh read
    /// returns could change the status it writes. An idle environment expires by its own
    /// status (no claim can bind an expired one, and only the claims it holds count), a
    /// destroy or delete is on the object itself, and a run's binding is a write to this
    /// status, which the write's resourceVersion would refuse. So teardown starts one
    /// status write after `expiresAt`, not after a round of reads.
    pub fn fresh_read(&self, current: &TestEnvironmentStatus) -> Source {
        let plan = self.plan(current);
        let acts_on_observation = plan
            .before_status
            .iter()
            .chain(&plan.after_status)
            .any(|effect| effect.acts_on_observation());
        let lets_go = current
            .claimed_by
            .iter()
            .any(|holder| !self.status.claimed_by.contains(holder));
        if acts_on_observation {
            Source::ApiServer
        } else if lets_go {
            Source::FreshHolders
        } else {
            Source::Cache
        }
    }
}

/// Decides the next status of `environment` from what was observed at `now`.
pub fn decide(
    environment: &TestEnvironment,
    observed: &Observed,
    timing: &Timing,
    now: Timestamp,
) -> Decision {
    let mut decision = decide_status(environment, observed, timing, now);
    let current = environment.status.clone().unwrap_or_default();
    if generator::listing_changes(environment, &current, &decision.status) {
        decision.effects.push(Effect::RefreshGenerator);
    }
    decision
}

/// [`decide`], but for the generator's refresh.
fn decide_status(
    environment: &TestEnvironment,
    observed: &Observed,
    timing: &Timing,
    now: Timestamp,
) -> Decision {
    let current = environment.status.clone().unwrap_or_default();
    let previous = current.phase.unwrap_or(Phase::Cold);
    let generation = environment.metadata.generation.unwrap_or_default();
    let mut next = current.clone();
    next.observed_generation = Some(generation);
    next.provider = Some(provider_status(
        current.provider.as_ref(),
        &observed.app,
        now,
    ));
    let mut decision = Decision {
        status: next,
        effects: Vec::new(),
        wake_at: None,
        expiry_warning: None,
    };
    let stored_ready = environment
        .status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY));
    let step = Step {
        generation,
        now,
        timing,
        observed,
        ready_before: stored_ready.is_some_and(|c| c.status == ConditionStatus::True.as_str()),
        ready_reason: stored_ready.map(|c| c.reason.as_str()),
        publish_config_map: environment
            .spec
            .template
            .routing
            .as_ref()
            .is_some_and(|r| r.publish_config_map),
        sleep_after: environment
            .spec
            .template
            .sleep_after_minutes
            .map(|minutes| SignedDuration::from_mins(i64::from(minutes))),
        listed_before: generator::listed(environment, &current),
    };

    if previous == Phase::Destroyed {
        // The record keeps the app as last seen before the end: an app teardown kept (an
        // ApplicationSet's, say) lives on, but is no longer this environment's.
        decision.status.provider = current.provider.clone();
        step.stay_destroyed(&mut decision);
        return decision;
    }

    let expires_at = idle_expiry(environment, &current, now);
    let mut holders = observed.holders.clone();
    let idle_and_expired =
        holders.is_empty() && previous != Phase::Running && ttl::is_expired(expires_at, now);
    let bindable = takes_runs(previous, observed.teardown.is_some(), idle_and_expired);
    if holders.is_empty()
        && bindable
        && let Some(next_run) = observed.waiting.first()
    {
        // Exclusive: the head of the queue, and only when nobody holds it.
        holders.push(next_run.clone());
    }
    if holders != current.claimed_by {
        let bound = !holders.is_empty();
        decision.status.held_since = bound.then_some(Time(now));
        decision.status.holder_reused = bound.then_some(previous.is_serving());
    }
    decision.status.claimed_by = holders.clone();
    let held = !holders.is_empty();

    let teardown_reason = match (previous, observed.teardown) {
        (_, Some(TeardownRequest::Delete)) => Some(reason::DELETED),
        (_, Some(TeardownRequest::Destroy)) => Some(reason::DESTROY_REQUESTED),
        (Phase::Destroying, None) => Some(
            conditions::find(&current.conditions, conditions::READY)
                .map(|c| teardown_reason_of(&c.reason))
                .unwrap_or(reason::EXPIRED),
        ),
        // A run that just ended starts its idle clock now (cooling), not at the last use.
        (Phase::Running, None) => None,
        (_, None) if !held && ttl::is_expired(expires_at, now) => Some(reason::EXPIRED),
        _ => None,
    };
    if let Some(cause) = teardown_reason {
        keep_last_seen_app(&mut decision, &current, &observed.app);
        step.tear_down(&mut decision, cause);
        return decision;
    }

    let was_held = previous == Phase::Running
        || (previous == Phase::Degraded && !current.claimed_by.is_empty());
    if was_held && (holders.is_empty() || holders != current.claimed_by) {
        // A run released it (another may have taken it at once): its idle clock, or the
        // next run's, starts now.
        decision.status.last_used_at = Some(Time(now));
    }
    step.run(&mut decision, previous, &holders);
    step.route(&mut decision);
    if held {
        // A held environment does not expire, so it is not expiring soon either.
        decision.status.expires_at = None;
        decision.status.expiry_warning_at = None;
    } else {
        let expires_at = idle_expiry(environment, &decision.status, now);
        decision.wake_at = Some(earliest(decision.wake_at, expires_at));
        decision.status.expires_at = Some(Time(expires_at));
        step.warn_of_expiry(&mut decision, expires_at);
    }
    decision
}

/// Whether an environment with `status` is expiring soon: the operator has published
/// the `ExpiringSoon` warning for its current expiry instant, and it is not torn down yet.
pub fn expiring_soon(status: &TestEnvironmentStatus) -> bool {
    !status.phase.unwrap_or(Phase::Cold).is_tearing_down()
        && status.expires_at.is_some()
        && status.expiry_warned_for == status.expires_at
}

/// Once teardown has begun, an app that is gone leaves its last observed summary in the
/// status: teardown deleted it (or it was gone already), the record keeps what was
/// deployed, and the app's disappearance costs no status write of its own.
fn keep_last_seen_app(decision: &mut Decision, current: &TestEnvironmentStatus, app: &AppState) {
    if *app == AppState::Missing && current.provider.is_some() {
        decision.status.provider = current.provider.clone();
    }
}

/// Whether an environment in `phase` takes a run: not once teardown is asked for or has
/// begun, nor once its idle TTL has run out.
fn takes_runs(phase: Phase, teardown_requested: bool, idle_and_expired: bool) -> bool {
    matches!(
        phase,
        Phase::Cold
            | Phase::Provisioning
            | Phase::Warm
            | Phase::Running
            | Phase::Cooling
            | Phase::Sleeping
            | Phase::Degraded
    ) && !teardown_requested
        && !idle_and_expired
}

/// Whether [`decide`] binds the head of the environment's queue as soon as it is run:
/// nobody holds the environment and it takes runs. From the environment object alone,
/// for the claim side ([`super::claims::decide_claim`]), which writes nothing for a claim
/// about to be bound.
pub fn binds_at_once(environment: &TestEnvironment, now: Timestamp) -> bool {
    let unknown = TestEnvironmentStatus::default();
    let status = environment.status.as_ref().unwrap_or(&unknown);
    let phase = status.phase.unwrap_or(Phase::Cold);
    let idle_and_expired =
        phase != Phase::Running && ttl::is_expired(idle_expiry(environment, status, now), now);
    status.claimed_by.is_empty()
        && takes_runs(phase, teardown_requested(environment), idle_and_expired)
}

/// Why teardown was asked for, if it was: the object is being deleted, or `spec.destroy`
/// is set.
pub fn teardown_request(environment: &TestEnvironment) -> Option<TeardownRequest> {
    if environment.metadata.deletion_timestamp.is_some() {
        Some(TeardownRequest::Delete)
    } else if environment.spec.destroy {
        Some(TeardownRequest::Destroy)
    } else {
        None
    }
}

/// Teardown was asked for ([`teardown_request`]).
pub fn teardown_requested(environment: &TestEnvironment) -> bool {
    teardown_request(environment).is_some()
}

/// Teardown was asked for, has begun or is done.
pub fn tearing_down(environment: &TestEnvironment) -> bool {
    teardown_requested(environment)
        || environment
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(Phase::is_tearing_down)
}

/// The transient phase ([`Phase::TRANSIENT`]) `environment` is in and since when, by the
/// timestamp that starts it: `cold` from its creation, `provisioning` from
/// `provisioningStartedAt`, `degraded` from when its app's health changed
/// (`provider.healthSince`), `destroying` from `teardownStartedAt`. `None` in the other
/// phases, or when that timestamp is missing.
pub fn transient_since(environment: &TestEnvironment) -> Option<(Phase, Timestamp)> {
    let status = environment.status.as_ref();
    let phase = status.and_then(|s| s.phase).unwrap_or(Phase::Cold);
    let since = match phase {
        Phase::Cold => environment.metadata.creation_timestamp.as_ref(),
        Phase::Provisioning => status?.provisioning_started_at.as_ref(),
        Phase::Degraded => status?.provider.as_ref()?.health_since.as_ref(),
        Phase::Destroying => status?.teardown_started_at.as_ref(),
        Phase::Warm
        | Phase::Running
        | Phase::Cooling
        | Phase::Sleeping
        | Phase::Failed
        | Phase::Destroyed => None,
    }?;
    Some((phase, since.0))
}

/// When an idle environment with `status` expires: TTL after its last use, or after its
/// creation if it was never used (so an environment nobody claims cannot live forever).
fn idle_expiry(
    environment: &TestEnvironment,
    status: &TestEnvironmentStatus,
    now: Timestamp,
) -> Timestamp {
    let idle_since = match (
        &status.last_used_at,
        &environment.metadata.creation_timestamp,
    ) {
        (Some(last_used), _) => last_used.0,
        (None, Some(created)) => created_no_earlier_than(created.0),
        (None, None) => now,
    };
    let ttl = Ttl::from_minutes(environment.spec.template.ttl_minutes);
    ttl::expires_at(idle_since, ttl)
}

/// The latest instant an object stamped `creationTimestamp` may have been created at: the
/// API server keeps whole seconds, cutting the fraction off, so a deadline counted from it
/// counts from the next second — late by under a second, never early.
fn created_no_earlier_than(creation_timestamp: Timestamp) -> Timestamp {
    if creation_timestamp.subsec_nanosecond() == 0 {
        ttl::deadline(creation_timestamp, SignedDuration::from_secs(1))
    } else {
        creation_timestamp
    }
}

/// The inputs every step of one decision shares.
struct Step<'a> {
    generation: i64,
    now: Timestamp,
    timing: &'a Timing,
    observed: &'a Observed,
    /// `Ready` was `True` in the stored status.
    ready_before: bool,
    /// The stored `Ready` reason.
    ready_reason: Option<&'a str>,
    /// `spec.routing.publishConfigMap`.
    publish_config_map: bool,
    /// `spec.sleepAfterMinutes`.
    sleep_after: Option<SignedDuration>,
    /// TestMesh's generator listed the environment in the stored status.
    listed_before: bool,
}

impl Step<'_> {
    fn set(&self, decision: &mut Decision, verdict: Verdict) {
        conditions::set(
            &mut decision.status.conditions,
            verdict,
            self.generation,
            self.now,
        );
    }

    /// The `ExpiringSoon` warning for an idle environment expiring at `expires_at` (not
    /// yet expired: that is teardown): its instant goes into the status; once due, it is
    /// published once for this expiry instant — the status records which one in
    /// `expiryWarnedFor`, so a restarted operator re-derives it and does not repeat it,
    /// and an expiry that moves (a TTL change, a run's release) is announced again.
    /// Until then, a timer at its instant: no sweep, like the expiry itself.
    fn warn_of_expiry(&self, decision: &mut Decision, expires_at: Timestamp) {
        let warning_at = ttl::warning_at(expires_at, self.timing.expiry_warning);
        let status = &mut decision.status;
        status.expiry_warning_at = warning_at.map(Time);
        let expiry = Some(Time(expires_at));
        let Some(warning_at) = warning_at.filter(|_| status.expiry_warned_for != expiry) else {
            return;
        };
        if ttl::is_expiring_soon(expires_at, self.timing.expiry_warning, self.now) {
            status.expiry_warned_for = expiry;
            decision.expiry_warning = Some(expires_at);
        } else {
            decision.wake_at = Some(earliest(decision.wake_at, warning_at));
        }
    }

    /// Teardown waits on others (the provider pruning, the namespace controller): look
    /// again after a while even if no event says they are done, so a missed watch event
    /// cannot leave an environment `destroying` for ever.
    fn recheck_teardown(&self, decision: &mut Decision) {
        let recheck = self.now + TEARDOWN_RECHECK;
        decision.wake_at = Some(earliest(decision.wake_at, recheck));
    }

    fn enter(&self, decision: &mut Decision, phase: Phase, ready: Verdict) {
        decision.status.phase = Some(phase);
        self.set(decision, ready);
    }

    fn stay_destroyed(&self, decision: &mut Decision) {
        decision.status.phase = Some(Phase::Destroyed);
        decision.status.claimed_by.clear();
        decision.status.held_since = None;
        decision.status.holder_reused = None;
        let ready = conditions::find(&decision.status.conditions, conditions::READY);
        if ready.is_none_or(|c| c.status != ConditionStatus::False.as_str()) {
            self.set(
                decision,
                Verdict::new(
                    conditions::READY,
                    ConditionStatus::False,
                    reason::TEARDOWN_COMPLETE,
                    "destroyed",
                ),
            );
        }
        for condition in &mut decision.status.conditions {
            condition.observed_generation = Some(self.generation);
        }
    }

    /// Deletes the provider's app (so it prunes what it deployed), then the namespace;
    /// reports `destroyed` only when the namespace is gone.
    ///
    /// `Destroyed=False` names a wait only when there is one on someone else: the
    /// provider deleting its app (`WaitingForAppDeletion`), or a terminating namespace
    /// that reports what blocks it (`NamespaceTerminating`). Otherwise it says
    /// `TearingDown`, with a message that is the same at every step, so a teardown that
    /// nobody holds up costs two status writes: entering it and finishing it.
    fn tear_down(&self, decision: &mut Decision, cause: &'static str) {
        let status = &mut decision.status;
        status.teardown_started_at.get_or_insert(Time(self.now));
        // What holds for the whole teardown, shown with every step.
        let mut notes = Vec::new();
        // The app is only this environment's to delete if the namespace it deploys into
        // is: an environment that never created its namespace (refused, taken, or torn
        // down before provisioning) deletes no app, whatever the app's destination says.
        let owns_namespace = matches!(self.observed.namespace, NamespaceState::Owned { .. });
        let app = match &self.observed.app {
            AppState::Present(app) => match &app.deletion {
                AppDeletion::Deletable if owns_namespace => {
                    decision.effects.push(Effect::DeleteApp);
                    Some(AppStep::Deleting)
                }
                AppDeletion::Deletable => {
                    notes.push(
                        "provider app kept: the environment does not own the namespace it deploys into"
                            .to_owned(),
                    );
                    None
                }
                AppDeletion::InProgress => Some(AppStep::ProviderDeleting),
                AppDeletion::Generated {
                    application_set, ..
                } => {
                    notes.push(format!(
                        "ApplicationSet {application_set} deletes it: TestMesh's generator no longer lists the environment"
                    ));
                    Some(AppStep::GeneratorDeleting)
                }
                AppDeletion::Retained(why) => {
                    notes.push(format!("provider app kept: {why}"));
                    None
                }
            },
            AppState::Missing => None,
        };
        if app.is_some()
            && let Some(note) = &self.observed.teardown_note
        {
            notes.push(note.clone());
        }
        let with_notes = |message: &str| {
            std::iter::once(message.to_owned())
                .chain(notes.iter().cloned())
                .collect::<Vec<_>>()
                .join("; ")
        };
        let app_kept = app.is_none() && matches!(self.observed.app, AppState::Present(_));
        let tearing_down = || {
            let plan = if app_kept {
                "deleting the namespace"
            } else {
                "deleting the provider's app, then the namespace"
            };
            (reason::TEARING_DOWN, with_notes(plan))
        };
        // An ApplicationSet may mint the Application of an environment the generator
        // listed until it has generated again without it: one that read the listing
        // before the environment left it may still be creating Applications. Deleting the
        // namespace under such an Application leaves Argo CD syncing into a namespace
        // that is gone, and unable to delete the Application while it does. So the
        // namespace waits: in the decision that takes the environment off the list (the
        // ApplicationSets are asked to generate again only once it is stored), and while
        // any of them has a generation pending, and for GENERATOR_SETTLE after the
        // teardown began: the applicationset-controller clears the refresh annotation with
        // the latest copy of the ApplicationSet (its status update re-reads it), so a
        // generation from an older listing may clear a newer request; its Application is
        // created within that generation, well inside the settle time.
        // Only an Application that does not exist can still be minted (one that exists is
        // waited for or kept above), and an ApplicationSet that never generates again (its
        // generator unreachable) holds the namespace GENERATOR_WAIT_LIMIT at most.
        let started = decision
            .status
            .teardown_started_at
            .as_ref()
            .map_or(self.now, |started| started.0);
        let settled_at = started + GENERATOR_SETTLE;
        let generators_settled = !matches!(self.observed.app, AppState::Missing)
            || self.now >= started + GENERATOR_WAIT_LIMIT
            || (!self.listed_before
                && self.observed.generators_pending.is_empty()
                && (!self.observed.generating_from_testmesh || self.now >= settled_at));
        let (destroyed_reason, message) = match (app, &self.observed.namespace) {
            (Some(AppStep::ProviderDeleting | AppStep::GeneratorDeleting), _) => (
                reason::WAITING_FOR_APP_DELETION,
                with_notes("waiting for the provider to delete its app and prune what it deployed"),
            ),
            (Some(AppStep::Deleting), _) => tearing_down(),
            (
                None,
                NamespaceState::Owned {
                    terminating: true,
                    blockers: Some(blockers),
                    ..
                },
            ) => (
                reason::NAMESPACE_TERMINATING,
                with_notes(&format!("namespace is terminating: {blockers}")),
            ),
            (
                None,
                NamespaceState::Owned {
                    terminating: false, ..
                },
            ) if !generators_settled => {
                let soonest = self.now + GENERATOR_RECHECK;
                let recheck = if self.observed.generating_from_testmesh {
                    settled_at.max(soonest)
                } else {
                    soonest
                };
                decision.wake_at = Some(earliest(decision.wake_at, recheck));
                (
                    reason::WAITING_FOR_GENERATOR,
                    with_notes(
                        "waiting for the ApplicationSets generating from TestMesh to generate again without the environment, then deleting the namespace",
                    ),
                )
            }
            (None, NamespaceState::Owned { terminating, .. }) => {
                if !terminating {
                    decision.effects.push(Effect::DeleteNamespace);
                }
                tearing_down()
            }
            (
                None,
                NamespaceState::Absent | NamespaceState::NotOwned | NamespaceState::Refused(_),
            ) => {
                if !matches!(self.observed.namespace, NamespaceState::Absent) {
                    notes.push("namespace kept: not created by this environment".to_owned());
                }
                self.finish_teardown(decision, cause, notes);
                return;
            }
        };
        self.enter(
            decision,
            Phase::Destroying,
            Verdict::new(
                conditions::READY,
                ConditionStatus::False,
                cause,
                "tearing down",
            ),
        );
        self.set(
            decision,
            Verdict::new(
                conditions::DESTROYED,
                ConditionStatus::False,
                destroyed_reason,
                message,
            ),
        );
        self.recheck_teardown(decision);
    }

    /// The namespace is gone (or was never this environment's): `destroyed`, in the
    /// final form [`Step::stay_destroyed`] keeps, so the record needs no second write.
    fn finish_teardown(&self, decision: &mut Decision, cause: &'static str, notes: Vec<String>) {
        let status = &mut decision.status;
        status.destroyed_at = Some(Time(self.now));
        status.claimed_by.clear();
        status.held_since = None;
        status.holder_reused = None;
        self.enter(
            decision,
            Phase::Destroyed,
            Verdict::new(
                conditions::READY,
                ConditionStatus::False,
                cause,
                "destroyed",
            ),
        );
        let message = if notes.is_empty() {
            "namespace deleted".to_owned()
        } else {
            notes.join("; ")
        };
        self.set(
            decision,
            Verdict::new(
                conditions::DESTROYED,
                ConditionStatus::True,
                reason::TEARDOWN_COMPLETE,
                message,
            ),
        );
        for condition in &mut decision.status.conditions {
            condition.observed_generation = Some(self.generation);
        }
    }

    /// Computes the routing policy while the namespace is ours and alive, and keeps the
    /// routing ConfigMap in step when one is asked for (and gone when not).
    fn route(&self, decision: &mut Decision) {
        let serving_namespace = matches!(
            self.observed.namespace,
            NamespaceState::Owned {
                terminating: false,
                ..
            }
        );
        if !serving_namespace {
            decision.status.routing_policy.clear();
            decision.status.missing_services.clear();
            return;
        }
        let routing = &self.observed.routing;
        decision.status.routing_policy = routing.policy.clone();
        decision.status.missing_services = routing.missing.clone();
        let mut gaps = Vec::new();
        if !routing.missing.is_empty() {
            gaps.push(format!(
                "no Service yet for: {}",
                routing.missing.join(", ")
            ));
        }
        if !routing.not_serving.is_empty() {
            gaps.push(not_serving_yet(&routing.not_serving));
        }
        let mut verdict = if gaps.is_empty() {
            Verdict::new(
                conditions::ROUTING_COMPLETE,
                ConditionStatus::True,
                reason::ALL_SERVICES_ROUTED,
                format!("{} services routed", routing.policy.len()),
            )
        } else {
            let reason = if routing.missing.is_empty() {
                reason::ENDPOINTS_NOT_READY
            } else {
                reason::SERVICES_MISSING
            };
            Verdict::new(
                conditions::ROUTING_COMPLETE,
                ConditionStatus::False,
                reason,
                gaps.join("; "),
            )
        };
        if self.publish_config_map && self.observed.routing_map == RoutingMap::Foreign {
            verdict.message.push_str(&format!(
                "; not published: the ConfigMap {ROUTING_CONFIG_MAP} in the namespace is not TestMesh's"
            ));
        }
        self.set(decision, verdict);
        let effect = match (&self.observed.routing_map, self.publish_config_map) {
            (RoutingMap::Absent, true) => Some(Effect::CreateRoutingMap),
            (RoutingMap::Ours(published), true) => {
                (*published != routing.policy).then_some(Effect::PublishRouting)
            }
            (RoutingMap::Ours(_), false) => Some(Effect::UnpublishRouting),
            (RoutingMap::Absent | RoutingMap::Foreign, false) | (RoutingMap::Foreign, true) => None,
        };
        decision.effects.extend(effect);
    }

    /// Every phase short of teardown.
    fn run(&self, decision: &mut Decision, previous: Phase, holders: &[String]) {
        let held = !holders.is_empty();
        let failed = |reason: &'static str, message: String| {
            Verdict::new(conditions::READY, ConditionStatus::False, reason, message)
        };
        match &self.observed.namespace {
            NamespaceState::Refused(why) => {
                self.enter(
                    decision,
                    Phase::Failed,
                    failed(reason::NAMESPACE_REFUSED, why.clone()),
                );
                return;
            }
            NamespaceState::NotOwned => {
                let mut message = "the namespace already exists and was not created by this environment; it is never adopted".to_owned();
                if let AppState::Present(app) = &self.observed.app
                    && app.creates_namespace
                {
                    message.push_str(
                        "; the provider's app creates its destination namespace when it syncs (CreateNamespace=true): remove that sync option so TestMesh creates the namespace, then delete the namespace the app created",
                    );
                }
                self.enter(
                    decision,
                    Phase::Failed,
                    failed(reason::NAMESPACE_NOT_OWNED, message),
                );
                return;
            }
            NamespaceState::Owned {
                terminating: true, ..
            } => {
                self.enter(
                    decision,
                    Phase::Failed,
                    failed(
                        reason::NAMESPACE_TERMINATING,
                        "the namespace is being deleted outside of a teardown; it is re-created once gone".to_owned(),
                    ),
                );
                return;
            }
            NamespaceState::Absent => {
                decision.effects.push(Effect::CreateNamespace);
                decision.status.provisioning_started_at = Some(Time(self.now));
                self.set(decision, self.provider_verdict(None));
                self.enter(
                    decision,
                    Phase::Provisioning,
                    Verdict::new(
                        conditions::READY,
                        ConditionStatus::False,
                        reason::PROVISIONING,
                        "creating the namespace",
                    ),
                );
                decision.wake_at = Some(self.provisioning_deadline(decision));
                return;
            }
            NamespaceState::Owned {
                terminating: false, ..
            } => {}
        }

        if self.sleeps(decision, previous, held) {
            self.set(decision, self.provider_verdict(None));
            let idle_since = decision
                .status
                .last_used_at
                .as_ref()
                .map_or_else(|| "its creation".to_owned(), |t| t.0.to_string());
            self.enter(
                decision,
                Phase::Sleeping,
                Verdict::new(
                    conditions::READY,
                    ConditionStatus::False,
                    reason::SLEEPING,
                    format!(
                        "idle since {idle_since}: TestMesh's generator lists it asleep (awake: false, replicas: 0) for its ApplicationSet to scale it down; a claim wakes it"
                    ),
                ),
            );
            return;
        }
        if previous == Phase::Sleeping {
            // Woken for a run: ready again once the provider has synced the woken app.
            decision.status.woken_at = Some(Time(self.now));
            decision.status.provisioning_started_at = Some(Time(self.now));
        }

        let retry = self.retry_of_stale_failure();
        decision.effects.extend(retry);
        self.set(decision, self.provider_verdict(retry));
        // A status write after creating the namespace may have been lost.
        decision
            .status
            .provisioning_started_at
            .get_or_insert(Time(self.now));
        let was_serving = previous.is_serving();
        let mut readiness = match &self.observed.app {
            // A failure the namespace has just removed is no failure: a new sync is asked for.
            AppState::Present(app) if retry.is_some() && app.readiness == Readiness::Failed => {
                Readiness::Progressing
            }
            AppState::Present(app) => app.readiness.clone(),
            AppState::Missing => Readiness::Progressing,
        };
        // A woken app is ready only once the provider has synced it since the wake (its
        // status said Healthy all along, asleep).
        let waking = self.waking(decision);
        if let (Some(woken), AppState::Present(app)) = (waking, &self.observed.app)
            && readiness == Readiness::Ready
            && !was_serving
            && app.synced_at.is_none_or(|synced| synced < woken)
        {
            readiness = Readiness::Progressing;
        }
        // Becoming Ready also needs something to answer behind every URL into the
        // namespace: a provider can call its app healthy a moment before that.
        let not_serving = &self.observed.routing.not_serving;
        let awaiting_endpoints =
            readiness == Readiness::Ready && !was_serving && !not_serving.is_empty();
        if awaiting_endpoints {
            readiness = Readiness::Progressing;
        }
        // A serving environment's app that syncs again (a new commit, a self-heal, a
        // refresh) still serves the previous revision: the environment stays Ready, and
        // the sync shows in the provider's status. Degraded, failed or gone, it does not.
        let resyncing = was_serving
            && retry.is_none()
            && readiness == Readiness::Progressing
            && matches!(self.observed.app, AppState::Present(_));
        if readiness == Readiness::Ready || resyncing {
            let phase = match (held, previous) {
                (true, _) => Phase::Running,
                (false, Phase::Running | Phase::Cooling) => Phase::Cooling,
                (false, _) => Phase::Warm,
            };
            let status = &mut decision.status;
            status.ready_at.get_or_insert(Time(self.now));
            // The idle clock starts when it first becomes ready; a re-sync of the app does
            // not restart it (only a run's release does).
            status.last_used_at.get_or_insert(Time(self.now));
            let (reason, mut message) = if held {
                (reason::IN_USE, format!("in use by {}", holders.join(", ")))
            } else {
                (reason::AVAILABLE, "ready for a run".to_owned())
            };
            if resyncing && let AppState::Present(app) = &self.observed.app {
                message.push_str(&format!("; the provider is syncing again: {}", app.message));
            }
            self.enter(
                decision,
                phase,
                Verdict::new(conditions::READY, ConditionStatus::True, reason, message),
            );
            if !held && let Some(sleep_at) = self.sleep_at(decision) {
                decision.wake_at = Some(earliest(decision.wake_at, sleep_at));
            }
            return;
        }

        if self.ready_before || self.retrying_after_app_failure(previous, &readiness) {
            // Ready before (or failed by the app, which now tries again), not now: a new
            // provisioning attempt starts its own timeout.
            decision.status.provisioning_started_at = Some(Time(self.now));
        }
        let deadline = self.provisioning_deadline(decision);
        let health_since = decision
            .status
            .provider
            .as_ref()
            .and_then(|p| p.health_since.as_ref())
            .map_or(self.now, |t| t.0);
        let mut app_message = self.app_message(retry);
        if awaiting_endpoints {
            app_message = format!("{app_message}; {}", not_serving_yet(not_serving));
        }
        let grace_end = match (&self.observed.app, &readiness) {
            (AppState::Missing, _) => Some((
                ttl::deadline(health_since, self.timing.missing_grace),
                reason::APP_NOT_FOUND,
            )),
            (_, Readiness::Degraded) => Some((
                ttl::deadline(health_since, self.timing.degraded_grace),
                reason::DEGRADED_TOO_LONG,
            )),
            _ => None,
        };
        let timing = self.timing;
        let verdict_failure = if readiness == Readiness::Failed {
            Some((reason::APP_FAILED, app_message.clone()))
        } else if let Some((_, reason)) = grace_end.filter(|(end, _)| self.now >= *end) {
            let grace = if reason == reason::APP_NOT_FOUND {
                timing.missing_grace
            } else {
                timing.degraded_grace
            };
            Some((
                reason,
                format!("still so after the {grace:#} grace period: {app_message}"),
            ))
        } else if self.now >= deadline {
            let timeout = timing.provisioning_timeout;
            Some((
                reason::PROVISIONING_TIMEOUT,
                format!("not ready within the {timeout:#} provisioning timeout: {app_message}"),
            ))
        } else {
            None
        };
        if let Some((reason, message)) = verdict_failure {
            self.enter(decision, Phase::Failed, failed(reason, message));
            return;
        }
        let (phase, ready_reason) = match (readiness, held && was_serving) {
            (Readiness::Degraded, _) => (Phase::Degraded, reason::APP_DEGRADED),
            (_, true) => (Phase::Running, reason::PROVISIONING),
            (_, false) if waking.is_some() => (Phase::Provisioning, reason::WAKING),
            (_, false) => (Phase::Provisioning, reason::PROVISIONING),
        };
        self.enter(
            decision,
            phase,
            Verdict::new(
                conditions::READY,
                ConditionStatus::False,
                ready_reason,
                app_message,
            ),
        );
        let wake = grace_end.map_or(deadline, |(end, _)| end.min(deadline));
        decision.wake_at = Some(wake);
    }

    /// Whether the environment sleeps now: it was asleep and no run wants it, or it is
    /// ready, unheld and idle past `sleepAfterMinutes` ([`Step::sleep_at`]).
    fn sleeps(&self, decision: &Decision, previous: Phase, held: bool) -> bool {
        match previous {
            _ if held => false,
            Phase::Sleeping => true,
            Phase::Warm | Phase::Cooling => self
                .sleep_at(decision)
                .is_some_and(|sleep_at| self.now >= sleep_at),
            _ => false,
        }
    }

    /// When a ready environment idle since `lastUsedAt` goes to sleep, if it can: it has
    /// `sleepAfterMinutes`, and its app is one TestMesh's generator lists for its
    /// ApplicationSet (scaling anything else down would be reverted by GitOps).
    fn sleep_at(&self, decision: &Decision) -> Option<Timestamp> {
        let after = self.sleep_after?;
        let generated = matches!(
            &self.observed.app,
            AppState::Present(app) if matches!(app.deletion, AppDeletion::Generated { .. })
        );
        let idle_since = decision.status.last_used_at.as_ref()?.0;
        generated.then(|| ttl::deadline(idle_since, after))
    }

    /// The wake being waited for: the whole second a run woke the environment from sleep,
    /// while that is what its provisioning is (a later provisioning attempt starts after
    /// it). Whole, because the provider stamps its syncs in whole seconds: a sync started
    /// in that second counts (and the endpoint gate still holds a declared service until
    /// a pod answers).
    fn waking(&self, decision: &Decision) -> Option<Timestamp> {
        let status = &decision.status;
        let woken = status.woken_at.as_ref()?.0;
        let provisioning = status.provisioning_started_at.as_ref()?.0;
        (woken >= provisioning).then(|| Timestamp::from_second(woken.as_second()).unwrap_or(woken))
    }

    /// The environment failed because of its app, and the app is trying again. (A
    /// provisioning timeout is not retried this way: the app is still not ready.)
    fn retrying_after_app_failure(&self, previous: Phase, readiness: &Readiness) -> bool {
        previous == Phase::Failed
            && *readiness == Readiness::Progressing
            && self.ready_reason.is_some_and(|r| {
                [
                    reason::APP_FAILED,
                    reason::DEGRADED_TOO_LONG,
                    reason::APP_NOT_FOUND,
                ]
                .contains(&r)
            })
    }

    fn provisioning_deadline(&self, decision: &Decision) -> Timestamp {
        let started = decision
            .status
            .provisioning_started_at
            .as_ref()
            .map_or(self.now, |t| t.0);
        ttl::deadline(started, self.timing.provisioning_timeout)
    }

    /// The app's failed attempt that the namespace, now there, may cure, and how to have
    /// the provider try again without waiting on its timers: a sync failed before the
    /// namespace existed is synced again (the provider does not retry a failed revision
    /// by itself), and one that waits out a retry backoff because the namespace was
    /// missing has its backoff ended first. Only for a namespace this environment owns
    /// and serves; a new attempt carries a new start time, so this asks once per attempt.
    fn retry_of_stale_failure(&self) -> Option<Effect> {
        let AppState::Present(app) = &self.observed.app else {
            return None;
        };
        let attempt = app.failed_attempt.as_ref()?;
        let NamespaceState::Owned {
            terminating: false,
            created_at: Some(created_at),
            ..
        } = &self.observed.namespace
        else {
            return None;
        };
        if attempt.backing_off {
            return attempt.namespace_missing.then_some(Effect::EndAppRetry);
        }
        // Both instants are whole seconds: an attempt started in the second the namespace
        // was created may have started before it.
        let predates_namespace = attempt.started_at.is_some_and(|at| at <= *created_at);
        predates_namespace.then_some(Effect::SyncApp)
    }

    /// What the provider's app reports, and what TestMesh does about a failure the
    /// namespace has removed.
    fn app_message(&self, retry: Option<Effect>) -> String {
        let AppState::Present(app) = &self.observed.app else {
            return "the provider's app does not exist".to_owned();
        };
        match retry {
            Some(Effect::SyncApp) => format!(
                "{}; that sync ran before the namespace existed, so TestMesh asked for a new one",
                app.message
            ),
            Some(_) => format!(
                "{}; the namespace exists now, so TestMesh ends the retry backoff and asks for a new sync",
                app.message
            ),
            None => app.message.clone(),
        }
    }

    fn provider_verdict(&self, retry: Option<Effect>) -> Verdict {
        let (status, reason) = match &self.observed.app {
            AppState::Missing => (ConditionStatus::False, reason::APP_MISSING),
            AppState::Present(_) if retry.is_some() => {
                (ConditionStatus::False, reason::APP_PROGRESSING)
            }
            AppState::Present(app) => match app.readiness {
                Readiness::Ready => (ConditionStatus::True, reason::APP_READY),
                Readiness::Progressing => (ConditionStatus::False, reason::APP_PROGRESSING),
                Readiness::Degraded => (ConditionStatus::False, reason::APP_DEGRADED),
                Readiness::Failed => (ConditionStatus::False, reason::APP_FAILED),
            },
        };
        Verdict::new(
            conditions::PROVIDER_READY,
            status,
            reason,
            self.app_message(retry),
        )
    }
}

/// `no ready endpoint yet for: a, b`.
fn not_serving_yet(services: &[String]) -> String {
    format!("no ready endpoint yet for: {}", services.join(", "))
}

/// The teardown cause recorded in a `Ready` reason, so an interrupted teardown keeps it.
fn teardown_reason_of(ready_reason: &str) -> &'static str {
    match ready_reason {
        reason::DELETED => reason::DELETED,
        reason::DESTROY_REQUESTED => reason::DESTROY_REQUESTED,
        _ => reason::EXPIRED,
    }
}

/// What becomes of a record once it is `destroyed`, under the operator's retention period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Kept: no retention period is set, or the record is not destroyed.
    Kept,
    /// Kept until this instant, then deleted.
    Until(Timestamp),
    /// Its retention period is over: delete it.
    Over,
}

/// Whether a record with `status` is kept at `now` when destroyed records are deleted
/// `period` after their teardown ended (`None`: kept for ever).
pub fn retention(
    status: &TestEnvironmentStatus,
    period: Option<SignedDuration>,
    now: Timestamp,
) -> Retention {
    let (Some(period), Some(destroyed_at)) = (period, status.destroyed_at.as_ref()) else {
        return Retention::Kept;
    };
    let delete_at = ttl::deadline(destroyed_at.0, period);
    if now < delete_at {
        Retention::Until(delete_at)
    } else {
        Retention::Over
    }
}

/// How often a teardown that waits on someone else is looked at again.
pub const TEARDOWN_RECHECK: SignedDuration = SignedDuration::from_secs(10);

/// How soon a teardown that waits for the ApplicationSets to generate again is looked at
/// again: a generation takes well under a second, and nothing else says it ended.
pub const GENERATOR_RECHECK: SignedDuration = SignedDuration::from_secs(1);

/// How long after its teardown began an environment the generator listed keeps its
/// namespace at least, whatever the ApplicationSets' refresh annotations say (see
/// `Step::tear_down`): a heuristic bound on one generation, not a proof.
pub const GENERATOR_SETTLE: SignedDuration = SignedDuration::from_secs(3);

/// How long after its teardown began an environment's namespace waits for the
/// ApplicationSets at most: one whose generator cannot be reached never generates again.
pub const GENERATOR_WAIT_LIMIT: SignedDuration = SignedDuration::from_secs(60);

fn earliest(current: Option<Timestamp>, candidate: Timestamp) -> Timestamp {
    current.map_or(candidate, |at| at.min(candidate))
}

/// The provider summary users see, with `healthSince` moved only when health changes.
fn provider_status(
    current: Option<&ProviderStatus>,
    app: &AppState,
    now: Timestamp,
) -> ProviderStatus {
    let (health, sync, revision, message) = match app {
        AppState::Missing => ("Missing".to_owned(), None, None, None),
        AppState::Present(report) => (
            report.health.clone(),
            report.sync.clone(),
            report.revision.clone(),
            Some(report.message.clone()).filter(|m| !m.is_empty()),
        ),
    };
    let health_since = match current {
        Some(previous) if previous.health.as_deref() == Some(health.as_str()) => {
            previous.health_since.clone()
        }
        _ => Some(Time(now)),
    };
    ProviderStatus {
        health: Some(health),
        health_since,
        sync,
        revision,
        message,
    }
}

#[cfg(test)]
mod tests;
