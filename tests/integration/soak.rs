//! A soak: many lifecycles at once under faults at random moments, with invariants checked
//! from the outside — from the test's own watches and the API server's audit log.
//!
//! The soak starts a control plane of its own, so it can stop its API server and freeze
//! its etcd without disturbing other tests. Two replicas behind one Lease, each reaching
//! the API server through a TCP proxy the test cuts. The workload: environments created
//! directly (short TTLs, left to expire), destroyed explicitly or deleted with kubectl,
//! and claims — several per context at once — served one after another; hostile
//! neighbours (look-alike namespaces and Applications) that must survive. The GitOps side
//! is the real Argo CD: one ApplicationSet with TestMesh as its generator mints every
//! environment's Application. Faults: kill -9 of the leader and of the standby, SIGTERM of
//! the leader, the leader's and the standby's connections cut or stalled (some longer
//! than the lease), the API server killed and started again (etcd keeps the data), etcd
//! frozen (SIGSTOP) for longer than the lease, an Application deleted, an Application
//! Degraded or Progressing for a while. The control plane's own faults come once the
//! GitOps faults are done ([`Fault::on_control_plane`]).
//!
//! Invariants: never two runs hold one environment (its `claimedBy`, and the claims'
//! own phases in watch order); each context's claims are served in creation order; a
//! claim is served or fails with a reason within the provisioning timeout plus the
//! faults' slack, not counting its wait for a teardown that waits on another controller
//! ([`claim_run`]); no environment stays provisioning past that bound ([`overdue`]); every
//! DELETE the operator makes names a namespace carrying its ownership proof
//! ([`foreign_of`]), an Application of one of the
//! workspace's environments, or its routing ConfigMap; after the faults stop, every
//! environment is destroyed (or gone) with its namespace, none is stuck, no namespace
//! with TestMesh's label is left but the look-alikes, and the hostile neighbours are
//! untouched; and no replica wrote anything while it did not hold the
//! Lease (the audit log: each write by a replica's User-Agent against that replica's
//! last successful Lease write before it, which holds for one lease duration unless the
//! other replica took the Lease since).
//!
//! `make test` runs a short soak (`SOAK_LIFECYCLES`, default 16). `make soak` runs the
//! long one; `SOAK_SEED=` replays a schedule (the seed is printed).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use testmesh::lifecycle::conditions::{self, reason};
use testmesh::lifecycle::{ClaimPhase, Phase};
use testmesh::resources::{
    ENVIRONMENT_ANNOTATION, ENVIRONMENT_UID_ANNOTATION, MANAGED_BY, MANAGED_BY_LABEL,
    TestEnvironment, TestEnvironmentClaim, TestEnvironmentClaimStatus,
};
use testmesh_testenv::argocd::{self, RealArgoCd};
use testmesh_testenv::git::GitRepository;
use testmesh_testenv::kwok::Kwok;
use testmesh_testenv::operator::Operator;
use testmesh_testenv::proxy::{self, Proxy};
use testmesh_testenv::workloads::Workload;
use testmesh_testenv::{AuditedRequest, ControlPlane, with_temp_namespace};

use crate::support::{from_json, install_testmesh_crds};

const LEASE_SECONDS: u64 = 6;
/// The Lease the replicas campaign for.
const LEASE_NAME: &str = "testmesh-operator";
/// The ConfigMap of TestMesh's generator (the operator's default name).
const GENERATOR: &str = "testmesh-generator";
/// The Git paths an environment's Application syncs: a workload that turns Ready, one
/// whose rollout never does (Progressing), and one whose rollout passes its progress
/// deadline (Degraded).
const HEALTHY_PATH: &str = "soak";
const PROGRESSING_PATH: &str = "soak-progressing";
const DEGRADED_PATH: &str = "soak-degraded";
/// Contexts the claims share.
const CONTEXTS: usize = 3;
/// GitOps faults run this many at a time, each on an environment no other is on; as many
/// long-lived environments stay serving throughout, so there is always one to fault.
const GITOPS_LANES: usize = 3;

/// A small, seeded generator (splitmix64): the schedule replays from its seed.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A replica, reached through its own proxy.
struct Replica {
    identity: String,
    operator: tokio::sync::Mutex<Operator>,
    proxy: Proxy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillLeader,
    KillStandby,
    TerminateLeader,
    CutLeader,
    CutStandby,
    ApiServerRestart,
    EtcdPaused,
    AppDeleted,
    AppDegraded,
    AppProgressing,
}

const FAULTS: [Fault; 10] = [
    Fault::KillLeader,
    Fault::KillStandby,
    Fault::TerminateLeader,
    Fault::CutLeader,
    Fault::CutStandby,
    Fault::ApiServerRestart,
    Fault::EtcdPaused,
    Fault::AppDeleted,
    Fault::AppDegraded,
    Fault::AppProgressing,
];

impl Fault {
    /// Whether the fault is on the GitOps side: its progress is its environment's
    /// recovery, not a new environment picked up.
    fn on_gitops_side(self) -> bool {
        matches!(
            self,
            Fault::AppDeleted | Fault::AppDegraded | Fault::AppProgressing
        )
    }

    /// Whether the fault is the control plane's own (the API server or etcd). These wait
    /// until the GitOps lanes have ended: after an API server restart the real Argo CD's
    /// informers reconnect with client-go's reflector backoff (0.8 s doubling to 30 s,
    /// jittered up to twice that, reset only after two quiet minutes), and a GitOps fault
    /// timed then times that backoff, not its own recovery.
    fn on_control_plane(self) -> bool {
        matches!(self, Fault::ApiServerRestart | Fault::EtcdPaused)
    }

    /// What its time to progress counts from. Nothing progresses while the API server is
    /// down, etcd frozen or the Application pointed at a rollout that cannot serve, so
    /// those count from the restore; every other from the injection.
    fn clock_from(self) -> &'static str {
        match self {
            Fault::ApiServerRestart | Fault::EtcdPaused => "the restore",
            Fault::AppDegraded | Fault::AppProgressing => {
                "the restore, to its environment serving again"
            }
            Fault::AppDeleted => "the injection, to its environment serving again",
            _ => "the injection",
        }
    }
}

/// An injected fault: what takes it back, and when the clock to progress starts.
struct Injected {
    restoring: tokio::task::JoinHandle<()>,
    clock_from: Instant,
    /// The environment whose Application the fault hit (GitOps faults).
    environment: Option<String>,
    /// A cut that left the connections open and silent instead of closing them.
    silent: bool,
}

/// One injected fault, as the per-fault trace (`soak-faults.tsv`) records it.
struct Record {
    stream: String,
    fault: Fault,
    /// When its stream began it (the pause before it included), since the soak started.
    began: Duration,
    progress: Duration,
    /// How long its stream spent on it: the pause before it, the injection, the wait for
    /// progress and the wait for what takes it back.
    took: Duration,
}

/// What one stream of faults injected, and the longest time to progress of each kind.
#[derive(Default)]
struct Injections {
    records: Vec<Record>,
    faulted: BTreeMap<Fault, usize>,
    /// Of the cuts, how many were silent.
    silent: BTreeMap<Fault, usize>,
    recovery: BTreeMap<Fault, Duration>,
    /// Of a GitOps fault's time to progress, the longest part after Argo CD itself had
    /// reported the Application Synced and Healthy again: TestMesh's own share.
    after_argo_cd: BTreeMap<Fault, Duration>,
}

impl Injections {
    /// The last fault has been taken back at `now` (since the soak started): how long it
    /// held its stream, unless that is known already.
    fn taken_back(&mut self, now: Duration) {
        if let Some(last) = self.records.last_mut()
            && last.took.is_zero()
        {
            last.took = now - last.began;
        }
    }

    /// Adds what another stream injected.
    fn absorb(&mut self, other: Injections) {
        self.records.extend(other.records);
        for (fault, count) in other.faulted {
            *self.faulted.entry(fault).or_default() += count;
        }
        for (fault, count) in other.silent {
            *self.silent.entry(fault).or_default() += count;
        }
        for (longest, theirs) in [
            (&mut self.recovery, other.recovery),
            (&mut self.after_argo_cd, other.after_argo_cd),
        ] {
            for (fault, time) in theirs {
                let longest = longest.entry(fault).or_default();
                *longest = (*longest).max(time);
            }
        }
    }
}

/// Injects `schedule`, one fault at a time, and measures each one's time to progress:
/// for a cluster fault, until a new environment is picked up; for a GitOps fault, until
/// its environment serves again with its Application Healthy (or has ended). The
/// control plane's faults are taken only once the GitOps lanes have ended
/// ([`Fault::on_control_plane`]); the replicas' own are taken in order meanwhile.
async fn fault_stream(
    stream: &str,
    mut schedule: Vec<Fault>,
    target: &Target<'_>,
    rng: &mut Seeded,
) -> Injections {
    let mut injections = Injections::default();
    let mut taking_back = None;
    let mut n = 0;
    while !schedule.is_empty() {
        if let Some(previous) = taking_back.take() {
            let _ = tokio::time::timeout(Duration::from_secs(30), previous).await;
        }
        // Its stream was done with the last fault once that fault was taken back (not
        // while the stream then waits for the GitOps lanes).
        injections.taken_back(target.started.elapsed());
        let gitops_running = target.gitops_lanes_running.load(Ordering::SeqCst) > 0;
        let Some(next) = schedule
            .iter()
            .position(|fault| !(gitops_running && fault.on_control_plane()))
        else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let fault = schedule.remove(next);
        n += 1;
        let began = target.started.elapsed();
        tokio::time::sleep(rng.millis(100, 500)).await;
        // Nothing to inject it into yet (no leader, no environment serving): a moment later.
        let mut injected = None;
        for _ in 0..60 {
            injected = inject(fault, target, rng).await;
            if injected.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let Some(injected) = injected else {
            continue;
        };
        taking_back = Some(injected.restoring);
        *injections.faulted.entry(fault).or_default() += 1;
        if injected.silent {
            *injections.silent.entry(fault).or_default() += 1;
        }
        let progress = match &injected.environment {
            Some(environment) => {
                let (serving, healthy) =
                    serving_again(target, environment, injected.clock_from).await;
                busy(target).remove(environment);
                if let Some(healthy) = healthy {
                    let longest = injections.after_argo_cd.entry(fault).or_default();
                    *longest = (*longest).max(serving.saturating_sub(healthy));
                }
                serving
            }
            None => {
                let probe = format!("probe-{stream}-{n}");
                probe_progress(
                    target.environments,
                    target.workspace,
                    &probe,
                    injected.clock_from,
                )
                .await
            }
        };
        let longest = injections.recovery.entry(fault).or_default();
        *longest = (*longest).max(progress);
        injections.records.push(Record {
            stream: stream.to_owned(),
            fault,
            began,
            progress,
            took: Duration::ZERO,
        });
    }
    if let Some(previous) = taking_back.take() {
        let _ = tokio::time::timeout(Duration::from_secs(30), previous).await;
    }
    injections.taken_back(target.started.elapsed());
    injections
}

/// How long after `since` the environment `name` served again with its Application
/// Healthy, or ended (at most a minute); and when Argo CD had reported the Application
/// Synced and Healthy by then, how long after `since` it was first seen so.
async fn serving_again(
    target: &Target<'_>,
    name: &str,
    since: Instant,
) -> (Duration, Option<Duration>) {
    let limit = Duration::from_secs(60);
    let mut app_healthy = None;
    // Give the fault a moment to show before looking for its end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    loop {
        let found = target.environments.get_opt(name).await.ok().flatten();
        if app_healthy.is_none() {
            let app = match &found {
                Some(environment) => target
                    .apps
                    .get_opt(&environment.spec.template.provider_app_name)
                    .await
                    .ok()
                    .flatten(),
                None => None,
            };
            let status = app
                .map(|app| app.data["status"].clone())
                .unwrap_or_default();
            if status["health"]["status"] == "Healthy" && status["sync"]["status"] == "Synced" {
                app_healthy = Some(since.elapsed());
            }
        }
        let status = found.and_then(|e| e.status).unwrap_or_default();
        let phase = status.phase.unwrap_or(Phase::Cold);
        let healthy = status.provider.as_ref().and_then(|p| p.health.as_deref()) == Some("Healthy");
        let back =
            (phase.is_serving() && healthy) || phase.is_tearing_down() || phase == Phase::Destroyed;
        if back || since.elapsed() >= limit {
            return (since.elapsed().min(limit), app_healthy);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the watches saw.
#[derive(Default)]
struct Seen {
    violations: Vec<String>,
    /// Each environment's UIDs (a name is used once, but a watch sees what it sees).
    environment_uids: BTreeMap<String, BTreeSet<String>>,
}

#[tokio::test]
async fn a_soak_of_lifecycles_under_faults_keeps_every_invariant() {
    let seed = std::env::var("SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            u64::from(std::process::id()) ^ Timestamp::now().as_millisecond() as u64
        });
    let lifecycles = setting("SOAK_LIFECYCLES", 16) as usize;
    let faults_per_kind = setting("SOAK_FAULTS_PER_KIND", 2) as usize;
    eprintln!(
        "soak: SOAK_SEED={seed} SOAK_LIFECYCLES={lifecycles} SOAK_FAULTS_PER_KIND={faults_per_kind}"
    );
    let mut rng = Seeded(seed);

    let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .expect("start the control plane")
        .expect("the soak's own control plane");
    let control_plane = &control_plane;
    let client = control_plane.admin_client().await.expect("admin client");
    install_testmesh_crds(&client).await;
    // The GitOps side is real: kwok as the nodes, Argo CD with its ApplicationSet
    // controller, syncing from a Git repository of the soak's own. (Blocking start-ups:
    // nothing else runs yet.)
    let _kwok = Kwok::start(control_plane).expect("kwok");
    let argo_cd = RealArgoCd::start(control_plane).expect("Argo CD");
    let apps = argo_cd.applications(&client);
    let repo = GitRepository::create(&GitRepository::temporary_dir(control_plane), "soak")
        .expect("Git repository");
    repo.commit("the soak's workloads", &workload_files())
        .expect("commit");
    let ws = with_temp_namespace(&client, "soak")
        .await
        .expect("workspace namespace");
    let workspace_name = ws.name().to_owned();
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), &workspace_name);
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), &workspace_name);

    // Hostile neighbours: look-alike namespaces (TestMesh's label, another UID) with
    // Applications no environment names deploying into them.
    let hostile: Vec<String> = (0..2).map(|i| format!("{workspace_name}-h{i}")).collect();
    for name in &hostile {
        let namespace: Namespace = from_json(json!({"metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/managed-by": "testmesh"},
            "annotations": {"testmesh.io/environment-uid": "not-yours"},
        }}));
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("hostile namespace");
        let app = argocd::git_application(name, &repo.url(), HEALTHY_PATH, name);
        apps.create(&PostParams::default(), &from_json(app))
            .await
            .expect("hostile Application");
    }

    let mut replicas = Vec::new();
    for identity in ["soak-a", "soak-b"] {
        let started = replica(control_plane, &workspace_name, identity).await;
        replicas.push(Arc::new(started));
    }
    // TestMesh as the ApplicationSet's generator, reached as a Service would reach it:
    // at whichever replica answers.
    let api_addresses = {
        let mut addresses = Vec::new();
        for replica in &replicas {
            addresses.push(replica.operator.lock().await.api);
        }
        addresses
    };
    let generator = Proxy::start_to_any(api_addresses)
        .await
        .expect("the generator's address");
    generator_for(&client, control_plane, &workspace_name, generator.address).await;
    let application_sets: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        argocd::NAMESPACE,
        &application_set_resource(),
    );
    application_sets
        .create(
            &PostParams::default(),
            &from_json(application_set(&workspace_name, &repo.url())),
        )
        .await
        .expect("ApplicationSet");

    let seen = Arc::new(Mutex::new(Seen::default()));
    let watching = tokio::spawn(watch_invariants(
        environments.clone(),
        claims.clone(),
        seen.clone(),
    ));

    // The workload, started over the first part of the run.
    let started = Instant::now();
    // Spread over about as long as the faults take.
    let cluster_kinds: Vec<Fault> = FAULTS.into_iter().filter(|f| !f.on_gitops_side()).collect();
    let gitops_kinds: Vec<Fault> = FAULTS.into_iter().filter(|f| f.on_gitops_side()).collect();
    let window = (cluster_kinds.len() * faults_per_kind) as u64 * 3_000;
    let mut workload = Vec::new();
    for i in 0..lifecycles {
        let delay = rng.millis(0, window.max(20_000));
        let kind = rng.below(4);
        let environments = environments.clone();
        let claims = claims.clone();
        let ws = workspace_name.clone();
        workload.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            match kind {
                0 | 1 => return Some(claim_run(&claims, &environments, &ws, i).await),
                2 => direct(&environments, &ws, i, End::Destroy).await,
                _ => direct(&environments, &ws, i, End::Delete).await,
            }
            None
        }));
    }
    // Every environment left to expire by its TTL, too.
    for i in 0..CONTEXTS {
        direct(&environments, &workspace_name, 1000 + i, End::Expire).await;
    }
    // Environments that serve throughout, so a GitOps fault always finds one; destroyed
    // once the faults end.
    for lane in 0..GITOPS_LANES {
        create_environment(
            &environments,
            &workspace_name,
            &format!("steady-{lane}"),
            120,
        )
        .await;
    }

    // Faults at random moments, each kind `faults_per_kind` times, in streams side by
    // side: the cluster's (replicas, connections, API server, etcd), one at a time so the
    // time to progress is the fault's own, and the GitOps side's, `GITOPS_LANES` at a time
    // on different environments, whose recovery is the faulted environment's own. The
    // cluster stream keeps the API server's and etcd's faults until the GitOps lanes are
    // done.
    let leases: Api<Lease> = Api::namespaced(client.clone(), &workspace_name);
    // As the kubelet would: a replica that exited by itself (it does when it loses the
    // Lease) is started again.
    let supervising = tokio::spawn(supervise(replicas.clone()));
    let gitops_busy = Mutex::default();
    let gitops_lanes_running = AtomicUsize::new(GITOPS_LANES);
    let target = Target {
        started,
        gitops_lanes_running: &gitops_lanes_running,
        control_plane,
        replicas: &replicas,
        leases: &leases,
        apps: &apps,
        environments: &environments,
        workspace: &workspace_name,
        gitops_busy: &gitops_busy,
    };
    let schedule = |kinds: &[Fault], rng: &mut Seeded| {
        let mut schedule: Vec<Fault> = kinds
            .iter()
            .flat_map(|fault| std::iter::repeat_n(*fault, faults_per_kind))
            .collect();
        for i in (1..schedule.len()).rev() {
            schedule.swap(i, rng.below(i as u64 + 1) as usize);
        }
        schedule
    };
    let mut gitops_rng = Seeded(rng.next());
    let cluster_faults = schedule(&cluster_kinds, &mut rng);
    let gitops_faults = schedule(&gitops_kinds, &mut gitops_rng);
    let mut lanes: Vec<(Vec<Fault>, Seeded)> = (0..GITOPS_LANES)
        .map(|_| (Vec::new(), Seeded(gitops_rng.next())))
        .collect();
    for (n, fault) in gitops_faults.into_iter().enumerate() {
        lanes[n % GITOPS_LANES].0.push(fault);
    }
    let gitops_streams =
        futures::future::join_all(lanes.iter_mut().enumerate().map(|(lane, (faults, rng))| {
            let target = &target;
            async move {
                let injections = fault_stream(
                    &format!("gitops-{lane}"),
                    std::mem::take(faults),
                    target,
                    rng,
                )
                .await;
                target.gitops_lanes_running.fetch_sub(1, Ordering::SeqCst);
                injections
            }
        }));
    let (mut injections, gitops) = tokio::join!(
        fault_stream("cluster", cluster_faults, &target, &mut rng),
        gitops_streams
    );
    for lane in gitops {
        injections.absorb(lane);
    }
    let Injections {
        records,
        faulted,
        silent,
        recovery,
        after_argo_cd,
    } = injections;
    for lane in 0..GITOPS_LANES {
        destroy(&environments, &format!("steady-{lane}")).await;
    }
    let last_fault = Instant::now();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut misended = Vec::new();
    let mut waits = Vec::new();
    for run in workload {
        match run.await.expect("a lifecycle") {
            Some(Outcome::Served) => *outcomes.entry("served".into()).or_default() += 1,
            Some(Outcome::Failed(reason)) => {
                *outcomes.entry(format!("failed: {reason}")).or_default() += 1;
            }
            Some(Outcome::WaitingForTeardown(wait)) => {
                *outcomes
                    .entry("still waiting for another controller's teardown".into())
                    .or_default() += 1;
                waits.push(wait);
            }
            Some(Outcome::Violation(violation)) => misended.push(violation),
            None => {}
        }
    }

    // Left alone: everything converges.
    let converged = converge(
        &environments,
        &client,
        &hostile,
        last_fault,
        Duration::from_secs(180),
    )
    .await;
    let convergence = last_fault.elapsed();
    let converging = converged.clone().unwrap_or_default();
    watching.abort();
    supervising.abort();

    let (mut violations, environment_uids) = {
        let seen = seen.lock().expect("seen");
        (seen.violations.clone(), seen.environment_uids.clone())
    };
    violations.extend(misended);
    violations.extend(converged.err().into_iter());
    let (deletes, foreign) =
        foreign_deletes(control_plane, &workspace_name, &hostile, &environment_uids);
    violations.extend(foreign);
    let identities: Vec<&str> = replicas.iter().map(|r| r.identity.as_str()).collect();
    let (writes, unleased) = writes_without_the_lease(control_plane, &workspace_name, &identities);
    violations.extend(unleased);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    for name in &hostile {
        if !untouched(&namespaces, name).await || !untouched(&apps, name).await {
            violations.push(format!("hostile neighbour {name} was touched"));
        }
    }

    eprintln!(
        "soak: seed {seed}, {lifecycles} lifecycles (+{CONTEXTS} left to expire), {:.0} s; claims: {outcomes:?}",
        started.elapsed().as_secs_f64()
    );
    for wait in &waits {
        eprintln!("gave up on {wait}");
    }
    // Measured and shown beside its bar, not asserted: a loaded machine is no verdict.
    let bar = Duration::from_secs(LEASE_SECONDS + 5);
    eprintln!(
        "| fault | injected | longest until progress | longest after Argo CD said Healthy | counted from | bar {} s |",
        bar.as_secs()
    );
    eprintln!("|---|---|---|---|---|---|");
    for fault in FAULTS {
        let longest = recovery.get(&fault).copied().unwrap_or_default();
        let injected = faulted.get(&fault).copied().unwrap_or_default();
        let injected = match silent.get(&fault) {
            Some(silent) => format!("{injected} ({silent} silent)"),
            None => injected.to_string(),
        };
        let after_argo_cd = match after_argo_cd.get(&fault) {
            Some(healthy) => format!("{:.1} s", healthy.as_secs_f64()),
            None => "–".to_string(),
        };
        eprintln!(
            "| {fault:?} | {injected} | {:.1} s | {after_argo_cd} | {} | {} |",
            longest.as_secs_f64(),
            fault.clock_from(),
            if longest <= bar { "met" } else { "missed" }
        );
    }
    trace_faults(control_plane, &records);
    eprintln!(
        "converged {:.1} s after the last fault; of the {} environments not yet converged then, each converged p50 {:.1} s / p99 {:.1} s after it",
        convergence.as_secs_f64(),
        converging.len(),
        quantile(&converging, 0.5).as_secs_f64(),
        quantile(&converging, 0.99).as_secs_f64(),
    );
    eprintln!(
        "the operator's {deletes} DELETEs and the replicas' {writes} writes checked; violations: {}",
        violations.len()
    );
    for violation in &violations {
        eprintln!("violation: {violation}");
    }
    for replica in &replicas {
        assert!(
            replica.proxy.forwarded() > 0,
            "{} never went through its proxy: the cuts cut nothing",
            replica.identity
        );
    }
    assert!(violations.is_empty(), "seed {seed}: {violations:#?}");
}

async fn replica(control_plane: &ControlPlane, workspace: &str, identity: &str) -> Replica {
    let server: std::net::SocketAddr = control_plane
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .expect("API server address");
    let proxy = Proxy::start(server).await.expect("proxy");
    let kubeconfig = proxy::kubeconfig_via(
        control_plane.operator_kubeconfig_path(),
        proxy.address,
        control_plane
            .run_dir()
            .join(format!("{workspace}-{identity}.kubeconfig")),
    )
    .expect("kubeconfig through the proxy");
    let args = [
        "--leader-election".to_owned(),
        format!("--operator-namespace={workspace}"),
        format!("--lease-duration={LEASE_SECONDS}s"),
        "--shutdown-timeout=5s".to_owned(),
        format!("--identity={identity}"),
        "--missing-grace=10m".to_owned(),
        "--degraded-grace=10m".to_owned(),
        format!("--provisioning-timeout={}s", PROVISIONING_TIMEOUT.as_secs()),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let operator = Operator::start_with(
        env!("CARGO_BIN_EXE_testmesh"),
        workspace,
        argocd::NAMESPACE,
        &args,
        kubeconfig,
    );
    Replica {
        identity: identity.to_owned(),
        operator: tokio::sync::Mutex::new(operator),
        proxy,
    }
}

/// Creates the environment `name` of its own context, deploying into `{workspace}-{name}`
/// by the Application of that name.
async fn create_environment(
    environments: &Api<TestEnvironment>,
    workspace: &str,
    name: &str,
    ttl_minutes: u32,
) {
    let environment: TestEnvironment = from_json(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironment",
        "metadata": {"name": name},
        "spec": {
            "context": name,
            "provider": "argocd",
            "providerAppName": format!("{workspace}-{name}"),
            "providerAppNamespace": argocd::NAMESPACE,
            "namespace": format!("{workspace}-{name}"),
            "ttlMinutes": ttl_minutes,
        },
    }));
    stored(environments, &environment).await;
}

/// Makes `request` until the API server answers it, for up to two minutes: a fault may
/// have stopped the API server or etcd. An answer that the object exists (to a create)
/// or is gone (to a patch or delete) counts, since a lost answer may have hidden the
/// request's success.
async fn persist<T, F, Fut>(what: &str, mut request: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match request().await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => return,
            Err(error) if Instant::now() < deadline => {
                tracing::debug!(%error, what, "again");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(error) => panic!("{what}: {error}"),
        }
    }
}

/// Creates `object` ([`persist`]).
async fn stored<K>(api: &Api<K>, object: &K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let what = format!("create {:?}", object.meta().name);
    let params = PostParams::default();
    persist(&what, || api.create(&params, object)).await;
}

/// Sets `spec.destroy` on the environment `name` ([`persist`]).
async fn destroy(environments: &Api<TestEnvironment>, name: &str) {
    let patch = Patch::Merge(json!({"spec": {"destroy": true}}));
    let params = PatchParams::default();
    persist(&format!("destroy {name}"), || {
        environments.patch(name, &params, &patch)
    })
    .await;
}

/// Deletes `name` ([`persist`]).
async fn removed<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams::default();
    persist(&format!("delete {name}"), || api.delete(name, &params)).await;
}

/// How a directly created environment ends.
#[derive(Clone, Copy)]
enum End {
    Expire,
    Destroy,
    Delete,
}

/// An environment created directly (TTL one minute), ended as `end` says once warm.
async fn direct(environments: &Api<TestEnvironment>, workspace: &str, i: usize, end: End) {
    let name = format!("direct-{i}");
    create_environment(environments, workspace, &name, 1).await;
    if let End::Expire = end {
        return;
    }
    // Ended once it served (or after a while if faults held it up).
    let _ = tokio::time::timeout(Duration::from_secs(40), async {
        loop {
            let phase = environments
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|e| e.status.and_then(|s| s.phase));
            if phase.is_some_and(Phase::is_serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
    .await;
    match end {
        End::Destroy => destroy(environments, &name).await,
        End::Delete => removed(environments, &name).await,
        End::Expire => {}
    }
}

/// A run: a claim for one of the shared contexts, held a moment once bound, released.
/// It waits as long as the claim is held up by the operator for at most
/// [`PROVISIONING_TIMEOUT`] + [`FAULT_SLACK`]; the time it waits for a teardown that
/// waits on Argo CD or the namespace controller ([`waits_on_others_teardown`]) is not the
/// operator's to bound, and is waited out up to [`CLAIM_WAIT`] in all.
async fn claim_run(
    claims: &Api<TestEnvironmentClaim>,
    environments: &Api<TestEnvironment>,
    workspace: &str,
    i: usize,
) -> Outcome {
    let context = format!("c{}", i % CONTEXTS);
    let name = format!("run-{i}");
    let claim: TestEnvironmentClaim = from_json(json!({
        "apiVersion": "testmesh.io/v1alpha1",
        "kind": "TestEnvironmentClaim",
        "metadata": {"name": name},
        "spec": {
            "context": context,
            "template": {
                "provider": "argocd",
                "providerAppName": format!("{workspace}-{{{{context}}}}"),
                "providerAppNamespace": argocd::NAMESPACE,
                "namespace": format!("{workspace}-{{{{context}}}}"),
                "ttlMinutes": 1,
            },
        },
    }));
    stored(claims, &claim).await;
    let created = Instant::now();
    let mut on_teardown = Duration::ZERO;
    let mut polled = created;
    let outcome = loop {
        let status = claims
            .get_opt(&name)
            .await
            .ok()
            .flatten()
            .and_then(|c| c.status)
            .unwrap_or_default();
        match status.phase {
            Some(ClaimPhase::Bound) => break Outcome::Served,
            Some(phase) if phase.is_final() => break Outcome::ended(&name, phase, &status),
            _ => {}
        }
        let teardown = waits_on_others_teardown(environments, &status).await;
        let now = Instant::now();
        if teardown.is_some() {
            on_teardown += now - polled;
        }
        polled = now;
        let waited = now - created;
        let operators_share = waited.saturating_sub(on_teardown);
        if operators_share > PROVISIONING_TIMEOUT + FAULT_SLACK {
            let ready = conditions::find(&status.conditions, conditions::READY)
                .map(|c| format!("{}: {}", c.reason, c.message))
                .unwrap_or_else(|| "no Ready condition".to_owned());
            break Outcome::Violation(format!(
                "{name} neither served nor failed after {:.0} s, {:.0} s of them not waiting on another controller's teardown ({ready})",
                waited.as_secs_f64(),
                operators_share.as_secs_f64(),
            ));
        }
        if waited > CLAIM_WAIT {
            break Outcome::WaitingForTeardown(format!(
                "{name}: {:.0} s of {:.0} s waiting for {}",
                on_teardown.as_secs_f64(),
                waited.as_secs_f64(),
                teardown.unwrap_or_else(|| "a teardown".to_owned()),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if outcome == Outcome::Served {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    removed(claims, &name).await;
    outcome
}

/// The soak's provisioning timeout (the replicas' `--provisioning-timeout`): an
/// environment whose Application Argo CD keeps from turning Healthy fails within it, and
/// the claims waiting on it with it. Argo CD does so for minutes at times: an Application
/// whose status write it lost to an API server restart keeps its old health until its
/// periodic refresh (`timeout.reconciliation`, 120 s plus up to 60 s of jitter), and its
/// ApplicationSet controller's informers stay stale while the API server restarts every
/// half minute.
const PROVISIONING_TIMEOUT: Duration = Duration::from_secs(90);

/// What the faults may add to a deadline the operator keeps: the outages it has to wait
/// out (the API server down, etcd frozen, its connection cut, a leader replaced) and its
/// watches' backoff after them.
const FAULT_SLACK: Duration = Duration::from_secs(60);

/// How long a run waits in all for a claim held up by a teardown that waits on another
/// controller: Argo CD deleting the Application (and pruning what it deployed), its
/// ApplicationSet generating without it, the namespace controller emptying the
/// namespace. TestMesh documents no bound for those; the run then gives up, as a CI job's
/// `--wait` would.
const CLAIM_WAIT: Duration = Duration::from_secs(300);

/// The teardown a pending claim waits for (`WaitingForTeardown`) when that teardown waits
/// on another controller: Argo CD deleting the Application or its ApplicationSet
/// generating without it, as the environment's `Destroyed` condition says, or the
/// namespace controller emptying the namespace TestMesh deleted — seen on the namespace
/// itself, since the environment says `TearingDown` until the namespace controller
/// reports what blocks it (in one full run it started on a namespace 78 s after the
/// delete, its informers stale after API server restarts). As "c0-4
/// (WaitingForAppDeletion)"; `None` while the claim waits on the operator itself.
async fn waits_on_others_teardown(
    environments: &Api<TestEnvironment>,
    status: &TestEnvironmentClaimStatus,
) -> Option<String> {
    let ready = conditions::find(&status.conditions, conditions::READY)?;
    if ready.reason != reason::WAITING_FOR_TEARDOWN {
        return None;
    }
    // "environment NAME of this context is being torn down; …"
    let name = ready
        .message
        .strip_prefix("environment ")?
        .split(' ')
        .next()?;
    let environment = environments.get_opt(name).await.ok().flatten()?;
    let destroyed = conditions::find(
        &environment.status.as_ref()?.conditions,
        conditions::DESTROYED,
    )?;
    if [
        reason::WAITING_FOR_APP_DELETION,
        reason::WAITING_FOR_GENERATOR,
        reason::NAMESPACE_TERMINATING,
    ]
    .contains(&destroyed.reason.as_str())
    {
        return Some(format!("{name} ({})", destroyed.reason));
    }
    let namespace = &environment.spec.template.namespace;
    let namespaces: Api<Namespace> = Api::all(environments.clone().into_client());
    namespaces
        .get_opt(namespace)
        .await
        .ok()
        .flatten()?
        .metadata
        .deletion_timestamp
        .map(|_| format!("{name} (namespace {namespace} terminating)"))
}

/// How a run's claim ended: served, or failed with its reason in its `Ready` condition —
/// or still pending after [`CLAIM_WAIT`] on a teardown that waits on another controller.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Served,
    /// A claim that failed, saying why: its `Ready` reason.
    Failed(String),
    /// How long it waited, and for which teardown.
    WaitingForTeardown(String),
    Violation(String),
}

impl Outcome {
    /// The outcome of the claim `name` that ended in `phase` before it was served.
    fn ended(name: &str, phase: ClaimPhase, status: &TestEnvironmentClaimStatus) -> Outcome {
        let why = conditions::find(&status.conditions, conditions::READY)
            .filter(|ready| !ready.reason.is_empty() && !ready.message.is_empty());
        match (phase, why) {
            (ClaimPhase::Failed, Some(ready)) => Outcome::Failed(ready.reason.clone()),
            (ClaimPhase::Failed, None) => Outcome::Violation(format!(
                "{name} failed without a reason in its Ready condition"
            )),
            (phase, _) => Outcome::Violation(format!(
                "{name} ended {} before it was served",
                phase.as_str()
            )),
        }
    }
}

/// What a fault can be injected into.
struct Target<'a> {
    /// When the soak started (the per-fault trace's clock).
    started: Instant,
    /// GitOps lanes not yet done: the control plane's faults wait for none to be left.
    gitops_lanes_running: &'a AtomicUsize,
    control_plane: &'a ControlPlane,
    replicas: &'a [Arc<Replica>],
    leases: &'a Api<Lease>,
    apps: &'a Api<DynamicObject>,
    environments: &'a Api<TestEnvironment>,
    workspace: &'a str,
    /// The environments a GitOps fault is on now.
    gitops_busy: &'a Mutex<BTreeSet<String>>,
}

/// Injects `fault`. What takes it back (a restart, a restored connection) runs in the
/// background; the API server's restart, etcd's thaw and an Application's return to a
/// healthy rollout are awaited, since nothing progresses before them. `None` when there was nothing to inject it into (no leader
/// yet, no app).
async fn inject(fault: Fault, target: &Target<'_>, rng: &mut Seeded) -> Option<Injected> {
    let at = Instant::now();
    let in_background = |restoring| Injected {
        restoring,
        clock_from: at,
        environment: None,
        silent: false,
    };
    let holder = target
        .leases
        .get_opt(LEASE_NAME)
        .await
        .ok()
        .flatten()
        .and_then(|lease| lease.spec.and_then(|s| s.holder_identity));
    let leader = target
        .replicas
        .iter()
        .position(|r| Some(&r.identity) == holder.as_ref());
    let standby = leader.map(|l| 1 - l);
    match fault {
        Fault::KillLeader | Fault::KillStandby | Fault::TerminateLeader => {
            let chosen = if fault == Fault::KillStandby {
                standby
            } else {
                leader
            };
            let replica = target.replicas[chosen?].clone();
            let down_for = rng.millis(100, 600);
            {
                let mut operator = replica.operator.lock().await;
                if fault == Fault::TerminateLeader {
                    operator.terminate(Duration::from_secs(10)).await;
                } else {
                    operator.kill();
                }
            }
            Some(in_background(tokio::spawn(async move {
                tokio::time::sleep(down_for).await;
                replica.operator.lock().await.restart();
            })))
        }
        Fault::CutLeader | Fault::CutStandby => {
            let chosen = if fault == Fault::CutStandby {
                standby
            } else {
                leader
            };
            let replica = target.replicas[chosen?].clone();
            // A third of the cuts outlast the lease. Half close every connection, half
            // leave them open and silent (a partition), which the replica learns of only
            // from its own timeouts.
            let lease = LEASE_SECONDS * 1_000;
            let cut_for = if rng.below(3) == 0 {
                rng.millis(lease + 200, lease + 1_500)
            } else {
                rng.millis(500, 2_500)
            };
            let silent = rng.below(2) == 0;
            if silent {
                replica.proxy.stall();
            } else {
                replica.proxy.cut();
            }
            Some(Injected {
                silent,
                ..in_background(tokio::spawn(async move {
                    tokio::time::sleep(cut_for).await;
                    replica.proxy.restore();
                }))
            })
        }
        Fault::ApiServerRestart => {
            let down_for = rng.millis(200, 1_500);
            target.control_plane.stop_apiserver();
            tokio::time::sleep(down_for).await;
            target
                .control_plane
                .start_apiserver()
                .await
                .expect("the API server starts again");
            Some(Injected {
                restoring: tokio::spawn(async {}),
                clock_from: Instant::now(),
                environment: None,
                silent: false,
            })
        }
        Fault::EtcdPaused => {
            let lease = LEASE_SECONDS * 1_000;
            let paused_for = rng.millis(lease + 200, lease + 1_000);
            target.control_plane.pause_etcd().expect("SIGSTOP etcd");
            tokio::time::sleep(paused_for).await;
            target.control_plane.resume_etcd().expect("SIGCONT etcd");
            Some(Injected {
                restoring: tokio::spawn(async {}),
                clock_from: Instant::now(),
                environment: None,
                silent: false,
            })
        }
        Fault::AppDeleted | Fault::AppDegraded | Fault::AppProgressing => {
            let list = target.environments.list(&Default::default()).await.ok()?;
            let serving: Vec<(String, String)> = list
                .items
                .iter()
                .filter(|e| {
                    e.status
                        .as_ref()
                        .and_then(|s| s.phase)
                        .is_some_and(Phase::is_serving)
                })
                .filter(|e| !busy(target).contains(e.metadata.name.as_deref().unwrap_or_default()))
                .map(|e| {
                    (
                        e.metadata.name.clone().unwrap_or_default(),
                        e.spec.template.provider_app_name.clone(),
                    )
                })
                .collect();
            if serving.is_empty() {
                return None;
            }
            let (name, app) = serving[rng.below(serving.len() as u64) as usize].clone();
            busy(target).insert(name.clone());
            let of_environment = |clock_from| Injected {
                restoring: tokio::spawn(async {}),
                clock_from,
                environment: Some(name.clone()),
                silent: false,
            };
            if fault == Fault::AppDeleted {
                // Its ApplicationSet mints it again.
                let _ = target.apps.delete(&app, &DeleteParams::default()).await;
                return Some(of_environment(at));
            }
            // Argo CD syncs a rollout whose pods never turn Ready: Progressing, or
            // Degraded once its progress deadline passed. Held until the environment shows
            // it (or ends), a while longer, then back; nothing can serve before that.
            let (path, health) = if fault == Fault::AppDegraded {
                (DEGRADED_PATH, "Degraded")
            } else {
                (PROGRESSING_PATH, "Progressing")
            };
            let set_path = |path: &str| Patch::Merge(json!({"spec": {"source": {"path": path}}}));
            // It may be gone meanwhile (its environment torn down): nothing to change.
            let _ = target
                .apps
                .patch(&app, &PatchParams::default(), &set_path(path))
                .await;
            shows_health(target.environments, &name, health).await;
            tokio::time::sleep(rng.millis(1_000, 4_000)).await;
            let _ = target
                .apps
                .patch(&app, &PatchParams::default(), &set_path(HEALTHY_PATH))
                .await;
            Some(of_environment(Instant::now()))
        }
    }
}

/// The environments a GitOps fault is on now.
fn busy<'a>(target: &'a Target<'_>) -> std::sync::MutexGuard<'a, BTreeSet<String>> {
    target
        .gitops_busy
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits (a minute at most) until the environment `name` reports its Application's
/// health as `health`, or stops serving.
async fn shows_health(environments: &Api<TestEnvironment>, name: &str, health: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let status = environments
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|e| e.status)
            .unwrap_or_default();
        let shown = status.provider.as_ref().and_then(|p| p.health.as_deref()) == Some(health);
        let serving = status.phase.is_some_and(Phase::is_serving);
        if shown || !serving {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Starts again every replica that exited by itself.
async fn supervise(replicas: Vec<Arc<Replica>>) {
    loop {
        for replica in &replicas {
            let mut operator = replica.operator.lock().await;
            if operator.wait_exit(Duration::ZERO).await.is_some() {
                operator.restart();
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How long after `since` a new environment `probe-{n}` was picked up and its
/// namespace created (at most a minute); the probe is then destroyed.
async fn probe_progress(
    environments: &Api<TestEnvironment>,
    workspace: &str,
    name: &str,
    since: Instant,
) -> Duration {
    create_environment(environments, workspace, name, 1).await;
    let limit = Duration::from_secs(60);
    let progressed = loop {
        let phase = environments
            .get_opt(name)
            .await
            .ok()
            .flatten()
            .and_then(|e| e.status.and_then(|s| s.phase));
        if phase.is_some_and(|p| p != Phase::Cold) {
            break since.elapsed();
        }
        if since.elapsed() >= limit {
            break limit;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    destroy(environments, name).await;
    progressed
}

/// Watches environments and claims, recording any double binding and the bind order.
async fn watch_invariants(
    environments: Api<TestEnvironment>,
    claims: Api<TestEnvironmentClaim>,
    seen: Arc<Mutex<Seen>>,
) {
    let env_seen = seen.clone();
    let watching_environments = async move {
        let mut events = std::pin::pin!(
            watcher(environments.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        // The environments last seen provisioning, with their `provisioningStartedAt`.
        let mut provisioning: BTreeMap<String, Timestamp> = BTreeMap::new();
        let mut sweeps = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                event = events.next() => {
                    // An error (the API server is down) is retried by the backoff.
                    let environment = match event {
                        Some(Ok(environment)) => environment,
                        Some(Err(_)) => continue,
                        None => return,
                    };
                    let name = environment.metadata.name.clone().unwrap_or_default();
                    let status = environment.status.unwrap_or_default();
                    let mut seen = env_seen.lock().expect("seen");
                    if let Some(uid) = environment.metadata.uid {
                        seen.environment_uids.entry(name.clone()).or_default().insert(uid);
                    }
                    match (status.phase, status.provisioning_started_at) {
                        (Some(Phase::Provisioning), Some(started)) => {
                            provisioning.insert(name.clone(), started.0);
                        }
                        _ => {
                            provisioning.remove(&name);
                        }
                    }
                    if status.claimed_by.len() > 1 {
                        seen.violations
                            .push(format!("{name} held by {:?} at once", status.claimed_by));
                    }
                }
                _ = sweeps.tick() => {
                    for name in overdue(&environments, &mut provisioning).await {
                        env_seen.lock().expect("seen").violations.push(name);
                    }
                }
            }
        }
    };
    let watching_claims = async move {
        let mut claims_seen = ClaimsSeen::default();
        let mut events =
            std::pin::pin!(watcher(claims, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            // An error (the API server is down) is retried by the backoff.
            let Ok(event) = event else { continue };
            let violations = claims_seen.on(event);
            seen.lock().expect("seen").violations.extend(violations);
        }
    };
    tokio::join!(watching_environments, watching_claims);
}

/// What the claims' watch has seen, checked as it goes: which claim holds which
/// environment, and per context the claims waiting, in creation order.
#[derive(Default)]
struct ClaimsSeen {
    /// Claim → its environment, while bound.
    bound: HashMap<String, String>,
    /// Per context, the claims waiting with their queue key (creation second, name).
    waiting: HashMap<String, BTreeMap<String, (Timestamp, String)>>,
    served: BTreeSet<String>,
    /// During a relist (the watch broke, e.g. the API server restarted): the claims
    /// listed so far. A relist hands on what exists, not what went meanwhile, so they are
    /// taken in once it is done and the claims it no longer holds are forgotten — a claim
    /// deleted during the outage must not seem to hold its environment beside the next.
    relisting: Option<Vec<TestEnvironmentClaim>>,
}

impl ClaimsSeen {
    /// Takes in one watch event; the violations it shows.
    fn on(&mut self, event: watcher::Event<TestEnvironmentClaim>) -> Vec<String> {
        match event {
            watcher::Event::Init => {
                self.relisting = Some(Vec::new());
                Vec::new()
            }
            watcher::Event::InitApply(claim) => {
                self.relisting.get_or_insert_default().push(claim);
                Vec::new()
            }
            watcher::Event::InitDone => {
                let listed = self.relisting.take().unwrap_or_default();
                let names: BTreeSet<String> = listed
                    .iter()
                    .map(|claim| claim.metadata.name.clone().unwrap_or_default())
                    .collect();
                self.bound.retain(|name, _| names.contains(name));
                for queue in self.waiting.values_mut() {
                    queue.retain(|name, _| names.contains(name));
                }
                listed
                    .into_iter()
                    .flat_map(|claim| self.changed(claim, false))
                    .collect()
            }
            watcher::Event::Apply(claim) => self.changed(claim, false),
            watcher::Event::Delete(claim) => self.changed(claim, true),
        }
    }

    fn changed(&mut self, claim: TestEnvironmentClaim, deleted: bool) -> Vec<String> {
        let mut violations = Vec::new();
        let name = claim.metadata.name.clone().unwrap_or_default();
        let status = claim.status.clone().unwrap_or_default();
        let queue = self.waiting.entry(claim.spec.context.clone()).or_default();
        let key = (
            claim
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0),
            name.clone(),
        );
        match (deleted, status.phase, status.environment_name) {
            (false, Some(ClaimPhase::Bound), Some(environment)) => {
                if let Some((other, _)) = self
                    .bound
                    .iter()
                    .find(|(other, env)| **env == environment && **other != name)
                {
                    violations.push(format!("{name} and {other} bound to {environment} at once"));
                }
                queue.remove(&name);
                if self.served.insert(name.clone())
                    && let Some((_, (_, ahead))) = queue.iter().find(|(_, waiting)| **waiting < key)
                {
                    violations.push(format!(
                        "{name} served before {ahead}, which waited for context {} since before it",
                        claim.spec.context
                    ));
                }
                self.bound.insert(name, environment);
            }
            (false, phase, _)
                if !phase.is_some_and(ClaimPhase::is_final) && !self.served.contains(&name) =>
            {
                queue.insert(name.clone(), key);
                self.bound.remove(&name);
            }
            _ => {
                queue.remove(&name);
                self.bound.remove(&name);
            }
        }
        violations
    }
}

/// Of the environments last seen `provisioning`, those still provisioning
/// [`PROVISIONING_TIMEOUT`] + [`FAULT_SLACK`] after their `provisioningStartedAt`, read
/// afresh (the watch may lag an outage), each as a violation; once said, or once seen
/// otherwise, they are forgotten.
async fn overdue(
    environments: &Api<TestEnvironment>,
    provisioning: &mut BTreeMap<String, Timestamp>,
) -> Vec<String> {
    let bound = PROVISIONING_TIMEOUT + FAULT_SLACK;
    let now = Timestamp::now();
    let age =
        |started: Timestamp| Duration::try_from(now.duration_since(started)).unwrap_or_default();
    let mut violations = Vec::new();
    let suspects: Vec<String> = provisioning
        .iter()
        .filter(|(_, started)| age(**started) > bound)
        .map(|(name, _)| name.clone())
        .collect();
    for name in suspects {
        let Ok(fresh) = environments.get_opt(&name).await else {
            continue; // Not answered (an outage): asked again at the next sweep.
        };
        provisioning.remove(&name);
        let status = fresh.and_then(|e| e.status).unwrap_or_default();
        if let (Some(Phase::Provisioning), Some(started)) =
            (status.phase, status.provisioning_started_at)
        {
            let since = age(started.0);
            if since > bound {
                violations.push(format!(
                    "{name} still provisioning {:.0} s after it started, past the {} s provisioning timeout",
                    since.as_secs_f64(),
                    PROVISIONING_TIMEOUT.as_secs()
                ));
            } else {
                provisioning.insert(name, started.0);
            }
        }
    }
    violations
}

/// Whether `name` exists and is not being deleted.
async fn untouched<K>(api: &Api<K>, name: &str) -> bool
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some_and(|object| object.meta().deletion_timestamp.is_none())
}

/// Waits until every environment is destroyed or gone with its namespace, and no
/// namespace with TestMesh's label is left but the `hostile` look-alikes (one an
/// environment deleted with kubectl left behind has no environment to list it); for each
/// that was not yet there at the first look, how long after `since` it was seen there.
async fn converge(
    environments: &Api<TestEnvironment>,
    client: &kube::Client,
    hostile: &[String],
    since: Instant,
    limit: Duration,
) -> Result<Vec<Duration>, String> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + limit;
    let mut converging: Option<BTreeSet<String>> = None;
    let mut times = Vec::new();
    loop {
        let mut pending = BTreeMap::new();
        let existing: Vec<Namespace> = namespaces
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let existing_names: BTreeSet<&str> = existing
            .iter()
            .filter_map(|namespace| namespace.metadata.name.as_deref())
            .collect();
        let mut of_environments = BTreeSet::new();
        for environment in environments
            .list(&Default::default())
            .await
            .map_err(|e| e.to_string())?
            .items
        {
            of_environments.insert(environment.spec.template.namespace.clone());
            let name = environment.metadata.name.clone().unwrap_or_default();
            let phase = environment.status.as_ref().and_then(|s| s.phase);
            let namespace_left =
                existing_names.contains(environment.spec.template.namespace.as_str());
            if phase != Some(Phase::Destroyed) || namespace_left {
                pending.insert(name, format!("{phase:?}, namespace left: {namespace_left}"));
            }
        }
        for namespace in &existing {
            let name = namespace.metadata.name.clone().unwrap_or_default();
            let managed = namespace
                .metadata
                .labels
                .as_ref()
                .and_then(|labels| labels.get(MANAGED_BY_LABEL))
                .is_some_and(|by| by == MANAGED_BY);
            if managed && !hostile.contains(&name) && !of_environments.contains(&name) {
                pending
                    .entry(format!("namespace {name}"))
                    .or_insert_with(|| "TestMesh's label, no environment's".to_owned());
            }
        }
        let converging = converging.get_or_insert_with(|| pending.keys().cloned().collect());
        converging.retain(|name| {
            let still = pending.contains_key(name);
            if !still {
                times.push(since.elapsed());
            }
            still
        });
        if pending.is_empty() {
            return Ok(times);
        }
        if Instant::now() >= deadline {
            return Err(format!("not converged after {limit:?}: {pending:?}"));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Writes every fault's record to `soak-faults.tsv` beside the control plane's logs, and
/// prints how long each stream took and, per kind, the mean time a fault held its
/// stream: what the soak's length is made of.
fn trace_faults(control_plane: &ControlPlane, records: &[Record]) {
    let mut tsv = String::from("stream\tfault\tbegan_s\tprogress_s\ttook_s\n");
    let mut streams: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut held: BTreeMap<Fault, Vec<Duration>> = BTreeMap::new();
    for record in records {
        tsv.push_str(&format!(
            "{}\t{:?}\t{:.3}\t{:.3}\t{:.3}\n",
            record.stream,
            record.fault,
            record.began.as_secs_f64(),
            record.progress.as_secs_f64(),
            record.took.as_secs_f64(),
        ));
        *streams.entry(&record.stream).or_default() += record.took;
        held.entry(record.fault).or_default().push(record.took);
    }
    let path = control_plane.log_dir().join("soak-faults.tsv");
    if let Err(error) = std::fs::write(&path, tsv) {
        eprintln!("soak: cannot write {}: {error}", path.display());
    }
    let streams: Vec<String> = streams
        .iter()
        .map(|(stream, took)| format!("{stream} {:.0} s", took.as_secs_f64()))
        .collect();
    let held: Vec<String> = held
        .iter()
        .map(|(fault, took)| {
            let mean = took.iter().sum::<Duration>() / took.len().max(1) as u32;
            format!("{fault:?} {:.1} s", mean.as_secs_f64())
        })
        .collect();
    eprintln!(
        "streams busy: {}; a fault held its stream, mean: {} (each fault: {})",
        streams.join(", "),
        held.join(", "),
        path.display()
    );
}

/// The `p` quantile (0..=1) of `times`, nearest rank; zero for none.
fn quantile(times: &[Duration], p: f64) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

/// How many DELETEs the operator made in the workspace, and each of an object it could
/// not prove was its own ([`foreign_of`]).
fn foreign_deletes(
    control_plane: &ControlPlane,
    workspace: &str,
    hostile: &[String],
    environment_uids: &BTreeMap<String, BTreeSet<String>>,
) -> (usize, Vec<String>) {
    let requests = control_plane.audited_requests().expect("audit log");
    foreign_of(&requests, workspace, hostile, environment_uids)
}

/// Of the operator's DELETEs in `requests` (the workspace's objects, and namespaces named
/// after it), how many there were, and each of an object that did not carry the
/// operator's ownership proof: a namespace whose `testmesh.io/environment` annotation
/// names one of the workspace's environments and whose `testmesh.io/environment-uid`
/// is that environment's UID (as the soak's watch saw it; the audit log records the
/// deleted namespace whole — its create may be missing from the log, when the API
/// server was killed before it wrote it); an Application of an environment (not a
/// hostile neighbour's); the routing ConfigMap; the Lease.
fn foreign_of(
    requests: &[AuditedRequest],
    workspace: &str,
    hostile: &[String],
    environment_uids: &BTreeMap<String, BTreeSet<String>>,
) -> (usize, Vec<String>) {
    let deletes: Vec<&AuditedRequest> = requests
        .iter()
        .filter(|r| r.user == "testmesh-operator" && r.code < 300 && r.verb == "delete")
        .filter(|r| {
            r.namespace.as_deref() == Some(workspace)
                || r.name.as_deref().is_some_and(|n| n.starts_with(workspace))
        })
        .collect();
    let proven_namespace = |request: &AuditedRequest| {
        let annotation =
            |key: &str| request.response_object.as_ref()?["metadata"]["annotations"][key].as_str();
        let environment = annotation(ENVIRONMENT_ANNOTATION)
            .and_then(|e| e.strip_prefix(&format!("{workspace}/")));
        let uid = annotation(ENVIRONMENT_UID_ANNOTATION);
        environment.zip(uid).is_some_and(|(environment, uid)| {
            environment_uids
                .get(environment)
                .is_some_and(|uids| uids.contains(uid))
        })
    };
    let foreign = deletes
        .iter()
        .filter_map(|r| {
            let name = r.name.clone().unwrap_or_default();
            let owned = match r.resource.as_str() {
                "namespaces" => proven_namespace(r),
                "applications" => !hostile.contains(&name),
                "configmaps" => name == "testmesh-routing",
                "leases" => true,
                _ => false,
            };
            (!owned).then(|| format!("the operator deleted {} {name}", r.resource))
        })
        .collect();
    (deletes.len(), foreign)
}

/// How many writes the replicas made in the workspace, and each made while its replica
/// did not hold the Lease: after its last successful Lease write before the write, the
/// Lease was taken by the other replica, or one lease duration passed. (Whose write it was
/// is in its User-Agent, `testmesh/<version> (<identity>)`.)
fn writes_without_the_lease(
    control_plane: &ControlPlane,
    workspace: &str,
    identities: &[&str],
) -> (usize, Vec<String>) {
    let audited = control_plane.audited_writes().expect("audit log");
    unleased_writes(audited, workspace, identities)
}

/// [`writes_without_the_lease`] of what the audit log recorded.
fn unleased_writes(
    audited: Vec<AuditedRequest>,
    workspace: &str,
    identities: &[&str],
) -> (usize, Vec<String>) {
    let by_replica = |request: &AuditedRequest| {
        identities
            .iter()
            .find(|identity| request.user_agent.ends_with(&format!("({identity})")))
            .map(|identity| identity.to_string())
    };
    let mut writes: Vec<(Timestamp, String, AuditedRequest)> = audited
        .into_iter()
        .filter(|w| w.code < 300)
        .filter(|w| {
            w.namespace.as_deref() == Some(workspace)
                || w.name.as_deref().is_some_and(|n| n.starts_with(workspace))
        })
        .filter_map(|w| {
            let received = w.received_at.parse().expect("audit timestamp");
            by_replica(&w).map(|replica| (received, replica, w))
        })
        .collect();
    writes.sort_by_key(|(received, _, _)| *received);
    let lease = jiff::SignedDuration::from_secs(LEASE_SECONDS as i64);
    let mut holder: Option<(Timestamp, String)> = None;
    let mut checked = 0;
    let mut violations = Vec::new();
    for (received, replica, write) in writes {
        if write.resource == "leases" && write.name.as_deref() == Some(LEASE_NAME) {
            holder = Some((received, replica));
            continue;
        }
        checked += 1;
        let held = holder
            .as_ref()
            .is_some_and(|(since, who)| *who == replica && received <= *since + lease);
        if !held {
            violations.push(format!(
                "{replica} wrote ({} {} {}) at {received} without the Lease (last Lease write: {holder:?})",
                write.verb,
                write.resource,
                write.name.unwrap_or_default()
            ));
        }
    }
    (checked, violations)
}

#[test]
fn a_write_counts_as_leased_only_within_a_lease_duration_of_its_replicas_own_last_lease_write() {
    let write = |at: &str, identity: &str, resource: &str, name: &str| AuditedRequest {
        user: "testmesh-operator".to_owned(),
        user_agent: format!("testmesh/0.1.0 ({identity})"),
        verb: "patch".to_owned(),
        resource: resource.to_owned(),
        subresource: None,
        namespace: Some("ws".to_owned()),
        name: Some(name.to_owned()),
        code: 200,
        received_at: format!("2026-12-06T00:00:{at}Z"),
        completed_at: format!("2026-12-06T00:00:{at}Z"),
        request_uri: String::new(),
        response_object: None,
    };
    let renewed = |at, identity| write(at, identity, "leases", LEASE_NAME);
    let status = |at, identity| write(at, identity, "testenvironments", "e");
    let check = |audited| unleased_writes(audited, "ws", &["a", "b"]);

    // Within the lease of its own renewal: fine; a stranger's writes are not checked.
    let mut stranger = status("02.000000", "c");
    stranger.user_agent = "kubectl".to_owned();
    assert_eq!(
        check(vec![
            renewed("00.000000", "a"),
            status("05.999000", "a"),
            stranger
        ]),
        (1, vec![])
    );
    // Before any Lease write, past the lease, after the other replica took it: not.
    for audited in [
        vec![status("00.000000", "a")],
        vec![renewed("00.000000", "a"), status("06.100000", "a")],
        vec![
            renewed("00.000000", "a"),
            renewed("03.000000", "b"),
            status("04.000000", "a"),
        ],
    ] {
        let (checked, violations) = check(audited);
        assert_eq!((checked, violations.len()), (1, 1), "{violations:?}");
    }
    // A failed write wrote nothing; a failed Lease write took nothing.
    let mut failed = status("09.000000", "b");
    failed.code = 409;
    let mut refused = renewed("01.000000", "b");
    refused.code = 409;
    assert_eq!(
        check(vec![
            renewed("00.000000", "a"),
            refused,
            status("02.000000", "a"),
            failed
        ]),
        (1, vec![])
    );
}

/// The soak repository's files: one Deployment and Service, `web`, at each of the paths.
fn workload_files() -> Vec<(String, String)> {
    let web = || Workload::new("web", "soak/web:1", 8080);
    let mut degraded = web().never_ready().deployment();
    degraded["spec"]["progressDeadlineSeconds"] = json!(1);
    vec![
        (format!("{HEALTHY_PATH}/web.yaml"), web().yaml()),
        (
            format!("{PROGRESSING_PATH}/web.yaml"),
            web().never_ready().yaml(),
        ),
        (
            format!("{DEGRADED_PATH}/web.yaml"),
            format!("---\n{degraded}\n---\n{}\n", web().service()),
        ),
    ]
}

/// The plugin generator's ConfigMap and token Secret in Argo CD's namespace, pointing at
/// `address`, and a Role letting the token's user (alice) list the workspace's
/// environments: TestMesh's generator answers by the caller's RBAC.
async fn generator_for(
    client: &kube::Client,
    control_plane: &ControlPlane,
    workspace: &str,
    address: std::net::SocketAddr,
) {
    let user = "alice";
    let token = control_plane.user_token(user).expect("user token");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(client.clone(), argocd::NAMESPACE);
    secrets
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": GENERATOR, "labels": {"app.kubernetes.io/part-of": "argocd"}},
                "stringData": {"token": token},
            })),
        )
        .await
        .expect("token Secret");
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), argocd::NAMESPACE);
    config_maps
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": GENERATOR},
                "data": {"baseUrl": format!("http://{address}"), "token": format!("${GENERATOR}:token")},
            })),
        )
        .await
        .expect("generator ConfigMap");
    let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), workspace);
    roles
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": "generator"},
                "rules": [{"apiGroups": ["testmesh.io"], "resources": ["testenvironments"], "verbs": ["list"]}],
            })),
        )
        .await
        .expect("Role");
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), workspace);
    bindings
        .create(
            &PostParams::default(),
            &from_json(json!({
                "metadata": {"name": "generator"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "generator"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            })),
        )
        .await
        .expect("RoleBinding");
}

fn application_set_resource() -> kube::core::ApiResource {
    kube::core::ApiResource::from_gvk_with_plural(
        &kube::core::GroupVersionKind::gvk("argoproj.io", "v1alpha1", "ApplicationSet"),
        "applicationsets",
    )
}

/// The product's example ApplicationSet (`examples/argocd-applicationset.yaml`): an
/// Application per environment TestMesh's generator lists, pruned before it goes. The
/// source path is left to each Application (`ignoreApplicationDifferences`), so a fault
/// can point one at a workload that never turns Ready.
fn application_set(workspace: &str, repo_url: &str) -> serde_json::Value {
    json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": workspace, "namespace": argocd::NAMESPACE},
        "spec": {
            "goTemplate": true,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"plugin": {
                "configMapRef": {"name": GENERATOR},
                "input": {"parameters": {"workspace": workspace}},
                "requeueAfterSeconds": 30,
            }}],
            "ignoreApplicationDifferences": [{"jsonPointers": ["/spec/source/path"]}],
            "template": {
                "metadata": {
                    "name": "{{.appName}}",
                    "annotations": {"testmesh.io/environment-uid": "{{.environmentUid}}"},
                    "finalizers": [argocd::RESOURCES_FINALIZER],
                },
                "spec": {
                    "project": "default",
                    "source": {"repoURL": repo_url, "path": HEALTHY_PATH, "targetRevision": "main"},
                    "destination": {"server": "https://kubernetes.default.svc", "namespace": "{{.namespace}}"},
                    "syncPolicy": {"automated": {"prune": true, "selfHeal": true}},
                },
            },
        },
    })
}

#[test]
fn a_namespace_delete_is_the_operators_only_with_its_environments_uid_whether_or_not_its_create_was_logged()
 {
    let delete = |name: &str, environment: &str, uid: &str| AuditedRequest {
        user: "testmesh-operator".to_owned(),
        user_agent: "testmesh/0.1.0 (a)".to_owned(),
        verb: "delete".to_owned(),
        resource: "namespaces".to_owned(),
        subresource: None,
        namespace: None,
        name: Some(name.to_owned()),
        code: 200,
        received_at: "2026-12-06T00:00:00Z".to_owned(),
        completed_at: "2026-12-06T00:00:00Z".to_owned(),
        request_uri: String::new(),
        response_object: Some(json!({"metadata": {"name": name, "annotations": {
            ENVIRONMENT_ANNOTATION: environment,
            ENVIRONMENT_UID_ANNOTATION: uid,
        }}})),
    };
    let uids = BTreeMap::from([("c1-1".to_owned(), BTreeSet::from(["u-1".to_owned()]))]);
    let check = |requests: &[AuditedRequest]| foreign_of(requests, "ws", &[], &uids);
    // No create in the log (the API server was killed before writing it): still its own.
    assert_eq!(check(&[delete("ws-c1", "ws/c1-1", "u-1")]), (1, vec![]));
    let bare = AuditedRequest {
        response_object: Some(json!({"metadata": {"name": "ws-c1"}})),
        ..delete("ws-c1", "ws/c1-1", "u-1")
    };
    for (why, request) in [
        ("another UID", delete("ws-c1", "ws/c1-1", "u-2")),
        ("another workspace's", delete("ws-c1", "other/c1-1", "u-1")),
        (
            "an environment never seen",
            delete("ws-c1", "ws/c2-1", "u-1"),
        ),
        ("no annotations", bare),
    ] {
        assert_eq!(
            check(&[request]).1,
            ["the operator deleted namespaces ws-c1"],
            "{why}"
        );
    }
}

#[test]
fn a_claim_deleted_while_the_watch_was_broken_does_not_seem_to_hold_its_environment_beside_the_next()
 {
    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
    let claim = |name: &str, created: &str, phase: &str| -> TestEnvironmentClaim {
        from_json(json!({
            "apiVersion": "testmesh.io/v1alpha1", "kind": "TestEnvironmentClaim",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"context": "c1"},
            "status": {"phase": phase, "environmentName": "c1-3"},
        }))
    };
    let (a, b) = ("2026-12-06T08:26:16Z", "2026-12-06T08:26:27Z");
    let violations = |events: Vec<watcher::Event<TestEnvironmentClaim>>| {
        let mut seen = ClaimsSeen::default();
        events
            .into_iter()
            .flat_map(|event| seen.on(event))
            .collect::<Vec<_>>()
    };

    // run-199 held c1-3; its deletion fell into an outage; the relist shows run-181 bound.
    let relisted = violations(vec![
        Apply(claim("run-199", a, "bound")),
        Apply(claim("run-181", b, "pending")),
        Init,
        InitApply(claim("run-181", b, "bound")),
        InitDone,
    ]);
    assert_eq!(relisted, Vec::<String>::new());
    let watched = violations(vec![
        Apply(claim("run-199", a, "bound")),
        Apply(claim("run-181", b, "pending")),
        Delete(claim("run-199", a, "bound")),
        Apply(claim("run-181", b, "bound")),
    ]);
    assert_eq!(watched, Vec::<String>::new());

    // Both bound at once, in a relist or in the watch: seen either way.
    let relisted = violations(vec![
        Init,
        InitApply(claim("run-199", a, "bound")),
        InitApply(claim("run-181", b, "bound")),
        InitDone,
    ]);
    assert_eq!(relisted, ["run-181 and run-199 bound to c1-3 at once"]);
    let watched = violations(vec![
        Apply(claim("run-199", a, "bound")),
        Apply(claim("run-181", b, "bound")),
    ]);
    assert_eq!(watched, ["run-181 and run-199 bound to c1-3 at once"]);

    // Out of creation order: the later claim served while the earlier one waits.
    let watched = violations(vec![
        Apply(claim("run-199", a, "pending")),
        Apply(claim("run-181", b, "bound")),
    ]);
    assert_eq!(
        watched,
        ["run-181 served before run-199, which waited for context c1 since before it"]
    );
}
