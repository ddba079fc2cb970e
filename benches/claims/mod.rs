//! Claims at burst rate and a queue handed over, on the stand-in's workspace: 200 warm
//! environments across 200 contexts, and 200 claims created at once (as fast as this
//! client's bulk concurrency lets it), then paced at 50/s and at 100/s — claim created →
//! claim Ready, the claims per second sustained, and the operator's CPU seconds; then 50
//! claims queued on one context, each released once Ready: release → next claim Ready.
//!
//! Every instant is this client's (its watches, its requests); the closest peer,
//! kubernetes-sigs/agent-sandbox, publishes p50 92 ms / p99 376 ms at 45 claims/s for
//! binding its warm sandboxes.

use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{DeleteParams, PostParams};
use testmesh::lifecycle::Phase;

use super::{CONCURRENCY, Figure, StandInWorkspace, claim, cpu_seconds, create_many, scaled};

/// Warm environments (one per context) and claims per round, before the scale.
const BURST: usize = 200;
/// Claims queued on one context, before the scale.
const QUEUED: usize = 50;

/// One round of claims: how they were paced and what came of it.
pub struct Round {
    pub pace: Option<u32>,
    pub latency: Figure,
    /// Claims divided by the span from the first create sent to the last Ready seen.
    pub claims_per_second: f64,
    /// The operator's CPU seconds from the first create to the last Ready.
    pub cpu_seconds: f64,
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
    pub rounds: Vec<Round>,
    pub hand_over: Figure,
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
    let pid = operator.pid().expect("operator pid");

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
        let cpu_before = cpu_seconds(pid);
        let first_sent = Instant::now();
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
        let cpu = cpu_seconds(pid) - cpu_before;
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
            cpu_seconds: cpu,
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

    Figures {
        environments: count,
        rounds,
        hand_over,
    }
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
        serde_json::json!({
            "environments": self.environments,
            "rounds": self.rounds.iter().map(|r| serde_json::json!({
                "pace_per_second": r.pace, "latency": figure(&r.latency),
                "claims_per_second": r.claims_per_second, "operator_cpu_seconds": r.cpu_seconds,
            })).collect::<Vec<_>>(),
            "hand_over": figure(&self.hand_over),
        })
    }
}
