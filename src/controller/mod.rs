//! The reconcilers: one informer per kind the operator reads, feeding caches and the
//! triggers (`triggers`), and two controllers — environments and claims — that run each
//! reconciliation as observe → decide (the lifecycle core) → apply. Starting the process,
//! serving HTTP and leading are [`crate::operator`]'s.

mod apply;
mod backoff;
mod claim;
mod context;
mod environment;
mod events;
mod index;
mod informers;
mod observe;
mod packed;
mod triggers;
mod wakeups;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::channel::mpsc;
use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Controller, controller, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::config::RunConfig;
use crate::metrics::Metrics;
use crate::providers::{ArgoCd, Flux, Providers};
use crate::resources::{
    MANAGED_BY, MANAGED_BY_LABEL, Provider, ROUTING_CONFIG_MAP, TestEnvironment,
    TestEnvironmentClaim,
};
use events::Recorder;
use index::SharedIndex;
use informers::{Cache, Change};
use packed::{Packed, PackedStore};
use triggers::{
    claims_of_environment, environment_of_namespace, environments_of_app, environments_of_claim,
};
use wakeups::Wakeups;

pub use apply::FIELD_MANAGER;
use context::backoff_key;
pub use context::{AppCache, Caches, Context};

/// Reconciliations of one kind in flight at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Starts the informers and runs the environment and claim controllers until
/// `shutdown`, after which they finish their in-flight reconciliations.
pub async fn run(
    client: Client,
    config: &RunConfig,
    identity: String,
    ready: Arc<AtomicBool>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let scope = config.watch_namespace.clone();
    let scoped = |client: &Client| -> (Api<TestEnvironment>, Api<TestEnvironmentClaim>) {
        match &scope {
            Some(namespace) => (
                Api::namespaced(client.clone(), namespace),
                Api::namespaced(client.clone(), namespace),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        }
    };
    let (environments_api, claims_api) = scoped(&client);
    let providers = Providers {
        argocd: ArgoCd {
            namespace: config.argocd_namespace.clone(),
            generator_config_map: config.generator_config_map.clone(),
        },
        flux: Flux {
            namespace: config.flux_namespace.clone(),
        },
    };

    // What each controller is to reconcile: its own objects as they change, and those
    // other kinds' changes concern. The informers' caches hold the objects themselves.
    let (environment_refs, environment_triggers) = mpsc::unbounded();
    let (claim_refs, claim_triggers) = mpsc::unbounded();
    let environment_writer = reflector::store::Writer::default();
    let environments = environment_writer.as_reader();
    let claim_writer = reflector::store::Writer::default();
    let claims = claim_writer.as_reader();
    metrics.count_phases_of(environments.clone());

    let index = SharedIndex::default();
    let environment_wakeups = Wakeups::<TestEnvironment>::default();
    let claim_wakeups = Wakeups::<TestEnvironmentClaim>::default();
    let environment_clock = environment_wakeups
        .clone()
        .fire(environment_refs.clone(), shutdown.clone());
    let claim_clock = claim_wakeups
        .clone()
        .fire(claim_refs.clone(), shutdown.clone());

    let environment_cache = {
        let claims = claims.clone();
        let index = index.clone();
        let wakeups = environment_wakeups.clone();
        controlled_informer(
            "TestEnvironment",
            environments_api,
            environment_writer,
            environment_refs.clone(),
            claim_refs.clone(),
            move |environment, change| {
                match change {
                    Change::Applied => index.write().applied(environment),
                    Change::Deleted => {
                        index.write().deleted(environment);
                        wakeups.set(environment, None);
                    }
                }
                claims_of_environment(&claims, environment)
            },
        )
    };
    let claim_cache = {
        let index = index.clone();
        let wakeups = claim_wakeups.clone();
        controlled_informer(
            "TestEnvironmentClaim",
            claims_api,
            claim_writer,
            claim_refs,
            environment_refs.clone(),
            move |claim, change| {
                if change == Change::Deleted {
                    wakeups.set(claim, None);
                }
                environments_of_claim(&index.read(), claim)
            },
        )
    };
    let dependents = Dependents {
        index: index.clone(),
        refs: environment_refs.clone(),
    };
    let namespaces = namespace_informer(&client, &dependents, scope.clone());
    let apps = app_informers(&client, &providers, &dependents);
    let services = service_informer(&client, &dependents);
    let endpoint_slices = endpoint_slice_informer(&client, &dependents);
    let routing_maps = routing_map_informer(&client, &dependents);
    tokio::spawn(report_ready(
        environment_cache.clone(),
        claim_cache.clone(),
        ready,
    ));

    // Bounded, so that thousands of environments reconciled at once (a restart, a burst of
    // expiries) share a few connections instead of opening one each.
    let bounded = || controller::Config::default().concurrency(RECONCILE_CONCURRENCY);
    let environment_controller = Controller::for_stream(stream::empty(), environments.clone())
        .with_config(bounded())
        .reconcile_on(environment_triggers);
    let claim_controller = Controller::for_stream(stream::empty(), claims.clone())
        .with_config(bounded())
        .reconcile_on(claim_triggers);
    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "testmesh".into(),
                instance: Some(identity),
            },
        ),
        client,
        providers,
        policy: config.namespace_policy(),
        timing: config.timing(),
        retention: config.destroyed_retention,
        cluster_domain: config.cluster_domain.clone(),
        metrics,
        caches: Caches {
            environments: environment_cache,
            claims: claim_cache,
            namespaces,
            apps,
            services,
            endpoint_slices,
            routing_maps,
        },
        backoff: backoff::Backoff::default(),
        environment_index: index,
        environment_wakeups,
        claim_wakeups,
    });

    let environments_done = environment_controller
        .graceful_shutdown_on(shutdown.clone().cancelled_owned())
        .run(
            environment::reconcile,
            environment::error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome);
    let claims_done = claim_controller
        .graceful_shutdown_on(shutdown.cancelled_owned())
        .run(claim::reconcile, claim::error_policy, ctx)
        .for_each(log_outcome);
    // The clocks are part of this future, so they stop with the controllers: at
    // `shutdown`, or when a lost Lease drops it all.
    futures::join!(
        environments_done,
        claims_done,
        environment_clock,
        claim_clock
    );
}

/// The index of the environments that read other kinds' objects, and where to send the
/// ones a change concerns: what every informer but the controllers' own hands its events
/// to.
#[derive(Clone)]
struct Dependents {
    index: SharedIndex,
    refs: mpsc::UnboundedSender<ObjectRef<TestEnvironment>>,
}

/// The namespaces TestMesh labelled; a change reconciles the environment that owns it.
fn namespace_informer(
    client: &Client,
    dependents: &Dependents,
    scope: Option<String>,
) -> Cache<PackedStore<Namespace>> {
    let refs = dependents.refs.clone();
    informers::spawn(
        "Namespace",
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
        PackedStore::new(),
        // Its labels only selected it; its spec is the namespace controller's.
        |mut namespace: Namespace| {
            namespace.metadata.labels = None;
            namespace.spec = None;
            Packed::pack(&namespace)
        },
        Box::new(move |namespace: &Packed<Namespace>, _| {
            let owner = namespace
                .unpack()
                .ok()
                .and_then(|namespace| environment_of_namespace(&namespace))
                .filter(|env| scope.is_none() || env.namespace == scope);
            informers::trigger(&refs, owner);
        }),
    )
}

/// Each provider's apps, watched once its CRD is installed; a change reconciles the
/// environments that name the app.
fn app_informers(
    client: &Client,
    providers: &Providers,
    dependents: &Dependents,
) -> Vec<(Provider, Arc<OnceLock<AppCache>>)> {
    providers
        .all()
        .into_iter()
        .map(|(provider, adapter)| {
            let resource = adapter.api_resource();
            let default_namespace = adapter.default_namespace().to_owned();
            let dependents = dependents.clone();
            let apps_api = Api::all_with(client.clone(), &resource);
            let trim = adapter.cache_trim();
            let start = move || {
                informers::spawn(
                    &resource.kind,
                    apps_api,
                    watcher::Config::default(),
                    PackedStore::new(),
                    move |mut app: DynamicObject| {
                        trim(&mut app);
                        Packed::pack(&app)
                    },
                    Box::new(move |app: &Packed<DynamicObject>, _| {
                        let concerned = environments_of_app(
                            &dependents.index.read(),
                            provider,
                            &default_namespace,
                            app,
                        );
                        informers::trigger(&dependents.refs, concerned);
                    }),
                )
            };
            let cache = Arc::new(OnceLock::new());
            tokio::spawn(informers::once_installed(
                Api::<CustomResourceDefinition>::all(client.clone()),
                crd_name(&adapter.api_resource()),
                cache.clone(),
                start,
            ));
            (provider, cache)
        })
        .collect()
}

/// Every Service, reduced to what routing reads of it; a change reconciles the
/// environments routing through its namespace.
fn service_informer(client: &Client, dependents: &Dependents) -> Cache<PackedStore<Service>> {
    let dependents = dependents.clone();
    informers::spawn(
        "Service",
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        PackedStore::new(),
        |service: Service| Packed::pack(&observe::routing_only(service)),
        Box::new(move |service: &Packed<Service>, _| {
            let namespace = service.namespace().unwrap_or_default();
            informers::trigger(
                &dependents.refs,
                dependents.index.read().routing_from(namespace),
            );
        }),
    )
}

/// Every EndpointSlice, reduced to its endpoints' readiness; a change reconciles the
/// environments deployed in its namespace.
fn endpoint_slice_informer(
    client: &Client,
    dependents: &Dependents,
) -> Cache<PackedStore<EndpointSlice>> {
    let dependents = dependents.clone();
    informers::spawn(
        "EndpointSlice",
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
        PackedStore::new(),
        |slice: EndpointSlice| Packed::pack(&observe::readiness_only(slice)),
        Box::new(move |slice: &Packed<EndpointSlice>, _| {
            let namespace = slice.namespace().unwrap_or_default();
            informers::trigger(
                &dependents.refs,
                dependents.index.read().deployed_in(namespace),
            );
        }),
    )
}

/// The ConfigMaps named like the routing one; a change reconciles the environments
/// deployed in its namespace.
fn routing_map_informer(client: &Client, dependents: &Dependents) -> Cache<PackedStore<ConfigMap>> {
    let dependents = dependents.clone();
    informers::spawn(
        "ConfigMap",
        Api::<ConfigMap>::all(client.clone()),
        // Someone else's of that name too: the operator must not create its own over it.
        watcher::Config::default().fields(&format!("metadata.name={ROUTING_CONFIG_MAP}")),
        PackedStore::new(),
        // The label proves it the operator's, whose data is compared with the policy;
        // of anyone else's only its existence matters.
        |mut config_map: ConfigMap| {
            config_map
                .labels_mut()
                .retain(|key, value| key == MANAGED_BY_LABEL && value == MANAGED_BY);
            if config_map.labels().is_empty() {
                config_map.data = None;
                config_map.binary_data = None;
            }
            config_map.annotations_mut().clear();
            Packed::pack(&config_map)
        },
        Box::new(move |config_map: &Packed<ConfigMap>, _| {
            let namespace = config_map.namespace().unwrap_or_default();
            informers::trigger(
                &dependents.refs,
                dependents.index.read().deployed_in(namespace),
            );
        }),
    )
}

/// The informer of a controller's own kind: applied objects go to that controller, and
/// every change (deletions too) to the objects of the other controller it concerns
/// (`concerns` also sees each change first, to keep an index of the kind).
fn controlled_informer<K, O>(
    kind: &str,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    own: mpsc::UnboundedSender<ObjectRef<K>>,
    concerned: mpsc::UnboundedSender<ObjectRef<O>>,
    mut concerns: impl FnMut(&K, Change) -> Vec<ObjectRef<O>> + Send + 'static,
) -> Cache<reflector::Store<K>>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
    O: kube::Resource<DynamicType = ()> + 'static,
{
    informers::spawn(
        kind,
        api,
        watcher::Config::default(),
        {
            let store = writer.as_reader();
            (writer, store)
        },
        |object| object,
        Box::new(move |object: &K, change| {
            // First, as it may file the object in the index: a reconciliation of it
            // then starts after any event the index would route to it.
            let others = concerns(object, change);
            if change == Change::Applied {
                informers::trigger(&own, [ObjectRef::from_obj(object)]);
            }
            informers::trigger(&concerned, others);
        }),
    )
}

/// `<plural>.<group>`: the name of the CRD that defines `resource`.
fn crd_name(resource: &kube::discovery::ApiResource) -> String {
    format!("{}.{}", resource.plural, resource.group)
}

/// Ready once the environment and claim caches have listed everything.
async fn report_ready(
    environments: Cache<reflector::Store<TestEnvironment>>,
    claims: Cache<reflector::Store<TestEnvironmentClaim>>,
    ready: Arc<AtomicBool>,
) {
    futures::join!(environments.synced(), claims.synced());
    ready.store(true, Ordering::Relaxed);
    tracing::info!("caches synced; ready");
}

async fn log_outcome<T, E: std::fmt::Display>(result: std::result::Result<T, E>) {
    if let Err(error) = result {
        tracing::debug!(%error, "reconcile stream");
    }
}
