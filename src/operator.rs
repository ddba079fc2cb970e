//! The operator process: connects to the cluster, serves the probes, metrics, REST API
//! and dashboard from every replica, campaigns for the leader Lease when asked to, and
//! runs the reconcilers ([`crate::controller`]) while it leads — until SIGTERM or Ctrl-C.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use axum::http::header::{HeaderValue, USER_AGENT};
use kube::Client;
use tokio_util::sync::CancellationToken;

use crate::api;
use crate::config::RunConfig;
use crate::controller;
use crate::error::{Error, Result};
use crate::http;
use crate::leadership::{Election, Leadership};
use crate::metrics::Metrics;

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
        api::router(
            api::Cluster::without_credentials(
                cluster,
                &format!("testmesh-api/{} ({identity})", env!("CARGO_PKG_VERSION")),
            ),
            config.provider_links(),
        ),
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

    let reconcilers = controller::run(
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
