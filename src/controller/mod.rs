//! The operator process: watches TestEnvironments, the namespaces they own and the
//! GitOps providers' apps, and reconciles each environment when anything it depends on
//! changes or one of its timers is due.

mod apply;
mod backoff;
mod claim;
mod environment;
mod events;
mod informers;
mod observe;
mod packed;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::http::header::{HeaderValue, USER_AGENT};
use futures::channel::mpsc;
use futures::{StreamExt, stream};
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::Reporter;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, controller, reflector, watcher};
use kube::{Client, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::http;
use crate::leadership::{Election, Leadership};
use crate::lifecycle::environment::Timing;
use crate::lifecycle::policy::NamespacePolicy;
use crate::metrics::Metrics;
use crate::providers::{ArgoCd, Flux, Providers};
use crate::resources::{
    ENVIRONMENT_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, Provider, ROUTING_CONFIG_MAP,
    TestEnvironment, TestEnvironmentClaim,
};
use events::Recorder;
use informers::{Cache, Change};
use packed::Packed;

pub use apply::FIELD_MANAGER;

/// Reconciliations of one kind in flight at once.
const RECONCILE_CONCURRENCY: u16 = 16;

/// Everything a reconciliation needs besides the object itself.
pub struct Context {
    pub client: Client,
    pub providers: Providers,
    pub policy: NamespacePolicy,
    pub timing: Timing,
    pub retention: Option<SignedDuration>,
    /// DNS domain of routing URLs.
    pub cluster_domain: String,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// What the informers have seen.
    pub caches: Caches,
    /// Consecutive failures of each object's reconciliation.
    pub backoff: backoff::Backoff,
}

/// An object's key in [`Context::backoff`]: its kind, namespace and name.
fn backoff_key<K: kube::Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// A provider's apps (Argo CD Applications or Flux Kustomizations).
pub type AppCache = Cache<Packed<DynamicObject>>;

/// The informers' caches: everything a reconciliation normally reads.
#[derive(Clone)]
pub struct Caches {
    pub environments: Cache<TestEnvironment>,
    pub claims: Cache<TestEnvironmentClaim>,
    /// Namespaces labelled as TestMesh's (a namespace missing here may still exist).
    pub namespaces: Cache<Packed<Namespace>>,
    /// Argo CD Applications and Flux Kustomizations, by provider; each is filled once its
    /// CRD is installed.
    pub apps: Vec<(Provider, Arc<OnceLock<AppCache>>)>,
    /// Every Service of the cluster, for routing.
    pub services: Cache<Service>,
    /// Every EndpointSlice of the cluster, reduced to its Service and whether each
    /// endpoint is ready: Ready waits for an endpoint behind every URL into the namespace.
    pub endpoint_slices: Cache<Packed<EndpointSlice>>,
    /// The ConfigMaps named `testmesh-routing`: the operator's, and anyone else's it must
    /// not write over.
    pub routing_maps: Cache<Packed<ConfigMap>>,
}

impl Caches {
    /// Resolves once the environment and claim caches have listed everything: before
    /// that, an environment or claim missing from them proves nothing, and a
    /// reconciliation must not decide from them (a restarted operator would otherwise
    /// fail every claim whose environment it had not listed yet).
    pub async fn synced(&self) {
        futures::join!(self.environments.synced(), self.claims.synced());
    }

    pub fn apps_of(&self, provider: Provider) -> Option<&AppCache> {
        self.apps
            .iter()
            .find(|(p, _)| *p == provider)
            .and_then(|(_, cache)| cache.get())
    }
}

/// Runs the operator until SIGTERM or Ctrl-C. With leader election, the replica serves
/// HTTP at once and reconciles only while it holds the Lease; losing the Lease ends the
/// process with [`Error::LeadershipLost`], so a new term always starts from fresh caches.
pub async fn run(config: RunConfig) -> Result<()> {
    let identity = config.identity();
    let cluster = kube::Config::infer()
        .await
        .map_err(|e| Error::Connect(kube::Error::InferConfig(e)))?;
    tracing::info!(
        api_server = %cluster.cluster_url,
        default_namespace = %cluster.default_namespace,
        "connecting to the cluster of KUBECONFIG, else ~/.kube/config, else the in-cluster service account"
    );
    let client = connect(cluster.clone(), &identity)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let metrics = Metrics::new();
    // A standby replica is ready to serve; a sole replica once its caches have synced.
    let ready = Arc::new(AtomicBool::new(config.leader_election));
    let http = http::spawn(
        "/metrics, /livez and /readyz",
        config.http_address,
        http::router(http::Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        }),
        shutdown.clone().cancelled_owned(),
    )
    .await?;
    let api = http::spawn(
        "the REST API and dashboard",
        config.api_address,
        api::router(api::Cluster::without_credentials(
            cluster,
            &format!("testmesh-api/{} ({identity})", env!("CARGO_PKG_VERSION")),
        )),
        shutdown.clone().cancelled_owned(),
    )
    .await?;
    tracing::info!(
        %identity,
        watch_namespace = config.watch_namespace.as_deref().unwrap_or("<all>"),
        argocd_namespace = %config.argocd_namespace,
        leader_election = config.leader_election,
        "testmesh operator starting"
    );

    let mut leadership = None;
    if config.leader_election {
        let mut campaign = Leadership::start(
            client.clone(),
            Election {
                namespace: config.operator_namespace.clone(),
                lease_name: config.lease_name.clone(),
                identity: identity.clone(),
                timing: config.lease_timing(),
            },
        );
        tokio::select! {
            () = shutdown.cancelled() => {
                campaign.resign().await;
                tracing::info!("testmesh operator stopped before leading");
                return Ok(());
            }
            acquired = campaign.acquired() => acquired?,
        }
        leadership = Some(campaign);
    }
    metrics.leading(true);

    let reconcilers = reconcile(
        client,
        &config,
        identity,
        ready,
        metrics.clone(),
        shutdown.clone(),
    );
    let outcome = supervise(
        reconcilers,
        leadership.as_mut(),
        &shutdown,
        config.shutdown_timeout.unsigned_abs(),
    )
    .await;
    metrics.leading(false);
    if let Some(campaign) = leadership
        && outcome.is_ok()
    {
        campaign.resign().await;
    }
    shutdown.cancel();
    for (server, stopped) in [("HTTP", http.await), ("API", api.await)] {
        if let Err(error) = stopped {
            tracing::error!(%error, "the {server} server task failed");
        }
    }
    tracing::info!("testmesh operator stopped");
    outcome
}

/// The operator's client, naming this replica in its User-Agent so audit logs tell
/// replicas apart.
fn connect(mut config: kube::Config, identity: &str) -> Result<Client> {
    let agent = format!("testmesh/{} ({identity})", env!("CARGO_PKG_VERSION"));
    if let Ok(agent) = HeaderValue::from_str(&agent) {
        config.headers.push((USER_AGENT, agent));
    }
    Client::try_from(config).map_err(Error::Connect)
}

/// Runs the reconcilers until they stop after `shutdown`. Stops them at once, dropping
/// in-flight work, if the Lease is lost; after `shutdown`, in-flight reconciliations get
/// `bound` to finish.
async fn supervise(
    reconcilers: impl Future<Output = ()>,
    leadership: Option<&mut Leadership>,
    shutdown: &CancellationToken,
    bound: Duration,
) -> Result<()> {
    let lost = async {
        match leadership {
            Some(campaign) => campaign.lost().await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(reconcilers, lost);
    tokio::select! {
        () = &mut reconcilers => return Ok(()),
        () = &mut lost => return Err(Error::LeadershipLost),
        () = shutdown.cancelled() => {}
    }
    tokio::select! {
        finished = tokio::time::timeout(bound, &mut reconcilers) => {
            if finished.is_err() {
                tracing::warn!(?bound, "in-flight reconciliations did not finish in time; stopping anyway");
            }
            Ok(())
        }
        () = &mut lost => Err(Error::LeadershipLost),
    }
}

/// Starts the informers and runs the environment and claim controllers until
/// `shutdown`, after which they finish their in-flight reconciliations.
async fn reconcile(
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

    let environment_cache = {
        let claims = claims.clone();
        controlled_informer(
            "TestEnvironment",
            environments_api,
            environment_writer,
            environment_refs.clone(),
            claim_refs.clone(),
            move |environment| claims_of_environment(&claims, environment),
        )
    };
    let claim_cache = {
        let environments = environments.clone();
        controlled_informer(
            "TestEnvironmentClaim",
            claims_api,
            claim_writer,
            claim_refs,
            environment_refs.clone(),
            move |claim| environments_of_claim(&environments, claim),
        )
    };
    let namespaces = {
        let environment_refs = environment_refs.clone();
        let scope = scope.clone();
        informers::spawn(
            "Namespace",
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")),
            reflector::store::Writer::default(),
            // Its labels only selected it; its spec is the namespace controller's.
            |mut namespace: Namespace| {
                namespace.labels_mut().clear();
                namespace.spec = None;
                Packed::pack(&namespace)
            },
            Box::new(move |namespace: &Packed<Namespace>, _| {
                let owner = namespace
                    .unpack()
                    .ok()
                    .and_then(|namespace| environment_of_namespace(&namespace))
                    .filter(|env| scope.is_none() || env.namespace == scope);
                informers::trigger(&environment_refs, owner);
            }),
        )
    };
    let apps = providers
        .all()
        .into_iter()
        .map(|(provider, adapter)| {
            let resource = adapter.api_resource();
            let default_namespace = adapter.default_namespace().to_owned();
            let environments = environments.clone();
            let environment_refs = environment_refs.clone();
            let apps_api = Api::all_with(client.clone(), &resource);
            let trim = adapter.cache_trim();
            let start = move || {
                informers::spawn(
                    &resource.kind,
                    apps_api,
                    watcher::Config::default(),
                    reflector::store::Writer::new(resource.clone()),
                    move |mut app: DynamicObject| {
                        trim(&mut app);
                        Packed::pack(&app)
                    },
                    Box::new(move |app: &Packed<DynamicObject>, _| {
                        informers::trigger(
                            &environment_refs,
                            environments_of_app(&environments, provider, &default_namespace, app),
                        );
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
        .collect();
    let services = {
        let environments = environments.clone();
        let environment_refs = environment_refs.clone();
        informers::spawn(
            "Service",
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
            reflector::store::Writer::default(),
            |service| service,
            Box::new(move |service: &Service, _| {
                let namespace = service.namespace().unwrap_or_default();
                informers::trigger(
                    &environment_refs,
                    environments_routing_from(&environments, &namespace),
                );
            }),
        )
    };
    let endpoint_slices = {
        let environments = environments.clone();
        let environment_refs = environment_refs.clone();
        informers::spawn(
            "EndpointSlice",
            Api::<EndpointSlice>::all(client.clone()),
            watcher::Config::default(),
            reflector::store::Writer::default(),
            |slice: EndpointSlice| Packed::pack(&observe::readiness_only(slice)),
            Box::new(move |slice: &Packed<EndpointSlice>, _| {
                let namespace = slice.namespace().unwrap_or_default();
                informers::trigger(
                    &environment_refs,
                    refs_where(&environments, |env| {
                        env.spec.template.namespace == namespace
                    }),
                );
            }),
        )
    };
    let routing_maps = {
        let environments = environments.clone();
        informers::spawn(
            "ConfigMap",
            Api::<ConfigMap>::all(client.clone()),
            // Someone else's of that name too: the operator must not create its own over it.
            watcher::Config::default().fields(&format!("metadata.name={ROUTING_CONFIG_MAP}")),
            reflector::store::Writer::default(),
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
                    &environment_refs,
                    refs_where(&environments, |env| {
                        env.spec.template.namespace == namespace
                    }),
                );
            }),
        )
    };
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
    futures::join!(environments_done, claims_done);
}

/// The informer of a controller's own kind: applied objects go to that controller, and
/// every change (deletions too) to the objects of the other controller it concerns.
fn controlled_informer<K, O>(
    kind: &str,
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    own: mpsc::UnboundedSender<ObjectRef<K>>,
    concerned: mpsc::UnboundedSender<ObjectRef<O>>,
    concerns: impl Fn(&K) -> Vec<ObjectRef<O>> + Send + 'static,
) -> Cache<K>
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
        writer,
        |object| object,
        Box::new(move |object: &K, change| {
            if change == Change::Applied {
                informers::trigger(&own, [ObjectRef::from_obj(object)]);
            }
            informers::trigger(&concerned, concerns(object));
        }),
    )
}

/// `<plural>.<group>`: the name of the CRD that defines `resource`.
fn crd_name(resource: &kube::discovery::ApiResource) -> String {
    format!("{}.{}", resource.plural, resource.group)
}

/// Ready once the environment and claim caches have listed everything.
async fn report_ready(
    environments: Cache<TestEnvironment>,
    claims: Cache<TestEnvironmentClaim>,
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

/// References to the cached objects `concerned` picks: the trigger maps below differ
/// only in their predicate.
fn refs_where<K>(store: &Store<K>, concerned: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|object| concerned(object))
        .map(|object| ObjectRef::from_obj(object.as_ref()))
        .collect()
}

/// The environments a claim may concern: the one it names or holds, and the live ones of
/// its context.
fn environments_of_claim(
    environments: &Store<TestEnvironment>,
    claim: &TestEnvironmentClaim,
) -> Vec<ObjectRef<TestEnvironment>> {
    let workspace = claim.namespace();
    let holding = claim
        .status
        .as_ref()
        .and_then(|s| s.environment_name.as_deref());
    refs_where(environments, |env| {
        let name = env.name_any();
        env.namespace() == workspace
            && (claim.spec.environment_name.as_deref() == Some(name.as_str())
                || holding == Some(name.as_str())
                || env.spec.context == claim.spec.context)
    })
}

/// The claims an environment's change may concern: those of its context or naming it.
fn claims_of_environment(
    claims: &Store<TestEnvironmentClaim>,
    environment: &TestEnvironment,
) -> Vec<ObjectRef<TestEnvironmentClaim>> {
    let workspace = environment.namespace();
    let name = environment.name_any();
    refs_where(claims, |claim| {
        claim.namespace() == workspace
            && (claim.spec.context == environment.spec.context
                || claim.spec.environment_name.as_deref() == Some(name.as_str()))
    })
}

/// A namespace TestMesh created points back at its environment.
fn environment_of_namespace(namespace: &Namespace) -> Option<ObjectRef<TestEnvironment>> {
    let owner = namespace.annotations().get(ENVIRONMENT_ANNOTATION)?;
    let (workspace, name) = owner.split_once('/')?;
    Some(ObjectRef::new(name).within(workspace))
}

/// The environments deployed by `app`. A provider's app may live in another namespace
/// than any environment, so ownerReferences cannot link them; the controller's own cache
/// is scanned instead (cheap next to the event that triggered it).
fn environments_of_app(
    environments: &Store<TestEnvironment>,
    provider: Provider,
    default_namespace: &str,
    app: &Packed<DynamicObject>,
) -> Vec<ObjectRef<TestEnvironment>> {
    let app_namespace = app.namespace().unwrap_or_default();
    let app_name = app.name();
    refs_where(environments, |env| {
        let spec = &env.spec.template;
        spec.provider == provider
            && spec.provider_app_name == app_name
            && spec
                .provider_app_namespace
                .as_deref()
                .unwrap_or(default_namespace)
                == app_namespace
    })
}

/// The environments whose routing reads Services of `namespace`: deployed there, or
/// using it as their baseline.
fn environments_routing_from(
    environments: &Store<TestEnvironment>,
    namespace: &str,
) -> Vec<ObjectRef<TestEnvironment>> {
    refs_where(environments, |env| {
        let template = &env.spec.template;
        template.namespace == namespace
            || template
                .routing
                .as_ref()
                .and_then(|r| r.baseline_namespace.as_deref())
                == Some(namespace)
    })
}

/// Cancels `shutdown` on SIGTERM or Ctrl-C.
async fn cancel_on_signal(shutdown: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
    shutdown.cancel();
}
