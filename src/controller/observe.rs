//! Observation: describes an environment's namespace, provider app, claims and routing
//! in the lifecycle core's terms, from the informers' caches or fresh from the API server.
//!
//! Caches are good enough to decide what to *report*: a status write carries the
//! object's resourceVersion, so a stale view costs a retry, never a wrong report that
//! sticks. What to *write* anywhere else (create, delete, publish) is decided on a fresh
//! read: right after the operator creates a namespace or deletes an app a cache may not
//! have seen it yet, and acting on a stale view is how operators delete or create things
//! twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::Context;
use crate::error::Result;
use crate::lifecycle::Phase;
use crate::lifecycle::claims::{self, QueueEntry};
use crate::lifecycle::environment::{self, AppState, NamespaceState, Observed, RoutingMap};
use crate::lifecycle::routing::{self, Routing, ServicePorts};
use crate::resources::{
    ENVIRONMENT_UID_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, ROUTING_CONFIG_MAP, TestEnvironment,
    TestEnvironmentClaim,
};

/// Where an observation comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The informers' caches, reading the API server only for what they cannot prove
    /// absent (a namespace TestMesh has not labelled, a kind whose cache has not synced).
    Cache,
    /// The API server, for a decision that creates or deletes.
    ApiServer,
}

/// What the reconciler saw, plus the objects it may have to act on.
pub struct World {
    pub observed: Observed,
    /// The namespace as read, when it exists.
    pub namespace: Option<Arc<Namespace>>,
    /// The provider's app as read, when it exists, with the API to reach it.
    pub app: Option<(Api<DynamicObject>, Arc<DynamicObject>)>,
    /// The operator's routing ConfigMap as read, when it exists.
    pub routing_map: Option<ConfigMap>,
}

/// Reads everything the lifecycle core needs to decide about `environment`.
pub async fn observe(
    environment: &TestEnvironment,
    uid: &str,
    ctx: &Context,
    source: Source,
) -> Result<World> {
    let spec = &environment.spec.template;
    let namespace = read_namespace(environment, ctx, source).await?;
    let namespace_state = classify_namespace(namespace.as_deref(), uid, || {
        ctx.policy.check(&spec.namespace).err()
    });

    let mut teardown_note = None;
    let provider = ctx.providers.get(spec.provider);
    let app_namespace = spec
        .provider_app_namespace
        .as_deref()
        .unwrap_or(provider.default_namespace());
    let resource = provider.api_resource();
    let api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), app_namespace, &resource);
    let cached_apps = ctx
        .caches
        .apps_of(spec.provider)
        .filter(|cache| source == Source::Cache && cache.is_synced());
    let app = match cached_apps {
        Some(cache) => cache
            .get(&ObjectRef::new_with(&spec.provider_app_name, resource).within(app_namespace))
            .map(|packed| packed.unpack().map(Arc::new))
            .transpose()?,
        None => api.get_opt(&spec.provider_app_name).await?.map(Arc::new),
    };
    let (app_state, app) = match app {
        Some(object) => {
            teardown_note = provider.teardown_note(&object);
            (
                AppState::Present(provider.interpret(&object, &spec.namespace)),
                Some((api, object)),
            )
        }
        None => (AppState::Missing, None),
    };

    let teardown = environment::teardown_request(environment);
    let workspace = environment.namespace().unwrap_or_default();
    let claims: Vec<Arc<TestEnvironmentClaim>> = match source {
        Source::Cache => cached_in(&ctx.caches.claims.store, &workspace),
        Source::ApiServer => listed_in(&ctx.client, &workspace).await?,
    };
    let (holders, waiting) = claims_of(environment, &claims);
    let (routing, (routing_map, our_routing_map)) = if matches!(
        namespace_state,
        NamespaceState::Owned {
            terminating: false,
            ..
        }
    ) {
        observe_routing(environment, ctx, source).await?
    } else {
        (Routing::default(), (RoutingMap::Absent, None))
    };
    Ok(World {
        observed: Observed {
            namespace: namespace_state,
            app: app_state,
            holders,
            waiting,
            teardown,
            teardown_note,
            routing,
            routing_map,
        },
        namespace,
        app,
        routing_map: our_routing_map,
    })
}

/// The environment's namespace. The cache holds only namespaces TestMesh labelled, so a
/// miss is confirmed with a GET — unless the environment is destroyed and its namespace
/// long gone.
async fn read_namespace(
    environment: &TestEnvironment,
    ctx: &Context,
    source: Source,
) -> Result<Option<Arc<Namespace>>> {
    let name = &environment.spec.template.namespace;
    let cache = &ctx.caches.namespaces;
    if source == Source::Cache && cache.is_synced() {
        if let Some(namespace) = cache.get(&ObjectRef::new(name)) {
            return Ok(Some(Arc::new(namespace.unpack()?)));
        }
        let destroyed = environment.status.as_ref().and_then(|s| s.phase) == Some(Phase::Destroyed);
        if destroyed {
            return Ok(None);
        }
    }
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    Ok(namespaces.get_opt(name).await?.map(Arc::new))
}

/// The routing policy from the Services of the environment's namespace and its baseline,
/// and the namespace's routing ConfigMap.
async fn observe_routing(
    environment: &TestEnvironment,
    ctx: &Context,
    source: Source,
) -> Result<(Routing, (RoutingMap, Option<ConfigMap>))> {
    let template = &environment.spec.template;
    let deployed = services_in(&template.namespace, ctx, source, Endpoints::Read).await?;
    let baseline = match template
        .routing
        .as_ref()
        .and_then(|r| r.baseline_namespace.as_deref())
    {
        Some(namespace) => services_in(namespace, ctx, source, Endpoints::Ignored).await?,
        None => Vec::new(),
    };
    let routing = routing::compute(template, &deployed, &baseline, &ctx.cluster_domain);
    let maps = &ctx.caches.routing_maps;
    let published = if source == Source::Cache && maps.is_synced() {
        maps.get(&ObjectRef::new(ROUTING_CONFIG_MAP).within(&template.namespace))
            .map(|config_map| config_map.unpack())
            .transpose()?
    } else {
        Api::<ConfigMap>::namespaced(ctx.client.clone(), &template.namespace)
            .get_opt(ROUTING_CONFIG_MAP)
            .await?
    };
    Ok((routing, classify_routing_map(published)))
}

/// The routing ConfigMap in the lifecycle's terms, and the object when it is the
/// operator's: only a ConfigMap carrying the operator's label is ever updated or deleted.
fn classify_routing_map(config_map: Option<ConfigMap>) -> (RoutingMap, Option<ConfigMap>) {
    match config_map {
        None => (RoutingMap::Absent, None),
        Some(config_map)
            if config_map
                .labels()
                .get(MANAGED_BY_LABEL)
                .map(String::as_str)
                == Some(MANAGED_BY) =>
        {
            let published = config_map.data.clone().unwrap_or_default();
            (RoutingMap::Ours(published), Some(config_map))
        }
        Some(_) => (RoutingMap::Foreign, None),
    }
}

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Whether the Services' endpoints matter: only where the environment deploys.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Endpoints {
    Read,
    Ignored,
}

async fn services_in(
    namespace: &str,
    ctx: &Context,
    source: Source,
    endpoints: Endpoints,
) -> Result<Vec<ServicePorts>> {
    let cache = &ctx.caches.services;
    let services: Vec<Arc<Service>> = if source == Source::Cache && cache.is_synced() {
        cached_in(&cache.store, namespace)
    } else {
        listed_in(&ctx.client, namespace).await?
    };
    let slices: Vec<Arc<EndpointSlice>> = match endpoints {
        Endpoints::Ignored => Vec::new(),
        Endpoints::Read => {
            let cache = &ctx.caches.endpoint_slices;
            if source == Source::Cache && cache.is_synced() {
                cache
                    .store
                    .state()
                    .iter()
                    .filter(|slice| slice.namespace() == Some(namespace))
                    .map(|slice| slice.unpack().map(Arc::new))
                    .collect::<Result<_, _>>()?
            } else {
                listed_in(&ctx.client, namespace).await?
            }
        }
    };
    Ok(services
        .iter()
        .map(|service| {
            let name = service.name_any();
            let spec = service.spec.as_ref();
            let selects_pods = spec
                .and_then(|spec| spec.selector.as_ref())
                .is_some_and(|selector| !selector.is_empty());
            ServicePorts {
                serving: endpoints == Endpoints::Ignored
                    || !selects_pods
                    || slices.iter().any(|slice| serves(slice, &name)),
                ports: spec
                    .and_then(|spec| spec.ports.as_ref())
                    .map(|ports| {
                        ports
                            .iter()
                            .map(|port| (port.name.clone(), port.port))
                            .collect()
                    })
                    .unwrap_or_default(),
                name,
            }
        })
        .collect())
}

/// What routing reads of an EndpointSlice: its Service (a label) and whether each
/// endpoint is ready; not addresses, ports, zones or the pods behind them.
pub fn readiness_only(slice: EndpointSlice) -> EndpointSlice {
    let service = slice.labels().get(SERVICE_NAME_LABEL).cloned();
    EndpointSlice {
        metadata: ObjectMeta {
            name: slice.metadata.name,
            namespace: slice.metadata.namespace,
            resource_version: slice.metadata.resource_version,
            labels: service
                .map(|service| BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), service)])),
            ..ObjectMeta::default()
        },
        address_type: slice.address_type,
        endpoints: slice.endpoints.map(|endpoints| {
            endpoints
                .into_iter()
                .map(|endpoint| Endpoint {
                    conditions: endpoint.conditions.map(|conditions| EndpointConditions {
                        ready: conditions.ready,
                        ..EndpointConditions::default()
                    }),
                    ..Endpoint::default()
                })
                .collect()
        }),
        ports: None,
    }
}

/// Whether `slice` belongs to the Service `service` and holds a ready endpoint (an
/// endpoint whose readiness is not stated counts as ready, as Kubernetes documents).
fn serves(slice: &EndpointSlice, service: &str) -> bool {
    slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
        && slice.endpoints.iter().flatten().any(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|conditions| conditions.ready)
                .unwrap_or(true)
        })
}

/// The cached objects of one namespace.
pub fn cached_in<K>(store: &Store<K>, namespace: &str) -> Vec<Arc<K>>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store
        .state()
        .into_iter()
        .filter(|object| object.namespace().as_deref() == Some(namespace))
        .collect()
}

/// Every object of one namespace, fresh from the API server.
pub async fn listed_in<K>(client: &Client, namespace: &str) -> Result<Vec<Arc<K>>>
where
    K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let listed = Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await?;
    Ok(listed.items.into_iter().map(Arc::new).collect())
}

/// The claims that hold the environment and still want it, and those waiting for it in
/// queue order.
fn claims_of(
    environment: &TestEnvironment,
    claims: &[Arc<TestEnvironmentClaim>],
) -> (Vec<String>, Vec<String>) {
    let name = environment.name_any();
    let entries: Vec<QueueEntry<'_>> = claims.iter().map(|claim| QueueEntry::of(claim)).collect();
    let queue = claims::queue(&entries, &name, &environment.spec.context);
    let current = environment
        .status
        .as_ref()
        .map(|s| s.claimed_by.as_slice())
        .unwrap_or_default();
    let holders: Vec<String> = current
        .iter()
        .filter(|holder| queue.iter().any(|entry| entry.name == holder.as_str()))
        .cloned()
        .collect();
    let waiting = queue
        .iter()
        .filter(|entry| !holders.iter().any(|h| h == entry.name))
        .map(|entry| entry.name.to_owned())
        .collect();
    (holders, waiting)
}

/// Owned only when the namespace carries this environment's UID; a namespace that is
/// not ours is refused by policy or reported as not owned, and never touched.
fn classify_namespace(
    namespace: Option<&Namespace>,
    uid: &str,
    policy_refusal: impl FnOnce() -> Option<String>,
) -> NamespaceState {
    let owned = namespace.is_some_and(|ns| {
        ns.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ENVIRONMENT_UID_ANNOTATION))
            .is_some_and(|owner| owner == uid)
    });
    if let (Some(ns), true) = (namespace, owned) {
        let terminating = ns.metadata.deletion_timestamp.is_some();
        return NamespaceState::Owned {
            terminating,
            blockers: terminating.then(|| deletion_blockers(ns)).flatten(),
            created_at: ns.metadata.creation_timestamp.as_ref().map(|t| t.0),
        };
    }
    if let Some(refusal) = policy_refusal() {
        return NamespaceState::Refused(refusal);
    }
    match namespace {
        Some(_) => NamespaceState::NotOwned,
        None => NamespaceState::Absent,
    }
}

/// What keeps a terminating namespace alive, from the namespace controller's conditions
/// (remaining content, remaining finalizers, failed deletions).
fn deletion_blockers(namespace: &Namespace) -> Option<String> {
    let conditions = namespace.status.as_ref()?.conditions.as_ref()?;
    let blockers: Vec<String> = conditions
        .iter()
        .filter(|c| c.status == "True")
        .filter_map(|c| c.message.clone())
        .collect();
    (!blockers.is_empty()).then(|| blockers.join("; "))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::{NamespaceCondition, NamespaceStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    use super::*;

    fn namespace(owner: Option<&str>) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("review-pr-1".into()),
                annotations: owner.map(|uid| {
                    BTreeMap::from([(ENVIRONMENT_UID_ANNOTATION.to_owned(), uid.to_owned())])
                }),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    #[test]
    fn only_a_namespace_with_our_uid_is_owned() {
        let allowed = || None;
        assert_eq!(
            classify_namespace(Some(&namespace(Some("uid-1"))), "uid-1", allowed),
            NamespaceState::Owned {
                terminating: false,
                blockers: None,
                created_at: None,
            }
        );
        assert_eq!(
            classify_namespace(Some(&namespace(Some("uid-2"))), "uid-1", allowed),
            NamespaceState::NotOwned,
            "another environment's namespace"
        );
        assert_eq!(
            classify_namespace(Some(&namespace(None)), "uid-1", allowed),
            NamespaceState::NotOwned
        );
        assert_eq!(
            classify_namespace(None, "uid-1", allowed),
            NamespaceState::Absent
        );
    }

    #[test]
    fn policy_refuses_absent_or_foreign_namespaces_but_not_our_own() {
        let refuse = || Some("protected".to_owned());
        assert_eq!(
            classify_namespace(None, "uid-1", refuse),
            NamespaceState::Refused("protected".into())
        );
        assert_eq!(
            classify_namespace(Some(&namespace(None)), "uid-1", refuse),
            NamespaceState::Refused("protected".into())
        );
        assert!(matches!(
            classify_namespace(Some(&namespace(Some("uid-1"))), "uid-1", refuse),
            NamespaceState::Owned { .. }
        ));
    }

    #[test]
    fn terminating_namespace_reports_its_blockers() {
        let mut ns = namespace(Some("uid-1"));
        ns.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        ns.status = Some(NamespaceStatus {
            conditions: Some(vec![
                NamespaceCondition {
                    type_: "NamespaceContentRemaining".into(),
                    status: "True".into(),
                    message: Some(
                        "Some resources are remaining: configmaps. has 1 resource instances".into(),
                    ),
                    ..NamespaceCondition::default()
                },
                NamespaceCondition {
                    type_: "NamespaceDeletionDiscoveryFailure".into(),
                    status: "False".into(),
                    message: Some("All resources successfully discovered".into()),
                    ..NamespaceCondition::default()
                },
            ]),
            ..NamespaceStatus::default()
        });
        assert_eq!(
            classify_namespace(Some(&ns), "uid-1", || None),
            NamespaceState::Owned {
                terminating: true,
                blockers: Some(
                    "Some resources are remaining: configmaps. has 1 resource instances".into()
                ),
                created_at: None,
            }
        );
    }

    #[test]
    fn only_a_routing_config_map_with_the_operators_label_is_ours() {
        let config_map = |labels: &[(&str, &str)]| ConfigMap {
            metadata: ObjectMeta {
                name: Some(ROUTING_CONFIG_MAP.into()),
                uid: Some("cm-uid".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect(),
                ),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("web".into(), "http://web".into())])),
            ..ConfigMap::default()
        };
        assert_eq!(classify_routing_map(None), (RoutingMap::Absent, None));
        let ours = config_map(&[(MANAGED_BY_LABEL, MANAGED_BY)]);
        assert_eq!(
            classify_routing_map(Some(ours.clone())),
            (
                RoutingMap::Ours(BTreeMap::from([("web".into(), "http://web".into())])),
                Some(ours)
            )
        );
        for foreign in [
            config_map(&[]),
            config_map(&[(MANAGED_BY_LABEL, "helm")]),
            config_map(&[("testmesh", MANAGED_BY)]),
        ] {
            assert_eq!(
                classify_routing_map(Some(foreign)),
                (RoutingMap::Foreign, None)
            );
        }
    }
}
