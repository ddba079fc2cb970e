//! The TestEnvironmentClaim reconciler: finds the environment a claim waits for or holds,
//! creates one from the claim's template when the claim heads its context's queue and
//! none is alive, and reports on the claim what that environment's state means for the
//! run. Who holds an environment is decided by the environment's reconciler alone.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::apply::{Applied, FIELD_MANAGER, RACE_RETRY};
use super::index::EnvironmentIndex;
use super::observe::{cached_in, listed_in};
use super::triggers::environments_of_claim;
use super::{Context, backoff_key};
use crate::error::{AtStep, Error, Result, Step};
use crate::lifecycle::claims::{ClaimDecision, QueueEntry, choose_target, decide_claim};
use crate::lifecycle::{ClaimPhase, claims};
use crate::resources::{
    CREATED_FOR_CLAIM_ANNOTATION, CREATED_FOR_CLAIM_UID_LABEL, TEARDOWN_FINALIZER, TestEnvironment,
    TestEnvironmentClaim, TestEnvironmentClaimStatus, TestEnvironmentSpec,
};

/// Reports one claim's state; creates its environment when it is the one to.
#[tracing::instrument(skip_all, fields(claim = %claim.name_any(), workspace = claim.namespace().unwrap_or_default()))]
pub async fn reconcile(claim: Arc<TestEnvironmentClaim>, ctx: Arc<Context>) -> Result<Action> {
    let started = std::time::Instant::now();
    let result = reconcile_inner(&claim, &ctx).await;
    ctx.metrics.reconciled(started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.backoff.succeeded(&backoff_key(claim.as_ref()));
    }
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
    // have seen at least the event being handled. Creating an environment, or ending or
    // unbinding the claim, is decided again on a fresh read.
    ctx.caches.synced().await;
    let current_phase = claim.status.as_ref().and_then(|s| s.phase);
    let cached = Workspace::cached(claim, ctx, &workspace);
    let mut decision = cached.decide(claim, &uid);
    // Most often the cache has only not seen the claim's environment take it yet (the
    // environment's status is written before the claim's): that environment read by name
    // settles it, where a fresh read of the workspace lists every environment and claim
    // in it.
    if decision.needs_fresh_read(current_phase)
        && let Some(name) = environment_of(claim)
        && let Some(fresher) = cached
            .with_environment_read(ctx, &workspace, name)
            .await
            .at(Step::Observe)?
    {
        decision = fresher.decide(claim, &uid);
    }
    if decision.needs_fresh_read(current_phase) {
        decision = Workspace::listed(ctx, &workspace)
            .await
            .at(Step::Observe)?
            .decide(claim, &uid);
    }
    if let Some(name) = &decision.create_environment {
        create_environment(claim, &uid, name, &workspace, ctx)
            .await
            .at(Step::Apply)?;
    }
    if write_status(claim, &decision.status, ctx)
        .await
        .at(Step::Status)?
        == Applied::Raced
    {
        tracing::debug!("changed since it was read; deciding again");
        return Ok(Action::requeue(RACE_RETRY));
    }
    ctx.claim_wakeups.set(claim, decision.wake_at);
    Ok(Action::await_change())
}

/// Writes `status` on `claim` if it differs from the claim's, with server-side apply and
/// the claim's resourceVersion as precondition, and publishes the phase change. Two
/// reconcilers write a claim's status (the environment's writes the claims it just bound,
/// see [`claims::just_bound`]): the precondition makes either one's write over a status
/// it has not read a conflict, [`Applied::Raced`], and never a step back.
pub(super) async fn write_status(
    claim: &TestEnvironmentClaim,
    status: &TestEnvironmentClaimStatus,
    ctx: &Context,
) -> Result<Applied> {
    let current = claim.status.clone().unwrap_or_default();
    if *status == current {
        return Ok(Applied::Done);
    }
    let name = claim.name_any();
    let api: Api<TestEnvironmentClaim> =
        Api::namespaced(ctx.client.clone(), &claim.namespace().unwrap_or_default());
    let body = json!({
        "apiVersion": TestEnvironmentClaim::api_version(&()),
        "kind": TestEnvironmentClaim::kind(&()),
        "metadata": { "name": name, "resourceVersion": claim.resource_version() },
        "status": status,
    });
    match api
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(error)) if error.is_conflict() || error.is_not_found() => {
            return Ok(Applied::Raced);
        }
        Err(error) => return Err(Error::Kube(error)),
    }
    let previous = current.phase.unwrap_or(ClaimPhase::Pending);
    let phase = status.phase.unwrap_or(ClaimPhase::Pending);
    if phase != previous || current.phase.is_none() {
        let warning = matches!(phase, ClaimPhase::Expired | ClaimPhase::Failed);
        ctx.recorder
            .publish_phase_change(
                &claim.object_ref(&()),
                previous,
                phase,
                warning,
                &status.conditions,
            )
            .await;
    }
    Ok(Applied::Done)
}

/// The environment a claim is about, if it names one or its status does.
fn environment_of(claim: &TestEnvironmentClaim) -> Option<&str> {
    let named = claim.spec.environment_name.as_deref();
    named.or_else(|| claim.status.as_ref()?.environment_name.as_deref())
}

/// The cached environments a claim's decision can turn on: those its events concern
/// ([`environments_of_claim`]: its context's, and the ones it and its status name — a
/// named one of another context is refused, so it must be seen). Looked up in the index,
/// not found by scanning every environment (101.6 µs a decision with 10,000 cached). The
/// name of an environment to create, which counts the names of every one, is decided
/// again on a fresh read of the whole workspace.
fn environments_for(
    claim: &TestEnvironmentClaim,
    index: &EnvironmentIndex,
    store: &Store<TestEnvironment>,
) -> Vec<Arc<TestEnvironment>> {
    let concerned = environments_of_claim(index, claim);
    concerned.iter().filter_map(|r| store.get(r)).collect()
}

/// The environments and claims of its workspace that a claim's decision reads.
struct Workspace {
    environments: Vec<Arc<TestEnvironment>>,
    claims: Vec<Arc<TestEnvironmentClaim>>,
}

impl Workspace {
    /// As the informers' caches hold them: of the environments, those `claim`'s
    /// decision can turn on (see [`environments_for`]).
    fn cached(claim: &TestEnvironmentClaim, ctx: &Context, workspace: &str) -> Self {
        let index = ctx.environment_index.read();
        Workspace {
            environments: environments_for(claim, &index, &ctx.caches.environments.store),
            claims: cached_in(&ctx.caches.claims.store, workspace),
        }
    }

    /// Fresh from the API server.
    async fn listed(ctx: &Context, workspace: &str) -> Result<Self> {
        let (environments, claims) = futures::try_join!(
            listed_in(&ctx.client, workspace),
            listed_in(&ctx.client, workspace),
        )?;
        Ok(Workspace {
            environments,
            claims,
        })
    }

    /// The same, with the environment `name` as the API server has it now; `None` if it
    /// is gone (which only a fresh read of the whole workspace may act on).
    async fn with_environment_read(
        &self,
        ctx: &Context,
        workspace: &str,
        name: &str,
    ) -> Result<Option<Self>> {
        let api: Api<TestEnvironment> = Api::namespaced(ctx.client.clone(), workspace);
        Ok(api
            .get_opt(name)
            .await?
            .map(|fresh| self.with_environment(fresh)))
    }

    /// The same, with `fresh` in place of the environment of its name.
    fn with_environment(&self, fresh: TestEnvironment) -> Self {
        let fresh = Arc::new(fresh);
        let others = self
            .environments
            .iter()
            .filter(|environment| environment.metadata.name != fresh.metadata.name);
        let environments = others.cloned().chain([fresh.clone()]).collect();
        Workspace {
            environments,
            claims: self.claims.clone(),
        }
    }

    /// The claim's decision from these environments and claims, now.
    fn decide(&self, claim: &TestEnvironmentClaim, uid: &str) -> ClaimDecision {
        let entries: Vec<QueueEntry<'_>> = self.claims.iter().map(|c| QueueEntry::of(c)).collect();
        let environments: Vec<&TestEnvironment> =
            self.environments.iter().map(Arc::as_ref).collect();
        let now = Timestamp::now();
        let target = choose_target(claim, uid, &environments, &entries, now);
        decide_claim(claim, target, now)
    }
}

/// Logs and counts a failed reconciliation, then retries after a pause.
pub fn error_policy(claim: Arc<TestEnvironmentClaim>, error: &Error, ctx: Arc<Context>) -> Action {
    let retry_in = ctx.backoff.failed(backoff_key(claim.as_ref()));
    tracing::warn!(%error, ?retry_in, "claim reconciliation failed");
    ctx.metrics.failed(error.step_label(), error.metric_label());
    Action::requeue(retry_in)
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
    let Some(template) = claims::environment_template(claim) else {
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
    use serde_json::json;

    use super::*;
    use crate::controller::context::object_key;

    fn environment(holders: &[&str]) -> TestEnvironment {
        serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
            "metadata": {"name": "env-1", "namespace": "ws", "generation": 1},
            "spec": {"context": "pr-1", "provider": "argocd", "providerAppName": "app",
                     "namespace": "review-pr-1"},
            "status": {"phase": "running", "claimedBy": holders, "conditions": [{
                "type": "Ready", "status": "True", "reason": "InUse", "message": "in use",
                "lastTransitionTime": "2026-12-06T10:00:00Z", "observedGeneration": 1}]}
        }))
        .expect("environment")
    }

    #[test]
    fn a_decision_reads_its_contexts_environments_and_the_named_ones_only() {
        let of = |workspace: &str, name: &str, context: &str| -> TestEnvironment {
            serde_json::from_value(json!({
                "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
                "metadata": {"name": name, "namespace": workspace},
                "spec": {"context": context, "provider": "argocd", "providerAppName": name,
                         "namespace": format!("{workspace}-{name}")}
            }))
            .expect("environment")
        };
        let mut writer = kube::runtime::reflector::store::Writer::default();
        let mut index = EnvironmentIndex::default();
        for environment in [
            of("ws", "pr-1-1", "pr-1"),
            of("ws", "pr-1-2", "pr-1"),
            of("ws", "other", "pr-2"),
            of("ws", "named", "pr-2"),
            of("ws", "held", "pr-3"),
            of("ws-2", "pr-1-1", "pr-1"),
        ] {
            index.applied(&environment);
            writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(environment));
        }
        let mut claim: TestEnvironmentClaim = serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
            "metadata": {"name": "run", "namespace": "ws"},
            "spec": {"context": "pr-1", "environmentName": "named"},
            "status": {"environmentName": "held"}
        }))
        .expect("claim");
        let found = |claim: &TestEnvironmentClaim| {
            let found = environments_for(claim, &index, &writer.as_reader());
            let mut names: Vec<String> = found.iter().map(|e| object_key(e.as_ref())).collect();
            names.sort();
            names
        };
        assert_eq!(
            found(&claim),
            ["ws/held", "ws/named", "ws/pr-1-1", "ws/pr-1-2"]
        );
        claim.spec.environment_name = None;
        claim.status = None;
        assert_eq!(found(&claim), ["ws/pr-1-1", "ws/pr-1-2"]);
    }

    #[test]
    fn the_claims_environment_read_by_name_settles_a_binding_the_cache_has_not_seen() {
        let mut claim: TestEnvironmentClaim = serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
            "metadata": {"name": "run", "namespace": "ws", "uid": "uid", "generation": 1,
                         "creationTimestamp": Timestamp::now().to_string()},
            "spec": {"context": "pr-1", "maxDurationMinutes": 60}
        }))
        .expect("claim");
        let workspace = |environment: TestEnvironment, claim: &TestEnvironmentClaim| Workspace {
            environments: vec![Arc::new(environment)],
            claims: vec![Arc::new(claim.clone())],
        };
        let bound = workspace(environment(&["run"]), &claim).decide(&claim, "uid");
        assert_eq!(bound.status.phase, Some(ClaimPhase::Bound));
        claim.status = Some(bound.status);
        assert_eq!(environment_of(&claim), Some("env-1"));

        // The environment's reconciler wrote the binding; this cache has the claim's
        // new status but not yet the environment's.
        let stale = workspace(environment(&[]), &claim);
        let unbinding = stale.decide(&claim, "uid");
        assert_eq!(unbinding.status.phase, Some(ClaimPhase::Released));
        assert!(unbinding.needs_fresh_read(Some(ClaimPhase::Bound)));

        let fresher = stale.with_environment(environment(&["run"]));
        assert_eq!(fresher.environments.len(), 1, "replaced, not added");
        let settled = fresher.decide(&claim, "uid");
        assert_eq!(settled.status.phase, Some(ClaimPhase::Bound));
        assert!(!settled.needs_fresh_read(Some(ClaimPhase::Bound)));
    }
}
