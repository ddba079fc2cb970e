//! The operator process: watches TestEnvironments, the namespaces they own and the
//! GitOps providers' apps, and reconciles each environment when anything it depends on
//! changes or one of its timers is due.

mod apply;
mod claim;
mod environment;
mod observe;
mod services;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::header::{HeaderValue, USER_AGENT};
use futures::StreamExt;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
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
    ENVIRONMENT_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, Provider, TestEnvironment,
    TestEnvironmentClaim,
};
use services::ServiceWatches;

pub use apply::FIELD_MANAGER;

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
    /// The Service watches routing depends on.
    pub service_watches: Arc<ServiceWatches>,
}

/// Runs the operator until SIGTERM or Ctrl-C. With leader election, the replica serves
/// HTTP at once and reconciles only while it holds the Lease; losing the Lease ends the
/// process with [`Error::LeadershipLost`], so a new term always starts from fresh caches.
pub async fn run(config: RunConfig) -> Result<()> {
    let identity = config.identity();
    let cluster = kube::Config::infer()
        .await
        .map_err(|e| Error::Connect(kube::Error::InferConfig(e)))?;
    let client = connect(cluster.clone(), &identity)?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let (environments, environment_writer) = reflector::store();
    let (claims, claim_writer) = reflector::store();
    let metrics = Metrics::new(environments.clone());
    // A standby replica is ready to serve; a sole replica once its caches have synced.
    let ready = Arc::new(AtomicBool::new(config.leader_election));
    let http = tokio::spawn(http::serve(
        "/metrics, /livez and /readyz",
        config.http_address,
        http::router(http::Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        }),
        shutdown.clone().cancelled_owned(),
    ));
    let api = tokio::spawn(http::serve(
        "the REST API and dashboard",
        config.api_address,
        api::router(api::Cluster::without_credentials(
            cluster,
            &format!("testmesh-api/{} ({identity})", env!("CARGO_PKG_VERSION")),
        )),
        shutdown.clone().cancelled_owned(),
    ));
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
        Caches {
            environments,
            environment_writer,
            claims,
            claim_writer,
            ready,
        },
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
    let _ = tokio::join!(http, api);
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

/// The reflector stores, created before the election so metrics can read them, and
/// filled once this replica leads.
struct Caches {
    environments: Store<TestEnvironment>,
    environment_writer: reflector::store::Writer<TestEnvironment>,
    claims: Store<TestEnvironmentClaim>,
    claim_writer: reflector::store::Writer<TestEnvironmentClaim>,
    /// Set once both caches have listed.
    ready: Arc<AtomicBool>,
}

/// Builds the environment and claim controllers and runs them until `shutdown`, after
/// which they finish their in-flight reconciliations.
async fn reconcile(
    client: Client,
    config: &RunConfig,
    identity: String,
    caches: Caches,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let Caches {
        environments,
        environment_writer,
        claims,
        claim_writer,
        ready,
    } = caches;
    let scoped = |client: &Client| -> (Api<TestEnvironment>, Api<TestEnvironmentClaim>) {
        match &config.watch_namespace {
            Some(namespace) => (
                Api::namespaced(client.clone(), namespace),
                Api::namespaced(client.clone(), namespace),
            ),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        }
    };
    let (environments_api, claims_api) = scoped(&client);

    // Our own reflectors rather than `Controller::new`, so readiness can be taken from
    // the watchers' InitDone: `Store::wait_until_ready` wakes only one waiter, and each
    // controller's runner already is one.
    let synced = Arc::new(AtomicUsize::new(0));
    let environment_events = watcher(environments_api, watcher::Config::default())
        .reflect(environment_writer)
        .inspect(count_sync(synced.clone(), ready.clone()))
        .applied_objects();
    let claim_events = watcher(claims_api.clone(), watcher::Config::default())
        .reflect(claim_writer)
        .inspect(count_sync(synced.clone(), ready.clone()))
        .applied_objects();

    let providers = Providers {
        argocd: ArgoCd {
            namespace: config.argocd_namespace.clone(),
        },
        flux: Flux {
            namespace: config.flux_namespace.clone(),
        },
    };
    let owned_namespaces =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let scope = config.watch_namespace.clone();
    let mut environment_controller =
        Controller::for_stream(environment_events, environments.clone()).watches(
            Api::<Namespace>::all(client.clone()),
            owned_namespaces,
            move |namespace| {
                environment_of_namespace(&namespace)
                    .filter(|env| scope.is_none() || env.namespace == scope)
            },
        );
    for (provider, adapter) in providers.all() {
        let resource = adapter.api_resource();
        let apps: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let default_namespace = adapter.default_namespace().to_owned();
        let environments = environments.clone();
        environment_controller = environment_controller.watches_stream_with(
            quiet_errors(
                watcher(apps, watcher::Config::default()),
                resource.kind.clone(),
            ),
            move |app| environments_of_app(&environments, provider, &default_namespace, &app),
            resource,
        );
    }
    let (service_watches, service_changes) =
        ServiceWatches::new(client.clone(), environments.clone());
    let environment_controller = environment_controller.reconcile_on(service_changes);
    let environments_for_claims = environments.clone();
    let environment_controller =
        environment_controller.watches(claims_api, watcher::Config::default(), move |claim| {
            environments_of_claim(&environments_for_claims, &claim)
        });
    let claims_for_environments = claims.clone();
    let claim_controller = Controller::for_stream(claim_events, claims.clone()).watches(
        environments_api_for_claims(&client, config),
        watcher::Config::default(),
        move |environment| claims_of_environment(&claims_for_environments, &environment),
    );

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
        service_watches,
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

/// A provider's watch with its own backoff, its errors logged and kept out of the
/// controller's shared trigger stream: kube-runtime backs the whole stream off on any
/// error, so a GitOps controller that is not installed (its CRD missing) would otherwise
/// slow every reconciliation.
fn quiet_errors<K>(
    events: impl futures::Stream<Item = std::result::Result<watcher::Event<K>, watcher::Error>>
    + Send
    + 'static,
    kind: String,
) -> impl futures::Stream<Item = std::result::Result<K, watcher::Error>> + Send + 'static
where
    K: kube::Resource + Clone + Send + 'static,
{
    events
        .default_backoff()
        .touched_objects()
        .filter_map(move |event| {
            let object = match event {
                Ok(object) => Some(Ok(object)),
                Err(error) => {
                    tracing::debug!(%error, kind, "watch failed; retrying with backoff");
                    None
                }
            };
            std::future::ready(object)
        })
}

/// Counts a watcher's first completed list, once; ready when both caches (environments
/// and claims) have listed.
fn count_sync<K>(
    synced: Arc<AtomicUsize>,
    ready: Arc<AtomicBool>,
) -> impl FnMut(&std::result::Result<watcher::Event<K>, watcher::Error>) {
    const CACHES: usize = 2;
    let mut counted = false;
    move |event| {
        if !counted && matches!(event, Ok(watcher::Event::InitDone)) {
            counted = true;
            if synced.fetch_add(1, Ordering::Relaxed) + 1 == CACHES {
                ready.store(true, Ordering::Relaxed);
                tracing::info!("caches synced; ready");
            }
        }
    }
}

async fn log_outcome<T, E: std::fmt::Display>(result: std::result::Result<T, E>) {
    if let Err(error) = result {
        tracing::debug!(%error, "reconcile stream");
    }
}

fn environments_api_for_claims(client: &Client, config: &RunConfig) -> Api<TestEnvironment> {
    match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    }
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
        .and_then(|s| s.environment_name.clone());
    environments
        .state()
        .iter()
        .filter(|env| env.namespace() == workspace)
        .filter(|env| {
            let name = env.name_any();
            claim.spec.environment_name.as_deref() == Some(name.as_str())
                || holding.as_deref() == Some(name.as_str())
                || env.spec.context == claim.spec.context
        })
        .map(|env| ObjectRef::from_obj(env.as_ref()))
        .collect()
}

/// The claims an environment's change may concern: those of its context or naming it.
fn claims_of_environment(
    claims: &Store<TestEnvironmentClaim>,
    environment: &TestEnvironment,
) -> Vec<ObjectRef<TestEnvironmentClaim>> {
    let workspace = environment.namespace();
    let name = environment.name_any();
    claims
        .state()
        .iter()
        .filter(|claim| claim.namespace() == workspace)
        .filter(|claim| {
            claim.spec.context == environment.spec.context
                || claim.spec.environment_name.as_deref() == Some(name.as_str())
        })
        .map(|claim| ObjectRef::from_obj(claim.as_ref()))
        .collect()
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
    app: &DynamicObject,
) -> Vec<ObjectRef<TestEnvironment>> {
    let app_namespace = app.namespace().unwrap_or_default();
    let app_name = app.name_any();
    environments
        .state()
        .iter()
        .filter(|env| {
            let spec = &env.spec.template;
            spec.provider == provider
                && spec.provider_app_name == app_name
                && spec
                    .provider_app_namespace
                    .as_deref()
                    .unwrap_or(default_namespace)
                    == app_namespace
        })
        .map(|env| ObjectRef::from_obj(env.as_ref()))
        .collect()
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
