//! Claims: which runs wait for an environment, in what order, and what each claim's
//! status says.
//!
//! An environment serves one claim at a time. The claims that want it — those naming it
//! in `spec.environmentName`, and those of its context naming none — form a queue in
//! creation order (ties broken by name). The environment's own reconciler binds the head
//! of the queue when the environment can take a run ([`super::environment::decide`]).
//! What that means for a claim is decided by [`decide_claim`] alone, and written by
//! whichever reconciler knows first: the environment's reconciler writes the claims its
//! status write just bound ([`just_bound`]), so a run learns it has its environment one
//! watch delivery and one reconciliation sooner; the claim's reconciler writes every other
//! change. Both write with the claim's resourceVersion, so neither writes over a status it
//! has not read. The claim's reconciler does not report a new claim `Queued` when the
//! environment is about to bind it ([`BINDING_GRACE`]): the claim is written once, bound.
//! At a hand-over the claims still waiting report their new positions a moment later
//! ([`POSITION_SETTLE`]), so the claim bound is written first.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::conditions::{self, ConditionStatus, Verdict, reason};
use super::environment;
use super::phase::{ClaimPhase, Phase};
use super::reuse::{self, Candidate};
use super::ttl;
use crate::resources::{
    CONTEXT_PLACEHOLDER, CREATED_FOR_CLAIM_UID_LABEL, EnvironmentTemplate, TestEnvironment,
    TestEnvironmentClaim, TestEnvironmentClaimStatus, TestEnvironmentStatus,
};

/// What the queue needs to know about one claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry<'a> {
    pub name: &'a str,
    pub created_at: Timestamp,
    pub context: &'a str,
    /// `spec.environmentName`.
    pub environment_name: Option<&'a str>,
    /// `status.environmentName`: the environment the claim's reconciler chose for it.
    pub target: Option<&'a str>,
    /// Whether the claim still wants or holds an environment: not being deleted and not
    /// finished (released, expired, failed).
    pub active: bool,
}

impl<'a> QueueEntry<'a> {
    pub fn of(claim: &'a TestEnvironmentClaim) -> QueueEntry<'a> {
        let phase = claim.status.as_ref().and_then(|s| s.phase);
        QueueEntry {
            name: claim.metadata.name.as_deref().unwrap_or_default(),
            created_at: claim
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::MAX, |t| t.0),
            context: &claim.spec.context,
            environment_name: claim.spec.environment_name.as_deref(),
            target: claim
                .status
                .as_ref()
                .and_then(|s| s.environment_name.as_deref()),
            active: claim.metadata.deletion_timestamp.is_none()
                && matches!(phase, None | Some(ClaimPhase::Pending | ClaimPhase::Bound)),
        }
    }

    /// Whether this claim wants the environment `name` of context `context`: the one it
    /// names, or — naming none — any of its context, until its reconciler has chosen one
    /// (then only that one, so two environments never both take the same claim).
    pub fn wants(&self, name: &str, context: &str) -> bool {
        self.active
            && match self.environment_name {
                Some(wanted) => wanted == name,
                None => self.context == context && self.target.is_none_or(|t| t == name),
            }
    }
}

/// The active claims that want environment `name` (of `context`), oldest first.
pub fn queue<'e, 'a>(
    entries: &'e [QueueEntry<'a>],
    name: &str,
    context: &str,
) -> Vec<&'e QueueEntry<'a>> {
    let mut queue: Vec<&QueueEntry<'a>> =
        entries.iter().filter(|e| e.wants(name, context)).collect();
    queue.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.name.cmp(b.name))
    });
    queue
}

/// A waiting claim's place in the queue (`queue`, from [`queue`]) of an environment held by
/// `holders`: 1 for the claim bound next, as `status.queuePosition` documents. The claims
/// holding the environment are in its queue too, but they wait for nothing, so they are
/// not counted; `None` for a holder or a claim not in the queue.
pub fn queue_position(queue: &[&QueueEntry<'_>], claim: &str, holders: &[String]) -> Option<usize> {
    queue
        .iter()
        .filter(|entry| !holders.iter().any(|holder| holder == entry.name))
        .position(|entry| entry.name == claim)
        .map(|index| index + 1)
}

/// The name of the `generation`-th environment of a context. Every claim that finds no
/// live environment for its context creates the same next name, so concurrent creates
/// collide and exactly one environment results.
pub fn environment_name_for(context: &str, generation: u32) -> String {
    format!("{}-{generation}", environment_name_base(context))
}

/// The generation number of `name` if it is one of `context`'s generated names.
pub fn environment_generation(context: &str, name: &str) -> Option<u32> {
    name.strip_prefix(&environment_name_base(context))?
        .strip_prefix('-')?
        .parse()
        .ok()
}

fn environment_name_base(context: &str) -> String {
    name_prefix(context, 52).unwrap_or_else(|| "env".to_owned())
}

/// `context` made into the start of an object name (lower case, `-` for anything else,
/// at most `max` characters); `None` when nothing usable is left.
pub fn name_prefix(context: &str, max: usize) -> Option<String> {
    let mut prefix: String = context
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    prefix.truncate(max);
    let prefix = prefix.trim_matches('-');
    (!prefix.is_empty()).then(|| prefix.to_owned())
}

/// The environment a claim provisions when none can be reused: its template for its
/// context. `None` for a claim without a template.
pub fn environment_template(claim: &TestEnvironmentClaim) -> Option<EnvironmentTemplate> {
    let template = claim.spec.template.as_ref()?;
    Some(resolve_template(template, &claim.spec.context))
}

/// `template` for `context`: every [`CONTEXT_PLACEHOLDER`] in its namespace, provider app
/// name and display name replaced by the context, so one template serves every context.
/// The context goes in as it is; admission has checked that the names it makes are a
/// namespace and an object name.
pub fn resolve_template(template: &EnvironmentTemplate, context: &str) -> EnvironmentTemplate {
    let resolve = |text: &str| text.replace(CONTEXT_PLACEHOLDER, context);
    EnvironmentTemplate {
        display_name: template.display_name.as_deref().map(resolve),
        provider_app_name: resolve(&template.provider_app_name),
        namespace: resolve(&template.namespace),
        ..template.clone()
    }
}

/// What the claim's reconciler found for the claim.
#[derive(Clone, Debug)]
pub enum Target<'a> {
    /// An environment the claim waits for or holds.
    Environment {
        environment: &'a TestEnvironment,
        /// Position in its queue when waiting ([`queue_position`]: 1 = next).
        queue_position: Option<usize>,
        /// The environment was created from this claim's template.
        created_for_claim: bool,
        /// No other environment could bind the claim: it names this one, or this is the
        /// only live environment of its context.
        sole_taker: bool,
    },
    /// The environment named in `spec.environmentName` does not exist.
    NamedEnvironmentMissing,
    /// The context's last environment is being torn down; a new one follows once it is
    /// gone (its namespace name is needed again).
    PreviousTearingDown { environment: &'a str },
    /// No live environment for the context: create the next one.
    CreateEnvironment { name: String },
}

/// Which environment a claim is about: the one it names, the one already chosen for it,
/// the live one of its context the reuse rule picks, or a new one.
///
/// `environments` are the workspace's, in any order: they are considered by name, so
/// every replica — and one replica before and after a restart — makes the same choice
/// from the same objects. `entries` only give the queue position shown on the claim; who
/// is bound, and in what order, is decided by the environment's reconciler.
pub fn choose_target<'a>(
    claim: &TestEnvironmentClaim,
    uid: &str,
    environments: &[&'a TestEnvironment],
    entries: &[QueueEntry<'_>],
    now: Timestamp,
) -> Target<'a> {
    let mut environments = environments.to_vec();
    environments.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    let find = |wanted: &str| {
        environments
            .iter()
            .copied()
            .find(|e| e.metadata.name.as_deref() == Some(wanted))
    };
    let on = |environment: &'a TestEnvironment, sole_taker: bool| {
        let env_name = environment.metadata.name.as_deref().unwrap_or_default();
        let queue = queue(entries, env_name, &environment.spec.context);
        let holders = environment
            .status
            .as_ref()
            .map_or(&[][..], |s| s.claimed_by.as_slice());
        Target::Environment {
            environment,
            queue_position: queue_position(&queue, name, holders),
            created_for_claim: created_for(environment, uid),
            sole_taker,
        }
    };
    if let Some(named) = &claim.spec.environment_name {
        return find(named).map_or(Target::NamedEnvironmentMissing, |env| on(env, true));
    }
    let status = claim.status.clone().unwrap_or_default();
    if let Some(environment) = status.environment_name.as_deref().and_then(find) {
        let held = environment
            .status
            .as_ref()
            .is_some_and(|s| s.claimed_by.iter().any(|holder| holder == name));
        if held
            || created_for(environment, uid)
            || status.phase == Some(ClaimPhase::Bound)
            || !environment::tearing_down(environment)
        {
            return on(environment, false);
        }
    }
    let of_context: Vec<&TestEnvironment> = environments
        .iter()
        .copied()
        .filter(|env| env.spec.context == claim.spec.context)
        .filter(|env| env.status.as_ref().and_then(|s| s.phase) != Some(Phase::Destroyed))
        .collect();
    let live: Vec<&TestEnvironment> = of_context
        .iter()
        .copied()
        .filter(|env| !environment::tearing_down(env))
        .collect();
    let candidates: Vec<Candidate<'_>> = live.iter().map(|env| candidate(env)).collect();
    let chosen = reuse::choose(&candidates, &claim.spec.context, now)
        .map(|c| c.name)
        // Nothing to reuse now: wait in the queue of a live one, a failed one last.
        .or_else(|| {
            candidates
                .iter()
                .find(|c| c.phase != Phase::Failed)
                .map(|c| c.name)
        })
        .or_else(|| candidates.first().map(|c| c.name));
    if let Some(environment) = chosen.and_then(find) {
        return on(environment, live.len() == 1);
    }
    if let Some(old) = of_context.first() {
        return Target::PreviousTearingDown {
            environment: old.metadata.name.as_deref().unwrap_or_default(),
        };
    }
    let latest = environments
        .iter()
        .filter_map(|env| {
            environment_generation(
                &claim.spec.context,
                env.metadata.name.as_deref().unwrap_or_default(),
            )
        })
        .max()
        .unwrap_or(0);
    Target::CreateEnvironment {
        name: environment_name_for(&claim.spec.context, latest + 1),
    }
}

/// Whether `environment` was created from the template of the claim whose UID is `uid`.
fn created_for(environment: &TestEnvironment, uid: &str) -> bool {
    environment
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(CREATED_FOR_CLAIM_UID_LABEL))
        .is_some_and(|label| label == uid)
}

/// What the reuse choice needs to know about an environment.
fn candidate(environment: &TestEnvironment) -> Candidate<'_> {
    let status = environment.status.as_ref();
    Candidate {
        name: environment.metadata.name.as_deref().unwrap_or_default(),
        context: &environment.spec.context,
        phase: status.and_then(|s| s.phase).unwrap_or(Phase::Cold),
        expires_at: status.and_then(|s| s.expires_at.as_ref()).map(|t| t.0),
        holders: status.map_or(0, |s| s.claimed_by.len()),
        teardown_requested: environment::tearing_down(environment),
    }
}

/// How long a new claim's first status waits for an environment that binds it at once:
/// its reconciler writes the claim `Bound` (or `Provisioning`) once, instead of `Queued`
/// and then that a few milliseconds later. If nothing binds it meanwhile, it is written
/// `Queued` when this runs out.
pub const BINDING_GRACE: SignedDuration = SignedDuration::from_secs(5);

/// How long after a hand-over the claims still waiting report their new places in the
/// queue. The claim bound at the hand-over is written at once; the others' positions,
/// each one write, wait this long, so the run that got the environment is never queued
/// behind N position writes (the claim reconciler runs them in no particular order). A
/// queue that moves again within it reports once it has settled.
pub const POSITION_SETTLE: SignedDuration = SignedDuration::from_secs(1);

/// When the claims waiting for an environment whose status is `environment` write their
/// new positions: [`POSITION_SETTLE`] after its holder was bound, if that is still to
/// come at `now`.
fn positions_settle_at(environment: &TestEnvironmentStatus, now: Timestamp) -> Option<Timestamp> {
    let held_since = environment.held_since.as_ref()?.0;
    let settles_at = ttl::deadline(held_since, POSITION_SETTLE);
    (now < settles_at).then_some(settles_at)
}

/// Whether `next` differs from `current` only in the queue position it reports (its
/// number and the Ready message that spells it out).
fn only_position_moved(
    current: &TestEnvironmentClaimStatus,
    next: &TestEnvironmentClaimStatus,
) -> bool {
    if next.queue_position == current.queue_position || current.queue_position.is_none() {
        return false;
    }
    let mut unmoved = next.clone();
    unmoved.queue_position = current.queue_position;
    if let (Some(unmoved), Some(before)) = (
        unmoved
            .conditions
            .iter_mut()
            .find(|c| c.type_ == conditions::READY),
        conditions::find(&current.conditions, conditions::READY),
    ) {
        unmoved.message.clone_from(&before.message);
    }
    unmoved == *current
}

/// What to create, if anything, and the claim's next status.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimDecision {
    pub status: TestEnvironmentClaimStatus,
    /// Create this environment from the claim's template.
    pub create_environment: Option<String>,
    /// When to look again (the lease's end, or the end of the binding grace), if nothing
    /// changes before.
    pub wake_at: Option<Timestamp>,
}

impl ClaimDecision {
    /// Whether to decide again on a fresh read before acting on this decision: it creates
    /// an environment, it ends the claim (a cache that has not seen an environment, or
    /// has not seen it hold the claim, proves neither absence nor release), or it takes
    /// back a `Bound` (the environment's reconciler may have written it from a status this
    /// cache has not seen yet; a run told it is bound is not told otherwise on a stale
    /// view).
    pub fn needs_fresh_read(&self, current: Option<ClaimPhase>) -> bool {
        let ends = self.status.phase.is_some_and(ClaimPhase::is_final);
        let unbinds = current == Some(ClaimPhase::Bound) && self.status.phase != current;
        self.create_environment.is_some()
            || unbinds
            || (ends && !current.is_some_and(ClaimPhase::is_final))
    }

    /// Writes nothing now: the claim keeps `current` and is looked at again at `until`,
    /// or sooner if this decision wakes sooner (its lease's end).
    fn deferred(self, current: TestEnvironmentClaimStatus, until: Timestamp) -> ClaimDecision {
        ClaimDecision {
            status: current,
            create_environment: None,
            wake_at: Some(self.wake_at.map_or(until, |wake_at| wake_at.min(until))),
        }
    }
}

/// The claims that `written`, the status just written over `environment`'s, binds and
/// the stored one did not, each with what its status says from that status
/// (`report`), where that changes it. `claims` are the workspace's, as the
/// environment's decision saw them. The environment's reconciler writes these at once:
/// the run learns it has the environment without waiting for its claim's reconciler to
/// see the new status.
pub fn just_bound<'c>(
    environment: &TestEnvironment,
    written: &TestEnvironmentStatus,
    claims: &'c [Arc<TestEnvironmentClaim>],
    now: Timestamp,
) -> Vec<(&'c TestEnvironmentClaim, ClaimDecision)> {
    let before = environment
        .status
        .as_ref()
        .map_or(&[][..], |s| s.claimed_by.as_slice());
    let bound: Vec<&TestEnvironmentClaim> = written
        .claimed_by
        .iter()
        .filter(|holder| !before.contains(holder))
        .filter_map(|holder| {
            claims
                .iter()
                .find(|claim| claim.metadata.name.as_ref() == Some(holder))
        })
        .map(Arc::as_ref)
        .filter(|claim| claim.metadata.deletion_timestamp.is_none())
        .collect();
    if bound.is_empty() {
        return Vec::new();
    }
    let mut holding = environment.clone();
    holding.status = Some(written.clone());
    bound
        .into_iter()
        .filter_map(|claim| {
            let target = Target::Environment {
                environment: &holding,
                queue_position: None,
                created_for_claim: claim
                    .metadata
                    .uid
                    .as_deref()
                    .is_some_and(|uid| created_for(&holding, uid)),
                sole_taker: false,
            };
            let decision = report(claim, target, now);
            let current = claim.status.clone().unwrap_or_default();
            (decision.status != current && decision.create_environment.is_none())
                .then_some((claim, decision))
        })
        .collect()
}

/// How long a claim's own reconciler leaves the news that it was bound to the
/// environment's reconciler, which writes it right after the status that binds it
/// ([`just_bound`]). Woken by that same status, the claim's reconciler would otherwise
/// write it too, over a claim it has not yet seen change: a conflict, one wasted write
/// at every binding. If the environment's reconciler could not write it (the claim
/// changed meanwhile), the claim's own reconciler writes it when this runs out.
pub const LEFT_TO_BINDER: SignedDuration = SignedDuration::from_secs(1);

/// Decides a claim's status from its target at `now`, as its own reconciler writes it:
/// what `report` says, but the news that it was just bound is left to the environment's
/// reconciler for a moment ([`LEFT_TO_BINDER`]).
pub fn decide_claim(
    claim: &TestEnvironmentClaim,
    target: Target<'_>,
    now: Timestamp,
) -> ClaimDecision {
    let left_to_binder = match &target {
        Target::Environment { environment, .. } => left_to_binder_until(claim, environment, now),
        _ => None,
    };
    let decision = report(claim, target, now);
    let current = claim.status.clone().unwrap_or_default();
    match left_to_binder {
        Some(until) if decision.status != current => decision.deferred(current, until),
        _ => decision,
    }
}

/// Until when the news that `environment` holds `claim` is its reconciler's to write: for
/// [`LEFT_TO_BINDER`] after it was bound, unless the claim's status already says so.
fn left_to_binder_until(
    claim: &TestEnvironmentClaim,
    environment: &TestEnvironment,
    now: Timestamp,
) -> Option<Timestamp> {
    let status = environment.status.as_ref()?;
    let name = claim.metadata.name.as_deref()?;
    let until = ttl::deadline(status.held_since.as_ref()?.0, LEFT_TO_BINDER);
    let held = status.claimed_by.iter().any(|holder| holder == name);
    let told = claim
        .status
        .as_ref()
        .is_some_and(|told| knows_it_is_held(told, environment));
    (now < until && held && !told).then_some(until)
}

/// Whether a claim's status already says that `environment` holds it: bound, or waiting
/// for it to be provisioned.
fn knows_it_is_held(status: &TestEnvironmentClaimStatus, environment: &TestEnvironment) -> bool {
    let reason = conditions::find(&status.conditions, conditions::READY).map(|c| c.reason.as_str());
    status.environment_name == environment.metadata.name
        && (status.phase == Some(ClaimPhase::Bound) || reason == Some(reason::PROVISIONING))
}

/// What a claim's status says, from its target at `now`.
fn report(claim: &TestEnvironmentClaim, target: Target<'_>, now: Timestamp) -> ClaimDecision {
    let current = claim.status.clone().unwrap_or_default();
    let generation = claim.metadata.generation.unwrap_or_default();
    let mut status = current.clone();
    status.observed_generation = Some(generation);
    let mut decision = ClaimDecision {
        status,
        create_environment: None,
        wake_at: None,
    };
    let previous = current.phase.unwrap_or(ClaimPhase::Pending);
    if previous.is_final() {
        stamp_generation(&mut decision.status, generation);
        return decision;
    }
    let lease = SignedDuration::from_mins(i64::from(claim.spec.max_duration_minutes));
    let set = |decision: &mut ClaimDecision,
               phase: ClaimPhase,
               status: ConditionStatus,
               reason: &'static str,
               message: String| {
        decision.status.phase = Some(phase);
        conditions::set(
            &mut decision.status.conditions,
            Verdict::new(conditions::READY, status, reason, message),
            generation,
            now,
        );
    };

    if let Some(expiry) = current.lease_expires_at.as_ref().map(|t| t.0)
        && now >= expiry
    {
        decision.status.queue_position = None;
        set(
            &mut decision,
            ClaimPhase::Expired,
            ConditionStatus::False,
            reason::LEASE_EXPIRED,
            format!(
                "the {}-minute lease ran out; the environment was released",
                claim.spec.max_duration_minutes
            ),
        );
        return decision;
    }

    // Whatever happens below, a running lease still ends on time.
    decision.wake_at = current.lease_expires_at.as_ref().map(|t| t.0);
    let claim_name = claim.metadata.name.as_deref().unwrap_or_default();
    match target {
        Target::NamedEnvironmentMissing => {
            let name = claim.spec.environment_name.clone().unwrap_or_default();
            set(
                &mut decision,
                ClaimPhase::Failed,
                ConditionStatus::False,
                reason::ENVIRONMENT_NOT_FOUND,
                format!("environment {name} does not exist in this workspace"),
            );
        }
        Target::PreviousTearingDown { environment } => {
            decision.status.environment_name = None;
            set(
                &mut decision,
                ClaimPhase::Pending,
                ConditionStatus::False,
                reason::WAITING_FOR_TEARDOWN,
                format!(
                    "environment {environment} of this context is being torn down; a new one is created once it is gone"
                ),
            );
        }
        Target::CreateEnvironment { name } => {
            decision.status.environment_name = Some(name.clone());
            set(
                &mut decision,
                ClaimPhase::Pending,
                ConditionStatus::False,
                reason::CREATING_ENVIRONMENT,
                format!("creating environment {name} from the template"),
            );
            decision.create_environment = Some(name);
        }
        Target::Environment {
            environment,
            queue_position,
            created_for_claim,
            sole_taker,
        } => {
            let env_name = environment.metadata.name.clone().unwrap_or_default();
            let env_status = environment.status.clone().unwrap_or_default();
            let env_phase = env_status.phase.unwrap_or(Phase::Cold);
            let held = env_status.claimed_by.iter().any(|h| h == claim_name);
            let env_ready = conditions::find(&env_status.conditions, conditions::READY);
            let env_message = env_ready
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_default();
            decision.status.environment_name = Some(env_name.clone());
            if claim.spec.environment_name.is_some()
                && environment.spec.context != claim.spec.context
            {
                set(
                    &mut decision,
                    ClaimPhase::Failed,
                    ConditionStatus::False,
                    reason::CONTEXT_MISMATCH,
                    format!(
                        "environment {env_name} serves context {}, not {}",
                        environment.spec.context, claim.spec.context
                    ),
                );
                return decision;
            }
            if env_phase == Phase::Failed {
                decision.status.queue_position = None;
                set(
                    &mut decision,
                    ClaimPhase::Failed,
                    ConditionStatus::False,
                    reason::ENVIRONMENT_FAILED,
                    format!("environment {env_name} failed: {env_message}"),
                );
                return decision;
            }
            let committed = held
                || previous == ClaimPhase::Bound
                || claim.spec.environment_name.is_some()
                || created_for_claim;
            if env_phase.is_tearing_down() && committed {
                decision.status.queue_position = None;
                set(
                    &mut decision,
                    ClaimPhase::Failed,
                    ConditionStatus::False,
                    reason::ENVIRONMENT_DESTROYED,
                    format!("environment {env_name} is being torn down: {env_message}"),
                );
                return decision;
            }
            if held {
                decision.status.queue_position = None;
                // Reused: the environment was already provisioned when this run was bound.
                decision
                    .status
                    .reused
                    .get_or_insert(env_status.holder_reused.unwrap_or(false));
                let ready = env_ready.is_some_and(|c| c.status == ConditionStatus::True.as_str());
                if ready {
                    let bound_at = decision.status.bound_at.get_or_insert(Time(now)).0;
                    let lease_end = ttl::deadline(bound_at, lease);
                    decision.status.lease_expires_at = Some(Time(lease_end));
                    decision.status.routing_policy = env_status.routing_policy.clone();
                    decision.status.namespace = Some(environment.spec.template.namespace.clone());
                    decision.wake_at = Some(lease_end);
                    let how = if decision.status.reused == Some(true) {
                        "reused"
                    } else {
                        "provisioned"
                    };
                    set(
                        &mut decision,
                        ClaimPhase::Bound,
                        ConditionStatus::True,
                        reason::BOUND,
                        format!(
                            "environment {env_name} ({how}) in namespace {}",
                            environment.spec.template.namespace
                        ),
                    );
                } else {
                    set(
                        &mut decision,
                        ClaimPhase::Pending,
                        ConditionStatus::False,
                        reason::PROVISIONING,
                        format!("environment {env_name} is {env_phase}: {env_message}"),
                    );
                }
                return decision;
            }
            if previous == ClaimPhase::Bound {
                decision.status.routing_policy = BTreeMap::new();
                decision.status.namespace = None;
                set(
                    &mut decision,
                    ClaimPhase::Released,
                    ConditionStatus::False,
                    reason::RELEASED,
                    format!("environment {env_name} was released"),
                );
                return decision;
            }
            let position = queue_position.unwrap_or(1);
            // Read on the API server's clock: a claim that seems to come from the future
            // (the operator's clock behind) is written at once.
            let created_at = claim.metadata.creation_timestamp.as_ref().map(|t| t.0);
            if let Some(created_at) = created_at
                && let Ok(grace_ends) = created_at.checked_add(BINDING_GRACE)
                && (created_at..grace_ends).contains(&now)
                && claim.status.is_none()
                && sole_taker
                && position == 1
                && environment::binds_at_once(environment, now)
            {
                // Its reconciler binds this claim now; the claim is written once it has.
                return decision.deferred(current, grace_ends);
            }
            decision.status.queue_position = Some(u32::try_from(position).unwrap_or(u32::MAX));
            set(
                &mut decision,
                ClaimPhase::Pending,
                ConditionStatus::False,
                reason::QUEUED,
                format!(
                    "position {position} in the queue for environment {env_name} ({env_phase})"
                ),
            );
            if let Some(settles_at) = positions_settle_at(&env_status, now)
                && only_position_moved(&current, &decision.status)
            {
                // The queue just moved: the claim bound at the hand-over is written first.
                return decision.deferred(current, settles_at);
            }
        }
    }
    decision
}

fn stamp_generation(status: &mut TestEnvironmentClaimStatus, generation: i64) {
    status.observed_generation = Some(generation);
    for condition in &mut status.conditions {
        condition.observed_generation = Some(generation);
    }
}

#[cfg(test)]
mod tests;
