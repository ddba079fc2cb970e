//! `make bench`: the operator's reaction times on a real control plane, measured by this
//! client from watch events (never from the operator's own reports), next to the floor
//! of one status write to the same API server. Prints a table and writes
//! `target/bench/lifecycle.json`.
//!
//! Sizes are set for a 2-core machine; `TESTMESH_BENCH_SCALE` multiplies them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use testmesh::lifecycle::conditions;
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::argocd::{self, ArgoCd};
use testmesh_testenv::operator::Operator;
use testmesh_testenv::{ControlPlane, OPERATOR_USER, install_crds_from_yaml, with_temp_namespace};
use tokio::sync::Notify;

/// Latencies of one figure, in milliseconds.
struct Figure {
    name: &'static str,
    samples: Vec<f64>,
}

impl Figure {
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// When each object was first seen satisfying a condition, from one watch.
#[derive(Clone, Default)]
struct FirstSeen {
    at: Arc<Mutex<HashMap<String, Instant>>>,
    changed: Arc<Notify>,
}

impl FirstSeen {
    fn follow<K>(&self, api: Api<K>, condition: fn(&K) -> bool)
    where
        K: kube::Resource
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + Sync
            + 'static,
        K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    {
        let seen = self.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            // A watch error is retried by the watcher itself; only the end of the stream ends this.
            while let Some(event) = events.next().await {
                let Ok(object) = event else { continue };
                if condition(&object) {
                    let now = Instant::now();
                    seen.at
                        .lock()
                        .expect("lock")
                        .entry(object.name_any())
                        .or_insert(now);
                    seen.changed.notify_waiters();
                }
            }
        });
    }

    async fn wait(&self, name: &str, timeout: Duration) -> Instant {
        let deadline = Instant::now() + timeout;
        loop {
            // Registered before the check, so a notification in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.at.lock().expect("lock").get(name).copied() {
                return at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{name} did not get there within {timeout:?}"
            );
            let _ = tokio::time::timeout(left, notified).await;
        }
    }

    fn forget(&self, name: &str) {
        self.at.lock().expect("lock").remove(name);
    }
}

fn is_ready_environment(environment: &TestEnvironment) -> bool {
    environment
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
}

fn is_ready_claim(claim: &TestEnvironmentClaim) -> bool {
    claim
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY))
}

fn environment(name: &str, namespace: &str, app: &str) -> TestEnvironment {
    serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
        "metadata": {"name": name},
        "spec": {"context": name, "provider": "argocd", "providerAppName": app, "namespace": namespace, "ttlMinutes": 600}
    }))
    .expect("environment")
}

fn operator_writes(control_plane: &ControlPlane, workspace: &str) -> Vec<String> {
    control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| {
            w.user == OPERATOR_USER && w.code < 300 && w.namespace.as_deref() == Some(workspace)
        })
        .map(|w| {
            format!(
                "{} {}{}",
                w.verb,
                w.resource,
                w.subresource.map(|s| format!("/{s}")).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::main]
async fn main() {
    let scale: usize = std::env::var("TESTMESH_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let control_plane = ControlPlane::shared();
    let client: Client = control_plane.admin_client().await.expect("client");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/crds")).expect("crds/") {
        let yaml = std::fs::read_to_string(entry.expect("entry").path()).expect("CRD file");
        install_crds_from_yaml(&client, &yaml)
            .await
            .expect("install CRD");
    }
    argocd::install_crds(&client).await;
    let workspace = with_temp_namespace(&client, "bench")
        .await
        .expect("workspace");
    let argo_namespace = with_temp_namespace(&client, "bench-argocd")
        .await
        .expect("argocd namespace");
    let ws = workspace.name().to_owned();
    let argo = ArgoCd::new(&client, argo_namespace.name());
    let _operator = Operator::start(
        env!("CARGO_BIN_EXE_testmesh"),
        &ws,
        argo_namespace.name(),
        &[],
    );
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), &ws);
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), &ws);
    let env_ready = FirstSeen::default();
    env_ready.follow(environments.clone(), is_ready_environment);
    let claim_ready = FirstSeen::default();
    claim_ready.follow(claims.clone(), is_ready_claim);
    let timeout = Duration::from_secs(60);
    let mut figures = Vec::new();

    // Floor: one status write by a single client.
    let scratch = environment("scratch", &format!("{ws}-scratch"), "none");
    let scratch_ops: Api<TestEnvironment> = Api::namespaced(client.clone(), &ws);
    scratch_ops
        .create(&PostParams::default(), &scratch)
        .await
        .expect("scratch");
    let mut floor = Figure {
        name: "floor: one status write (merge patch)",
        samples: Vec::new(),
    };
    for i in 0..200 * scale {
        let patch = json!({"status": {"routingPolicy": {"probe": format!("http://probe:{i}")}}});
        let started = Instant::now();
        scratch_ops
            .patch_status("scratch", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status write");
        floor.samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    scratch_ops
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("delete scratch");

    // Application turns Healthy → environment Ready.
    let count = 50 * scale;
    for i in 0..count {
        let name = format!("env-{i:04}");
        let namespace = format!("{ws}-{i:04}");
        argo.create_app(&name, &namespace).await;
        argo.set_status(&name, argocd::progressing_status()).await;
        environments
            .create(
                &PostParams::default(),
                &environment(&name, &namespace, &name),
            )
            .await
            .expect("environment");
    }
    for i in 0..count {
        let name = format!("env-{i:04}");
        let provisioning = |e: Option<&TestEnvironment>| {
            e.and_then(|e| e.status.as_ref()).and_then(|s| s.phase)
                == Some(testmesh::lifecycle::Phase::Provisioning)
        };
        tokio::time::timeout(
            timeout,
            kube::runtime::wait::await_condition(environments.clone(), &name, provisioning),
        )
        .await
        .expect("provisioning in time")
        .expect("watch");
    }
    let mut healthy_to_ready = Figure {
        name: "Application Healthy -> environment Ready",
        samples: Vec::new(),
    };
    for i in 0..count {
        let name = format!("env-{i:04}");
        let app = argo.apps.get(&name).await.expect("app");
        let status = argocd::healthy_status(&app);
        let started = Instant::now();
        argo.set_status(&name, status).await;
        let seen = env_ready.wait(&name, timeout).await;
        healthy_to_ready
            .samples
            .push(seen.duration_since(started).as_secs_f64() * 1e3);
    }
    figures.push(healthy_to_ready);

    // Claim created → claim Ready, on a warm environment (reuse), one run at a time.
    // One long-lived watch of the environment's holders: a watch per run would take the
    // client's pooled connection and make every create pay a new TLS handshake.
    let (holders_tx, mut holders) = tokio::sync::watch::channel(vec!["?".to_owned()]);
    let env_watch = environments.clone();
    tokio::spawn(async move {
        let config = watcher::Config::default().fields("metadata.name=env-0000");
        let mut events = watcher(env_watch, config)
            .default_backoff()
            .applied_objects()
            .boxed();
        while let Some(event) = events.next().await {
            if let Ok(environment) = event {
                let _ =
                    holders_tx.send(environment.status.map(|s| s.claimed_by).unwrap_or_default());
            }
        }
    });
    let writes_before = operator_writes(control_plane, &ws).len();
    let runs = 100 * scale;
    let mut claim_to_ready = Figure {
        name: "claim created -> Ready on a warm environment",
        samples: Vec::new(),
    };
    for i in 0..runs {
        let name = format!("run-{i:04}");
        let claim: TestEnvironmentClaim = serde_json::from_value(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
            "metadata": {"name": name},
            "spec": {"context": "env-0000", "environmentName": "env-0000"}
        }))
        .expect("claim");
        let started = Instant::now();
        claims
            .create(&PostParams::default(), &claim)
            .await
            .expect("claim");
        let seen = claim_ready.wait(&name, timeout).await;
        claim_to_ready
            .samples
            .push(seen.duration_since(started).as_secs_f64() * 1e3);
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("release");
        tokio::time::timeout(timeout, holders.wait_for(Vec::is_empty))
            .await
            .expect("released in time")
            .expect("holder watch");
        claim_ready.forget(&name);
    }
    let claim_writes = operator_writes(control_plane, &ws)[writes_before..].to_vec();
    figures.push(claim_to_ready);

    let floor_p50 = floor.percentile(50.0);
    println!();
    println!(
        "{:<48} {:>7} {:>9} {:>9} {:>9} {:>12}",
        "figure", "n", "p50 ms", "p99 ms", "max ms", "p50 x floor"
    );
    for figure in std::iter::once(&floor).chain(&figures) {
        println!(
            "{:<48} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>12.1}",
            figure.name,
            figure.samples.len(),
            figure.percentile(50.0),
            figure.percentile(99.0),
            figure.percentile(100.0),
            figure.percentile(50.0) / floor_p50
        );
    }
    let events = claim_writes
        .iter()
        .filter(|w| w.starts_with("create events") || w.starts_with("patch events"))
        .count();
    let object_writes = claim_writes.len() - events;
    println!(
        "operator API writes per claim (create -> Ready -> release): {:.2} object writes + {:.2} events (n={runs})",
        object_writes as f64 / runs as f64,
        events as f64 / runs as f64
    );
    let mut by_kind: HashMap<&str, usize> = HashMap::new();
    for write in &claim_writes {
        *by_kind.entry(write.as_str()).or_default() += 1;
    }
    let mut by_kind: Vec<_> = by_kind.into_iter().collect();
    by_kind.sort();
    println!("  by request: {by_kind:?}");

    let report = json!({
        "figures": std::iter::once(&floor).chain(&figures).map(|f| json!({
            "name": f.name, "n": f.samples.len(),
            "p50_ms": f.percentile(50.0), "p99_ms": f.percentile(99.0), "max_ms": f.percentile(100.0),
            "p50_over_floor": f.percentile(50.0) / floor_p50,
        })).collect::<Vec<_>>(),
        "writes_per_claim": {"objects": object_writes as f64 / runs as f64, "events": events as f64 / runs as f64, "n": runs},
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).expect("target/bench");
    let path = format!("{dir}/lifecycle.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
        .expect("write report");
    println!("written to {path}");
}
