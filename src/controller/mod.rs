//! The operator process: watches TestEnvironments, the namespaces they own and the
//! GitOps providers' apps, and reconciles each environment when anything it depends on
//! changes or one of its timers is due.

mod apply;
mod environment;
mod observe;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use jiff::SignedDuration;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};

use crate::config::RunConfig;
use crate::error::{Error, Result};
use crate::http;
use crate::lifecycle::environment::Timing;
use crate::lifecycle::policy::NamespacePolicy;
use crate::metrics::Metrics;
use crate::providers::{ArgoCd, Providers};
use crate::resources::{
    ENVIRONMENT_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL, Provider, TestEnvironment,
};

pub use apply::FIELD_MANAGER;

/// Everything a reconciliation needs besides the object itself.
pub struct Context {
    pub client: Client,
    pub providers: Providers,
    pub policy: NamespacePolicy,
    pub timing: Timing,
    pub retention: Option<SignedDuration>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(config: RunConfig) -> Result<()> {
    let client = Client::try_default().await.map_err(Error::Connect)?;
    let environments: Api<TestEnvironment> = match &config.watch_namespace {
        Some(namespace) => Api::namespaced(client.clone(), namespace),
        None => Api::all(client.clone()),
    };
    // Our own reflector rather than `Controller::new`, so readiness can be taken from
    // the watcher's InitDone: `Store::wait_until_ready` wakes only one waiter, and the
    // controller's runner already is one.
    let ready = Arc::new(AtomicBool::new(false));
    let (store, writer) = reflector::store();
    let ready_on_sync = ready.clone();
    let environment_events = watcher(environments, watcher::Config::default())
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(watcher::Event::InitDone) = event
                && !ready_on_sync.swap(true, Ordering::Relaxed)
            {
                tracing::info!("caches synced; ready");
            }
        })
        .applied_objects();
    let controller = Controller::for_stream(environment_events, store.clone());
    let metrics = Metrics::new(store.clone());

    let providers = Providers {
        argocd: ArgoCd {
            namespace: config.argocd_namespace.clone(),
        },
    };
    let owned_namespaces =
        watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let scope = config.watch_namespace.clone();
    let mut controller = controller.watches(
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
        let store = store.clone();
        controller =
            controller.watches_with(apps, resource, watcher::Config::default(), move |app| {
                environments_of_app(&store, provider, &default_namespace, &app)
            });
    }

    let ctx = Arc::new(Context {
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "testmesh".into(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        client,
        providers,
        policy: config.namespace_policy(),
        timing: config.timing(),
        retention: config.destroyed_retention,
        metrics: metrics.clone(),
    });

    let http = tokio::spawn(http::serve(
        config.http_address,
        http::router(http::Health {
            metrics,
            ready: ready.clone(),
        }),
        shutdown_signal(),
    ));

    tracing::info!(
        watch_namespace = config.watch_namespace.as_deref().unwrap_or("<all>"),
        argocd_namespace = %config.argocd_namespace,
        "testmesh operator starting"
    );
    controller
        .shutdown_on_signal()
        .run(environment::reconcile, environment::error_policy, ctx)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile stream");
            }
        })
        .await;
    tracing::info!("testmesh operator stopped");
    http.abort();
    Ok(())
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

async fn shutdown_signal() {
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
}
