//! The TestEnvironment reconciler: observe → decide → apply → write status. Every
//! decision is made by [`crate::lifecycle::environment::decide`]; this module only
//! fetches what it needs and carries out the result. It decides from the informers'
//! caches, and decides again on a fresh read before it writes anything but the
//! environment's own status.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::apply::{self, Applied, RACE_RETRY};
use super::{Context, backoff_key, claim, observe};
use crate::error::{AtStep, Error, Result, Step};
use crate::lifecycle::environment::{Effect, Retention, decide};
use crate::lifecycle::observation::Source;
use crate::lifecycle::{self, Phase, claims, conditions};
use crate::resources::{TEARDOWN_FINALIZER, TestEnvironment, TestEnvironmentStatus};

/// Drives one environment one step through its lifecycle.
#[tracing::instrument(skip_all, fields(environment = %environment.name_any(), workspace = environment.namespace().unwrap_or_default()))]
pub async fn reconcile(environment: Arc<TestEnvironment>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let result = reconcile_inner(&environment, &ctx).await;
    ctx.metrics.reconciled(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&backoff_key(environment.as_ref()));
    }
    result
}

/// Logs and counts a failed reconciliation, then retries it after its own backoff.
pub fn error_policy(environment: Arc<TestEnvironment>, error: &Error, ctx: Arc<Context>) -> Action {
    let retry_in = ctx.backoff.failed(backoff_key(environment.as_ref()));
    tracing::warn!(%error, ?retry_in, "reconciliation failed");
    ctx.metrics.failed(error.step_label(), error.metric_label());
    Action::requeue(retry_in)
}

async fn reconcile_inner(environment: &TestEnvironment, ctx: &Context) -> Result<Action> {
    ctx.caches.synced().await;
    let workspace = environment
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = environment
        .uid()
        .ok_or(Error::MissingField("metadata.uid"))?;
    let api: Api<TestEnvironment> = Api::namespaced(ctx.client.clone(), &workspace);
    let deleting = environment.meta().deletion_timestamp.is_some();
    let current = environment.status.clone().unwrap_or_default();
    let previous = current.phase.unwrap_or(Phase::Cold);

    if !deleting
        && !environment
            .finalizers()
            .iter()
            .any(|f| f == TEARDOWN_FINALIZER)
    {
        // Nothing is created before the finalizer is in place, so a delete can never
        // skip the teardown. The patch brings the object back with a new event.
        apply::add_finalizer(&api, environment)
            .await
            .at(Step::Apply)?;
        return Ok(Action::await_change());
    }
    if deleting && previous == Phase::Destroyed {
        apply::remove_finalizer(&api, environment)
            .await
            .at(Step::Apply)?;
        return Ok(Action::await_change());
    }

    let mut world = observe::observe(environment, &uid, ctx, Source::Cache)
        .await
        .at(Step::Observe)?;
    let mut now = Timestamp::now();
    let mut decision = decide(environment, &world.observed, &ctx.timing, now);
    // Writing anything but the status is decided again on a fresh read, letting a run go
    // on its holders read by name (entering teardown writes its status first and deletes
    // on a fresh pass). A decision made again can need a fresher read than the one
    // before it did (the run gone, its environment has an app to delete): made again.
    let mut read = Source::Cache;
    while decision.fresh_read(&current) > read {
        read = decision.fresh_read(&current);
        world = observe::observe(environment, &uid, ctx, read)
            .await
            .at(Step::Observe)?;
        now = Timestamp::now();
        decision = decide(environment, &world.observed, &ctx.timing, now);
    }
    let mut fresh = read == Source::ApiServer;
    let mut plan = decision.plan(&current);
    if let Some(retry) = apply_each(&plan.before_status, environment, &uid, &world, ctx)
        .await
        .at(Step::Apply)?
    {
        return Ok(retry);
    }
    if plan.before_status.contains(&Effect::CreateNamespace) {
        // The namespace exists now: decided again, the core says which decision stands.
        let again = observe::observe(environment, &uid, ctx, Source::Cache)
            .await
            .at(Step::Observe)?;
        let redecided = decide(environment, &again.observed, &ctx.timing, now);
        if decision.superseded_after_create(&redecided) {
            plan.after_status = redecided.plan(&current).after_status;
            (world, decision, fresh) = (again, redecided, false);
        }
    }

    if decision.status != current {
        match apply::write_status(&api, environment, &decision.status).await {
            Err(Error::Kube(kube::Error::Api(status))) if status.is_conflict() => {
                tracing::debug!("changed since it was read; deciding again");
                return Ok(Action::requeue(RACE_RETRY));
            }
            result => result.at(Step::Status)?,
        }
        // The runs this write bound are told at once, what their claims' reconciler would
        // write; one whose claim changed meanwhile is left to that reconciler.
        for (claim, bound) in
            claims::just_bound(environment, &decision.status, &world.gathered.claims, now)
        {
            match claim::write_status(claim, &bound.status, ctx).await {
                Ok(Applied::Done) => {
                    tracing::info!(claim = %claim.name_any(), "told the run it holds the environment");
                }
                Ok(Applied::Raced) => {
                    tracing::debug!(claim = %claim.name_any(), "claim changed meanwhile");
                }
                Err(error) => {
                    tracing::warn!(claim = %claim.name_any(), %error, "cannot write the bound claim's status")
                }
            }
        }
        let phase = decision.phase();
        if phase != previous {
            tracing::info!(from = %previous, to = %phase, "phase changed");
            record_transition(ctx, &current, &decision.status, now);
            let failed = phase == Phase::Failed;
            ctx.recorder
                .publish_phase_change(
                    &environment.object_ref(&()),
                    previous,
                    phase,
                    failed,
                    &decision.status.conditions,
                )
                .await;
        }
        if let Some(expires_at) = decision.expiry_warning {
            // Written first (`expiryWarnedFor`), so it goes out once per expiry instant.
            tracing::info!(%expires_at, "expiring soon");
            ctx.recorder
                .publish_expiring_soon(&environment.object_ref(&()), expires_at, now)
                .await;
        }
    }

    // Decided from the cache (entering teardown, or right after creating the namespace):
    // what acts on the observation waits for the next pass, which decides it fresh.
    let (now_effects, deferred): (Vec<Effect>, Vec<Effect>) = plan
        .after_status
        .iter()
        .partition(|effect| fresh || !effect.acts_on_observation());
    if let Some(retry) = apply_each(&now_effects, environment, &uid, &world, ctx)
        .await
        .at(Step::Apply)?
    {
        return Ok(retry);
    }
    if !deferred.is_empty() || plan.status_first {
        return Ok(Action::requeue(Duration::ZERO));
    }
    if deleting && decision.phase() == Phase::Destroyed {
        return Ok(Action::requeue(RACE_RETRY));
    }
    if let Some(action) = retention(environment, &decision.status, &api, ctx, now)
        .await
        .at(Step::Apply)?
    {
        return Ok(action);
    }
    ctx.environment_wakeups.set(environment, decision.wake_at);
    Ok(Action::await_change())
}

/// Applies `effects` in order; a quick retry when the world moved under one of them.
async fn apply_each(
    effects: &[Effect],
    environment: &TestEnvironment,
    uid: &str,
    world: &observe::World,
    ctx: &Context,
) -> Result<Option<Action>> {
    for &effect in effects {
        tracing::info!(?effect, "applying");
        if apply::apply(effect, environment, uid, world, ctx).await? == Applied::Raced {
            tracing::info!(?effect, "the world changed meanwhile; deciding again");
            return Ok(Some(Action::requeue(RACE_RETRY)));
        }
    }
    Ok(None)
}

/// Observes provisioning time, expiry lateness and teardown time at the transitions
/// that end them.
fn record_transition(
    ctx: &Context,
    before: &TestEnvironmentStatus,
    after: &TestEnvironmentStatus,
    now: Timestamp,
) {
    let seconds = |from: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
        from.as_ref().map(|t| now.duration_since(t.0).as_secs_f64())
    };
    if before.ready_at.is_none()
        && after.ready_at.is_some()
        && let Some(elapsed) = seconds(&after.provisioning_started_at)
    {
        ctx.metrics.provisioned(elapsed);
    }
    if before.teardown_started_at.is_none() && after.teardown_started_at.is_some() {
        let expired = conditions::find(&after.conditions, conditions::READY)
            .is_some_and(|c| c.reason == conditions::reason::EXPIRED);
        if let (true, Some(late)) = (expired, seconds(&after.expires_at)) {
            ctx.metrics.expired_late_by(late);
        }
    }
    if before.destroyed_at.is_none()
        && after.destroyed_at.is_some()
        && let Some(elapsed) = seconds(&after.teardown_started_at)
    {
        ctx.metrics.torn_down(elapsed);
    }
}

/// Deletes a destroyed record once the retention period has passed, if one is set.
async fn retention(
    environment: &TestEnvironment,
    status: &TestEnvironmentStatus,
    api: &Api<TestEnvironment>,
    ctx: &Context,
    now: Timestamp,
) -> Result<Option<Action>> {
    match lifecycle::environment::retention(status, ctx.retention, now) {
        Retention::Kept => return Ok(None),
        Retention::Until(delete_at) => {
            ctx.environment_wakeups.set(environment, Some(delete_at));
            return Ok(Some(Action::await_change()));
        }
        Retention::Over => {}
    }
    tracing::info!("retention period over; deleting the destroyed record");
    match api
        .delete(&environment.name_any(), &Default::default())
        .await
    {
        Ok(_) => Ok(Some(Action::await_change())),
        Err(kube::Error::Api(s)) if s.is_not_found() => Ok(Some(Action::await_change())),
        Err(error) => Err(Error::Kube(error)),
    }
}
