//! From the objects the reconciler gathered to what the state machine decides on.
//!
//! The reconciler reads objects — the namespace, the provider's app, the workspace's
//! claims, the Services and EndpointSlices, the routing ConfigMap — and nothing else.
//! What they *mean* is decided here: whether a namespace is the environment's (its UID
//! annotation is the only proof), which claims hold it and which wait in what order,
//! which Services serve, whose routing ConfigMap it is. A cached and a fresh read of the
//! same objects are read the same way, so a decision taken again on a fresh read
//! differs only because the world did.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use kube::ResourceExt;
use kube::api::DynamicObject;

use super::claims::{self, QueueEntry};
use super::environment::{
    self, AppDeletion, AppReport, AppState, NamespaceState, Observed, RoutingMap,
};
use super::policy::NamespacePolicy;
use super::routing::{self, Routing, ServicePorts};
use crate::resources::{
    ENVIRONMENT_UID_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, TestEnvironment, TestEnvironmentClaim,
};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Where an observation comes from, the cheapest first. A decision says how fresh a read
/// it must be made again from before it is acted on
/// ([`environment::Decision::fresh_read`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Source {
    /// The informers' caches, reading the API server only for what they cannot prove
    /// absent (a namespace TestMesh has not labelled, a kind whose cache has not synced).
    Cache,
    /// The caches, with the claims the environment names as holders read by name: the
    /// proof that letting a run go needs ([`with_fresh_holders`]). Enough for a decision
    /// that writes nothing but the environment's own status, which its resourceVersion
    /// guards.
    FreshHolders,
    /// The API server, for a decision that creates, deletes or publishes.
    ApiServer,
}

/// How a GitOps controller's app reads in the lifecycle's terms; each provider adapter
/// implements it.
pub trait AppReader {
    /// Interprets one app for an environment whose namespace is `environment_namespace`.
    fn interpret(&self, app: &DynamicObject, environment_namespace: &str) -> AppReport;

    /// What deleting this app will not do, if anything (shown while tearing down).
    fn teardown_note(&self, _app: &DynamicObject) -> Option<String> {
        None
    }
}

/// The objects gathered for one environment, as read: nothing interpreted.
#[derive(Clone, Debug, Default)]
pub struct Gathered {
    /// The namespace the environment names, when it exists.
    pub namespace: Option<Arc<Namespace>>,
    /// The provider's app the environment names, when it exists.
    pub app: Option<Arc<DynamicObject>>,
    /// Every claim of the environment's workspace.
    pub claims: Vec<Arc<TestEnvironmentClaim>>,
    /// What routing is computed from; gathered only where [`routes_from`] says.
    pub routing: Option<RoutingObjects>,
    /// The ApplicationSets generating from TestMesh with a generation pending; gathered
    /// only where [`reads_generators`] says.
    pub generators_pending: Vec<String>,
    /// Whether any ApplicationSet generates from TestMesh; read with the above.
    pub generating_from_testmesh: bool,
}

/// What the routing policy is computed from.
#[derive(Clone, Debug, Default)]
pub struct RoutingObjects {
    /// The Services of the environment's namespace.
    pub services: Vec<Arc<Service>>,
    /// The EndpointSlices of the environment's namespace.
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    /// The Services of the routing baseline's namespace, if one is named.
    pub baseline_services: Vec<Arc<Service>>,
    /// The namespace's routing ConfigMap, whoever wrote it.
    pub config_map: Option<ConfigMap>,
}

/// How the operator is configured to read what it gathered.
pub struct Reading<'a, R: AppReader + ?Sized> {
    pub provider: &'a R,
    pub policy: &'a NamespacePolicy,
    pub cluster_domain: &'a str,
}

/// Whether routing is read at all: only in the environment's own namespace while it
/// lives (a namespace that is not ours, or is going, publishes nothing of ours).
pub fn routes_from(namespace: Option<&Namespace>, uid: &str) -> bool {
    namespace.is_some_and(|ns| is_ours(ns, uid) && ns.metadata.deletion_timestamp.is_none())
}

/// Whether the ApplicationSets' pending generations are read: fresh, for an environment
/// whose teardown has begun but not ended and that created its namespace (so the
/// generator may have listed it). They decide whether its namespace may go.
pub fn reads_generators(environment: &TestEnvironment) -> bool {
    environment.status.as_ref().is_some_and(|status| {
        status.teardown_started_at.is_some()
            && status.provisioning_started_at.is_some()
            && status.phase != Some(super::Phase::Destroyed)
    })
}

/// What the state machine decides on, from what was gathered.
pub fn observed<R: AppReader + ?Sized>(
    environment: &TestEnvironment,
    uid: &str,
    gathered: &Gathered,
    reading: &Reading<'_, R>,
) -> Observed {
    let template = &environment.spec.template;
    let namespace = classify_namespace(gathered.namespace.as_deref(), uid, || {
        reading.policy.check(&template.namespace).err()
    });
    let (app, teardown_note) = match gathered.app.as_deref() {
        Some(object) => (
            AppState::Present(generated_for(
                reading.provider.interpret(object, &template.namespace),
                uid,
            )),
            reading.provider.teardown_note(object),
        ),
        None => (AppState::Missing, None),
    };
    let (holders, waiting) = claims_of(environment, &gathered.claims);
    let (routing, routing_map) = match &gathered.routing {
        Some(objects) => {
            let deployed = service_ports(&objects.services, Some(&objects.endpoint_slices));
            let baseline = service_ports(&objects.baseline_services, None);
            (
                routing::compute(template, &deployed, &baseline, reading.cluster_domain),
                classify_routing_map(objects.config_map.as_ref()),
            )
        }
        None => (Routing::default(), RoutingMap::Absent),
    };
    Observed {
        namespace,
        app,
        holders,
        waiting,
        teardown: environment::teardown_request(environment),
        teardown_note,
        routing,
        routing_map,
        generators_pending: gathered.generators_pending.clone(),
        generating_from_testmesh: gathered.generating_from_testmesh,
    }
}

/// The routing ConfigMap when it is the operator's — the only one ever updated or
/// deleted — from what was gathered.
pub fn our_routing_map(gathered: &Gathered) -> Option<&ConfigMap> {
    let config_map = gathered.routing.as_ref()?.config_map.as_ref()?;
    carries_operators_label(config_map).then_some(config_map)
}

/// The routing ConfigMap's proof of being the operator's: its label.
fn carries_operators_label(config_map: &ConfigMap) -> bool {
    config_map
        .labels()
        .get(MANAGED_BY_LABEL)
        .map(String::as_str)
        == Some(MANAGED_BY)
}

/// A generated app is this environment's to have deleted by its ApplicationSet only when
/// it was generated for this environment's UID; one generated for another environment
/// (a namesake) is kept.
fn generated_for(mut report: AppReport, uid: &str) -> AppReport {
    if let AppDeletion::Generated {
        application_set,
        environment_uid,
    } = &report.deletion
        && environment_uid != uid
    {
        report.deletion = AppDeletion::Retained(format!(
            "generated by ApplicationSet {application_set} for another environment (UID {environment_uid})"
        ));
    }
    report
}

/// A namespace is the environment's only when it carries the environment's UID.
fn is_ours(namespace: &Namespace, uid: &str) -> bool {
    namespace
        .annotations()
        .get(ENVIRONMENT_UID_ANNOTATION)
        .is_some_and(|owner| owner == uid)
}

/// Owned only when the namespace carries this environment's UID; a namespace that is
/// not ours is refused by policy or reported as not owned, and never touched.
fn classify_namespace(
    namespace: Option<&Namespace>,
    uid: &str,
    policy_refusal: impl FnOnce() -> Option<String>,
) -> NamespaceState {
    if let Some(ns) = namespace.filter(|ns| is_ours(ns, uid)) {
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

/// The routing ConfigMap in the lifecycle's terms: the operator's only when it carries
/// the operator's label.
fn classify_routing_map(config_map: Option<&ConfigMap>) -> RoutingMap {
    match config_map {
        None => RoutingMap::Absent,
        Some(config_map) if carries_operators_label(config_map) => {
            RoutingMap::Ours(config_map.data.clone().unwrap_or_default())
        }
        Some(_) => RoutingMap::Foreign,
    }
}

/// Services as routing reads them. With `endpoint_slices`, a Service that selects pods
/// serves only once one of its slices holds a ready endpoint; without (a baseline the
/// environment does not deploy), every Service counts as serving.
fn service_ports(
    services: &[Arc<Service>],
    endpoint_slices: Option<&[Arc<EndpointSlice>]>,
) -> Vec<ServicePorts> {
    services
        .iter()
        .map(|service| {
            let name = service.name_any();
            let spec = service.spec.as_ref();
            let selects_pods = spec
                .and_then(|spec| spec.selector.as_ref())
                .is_some_and(|selector| !selector.is_empty());
            let serving = match endpoint_slices {
                None => true,
                Some(slices) => !selects_pods || slices.iter().any(|slice| serves(slice, &name)),
            };
            ServicePorts {
                serving,
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
        .collect()
}

/// Whether `slice` belongs to the Service `service` and holds a ready endpoint.
fn serves(slice: &EndpointSlice, service: &str) -> bool {
    slice.labels().get(SERVICE_NAME_LABEL).map(String::as_str) == Some(service)
        && slice.endpoints.iter().flatten().any(counts_as_ready)
}

/// Whether `endpoint` is ready: one whose readiness is not stated counts as ready, as
/// Kubernetes documents.
pub fn counts_as_ready(endpoint: &Endpoint) -> bool {
    endpoint
        .conditions
        .as_ref()
        .and_then(|conditions| conditions.ready)
        .unwrap_or(true)
}

/// The workspace's claims for a decision taken on a fresh read: the cached claims, with
/// each claim the environment's status names as a holder as the API server just returned
/// it (`fresh`: its name, and the claim or `None` when there is none). Letting a run go
/// needs proof that its claim is gone or done, and a holder read by name is that proof;
/// who waits, and in what order, is read from the cache, as every binding is — a claim
/// the cache has not seen yet waits one event longer, never breaks exclusivity, which the
/// environment's status write guards with its resourceVersion.
pub fn with_fresh_holders(
    cached: Vec<Arc<TestEnvironmentClaim>>,
    fresh: Vec<(String, Option<Arc<TestEnvironmentClaim>>)>,
) -> Vec<Arc<TestEnvironmentClaim>> {
    let mut claims: Vec<Arc<TestEnvironmentClaim>> = cached
        .into_iter()
        .filter(|claim| !fresh.iter().any(|(name, _)| *name == claim.name_any()))
        .collect();
    claims.extend(fresh.into_iter().filter_map(|(_, claim)| claim));
    claims
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

#[cfg(test)]
mod tests;
