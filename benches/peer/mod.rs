//! The peer in the side-by-side expiry benchmark: a TTL cleaner installed from a package
//! registry, run with its default settings against the same control plane as TestMesh, on
//! the same kind of expiring namespaces, and measured the same way — from the objects' own
//! timestamps and this client's watch events, and from the API server's audit log — never
//! from the peer's own reports.
//!
//! The peer is Kyverno's cleanup controller (`make peer-tools` builds it into
//! `target/tools/bin`), which deletes anything labelled `cleanup.kyverno.io/ttl` once
//! `creationTimestamp + ttl` has passed. TwiN's `k8s-ttl-controller` and the Go ports of
//! kube-janitor are not served by the Go module proxy this project can reach.
//!
//! How it works, from its source (`pkg/controllers/ttl`): every minute
//! (`--ttlReconciliationInterval`, first one minute after start) it rediscovers every API
//! resource, asks with three SelfSubjectAccessReviews per resource whether it may list,
//! watch and delete it, and starts a metadata informer (label selector
//! `cleanup.kyverno.io/ttl`) for each resource it is not yet watching. Each labelled object
//! is queued again for the instant its TTL runs out, then deleted with one DELETE.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use testmesh_testenv::{AuditedRequest, ControlPlane, install_crds_from_yaml, with_temp_namespace};
use tokio::sync::Notify;

/// What is measured, as `make peer-tools` pins it.
pub const PEER: &str = "Kyverno cleanup controller";
pub const PEER_VERSION: &str = "v1.19.1";
/// The peer's executable; client-go also names the peer's requests after it (User-Agent).
const BINARY: &str = "kyverno-cleanup-controller";
/// The peer's TTL label: a Go duration counted from `metadata.creationTimestamp`.
const TTL_LABEL: &str = "cleanup.kyverno.io/ttl";
/// Marks this run's namespaces, for the watch and the clean-up.
const RUN_LABEL: &str = "testmesh.io/peer-bench";
/// How the peer asks whether it may list, watch and delete a resource.
const REVIEWS: &str = "selfsubjectaccessreviews";
/// The peer's validating webhook configurations, left behind when it is killed.
const PEER_WEBHOOKS: [&str; 2] = [
    "kyverno-cleanup-validating-webhook-cfg",
    "kyverno-ttl-validating-webhook-cfg",
];
/// Due instants are spread uniformly over one minute, starting a minute after creation
/// begins (creation takes a fraction of that).
const FIRST_DUE: SignedDuration = SignedDuration::from_secs(60);
const DUE_SPREAD: SignedDuration = SignedDuration::from_secs(60);
const CREATE_CONCURRENCY: usize = 16;
/// The peer's first round starts its informers one interval (a minute) after start.
const STARTUP_TIMEOUT: SignedDuration = SignedDuration::from_secs(180);
/// After the last due instant, how long a namespace may take to be deleted before it is
/// counted as not deleted.
const DELETION_GRACE: SignedDuration = SignedDuration::from_secs(120);
/// A round (discovery + access reviews) closes the measured window; one comes every minute.
const ROUND_TIMEOUT: SignedDuration = SignedDuration::from_secs(90);
/// The product specification's sweep interval, for the arithmetic reference line.
const SPEC_SWEEP: f64 = 300.0;

/// Lateness samples, in seconds.
pub struct Lateness {
    pub samples: Vec<f64>,
}

impl Lateness {
    /// Nearest-rank percentile, as in `lifecycle.rs`.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.samples.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "n": self.samples.len(),
            "p50_s": self.percentile(50.0),
            "p99_s": self.percentile(99.0),
            "max_s": self.percentile(100.0),
        })
    }
}

/// What the peer did with `namespaces` expiring namespaces.
pub struct PeerFigures {
    pub peer: String,
    pub namespaces: usize,
    /// Watch-event receive instant − due instant (finest; includes the watch's delivery).
    pub lateness_watch: Lateness,
    /// `metadata.deletionTimestamp` + 1 s − due instant: an upper bound from the object's
    /// own timestamp, which the server truncates to the second.
    pub lateness_deletion_timestamp: Lateness,
    /// Namespaces the peer had not deleted `DELETION_GRACE` after the last due instant.
    pub not_deleted: usize,
    pub rss_mib: f64,
    pub peak_rss_mib: f64,
    /// CPU (user + system) from start to the end of the window, and since it was ready
    /// (its first round had started the namespace informer).
    pub cpu_seconds_total: f64,
    pub cpu_seconds_since_ready: f64,
    pub clock_ticks: ClockTicks,
    /// Complete rounds in the window (first round start after creation → first round start
    /// after the last deletion) and their mean length.
    pub rounds: usize,
    pub round_seconds: f64,
    /// Mean requests per round, by request kind (`verb resource` or `verb /path`).
    pub per_round: Vec<(String, f64)>,
    /// Access reviews the peer's admission webhook made per labelled namespace created.
    pub admission_reviews_per_create: f64,
    /// DELETEs of this run's namespaces: total, beyond the first per namespace, by code.
    pub deletes: usize,
    pub repeated_deletes: usize,
    pub delete_codes: BTreeMap<u16, usize>,
}

/// Where `CLK_TCK` (the unit of `/proc/<pid>/stat` CPU times) came from.
#[derive(Clone, Copy)]
pub struct ClockTicks {
    pub per_second: u64,
    pub from_getconf: bool,
}

impl PeerFigures {
    pub fn print(&self) {
        println!();
        println!(
            "peer: {} with its default settings, {} namespaces due uniformly over {} s",
            self.peer,
            self.namespaces,
            DUE_SPREAD.as_secs()
        );
        println!(
            "{:<56} {:>6} {:>9} {:>9} {:>9}",
            "expiry lateness (due = creationTimestamp + TTL)", "n", "p50 s", "p99 s", "max s"
        );
        for (name, lateness) in [
            ("  watch event received - due", &self.lateness_watch),
            (
                "  deletionTimestamp + 1 s - due (upper bound)",
                &self.lateness_deletion_timestamp,
            ),
        ] {
            println!(
                "{:<56} {:>6} {:>9.3} {:>9.3} {:>9.3}",
                name,
                lateness.samples.len(),
                lateness.percentile(50.0),
                lateness.percentile(99.0),
                lateness.percentile(100.0)
            );
        }
        if self.not_deleted > 0 {
            println!(
                "  not deleted within {} s of the last due instant: {}",
                DELETION_GRACE.as_secs(),
                self.not_deleted
            );
        }
        println!(
            "  for reference, a {SPEC_SWEEP:.0} s sweep (arithmetic, not measured): lateness uniform in [0, {SPEC_SWEEP:.0}) s, p50 {:.0} s, p99 {:.0} s",
            SPEC_SWEEP * 0.5,
            SPEC_SWEEP * 0.99
        );
        println!(
            "peer process: resident {:.1} MiB (peak {:.1} MiB), CPU {:.2} s since start, {:.2} s since ready ({} ticks/s{})",
            self.rss_mib,
            self.peak_rss_mib,
            self.cpu_seconds_total,
            self.cpu_seconds_since_ready,
            self.clock_ticks.per_second,
            if self.clock_ticks.from_getconf {
                ", getconf CLK_TCK"
            } else {
                ", assumed"
            }
        );
        println!(
            "peer API requests per round (mean of {} rounds of {:.1} s, from the audit log):",
            self.rounds, self.round_seconds
        );
        for (kind, mean) in &self.per_round {
            println!("  {mean:>8.1}  {kind}");
        }
        println!(
            "  + {:.1} access reviews per labelled namespace created (its admission webhook)",
            self.admission_reviews_per_create
        );
        println!(
            "DELETEs of the {} namespaces: {} ({} repeated), by code {:?}",
            self.namespaces, self.deletes, self.repeated_deletes, self.delete_codes
        );
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "peer": self.peer,
            "namespaces": self.namespaces,
            "lateness_watch": self.lateness_watch.to_json(),
            "lateness_deletion_timestamp": self.lateness_deletion_timestamp.to_json(),
            "not_deleted": self.not_deleted,
            "rss_mib": self.rss_mib,
            "peak_rss_mib": self.peak_rss_mib,
            "cpu_seconds_total": self.cpu_seconds_total,
            "cpu_seconds_since_ready": self.cpu_seconds_since_ready,
            "clock_ticks_per_second": self.clock_ticks.per_second,
            "rounds": self.rounds,
            "round_seconds": self.round_seconds,
            "requests_per_round": self.per_round.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "admission_reviews_per_create": self.admission_reviews_per_create,
            "deletes": self.deletes,
            "repeated_deletes": self.repeated_deletes,
            "delete_codes": self.delete_codes.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })
    }
}

/// Runs the peer against `control_plane` as [`testmesh_testenv::OPERATOR_USER`], lets it
/// expire `namespaces` namespaces, and measures it. Cleans up after itself: the namespaces,
/// the peer's CRDs, webhook configurations and namespace, and the process.
pub async fn measure(control_plane: &ControlPlane, namespaces: usize) -> PeerFigures {
    let tools = tools_dir();
    assert!(
        tools
            .join("bin")
            .join(format!(".{BINARY}-{PEER_VERSION}"))
            .is_file(),
        "{BINARY} {PEER_VERSION} is not built: run `make peer-tools`"
    );
    let client = control_plane.admin_client().await.expect("client");
    let crds = install_peer_crds(&client, &tools.join("kyverno-crds")).await;
    let home = with_temp_namespace(&client, "kyverno")
        .await
        .expect("peer namespace");
    let run = home.name().to_owned();
    let mut peer = Peer::start(control_plane, &tools.join("bin").join(BINARY), &run);

    let namespaces_api: Api<Namespace> = Api::all(client.clone());
    let deletions = Deletions::default();
    deletions.follow(namespaces_api.clone(), &format!("{RUN_LABEL}={run}"));

    // The peer acts once its first round has started the namespace informer: a namespace
    // due at once tells when that is.
    let canary = create_expiring(
        &namespaces_api,
        &run,
        format!("{run}-canary"),
        Timestamp::now(),
    )
    .await;
    let startup_until = Timestamp::now() + STARTUP_TIMEOUT;
    let canary = [canary.name];
    while !deletions.missing(&canary).is_empty() {
        peer.assert_running();
        assert!(
            Timestamp::now() < startup_until,
            "the peer did not delete a due namespace within {STARTUP_TIMEOUT:?}; its log: {}",
            peer.log.display()
        );
        deletions
            .wait_all(&canary, Timestamp::now() + SignedDuration::from_secs(1))
            .await;
    }
    let ready = peer.usage();

    let created_from = Timestamp::now();
    let first_due = created_from + FIRST_DUE;
    let expiring: Vec<Expiring> = stream::iter(0..namespaces)
        .map(|i| {
            let due = first_due + DUE_SPREAD * i as i32 / namespaces.max(1) as i32;
            create_expiring(&namespaces_api, &run, format!("{run}-{i:05}"), due)
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let created_until = Timestamp::now();
    assert!(
        created_until < first_due,
        "creating {namespaces} namespaces took longer than {FIRST_DUE:?}"
    );
    let names: Vec<String> = expiring.iter().map(|e| e.name.clone()).collect();
    let last_due = expiring.iter().map(|e| e.due).max().unwrap_or(first_due);
    deletions.wait_all(&names, last_due + DELETION_GRACE).await;
    let last_deletion = deletions.latest(&names).unwrap_or(last_due);

    // The window closes at the first round after the last deletion.
    let rounds_until = Timestamp::now() + ROUND_TIMEOUT;
    let requests = loop {
        let requests = peer_requests(control_plane);
        let after_last = round_starts(&requests)
            .into_iter()
            .any(|start| start > last_deletion);
        if after_last || Timestamp::now() > rounds_until {
            break requests;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let end = peer.usage();
    let clock_ticks = peer.clock_ticks;
    peer.stop();

    let figures = figures(FiguresInput {
        namespaces,
        expiring: &expiring,
        deletions: &deletions,
        requests: &requests,
        created: (created_from, created_until),
        last_deletion,
        ready,
        end,
        clock_ticks,
    });
    clean_up(&client, &namespaces_api, &run, &crds).await;
    home.cleanup().await.expect("delete the peer's namespace");
    figures
}

/// `<workspace>/target/tools`, where `make peer-tools` puts the peer and its CRDs.
fn tools_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("tools")
}

async fn install_peer_crds(client: &Client, dir: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make peer-tools`", dir.display()))
        .map(|entry| entry.expect("CRD file").path())
        .collect();
    files.sort();
    let mut names = Vec::new();
    for file in files {
        let yaml = std::fs::read_to_string(&file).expect("CRD file");
        names.extend(
            install_crds_from_yaml(client, &yaml)
                .await
                .unwrap_or_else(|e| panic!("install {}: {e}", file.display())),
        );
    }
    names
}

/// The peer's process, under `setpriv --pdeathsig KILL` so it dies with the bench.
struct Peer {
    child: Child,
    log: PathBuf,
    clock_ticks: ClockTicks,
}

/// Resident memory and CPU time of the peer at one instant, from `/proc/<pid>`.
#[derive(Clone, Copy)]
struct Usage {
    rss_kib: u64,
    peak_rss_kib: u64,
    cpu_ticks: u64,
}

impl Peer {
    /// Starts the peer with its defaults, except where it must differ out of a cluster:
    /// the kubeconfig, its namespace, and free loopback ports for its webhook server and
    /// metrics. Its admission webhook is reachable, as in a cluster: with `--serverIP`
    /// (which may carry a port) the webhook configurations name that URL.
    fn start(control_plane: &ControlPlane, binary: &Path, namespace: &str) -> Peer {
        let log = control_plane.log_dir().join(format!("{BINARY}.log"));
        let output = std::fs::File::create(&log).expect("peer log");
        let webhook_port = free_port().to_string();
        let child = Command::new("setpriv")
            .args(["--pdeathsig", "KILL", "--"])
            .arg(binary)
            .arg(format!(
                "--kubeconfig={}",
                control_plane.operator_kubeconfig_path().display()
            ))
            .arg(format!(
                "--caSecretName={BINARY}.{namespace}.svc.kyverno-tls-ca"
            ))
            .arg(format!(
                "--tlsSecretName={BINARY}.{namespace}.svc.kyverno-tls-pair"
            ))
            .arg(format!("--serverIP=127.0.0.1:{webhook_port}"))
            .arg("--cleanupServerHost=127.0.0.1")
            .arg(format!("--cleanupServerPort={webhook_port}"))
            .args(["--metricsHost=127.0.0.1"])
            .arg(format!("--metricsPort={}", free_port()))
            // What Kyverno's Helm chart sets; the peer refuses to start without them.
            .env("KYVERNO_NAMESPACE", namespace)
            .env("KYVERNO_SERVICEACCOUNT_NAME", BINARY)
            .env("KYVERNO_DEPLOYMENT", BINARY)
            .env("KYVERNO_POD_NAME", format!("{BINARY}-bench"))
            .env("KYVERNO_SVC", BINARY)
            .env("INIT_CONFIG", "kyverno")
            .env("METRICS_CONFIG", "kyverno-metrics")
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("log handle"))
            .stderr(output)
            .spawn()
            .expect("start the peer (setpriv)");
        Peer {
            child,
            log,
            clock_ticks: clock_ticks(),
        }
    }

    fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|e| panic!("the peer is gone ({e}); its log: {}", self.log.display()));
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(field))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("peer stat");
        // Fields after the command name (which may hold spaces): state is the first,
        // utime the 12th, stime the 13th.
        let fields: Vec<u64> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .unwrap_or_default()
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Usage {
            rss_kib: kib("VmRSS:"),
            peak_rss_kib: kib("VmHWM:"),
            cpu_ticks: fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0),
        }
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!(
                "the peer exited ({status}); its log: {}",
                self.log.display()
            );
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> ClockTicks {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .map_or(
            ClockTicks {
                per_second: 100,
                from_getconf: false,
            },
            |per_second| ClockTicks {
                per_second,
                from_getconf: true,
            },
        )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// One namespace of the run and the instant the peer should delete it, computed as the
/// peer does: its `creationTimestamp` (whole seconds) plus the TTL label's duration.
struct Expiring {
    name: String,
    due: Timestamp,
}

/// Creates `name` with a TTL that makes it due at `due`, give or take the second the
/// server stamps as its creation time.
async fn create_expiring(
    api: &Api<Namespace>,
    run: &str,
    name: String,
    due: Timestamp,
) -> Expiring {
    let this_second = Timestamp::from_second(Timestamp::now().as_second()).expect("timestamp");
    let ttl =
        SignedDuration::from_millis(due.duration_since(this_second).as_millis().max(0) as i64);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(
                [
                    (TTL_LABEL.to_owned(), format!("{}ms", ttl.as_millis())),
                    (RUN_LABEL.to_owned(), run.to_owned()),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    let created = api
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
    let created_at = created
        .metadata
        .creation_timestamp
        .expect("creationTimestamp")
        .0;
    Expiring {
        name,
        due: created_at + ttl,
    }
}

/// When this client's watch first saw each namespace terminating (or gone), and its
/// `deletionTimestamp`.
#[derive(Clone, Default)]
struct Deletions {
    seen: Arc<Mutex<HashMap<String, Deletion>>>,
    changed: Arc<Notify>,
}

#[derive(Clone, Copy)]
struct Deletion {
    received_at: Timestamp,
    deletion_timestamp: Option<Timestamp>,
}

impl Deletions {
    fn follow(&self, api: Api<Namespace>, selector: &str) {
        let deletions = self.clone();
        let config = watcher::Config::default().labels(selector);
        tokio::spawn(async move {
            let mut events = watcher(api, config).boxed();
            // A watch error is retried by the watcher itself; only the end of the stream ends this.
            while let Some(event) = events.next().await {
                let received_at = Timestamp::now();
                let namespace = match event {
                    Ok(watcher::Event::Apply(ns) | watcher::Event::InitApply(ns))
                        if ns.metadata.deletion_timestamp.is_some() =>
                    {
                        ns
                    }
                    Ok(watcher::Event::Delete(ns)) => ns,
                    _ => continue,
                };
                let deletion = Deletion {
                    received_at,
                    deletion_timestamp: namespace.metadata.deletion_timestamp.as_ref().map(|t| t.0),
                };
                deletions
                    .seen
                    .lock()
                    .expect("lock")
                    .entry(namespace.name_any())
                    .or_insert(deletion);
                deletions.changed.notify_waiters();
            }
        });
    }

    fn missing(&self, names: &[String]) -> Vec<String> {
        let seen = self.seen.lock().expect("lock");
        names
            .iter()
            .filter(|name| !seen.contains_key(*name))
            .cloned()
            .collect()
    }

    fn latest(&self, names: &[String]) -> Option<Timestamp> {
        let seen = self.seen.lock().expect("lock");
        names
            .iter()
            .filter_map(|name| seen.get(name))
            .map(|d| d.received_at)
            .max()
    }

    fn get(&self, name: &str) -> Option<Deletion> {
        self.seen.lock().expect("lock").get(name).copied()
    }

    /// Waits until every one of `names` was seen deleted, or `until`.
    async fn wait_all(&self, names: &[String], until: Timestamp) {
        loop {
            // Registered before the check, so a notification in between is not missed.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.missing(names).is_empty() {
                return;
            }
            let left = until.duration_since(Timestamp::now());
            if left.is_negative() || left.is_zero() {
                return;
            }
            let left = Duration::try_from(left).expect("positive duration");
            let _ = tokio::time::timeout(left, notified).await;
        }
    }
}

/// The peer's audited requests (it runs as the operator identity; its User-Agent, which
/// client-go takes from the executable's name, tells it apart), with their instants.
fn peer_requests(control_plane: &ControlPlane) -> Vec<(Timestamp, AuditedRequest)> {
    control_plane
        .audited_requests()
        .expect("audit log")
        .into_iter()
        .filter(|r| r.user_agent.starts_with(BINARY))
        .filter_map(|r| Some((r.received_at.parse().ok()?, r)))
        .collect()
}

/// `verb resource[/subresource]`, or `verb /path` for a non-resource request (discovery).
fn request_kind(request: &AuditedRequest) -> String {
    if request.resource.is_empty() {
        let path = request.request_uri.split('?').next().unwrap_or_default();
        format!("{} {path}", request.verb)
    } else {
        let subresource = request
            .subresource
            .as_deref()
            .map(|s| format!("/{s}"))
            .unwrap_or_default();
        format!("{} {}{subresource}", request.verb, request.resource)
    }
}

/// A round starts with core-group discovery, `GET /api`.
fn round_starts(requests: &[(Timestamp, AuditedRequest)]) -> Vec<Timestamp> {
    requests
        .iter()
        .filter(|(_, r)| request_kind(r) == "get /api")
        .map(|(at, _)| *at)
        .collect()
}

struct FiguresInput<'a> {
    namespaces: usize,
    expiring: &'a [Expiring],
    deletions: &'a Deletions,
    requests: &'a [(Timestamp, AuditedRequest)],
    created: (Timestamp, Timestamp),
    last_deletion: Timestamp,
    ready: Usage,
    end: Usage,
    clock_ticks: ClockTicks,
}

fn figures(input: FiguresInput<'_>) -> PeerFigures {
    let seconds = |d: SignedDuration| d.as_secs_f64();
    let mut lateness_watch = Lateness {
        samples: Vec::new(),
    };
    let mut lateness_deletion_timestamp = Lateness {
        samples: Vec::new(),
    };
    let mut not_deleted = 0;
    for expiring in input.expiring {
        match input.deletions.get(&expiring.name) {
            Some(deletion) => {
                lateness_watch
                    .samples
                    .push(seconds(deletion.received_at.duration_since(expiring.due)));
                if let Some(at) = deletion.deletion_timestamp {
                    lateness_deletion_timestamp
                        .samples
                        .push(seconds(at.duration_since(expiring.due)) + 1.0);
                }
            }
            None => not_deleted += 1,
        }
    }

    // Rounds: from the first round start after creation to the first after the last deletion.
    let starts = round_starts(input.requests);
    let window_start = starts.iter().copied().find(|s| *s > input.created.1);
    let window_end = starts.iter().copied().find(|s| *s > input.last_deletion);
    let (rounds, round_seconds, per_round) = match (window_start, window_end) {
        (Some(from), Some(to)) if to > from => {
            let rounds = starts.iter().filter(|s| **s >= from && **s < to).count();
            let mut counts: BTreeMap<String, usize> = BTreeMap::new();
            for (at, request) in input.requests {
                if *at >= from && *at < to {
                    *counts.entry(request_kind(request)).or_default() += 1;
                }
            }
            let mut per_round: Vec<(String, f64)> = counts
                .into_iter()
                .map(|(kind, n)| (kind, n as f64 / rounds as f64))
                .collect();
            per_round.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            (
                rounds,
                seconds(to.duration_since(from)) / rounds as f64,
                per_round,
            )
        }
        _ => (0, f64::NAN, Vec::new()),
    };
    // The webhook's reviews are those made while the namespaces were created, less those
    // of any round that started meanwhile.
    let (created_from, created_until) = input.created;
    let during_creation = |at: &Timestamp| *at >= created_from && *at <= created_until;
    let reviews_during_creation = input
        .requests
        .iter()
        .filter(|(at, r)| during_creation(at) && r.resource == REVIEWS)
        .count() as f64;
    let reviews_per_round = per_round
        .iter()
        .find(|(kind, _)| *kind == format!("create {REVIEWS}"))
        .map_or(0.0, |(_, n)| *n);
    let rounds_during_creation = starts.iter().filter(|s| during_creation(s)).count() as f64;
    let admission_reviews =
        (reviews_during_creation - rounds_during_creation * reviews_per_round).max(0.0);
    let ours: HashSet<&str> = input.expiring.iter().map(|e| e.name.as_str()).collect();
    let mut deletes_per_namespace: HashMap<&str, usize> = HashMap::new();
    let mut delete_codes = BTreeMap::new();
    for (_, request) in input.requests {
        if request.verb == "delete"
            && request.resource == "namespaces"
            && let Some(name) = request.name.as_deref().filter(|n| ours.contains(n))
        {
            *deletes_per_namespace.entry(name).or_default() += 1;
            *delete_codes.entry(request.code).or_default() += 1;
        }
    }
    let clock = |ticks: u64| ticks as f64 / input.clock_ticks.per_second as f64;
    PeerFigures {
        peer: format!("{PEER} {PEER_VERSION}"),
        namespaces: input.namespaces,
        lateness_watch,
        lateness_deletion_timestamp,
        not_deleted,
        rss_mib: input.end.rss_kib as f64 / 1024.0,
        peak_rss_mib: input.end.peak_rss_kib as f64 / 1024.0,
        cpu_seconds_total: clock(input.end.cpu_ticks),
        cpu_seconds_since_ready: clock(input.end.cpu_ticks - input.ready.cpu_ticks),
        clock_ticks: input.clock_ticks,
        rounds,
        round_seconds,
        per_round,
        admission_reviews_per_create: admission_reviews / input.namespaces.max(1) as f64,
        deletes: deletes_per_namespace.values().sum(),
        repeated_deletes: deletes_per_namespace.values().map(|n| n - 1).sum(),
        delete_codes,
    }
}

/// Deletes what the run left: namespaces the peer did not delete, the peer's webhook
/// configurations (it is stopped, so they would only slow labelled creates) and CRDs.
async fn clean_up(client: &Client, namespaces: &Api<Namespace>, run: &str, crds: &[String]) {
    let left = namespaces
        .list(&kube::api::ListParams::default().labels(&format!("{RUN_LABEL}={run}")))
        .await
        .expect("list the run's namespaces");
    for namespace in left
        .items
        .iter()
        .filter(|ns| ns.metadata.deletion_timestamp.is_none())
    {
        ignore_gone(
            namespaces
                .delete(&namespace.name_any(), &DeleteParams::default())
                .await,
        );
    }
    let webhooks: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for name in PEER_WEBHOOKS {
        ignore_gone(webhooks.delete(name, &DeleteParams::default()).await);
    }
    let definitions: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in crds {
        ignore_gone(definitions.delete(name, &DeleteParams::default()).await);
    }
}

fn ignore_gone<T>(result: kube::Result<T>) {
    match result {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_not_found() || status.code == 409 => {}
        Err(e) => panic!("clean-up: {e}"),
    }
}
