//! The TestEnvironmentClaim reconciler: finds the environment a claim waits for or holds,
//! creates one from the claim's template when the claim heads its context's queue and
//! none is alive, and reports on the claim what that environment's state means for the
//! run. Who holds an environment is decided by the environment's reconciler alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Context;
use super::apply::FIELD_MANAGER;
use super::observe::{Source, cached_in, listed_in};
use crate::error::{Error, Result};
use crate::lifecycle::claims::{self, ClaimDecision, QueueEntry, Target, decide_claim};
use crate::lifecycle::reuse::{self, Candidate};
use crate::lifecycle::{ClaimPhase, Phase, ttl};
use crate::resources::{
    CREATED_FOR_CLAIM_ANNOTATION, CREATED_FOR_CLAIM_UID_LABEL, TEARDOWN_FINALIZER, TestEnvironment,
    TestEnvironmentClaim, TestEnvironmentSpec,
};

/// Reports one claim's state; creates its environment when it is the one to.
#[tracing::instrument(skip_all, fields(claim = %claim.name_any(), workspace = claim.namespace().unwrap_or_default()))]
pub async fn reconcile(claim: Arc<TestEnvironmentClaim>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&claim, &ctx).await;
    ctx.metrics.reconciled(started.elapsed().as_secs_f64());
    result
}

async fn reconcile_inner(claim: &TestEnvironmentClaim, ctx: &Context) -> Result<Action> {
    if claim.meta().deletion_timestamp.is_some() {
        // Deleting a claim releases its environment: the environment's reconciler sees
        // the claim go and hands the environment on. Nothing to hold back here.
        return Ok(Action::await_change());
    }
    let workspace = claim
        .namespace()
        .ok_or(Error::MissingField("metadata.namespace"))?;
    let uid = claim.uid().ok_or(Error::MissingField("metadata.uid"))?;
    // The caches are fed by the same informers that trigger this reconciliation, so they
    // have seen at least the event being handled. Creating an environment is decided
    // again on a fresh read.
    let mut decision = decide_from(claim, &uid, &workspace, ctx, Source::Cache).await?;
    if decision.create_environment.is_some() {
        decision = decide_from(claim, &uid, &workspace, ctx, Source::ApiServer).await?;
    }
    let api: Api<TestEnvironmentClaim> = Api::namespaced(ctx.client.clone(), &workspace);
    if let Some(name) = &decision.create_environment {
        create_environment(claim, &uid, name, &workspace, ctx).await?;
    }
    let current = claim.status.clone().unwrap_or_default();
    if decision.status != current {
        let body = json!({
            "apiVersion": "testmesh.io/v1alpha1",
            "kind": "TestEnvironmentClaim",
            "status": decision.status,
        });
        api.patch_status(
            &claim.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await?;
        let previous = current.phase.unwrap_or(ClaimPhase::Pending);
        let phase = decision.status.phase.unwrap_or(ClaimPhase::Pending);
        if phase != previous || current.phase.is_none() {
            let warning = matches!(phase, ClaimPhase::Expired | ClaimPhase::Failed);
            let conditions = &decision.status.conditions;
            ctx.recorder
                .publish_phase_change(&claim.object_ref(&()), previous, phase, warning, conditions)
                .await;
        }
    }
    Ok(match decision.wake_at {
        Some(at) => Action::requeue(ttl::until(at, Timestamp::now())),
        None => Action::await_change(),
    })
}

/// The claim's decision from the workspace's environments and claims.
async fn decide_from(
    claim: &TestEnvironmentClaim,
    uid: &str,
    workspace: &str,
    ctx: &Context,
    source: Source,
) -> Result<ClaimDecision> {
    let (environments, claims): (Vec<Arc<TestEnvironment>>, Vec<Arc<TestEnvironmentClaim>>) =
        match source {
            Source::Cache => (
                cached_in(&ctx.caches.environments, workspace),
                cached_in(&ctx.caches.claims, workspace),
            ),
            Source::ApiServer => (
                listed_in(&ctx.client, workspace).await?,
                listed_in(&ctx.client, workspace).await?,
            ),
        };
    let entries: Vec<QueueEntry<'_>> = claims.iter().map(|c| QueueEntry::of(c)).collect();
    let now = Timestamp::now();
    let target = resolve_target(claim, uid, &environments, &entries, now);
    Ok(decide_claim(claim, target, now))
}

/// Logs and counts a failed reconciliation, then retries after a pause.
pub fn error_policy(_claim: Arc<TestEnvironmentClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(%error, "claim reconciliation failed");
    ctx.metrics.failed(error.metric_label());
    Action::requeue(Duration::from_secs(5))
}

/// Which environment the claim is about: the one it names, the one already chosen for it,
/// the live one of its context the reuse rule picks, or a new one.
fn resolve_target<'a>(
    claim: &TestEnvironmentClaim,
    uid: &str,
    environments: &'a [Arc<TestEnvironment>],
    entries: &[QueueEntry<'_>],
    now: Timestamp,
) -> Target<'a> {
    // `entries` only gives the queue position shown on the claim; who is bound, and in
    // what order, is decided by the environment's reconciler.
    let name = claim.name_any();
    let find = |wanted: &str| {
        environments
            .iter()
            .map(Arc::as_ref)
            .find(|e| e.name_any() == wanted)
    };
    let created_for_this_claim = |environment: &TestEnvironment| {
        environment
            .labels()
            .get(CREATED_FOR_CLAIM_UID_LABEL)
            .map(String::as_str)
            == Some(uid)
    };
    let on = |environment: &'a TestEnvironment, sole_taker: bool| {
        let env_name = environment.name_any();
        let queue = claims::queue(entries, &env_name, &environment.spec.context);
        let holders = environment
            .status
            .as_ref()
            .map_or(&[][..], |s| s.claimed_by.as_slice());
        Target::Environment {
            environment,
            queue_position: claims::queue_position(&queue, &name, holders),
            created_for_claim: created_for_this_claim(environment),
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
            .is_some_and(|s| s.claimed_by.contains(&name));
        if held
            || created_for_this_claim(environment)
            || status.phase == Some(ClaimPhase::Bound)
            || !is_tearing_down(environment)
        {
            return on(environment, false);
        }
    }
    let of_context: Vec<&TestEnvironment> = environments
        .iter()
        .map(Arc::as_ref)
        .filter(|env| env.spec.context == claim.spec.context)
        .filter(|env| env.status.as_ref().and_then(|s| s.phase) != Some(Phase::Destroyed))
        .collect();
    let live: Vec<&TestEnvironment> = of_context
        .iter()
        .copied()
        .filter(|env| !is_tearing_down(env))
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
        .filter_map(|env| claims::environment_generation(&claim.spec.context, &env.name_any()))
        .max()
        .unwrap_or(0);
    Target::CreateEnvironment {
        name: claims::environment_name_for(&claim.spec.context, latest + 1),
    }
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
        teardown_requested: is_tearing_down(environment),
    }
}

fn is_tearing_down(environment: &TestEnvironment) -> bool {
    environment.metadata.deletion_timestamp.is_some()
        || environment.spec.destroy
        || environment
            .status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(Phase::is_tearing_down)
}

/// Creates the environment a claim asked for from its template, marked as made for it and
/// carrying the teardown finalizer from birth.
async fn create_environment(
    claim: &TestEnvironmentClaim,
    uid: &str,
    name: &str,
    workspace: &str,
    ctx: &Context,
) -> Result<()> {
    let Some(template) = claim.spec.template.clone() else {
        return Ok(());
    };
    let environment = TestEnvironment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(workspace.to_owned()),
            labels: Some(BTreeMap::from([(
                CREATED_FOR_CLAIM_UID_LABEL.to_owned(),
                uid.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(
                CREATED_FOR_CLAIM_ANNOTATION.to_owned(),
                claim.name_any(),
            )])),
            // Born with it: the environment reconciler has no finalizer to add.
            finalizers: Some(vec![TEARDOWN_FINALIZER.to_owned()]),
            ..ObjectMeta::default()
        },
        spec: TestEnvironmentSpec {
            context: claim.spec.context.clone(),
            template,
            destroy: false,
        },
        status: None,
    };
    let api: Api<TestEnvironment> = Api::namespaced(ctx.client.clone(), workspace);
    match api.create(&PostParams::default(), &environment).await {
        Ok(_) => {
            tracing::info!(
                environment = name,
                "created environment from the claim's template"
            );
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
        Err(error) => Err(Error::Kube(error)),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    use super::*;
    use crate::resources::{TestEnvironmentClaimSpec, TestEnvironmentStatus};

    fn environment(name: &str, phase: Phase) -> Arc<TestEnvironment> {
        let spec: TestEnvironmentSpec = serde_json::from_value(json!({
            "context": "pr-1", "provider": "argocd", "providerAppName": name, "namespace": name
        }))
        .expect("spec");
        let mut environment = TestEnvironment::new(name, spec);
        environment.status = Some(TestEnvironmentStatus {
            phase: Some(phase),
            ..TestEnvironmentStatus::default()
        });
        Arc::new(environment)
    }

    fn claim(environment_name: Option<&str>) -> TestEnvironmentClaim {
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

    fn sole_taker(claim: &TestEnvironmentClaim, environments: &[Arc<TestEnvironment>]) -> bool {
        let entries = [QueueEntry::of(claim)];
        match resolve_target(claim, "uid", environments, &entries, Timestamp::now()) {
            Target::Environment { sole_taker, .. } => sole_taker,
            other => panic!("no environment: {other:?}"),
        }
    }

    #[test]
    fn the_claim_next_in_line_behind_the_holder_is_position_one() {
        let mut running = environment("pr-1-1", Phase::Running);
        if let Some(status) = Arc::make_mut(&mut running).status.as_mut() {
            status.claimed_by = vec!["holder".into()];
        }
        let created = |claim: &mut TestEnvironmentClaim, name: &str, seconds: i64| {
            claim.metadata.name = Some(name.into());
            claim.metadata.creation_timestamp =
                Some(Time(Timestamp::from_second(seconds).expect("time")));
        };
        let mut holder = claim(None);
        created(&mut holder, "holder", 1);
        let mut next = claim(None);
        created(&mut next, "next", 2);
        let mut after = claim(None);
        created(&mut after, "after", 3);
        let entries = [&holder, &next, &after].map(QueueEntry::of);
        let environments = [running];
        let now = Timestamp::now();
        let position = |claim| match resolve_target(claim, "uid", &environments, &entries, now) {
            Target::Environment { queue_position, .. } => queue_position,
            other => panic!("no environment: {other:?}"),
        };
        assert_eq!(position(&holder), None, "the holder waits for nothing");
        assert_eq!(position(&next), Some(1), "next in line");
        assert_eq!(position(&after), Some(2));
    }

    #[test]
    fn a_claim_is_the_sole_taker_of_the_only_live_environment_or_the_one_it_names() {
        let warm = environment("pr-1-1", Phase::Warm);
        let provisioning = environment("pr-1-2", Phase::Provisioning);
        let destroying = environment("pr-1-0", Phase::Destroying);
        assert!(sole_taker(&claim(None), std::slice::from_ref(&warm)));
        assert!(
            sole_taker(&claim(None), &[warm.clone(), destroying]),
            "one being torn down takes no claim"
        );
        assert!(
            !sole_taker(&claim(None), &[warm.clone(), provisioning.clone()]),
            "another live environment of the context could take it too"
        );
        assert!(sole_taker(&claim(Some("pr-1-2")), &[warm, provisioning]));
    }
}
