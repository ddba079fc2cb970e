//! `make bench`: TestMesh on a real control plane, measured by this client from watch
//! events and the objects' own timestamps (never from the operator's reports), next to
//! the floor of one status write to the same API server. Prints one table and writes
//! `target/bench/lifecycle.json`.
//!
//! The cluster is set up as the Helm chart installs TestMesh on Kubernetes 1.36: with the
//! chart's admission policy, rendered by helm (`make chart-tools`), so environments are
//! created with their teardown finalizer.
//!
//! The run, in order: the floor (with Argo CD and kwok already running, idle); the real
//! Argo CD part (`real_argocd/mod.rs`: environments deployed by the real controllers from
//! Git, each step timed, and one lifecycle's API writes); then, with Argo CD's stand-in
//! whose Application status this client writes: one environment's whole lifecycle
//! (counting its API writes); 1,000 environments turned Healthy one at a time; 500 claims
//! on a warm environment; the 1,000 expiring within about a minute; claims at burst rate
//! on 200 warm environments and a queue of 50 handed over (`claims/mod.rs`); 10,000
//! environments held (memory), the operator restarted under them beside the
//! parallel-write floor (10,000 status writes from this client at the operator's
//! concurrency), memory again with 10,000 unrelated Services, and 5 idle minutes
//! (requests counted from the API server's audit log) — during which the peer TTL cleaner
//! (`peer/mod.rs`) expires 1,000 namespaces of its own on the same control plane, for the
//! comparison table.
//!
//! `TESTMESH_BENCH_SCALE` (e.g. `0.1`) shrinks the counts and the idle window for a quick
//! look. `TESTMESH_BENCH_ONLY=argocd` runs the floor and the real Argo CD part alone (no
//! peer, so no `make peer-tools`); `TESTMESH_BENCH_ONLY=stand-in` everything else;
//! `TESTMESH_BENCH_ONLY=claims` the floor, the claim burst and the hand-over alone;
//! `TESTMESH_BENCH_ONLY=memory` the floor and the 10,000 held environments' memory alone,
//! then with 10,000 unrelated Services beside them (with
//! `TESTMESH_OPERATOR_HEAPTRACK=<path>`, under heaptrack: see the testenv's operator).
//! `TESTMESH_BENCH_OPERATOR=<path>` measures that operator binary instead of this build's
//! — the static musl binary `make dist` ships, say.

#[path = "claims/mod.rs"]
mod claims_burst;
#[path = "peer/mod.rs"]
mod peer;
#[path = "real_argocd/mod.rs"]
mod real_argocd;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use testmesh::lifecycle::{Phase, conditions};
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::argocd::{self, ArgoCd};
use testmesh_testenv::chart;
use testmesh_testenv::operator::Operator;
use testmesh_testenv::{
    AuditedRequest, ControlPlane, OPERATOR_USER, install_crds_from_yaml, with_temp_namespace,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Requests in flight while creating objects in bulk.
const CONCURRENCY: usize = 32;
const REVISION: &str = "4f2c1e9";
const NEW_REVISION: &str = "7d0a5b3";

/// Latencies of one figure, in milliseconds.
struct Figure {
    name: &'static str,
    bar: String,
    samples: Vec<f64>,
    /// The bar: (percentile, milliseconds) pairs that must hold.
    limits: Vec<(f64, f64)>,
}

impl Figure {
    /// A figure without a bar.
    fn unbarred(name: &'static str) -> Figure {
        Figure::new(name, "-", Vec::new())
    }

    fn new(name: &'static str, bar: impl Into<String>, limits: Vec<(f64, f64)>) -> Figure {
        Figure {
            name,
            bar: bar.into(),
            samples: Vec::new(),
            limits,
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn met(&self) -> bool {
        self.limits
            .iter()
            .all(|(p, limit)| self.percentile(*p) <= *limit)
    }
}

/// What the bench's one environment watch has seen of each environment.
#[derive(Clone, Debug, Default)]
struct Seen {
    phase: Option<Phase>,
    /// When Ready=True was first seen.
    ready: Option<Instant>,
    /// When the `destroying` phase was first seen, by wall clock.
    teardown: Option<SystemTime>,
    /// When the `destroyed` phase was first seen.
    destroyed: Option<Instant>,
    expires_at: Option<Timestamp>,
    revision: Option<String>,
    claimed_by: Vec<String>,
}

#[derive(Clone, Default)]
struct Environments {
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: Arc<Notify>,
}

impl Environments {
    fn follow(&self, api: Api<TestEnvironment>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(environment) = event else { continue };
                let (now, wall) = (Instant::now(), SystemTime::now());
                let status = environment.status.clone().unwrap_or_default();
                let mut seen = this.seen.lock().expect("lock");
                let entry = seen.entry(environment.name_any()).or_default();
                entry.phase = status.phase;
                if conditions::is_true(&status.conditions, conditions::READY) {
                    entry.ready.get_or_insert(now);
                }
                if status.phase == Some(Phase::Destroying) {
                    entry.teardown.get_or_insert(wall);
                }
                if status.phase == Some(Phase::Destroyed) {
                    entry.destroyed.get_or_insert(now);
                }
                entry.expires_at = status.expires_at.map(|t| t.0).or(entry.expires_at);
                entry.revision = status.provider.and_then(|p| p.revision);
                entry.claimed_by = status.claimed_by;
                drop(seen);
                this.changed.notify_waiters();
            }
        })
    }

    /// Waits until `done` holds for the seen state, failing after `timeout`.
    async fn until<T>(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&HashMap<String, Seen>) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(value) = done(&self.seen.lock().expect("lock")) {
                return value;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "{what}: not within {timeout:?}");
            let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), notified).await;
        }
    }

    async fn one(&self, name: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) -> Seen {
        self.until(name, timeout, |seen| {
            seen.get(name).filter(|s| done(s)).cloned()
        })
        .await
    }

    /// Waits until `wanted` environments whose names start with `prefix` satisfy `done`.
    async fn count(
        &self,
        prefix: &str,
        wanted: usize,
        timeout: Duration,
        done: impl Fn(&Seen) -> bool,
    ) {
        let what = format!("{wanted} {prefix}*");
        self.until(&what, timeout, |seen| {
            let count = seen
                .iter()
                .filter(|(name, s)| name.starts_with(prefix) && done(s))
                .count();
            (count >= wanted).then_some(())
        })
        .await
    }
}

/// The instant this client's watches first saw something of each object (a claim Ready,
/// a namespace created, an Application synced), by key.
#[derive(Clone, Default)]
struct Marks {
    first_seen: Arc<Mutex<HashMap<String, Instant>>>,
    changed: Arc<Notify>,
}

impl Marks {
    /// Records `at` for `key` unless an earlier instant is recorded.
    fn mark(&self, key: &str, at: Instant) {
        let mut first_seen = self.first_seen.lock().expect("lock");
        if !first_seen.contains_key(key) {
            first_seen.insert(key.to_owned(), at);
            drop(first_seen);
            self.changed.notify_waiters();
        }
    }

    fn get(&self, key: &str) -> Option<Instant> {
        self.first_seen.lock().expect("lock").get(key).copied()
    }

    /// The instant recorded for `key`, waiting up to `timeout` for it.
    async fn wait(&self, key: &str, timeout: Duration) -> Instant {
        let started = Instant::now();
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(at) = self.get(key) {
                return at;
            }
            assert!(
                started.elapsed() < timeout,
                "{key}: not seen within {timeout:?}"
            );
            let _ = tokio::time::timeout(Duration::from_secs(1), notified).await;
        }
    }
}

/// Marks each claim of `claims` when first seen Ready.
fn follow_claims(claims: Api<TestEnvironmentClaim>) -> (Marks, JoinHandle<()>) {
    let ready = Marks::default();
    let marks = ready.clone();
    let task = tokio::spawn(async move {
        let mut events = watcher(claims, watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .boxed();
        // A failed watch (a 410 Expired, say) is retried by the watcher: only the
        // event is skipped, not the rest of the run.
        while let Some(event) = events.next().await {
            let Ok(claim) = event else { continue };
            let is_ready = claim
                .status
                .as_ref()
                .is_some_and(|s| conditions::is_true(&s.conditions, conditions::READY));
            if is_ready {
                marks.mark(&claim.name_any(), Instant::now());
            }
        }
    });
    (ready, task)
}

fn environment(name: &str, namespace: &str, ttl_minutes: u32) -> TestEnvironment {
    serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
        "metadata": {"name": name},
        "spec": {"context": name, "provider": "argocd", "providerAppName": name,
                 "namespace": namespace, "ttlMinutes": ttl_minutes}
    }))
    .expect("environment")
}

/// An Application, created with its status in one request (Argo CD's CRD has no status
/// subresource).
fn application(name: &str, destination: &str, healthy: bool) -> DynamicObject {
    let mut app = argocd::application(name, destination);
    app["status"] = if healthy {
        healthy_status(&app, REVISION)
    } else {
        argocd::progressing_status()
    };
    serde_json::from_value(app).expect("Application")
}

fn healthy_status(app: &Value, revision: &str) -> Value {
    let app: DynamicObject = serde_json::from_value(app.clone()).expect("Application");
    let mut status = argocd::healthy_status(&app);
    status["sync"]["revision"] = json!(revision);
    status["operationState"]["operation"]["sync"]["revision"] = json!(revision);
    status
}

fn claim(name: &str, environment: &str) -> TestEnvironmentClaim {
    serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
        "metadata": {"name": name},
        "spec": {"context": environment, "environmentName": environment}
    }))
    .expect("claim")
}

/// Creates `count` environments named `{prefix}-{i}` with their Applications, `CONCURRENCY`
/// requests at a time.
async fn create_many(
    argo: &ArgoCd,
    environments: &Api<TestEnvironment>,
    workspace: &str,
    prefix: &str,
    count: usize,
    ttl_minutes: u32,
    healthy: bool,
) {
    futures::stream::iter(0..count)
        .map(Ok::<usize, kube::Error>)
        .try_for_each_concurrent(CONCURRENCY, |i| async move {
            let name = format!("{prefix}-{i:05}");
            let namespace = format!("{workspace}-{prefix}-{i:05}");
            argo.apps
                .create(
                    &PostParams::default(),
                    &application(&name, &namespace, healthy),
                )
                .await?;
            environments
                .create(
                    &PostParams::default(),
                    &environment(&name, &namespace, ttl_minutes),
                )
                .await?;
            Ok(())
        })
        .await
        .expect("create environments");
}

fn operator_requests(control_plane: &ControlPlane) -> Vec<AuditedRequest> {
    control_plane
        .audited_requests()
        .expect("audit log")
        .into_iter()
        .filter(|r| r.user == OPERATOR_USER && r.user_agent.starts_with("testmesh/"))
        .collect()
}

fn describe(request: &AuditedRequest) -> String {
    let sub = request
        .subresource
        .as_ref()
        .map(|s| format!("/{s}"))
        .unwrap_or_default();
    format!("{} {}{sub}", request.verb, request.resource)
}

/// The objects of one environment's lifecycle whose writes are counted.
struct LifecycleObjects<'a> {
    environment: &'a str,
    claim: &'a str,
    application: &'a str,
    namespace: &'a str,
}

/// The operator's writes for one lifecycle, each as `verb resource[/subresource]`.
#[derive(PartialEq)]
struct LifecycleWrites {
    /// Those the API server carried out: the count.
    succeeded: Vec<String>,
    /// Those it refused (a conflict, typically), not counted.
    refused: Vec<String>,
}

/// The operator's writes since `since` to one lifecycle's objects — the environment, its
/// claim, its Application, its namespace and what is in it, and their Events.
fn lifecycle_writes(
    control_plane: &ControlPlane,
    since: Timestamp,
    objects: &LifecycleObjects<'_>,
) -> LifecycleWrites {
    let event_prefixes = [
        format!("{}.", objects.environment),
        format!("{}.", objects.claim),
    ];
    let (succeeded, refused): (Vec<AuditedRequest>, Vec<AuditedRequest>) =
        operator_requests(control_plane)
            .into_iter()
            .filter(|r| received_at(r) >= since)
            .filter(|r| !["get", "list", "watch"].contains(&r.verb.as_str()))
            .filter(|r| {
                let name = r.name.as_deref().unwrap_or_default();
                [
                    objects.environment,
                    objects.claim,
                    objects.application,
                    objects.namespace,
                ]
                .contains(&name)
                    || r.namespace.as_deref() == Some(objects.namespace)
                    || (r.resource == "events"
                        && event_prefixes.iter().any(|p| name.starts_with(p)))
            })
            .partition(|r| r.code < 300);
    LifecycleWrites {
        succeeded: succeeded.iter().map(describe).collect(),
        refused: refused.iter().map(describe).collect(),
    }
}

fn received_at(request: &AuditedRequest) -> Timestamp {
    request.received_at.parse().expect("audit timestamp")
}

/// Resident and peak resident memory of a process, in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let [rss, peak] = status_mib(pid, ["VmRSS:", "VmHWM:"]);
    (rss, peak)
}

/// Fields of a process's `/proc/<pid>/status`, in MiB (NaN where absent).
fn status_mib<const N: usize>(pid: u32, names: [&str; N]) -> [f64; N] {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    names.map(|name| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    })
}

/// The operator binary measured: `TESTMESH_BENCH_OPERATOR`, else this build's.
fn operator_binary() -> String {
    std::env::var("TESTMESH_BENCH_OPERATOR")
        .ok()
        .filter(|path| !path.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_testmesh").to_owned())
}

fn now() -> Timestamp {
    Timestamp::try_from(SystemTime::now()).expect("clock")
}

/// Which parts run (`TESTMESH_BENCH_ONLY`): unset, all; `argocd` the real Argo CD part;
/// `stand-in` everything else; `claims` the claim burst and queue hand-over alone,
/// `memory` the 10,000 held environments' memory alone (parts of the stand-in's). The
/// floor always runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Parts {
    All,
    RealArgoCd,
    StandIn,
    Claims,
    Memory,
}

impl Parts {
    fn from_env() -> Parts {
        match std::env::var("TESTMESH_BENCH_ONLY").as_deref() {
            Err(_) | Ok("") => Parts::All,
            Ok("argocd") => Parts::RealArgoCd,
            Ok("stand-in") => Parts::StandIn,
            Ok("claims") => Parts::Claims,
            Ok("memory") => Parts::Memory,
            Ok(other) => {
                panic!("TESTMESH_BENCH_ONLY={other}: expected argocd, stand-in, claims or memory")
            }
        }
    }

    fn real_argocd(self) -> bool {
        matches!(self, Parts::All | Parts::RealArgoCd)
    }

    fn stand_in(self) -> bool {
        matches!(self, Parts::All | Parts::StandIn)
    }
}

/// What the memory part alone measured (`TESTMESH_BENCH_ONLY=memory`).
struct MemoryOnly {
    many: usize,
    rss: f64,
    peak: f64,
    /// Resident anonymous and file-backed MiB, with `many` held.
    split: [f64; 2],
    took: Duration,
    services: usize,
    rss_with_services: f64,
}

/// The workspace of the floor and the stand-in parts: its operator, acting on
/// Applications of Argo CD's stand-in, and this client's watches of it.
struct StandInWorkspace {
    ws: String,
    argo: ArgoCd,
    operator: Operator,
    environments: Api<TestEnvironment>,
    claims: Api<TestEnvironmentClaim>,
    seen: Environments,
    claim_ready: Marks,
}

/// What the parts with Argo CD's stand-in measured.
struct StandIn {
    figures: Vec<Figure>,
    notes: Vec<String>,
    many: usize,
    rss_held: f64,
    rss_after: f64,
    peak: f64,
    /// Unrelated Services (with their EndpointSlices) created after the restart, and the
    /// operator's resident memory once it has seen them.
    services: usize,
    rss_with_services: f64,
    restart_seconds: f64,
    /// The parallel-write floor: seconds for this client to write `many` statuses at the
    /// operator's reconcile concurrency, as the operator writes them.
    write_floor_seconds: f64,
    claims: claims_burst::Figures,
    idle_window: Duration,
    idle: Vec<AuditedRequest>,
    life_writes: LifecycleWrites,
    cpu_seconds: f64,
    peer: peer::PeerFigures,
}

fn scaled(scale: f64, n: usize) -> usize {
    ((n as f64 * scale).round() as usize).max(1)
}

#[tokio::main]
async fn main() {
    let scale: f64 = std::env::var("TESTMESH_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let parts = Parts::from_env();
    let started = Instant::now();
    let control_plane = ControlPlane::shared();
    let client: Client = control_plane.admin_client().await.expect("client");
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/crds")).expect("crds/") {
        let yaml = std::fs::read_to_string(entry.expect("entry").path()).expect("CRD file");
        install_crds_from_yaml(&client, &yaml)
            .await
            .expect("install CRD");
    }
    argocd::install_crds(&client).await;
    // Argo CD and kwok start before the floor, so that it is measured beside them.
    let gitops = parts
        .real_argocd()
        .then(|| tokio::task::spawn_blocking(move || real_argocd::GitOps::start(control_plane)));
    let workspace = with_temp_namespace(&client, "bench")
        .await
        .expect("workspace");
    let argo_namespace = with_temp_namespace(&client, "bench-argocd")
        .await
        .expect("argocd namespace");
    let ws = workspace.name().to_owned();
    chart::install_teardown_finalizer_policy(&client, &ws).await;
    let operator = Operator::start(&operator_binary(), &ws, argo_namespace.name(), &[]);
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), &ws);
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), &ws);
    let seen = Environments::default();
    seen.follow(environments.clone());
    let (claim_ready, _) = follow_claims(claims.clone());
    let mut stand_in_workspace = StandInWorkspace {
        argo: ArgoCd::new(&client, argo_namespace.name()),
        ws,
        operator,
        environments,
        claims,
        seen,
        claim_ready,
    };
    let gitops = match gitops {
        Some(starting) => Some(starting.await.expect("start kwok and Argo CD")),
        None => None,
    };

    // Floor: one status write by a single client.
    let environments = &stand_in_workspace.environments;
    environments
        .create(
            &PostParams::default(),
            &environment(
                "scratch",
                &format!("{}-scratch", stand_in_workspace.ws),
                600,
            ),
        )
        .await
        .expect("scratch");
    let mut floor = Figure::unbarred("floor: one status write (merge patch)");
    for i in 0..200 {
        let patch = json!({"status": {"routingPolicy": {"probe": format!("http://probe:{i}")}}});
        let started = Instant::now();
        environments
            .patch_status("scratch", &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("status write");
        floor.samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    environments
        .delete("scratch", &DeleteParams::default())
        .await
        .expect("delete scratch");

    let real = match gitops {
        Some(gitops) => {
            Some(real_argocd::measure(control_plane, &client, gitops, &floor, scale).await)
        }
        None => None,
    };
    let stand_in = if parts.stand_in() {
        Some(stand_in(control_plane, &mut stand_in_workspace, scale, &floor).await)
    } else {
        None
    };
    let claims_only = if parts == Parts::Claims {
        Some(claims_burst::measure(&stand_in_workspace, scale, floor.percentile(99.0)).await)
    } else {
        None
    };
    let memory_only = if parts == Parts::Memory {
        let w = &stand_in_workspace;
        let many = scaled(scale, 10_000);
        let (rss, took) = hold(&w.argo, &w.environments, &w.ws, &w.seen, &w.operator, many).await;
        let pid = w.operator.pid().expect("operator pid");
        let (_, peak) = memory_mib(pid);
        let split = status_mib(pid, ["RssAnon:", "RssFile:"]);
        let services = scaled(scale, 10_000);
        let rss_with_services =
            with_unrelated_services(control_plane, services, || memory_mib(pid).0).await;
        Some(MemoryOnly {
            many,
            rss,
            peak,
            split,
            took,
            services,
            rss_with_services,
        })
    } else {
        None
    };
    stand_in_workspace.operator.kill();
    let operator_log = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/operator.log");
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench")).expect("dir");
    std::fs::write(operator_log, stand_in_workspace.operator.log()).expect("operator log");

    // The table.
    let floor_p50 = floor.percentile(50.0);
    let floor_p99 = floor.percentile(99.0);
    let figures: Vec<&Figure> = real
        .iter()
        .flat_map(|r| &r.figures)
        .chain(stand_in.iter().flat_map(|s| &s.figures))
        .collect();
    println!();
    println!(
        "{:<46} {:>6} {:>9} {:>9} {:>9} {:>10} {:>10}  {:<28} met",
        "figure", "n", "p50 ms", "p99 ms", "max ms", "p50/floor", "p99/floor", "bar"
    );
    print_figures(&[&floor], &floor);
    if let Some(real) = &real {
        print_figures(&real.figures.iter().collect::<Vec<_>>(), &floor);
        scalar(
            "Argo CD: TestMesh overhead p99 / floor p99",
            real.environments,
            format!("{:.2}", real.overhead_over_floor),
            "<= 2",
            real.overhead_over_floor <= 2.0,
        );
        print_writes("Argo CD: API writes for one lifecycle", &real.life_writes);
        println!("  what each of its status writes changed, as this client's watch saw it:");
        for (i, change) in real.life_status_changes.iter().enumerate() {
            println!("    {:>2}. {change}", i + 1);
        }
    }
    if let Some(claims) = stand_in
        .as_ref()
        .map(|s| &s.claims)
        .or(claims_only.as_ref())
    {
        print_claims(claims, &floor);
    }
    if let Some(m) = memory_only {
        let many = m.many;
        memory_scalar(
            &format!("{many} environments held: operator RSS"),
            many,
            format!("{:.1} MiB (peak {:.1})", m.rss, m.peak),
            m.rss,
        );
        let [anon, file] = m.split;
        println!(
            "  of which {anon:.1} MiB anonymous (heap, stacks) and {file:.1} MiB of the binary's mapped pages"
        );
        println!(
            "  {many} environments created and warm in {:.0} s",
            m.took.as_secs_f64()
        );
        memory_scalar(
            &format!("  the same + {} unrelated Services", m.services),
            many,
            format!("{:.1} MiB", m.rss_with_services),
            m.rss_with_services,
        );
    }
    if let Some(s) = &stand_in {
        print_figures(&s.figures.iter().collect::<Vec<_>>(), &floor);
        let many = s.many;
        memory_scalar(
            &format!("{many} environments held: operator RSS"),
            many,
            format!(
                "{:.1} MiB (after restart {:.1}, peak {:.1})",
                s.rss_held, s.rss_after, s.peak
            ),
            s.rss_held.max(s.rss_after),
        );
        memory_scalar(
            &format!("  the same + {} unrelated Services", s.services),
            many,
            format!("{:.1} MiB", s.rss_with_services),
            s.rss_with_services,
        );
        unbarred_scalar(
            &format!("parallel-write floor: {many} status writes"),
            many,
            format!(
                "{:.1} s at concurrency {OPERATOR_CONCURRENCY}",
                s.write_floor_seconds
            ),
        );
        let restart_ratio = s.restart_seconds / s.write_floor_seconds;
        scalar(
            &format!("restart with {many}: all reconciled"),
            many,
            format!(
                "{:.1} s ({restart_ratio:.2} x write floor)",
                s.restart_seconds
            ),
            "<= 1.5 x write floor",
            restart_ratio <= 1.5,
        );
        scalar(
            &format!(
                "idle {:.0} min: requests other than watches",
                s.idle_window.as_secs_f64() / 60.0
            ),
            many,
            format!("{}", s.idle.len()),
            "0",
            s.idle.is_empty(),
        );
        print_writes("API writes for one full lifecycle", &s.life_writes);
        if !s.idle.is_empty() {
            println!("  idle requests: {:?}", idle_kinds(&s.idle));
        }
        println!("  operator CPU: {:.1} s over the whole run", s.cpu_seconds);
    }
    for note in real
        .iter()
        .flat_map(|r| &r.notes)
        .chain(stand_in.iter().flat_map(|s| &s.notes))
    {
        println!("  {note}");
    }
    println!("  bench took {:.0} s", started.elapsed().as_secs_f64());
    if let Some(s) = &stand_in {
        print_ttl_comparison(s);
    }

    let report = json!({
        "scale": scale,
        "parts": {"real_argocd": parts.real_argocd(), "stand_in": parts.stand_in()},
        "floor": {"n": floor.samples.len(), "p50_ms": floor_p50, "p99_ms": floor_p99},
        "figures": figures.iter().map(|f| json!({
            "name": f.name, "n": f.samples.len(), "bar": f.bar, "met": f.met(),
            "p50_ms": f.percentile(50.0), "p99_ms": f.percentile(99.0), "max_ms": f.percentile(100.0),
            "p50_over_floor": f.percentile(50.0) / floor_p50, "p99_over_floor": f.percentile(99.0) / floor_p99,
        })).collect::<Vec<_>>(),
        "real_argocd": real.as_ref().map(|r| r.to_json()),
        "held": stand_in.as_ref().map(|s| json!({
            "environments": s.many, "rss_mib": s.rss_held,
            "rss_after_restart_mib": s.rss_after, "peak_rss_mib": s.peak,
        })),
        "restart_seconds": stand_in.as_ref().map(|s| s.restart_seconds),
        "write_floor_seconds": stand_in.as_ref().map(|s| s.write_floor_seconds),
        "with_services": stand_in.as_ref().map(|s| json!({
            "services": s.services, "rss_mib": s.rss_with_services,
        })),
        "claims": stand_in.as_ref().map(|s| &s.claims).or(claims_only.as_ref())
            .map(|c| c.to_json(&floor)),
        "idle": stand_in.as_ref().map(|s| json!({
            "seconds": s.idle_window.as_secs_f64(), "requests": s.idle.len(),
            "by_kind": idle_kinds(&s.idle),
        })),
        "lifecycle_writes": stand_in.as_ref().map(|s| writes_json(&s.life_writes)),
        "operator_cpu_seconds": stand_in.as_ref().map(|s| s.cpu_seconds),
        "peer": stand_in.as_ref().map(|s| s.peer.to_json()),
        "notes": real.iter().flat_map(|r| &r.notes)
            .chain(stand_in.iter().flat_map(|s| &s.notes)).collect::<Vec<_>>(),
    });
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench");
    std::fs::create_dir_all(dir).expect("target/bench");
    let path = format!("{dir}/lifecycle.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).expect("json"))
        .expect("write report");
    println!("written to {path}");
}

/// The parts with Argo CD's stand-in, whose Application status this client writes.
async fn stand_in(
    control_plane: &ControlPlane,
    workspace: &mut StandInWorkspace,
    scale: f64,
    floor: &Figure,
) -> StandIn {
    let StandInWorkspace {
        ws,
        argo,
        environments,
        claims,
        seen,
        claim_ready,
        ..
    } = &*workspace;
    let ws: &str = ws;
    let scaled = |n: usize| scaled(scale, n);
    let minute = Duration::from_secs(60);
    let mut figures = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // One whole lifecycle, for its writes; and the environment the claims will reuse. Its
    // Application turns Healthy only once the environment is seen provisioning, as after
    // a real sync: whether the operator's first pass would otherwise see it Healthy
    // already is a race, and the count would change with it.
    let life_namespace = format!("{ws}-life");
    let life_started = now();
    argo.apps
        .create(
            &PostParams::default(),
            &application("life", &life_namespace, false),
        )
        .await
        .expect("app");
    environments
        .create(
            &PostParams::default(),
            &environment("life", &life_namespace, 1),
        )
        .await
        .expect("life");
    seen.one("life", minute, |s| s.phase == Some(Phase::Provisioning))
        .await;
    let life_app = argocd::application("life", &life_namespace);
    argo.set_status("life", healthy_status(&life_app, REVISION))
        .await;
    argo.apps
        .create(
            &PostParams::default(),
            &application("reused", &format!("{ws}-reused"), true),
        )
        .await
        .expect("app");
    environments
        .create(
            &PostParams::default(),
            &environment("reused", &format!("{ws}-reused"), 600),
        )
        .await
        .expect("reused");
    seen.one("life", minute, |s| s.ready.is_some()).await;
    claims
        .create(&PostParams::default(), &claim("life-run", "life"))
        .await
        .expect("claim");
    // Released once Ready, as a run would: its status write is part of the lifecycle.
    claim_ready.wait("life-run", minute).await;
    claims
        .delete("life-run", &DeleteParams::default())
        .await
        .expect("release");
    seen.one("reused", minute, |s| s.ready.is_some()).await;

    // Application Healthy → environment Ready, one at a time, with 1,000 environments held.
    let held = scaled(1000);
    // Two minutes: the 1,000 turn Ready over a minute and the claims follow, so they
    // expire over a minute, after the claims are done.
    create_many(argo, environments, ws, "env", held, 2, false).await;
    seen.count("env-", held, 3 * minute, |s| {
        s.phase == Some(Phase::Provisioning)
    })
    .await;
    let mut healthy_to_ready = Figure::new(
        "Application Healthy -> environment Ready",
        "p99 <= 100 ms",
        vec![(99.0, 100.0)],
    );
    // Paced over a minute, so that their TTLs run out spread over a minute as well.
    let pace = Duration::from_secs(60) / u32::try_from(held).expect("count");
    let flips_start = Instant::now();
    for i in 0..held {
        let name = format!("env-{i:05}");
        let app = argocd::application(&name, &format!("{ws}-env-{i:05}"));
        tokio::time::sleep_until((flips_start + pace * u32::try_from(i).expect("index")).into())
            .await;
        let started = Instant::now();
        argo.set_status(&name, healthy_status(&app, REVISION)).await;
        let ready = seen.one(&name, minute, |s| s.ready.is_some()).await;
        let at = ready.ready.expect("ready");
        healthy_to_ready
            .samples
            .push(at.duration_since(started).as_secs_f64() * 1e3);
    }
    figures.push(healthy_to_ready);

    // Claim created → claim Ready on a warm environment, one run at a time.
    let runs = scaled(500);
    let mut claim_to_ready = Figure::new(
        "claim created -> Ready on a warm environment",
        "p50 <= 30 ms, p99 <= 150 ms",
        vec![(50.0, 30.0), (99.0, 150.0)],
    );
    for i in 0..runs {
        let name = format!("run-{i:05}");
        let started = Instant::now();
        claims
            .create(&PostParams::default(), &claim(&name, "reused"))
            .await
            .expect("claim");
        let ready_at = claim_ready.wait(&name, minute).await;
        claim_to_ready
            .samples
            .push(ready_at.duration_since(started).as_secs_f64() * 1e3);
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("release");
        seen.one("reused", minute, |s| s.claimed_by.is_empty())
            .await;
    }
    figures.push(claim_to_ready);

    // expiresAt → teardown started, for the 1,000 (TTL 2 minutes from their readiness).
    seen.count("env-", held, 5 * minute, |s| s.teardown.is_some())
        .await;
    let expiry_limit = 2.0 * floor.percentile(99.0);
    let mut expiry = Figure::new(
        "expiresAt -> teardown started",
        format!("p99 <= 2 x floor p99 ({expiry_limit:.1} ms)"),
        vec![(99.0, expiry_limit)],
    );
    let (first_expiry, last_expiry) = {
        let seen = seen.seen.lock().expect("lock");
        let mut span = (None::<Timestamp>, None::<Timestamp>);
        for (name, s) in seen.iter().filter(|(n, _)| n.starts_with("env-")) {
            let expires = s
                .expires_at
                .unwrap_or_else(|| panic!("{name}: no expiresAt"));
            let teardown = s
                .teardown
                .unwrap_or_else(|| panic!("{name}: no teardown seen: {s:?}"));
            let teardown = Timestamp::try_from(teardown).expect("time");
            expiry
                .samples
                .push(teardown.duration_since(expires).as_secs_f64() * 1e3);
            span.0 = Some(span.0.map_or(expires, |t| t.min(expires)));
            span.1 = Some(span.1.map_or(expires, |t| t.max(expires)));
        }
        (span.0.expect("expiries"), span.1.expect("expiries"))
    };
    notes.push(format!(
        "the {} expiries spread over {:.0} s",
        expiry.samples.len(),
        last_expiry.duration_since(first_expiry).as_secs_f64()
    ));
    figures.push(expiry);

    // The whole lifecycle's writes (its TTL of one minute ran out meanwhile).
    seen.one("life", 3 * minute, |s| s.phase == Some(Phase::Destroyed))
        .await;
    let life_writes = lifecycle_writes(
        control_plane,
        life_started,
        &LifecycleObjects {
            environment: "life",
            claim: "life-run",
            application: "life",
            namespace: &life_namespace,
        },
    );

    // Their teardowns end before the next part, which must start from quiet.
    seen.count("env-", held, 10 * minute, |s| {
        s.phase == Some(Phase::Destroyed)
    })
    .await;

    let claims_figures = claims_burst::measure(workspace, scale, floor.percentile(99.0)).await;
    let StandInWorkspace {
        ws,
        argo,
        operator,
        environments,
        seen,
        ..
    } = workspace;
    let (ws, argo, environments, seen) = (ws.as_str(), &*argo, &*environments, &*seen);

    // 10,000 environments held: memory, restart, idle.
    let many = scaled(10_000);
    let (rss_held, creating) = hold(argo, environments, ws, seen, operator, many).await;
    notes.push(format!(
        "{many} environments created and warm in {:.0} s",
        creating.as_secs_f64()
    ));

    operator.kill();
    let write_floor_seconds = write_floor(control_plane, environments, many).await;
    futures::stream::iter(0..many)
        .map(Ok::<usize, kube::Error>)
        .try_for_each_concurrent(CONCURRENCY, |i| async move {
            let name = format!("held-{i:05}");
            let app = argocd::application(&name, &format!("{ws}-held-{i:05}"));
            let patch = json!({"status": healthy_status(&app, NEW_REVISION)});
            argo.apps
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            Ok(())
        })
        .await
        .expect("new revisions");
    let restarted = Instant::now();
    operator.restart();
    seen.count("held-", many, 5 * minute, |s| {
        s.revision.as_deref() == Some(NEW_REVISION)
    })
    .await;
    let restart_seconds = restarted.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (rss_after, _) = memory_mib(operator.pid().expect("operator pid"));

    // Unrelated Services: the operator caches every Service of the cluster for routing.
    let services = scaled(10_000);
    let rss_with_services = with_unrelated_services(control_plane, services, || {
        memory_mib(operator.pid().expect("operator pid")).0
    })
    .await;

    // Idle: nothing changes for the operator's objects; count what it asks for.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let idle_from = now();
    let idle_window = Duration::from_secs_f64(300.0 * scale.min(1.0));
    let idle_started = Instant::now();
    let (peer, ()) = tokio::join!(
        peer::measure(control_plane, scaled(1000)),
        tokio::time::sleep(idle_window)
    );
    let idle_window = idle_started.elapsed();
    let idle_to = now();
    let idle: Vec<AuditedRequest> = operator_requests(control_plane)
        .into_iter()
        .filter(|r| r.verb != "watch")
        .filter(|r| {
            let at = received_at(r);
            at >= idle_from && at < idle_to
        })
        .collect();
    let (_, peak) = memory_mib(operator.pid().expect("operator pid"));
    let pid = operator.pid().expect("operator pid");
    let cpu_seconds = cpu_seconds(pid);
    operator.kill();
    StandIn {
        figures,
        notes,
        many,
        rss_held,
        rss_after,
        peak,
        services,
        rss_with_services,
        restart_seconds,
        write_floor_seconds,
        claims: claims_figures,
        idle_window,
        idle,
        life_writes,
        cpu_seconds,
        peer,
    }
}

/// Creates `many` environments named `held-…` and waits until the operator holds them
/// all warm; the operator's resident memory then (MiB), and how long that took.
async fn hold(
    argo: &ArgoCd,
    environments: &Api<TestEnvironment>,
    ws: &str,
    seen: &Environments,
    operator: &Operator,
    many: usize,
) -> (f64, Duration) {
    let creating = Instant::now();
    create_many(argo, environments, ws, "held", many, 600, true).await;
    seen.count("held-", many, Duration::from_secs(15 * 60), |s| {
        s.phase == Some(Phase::Warm) && s.revision.as_deref() == Some(REVISION)
    })
    .await;
    let (rss, _) = memory_mib(operator.pid().expect("operator pid"));
    (rss, creating.elapsed())
}

/// The operator's reconcile concurrency (`RECONCILE_CONCURRENCY` in the controller), at
/// which the parallel-write floor and the burst's floor write.
const OPERATOR_CONCURRENCY: usize = 16;

/// The parallel-write floor: seconds for this API server to take `writes` status writes
/// from this client, `OPERATOR_CONCURRENCY` at a time, each as the operator writes a
/// status (server-side apply of the whole status, forced) and each a real change (a new
/// revision). They go to environments of a namespace no operator watches, made like the
/// held ones (a held environment's status), up to 1,000 of them written round-robin, so
/// no two writes in flight meet on one object.
async fn write_floor(
    control_plane: &ControlPlane,
    held: &Api<TestEnvironment>,
    writes: usize,
) -> f64 {
    let client = control_plane.admin_client().await.expect("client");
    let namespace = with_temp_namespace(&client, "bench-write-floor")
        .await
        .expect("namespace");
    let api: Api<TestEnvironment> = Api::namespaced(client, namespace.name());
    let template = held
        .get("held-00000")
        .await
        .expect("a held environment")
        .status
        .expect("its status");
    let objects = writes.min(1000);
    let api = &api;
    futures::stream::iter(0..objects)
        .map(Ok::<usize, kube::Error>)
        .try_for_each_concurrent(CONCURRENCY, |i| async move {
            let name = format!("floor-{i:05}");
            api.create(
                &PostParams::default(),
                &environment(&name, &format!("floor-{i:05}"), 600),
            )
            .await
            .map(|_| ())
        })
        .await
        .expect("floor environments");
    let template = &template;
    let started = Instant::now();
    futures::stream::iter(0..writes)
        .map(Ok::<usize, kube::Error>)
        .try_for_each_concurrent(OPERATOR_CONCURRENCY, |i| async move {
            let name = format!("floor-{:05}", i % objects);
            let mut status = serde_json::to_value(template).expect("status");
            status["provider"]["revision"] = json!(format!("floor-{i}"));
            let body = json!({
                "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
                "metadata": {"name": name}, "status": status,
            });
            api.patch_status(
                &name,
                &PatchParams::apply("bench-write-floor").force(),
                &Patch::Apply(body),
            )
            .await
            .map(|_| ())
        })
        .await
        .expect("floor writes");
    let seconds = started.elapsed().as_secs_f64();
    namespace.cleanup().await.expect("delete floor namespace");
    seconds
}

/// Creates `count` Services unrelated to any environment, each with a selector (so the
/// EndpointSlice controller gives each a slice, as a real cluster has), and returns
/// `rss()` once every slice exists and the operator has had a few seconds to take them
/// in. They stay: the rest of the run has them in the cluster too.
async fn with_unrelated_services(
    control_plane: &ControlPlane,
    count: usize,
    rss: impl Fn() -> f64,
) -> f64 {
    let client = control_plane.admin_client().await.expect("client");
    let namespace = with_temp_namespace(&client, "bench-services")
        .await
        .expect("namespace");
    let services: Api<Service> = Api::namespaced(client.clone(), namespace.name());
    let services = &services;
    futures::stream::iter(0..count)
        .map(Ok::<usize, kube::Error>)
        .try_for_each_concurrent(CONCURRENCY, |i| async move {
            let service: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("svc-{i:05}"), "labels": {"app": format!("svc-{i:05}")}},
                "spec": {"clusterIP": "None", "selector": {"app": format!("svc-{i:05}")},
                         "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
            }))
            .expect("service");
            services
                .create(&PostParams::default(), &service)
                .await
                .map(|_| ())
        })
        .await
        .expect("services");
    let slices: Api<EndpointSlice> = Api::namespaced(client, namespace.name());
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let listed = slices
            .list_metadata(&ListParams::default())
            .await
            .expect("slices");
        if listed.items.len() >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    rss()
}

/// Rows of the claim burst and the queue hand-over.
fn print_claims(claims: &claims_burst::Figures, floor: &Figure) {
    let rest = &claims.at_rest;
    unbarred_scalar(
        "at rest: CPU s/s operator / servers / bench",
        claims.environments,
        format!(
            "{:.3} / {:.3} / {:.3}",
            rest.operator.unwrap_or_default(),
            rest.servers,
            rest.bench
        ),
    );
    for round in &claims.rounds {
        print_figures(&[&round.latency], floor);
        let label = round.label();
        if round.pace.is_none() {
            scalar(
                &format!("  {label}: claims/s sustained"),
                claims.environments,
                format!("{:.0}", round.claims_per_second),
                ">= 200",
                round.claims_per_second >= 200.0,
            );
        } else {
            unbarred_scalar(
                &format!("  {label}: claims/s sustained"),
                claims.environments,
                format!("{:.0}", round.claims_per_second),
            );
        }
        print_cpu(&format!("  {label}"), &round.cpu, claims.environments);
        unbarred_scalar(
            &format!("  {label}: API writes per claim"),
            claims.environments,
            format!("{:.1}", round.writes_per_claim),
        );
        unbarred_scalar(
            &format!("  {label}: operator's GETs / LISTs"),
            claims.environments,
            format!("{} / {}", round.operator_reads.0, round.operator_reads.1),
        );
    }
    unbarred_scalar(
        "  the same writes, this client alone: claims/s",
        claims.environments,
        format!("{:.0}", claims.burst_floor.claims_per_second),
    );
    print_cpu(
        "  this client alone",
        &claims.burst_floor.cpu,
        claims.environments,
    );
    print_figures(
        &[&claims.hand_over, &claims.fresh_reads, &claims.chain_floor],
        floor,
    );
    let chain_p99 = claims.chain_floor.percentile(99.0);
    unbarred_scalar(
        "  hand-over p99 / its requests' p99",
        claims.hand_over.samples.len(),
        format!("{:.2}", claims.hand_over.percentile(99.0) / chain_p99),
    );
}

/// Rows of where `claims`' CPU went, per claim, and the claims per second the cores
/// could sustain at that cost.
fn print_cpu(label: &str, cpu: &claims_burst::CpuSpent, claims: usize) {
    let per_claim = |seconds: f64| seconds * 1e3 / claims as f64;
    if let Some(operator) = cpu.operator {
        unbarred_scalar(
            &format!("{label}: operator CPU"),
            claims,
            format!("{operator:.2} s ({:.1} ms/claim)", per_claim(operator)),
        );
    }
    unbarred_scalar(
        &format!("{label}: API server + etcd CPU"),
        claims,
        format!(
            "{:.2} s ({:.1} ms/claim)",
            cpu.servers,
            per_claim(cpu.servers)
        ),
    );
    unbarred_scalar(
        &format!("{label}: bench CPU"),
        claims,
        format!("{:.2} s ({:.1} ms/claim)", cpu.bench, per_claim(cpu.bench)),
    );
    let cores = claims_burst::cores();
    unbarred_scalar(
        &format!("{label}: claims/s {cores} cores allow"),
        claims,
        format!("{:.0}", cpu.ceiling(claims)),
    );
}

/// Rows of the table: each figure's percentiles, and as multiples of the floor's.
fn print_figures(figures: &[&Figure], floor: &Figure) {
    let (floor_p50, floor_p99) = (floor.percentile(50.0), floor.percentile(99.0));
    for figure in figures {
        println!(
            "{:<46} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>10.1} {:>10.1}  {:<28} {}",
            figure.name,
            figure.samples.len(),
            figure.percentile(50.0),
            figure.percentile(99.0),
            figure.percentile(100.0),
            figure.percentile(50.0) / floor_p50,
            figure.percentile(99.0) / floor_p99,
            figure.bar,
            if figure.limits.is_empty() {
                ""
            } else if figure.met() {
                "yes"
            } else {
                "NO"
            }
        );
    }
}

/// A row of the table with one value instead of percentiles.
fn scalar(name: &str, n: usize, value: String, bar: &str, met: bool) {
    println!(
        "{name:<46} {n:>6} {value:>51}  {bar:<28} {}",
        if met { "yes" } else { "NO" }
    );
}

/// The operator's resident memory with the 10,000 held environments may be at most this.
const MEMORY_BAR_MIB: f64 = 64.0;

/// A row of the table for a resident-memory figure, `resident_mib` judged against
/// [`MEMORY_BAR_MIB`].
fn memory_scalar(name: &str, n: usize, value: String, resident_mib: f64) {
    let bar = format!("<= {MEMORY_BAR_MIB} MiB");
    scalar(name, n, value, &bar, resident_mib <= MEMORY_BAR_MIB);
}

/// A row of the table with one value and no bar.
fn unbarred_scalar(name: &str, n: usize, value: String) {
    println!("{name:<46} {n:>6} {value:>51}  -");
}

/// The rows of one lifecycle's writes: to its objects, then with the Event that every
/// phase change publishes, then by verb and resource.
fn print_writes(title: &str, lifecycle: &LifecycleWrites) {
    let writes = &lifecycle.succeeded;
    let events = event_writes(writes);
    let object_writes = writes.len() - events;
    scalar(
        &format!("{title}: objects"),
        1,
        format!("{object_writes}"),
        "<= 10",
        object_writes <= 10,
    );
    scalar(
        "  the same with its events",
        1,
        format!("{} ({events} events)", writes.len()),
        "<= 10",
        writes.len() <= 10,
    );
    println!("  lifecycle writes: {:?}", writes_by_kind(writes));
    if !lifecycle.refused.is_empty() {
        println!(
            "  refused, not counted: {:?}",
            writes_by_kind(&lifecycle.refused)
        );
    }
}

fn event_writes(writes: &[String]) -> usize {
    writes.iter().filter(|w| w.ends_with(" events")).count()
}

fn writes_by_kind(writes: &[String]) -> BTreeMap<&str, usize> {
    let mut by_kind: BTreeMap<&str, usize> = BTreeMap::new();
    for write in writes {
        *by_kind.entry(write.as_str()).or_default() += 1;
    }
    by_kind
}

fn writes_json(lifecycle: &LifecycleWrites) -> Value {
    let writes = &lifecycle.succeeded;
    json!({
        "total": writes.len(),
        "events": event_writes(writes),
        "by_kind": writes_by_kind(writes),
        "refused_by_kind": writes_by_kind(&lifecycle.refused),
    })
}

fn idle_kinds(idle: &[AuditedRequest]) -> BTreeMap<String, usize> {
    idle.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(describe(r)).or_default() += 1;
        m
    })
}

/// TestMesh's expiry beside the peer TTL cleaner's and the reference figures.
fn print_ttl_comparison(s: &StandIn) {
    let ours = s
        .figures
        .iter()
        .find(|f| f.name.starts_with("expiresAt"))
        .expect("expiry figure");
    println!();
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10} {:>9}  API requests",
        "TTL expiry, side by side", "n", "p50 s", "p99 s", "RSS MiB", "CPU s"
    );
    println!(
        "{:<52} {:>6} {:>10.3} {:>10.3} {:>10.1} {:>9.1}  {} in {:.0} idle s with {} held (watches aside)",
        "TestMesh (timer per environment)",
        ours.samples.len(),
        ours.percentile(50.0) / 1e3,
        ours.percentile(99.0) / 1e3,
        s.rss_held.max(s.rss_after),
        s.cpu_seconds,
        s.idle.len(),
        s.idle_window.as_secs_f64(),
        s.many
    );
    let peer = &s.peer;
    let peer_requests: f64 = peer.per_round.iter().map(|(_, n)| n).sum();
    println!(
        "{:<52} {:>6} {:>10.3} {:>10.3} {:>10.1} {:>9.1}  {:.0} per {:.0} s round",
        format!("{} (defaults)", peer.peer),
        peer.lateness_watch.samples.len(),
        peer.lateness_watch.percentile(50.0),
        peer.lateness_watch.percentile(99.0),
        peer.rss_mib,
        peer.cpu_seconds_total,
        peer_requests,
        peer.round_seconds
    );
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10} {:>9}  53 list/discovery per 30 s loop; repeated DELETEs",
        "kube-janitor (reference figures, not installable)", "1000", "15", "24", "51", "-"
    );
    println!(
        "{:<52} {:>6} {:>10} {:>10} {:>10} {:>9}  one sweep per 5 min",
        "SPEC.md's 5-minute sweep (arithmetic)", "-", "150", "297", "-", "-"
    );
    peer.print();
}

/// User + system CPU seconds of a process so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("proc stat");
    // Fields after the command name (which may contain spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/pid/stat: 12 and 13 after ")".
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// `CLK_TCK`, asked of `getconf` once: the claims part reads four processes' CPU times
/// around every round.
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}
