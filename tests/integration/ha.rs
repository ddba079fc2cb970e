//! Two replicas behind one Lease: exactly one reconciles, a crashed leader is replaced
//! within the lease duration and the lifecycle completes, a run's claim survives the
//! takeover, a deposed leader stops at once, and a terminated leader hands over without
//! waiting for the Lease to expire.

use std::time::{Duration, SystemTime};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use testmesh::lifecycle::Phase;
use testmesh_testenv::operator::Operator;

use crate::support::{
    Operated, REACTION, operated_workspace_with, start_operator, wait_for, wait_reconciliations,
};

/// Short enough to keep the tests quick: renewals every 0.8 s, deadline 4 s.
const LEASE_SECONDS: u64 = 6;
const RETRY: Duration = Duration::from_millis(800);
const LEASE_NAME: &str = "testmesh-operator";

fn replica_args(workspace: &str, identity: &str) -> Vec<String> {
    vec![
        "--leader-election".to_owned(),
        format!("--operator-namespace={workspace}"),
        format!("--lease-duration={LEASE_SECONDS}s"),
        "--shutdown-timeout=5s".to_owned(),
        format!("--identity={identity}"),
    ]
}

/// A workspace whose first replica is `replica-a`.
async fn first_replica(prefix: &str) -> Operated {
    operated_workspace_with(prefix, |workspace| replica_args(workspace, "replica-a")).await
}

/// A workspace led by `replica-a`, and `replica-b` started beside it, ready.
async fn leader_and_standby(prefix: &str) -> (Operated, Operator) {
    let t = first_replica(prefix).await;
    held_by(&t, "replica-a", REACTION).await;
    let standby = replica(&t, "replica-b");
    wait_for_http(&standby, "/readyz", 200).await;
    (t, standby)
}

fn replica(t: &Operated, identity: &str) -> Operator {
    start_operator(
        &t.workspace,
        &t.argo,
        &t.flux,
        &replica_args(&t.workspace, identity),
    )
}

fn leases(t: &Operated) -> Api<Lease> {
    Api::namespaced(t.client.clone(), &t.workspace)
}

/// Waits until `identity` holds the Lease; returns the Lease.
async fn held_by(t: &Operated, identity: &str, timeout: Duration) -> Lease {
    let wanted = identity.to_owned();
    wait_for(&leases(t), LEASE_NAME, timeout, identity, move |lease| {
        holder(lease) == Some(wanted.as_str())
    })
    .await
    .expect("Lease")
}

fn holder(lease: Option<&Lease>) -> Option<&str> {
    lease
        .and_then(|l| l.spec.as_ref())
        .and_then(|s| s.holder_identity.as_deref())
}

fn acquired_at(lease: &Lease) -> Timestamp {
    lease
        .spec
        .as_ref()
        .and_then(|s| s.acquire_time.as_ref())
        .map(|t| t.0)
        .expect("acquireTime")
}

/// Writes (code < 300) each replica made, as (user agent, received at, what).
fn replica_writes(t: &Operated) -> Vec<(String, Timestamp, String)> {
    t.control_plane
        .audited_writes()
        .expect("audit log")
        .into_iter()
        .filter(|w| w.code < 300 && w.user_agent.starts_with("testmesh/"))
        .filter(|w| {
            w.namespace.as_deref() == Some(t.workspace.as_str())
                || w.name
                    .as_deref()
                    .is_some_and(|n| n.starts_with(t.workspace.as_str()))
        })
        .map(|w| {
            let what = format!("{} {} {}", w.verb, w.resource, w.name.unwrap_or_default());
            (
                w.user_agent,
                w.received_at.parse().expect("audit timestamp"),
                what,
            )
        })
        .collect()
}

fn now() -> Timestamp {
    Timestamp::try_from(SystemTime::now()).expect("now")
}

#[tokio::test]
async fn a_crashed_leader_is_replaced_within_the_lease_duration_and_the_lifecycle_completes() {
    let (mut t, standby) = leader_and_standby("ha-crash").await;
    assert!(
        standby.get("/metrics").1.contains("testmesh_leader 0"),
        "the standby must not lead"
    );

    // Mid-lifecycle: the namespace exists, the Application is still progressing.
    let namespace = format!("{}-env", t.workspace);
    t.argo.create_app("ha-app", &namespace).await;
    t.create(&t.environment("ha", &namespace, "ha-app", 30))
        .await;
    t.wait_phase("ha", Phase::Provisioning, REACTION).await;
    assert!(t.namespace(&namespace).await.is_some());

    let killed_at = now();
    t.operator.kill();
    let lease = held_by(&t, "replica-b", Duration::from_secs(LEASE_SECONDS * 3)).await;
    let takeover = acquired_at(&lease).duration_since(killed_at);
    eprintln!("takeover after kill -9 of the leader: {takeover:#}");
    // The Lease runs out at most one lease duration after the kill, and the standby
    // looks once per retry period; one more period allows for a look that a loaded
    // machine started late (seen: 15 ms past the first bound with three suites running).
    let retry = jiff::SignedDuration::try_from(RETRY).expect("retry");
    assert!(
        takeover <= jiff::SignedDuration::from_secs(LEASE_SECONDS as i64) + retry * 2,
        "replica-b took {takeover:#} to take over; lease duration {LEASE_SECONDS}s"
    );

    t.argo.make_healthy("ha-app").await;
    let ready = t.wait_phase("ha", Phase::Warm, REACTION).await;
    let status = ready.status.expect("status");
    assert!(status.provisioning_started_at.is_some() && status.ready_at.is_some());
    let destroyed = t.destroy("ha").await;
    let status = destroyed.status.expect("status");
    assert!(status.teardown_started_at.is_some() && status.destroyed_at.is_some());

    let writes = replica_writes(&t);
    let namespace_creates: Vec<_> = writes
        .iter()
        .filter(|(_, _, what)| *what == format!("create namespaces {namespace}"))
        .collect();
    assert_eq!(namespace_creates.len(), 1, "{writes:#?}");
    let takeover_at = acquired_at(&lease);
    let late: Vec<_> = writes
        .iter()
        .filter(|(agent, at, _)| agent.contains("replica-a") && *at >= takeover_at)
        .collect();
    assert!(
        late.is_empty(),
        "the old leader wrote after the takeover: {late:#?}"
    );
    assert!(
        writes.iter().any(
            |(agent, _, what)| agent.contains("replica-b") && what.contains("testenvironments")
        ),
        "the new leader finished the lifecycle: {writes:#?}"
    );
}

/// A run that claimed its environment by name (`spec.environmentName`, the CLI's
/// `--environment`) keeps it across a failover: the new leader finds the claim bound and
/// the environment running, and changes neither.
#[tokio::test]
async fn a_failover_keeps_a_claim_that_names_its_environment_bound() {
    let (mut t, standby) = leader_and_standby("ha-claim").await;
    let namespace = t.healthy_app("ha-claim-app").await;
    t.create(&t.environment("hc", &namespace, "ha-claim-app", 30))
        .await;
    t.wait_phase("hc", Phase::Warm, REACTION).await;
    t.hold_by_name("hc").await;

    let claim_phases = t.record_claim_phases("named");
    t.operator.kill();
    held_by(&t, "replica-b", Duration::from_secs(LEASE_SECONDS * 3)).await;
    // The new leader has reconciled both the environment and the claim.
    wait_reconciliations(&standby, 2).await;
    t.assert_still_held("hc", claim_phases, "across the failover")
        .await;
    drop(standby);
}

#[tokio::test]
async fn a_deposed_leader_stops_at_once_and_a_terminated_leader_hands_over_without_waiting() {
    let mut t = first_replica("ha-handover").await;
    held_by(&t, "replica-a", REACTION).await;

    // Someone else takes the Lease: replica-a must stop and exit, and nobody reconciles
    // while the intruder holds it.
    let mut lease = leases(&t).get(LEASE_NAME).await.expect("Lease");
    let spec = lease.spec.as_mut().expect("spec");
    spec.holder_identity = Some("intruder".to_owned());
    spec.renew_time = Some(MicroTime(now()));
    spec.lease_duration_seconds = Some(i32::try_from(LEASE_SECONDS).expect("seconds"));
    leases(&t)
        .replace(LEASE_NAME, &PostParams::default(), &lease)
        .await
        .expect("take the Lease");
    let stolen_at = now();
    let exit = t
        .operator
        .wait_exit(Duration::from_secs(LEASE_SECONDS))
        .await
        .expect("the deposed leader exits");
    let stopped_after = now().duration_since(stolen_at);
    eprintln!("deposed leader stopped {stopped_after:#} after losing the Lease");
    assert!(
        !exit.success(),
        "losing the Lease is a failure exit: {exit:?}"
    );
    assert!(t.operator.log().contains("lost the leader Lease"));

    let namespace = format!("{}-env", t.workspace);
    t.healthy_app("handover-app").await;
    t.create(&t.environment("handover", &namespace, "handover-app", 30))
        .await;

    // Two replicas again; one takes over once the intruder's Lease expires.
    t.operator = replica(&t, "replica-a");
    let mut b = replica(&t, "replica-b");
    let ready = t.wait_phase("handover", Phase::Warm, REACTION).await;
    let lease = leases(&t).get(LEASE_NAME).await.expect("Lease");
    let leader = holder(Some(&lease)).expect("holder").to_owned();
    let first_write = replica_writes(&t)
        .into_iter()
        .filter(|(_, _, what)| what.contains("testenvironments") && what.contains("handover"))
        .map(|(_, at, _)| at)
        .min()
        .expect("the environment was written");
    assert!(
        first_write >= acquired_at(&lease),
        "reconciled at {first_write} before {leader} took the Lease at {}",
        acquired_at(&lease)
    );
    assert!(ready.status.is_some());
    let no_late_writes: Vec<_> = replica_writes(&t)
        .into_iter()
        .filter(|(agent, at, _)| {
            agent.contains("replica-a") && *at > stolen_at && *at < acquired_at(&lease)
        })
        .collect();
    assert!(
        no_late_writes.is_empty(),
        "replica-a wrote while deposed: {no_late_writes:#?}"
    );

    // SIGTERM the leader: it releases the Lease and the other takes it within a retry
    // period or two, not a lease duration.
    let (leader_process, other) = if leader == "replica-a" {
        (&mut t.operator, "replica-b")
    } else {
        (&mut b, "replica-a")
    };
    let terminated_at = now();
    let exit = leader_process
        .terminate(Duration::from_secs(10))
        .await
        .expect("the leader exits on SIGTERM");
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    let lease = held_by(&t, other, Duration::from_secs(LEASE_SECONDS)).await;
    let handover = acquired_at(&lease).duration_since(terminated_at);
    eprintln!("handover after SIGTERM of the leader: {handover:#}");
    assert!(
        handover < jiff::SignedDuration::from_secs(LEASE_SECONDS as i64),
        "{other} took {handover:#}: the Lease was not released"
    );
}

async fn wait_for_http(operator: &Operator, path: &str, code: u16) {
    let deadline = std::time::Instant::now() + REACTION;
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(operator.http).is_ok() && operator.get(path).0 == code {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} did not answer {code} within {REACTION:?}");
}
