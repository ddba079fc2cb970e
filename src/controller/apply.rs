//! Applying decisions: the only place the environment reconciler writes to the cluster,
//! but for the status of the claims it just bound, which it writes as the claim's own
//! reconciler does ([`super::claim::write_status`]).
//!
//! Every delete carries a UID precondition, so the object deleted is exactly the one
//! observed and proven ours — never a namesake created in between. The routing ConfigMap,
//! proven ours by a label anyone could remove, is written and deleted only at the
//! resourceVersion read with that label.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
    Preconditions,
};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::Context;
use super::observe::World;
use crate::error::{Error, Result};
use crate::lifecycle::environment::Effect;
use crate::lifecycle::observation;
use crate::resources::{
    ENVIRONMENT_ANNOTATION, ENVIRONMENT_UID_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
    ROUTING_CONFIG_MAP, TEARDOWN_FINALIZER, TestEnvironment, TestEnvironmentStatus,
};

/// The field manager of every status write.
pub const FIELD_MANAGER: &str = "testmesh";

/// How soon to look again after the world moved under a decision.
pub const RACE_RETRY: Duration = Duration::from_millis(200);

/// What applying an effect found.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Done,
    /// The world moved under us (a namespace appeared, an object changed); decide again
    /// from a fresh observation instead of writing a status based on the old one.
    Raced,
}

/// Applies one effect.
pub async fn apply(
    effect: Effect,
    environment: &TestEnvironment,
    uid: &str,
    world: &World,
    ctx: &Context,
) -> Result<Applied> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let result = match effect {
        Effect::RefreshGenerator => {
            // Only hurries the ApplicationSets along: deciding again would not ask again
            // (the status already says what they list), and they list it at their next
            // poll anyway.
            if let Err(error) = refresh_generators(environment, world, ctx).await {
                tracing::warn!(%error, "could not ask the ApplicationSets to generate again; they will at their next poll");
            }
            Ok(())
        }
        Effect::CreateNamespace => namespaces
            .create(&PostParams::default(), &owned_namespace(environment, uid))
            .await
            .map(|_| ()),
        Effect::DeleteNamespace => match &world.gathered.namespace {
            Some(namespace) => namespaces
                .delete(&namespace.name_any(), &delete_exactly(namespace.meta()))
                .await
                .map(|_| ()),
            None => return Ok(Applied::Raced),
        },
        Effect::CreateRoutingMap => {
            let config_map = routing_map(environment, &world.observed.routing.policy);
            routing_maps(environment, ctx)
                .create(&PostParams::default(), &config_map)
                .await
                .map(|_| ())
        }
        Effect::PublishRouting => match observation::our_routing_map(&world.gathered) {
            Some(ours) if ours.metadata.resource_version.is_some() => {
                let patch = routing_update(ours, &world.observed.routing.policy);
                routing_maps(environment, ctx)
                    .patch(
                        ROUTING_CONFIG_MAP,
                        &PatchParams::default(),
                        &Patch::Merge(patch),
                    )
                    .await
                    .map(|_| ())
            }
            _ => return Ok(Applied::Raced),
        },
        Effect::UnpublishRouting => match observation::our_routing_map(&world.gathered) {
            // Exactly the version read with the operator's label.
            Some(ours) => {
                let params = DeleteParams {
                    preconditions: Some(Preconditions {
                        uid: ours.metadata.uid.clone(),
                        resource_version: ours.metadata.resource_version.clone(),
                    }),
                    ..DeleteParams::background()
                };
                routing_maps(environment, ctx)
                    .delete(ROUTING_CONFIG_MAP, &params)
                    .await
                    .map(|_| ())
            }
            None => return Ok(Applied::Raced),
        },
        Effect::SyncApp | Effect::EndAppRetry => match &world.gathered.app {
            Some(app) => {
                let provider = ctx.providers.get(environment.spec.template.provider);
                let patch = if effect == Effect::SyncApp {
                    provider.sync_request(app)
                } else {
                    provider.retry_end(app)
                };
                let Some(patch) = patch else {
                    return Ok(Applied::Done);
                };
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_owned()),
                    ..PatchParams::default()
                };
                world
                    .app_api
                    .patch(&app.name_any(), &params, &Patch::Merge(patch))
                    .await
                    .map(|_| ())
            }
            None => return Ok(Applied::Raced),
        },
        Effect::DeleteApp => match &world.gathered.app {
            Some(app) => world
                .app_api
                .delete(&app.name_any(), &delete_exactly(&app.metadata))
                .await
                .map(|_| ()),
            None => return Ok(Applied::Raced),
        },
    };
    match result {
        Ok(()) => Ok(Applied::Done),
        Err(kube::Error::Api(status))
            if status.is_already_exists() || status.is_not_found() || status.is_conflict() =>
        {
            Ok(Applied::Raced)
        }
        Err(error) => Err(Error::Kube(error)),
    }
}

/// Asks every ApplicationSet that generates from TestMesh, where the environment's app
/// lives, to generate again now. A cluster without the kind has nothing to ask.
async fn refresh_generators(
    environment: &TestEnvironment,
    world: &World,
    ctx: &Context,
) -> kube::Result<()> {
    let provider = ctx.providers.get(environment.spec.template.provider);
    let Some(generators) = provider.generators() else {
        return Ok(());
    };
    let namespace = world
        .app_api
        .namespace()
        .unwrap_or(provider.default_namespace());
    let sets: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &generators.resource);
    let listed = match sets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(()),
        listed => listed?,
    };
    for set in listed
        .items
        .iter()
        .filter(|set| (generators.generates_from_testmesh)(set))
    {
        let name = set.name_any();
        tracing::info!(application_set = %name, "asking the ApplicationSet to generate again");
        let patch = Patch::Merge((generators.refresh_request)(jiff::Timestamp::now()));
        match sets.patch(&name, &PatchParams::default(), &patch).await {
            Err(kube::Error::Api(status)) if status.is_not_found() => {}
            result => {
                result?;
            }
        }
    }
    Ok(())
}

fn routing_maps(environment: &TestEnvironment, ctx: &Context) -> Api<ConfigMap> {
    Api::namespaced(ctx.client.clone(), &environment.spec.template.namespace)
}

/// The routing ConfigMap to create: one key per service, with the operator's label as the
/// proof that it is the operator's to update and delete.
fn routing_map(environment: &TestEnvironment, policy: &BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROUTING_CONFIG_MAP.to_owned()),
            namespace: Some(environment.spec.template.namespace.clone()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(policy.clone()),
        ..ConfigMap::default()
    }
}

/// The merge patch that brings the operator's routing ConfigMap, as read, to `policy`:
/// services that left the policy are removed (`null`), and the read `resourceVersion`
/// makes it fail with a conflict if the ConfigMap changed since.
fn routing_update(ours: &ConfigMap, policy: &BTreeMap<String, String>) -> serde_json::Value {
    let mut data: serde_json::Map<String, serde_json::Value> = policy
        .iter()
        .map(|(service, url)| (service.clone(), json!(url)))
        .collect();
    for gone in ours.data.iter().flatten().map(|(service, _)| service) {
        if !policy.contains_key(gone) {
            data.insert(gone.clone(), serde_json::Value::Null);
        }
    }
    json!({
        "metadata": {"resourceVersion": ours.metadata.resource_version},
        "data": data,
    })
}

/// The namespace an environment creates, marked with its UID as proof of ownership.
fn owned_namespace(environment: &TestEnvironment, uid: &str) -> Namespace {
    let workspace = environment.namespace().unwrap_or_default();
    Namespace {
        metadata: ObjectMeta {
            name: Some(environment.spec.template.namespace.clone()),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
                (ENVIRONMENT_UID_ANNOTATION.to_owned(), uid.to_owned()),
            ])),
            annotations: Some(BTreeMap::from([
                (ENVIRONMENT_UID_ANNOTATION.to_owned(), uid.to_owned()),
                (
                    ENVIRONMENT_ANNOTATION.to_owned(),
                    format!("{workspace}/{}", environment.name_any()),
                ),
            ])),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Delete this object and no other: UID precondition, background propagation.
fn delete_exactly(meta: &ObjectMeta) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: meta.uid.clone(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    }
}

/// Writes the status with server-side apply under one field manager. The
/// `resourceVersion` precondition makes it fail with a conflict if the object changed
/// since it was read — so a decision about who holds the environment is never written
/// over a newer one, whichever replica or restart made it.
pub async fn write_status(
    api: &Api<TestEnvironment>,
    environment: &TestEnvironment,
    status: &TestEnvironmentStatus,
) -> Result<()> {
    let name = environment.name_any();
    let body = json!({
        "apiVersion": TestEnvironment::api_version(&()),
        "kind": TestEnvironment::kind(&()),
        "metadata": { "name": name, "resourceVersion": environment.resource_version() },
        "status": status,
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(body),
    )
    .await?;
    Ok(())
}

/// Adds the teardown finalizer; `resourceVersion` makes it a no-op on a stale object.
pub async fn add_finalizer(
    api: &Api<TestEnvironment>,
    environment: &TestEnvironment,
) -> Result<()> {
    let mut finalizers = environment.finalizers().to_vec();
    finalizers.push(TEARDOWN_FINALIZER.to_owned());
    patch_finalizers(api, environment, finalizers).await
}

/// Removes the teardown finalizer once teardown is complete.
pub async fn remove_finalizer(
    api: &Api<TestEnvironment>,
    environment: &TestEnvironment,
) -> Result<()> {
    let finalizers = environment
        .finalizers()
        .iter()
        .filter(|f| *f != TEARDOWN_FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(api, environment, finalizers).await
}

async fn patch_finalizers(
    api: &Api<TestEnvironment>,
    environment: &TestEnvironment,
    finalizers: Vec<String>,
) -> Result<()> {
    let patch = json!({
        "metadata": {
            "resourceVersion": environment.resource_version(),
            "finalizers": finalizers,
        }
    });
    match api
        .patch(
            &environment.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Changed or gone meanwhile: the next event brings the current object.
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => Ok(()),
        Err(error) => Err(Error::Kube(error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_routing_update_removes_the_services_that_left_and_is_conditional() {
        let ours = ConfigMap {
            metadata: ObjectMeta {
                resource_version: Some("42".into()),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([
                ("gone".to_owned(), "http://gone".to_owned()),
                ("kept".to_owned(), "http://old".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        let policy = BTreeMap::from([
            ("kept".to_owned(), "http://new".to_owned()),
            ("added".to_owned(), "http://added".to_owned()),
        ]);
        assert_eq!(
            routing_update(&ours, &policy),
            json!({
                "metadata": {"resourceVersion": "42"},
                "data": {"kept": "http://new", "added": "http://added", "gone": null},
            })
        );
    }
}
