//! Claims at burst rate and a queue handed over, on the stand-in's workspace: 200 warm
//! environments across 200 contexts, and 200 claims created at once (as fast as this
//! client's bulk concurrency lets it), then paced at 50/s and at 100/s — claim created →
//! claim Ready, the claims per second sustained, and the operator's CPU seconds; then 50
//! claims queued on one context, each released once Ready: release → next claim Ready.
//!
//! Every instant is this client's (its watches, its requests); the closest peer,
//! kubernetes-sigs/agent-sandbox, publishes p50 92 ms / p99 376 ms at 45 claims/s for
//! binding its warm sandboxes.
//!
//! Beside them, what this API server allows, measured the same way: the writes each
//! claim cost (every write the audit log has in a round, over its claims), the claims per
//! second this client sustains making those writes itself at the operator's concurrency,
//! and the hand-over's requests made by this client alone, one after another — both in a
//! namespace no operator watches.
//!
//! And where a round's CPU went — the operator's, the API server's and etcd's, this
//! bench's — per claim, with the claims per second the machine's cores could sustain at
//! that cost if they did nothing else: when that ceiling is below a bar, the bar waits on
//! fewer or cheaper requests, not on the operator's latency.

use std::time::{Duration, Instant};

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{
    DeleteParams, ListParams, ObjectList, ObjectMeta, PartialObjectMeta, Patch, PatchParams,
    PostParams,
};
use serde_json::json;
use testmesh::lifecycle::Phase;
use testmesh::resources::{TestEnvironment, TestEnvironmentClaim};
use testmesh_testenv::{AuditedRequest, ControlPlane, OPERATOR_USER, with_temp_namespace};

use super::{
    CONCURRENCY, Figure, OPERATOR_CONCURRENCY, StandInWorkspace, claim, cpu_seconds, create_many,
    environment, now, received_at, scaled,
};

/// Warm environments (one per context) and claims per round, before the scale.
const BURST: usize = 200;
/// Claims queued on one context, before the scale.
const QUEUED: usize = 50;
/// How long the CPU at rest is measured for.
const AT_REST: Duration = Duration::from_secs(3);

/// One round of claims: how they were paced and what came of it.
pub struct Round {
    pub pace: Option<u32>,
    pub latency: Figure,
    /// Claims divided by the span from the first create sent to the last Ready seen.
    pub claims_per_second: f64,
    /// CPU seconds from the first create to the last Ready.
    pub cpu: CpuSpent,
    /// Every write the API server took from the first create to the last Ready (the
    /// claims' creates among them), over the claims: read from the audit log once the
    /// rounds are done.
    pub writes_per_claim: f64,
    /// The operator's reads over the same span (GETs, LISTs): its fresh reads.
    pub operator_reads: (usize, usize),
    /// From the first create to the last Ready.
    window: (Timestamp, Timestamp),
}

impl Round {
    pub fn label(&self) -> String {
        match self.pace {
            None => "unpaced".to_owned(),
            Some(rate) => format!("paced {rate}/s"),
        }
    }
}

/// What the burst rounds and the hand-over measured.
pub struct Figures {
    pub environments: usize,
    /// What the operator, the API server and etcd, and this bench spend per second with
    /// the warm environments and no claim: the part of a round's CPU that is not its
    /// claims'.
    pub at_rest: CpuSpent,
    pub rounds: Vec<Round>,
    /// The unpaced round's writes made by this client alone (see [`burst_floor`]).
    pub burst_floor: BurstFloor,
    pub hand_over: Figure,
    /// The operator's fresh reads of claims during the hand-overs, as the API server took
    /// them.
    pub fresh_reads: Figure,
    /// The hand-over's requests made by this client alone (see [`chain_floor`]).
    pub chain_floor: Figure,
}

/// CPU seconds spent over a span, by process.
#[derive(Clone, Copy, Default)]
pub struct CpuSpent {
    /// The operator's; none in a floor, which runs without it.
    pub operator: Option<f64>,
    /// The API server's and etcd's together.
    pub servers: f64,
    /// This bench's own: its requests and watches.
    pub bench: f64,
}

impl CpuSpent {
    /// The CPU seconds each of them has used so far (`operator` is its process, if any).
    fn so_far(operator: Option<u32>) -> Self {
        let servers = ControlPlane::shared().server_pids().expect("server pids");
        CpuSpent {
            operator: operator.map(cpu_seconds),
            servers: servers.into_iter().map(cpu_seconds).sum(),
            bench: cpu_seconds(std::process::id()),
        }
    }

    /// What each has used since `before`.
    fn since(before: Self, operator: Option<u32>) -> Self {
        let now = Self::so_far(operator);
        CpuSpent {
            operator: now
                .operator
                .zip(before.operator)
                .map(|(now, then)| now - then),
            servers: now.servers - before.servers,
            bench: now.bench - before.bench,
        }
    }

    /// The same, per second of `span`.
    fn per_second(self, span: Duration) -> Self {
        let seconds = span.as_secs_f64();
        CpuSpent {
            operator: self.operator.map(|operator| operator / seconds),
            servers: self.servers / seconds,
            bench: self.bench / seconds,
        }
    }

    pub fn total(&self) -> f64 {
        self.operator.unwrap_or_default() + self.servers + self.bench
    }

    /// The claims per second this machine's cores sustain if each claim costs what
    /// `self` over `claims` did and nothing else runs.
    pub fn ceiling(&self, claims: usize) -> f64 {
        cores() as f64 * claims as f64 / self.total()
    }
}

/// The machine's cores, as this process may use them.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The unpaced round without the operator (see [`burst_floor`]).
pub struct BurstFloor {
    pub claims_per_second: f64,
    pub cpu: CpuSpent,
}

/// The burst rounds and the queue hand-over; tears their environments down before it
/// returns, so the next part starts from quiet.
pub async fn measure(workspace: &StandInWorkspace, scale: f64, floor_p99: f64) -> Figures {
    let StandInWorkspace {
        ws,
        argo,
        operator,
        environments,
        claims,
        seen,
        claim_ready,
    } = workspace;
    let minute = Duration::from_secs(60);
    let count = scaled(scale, BURST);
    create_many(argo, environments, ws, "burst", count, 600, true).await;
    seen.count("burst-", count, 5 * minute, |s| {
        s.phase == Some(Phase::Warm)
    })
    .await;
    bootstrapped(&format!("{ws}-burst-"), count).await;
    let pid = operator.pid().expect("operator pid");
    let at_rest = {
        let before = CpuSpent::so_far(Some(pid));
        tokio::time::sleep(AT_REST).await;
        CpuSpent::since(before, Some(pid)).per_second(AT_REST)
    };

    let mut rounds = Vec::new();
    for (round, pace) in [None, Some(50), Some(100)].into_iter().enumerate() {
        let bar = match pace {
            Some(100) => ("p99 <= 100 ms", vec![(99.0, 100.0)]),
            _ => ("-", Vec::new()),
        };
        let name: &'static str = match pace {
            None => "burst: claim -> Ready, unpaced",
            Some(50) => "burst: claim -> Ready, paced 50/s",
            _ => "burst: claim -> Ready, paced 100/s",
        };
        let mut latency = Figure::new(name, bar.0, bar.1);
        let names: Vec<String> = (0..count).map(|i| format!("b{round}-{i:05}")).collect();
        let cpu_before = CpuSpent::so_far(Some(pid));
        let first_sent = Instant::now();
        let window_from = now();
        let create = |i: usize| {
            let name = names[i].clone();
            async move {
                if let Some(rate) = pace {
                    let due = first_sent + Duration::from_secs_f64(i as f64 / f64::from(rate));
                    tokio::time::sleep_until(due.into()).await;
                }
                let sent = Instant::now();
                claims
                    .create(
                        &PostParams::default(),
                        &claim(&name, &format!("burst-{i:05}")),
                    )
                    .await
                    .expect("claim");
                (name, sent)
            }
        };
        // Paced: every claim waits for its instant, so none is held up by another's
        // request. Unpaced: as many in flight as this client's bulk creates.
        let in_flight = if pace.is_some() { count } else { CONCURRENCY };
        let sent: Vec<(String, Instant)> = futures::stream::iter(0..count)
            .map(create)
            .buffer_unordered(in_flight)
            .collect()
            .await;
        let mut last_ready = first_sent;
        for (name, sent_at) in &sent {
            let ready = claim_ready.wait(name, minute).await;
            last_ready = last_ready.max(ready);
            latency
                .samples
                .push(ready.duration_since(*sent_at).as_secs_f64() * 1e3);
        }
        let cpu = CpuSpent::since(cpu_before, Some(pid));
        let window_to = window_from
            .checked_add(last_ready.duration_since(first_sent))
            .expect("instant");
        // Bound as this client's environment watch sees it, so that the release below is
        // not mistaken for done by a watch that lags behind the claims'.
        let prefix = format!("b{round}-");
        seen.count("burst-", count, minute, |s| {
            s.claimed_by.iter().any(|c| c.starts_with(&prefix))
        })
        .await;
        let span = last_ready.duration_since(first_sent).as_secs_f64();
        rounds.push(Round {
            pace,
            latency,
            claims_per_second: count as f64 / span,
            cpu,
            writes_per_claim: f64::NAN,
            operator_reads: (0, 0),
            window: (window_from, window_to),
        });
        // Released, and every environment free again, before the next round.
        futures::stream::iter(&names)
            .for_each_concurrent(CONCURRENCY, |name| async move {
                claims
                    .delete(name, &DeleteParams::default())
                    .await
                    .expect("release");
            })
            .await;
        seen.count("burst-", count, 5 * minute, |s| s.claimed_by.is_empty())
            .await;
    }

    let burst_floor = burst_floor(count).await;

    // Queue hand-over: one environment, claims queued on its context in creation order.
    create_many(argo, environments, ws, "queue", 1, 600, true).await;
    seen.one("queue-00000", 5 * minute, |s| s.phase == Some(Phase::Warm))
        .await;
    let queued = scaled(scale, QUEUED).max(2);
    let names: Vec<String> = (0..queued).map(|i| format!("q-{i:05}")).collect();
    for name in &names {
        claims
            .create(&PostParams::default(), &claim(name, "queue-00000"))
            .await
            .expect("queued claim");
    }
    let limit = 2.0 * floor_p99;
    let mut hand_over = Figure::new(
        "queue: release -> next claim Ready",
        format!("p99 <= 2 x floor p99 ({limit:.1} ms)"),
        vec![(99.0, limit)],
    );
    claim_ready.wait(&names[0], minute).await;
    let hand_overs_from = now();
    for pair in names.windows(2) {
        let released = Instant::now();
        claims
            .delete(&pair[0], &DeleteParams::default())
            .await
            .expect("release");
        let next_ready = claim_ready.wait(&pair[1], minute).await;
        hand_over
            .samples
            .push(next_ready.duration_since(released).as_secs_f64() * 1e3);
    }
    let hand_overs = (hand_overs_from, now());
    claims
        .delete(&names[queued - 1], &DeleteParams::default())
        .await
        .expect("release");

    // Gone before the next part: torn down, namespaces and all.
    futures::stream::iter(
        (0..count)
            .map(|i| format!("burst-{i:05}"))
            .chain(["queue-00000".to_owned()]),
    )
    .for_each_concurrent(CONCURRENCY, |name| async move {
        environments
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete environment");
    })
    .await;
    seen.count("burst-", count, 10 * minute, |s| {
        s.phase == Some(Phase::Destroyed)
    })
    .await;
    seen.one("queue-00000", 10 * minute, |s| {
        s.phase == Some(Phase::Destroyed)
    })
    .await;

    let chain_floor = chain_floor(queued - 1).await;

    // The audit log, read once for every window.
    let audited = ControlPlane::shared()
        .audited_requests()
        .expect("audit log");
    for round in &mut rounds {
        round.writes_per_claim = writes_between(&audited, round.window) as f64 / count as f64;
        round.operator_reads = gets_and_lists(&audited, round.window);
    }
    let fresh_reads = claim_reads_between(&audited, hand_overs);

    Figures {
        environments: count,
        at_rest,
        rounds,
        burst_floor,
        hand_over,
        fresh_reads,
        chain_floor,
    }
}

/// Waits (up to a minute) until the kube-controller-manager has given `count` namespaces
/// named `prefix…` their `default` ServiceAccount and `kube-root-ca.crt` ConfigMap: the
/// environments are warm before it is done, and a round must not share the API server
/// with its backlog.
async fn bootstrapped(prefix: &str, count: usize) {
    let client = ControlPlane::shared().admin_client().await.expect("client");
    let accounts: Api<ServiceAccount> = Api::all(client.clone());
    let ca_maps: Api<ConfigMap> = Api::all(client);
    fn in_prefix<K: Clone>(listed: ObjectList<PartialObjectMeta<K>>, prefix: &str) -> usize {
        let namespaces = listed
            .items
            .into_iter()
            .filter_map(|o| o.metadata.namespace);
        namespaces.filter(|n| n.starts_with(prefix)).count()
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let named = |name: &str| ListParams::default().fields(&format!("metadata.name={name}"));
        let (default_account, root_ca) = (named("default"), named("kube-root-ca.crt"));
        let (accounts, ca_maps) = futures::join!(
            accounts.list_metadata(&default_account),
            ca_maps.list_metadata(&root_ca),
        );
        let done = in_prefix(accounts.expect("service accounts"), prefix) >= count
            && in_prefix(ca_maps.expect("config maps"), prefix) >= count;
        if done {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!("namespaces {prefix}… not all bootstrapped after 60 s; measuring anyway");
}

/// The operator's reads of claims (GETs and LISTs) received within `(from, to)`: its
/// fresh reads (its cache is fed by a watch), each from received to answered.
fn claim_reads_between(audited: &[AuditedRequest], window: (Timestamp, Timestamp)) -> Figure {
    let mut reads = Figure::unbarred("  of which the operator's fresh claim reads");
    reads.samples = operator_reads_between(audited, window)
        .filter(|request| request.resource == "testenvironmentclaims")
        .map(|request| {
            let completed: Timestamp = request.completed_at.parse().expect("audit timestamp");
            completed.duration_since(received_at(request)).as_secs_f64() * 1e3
        })
        .collect();
    reads
}

/// How many of the operator's reads within `window` were GETs and how many LISTs.
fn gets_and_lists(audited: &[AuditedRequest], window: (Timestamp, Timestamp)) -> (usize, usize) {
    operator_reads_between(audited, window).fold((0, 0), |(gets, lists), request| {
        match request.verb.as_str() {
            "get" => (gets + 1, lists),
            _ => (gets, lists + 1),
        }
    })
}

/// The operator's GETs and LISTs (its watches are verb `watch`) the audit log has
/// received within `(from, to)`.
fn operator_reads_between(
    audited: &[AuditedRequest],
    (from, to): (Timestamp, Timestamp),
) -> impl Iterator<Item = &AuditedRequest> {
    audited.iter().filter(move |request| {
        request.user == OPERATOR_USER
            && ["get", "list"].contains(&request.verb.as_str())
            && (from..=to).contains(&received_at(request))
    })
}

/// How many writes the audit log has received within `(from, to)`.
fn writes_between(audited: &[AuditedRequest], (from, to): (Timestamp, Timestamp)) -> usize {
    audited
        .iter()
        .filter(|request| request.is_write())
        .filter(|request| (from..=to).contains(&received_at(request)))
        .count()
}

/// The unpaced round without the operator: for each of `count` claims, this client
/// makes the writes a claim costs, one after another — the claim created, the
/// environment's status naming it and the claim's saying it is bound (server-side apply,
/// as the operator writes them), an Event after each — the operator's reconcile
/// concurrency of claims at a time, in a namespace no operator watches. Claims per second.
async fn burst_floor(count: usize) -> BurstFloor {
    let client = ControlPlane::shared().admin_client().await.expect("client");
    let namespace = with_temp_namespace(&client, "bench-burst-floor")
        .await
        .expect("namespace");
    let ws = namespace.name();
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), ws);
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client.clone(), ws);
    let events: Api<Event> = Api::namespaced(client, ws);
    let names: Vec<String> = (0..count).map(|i| format!("f-{i:05}")).collect();
    futures::stream::iter(&names)
        .for_each_concurrent(CONCURRENCY, |name| {
            let environments = &environments;
            async move {
                environments
                    .create(
                        &PostParams::default(),
                        &environment(name, &format!("{ws}-{name}"), 600),
                    )
                    .await
                    .expect("environment");
            }
        })
        .await;
    let apply = PatchParams::apply("bench-burst-floor").force();
    let status = |kind: &str, status: serde_json::Value| {
        Patch::Apply(json!({"apiVersion": "testmesh.io/v1alpha1", "kind": kind, "status": status}))
    };
    let event = |regarding: &str, kind: &str| Event {
        metadata: ObjectMeta {
            // Named as kube-runtime names its events: the object's name and the time.
            name: Some(format!(
                "{regarding}.{:x}",
                Timestamp::now().as_nanosecond()
            )),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(Timestamp::now())),
        action: Some("PhaseChange".into()),
        reason: Some("Bound".into()),
        note: Some("pending → bound".into()),
        type_: Some("Normal".into()),
        reporting_controller: Some("bench-burst-floor".into()),
        reporting_instance: Some("bench".into()),
        regarding: Some(ObjectReference {
            api_version: Some("testmesh.io/v1alpha1".into()),
            kind: Some(kind.into()),
            name: Some(regarding.into()),
            namespace: Some(ws.to_owned()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    let started = Instant::now();
    let cpu_before = CpuSpent::so_far(None);
    futures::stream::iter(&names)
        .for_each_concurrent(OPERATOR_CONCURRENCY, |name| {
            let (environments, claims, events) = (&environments, &claims, &events);
            let (apply, status, event) = (&apply, &status, &event);
            async move {
                let run = format!("run-{name}");
                claims
                    .create(&PostParams::default(), &claim(&run, name))
                    .await
                    .expect("claim");
                let held = status("TestEnvironment", json!({"claimedBy": [run]}));
                environments
                    .patch_status(name, apply, &held)
                    .await
                    .expect("environment status");
                events
                    .create(&PostParams::default(), &event(name, "TestEnvironment"))
                    .await
                    .expect("event");
                let bound = status(
                    "TestEnvironmentClaim",
                    json!({"phase": "bound", "environmentName": name}),
                );
                claims
                    .patch_status(&run, apply, &bound)
                    .await
                    .expect("claim status");
                events
                    .create(&PostParams::default(), &event(&run, "TestEnvironmentClaim"))
                    .await
                    .expect("event");
            }
        })
        .await;
    let claims_per_second = count as f64 / started.elapsed().as_secs_f64();
    let cpu = CpuSpent::since(cpu_before, None);
    namespace
        .cleanup()
        .await
        .expect("delete burst floor namespace");
    BurstFloor {
        claims_per_second,
        cpu,
    }
}

/// The least a hand-over can cost on this API server: the requests it is made of, by
/// this client, each sent when the one before has returned — the run's claim deleted, the
/// environment's status naming the next claim, the next claim's status saying it is
/// bound — `samples` times, in a namespace no operator watches. The operator adds its
/// fresh read, its decisions and the watch deliveries between them.
async fn chain_floor(samples: usize) -> Figure {
    let client = ControlPlane::shared().admin_client().await.expect("client");
    let namespace = with_temp_namespace(&client, "bench-chain-floor")
        .await
        .expect("namespace");
    let environments: Api<TestEnvironment> = Api::namespaced(client.clone(), namespace.name());
    let claims: Api<TestEnvironmentClaim> = Api::namespaced(client, namespace.name());
    environments
        .create(
            &PostParams::default(),
            &environment("chain", &format!("{}-chain", namespace.name()), 600),
        )
        .await
        .expect("environment");
    let names: Vec<String> = (0..=samples).map(|i| format!("c-{i:05}")).collect();
    for name in &names {
        claims
            .create(&PostParams::default(), &claim(name, "chain"))
            .await
            .expect("claim");
    }
    let mut chain = Figure::unbarred("queue: the same requests, this client alone");
    for pair in names.windows(2) {
        let started = Instant::now();
        claims
            .delete(&pair[0], &DeleteParams::default())
            .await
            .expect("release");
        let held = json!({"status": {"claimedBy": [pair[1]]}});
        environments
            .patch_status("chain", &PatchParams::default(), &Patch::Merge(&held))
            .await
            .expect("environment status");
        let bound = json!({"status": {"phase": "bound", "environmentName": "chain"}});
        claims
            .patch_status(&pair[1], &PatchParams::default(), &Patch::Merge(&bound))
            .await
            .expect("claim status");
        chain.samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    namespace.cleanup().await.expect("delete chain namespace");
    chain
}

impl Figures {
    pub fn to_json(&self, floor: &Figure) -> serde_json::Value {
        let figure = |f: &Figure| {
            serde_json::json!({
                "name": f.name, "n": f.samples.len(), "bar": f.bar, "met": f.met(),
                "p50_ms": f.percentile(50.0), "p99_ms": f.percentile(99.0),
                "p99_over_floor": f.percentile(99.0) / floor.percentile(99.0),
            })
        };
        let cpu = |c: &CpuSpent| serde_json::json!({"operator": c.operator, "api_server_and_etcd": c.servers, "bench": c.bench});
        serde_json::json!({
            "environments": self.environments,
            "cpu_seconds_per_second_at_rest": cpu(&self.at_rest),
            "rounds": self.rounds.iter().map(|r| serde_json::json!({
                "pace_per_second": r.pace, "latency": figure(&r.latency),
                "claims_per_second": r.claims_per_second, "cpu_seconds": cpu(&r.cpu),
                "cpu_ceiling_claims_per_second": r.cpu.ceiling(self.environments),
                "writes_per_claim": r.writes_per_claim,
                "operator_gets": r.operator_reads.0, "operator_lists": r.operator_reads.1,
            })).collect::<Vec<_>>(),
            "burst_floor": {
                "claims_per_second": self.burst_floor.claims_per_second,
                "cpu_seconds": cpu(&self.burst_floor.cpu),
                "cpu_ceiling_claims_per_second": self.burst_floor.cpu.ceiling(self.environments),
            },
            "hand_over": figure(&self.hand_over),
            "hand_over_fresh_claim_reads": figure(&self.fresh_reads),
            "hand_over_chain_floor": figure(&self.chain_floor),
        })
    }
}
