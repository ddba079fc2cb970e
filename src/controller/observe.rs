//! Observation: gathers an environment's namespace, provider app, claims and routing
//! objects from the informers' caches or fresh from the API server. What they mean is
//! the core's to say ([`crate::lifecycle::observation`]); this module only fetches.
//!
//! Caches are good enough to decide what to *report*: a status write carries the
//! object's resourceVersion, so a stale view costs a retry, never a wrong report that
//! sticks. What to *write* anywhere else (create, delete, publish) is decided on a fresh
//! read: right after the operator creates a namespace or deletes an app a cache may not
//! have seen it yet, and acting on a stale view is how operators delete or create things
//! twice.
//!
//! A fresh read asks for everything at once, not one request after another. What it
//! reads fresh is what the operator creates, deletes or hands on — the namespace, the
//! app, the claims holding the environment (by name: a consistent list of claims waits
//! on this API server's watch cache, p99 89 ms at each hand-over of a queue, where a GET
//! takes a few), the routing ConfigMap. Letting a run go writes nothing but the
//! environment's status, so it reads only the holders fresh ([`Source::FreshHolders`]):
//! that read stands between a release and the next run's binding. Services and
//! EndpointSlices, which it never writes and which only shape the routing it reports and
//! publishes (a publish is conditional on the ConfigMap's fresh resourceVersion), come
//! from their caches once synced: a fresh list of a kind that has been quiet waits on
//! this API server for its watch cache to catch up, 50–100 ms (seen at each hand-over of
//! a queue).

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use kube::api::{Api, DynamicObject, ListParams, ObjectMeta};
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Context;
use super::informers::Cache;
use super::packed::PackedStore;
use crate::error::Result;
use crate::lifecycle::Phase;
use crate::lifecycle::environment::Observed;
use crate::lifecycle::observation::{
    self, Gathered, Reading, RoutingObjects, SERVICE_NAME_LABEL, Source, counts_as_ready,
};
use crate::providers::Generators;
use crate::resources::{ROUTING_CONFIG_MAP, TestEnvironment, TestEnvironmentClaim};

/// What the reconciler gathered, read in the core's terms.
pub struct World {
    pub gathered: Gathered,
    pub observed: Observed,
    /// The API of the provider's app kind, where the environment's app lives.
    pub app_api: Api<DynamicObject>,
}

/// Gathers what the lifecycle core needs about `environment`, and reads it through the
/// core ([`observation::observed`]): this function only fetches.
pub async fn observe(
    environment: &TestEnvironment,
    uid: &str,
    ctx: &Context,
    source: Source,
) -> Result<World> {
    let spec = &environment.spec.template;
    let provider = ctx.providers.get(spec.provider);
    let app_namespace = spec
        .provider_app_namespace
        .as_deref()
        .unwrap_or(provider.default_namespace());
    let resource = provider.api_resource();
    let app_api: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), app_namespace, &resource);
    let cached_apps = ctx
        .caches
        .apps_of(spec.provider)
        .filter(|cache| source < Source::ApiServer && cache.is_synced());
    let app = async {
        Ok::<_, crate::error::Error>(match cached_apps {
            Some(cache) => cache
                .store
                .get(Some(app_namespace), &spec.provider_app_name)
                .map(|packed| packed.unpack().map(Arc::new))
                .transpose()?,
            None => app_api
                .get_opt(&spec.provider_app_name)
                .await?
                .map(Arc::new),
        })
    };
    let workspace = environment.namespace().unwrap_or_default();
    let claims = async {
        let cached = cached_in(&ctx.caches.claims.store, &workspace);
        if source == Source::Cache {
            return Ok(cached);
        }
        let fresh = holders_read(environment, &ctx.client, &workspace).await?;
        Ok(observation::with_fresh_holders(cached, fresh))
    };
    // Asked for with the rest: whether routing is gathered at all depends on the
    // namespace read beside it, and a GET too many costs less than one in a row.
    let config_map = read_routing_map(environment, ctx, source);
    let generators_pending = async {
        match provider.generators() {
            Some(generators)
                if source == Source::ApiServer && observation::reads_generators(environment) =>
            {
                pending_generations(&generators, app_namespace, &workspace, ctx).await
            }
            _ => Ok((false, Vec::new())),
        }
    };
    let (namespace, app, claims, config_map, (generating_from_testmesh, generators_pending)) = futures::try_join!(
        read_namespace(environment, ctx, source),
        app,
        claims,
        config_map,
        generators_pending
    )?;
    let routing = if observation::routes_from(namespace.as_deref(), uid) {
        Some(gather_routing(environment, ctx, config_map).await?)
    } else {
        None
    };
    let gathered = Gathered {
        namespace,
        app,
        claims,
        routing,
        generators_pending,
        generating_from_testmesh,
    };
    let reading = Reading {
        provider,
        policy: &ctx.policy,
        cluster_domain: &ctx.cluster_domain,
    };
    Ok(World {
        observed: observation::observed(environment, uid, &gathered, &reading),
        gathered,
        app_api,
    })
}

/// Whether any ApplicationSet of `namespace` generates from TestMesh for `workspace`, and
/// those that have a generation pending, fresh from the API server (none where their kind
/// is not installed).
async fn pending_generations(
    generators: &Generators,
    namespace: &str,
    workspace: &str,
    ctx: &Context,
) -> Result<(bool, Vec<String>)> {
    let sets: Api<DynamicObject> =
        Api::namespaced_with(ctx.client.clone(), namespace, &generators.resource);
    let listed = match sets.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) if status.is_not_found() => return Ok((false, Vec::new())),
        listed => listed?,
    };
    let generating: Vec<&DynamicObject> = listed
        .items
        .iter()
        .filter(|set| (generators.generates_for)(set, workspace))
        .collect();
    let pending = generating
        .iter()
        .filter(|set| (generators.refresh_pending)(set))
        .map(|set| set.name_any())
        .collect();
    Ok((!generating.is_empty(), pending))
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
    if source < Source::ApiServer && cache.is_synced() {
        if let Some(namespace) = cache.store.get(None, name) {
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

/// The routing ConfigMap of the environment's namespace: the operator writes and deletes
/// it, so a fresh observation reads it fresh.
async fn read_routing_map(
    environment: &TestEnvironment,
    ctx: &Context,
    source: Source,
) -> Result<Option<ConfigMap>> {
    let namespace = environment.spec.template.namespace.as_str();
    let maps = &ctx.caches.routing_maps;
    if source < Source::ApiServer && maps.is_synced() {
        Ok(maps
            .store
            .get(Some(namespace), ROUTING_CONFIG_MAP)
            .map(|config_map| config_map.unpack())
            .transpose()?)
    } else {
        Ok(Api::<ConfigMap>::namespaced(ctx.client.clone(), namespace)
            .get_opt(ROUTING_CONFIG_MAP)
            .await?)
    }
}

/// The Services and EndpointSlices of the environment's namespace and its baseline's
/// Services, from the caches once synced (see the module's note), with its routing
/// ConfigMap as read.
async fn gather_routing(
    environment: &TestEnvironment,
    ctx: &Context,
    config_map: Option<ConfigMap>,
) -> Result<RoutingObjects> {
    let template = &environment.spec.template;
    let namespace = template.namespace.as_str();
    let services = packed_in(&ctx.caches.services, namespace, ctx).await?;
    let endpoint_slices = packed_in(&ctx.caches.endpoint_slices, namespace, ctx).await?;
    let baseline_services = match template
        .routing
        .as_ref()
        .and_then(|r| r.baseline_namespace.as_deref())
    {
        Some(baseline) => packed_in(&ctx.caches.services, baseline, ctx).await?,
        None => Vec::new(),
    };
    Ok(RoutingObjects {
        services,
        endpoint_slices,
        baseline_services,
        config_map,
    })
}

/// The objects of one namespace from a packed cache once it is synced, listed before.
async fn packed_in<K>(
    cache: &Cache<PackedStore<K>>,
    namespace: &str,
    ctx: &Context,
) -> Result<Vec<Arc<K>>>
where
    K: Resource<Scope = NamespaceResourceScope>
        + Clone
        + Serialize
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    if cache.is_synced() {
        Ok(cache
            .store
            .in_namespace(namespace)
            .iter()
            .map(|object| object.unpack().map(Arc::new))
            .collect::<Result<_, _>>()?)
    } else {
        listed_in(&ctx.client, namespace).await
    }
}

/// What routing reads of a Service: its name, its ports' names and numbers, and whether
/// it selects pods (the selector itself is not read). Kept whole, a Service of a cluster
/// with thousands of them is most of the operator's memory that is not its own objects.
pub fn routing_only(service: Service) -> Service {
    let spec = service.spec.unwrap_or_default();
    let selects_pods = spec.selector.as_ref().is_some_and(|s| !s.is_empty());
    Service {
        metadata: ObjectMeta {
            name: service.metadata.name,
            namespace: service.metadata.namespace,
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            selector: selects_pods.then(|| BTreeMap::from([(String::new(), String::new())])),
            ports: spec.ports.map(|ports| {
                ports
                    .into_iter()
                    .map(|port| ServicePort {
                        name: port.name,
                        port: port.port,
                        ..ServicePort::default()
                    })
                    .collect()
            }),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

/// What routing reads of an EndpointSlice: its Service (a label) and whether it holds a
/// ready endpoint — kept as the first endpoint that counts as ready, reduced to its
/// readiness, or none; not addresses, ports, zones, the pods behind them or the other
/// endpoints (a slice holds up to 100), which would make every slice of the cluster cost
/// the cache as much as its whole text.
pub fn readiness_only(slice: EndpointSlice) -> EndpointSlice {
    let service = slice.labels().get(SERVICE_NAME_LABEL).cloned();
    let ready = slice
        .endpoints
        .into_iter()
        .flatten()
        .find(counts_as_ready)
        .map(|endpoint| Endpoint {
            conditions: endpoint.conditions.map(|conditions| EndpointConditions {
                ready: conditions.ready,
                ..EndpointConditions::default()
            }),
            ..Endpoint::default()
        });
    EndpointSlice {
        metadata: ObjectMeta {
            name: slice.metadata.name,
            namespace: slice.metadata.namespace,
            labels: service
                .map(|service| BTreeMap::from([(SERVICE_NAME_LABEL.to_owned(), service)])),
            ..ObjectMeta::default()
        },
        address_type: slice.address_type,
        endpoints: ready.map(|endpoint| vec![endpoint]),
        ports: None,
    }
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

/// The claims the environment's status names as its holders, each read by name (from
/// etcd, not a watch cache): `None` for one that is gone.
async fn holders_read(
    environment: &TestEnvironment,
    client: &Client,
    workspace: &str,
) -> Result<Vec<(String, Option<Arc<TestEnvironmentClaim>>)>> {
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), workspace);
    let holders = environment
        .status
        .as_ref()
        .map(|status| status.claimed_by.as_slice())
        .unwrap_or_default();
    futures::future::try_join_all(holders.iter().map(|name| {
        let claims = &claims;
        async move {
            let claim = claims.get_opt(name).await?.map(Arc::new);
            Ok::<_, crate::error::Error>((name.clone(), claim))
        }
    }))
    .await
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_service_keeps_its_name_ports_and_whether_it_selects_pods() {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": "user-service", "namespace": "review-pr-1",
                         "labels": {"app": "user"}, "annotations": {"note": "x"}},
            "spec": {"selector": {"app": "user"}, "clusterIP": "10.0.0.7", "type": "ClusterIP",
                     "ports": [{"name": "http", "port": 8080, "targetPort": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}
        }))
        .expect("service");
        let kept = routing_only(service);
        assert_eq!(
            serde_json::to_value(&kept).expect("json"),
            json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "user-service", "namespace": "review-pr-1"},
                "spec": {"selector": {"": ""}, "ports": [{"name": "http", "port": 8080}]}
            })
        );

        let headless: Service = serde_json::from_value(json!({
            "metadata": {"name": "external", "namespace": "review-pr-1"},
            "spec": {"selector": {}, "ports": [{"port": 443}]}
        }))
        .expect("service");
        assert_eq!(routing_only(headless).spec.expect("spec").selector, None);
    }

    fn slice(endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(json!({
            "metadata": {"name": "web-x7k2p", "namespace": "review-pr-1", "resourceVersion": "9",
                         "labels": {SERVICE_NAME_LABEL: "web", "endpointslice.kubernetes.io/managed-by": "x"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints
        }))
        .expect("slice")
    }

    #[test]
    fn a_slice_keeps_its_service_and_one_ready_endpoint_at_most() {
        let kept = readiness_only(slice(json!([
            {"addresses": ["10.0.0.1"], "conditions": {"ready": false, "serving": true}},
            {"addresses": ["10.0.0.2"], "conditions": {"serving": true}, "nodeName": "n1"},
            {"addresses": ["10.0.0.3"], "conditions": {"ready": true}}
        ])));
        assert_eq!(
            serde_json::to_value(&kept).expect("json"),
            json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "web-x7k2p", "namespace": "review-pr-1",
                             "labels": {SERVICE_NAME_LABEL: "web"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [], "conditions": {}}]
            }),
            "the first endpoint that counts as ready: its readiness is not stated"
        );

        let none_ready = readiness_only(slice(json!([
            {"addresses": ["10.0.0.1"], "conditions": {"ready": false}},
            {"addresses": ["10.0.0.2"], "conditions": {"ready": false}}
        ])));
        assert_eq!(none_ready.endpoints, None);
        assert_eq!(readiness_only(slice(json!([]))).endpoints, None);
    }
}
