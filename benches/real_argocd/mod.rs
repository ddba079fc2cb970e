//! The part of `make bench` that goes through the real Argo CD — application controller,
//! repo-server and Redis, syncing from a Git repository this client commits to — with
//! kwok making the pods Ready: how long each step from an environment's creation to its
//! `Ready` takes, how much of it is TestMesh's own, and what one whole lifecycle writes,
//! the wait for Argo CD's prune included.
//!
//! Each environment declares the documentation's `user-service` and `product-service`;
//! its Application (automated sync, the resources finalizer) deploys them from `review/`
//! into the namespace TestMesh creates. The Application is created as soon as this
//! client sees that namespace — the documentation's order, so Argo CD never syncs into a
//! namespace that does not exist yet. Every step is timed by this client's own watches:
//!
//! - environment created (the request sent) → its namespace seen;
//! - namespace seen → Application seen Synced (at the commit, its sync operation
//!   `Succeeded`), creating the Application included;
//! - Synced → Healthy (and still Synced at the commit: what TestMesh waits for);
//! - Healthy → environment Ready: TestMesh's own overhead, which includes waiting for a
//!   ready endpoint behind each declared Service;
//! - created → Ready, the whole;
//! - and, once all are up, `spec.destroy` → destroyed (Argo CD prunes, then the namespace
//!   goes).
//!
//! The objects' own timestamps (`creationTimestamp`, Argo CD's `operationState.finishedAt`
//! and `health.lastTransitionTime`) are whole seconds, too coarse for these steps: they
//! are reported beside, as a check on the watches.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use testmesh::resources::{MANAGED_BY, MANAGED_BY_LABEL, TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::argocd::{self, RealArgoCd};
use testmesh_testenv::git::GitRepository;
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::operator::Operator;
use testmesh_testenv::workloads::{self, REVIEW_PATH};
use testmesh_testenv::{ControlPlane, chart, with_temp_namespace};
use tokio::task::JoinHandle;

use super::{
    Environments, Figure, LifecycleObjects, LifecycleWrites, Marks, claim, follow_claims,
    lifecycle_writes, now, scaled, writes_json,
};

/// Environments deployed for the figures, one at a time, before `TESTMESH_BENCH_SCALE`.
const ENVIRONMENTS: usize = 50;
/// How many are destroyed at once.
const DESTROYED_AT_ONCE: usize = 4;
/// The services every environment declares: `review/` of the example deploys them.
const SERVICES: [&str; 2] = ["user-service", "product-service"];
/// A sync and a rollout on a loaded 2-core machine.
const ARGO_TIMEOUT: Duration = Duration::from_secs(180);
/// The environment of the whole lifecycle, and its claim.
const LIFE: &str = "life";
const LIFE_RUN: &str = "life-run";
/// TestMesh's overhead may be this many floor writes at p99.
const OVERHEAD_FLOORS: f64 = 2.0;

/// kwok and the real Argo CD, running; dropping them stops both.
pub struct GitOps {
    kwok: Kwok,
    argocd: RealArgoCd,
}

impl GitOps {
    /// Starts kwok and Argo CD on `control_plane`, blocking until they are ready.
    pub fn start(control_plane: &ControlPlane) -> GitOps {
        let kwok = Kwok::start(control_plane)
            .unwrap_or_else(|e| panic!("start kwok (make gitops-tools): {e}"));
        let argocd = RealArgoCd::start(control_plane)
            .unwrap_or_else(|e| panic!("start Argo CD (make gitops-tools): {e}"));
        GitOps { kwok, argocd }
    }
}

/// What the part measured.
pub struct Report {
    /// Environments in the figures.
    pub environments: usize,
    pub figures: Vec<Figure>,
    /// TestMesh's overhead (Healthy → Ready) at p99, over the floor's p99.
    pub overhead_over_floor: f64,
    /// The operator's writes for the whole lifecycle.
    pub life_writes: LifecycleWrites,
    /// What each status write of the lifecycle changed, as this client's watch saw it.
    pub life_status_changes: Vec<String>,
    pub notes: Vec<String>,
    deployed: Vec<Deployed>,
}

impl Report {
    pub fn to_json(&self) -> Value {
        json!({
            "environments": self.environments,
            "destroyed_at_once": DESTROYED_AT_ONCE,
            "overhead_p99_over_floor_p99": self.overhead_over_floor,
            "lifecycle_writes": writes_json(&self.life_writes),
            "lifecycle_status_changes": self.life_status_changes,
            "per_environment": self.deployed.iter().map(Deployed::to_json).collect::<Vec<_>>(),
        })
    }
}

/// One environment deployed through Argo CD: when this client saw each step, and the
/// objects' own timestamps.
struct Deployed {
    name: String,
    /// When the create request was sent.
    created: Instant,
    namespace_seen: Instant,
    synced_seen: Instant,
    healthy_seen: Instant,
    ready_seen: Instant,
    /// When the last of its Services was first seen with a ready endpoint.
    endpoints_seen: Instant,
    stamps: Stamps,
}

/// Timestamps the objects carry: whole seconds, but for TestMesh's `readyAt`.
struct Stamps {
    environment_created: Option<Timestamp>,
    namespace_created: Option<Timestamp>,
    sync_finished: Option<Timestamp>,
    health_changed: Option<Timestamp>,
    ready_at: Option<Timestamp>,
}

impl Deployed {
    fn to_json(&self) -> Value {
        let since_created = |at: Instant| millis_between(self.created, at);
        let stamp = |t: Option<Timestamp>| t.map(|t| t.to_string());
        json!({
            "name": self.name,
            "seen_ms_after_create": {
                "namespace": since_created(self.namespace_seen),
                "synced": since_created(self.synced_seen),
                "healthy": since_created(self.healthy_seen),
                "endpoints_ready": since_created(self.endpoints_seen),
                "ready": since_created(self.ready_seen),
            },
            "timestamps": {
                "environment_created": stamp(self.stamps.environment_created),
                "namespace_created": stamp(self.stamps.namespace_created),
                "sync_finished_at": stamp(self.stamps.sync_finished),
                "health_last_transition": stamp(self.stamps.health_changed),
                "ready_at": stamp(self.stamps.ready_at),
            },
        })
    }
}

/// `to − from` in milliseconds, negative when `to` came first.
fn millis_between(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1e3
    } else {
        -(from - to).as_secs_f64() * 1e3
    }
}

/// This client's watches on what the part deploys.
struct Watches {
    environments: Environments,
    claims_ready: Marks,
    /// Namespaces TestMesh manages, when first seen.
    namespaces: Marks,
    /// Applications, when first seen Synced at the commit with the sync `Succeeded`.
    synced: Marks,
    /// Applications, when first seen Healthy as well.
    healthy: Marks,
    /// `namespace/service`, when first seen with a ready endpoint.
    endpoints: Marks,
    /// Every status of the lifecycle's environment, in order.
    life_statuses: Arc<Mutex<Vec<Value>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Watches {
    fn start(
        client: &Client,
        environments: &Api<TestEnvironment>,
        claims: &Api<TestEnvironmentClaim>,
        apps: &Api<DynamicObject>,
        revision: &str,
    ) -> Watches {
        let seen = Environments::default();
        let mut tasks = vec![seen.follow(environments.clone())];
        let (claims_ready, task) = follow_claims(claims.clone());
        tasks.push(task);
        let namespaces = Marks::default();
        tasks.push(tokio::spawn(mark_namespaces(
            Api::all(client.clone()),
            namespaces.clone(),
        )));
        let (synced, healthy) = (Marks::default(), Marks::default());
        tasks.push(tokio::spawn(mark_applications(
            apps.clone(),
            revision.to_owned(),
            synced.clone(),
            healthy.clone(),
        )));
        let endpoints = Marks::default();
        tasks.push(tokio::spawn(mark_endpoints(
            Api::all(client.clone()),
            endpoints.clone(),
        )));
        let life_statuses = Arc::default();
        tasks.push(tokio::spawn(record_statuses(
            environments.clone(),
            LIFE,
            Arc::clone(&life_statuses),
        )));
        Watches {
            environments: seen,
            claims_ready,
            namespaces,
            synced,
            healthy,
            endpoints,
            life_statuses,
            tasks,
        }
    }

    fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Every distinct status of environment `name`, in order. A watch delivers each write.
async fn record_statuses(
    environments: Api<TestEnvironment>,
    name: &'static str,
    statuses: Arc<Mutex<Vec<Value>>>,
) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut events = watcher(environments, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(environment) = event else { continue };
        let status = serde_json::to_value(&environment.status).expect("status");
        let mut statuses = statuses.lock().expect("lock");
        if statuses.last() != Some(&status) {
            statuses.push(status);
        }
    }
}

/// What one status write changed: the phase, each condition whose status, reason or
/// message changed, and the names of the other fields that did.
fn status_change(before: &Value, after: &Value) -> String {
    let empty = serde_json::Map::new();
    let fields = |status: &Value| status.as_object().unwrap_or(&empty).clone();
    let (before, after) = (fields(before), fields(after));
    let mut names: Vec<&String> = before.keys().chain(after.keys()).collect();
    names.sort();
    names.dedup();
    let mut changed = Vec::new();
    for name in names {
        let (old, new) = (&before.get(name), &after.get(name));
        if old == new {
            continue;
        }
        match name.as_str() {
            "phase" => changed.push(format!(
                "phase {}",
                new.and_then(Value::as_str).unwrap_or("-")
            )),
            "conditions" => changed.extend(condition_changes(*old, *new)),
            _ => changed.push(name.clone()),
        }
    }
    changed.join(", ")
}

fn condition_changes(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let conditions =
        |value: Option<&Value>| value.and_then(Value::as_array).cloned().unwrap_or_default();
    let before = conditions(before);
    let said = |c: &Value| {
        (
            c["status"].clone(),
            c["reason"].clone(),
            c["message"].clone(),
        )
    };
    conditions(after)
        .iter()
        .filter_map(|condition| {
            let old = before.iter().find(|c| c["type"] == condition["type"]);
            let (status, reason, _) = said(condition);
            let kind = condition["type"].as_str().unwrap_or("?");
            match old.map(said) {
                Some(was) if was == said(condition) => None,
                Some((was_status, was_reason, _))
                    if was_status == status && was_reason == reason =>
                {
                    Some(format!("{kind} message"))
                }
                _ => Some(format!(
                    "{kind}={} {}",
                    status.as_str().unwrap_or("?"),
                    reason.as_str().unwrap_or("")
                )),
            }
        })
        .collect()
}

async fn mark_namespaces(namespaces: Api<Namespace>, marks: Marks) {
    let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
    let mut events = watcher(namespaces, config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        if let Ok(namespace) = event {
            marks.mark(&namespace.name_any(), Instant::now());
        }
    }
}

async fn mark_applications(
    apps: Api<DynamicObject>,
    revision: String,
    synced: Marks,
    healthy: Marks,
) {
    let mut events = watcher(apps, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(app) = event else { continue };
        let at = Instant::now();
        if argocd::sync_status(&app) == Some("Synced")
            && argocd::synced_revision(&app) == Some(revision.as_str())
            && argocd::operation_phase(&app) == Some("Succeeded")
        {
            synced.mark(&app.name_any(), at);
        }
        if argocd::is_synced_and_healthy_at(&app, &revision) {
            healthy.mark(&app.name_any(), at);
        }
    }
}

async fn mark_endpoints(slices: Api<EndpointSlice>, marks: Marks) {
    let mut events = watcher(slices, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let Ok(slice) = event else { continue };
        let at = Instant::now();
        let service = slice.labels().get("kubernetes.io/service-name").cloned();
        // An endpoint whose readiness is not stated counts as ready, as Kubernetes says.
        let ready = slice.endpoints.iter().flatten().any(|endpoint| {
            endpoint
                .conditions
                .as_ref()
                .and_then(|c| c.ready)
                .unwrap_or(true)
        });
        if let (Some(service), Some(namespace), true) = (service, slice.namespace(), ready) {
            marks.mark(&format!("{namespace}/{service}"), at);
        }
    }
}

/// The part's workspace, its operator (Applications in Argo CD's namespace) and the
/// repository its Applications sync from.
struct Part {
    client: Client,
    ws: String,
    environments: Api<TestEnvironment>,
    claims: Api<TestEnvironmentClaim>,
    apps: Api<DynamicObject>,
    repo_url: String,
    watches: Watches,
}

impl Part {
    /// The Application deploying environment `name`, and the namespace it deploys to.
    fn target(&self, name: &str) -> String {
        format!("{}-{name}", self.ws)
    }

    /// Creates environment `name`, then its Application once its namespace is seen, and
    /// waits until it is Ready.
    async fn deploy(&self, name: &str, ttl_minutes: u32) -> Deployed {
        let target = self.target(name);
        let created = Instant::now();
        let environment = self
            .environments
            .create(
                &PostParams::default(),
                &environment(name, &target, ttl_minutes),
            )
            .await
            .expect("create environment");
        let namespace_seen = self.watches.namespaces.wait(&target, ARGO_TIMEOUT).await;
        let app: DynamicObject = serde_json::from_value(argocd::with_resources_finalizer(
            argocd::git_application(&target, &self.repo_url, REVIEW_PATH, &target),
        ))
        .expect("Application");
        self.apps
            .create(&PostParams::default(), &app)
            .await
            .expect("create Application");
        let ready_seen = self
            .watches
            .environments
            .one(name, ARGO_TIMEOUT, |s| s.ready.is_some())
            .await
            .ready
            .expect("ready");
        let synced_seen = self.watches.synced.wait(&target, ARGO_TIMEOUT).await;
        let healthy_seen = self.watches.healthy.wait(&target, ARGO_TIMEOUT).await;
        let mut endpoints_seen = namespace_seen;
        for service in SERVICES {
            let key = format!("{target}/{service}");
            endpoints_seen =
                endpoints_seen.max(self.watches.endpoints.wait(&key, ARGO_TIMEOUT).await);
        }
        Deployed {
            name: name.to_owned(),
            created,
            namespace_seen,
            synced_seen,
            healthy_seen,
            ready_seen,
            endpoints_seen,
            stamps: self.stamps(&environment, name, &target).await,
        }
    }

    async fn stamps(&self, created: &TestEnvironment, name: &str, target: &str) -> Stamps {
        let environment = self.environments.get(name).await.expect("environment");
        let namespace = Api::<Namespace>::all(self.client.clone())
            .get(target)
            .await
            .expect("namespace");
        let app = self.apps.get(target).await.expect("Application");
        let time = |value: &Value| value.as_str().and_then(|s| s.parse::<Timestamp>().ok());
        Stamps {
            environment_created: created.metadata.creation_timestamp.as_ref().map(|t| t.0),
            namespace_created: namespace.metadata.creation_timestamp.map(|t| t.0),
            sync_finished: time(&app.data["status"]["operationState"]["finishedAt"]),
            health_changed: time(&app.data["status"]["health"]["lastTransitionTime"]),
            ready_at: environment.status.and_then(|s| s.ready_at).map(|t| t.0),
        }
    }

    /// Sets `spec.destroy` on environment `name` and waits until it is destroyed; the
    /// milliseconds that took.
    async fn destroy(&self, name: &str) -> f64 {
        let started = Instant::now();
        let patch = json!({"spec": {"destroy": true}});
        self.environments
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("spec.destroy");
        let destroyed = self
            .watches
            .environments
            .one(name, ARGO_TIMEOUT, |s| s.destroyed.is_some())
            .await
            .destroyed
            .expect("destroyed");
        millis_between(started, destroyed)
    }
}

/// An environment deployed by the Application `target` into the namespace `target`,
/// declaring the example's services.
fn environment(name: &str, target: &str, ttl_minutes: u32) -> TestEnvironment {
    let services: Vec<Value> = SERVICES
        .iter()
        .map(|service| json!({"name": service, "image": format!("myrepo/{service}:pr-123")}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironment",
        "metadata": {"name": name},
        "spec": {"context": name, "provider": "argocd", "providerAppName": target,
                 "namespace": target, "ttlMinutes": ttl_minutes, "services": services}
    }))
    .expect("environment")
}

/// Runs the part beside `floor` (measured with Argo CD and kwok running): one whole
/// lifecycle first, which also warms Argo CD's cluster cache up, then the environments
/// of the figures one at a time; then destroys them, `DESTROYED_AT_ONCE` at a time, and
/// stops kwok and Argo CD.
pub async fn measure(
    control_plane: &ControlPlane,
    client: &Client,
    gitops: GitOps,
    floor: &Figure,
    scale: f64,
) -> Report {
    let mut notes = vec![format!(
        "Argo CD ready in {:.1} s, kwok in {:.1} s",
        gitops.argocd.startup_duration().as_secs_f64(),
        gitops.kwok.startup_duration().as_secs_f64()
    )];
    let workspace = with_temp_namespace(client, "bench-gitops")
        .await
        .expect("workspace");
    let ws = workspace.name().to_owned();
    chart::install_teardown_finalizer_policy(client, &ws).await;
    let repo = GitRepository::temporary("bench").expect("git repository");
    let revision = repo
        .commit(
            "the product documentation's example",
            &workloads::product_example_files(),
        )
        .expect("commit");
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), &ws);
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), &ws);
    let apps = gitops.argocd.applications(client);
    let watches = Watches::start(client, &environments, &claims, &apps, &revision);
    let mut operator = Operator::start(&super::operator_binary(), &ws, argocd::NAMESPACE, &[]);
    let part = Part {
        client: client.clone(),
        ws,
        environments,
        claims,
        apps,
        repo_url: repo.url(),
        watches,
    };

    // One whole lifecycle, for its writes: created, warm, claimed, released, expired
    // (TTL one minute from Ready, while the figures are taken), pruned by Argo CD,
    // destroyed.
    let life_started = now();
    let life = part.deploy(LIFE, 1).await;
    notes.push(format!(
        "the lifecycle's environment, deployed first (Argo CD fills its cluster cache then): \
         created -> Ready in {:.0} ms, not in the figures",
        millis_between(life.created, life.ready_seen)
    ));
    part.claims
        .create(&PostParams::default(), &claim(LIFE_RUN, LIFE))
        .await
        .expect("claim");
    part.watches.claims_ready.wait(LIFE_RUN, ARGO_TIMEOUT).await;
    part.claims
        .delete(LIFE_RUN, &DeleteParams::default())
        .await
        .expect("release");
    part.watches
        .environments
        .one(LIFE, ARGO_TIMEOUT, |s| s.claimed_by.is_empty())
        .await;

    // One at a time: each step is then the controllers' own, not a queue's.
    let count = scaled(scale, ENVIRONMENTS);
    let deploying = Instant::now();
    let mut deployed = Vec::with_capacity(count);
    for i in 0..count {
        deployed.push(part.deploy(&format!("env-{i:03}"), 60).await);
    }
    notes.push(format!(
        "{count} environments deployed through Argo CD one at a time in {:.0} s",
        deploying.elapsed().as_secs_f64()
    ));

    let mut destroy = Figure::unbarred("Argo CD: spec.destroy -> destroyed (pruned)");
    let part_ref = &part;
    destroy.samples = futures::stream::iter(&deployed)
        .map(|d| part_ref.destroy(&d.name))
        .buffer_unordered(DESTROYED_AT_ONCE)
        .collect()
        .await;
    notes.push(format!(
        "destroyed {DESTROYED_AT_ONCE} at a time: Argo CD prunes, then the namespace goes"
    ));
    part.watches
        .environments
        .one(LIFE, ARGO_TIMEOUT, |s| s.destroyed.is_some())
        .await;
    let target = part.target(LIFE);
    let life_objects = LifecycleObjects {
        environment: LIFE,
        claim: LIFE_RUN,
        application: &target,
        namespace: &target,
    };
    // The Event of the last phase change follows its status write: read until a second
    // passes without a new write.
    let mut life_writes = lifecycle_writes(control_plane, life_started, &life_objects);
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = lifecycle_writes(control_plane, life_started, &life_objects);
        if again == life_writes {
            break;
        }
        life_writes = again;
    }
    let life_status_changes = {
        let statuses = part.watches.life_statuses.lock().expect("lock");
        statuses
            .windows(2)
            .map(|pair| status_change(&pair[0], &pair[1]))
            .collect()
    };
    operator.kill();
    part.watches.stop();
    drop(gitops);

    let floor_p99 = floor.percentile(99.0);
    let step =
        |name: &'static str, from: fn(&Deployed) -> Instant, to: fn(&Deployed) -> Instant| {
            let mut figure = Figure::unbarred(name);
            figure.samples = between(&deployed, from, to);
            figure
        };
    let mut overhead = Figure::new(
        "Argo CD: Healthy -> env Ready (TestMesh)",
        format!(
            "p99 <= {OVERHEAD_FLOORS} x floor ({:.1} ms)",
            OVERHEAD_FLOORS * floor_p99
        ),
        vec![(99.0, OVERHEAD_FLOORS * floor_p99)],
    );
    overhead.samples = between(&deployed, |d| d.healthy_seen, |d| d.ready_seen);
    let overhead_over_floor = overhead.percentile(99.0) / floor_p99;
    notes.extend(endpoint_notes(&deployed));
    notes.push(timestamp_note(&deployed));
    let figures = vec![
        step(
            "Argo CD: env created -> namespace seen",
            |d| d.created,
            |d| d.namespace_seen,
        ),
        step(
            "Argo CD: namespace -> app Synced (seen)",
            |d| d.namespace_seen,
            |d| d.synced_seen,
        ),
        step(
            "Argo CD: app Synced -> Healthy (seen)",
            |d| d.synced_seen,
            |d| d.healthy_seen,
        ),
        overhead,
        step(
            "Argo CD: env created -> Ready (whole)",
            |d| d.created,
            |d| d.ready_seen,
        ),
        destroy,
    ];
    Report {
        environments: count,
        figures,
        overhead_over_floor,
        life_writes,
        life_status_changes,
        notes,
        deployed,
    }
}

/// Milliseconds from `from` to `to` of each environment.
fn between(
    deployed: &[Deployed],
    from: fn(&Deployed) -> Instant,
    to: fn(&Deployed) -> Instant,
) -> Vec<f64> {
    deployed
        .iter()
        .map(|d| millis_between(from(d), to(d)))
        .collect()
}

/// When the Services' endpoints turned ready, next to Argo CD's Healthy; and whether
/// this client's watch saw an environment Ready before its Application Healthy (separate
/// watches deliver in their own time).
fn endpoint_notes(deployed: &[Deployed]) -> Vec<String> {
    let after: Vec<f64> = deployed
        .iter()
        .map(|d| millis_between(d.healthy_seen, d.endpoints_seen))
        .filter(|ms| *ms > 0.0)
        .collect();
    let mut notes = vec![if after.is_empty() {
        format!(
            "ready endpoints behind both Services were seen before Argo CD's Healthy in all {}",
            deployed.len()
        )
    } else {
        format!(
            "ready endpoints behind both Services seen after Argo CD's Healthy in {} of {} \
             (by up to {:.1} ms), before it in the others",
            after.len(),
            deployed.len(),
            after.iter().copied().fold(0.0, f64::max)
        )
    }];
    let early = deployed
        .iter()
        .filter(|d| d.ready_seen < d.healthy_seen)
        .count();
    if early > 0 {
        notes.push(format!(
            "{early} of {} environments were seen Ready before their Application Healthy \
             (separate watches): negative overhead samples",
            deployed.len()
        ));
    }
    notes
}

/// The steps from the objects' own timestamps, in seconds after the environment's
/// `creationTimestamp` (medians; all but `readyAt` are whole seconds).
fn timestamp_note(deployed: &[Deployed]) -> String {
    let median = |at: fn(&Stamps) -> Option<Timestamp>| {
        let mut seconds: Vec<f64> = deployed
            .iter()
            .filter_map(|d| {
                let created = d.stamps.environment_created?;
                Some(at(&d.stamps)?.duration_since(created).as_secs_f64())
            })
            .collect();
        seconds.sort_by(f64::total_cmp);
        seconds
            .get(seconds.len().saturating_sub(1) / 2)
            .copied()
            .unwrap_or(f64::NAN)
    };
    format!(
        "objects' own timestamps, median s after the environment's creationTimestamp: \
         namespace created {:.0}, Argo CD's sync finishedAt {:.0}, health.lastTransitionTime \
         {:.0} (whole seconds), TestMesh's readyAt {:.2}",
        median(|s| s.namespace_created),
        median(|s| s.sync_finished),
        median(|s| s.health_changed),
        median(|s| s.ready_at),
    )
}
